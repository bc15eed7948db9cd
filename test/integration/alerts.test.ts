/**
 * Stored alerts on real PostgreSQL, anvil and the ChangeNow simulator: each rule fires on a state created on purpose
 * and resolves when the state goes away, with one evaluation pass called directly each time; concurrent passes and
 * raisers keep one open alert; a person's resolution holds until the condition clears; the admin API.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { ALL_HANDLED_TASKS } from '../../src/app.ts';
import { alertSettings, evaluateAlerts, raiseAlert, STATE_RULES, type AlertSettings, type EvaluateDeps } from '../../src/alerts/index.ts';
import { upsertChannel } from '../../src/channels/index.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { createChangeNowClient } from '../../src/integrations/changenow/index.ts';
import { readIpn } from '../../src/integrations/nowpayments/index.ts';
import { createChainWallet } from '../../src/integrations/wallet/index.ts';
import { accounts, postJournal } from '../../src/ledger/index.ts';
import { createLogger } from '../../src/log.ts';
import { parsePercent } from '../../src/money/index.ts';
import { recordIpn } from '../../src/pipeline/index.ts';
import { rpc } from '../../src/simulators/index.ts';
import { mintLocalUsdt } from '../../src/simulators/usdt/index.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { ipnBody, signed } from '../support/ipn.ts';
import { SIM_API_KEY, startOutside, type Outside } from '../support/outside.ts';
import { ADMIN_TOKEN, IPN_SECRET, logSink, startTestPayrail, UNUSED_WALLET_KEY, type TestPayrail } from '../support/payrail.ts';
import { TRON_WALLET } from '../support/payouts.ts';
import { freePort } from '../support/ports.ts';

let db: TestDatabase;
let outside: Outside;
let base: AlertSettings;
const logs = logSink();
const logger = createLogger({ level: 'info', destination: logs.stream });
let nextChannel = 1_003_400_000_001;
let nextPayment = 9_400_000_000;
let nextId = 1;

beforeAll(async () => {
  [db, outside] = await Promise.all([createTestDatabase(), startOutside()]);
  const config = loadConfig({ DATABASE_URL: db.url, ADMIN_TOKEN, NOWPAYMENTS_IPN_SECRET: IPN_SECRET, HOST_WALLET_PRIVATE_KEY: outside.hostKey, ...outside.env });
  // The ledger check runs every pass here (in a worker, at most every ten minutes).
  base = { ...alertSettings(config, ALL_HANDLED_TASKS), ledgerCheckEveryMs: 0 };
});
afterAll(async () => {
  await db?.close();
  await outside?.stop();
});

function deps(options: { settings?: Partial<AlertSettings>; rpcUrl?: string; changenowUrl?: string; notify?: boolean; database?: TestDatabase } = {}): EvaluateDeps {
  const wallet = createChainWallet({ rpcUrl: options.rpcUrl ?? outside.chain.rpcUrl, privateKey: outside.hostKey, chainId: outside.chain.chainId, timeoutMs: 5_000 });
  const exchange = createChangeNowClient({ baseUrl: options.changenowUrl ?? outside.sim.url, apiKey: SIM_API_KEY, connectTimeoutMs: 2_000, responseTimeoutMs: 2_000 });
  return { db: (options.database ?? db).db, logger, wallet, exchange, usdtContract: outside.usdt, settings: { ...base, ...options.settings }, notify: options.notify ?? false };
}

const evaluate = (options?: Parameters<typeof deps>[0]) => evaluateAlerts(deps(options));

interface AlertRow {
  id: string;
  rule: string;
  subject: string;
  severity: string;
  message: string;
  details: Record<string, unknown>;
  first_seen_at: Date;
  last_seen_at: Date;
  resolved_at: Date | null;
  resolved_by: string | null;
}

async function alertsOf(rule: string, subject: string, database: TestDatabase = db): Promise<AlertRow[]> {
  const { rows } = await database.pool.query<AlertRow>('select id::text, rule, subject, severity, message, details, first_seen_at, last_seen_at, resolved_at, resolved_by from alerts where rule = $1 and subject = $2 order by alerts.id', [rule, subject]);
  return rows;
}

async function onlyAlert(rule: string, subject: string, database: TestDatabase = db): Promise<AlertRow> {
  const rows = await alertsOf(rule, subject, database);
  expect(rows).toHaveLength(1);
  return rows[0] as AlertRow;
}

/** Fires on the first pass, resolves (on its own, not by a person) on the pass after `clear`. */
async function expectFiresThenResolves(rule: string, subject: string, clear: () => Promise<unknown>, options?: Parameters<typeof deps>[0]): Promise<AlertRow> {
  await evaluate(options);
  const fired = await onlyAlert(rule, subject);
  expect(fired.resolved_at).toBeNull();
  await clear();
  await evaluate(options);
  const resolved = await onlyAlert(rule, subject);
  expect(resolved.id).toBe(fired.id);
  expect(resolved.resolved_at).not.toBeNull();
  expect(resolved.resolved_by).toBeNull();
  return fired;
}

async function channel(strategy: 'threshold' | 'instant', thresholdUsd?: string): Promise<string> {
  const id = `-${nextChannel++}`;
  await upsertChannel(db.db, id, { payoutStrategy: strategy, ...(thresholdUsd && { thresholdUsd }), payoutCurrency: 'usdt', payoutNetwork: 'trx', walletAddress: TRON_WALLET }, 'test');
  return id;
}

async function insertPayout(channelId: string, status: string, reason: string | null): Promise<string> {
  const payoutId = `po_${(nextId++).toString(16).padStart(16, '0')}`;
  await db.pool.query(
    `insert into payouts (payout_id, kind, channel_id, status, asset, amount, payout_currency, payout_network, wallet_address, reason)
     values ($1, 'threshold', $2, $3, 'usdt', 60000000, 'usdt', 'trx', $4, $5)`,
    [payoutId, channelId, status, TRON_WALLET, reason],
  );
  return payoutId;
}

async function insertConversion(status: string, options: { ageHours?: number; reason?: string } = {}): Promise<string> {
  const id = `conv_${(nextId++).toString(16).padStart(16, '0')}`;
  await db.pool.query(
    `insert into conversions (conversion_id, status, from_asset, to_asset, amount_wei, payment_count, reason, created_at, updated_at)
     values ($1, $2, 'eth', 'usdt', 4723900000000000, 1, $3, now() - $4 * interval '1 hour', now() - $4 * interval '1 hour')`,
    [id, status, options.reason ?? null, options.ageHours ?? 0],
  );
  return id;
}

async function addJob(task: string, options: { runAtMinutesAgo?: number; maxAttempts?: number; key?: string } = {}): Promise<string> {
  const { rows } = await db.pool.query<{ id: string }>(
    `select (graphile_worker.add_job($1, '{}'::json, run_at => now() - $2 * interval '1 minute', max_attempts => $3, job_key => $4)).id::text as id`,
    [task, options.runAtMinutesAgo ?? 0, options.maxAttempts ?? 25, options.key ?? null],
  );
  return (rows[0] as { id: string }).id;
}

async function notifyJobs(alertId: string): Promise<Array<{ key: string; max_attempts: number }>> {
  const { rows } = await db.pool.query<{ key: string; max_attempts: number }>(
    `select j.key, j.max_attempts from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
     where t.identifier = 'alert_notify' and j.payload->>'alertId' = $1 order by j.id`,
    [alertId],
  );
  return rows;
}

describe('observations', () => {
  it('records the host wallet, the chain RPC and ChangeNow under their names, balances as integer text', async () => {
    const summary = await evaluate();
    expect(summary.skipped).toBe(false);
    const { rows } = await db.pool.query<{ name: string; ok: boolean; value: string | null; detail: string | null }>('select name, ok, value, detail from observations order by name');
    const wei = await outside.balanceOf(outside.hostAddress);
    expect(rows).toEqual([
      { name: 'chain_rpc', ok: true, value: expect.stringMatching(/^[0-9]+$/), detail: null },
      { name: 'changenow', ok: true, value: null, detail: null },
      { name: 'host_wallet.eth', ok: true, value: wei.toString(), detail: null },
      { name: 'host_wallet.usdt', ok: true, value: (await outside.usdtBalanceOf(outside.hostAddress)).toString(), detail: null },
    ]);
  });

  it('an unreachable chain RPC and ChangeNow are recorded (no URL in the detail) and alerted; back, the alerts resolve', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const summary = await evaluate({ rpcUrl: `${dead}/v3/secret-api-key-0123456789`, changenowUrl: dead });
    expect(summary.observations.filter((o) => !o.ok).map((o) => o.name).sort()).toEqual(['chain_rpc', 'changenow', 'host_wallet.eth', 'host_wallet.usdt']);
    const { rows } = await db.pool.query<{ name: string; detail: string }>("select name, detail from observations where not ok order by name");
    for (const row of rows) {
      expect(row.detail).toBeTruthy();
      expect(row.detail).not.toContain('http://');
      expect(row.detail).not.toContain('secret-api-key');
    }
    const rpcAlert = await onlyAlert('chain_rpc_unreachable', 'chain_rpc');
    expect(rpcAlert).toMatchObject({ severity: 'critical', resolved_at: null });
    expect(JSON.stringify(rpcAlert)).not.toContain('secret-api-key');
    expect((await onlyAlert('changenow_unreachable', 'changenow')).resolved_at).toBeNull();

    await evaluate();
    expect((await onlyAlert('chain_rpc_unreachable', 'chain_rpc')).resolved_at).not.toBeNull();
    expect((await onlyAlert('changenow_unreachable', 'changenow')).resolved_at).not.toBeNull();
  });

  it('a refused ChangeNow key is a failed observation with its reason', async () => {
    await outside.sim.setFault('401');
    try {
      await evaluate();
      const alert = (await alertsOf('changenow_unreachable', 'changenow')).at(-1) as AlertRow;
      expect(alert.resolved_at).toBeNull();
      expect(alert.message).toContain('unauthorized');
    } finally {
      await outside.sim.setFault('none');
    }
    await evaluate();
    expect((await alertsOf('changenow_unreachable', 'changenow')).every((a) => a.resolved_at !== null)).toBe(true);
  });
});

describe('state rules fire and resolve', () => {
  it('host wallet ETH below its floor (drained on anvil), compared in wei; refunded, it resolves', async () => {
    const before = await outside.balanceOf(outside.hostAddress);
    await rpc(outside.chain.rpcUrl, 'anvil_setBalance', [outside.hostAddress, `0x${(10n ** 16n).toString(16)}`]);
    try {
      await evaluate();
      const low = await onlyAlert('host_wallet_low', 'eth');
      expect(low).toMatchObject({ severity: 'warning', resolved_at: null, details: { asset: 'eth', balance: '0.01 ETH', floor: '0.05 ETH', units: '10000000000000000' } });
      // A pass that cannot see the balance (RPC down) leaves the alert as it is: a blind pass resolves nothing.
      await evaluate({ rpcUrl: `http://127.0.0.1:${await freePort()}` });
      expect((await onlyAlert('host_wallet_low', 'eth')).resolved_at).toBeNull();
      // One wei under the floor still fires; exactly at the floor does not.
      await rpc(outside.chain.rpcUrl, 'anvil_setBalance', [outside.hostAddress, `0x${(5n * 10n ** 16n - 1n).toString(16)}`]);
      await evaluate();
      expect((await onlyAlert('host_wallet_low', 'eth')).resolved_at).toBeNull();
      await rpc(outside.chain.rpcUrl, 'anvil_setBalance', [outside.hostAddress, `0x${(5n * 10n ** 16n).toString(16)}`]);
      await evaluate();
      expect((await onlyAlert('host_wallet_low', 'eth')).resolved_at).not.toBeNull();
    } finally {
      await rpc(outside.chain.rpcUrl, 'anvil_setBalance', [outside.hostAddress, `0x${before.toString(16)}`]);
    }
  });

  it('host wallet USDT below its floor; minted up to it, it resolves', async () => {
    expect(await outside.usdtBalanceOf(outside.hostAddress)).toBe(0n);
    await expectFiresThenResolves('host_wallet_low', 'usdt', () => mintLocalUsdt(outside.chain.rpcUrl, outside.usdt, outside.hostKey, outside.hostAddress, 100_000_000n));
  });

  it('a conversion not completed an hour after creation', async () => {
    const id = await insertConversion('sent', { ageHours: 2 });
    const fresh = await insertConversion('sent');
    const fired = await expectFiresThenResolves('conversion_pending_too_long', id, () => db.pool.query("update conversions set status = 'completed' where conversion_id = $1", [id]));
    expect(fired).toMatchObject({ severity: 'warning', details: { conversionId: id, status: 'sent', amount: '0.0047239 ETH' } });
    expect(await alertsOf('conversion_pending_too_long', fresh)).toEqual([]);
  });

  it('a conversion in review, one alert per conversion', async () => {
    const a = await insertConversion('needs_review', { reason: 'exchange failed; the ETH sent has not come back' });
    const b = await insertConversion('needs_review', { reason: 'exchange still exchanging past the poll deadline' });
    await expectFiresThenResolves('conversion_needs_review', a, () => db.pool.query("update conversions set status = 'failed' where conversion_id = $1", [a]));
    expect(await onlyAlert('conversion_needs_review', b)).toMatchObject({ resolved_at: null, details: { reason: 'exchange still exchanging past the poll deadline' } });
  });

  it('payouts failed, in review, or awaiting approval: one alert per payout', async () => {
    const failed = await insertPayout(await channel('threshold', '50'), 'failed', 'transfer reverted: the funds never left');
    const review = await insertPayout(await channel('threshold', '50'), 'needs_review', 'ChangeNow refused the payout (pair_is_inactive)');
    const waiting = await insertPayout(await channel('threshold', '50'), 'awaiting_approval', null);
    const fired = await expectFiresThenResolves('payout_needs_review', review, () => db.pool.query("update payouts set status = 'cancelled' where payout_id = $1", [review]));
    expect(fired).toMatchObject({ severity: 'critical', details: { payoutId: review, amount: '60 USDT', reason: 'ChangeNow refused the payout (pair_is_inactive)' } });
    await expectFiresThenResolves('payout_failed', failed, () => db.pool.query("update payouts set status = 'cancelled' where payout_id = $1", [failed]));
    await expectFiresThenResolves('payout_awaiting_approval', waiting, () => db.pool.query("update payouts set status = 'pending', approved_by = 'alice', approved_at = now() where payout_id = $1", [waiting]));
  });

  it('payments held after ChangeNow refused their conversion (subject: its error code)', async () => {
    const channelId = await channel('threshold', '50');
    const paymentId = String(nextPayment++);
    const { raw, headers } = signed(ipnBody({ payment_id: Number(paymentId), order_id: `PGP-1|${channelId}` }), IPN_SECRET);
    const reading = readIpn(raw, headers['x-nowpayments-sig'], IPN_SECRET);
    if (!reading.ok) throw new Error(reading.error);
    await recordIpn(db.db, reading.ipn, { feePercent: parsePercent('3') });
    await insertConversion('failed', { reason: 'changenow unauthorized: ChangeNow create: HTTP 401 unauthorized' });
    await db.pool.query("update payments set conversion_hold_until = now() + interval '2 hours' where payment_id = $1", [paymentId]);
    const fired = await expectFiresThenResolves('conversion_held', 'unauthorized', () => db.pool.query('update payments set conversion_hold_until = null where payment_id = $1', [paymentId]));
    expect(fired).toMatchObject({ severity: 'critical', details: { payments: 1, amount: '0.0047239 ETH' } });
  });

  it('a threshold channel over its threshold with no batch for longer than the limit', async () => {
    const channelId = await channel('threshold', '50');
    await db.db.transaction().execute((trx) => postJournal(trx, { kind: 'test_usdt_credit', ref: channelId, entries: [
      { account: accounts.changenow('usdt'), amount: -60_000_000n },
      { account: accounts.channel(channelId, 'usdt'), amount: 60_000_000n },
    ] }));
    // Just credited: not yet an hour without a batch.
    await evaluate();
    expect(await alertsOf('threshold_no_batch', channelId)).toEqual([]);
    await db.pool.query("update ledger_accounts set updated_at = now() - interval '2 hours' where code = $1 and asset = 'usdt'", [accounts.channel(channelId, 'usdt').code]);
    await db.pool.query("update channels set updated_at = now() - interval '2 hours' where channel_id = $1", [channelId]);
    const fired = await expectFiresThenResolves('threshold_no_batch', channelId, () => insertPayout(channelId, 'pending', null));
    expect(fired.details).toMatchObject({ balance: '60 USDT', threshold: '50 USD' });
  });

  it('a task with more runnable jobs than the limit, or an old runnable job', async () => {
    const deep = [await addJob('threshold_check'), await addJob('threshold_check'), await addJob('threshold_check')];
    await expectFiresThenResolves('queue_depth', 'threshold_check', () => db.pool.query('delete from graphile_worker._private_jobs where id = any($1::bigint[])', [deep]), { settings: { queueDepth: 2 } });
    const old = await addJob('payout_poll', { runAtMinutesAgo: 10 });
    const fired = await expectFiresThenResolves('queue_age', 'payout_poll', () => db.pool.query('delete from graphile_worker._private_jobs where id = $1', [old]));
    expect(fired.severity).toBe('critical');
    // A task this version does not run waits, visible, without an alert.
    const foreign = await addJob('some_future_task', { runAtMinutesAgo: 10 });
    await evaluate();
    expect(await alertsOf('queue_age', 'some_future_task')).toEqual([]);
    await db.pool.query('delete from graphile_worker._private_jobs where id = $1', [foreign]);
  });

  it('a job out of attempts (its worker died on the last one) is job_failed_permanently; a job still running its last attempt is not', async () => {
    const failed = await addJob('conversion_batch', { maxAttempts: 1, key: 'conversion_batch:nudge-test' });
    // What a worker that died mid-way leaves once its lock is released: attempts used up, no error, no lock.
    await db.pool.query('update graphile_worker._private_jobs set attempts = max_attempts where id = $1', [failed]);
    const running = await addJob('reconcile', { maxAttempts: 1 });
    await db.pool.query("update graphile_worker._private_jobs set attempts = 1, locked_at = now(), locked_by = 'test-worker' where id = $1", [running]);
    const fired = await expectFiresThenResolves('job_failed_permanently', failed, () => db.pool.query('delete from graphile_worker._private_jobs where id = $1', [failed]));
    expect(fired).toMatchObject({ severity: 'critical', details: { jobId: failed, task: 'conversion_batch', jobKey: 'conversion_batch:nudge-test', attempts: 1, maxAttempts: 1, lastError: null } });
    expect(await alertsOf('job_failed_permanently', running)).toEqual([]);
    await db.pool.query('delete from graphile_worker._private_jobs where id = $1', [running]);
  });

  it('failed webhook deliveries are one alert_webhook_failed, never sent to the failing webhook', async () => {
    const job = await addJob('alert_notify', { maxAttempts: 10, key: 'alert_notify:999999:firing' });
    await db.pool.query("update graphile_worker._private_jobs set attempts = max_attempts, last_error = 'alert webhook answered HTTP 503' where id = $1", [job]);
    await evaluate({ notify: true });
    const alert = await onlyAlert('alert_webhook_failed', 'webhook');
    expect(alert).toMatchObject({ resolved_at: null, details: { failedDeliveries: 1, lastError: 'alert webhook answered HTTP 503' } });
    expect(await alertsOf('job_failed_permanently', job)).toEqual([]);
    expect(await notifyJobs(alert.id)).toEqual([]);
    await db.pool.query('delete from graphile_worker._private_jobs where id = $1', [job]);
    await evaluate({ notify: true });
    expect((await onlyAlert('alert_webhook_failed', 'webhook')).resolved_at).not.toBeNull();
    expect(await notifyJobs(alert.id)).toEqual([]);
  });

  it('a broken ledger invariant (tampered balance), one alert per invariant; repaired, it resolves', async () => {
    const tamper = await createTestDatabase({ prefix: 'tamper' });
    try {
      const only = { ...deps({ database: tamper }), rules: STATE_RULES.filter((r) => r.name === 'ledger_invariant_broken') };
      const code = accounts.channel('-1003499999999', 'usdt').code;
      await tamper.db.transaction().execute((trx) => postJournal(trx, { kind: 'test_usdt_credit', ref: 'tamper', entries: [
        { account: accounts.changenow('usdt'), amount: -5n },
        { account: accounts.channel('-1003499999999', 'usdt'), amount: 5n },
      ] }));
      await evaluateAlerts(only);
      expect(await alertsOf('ledger_invariant_broken', 'balance_matches_entries', tamper)).toEqual([]);
      await tamper.pool.query("update ledger_accounts set balance = balance + 1 where code = $1 and asset = 'usdt'", [code]);
      await evaluateAlerts(only);
      const fired = await onlyAlert('ledger_invariant_broken', 'balance_matches_entries', tamper);
      expect(fired).toMatchObject({ severity: 'critical', resolved_at: null, details: { invariant: 'balance_matches_entries', count: 1 } });
      await tamper.pool.query("update ledger_accounts set balance = balance - 1 where code = $1 and asset = 'usdt'", [code]);
      await evaluateAlerts(only);
      expect((await onlyAlert('ledger_invariant_broken', 'balance_matches_entries', tamper)).resolved_at).not.toBeNull();
    } finally {
      await tamper.close();
    }
  });
});

describe('one alert, however many evaluate', () => {
  it('passes run twice, or at once, keep one alert per rule and subject', async () => {
    const id = await insertConversion('needs_review', { reason: 'concurrency' });
    await evaluate();
    const first = await onlyAlert('conversion_needs_review', id);
    await evaluate();
    const again = await onlyAlert('conversion_needs_review', id);
    expect(again.id).toBe(first.id);
    expect(again.first_seen_at).toEqual(first.first_seen_at);
    expect(again.last_seen_at.getTime()).toBeGreaterThan(first.last_seen_at.getTime());

    const other = await insertConversion('needs_review', { reason: 'concurrency, at once' });
    const summaries = await Promise.all([evaluate(), evaluate(), evaluate()]);
    expect(summaries.some((s) => !s.skipped)).toBe(true);
    expect(await alertsOf('conversion_needs_review', other)).toHaveLength(1);
    const { rows } = await db.pool.query<{ n: number }>('select count(*)::int as n from (select rule, subject from alerts where resolved_at is null group by rule, subject having count(*) > 1) dup');
    expect(rows[0]?.n).toBe(0);
  });

  it('a pass finding another one running skips', async () => {
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query("select pg_advisory_lock(hashtext('payrail:alerts_evaluate'))");
      expect((await evaluate()).skipped).toBe(true);
    } finally {
      await holder.end();
    }
    expect((await evaluate()).skipped).toBe(false);
  });

  it('an event raised many times at once is one open alert; the structured log line is written each time', async () => {
    const before = logs.lines.length;
    const alert = { rule: 'transfer_refused', subject: 'tr_concurrent', severity: 'critical' as const, message: 'the node refused a host wallet transfer', details: { transferId: 'tr_concurrent', amount: 5n } };
    await Promise.all(Array.from({ length: 5 }, () => raiseAlert(db.db, alert, { logger })));
    const row = await onlyAlert('transfer_refused', 'tr_concurrent');
    expect(row.details).toEqual({ transferId: 'tr_concurrent', amount: '5' });
    const lines = logs.lines.slice(before).filter((l) => l.event === 'alert' && l.alert === 'transfer_refused');
    expect(lines).toHaveLength(5);
    expect(lines[0]).toMatchObject({ level: 50, subject: 'tr_concurrent', transferId: 'tr_concurrent', msg: 'the node refused a host wallet transfer' });
  });

  it('an event raised in a transaction that rolls back leaves nothing', async () => {
    await db.db
      .transaction()
      .execute(async (trx) => {
        await raiseAlert(trx, { rule: 'transfer_unconfirmed', subject: 'tr_rolled_back', severity: 'critical', message: 'x' }, { logger, notify: true });
        throw new Error('roll back');
      })
      .catch(() => undefined);
    expect(await alertsOf('transfer_unconfirmed', 'tr_rolled_back')).toEqual([]);
    const { rows } = await db.pool.query(`select 1 from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
      where t.identifier = 'alert_notify' and j.payload->>'alertId' not in (select id::text from alerts)`);
    expect(rows).toEqual([]);
  });
});

describe('resolution', () => {
  it('an event alert resolves once quiet for ALERT_EVENT_RESOLVE_AFTER; raised again, it is a new alert', async () => {
    const alert = { rule: 'duplicate_exchanges', subject: 'conv_quiet', severity: 'critical' as const, message: 'more than one exchange for a conversion' };
    await raiseAlert(db.db, alert, { logger });
    await evaluate();
    const open = await onlyAlert('duplicate_exchanges', 'conv_quiet');
    expect(open.resolved_at).toBeNull();
    await db.pool.query("update alerts set first_seen_at = now() - interval '2 days', last_seen_at = now() - interval '25 hours' where id = $1", [open.id]);
    await evaluate();
    const quiet = await onlyAlert('duplicate_exchanges', 'conv_quiet');
    expect(quiet.resolved_at).not.toBeNull();
    expect(quiet.resolved_by).toBeNull();
    await raiseAlert(db.db, alert, { logger });
    const rows = await alertsOf('duplicate_exchanges', 'conv_quiet');
    expect(rows.map((r) => r.resolved_at === null)).toEqual([false, true]);
  });

  it('a state alert resolved by hand while its condition holds stays resolved; once the condition clears, the next occurrence opens a new one', async () => {
    const payrail = await startTestPayrail(db, { roles: { web: true, worker: false } });
    try {
      const id = await insertConversion('needs_review', { reason: 'held by hand' });
      await evaluate();
      const open = await onlyAlert('conversion_needs_review', id);
      const res = await payrail.request('POST', `/api/alerts/${open.id}/resolve`, { body: { note: 'looking into it' } });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ id: open.id, state: 'resolved', resolvedBy: 'admin' });

      // Still in review: passes do not reopen it, they keep its last sighting current.
      await evaluate();
      await evaluate();
      const acknowledged = await onlyAlert('conversion_needs_review', id);
      expect(acknowledged.resolved_by).toBe('admin');
      expect(acknowledged.last_seen_at.getTime()).toBeGreaterThan(acknowledged.resolved_at!.getTime());
      expect(acknowledged.details.conditionClearedAt).toBeUndefined();

      // Cleared once: recorded; back in review later: a new alert.
      await db.pool.query("update conversions set status = 'failed' where conversion_id = $1", [id]);
      await evaluate();
      expect((await onlyAlert('conversion_needs_review', id)).details.conditionClearedAt).toEqual(expect.any(String));
      await db.pool.query("update conversions set status = 'needs_review' where conversion_id = $1", [id]);
      await evaluate();
      const rows = await alertsOf('conversion_needs_review', id);
      expect(rows.map((r) => [r.resolved_at === null, r.resolved_by])).toEqual([[false, 'admin'], [true, null]]);
    } finally {
      await payrail.stop();
    }
  });
});

describe('webhook jobs', () => {
  it('queued in the same transaction as the opening and the resolution, only when a webhook is configured', async () => {
    await raiseAlert(db.db, { rule: 'transfer_refused', subject: 'tr_silent', severity: 'critical', message: 'refused' }, { logger, notify: false });
    expect(await notifyJobs((await onlyAlert('transfer_refused', 'tr_silent')).id)).toEqual([]);

    const alert = { rule: 'transfer_refused', subject: 'tr_told', severity: 'critical' as const, message: 'refused' };
    await raiseAlert(db.db, alert, { logger, notify: true });
    await raiseAlert(db.db, alert, { logger, notify: true });
    const row = await onlyAlert('transfer_refused', 'tr_told');
    expect(await notifyJobs(row.id)).toEqual([{ key: `alert_notify:${row.id}:firing`, max_attempts: 10 }]);

    const id = await insertConversion('needs_review', { reason: 'told' });
    await evaluate({ notify: true });
    const opened = await onlyAlert('conversion_needs_review', id);
    expect(await notifyJobs(opened.id)).toEqual([{ key: `alert_notify:${opened.id}:firing`, max_attempts: 10 }]);
    await db.pool.query("update conversions set status = 'failed' where conversion_id = $1", [id]);
    await evaluate({ notify: true });
    expect((await notifyJobs(opened.id)).map((j) => j.key)).toEqual([`alert_notify:${opened.id}:firing`, `alert_notify:${opened.id}:resolved`]);
    await db.pool.query("delete from graphile_worker._private_jobs j using graphile_worker._private_tasks t where t.id = j.task_id and t.identifier = 'alert_notify'");
  });
});

describe('API', () => {
  let web: TestPayrail;
  beforeAll(async () => {
    web = await startTestPayrail(db, { roles: { web: true, worker: false } });
  });
  afterAll(async () => web?.stop());

  it('GET /api/alerts lists open, resolved or all alerts behind the admin token', async () => {
    expect((await web.request('GET', '/api/alerts', { token: null })).status).toBe(401);
    expect((await web.request('GET', '/api/alerts', { token: 'not-the-admin-token-0123456789' })).status).toBe(401);
    const open = await web.request('GET', '/api/alerts?state=open&limit=500');
    expect(open.status).toBe(200);
    expect(open.body.alerts.length).toBeGreaterThan(0);
    expect(open.body.alerts.every((a: { state: string; resolvedAt: string | null }) => a.state === 'open' && a.resolvedAt === null)).toBe(true);
    expect(open.body.alerts[0]).toEqual({
      id: expect.any(String), rule: expect.any(String), subject: expect.any(String), severity: expect.stringMatching(/^(warning|critical)$/), message: expect.any(String),
      details: expect.any(Object), state: 'open', firstSeenAt: expect.any(String), lastSeenAt: expect.any(String), resolvedAt: null, resolvedBy: null,
    });
    const resolved = await web.request('GET', '/api/alerts?state=resolved');
    expect(resolved.body.alerts.every((a: { state: string }) => a.state === 'resolved')).toBe(true);
    const all = await web.request('GET', '/api/alerts?state=all&limit=2');
    expect(all.body.alerts).toHaveLength(2);
    expect((await web.request('GET', '/api/alerts?state=firing')).status).toBe(400);
    expect((await web.request('GET', '/api/alerts?limit=0')).status).toBe(400);
  });

  it('POST /api/alerts/:id/resolve resolves once, records who in the audit log, and queues nothing without a webhook', async () => {
    await raiseAlert(db.db, { rule: 'exchange_mismatch', subject: 'conv_api', severity: 'critical', message: 'mismatch' }, { logger });
    const alert = await onlyAlert('exchange_mismatch', 'conv_api');
    expect((await web.request('POST', `/api/alerts/${alert.id}/resolve`, { token: null })).status).toBe(401);
    expect((await onlyAlert('exchange_mismatch', 'conv_api')).resolved_at).toBeNull();

    const res = await web.request('POST', `/api/alerts/${alert.id}/resolve`, { body: { note: 'exchange checked by hand' } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: alert.id, rule: 'exchange_mismatch', subject: 'conv_api', state: 'resolved', resolvedBy: 'admin', resolvedAt: expect.any(String) });
    const { rows } = await db.pool.query('select actor, action, subject, details from audit_log where subject = $1', [`alert:${alert.id}`]);
    expect(rows).toEqual([{ actor: 'admin', action: 'alert.resolve', subject: `alert:${alert.id}`, details: { rule: 'exchange_mismatch', subject: 'conv_api', severity: 'critical', note: 'exchange checked by hand' } }]);
    expect(await notifyJobs(alert.id)).toEqual([]);

    expect((await web.request('POST', `/api/alerts/${alert.id}/resolve`)).status).toBe(409);
    expect((await web.request('POST', '/api/alerts/999999999/resolve')).status).toBe(404);
    expect((await web.request('POST', '/api/alerts/not-an-id/resolve')).status).toBe(400);
    expect((await web.request('POST', `/api/alerts/${alert.id}/resolve`, { body: { note: 'x', extra: 1 } })).status).toBe(400);
    expect((await web.request('GET', `/api/alerts/${alert.id}`)).body).toMatchObject({ id: alert.id, state: 'resolved' });
  });
});

describe('configuration', () => {
  it('a host wallet floor the asset cannot hold stops the start, naming the variable', () => {
    const config = loadConfig({ DATABASE_URL: 'postgres://u@127.0.0.1/x', ADMIN_TOKEN, NOWPAYMENTS_IPN_SECRET: IPN_SECRET, HOST_WALLET_PRIVATE_KEY: UNUSED_WALLET_KEY, CHANGENOW_API_KEY: SIM_API_KEY, CHANGENOW_API_URL: 'http://127.0.0.1:9', ETH_RPC_URL: 'http://127.0.0.1:9', ALERT_HOST_USDT_MIN: '1.0000001' });
    expect(() => alertSettings(config, [])).toThrow(ConfigError);
    expect(() => alertSettings(config, [])).toThrow(/ALERT_HOST_USDT_MIN/);
  });

  it('the webhook URL needs its secret', () => {
    expect(() => loadConfig({ ADMIN_TOKEN, NOWPAYMENTS_IPN_SECRET: IPN_SECRET, HOST_WALLET_PRIVATE_KEY: UNUSED_WALLET_KEY, CHANGENOW_API_KEY: SIM_API_KEY, ALERT_WEBHOOK_URL: 'http://127.0.0.1:1/hook' })).toThrow(/ALERT_WEBHOOK_SECRET/);
  });
});
