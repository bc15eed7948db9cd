/**
 * Stored alerts on real PostgreSQL, anvil and the ChangeNow simulator: each rule fires on a state created on purpose
 * and resolves when the state goes away, with one evaluation pass called directly each time; concurrent passes and
 * raisers keep one open alert; a person's resolution holds until the condition clears; the admin API.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { ALL_HANDLED_TASKS } from '../../src/app.ts';
import {
  alertSettings,
  evaluateAlerts,
  raiseAlert,
  resolveAlertByHand,
  STATE_RULES,
  type AlertPayload,
  type AlertSettings,
  type EvaluateDeps,
  type StateRule,
} from '../../src/alerts/index.ts';
import { upsertChannel } from '../../src/channels/index.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { createChangeNowClient } from '../../src/integrations/changenow/index.ts';
import { readIpn } from '../../src/integrations/nowpayments/index.ts';
import { createChainWallet } from '../../src/integrations/wallet/index.ts';
import { accounts } from '../../src/ledger/index.ts';
import { createLogger } from '../../src/log.ts';
import { parsePercent } from '../../src/money/index.ts';
import { recordIpn } from '../../src/pipeline/index.ts';
import { rpc } from '../../src/simulators/index.ts';
import { mintLocalUsdt } from '../../src/simulators/usdt/index.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { ipnBody, signed } from '../support/ipn.ts';
import { bookJournal, movement } from '../support/ledger-posts.ts';
import { eventually, SIM_API_KEY, startOutside, type Outside } from '../support/outside.ts';
import {
  ADMIN_TOKEN,
  IPN_SECRET,
  logSink,
  startTestPayrail,
  UNUSED_WALLET_KEY,
  type TestPayrail,
} from '../support/payrail.ts';
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
  const config = loadConfig({
    DATABASE_URL: db.url,
    ADMIN_TOKEN,
    NOWPAYMENTS_IPN_SECRET: IPN_SECRET,
    HOST_WALLET_PRIVATE_KEY: outside.hostKey,
    ...outside.env,
  });
  // The ledger check runs every pass here (in production, at most every ten minutes across all workers).
  base = { ...alertSettings(config, ALL_HANDLED_TASKS), ledgerCheckEveryMs: 0 };
});
afterAll(async () => {
  await db?.close();
  await outside?.stop();
});

function deps(
  options: {
    settings?: Partial<AlertSettings>;
    rpcUrl?: string;
    changenowUrl?: string;
    notify?: boolean;
    database?: TestDatabase;
  } = {},
): EvaluateDeps {
  const wallet = createChainWallet({
    rpcUrl: options.rpcUrl ?? outside.chain.rpcUrl,
    privateKey: outside.hostKey,
    chainId: outside.chain.chainId,
    timeoutMs: 5_000,
  });
  const exchange = createChangeNowClient({
    baseUrl: options.changenowUrl ?? outside.sim.url,
    apiKey: SIM_API_KEY,
    connectTimeoutMs: 2_000,
    responseTimeoutMs: 2_000,
  });
  return {
    db: (options.database ?? db).db,
    logger,
    wallet,
    exchange,
    usdtContract: outside.usdt,
    settings: { ...base, ...options.settings },
    notify: options.notify ?? false,
  };
}

const evaluate = (options?: Parameters<typeof deps>[0]) => evaluateAlerts(deps(options));

/** USDT booked from ChangeNow onto a channel's balance, as a settled conversion books it. */
function creditUsdt(database: TestDatabase, channelId: string, ref: string, units: bigint) {
  const to = accounts.channel(channelId, 'usdt');
  return bookJournal(database, movement('test_usdt_credit', ref, accounts.changenow('usdt'), to, units));
}

/** A channel's USDT balance moved by `units` with no journal behind it: the drift the ledger check exists to catch. */
async function driftUsdtBalance(database: TestDatabase, channelId: string, units: bigint): Promise<void> {
  await database.pool.query("update ledger_accounts set balance = balance + $2 where code = $1 and asset = 'usdt'", [
    accounts.channel(channelId, 'usdt').code,
    String(units),
  ]);
}

/** An alert as stored: the payload's own fields, and its times in the table's columns. */
interface AlertRow extends Pick<AlertPayload, 'id' | 'rule' | 'subject' | 'severity' | 'message' | 'details'> {
  first_seen_at: Date;
  last_seen_at: Date;
  resolved_at: Date | null;
  resolved_by: string | null;
}

async function alertsOf(rule: string, subject: string, database: TestDatabase = db): Promise<AlertRow[]> {
  const { rows } = await database.pool.query<AlertRow>(
    'select id::text, rule, subject, severity, message, details, first_seen_at, last_seen_at, resolved_at, resolved_by from alerts where rule = $1 and subject = $2 order by alerts.id',
    [rule, subject],
  );
  return rows;
}

async function onlyAlert(rule: string, subject: string, database: TestDatabase = db): Promise<AlertRow> {
  const rows = await alertsOf(rule, subject, database);
  expect(rows).toHaveLength(1);
  return rows[0] as AlertRow;
}

/** Fires on the first pass, resolves (on its own, not by a person) on the pass after `clear`. */
async function expectFiresThenResolves(
  rule: string,
  subject: string,
  clear: () => Promise<unknown>,
  options?: Parameters<typeof deps>[0],
): Promise<AlertRow> {
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

/** A finished IPN for the channel recorded as intake would (credited, pending conversion); its payment id. */
async function credit(channelId: string): Promise<string> {
  const paymentId = String(nextPayment++);
  const { raw, headers } = signed(
    ipnBody({ payment_id: Number(paymentId), order_id: `PGP-1|${channelId}` }),
    IPN_SECRET,
  );
  const reading = readIpn(raw, headers['x-nowpayments-sig'], IPN_SECRET);
  if (!reading.ok) throw new Error(reading.error);
  await recordIpn(db.db, reading.ipn, { feePercent: parsePercent('3') });
  return paymentId;
}

async function channel(strategy: 'threshold' | 'instant', thresholdUsd?: string): Promise<string> {
  const id = `-${nextChannel++}`;
  await upsertChannel(
    db.db,
    id,
    {
      payoutStrategy: strategy,
      ...(thresholdUsd && { thresholdUsd }),
      payoutCurrency: 'usdt',
      payoutNetwork: 'trx',
      walletAddress: TRON_WALLET,
    },
    'test',
  );
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

async function addJob(
  task: string,
  options: { runAtMinutesAgo?: number; maxAttempts?: number; key?: string } = {},
): Promise<string> {
  const { rows } = await db.pool.query<{ id: string }>(
    `select (graphile_worker.add_job($1, '{}'::json, run_at => now() - $2 * interval '1 minute', max_attempts => $3, job_key => $4)).id::text as id`,
    [task, options.runAtMinutesAgo ?? 0, options.maxAttempts ?? 25, options.key ?? null],
  );
  return (rows[0] as { id: string }).id;
}

async function notifyJobs(
  alertId: string,
): Promise<Array<{ key: string; max_attempts: number; queue_name: string | null }>> {
  const { rows } = await db.pool.query<{ key: string; max_attempts: number; queue_name: string | null }>(
    `select j.key, j.max_attempts, q.queue_name from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
       left join graphile_worker._private_job_queues q on q.id = j.job_queue_id
     where t.identifier = 'alert_notify' and j.payload->>'alertId' = $1 order by j.id`,
    [alertId],
  );
  return rows;
}

/** Evaluation options under which an unchanged open state alert is touched on every pass. */
const TOUCH_EVERY_PASS = { settings: { stateTouchEveryMs: 0 } };

async function observation(
  name: string,
  database: TestDatabase = db,
): Promise<
  | { ok: boolean; value: string | null; detail: string | null; observed_at: Date; failing_since: Date | null }
  | undefined
> {
  const { rows } = await database.pool.query(
    'select ok, value, detail, observed_at, failing_since from observations where name = $1',
    [name],
  );
  return rows[0];
}

describe('observations', () => {
  it('records the host wallet, the chain RPC and ChangeNow under their names, balances as integer text', async () => {
    const summary = await evaluate();
    expect(summary.skipped).toBe(false);
    const { rows } = await db.pool.query<{ name: string; ok: boolean; value: string | null; detail: string | null }>(
      'select name, ok, value, detail from observations order by name',
    );
    const wei = await outside.balanceOf(outside.hostAddress);
    expect(rows).toEqual([
      { name: 'chain_rpc', ok: true, value: expect.stringMatching(/^[0-9]+$/), detail: null },
      { name: 'changenow', ok: true, value: null, detail: null },
      { name: 'host_wallet.eth', ok: true, value: wei.toString(), detail: null },
      {
        name: 'host_wallet.usdt',
        ok: true,
        value: (await outside.usdtBalanceOf(outside.hostAddress)).toString(),
        detail: null,
      },
      // The ledger against the chain: these deps give the rules no chain (test/integration/ledger-chain.test.ts does).
      { name: 'ledger_chain_check', ok: true, value: 'no chain', detail: null },
      // The ledger check's last run: clean, no problems.
      { name: 'ledger_check', ok: true, value: '0', detail: null },
    ]);
  });

  it('an unreachable chain RPC and ChangeNow are recorded (no URL in the detail), alerted on the second failed pass in a row; back, the alerts resolve', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const unreachable = { rpcUrl: `${dead}/v3/secret-api-key-0123456789`, changenowUrl: dead };
    const summary = await evaluate(unreachable);
    expect(
      summary.observations
        .filter((o) => !o.ok)
        .map((o) => o.name)
        .sort(),
    ).toEqual(['chain_rpc', 'changenow', 'host_wallet.eth', 'host_wallet.usdt']);
    const { rows } = await db.pool.query<{
      name: string;
      detail: string;
      failing_since: Date | null;
      observed_at: Date;
    }>('select name, detail, failing_since, observed_at from observations where not ok order by name');
    for (const row of rows) {
      expect(row.detail).toBeTruthy();
      expect(row.detail).not.toContain('http://');
      expect(row.detail).not.toContain('secret-api-key');
      expect(row.failing_since).toEqual(row.observed_at);
    }
    // One failed probe is not an outage yet.
    expect(await alertsOf('chain_rpc_unreachable', 'chain_rpc')).toEqual([]);
    expect(await alertsOf('changenow_unreachable', 'changenow')).toEqual([]);

    await evaluate(unreachable);
    const rpcAlert = await onlyAlert('chain_rpc_unreachable', 'chain_rpc');
    expect(rpcAlert).toMatchObject({ severity: 'critical', resolved_at: null });
    expect(JSON.stringify(rpcAlert)).not.toContain('secret-api-key');
    const since = (await observation('chain_rpc'))?.failing_since;
    expect(since).toEqual(rows.find((r) => r.name === 'chain_rpc')?.failing_since);
    expect(rpcAlert.details.failingSince).toBe(since?.toISOString());
    expect((await onlyAlert('changenow_unreachable', 'changenow')).resolved_at).toBeNull();

    await evaluate();
    expect((await onlyAlert('chain_rpc_unreachable', 'chain_rpc')).resolved_at).not.toBeNull();
    expect((await onlyAlert('changenow_unreachable', 'changenow')).resolved_at).not.toBeNull();
    expect((await observation('chain_rpc'))?.failing_since).toBeNull();
  });

  it('a probe that fails once and then answers never alerts (no flapping)', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const before = {
      rpc: (await alertsOf('chain_rpc_unreachable', 'chain_rpc')).length,
      changenow: (await alertsOf('changenow_unreachable', 'changenow')).length,
    };
    await evaluate({ rpcUrl: dead, changenowUrl: dead });
    expect((await observation('changenow'))?.failing_since).not.toBeNull();
    await evaluate();
    await evaluate({ rpcUrl: dead, changenowUrl: dead });
    await evaluate();
    expect(await alertsOf('chain_rpc_unreachable', 'chain_rpc')).toHaveLength(before.rpc);
    expect(await alertsOf('changenow_unreachable', 'changenow')).toHaveLength(before.changenow);
    expect((await observation('changenow'))?.failing_since).toBeNull();
  });

  it('a refused ChangeNow key is a failed observation with its reason', async () => {
    await outside.sim.setFault('401');
    try {
      await evaluate();
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
      expect(low).toMatchObject({
        severity: 'warning',
        resolved_at: null,
        details: { asset: 'eth', balance: '0.01 ETH', floor: '0.05 ETH', units: '10000000000000000' },
      });
      // A pass that cannot see the balance (RPC down) leaves the alert as it is: a blind pass resolves nothing.
      await evaluate({ rpcUrl: `http://127.0.0.1:${await freePort()}` });
      expect((await onlyAlert('host_wallet_low', 'eth')).resolved_at).toBeNull();
      // One wei under the floor still fires; exactly at the floor does not.
      await rpc(outside.chain.rpcUrl, 'anvil_setBalance', [
        outside.hostAddress,
        `0x${(5n * 10n ** 16n - 1n).toString(16)}`,
      ]);
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
    await expectFiresThenResolves('host_wallet_low', 'usdt', () =>
      mintLocalUsdt(outside.chain.rpcUrl, outside.usdt, outside.hostKey, outside.hostAddress, 100_000_000n),
    );
  });

  it('a conversion not completed an hour after creation', async () => {
    const id = await insertConversion('sent', { ageHours: 2 });
    const fresh = await insertConversion('sent');
    const fired = await expectFiresThenResolves('conversion_pending_too_long', id, () =>
      db.pool.query("update conversions set status = 'completed' where conversion_id = $1", [id]),
    );
    expect(fired).toMatchObject({
      severity: 'warning',
      details: { conversionId: id, status: 'sent', amount: '0.0047239 ETH' },
    });
    expect(await alertsOf('conversion_pending_too_long', fresh)).toEqual([]);
  });

  it('a conversion in review, one alert per conversion', async () => {
    const a = await insertConversion('needs_review', { reason: 'exchange failed; the ETH sent has not come back' });
    const b = await insertConversion('needs_review', { reason: 'exchange still exchanging past the poll deadline' });
    await expectFiresThenResolves('conversion_needs_review', a, () =>
      db.pool.query("update conversions set status = 'failed' where conversion_id = $1", [a]),
    );
    expect(await onlyAlert('conversion_needs_review', b)).toMatchObject({
      resolved_at: null,
      details: { reason: 'exchange still exchanging past the poll deadline' },
    });
  });

  it('payouts failed, in review, or awaiting approval: one alert per payout', async () => {
    const failed = await insertPayout(
      await channel('threshold', '50'),
      'failed',
      'transfer reverted: the funds never left',
    );
    const review = await insertPayout(
      await channel('threshold', '50'),
      'needs_review',
      'ChangeNow refused the payout (pair_is_inactive)',
    );
    const waiting = await insertPayout(await channel('threshold', '50'), 'awaiting_approval', null);
    const fired = await expectFiresThenResolves('payout_needs_review', review, () =>
      db.pool.query("update payouts set status = 'cancelled' where payout_id = $1", [review]),
    );
    expect(fired).toMatchObject({
      severity: 'critical',
      details: { payoutId: review, amount: '60 USDT', reason: 'ChangeNow refused the payout (pair_is_inactive)' },
    });
    // Failed is final: the alert is about the failure, and resolves once it is older than ALERT_EVENT_RESOLVE_AFTER.
    await expectFiresThenResolves('payout_failed', failed, () =>
      db.pool.query(
        "update payouts set updated_at = now() - ($2 + 60000) * interval '1 millisecond' where payout_id = $1",
        [failed, base.eventResolveAfterMs],
      ),
    );
    // A payout that failed long ago is not read again (nor alerted).
    const old = await insertPayout(await channel('threshold', '50'), 'failed', 'long ago');
    await db.pool.query("update payouts set updated_at = now() - interval '30 days' where payout_id = $1", [old]);
    await evaluate();
    expect(await alertsOf('payout_failed', old)).toEqual([]);
    await expectFiresThenResolves('payout_awaiting_approval', waiting, () =>
      db.pool.query(
        "update payouts set status = 'pending', approved_by = 'alice', approved_at = now() where payout_id = $1",
        [waiting],
      ),
    );
  });

  it('payments held after ChangeNow refused their conversion (subject: its error code)', async () => {
    const channelId = await channel('threshold', '50');
    const paymentId = await credit(channelId);
    await insertConversion('failed', { reason: 'changenow unauthorized: ChangeNow create: HTTP 401 unauthorized' });
    await db.pool.query(
      "update payments set conversion_hold_until = now() + interval '2 hours' where payment_id = $1",
      [paymentId],
    );
    const fired = await expectFiresThenResolves('conversion_held', 'unauthorized', () =>
      db.pool.query('update payments set conversion_hold_until = null where payment_id = $1', [paymentId]),
    );
    expect(fired).toMatchObject({ severity: 'critical', details: { payments: 1, amount: '0.0047239 ETH' } });
  });

  it('credited payments no conversion took for longer than CONVERSION_MAX_WAIT + the limit: one alert; held ones are not counted', async () => {
    const channelId = await channel('threshold', '50');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await credit(channelId));
    const [old, held, fresh] = ids as [string, string, string];
    const past = base.paymentAwaitingConversionAfterMs + 60_000;
    await db.pool.query(
      "update payments set credited_at = now() - $2 * interval '1 millisecond' where payment_id = any($1::numeric[])",
      [[old, held], past],
    );
    await db.pool.query("update payments set conversion_hold_until = now() + interval '1 hour' where payment_id = $1", [
      held,
    ]);
    const fired = await expectFiresThenResolves('payments_awaiting_conversion', 'payments', () =>
      db.pool.query("update payments set conversion_status = 'converting' where payment_id = $1", [old]),
    );
    expect(fired).toMatchObject({ severity: 'warning', details: { payments: 1 } });
    expect(base.paymentAwaitingConversionAfterMs).toBe(2 * 3_600_000);
    await db.pool.query(
      "update payments set conversion_status = 'pending', credited_at = now(), conversion_hold_until = null where payment_id = any($1::numeric[])",
      [[old, held, fresh]],
    );
  });

  it('payments waiting in review: one alert while any waits (the oldest named, counted per reason), resolved when none does', async () => {
    const channelId = await channel('threshold', '50');
    const [first, second] = [await credit(channelId), await credit(channelId)];
    await db.pool.query(
      "update payments set review_reason = 'partially_paid', updated_at = now() - interval '2 hours' where payment_id = $1",
      [first],
    );
    await db.pool.query(
      "update payments set review_reason = 'foreign_outcome_currency: usdttrc20' where payment_id = $1",
      [second],
    );
    await evaluate();
    expect(await onlyAlert('payments_in_review', 'payments')).toMatchObject({
      details: { payments: 2, oldestPaymentId: first, byReason: { partially_paid: 1, foreign_outcome_currency: 1 } },
    });
    await db.pool.query('update payments set review_reason = null where payment_id = $1', [first]);
    // Still one waiting: the alert stays open, now naming the other.
    const fired = await expectFiresThenResolves('payments_in_review', 'payments', () =>
      db.pool.query('update payments set review_reason = null where payment_id = $1', [second]),
    );
    expect(fired).toMatchObject({
      severity: 'warning',
      details: { payments: 1, oldestPaymentId: second, byReason: { foreign_outcome_currency: 1 } },
    });
  });

  it('a threshold channel over its threshold with no batch for longer than the limit, however often it is credited', async () => {
    const channelId = await channel('threshold', '50');
    let credits = 0;
    const credit = (units: bigint) => creditUsdt(db, channelId, `${channelId}:${credits++}`, units);
    await credit(60_000_000n);
    // The channel was just set up (its threshold just checked): within the grace.
    await evaluate();
    expect(await alertsOf('threshold_no_batch', channelId)).toEqual([]);
    await db.pool.query("update channels set updated_at = now() - interval '2 hours' where channel_id = $1", [
      channelId,
    ]);
    // Its last batch ended (cancelled, the funds back) half an hour ago: its threshold check may still be on its way.
    const previous = await insertPayout(channelId, 'cancelled', 'cancelled by hand');
    await db.pool.query("update payouts set updated_at = now() - interval '30 minutes' where payout_id = $1", [
      previous,
    ]);
    await credit(1_000_000n);
    await evaluate();
    expect(await alertsOf('threshold_no_batch', channelId)).toEqual([]);
    // Two hours since the batch ended: a credit a moment ago (the balance row just changed) does not restart the clock.
    await db.pool.query("update payouts set updated_at = now() - interval '2 hours' where payout_id = $1", [previous]);
    await credit(1_000_000n);
    const fired = await expectFiresThenResolves('threshold_no_batch', channelId, async () => {
      await credit(1_000_000n);
      await insertPayout(channelId, 'pending', null);
    });
    expect(fired.details).toMatchObject({ balance: '62 USDT', threshold: '50 USD' });
  });

  it('a task with more runnable jobs than the limit, or an old runnable job', async () => {
    const deep = [await addJob('threshold_check'), await addJob('threshold_check'), await addJob('threshold_check')];
    await expectFiresThenResolves(
      'queue_depth',
      'threshold_check',
      () => db.pool.query('delete from graphile_worker._private_jobs where id = any($1::bigint[])', [deep]),
      { settings: { queueDepth: 2 } },
    );
    const old = await addJob('payout_poll', { runAtMinutesAgo: 10 });
    const fired = await expectFiresThenResolves('queue_age', 'payout_poll', () =>
      db.pool.query('delete from graphile_worker._private_jobs where id = $1', [old]),
    );
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
    await db.pool.query(
      "update graphile_worker._private_jobs set attempts = 1, locked_at = now(), locked_by = 'test-worker' where id = $1",
      [running],
    );
    const fired = await expectFiresThenResolves('job_failed_permanently', failed, () =>
      db.pool.query('delete from graphile_worker._private_jobs where id = $1', [failed]),
    );
    expect(fired).toMatchObject({
      severity: 'critical',
      details: {
        jobId: failed,
        task: 'conversion_batch',
        jobKey: 'conversion_batch:nudge-test',
        attempts: 1,
        maxAttempts: 1,
        lastError: null,
      },
    });
    expect(await alertsOf('job_failed_permanently', running)).toEqual([]);
    await db.pool.query('delete from graphile_worker._private_jobs where id = $1', [running]);
  });

  it('failed webhook deliveries are one alert_webhook_failed, never sent to the failing webhook', async () => {
    const job = await addJob('alert_notify', { maxAttempts: 10, key: 'alert_notify:999999:firing' });
    await db.pool.query(
      "update graphile_worker._private_jobs set attempts = max_attempts, last_error = 'alert webhook answered HTTP 503' where id = $1",
      [job],
    );
    await evaluate({ notify: true });
    const alert = await onlyAlert('alert_webhook_failed', 'webhook');
    expect(alert).toMatchObject({
      resolved_at: null,
      details: { failedDeliveries: 1, lastError: 'alert webhook answered HTTP 503' },
    });
    expect(await alertsOf('job_failed_permanently', job)).toEqual([]);
    expect(await notifyJobs(alert.id)).toEqual([]);
    await db.pool.query('delete from graphile_worker._private_jobs where id = $1', [job]);
    await evaluate({ notify: true });
    expect((await onlyAlert('alert_webhook_failed', 'webhook')).resolved_at).not.toBeNull();
    expect(await notifyJobs(alert.id)).toEqual([]);

    // Resolved by hand, it is not sent either (its resolution would go to the failing webhook).
    const again = await addJob('alert_notify', { maxAttempts: 10, key: 'alert_notify:999998:firing' });
    await db.pool.query(
      "update graphile_worker._private_jobs set attempts = max_attempts, last_error = 'alert webhook answered HTTP 503' where id = $1",
      [again],
    );
    await evaluate({ notify: true });
    const second = (await alertsOf('alert_webhook_failed', 'webhook')).at(-1) as AlertRow;
    expect(second.resolved_at).toBeNull();
    expect(await resolveAlertByHand(db.db, second.id, 'admin', { notify: true })).toMatchObject({
      outcome: 'resolved',
    });
    expect(await notifyJobs(second.id)).toEqual([]);
    await db.pool.query('delete from graphile_worker._private_jobs where id = $1', [again]);
    await evaluate({ notify: true });
  });

  it('a broken ledger invariant (tampered balance), one alert per invariant; repaired, it resolves', async () => {
    const tamper = await createTestDatabase({ prefix: 'tamper' });
    try {
      const only = {
        ...deps({ database: tamper }),
        rules: STATE_RULES.filter((r) => r.name === 'ledger_invariant_broken'),
      };
      await creditUsdt(tamper, '-1003499999999', 'tamper', 5n);
      await evaluateAlerts(only);
      expect(await alertsOf('ledger_invariant_broken', 'balance_matches_entries', tamper)).toEqual([]);
      await driftUsdtBalance(tamper, '-1003499999999', 1n);
      await evaluateAlerts(only);
      const fired = await onlyAlert('ledger_invariant_broken', 'balance_matches_entries', tamper);
      expect(fired).toMatchObject({
        severity: 'critical',
        resolved_at: null,
        details: { invariant: 'balance_matches_entries', count: 1 },
      });
      await driftUsdtBalance(tamper, '-1003499999999', -1n);
      await evaluateAlerts(only);
      expect(
        (await onlyAlert('ledger_invariant_broken', 'balance_matches_entries', tamper)).resolved_at,
      ).not.toBeNull();
    } finally {
      await tamper.close();
    }
  });

  it('the ledger check runs once per its period across processes: its last run is claimed in observations', async () => {
    const tamper = await createTestDatabase({ prefix: 'tamper' });
    try {
      // A fresh deps each time, as two worker processes would have: nothing is remembered in memory.
      const worker = () => ({
        ...deps({ database: tamper, settings: { ledgerCheckEveryMs: 600_000 } }),
        rules: STATE_RULES.filter((r) => r.name === 'ledger_invariant_broken'),
      });
      await evaluateAlerts(worker());
      const first = await observation('ledger_check', tamper);
      expect(first).toMatchObject({ ok: true, value: '0', detail: null, failing_since: null });
      await creditUsdt(tamper, '-1003499999998', 'throttle', 5n);
      await driftUsdtBalance(tamper, '-1003499999998', 1n);
      // Within the period: the other worker does not run it (the broken balance waits for the next run).
      await evaluateAlerts(worker());
      expect(await alertsOf('ledger_invariant_broken', 'balance_matches_entries', tamper)).toEqual([]);
      expect((await observation('ledger_check', tamper))?.observed_at).toEqual(first?.observed_at);
      // The period over: it runs, finds the problem, and records it.
      await tamper.pool.query(
        "update observations set observed_at = now() - interval '11 minutes' where name = 'ledger_check'",
      );
      await evaluateAlerts(worker());
      expect((await onlyAlert('ledger_invariant_broken', 'balance_matches_entries', tamper)).resolved_at).toBeNull();
      const second = await observation('ledger_check', tamper);
      expect(second).toMatchObject({ ok: false, value: '1', detail: null });
      expect(second?.failing_since).toEqual(second?.observed_at);
    } finally {
      await tamper.close();
    }
  });

  it('a throttled check that fails counts as its run: it is not retried every pass', async () => {
    let runs = 0;
    const failing: StateRule = {
      name: 'test_throttled_check',
      severity: 'warning',
      throttle: { observation: 'test_throttled_check', everyMs: () => 600_000 },
      async evaluate() {
        runs += 1;
        throw new Error('statement timeout');
      },
    };
    try {
      await evaluateAlerts({ ...deps(), rules: [failing] });
      await evaluateAlerts({ ...deps(), rules: [failing] });
      expect(runs).toBe(1);
      expect(await observation('test_throttled_check')).toMatchObject({
        ok: false,
        value: null,
        detail: 'check failed: statement timeout',
      });
      expect(await onlyAlert('alert_rule_failed', 'test_throttled_check')).toMatchObject({
        resolved_at: null,
        details: { error: 'statement timeout' },
      });
    } finally {
      await db.pool.query("delete from observations where name = 'test_throttled_check'");
    }
  });
});

describe('one alert, however many evaluate', () => {
  it('passes run twice, or at once, keep one alert per rule and subject', async () => {
    const id = await insertConversion('needs_review', { reason: 'concurrency' });
    await evaluate();
    const first = await onlyAlert('conversion_needs_review', id);
    await evaluate(TOUCH_EVERY_PASS);
    const again = await onlyAlert('conversion_needs_review', id);
    expect(again.id).toBe(first.id);
    expect(again.first_seen_at).toEqual(first.first_seen_at);
    expect(again.last_seen_at.getTime()).toBeGreaterThan(first.last_seen_at.getTime());

    const other = await insertConversion('needs_review', { reason: 'concurrency, at once' });
    const summaries = await Promise.all([evaluate(), evaluate(), evaluate()]);
    expect(summaries.some((s) => !s.skipped)).toBe(true);
    expect(await alertsOf('conversion_needs_review', other)).toHaveLength(1);
    const { rows } = await db.pool.query<{ n: number }>(
      'select count(*)::int as n from (select rule, subject from alerts where resolved_at is null group by rule, subject having count(*) > 1) dup',
    );
    expect(rows[0]?.n).toBe(0);
  });

  it('an open state alert is not rewritten by a pass that finds it unchanged, until its last sighting gets stale', async () => {
    const id = await insertConversion('needs_review', { reason: 'unchanged' });
    const version = async () =>
      (
        await db.pool.query<{ xmin: string; last_seen_at: Date; message: string }>(
          'select xmin::text, last_seen_at, message from alerts where rule = $1 and subject = $2 and resolved_at is null',
          ['conversion_needs_review', id],
        )
      ).rows[0];
    await evaluate();
    const first = await version();
    await evaluate();
    await evaluate();
    // Same row version: no write at all.
    expect(await version()).toEqual(first);
    // The evidence changed: written at once.
    await db.pool.query("update conversions set reason = 'changed' where conversion_id = $1", [id]);
    await evaluate();
    const changed = await version();
    expect(changed?.xmin).not.toBe(first?.xmin);
    expect(changed?.message).toContain('changed');
    // Unchanged but last seen longer ago than stateTouchEveryMs: touched.
    await db.pool.query(
      "update alerts set last_seen_at = now() - interval '16 minutes' where rule = 'conversion_needs_review' and subject = $1",
      [id],
    );
    const stale = await version();
    await evaluate();
    expect((await version())?.last_seen_at.getTime()).toBeGreaterThan(stale?.last_seen_at.getTime() ?? Infinity);
    await db.pool.query("update conversions set status = 'failed' where conversion_id = $1", [id]);
    await evaluate();
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
    const alert = {
      rule: 'transfer_refused',
      subject: 'tr_concurrent',
      severity: 'critical' as const,
      message: 'the node refused a host wallet transfer',
      details: { transferId: 'tr_concurrent', amount: 5n },
    };
    await Promise.all(Array.from({ length: 5 }, () => raiseAlert(db.db, alert, { logger })));
    const row = await onlyAlert('transfer_refused', 'tr_concurrent');
    expect(row.details).toEqual({ transferId: 'tr_concurrent', amount: '5' });
    const lines = logs.lines.slice(before).filter((l) => l.event === 'alert' && l.alert === 'transfer_refused');
    expect(lines).toHaveLength(5);
    expect(lines[0]).toMatchObject({
      level: 50,
      subject: 'tr_concurrent',
      transferId: 'tr_concurrent',
      msg: 'the node refused a host wallet transfer',
    });
  });

  it('an event raised in a transaction that rolls back leaves nothing', async () => {
    await db.db
      .transaction()
      .execute(async (trx) => {
        await raiseAlert(
          trx,
          { rule: 'transfer_unconfirmed', subject: 'tr_rolled_back', severity: 'critical', message: 'x' },
          { logger, notify: true },
        );
        throw new Error('roll back');
      })
      .catch(() => undefined);
    expect(await alertsOf('transfer_unconfirmed', 'tr_rolled_back')).toEqual([]);
    const { rows } = await db.pool
      .query(`select 1 from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
      where t.identifier = 'alert_notify' and j.payload->>'alertId' not in (select id::text from alerts)`);
    expect(rows).toEqual([]);
  });
});

/** An event alert about a conversion with more than one exchange, as the pipeline raises it. */
function duplicateExchanges(conversionId: string) {
  const message = 'more than one exchange for a conversion';
  return { rule: 'duplicate_exchanges', subject: conversionId, severity: 'critical' as const, message };
}

/** An alert last seen 25 hours ago (first two days ago): quiet for longer than ALERT_EVENT_RESOLVE_AFTER. */
async function goneQuiet(alertId: string): Promise<void> {
  await db.pool.query(
    "update alerts set first_seen_at = now() - interval '2 days', last_seen_at = now() - interval '25 hours' where id = $1",
    [alertId],
  );
}

describe('resolution', () => {
  it('an event alert resolves once quiet for ALERT_EVENT_RESOLVE_AFTER; raised again, it is a new alert', async () => {
    const alert = duplicateExchanges('conv_quiet');
    await raiseAlert(db.db, alert, { logger });
    await evaluate();
    const open = await onlyAlert('duplicate_exchanges', 'conv_quiet');
    expect(open.resolved_at).toBeNull();
    await goneQuiet(open.id);
    await evaluate();
    const quiet = await onlyAlert('duplicate_exchanges', 'conv_quiet');
    expect(quiet.resolved_at).not.toBeNull();
    expect(quiet.resolved_by).toBeNull();
    await raiseAlert(db.db, alert, { logger });
    const rows = await alertsOf('duplicate_exchanges', 'conv_quiet');
    expect(rows.map((r) => r.resolved_at === null)).toEqual([false, true]);
  });

  it('an event alert raised again while a pass resolves quiet ones stays open', async () => {
    const alert = duplicateExchanges('conv_raced');
    await raiseAlert(db.db, alert, { logger });
    const open = await onlyAlert('duplicate_exchanges', 'conv_raced');
    await goneQuiet(open.id);
    // A raiser's touch, not yet committed, when the pass reaches its quiet events.
    const raiser = new pg.Client({ connectionString: db.url });
    await raiser.connect();
    try {
      await raiser.query('begin');
      await raiser.query('update alerts set last_seen_at = now() where id = $1', [open.id]);
      const pass = evaluate();
      await eventually('the pass waiting for the raiser', async () => {
        const { rows } = await db.pool.query<{ n: number }>(
          "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
        );
        return (rows[0]?.n ?? 0) > 0;
      });
      await raiser.query('commit');
      await pass;
    } finally {
      await raiser.end();
    }
    expect((await onlyAlert('duplicate_exchanges', 'conv_raced')).resolved_at).toBeNull();
  });

  it('a state alert resolved by hand while its condition holds stays resolved; once the condition clears, the next occurrence opens a new one', async () => {
    const payrail = await startTestPayrail(db, { roles: { web: true, worker: false } });
    try {
      const id = await insertConversion('needs_review', { reason: 'held by hand' });
      await evaluate();
      const open = await onlyAlert('conversion_needs_review', id);
      const res = await payrail.request('POST', `/api/alerts/${open.id}/resolve`, {
        body: { note: 'looking into it' },
      });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ id: open.id, state: 'resolved', resolvedBy: 'admin' });

      // Still in review: passes do not reopen it, they keep its last sighting current.
      await evaluate(TOUCH_EVERY_PASS);
      await evaluate(TOUCH_EVERY_PASS);
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
      expect(rows.map((r) => [r.resolved_at === null, r.resolved_by])).toEqual([
        [false, 'admin'],
        [true, null],
      ]);
    } finally {
      await payrail.stop();
    }
  });
});

describe('webhook jobs', () => {
  it('queued in the same transaction as the opening and the resolution, only when a webhook is configured', async () => {
    await raiseAlert(
      db.db,
      { rule: 'transfer_refused', subject: 'tr_silent', severity: 'critical', message: 'refused' },
      { logger, notify: false },
    );
    expect(await notifyJobs((await onlyAlert('transfer_refused', 'tr_silent')).id)).toEqual([]);

    const alert = { rule: 'transfer_refused', subject: 'tr_told', severity: 'critical' as const, message: 'refused' };
    await raiseAlert(db.db, alert, { logger, notify: true });
    await raiseAlert(db.db, alert, { logger, notify: true });
    const row = await onlyAlert('transfer_refused', 'tr_told');
    expect(await notifyJobs(row.id)).toEqual([
      { key: `alert_notify:${row.id}:firing`, max_attempts: 10, queue_name: 'alert_notify' },
    ]);

    const id = await insertConversion('needs_review', { reason: 'told' });
    await evaluate({ notify: true });
    const opened = await onlyAlert('conversion_needs_review', id);
    expect(await notifyJobs(opened.id)).toEqual([
      { key: `alert_notify:${opened.id}:firing`, max_attempts: 10, queue_name: 'alert_notify' },
    ]);
    await db.pool.query("update conversions set status = 'failed' where conversion_id = $1", [id]);
    await evaluate({ notify: true });
    expect((await notifyJobs(opened.id)).map((j) => j.key)).toEqual([
      `alert_notify:${opened.id}:firing`,
      `alert_notify:${opened.id}:resolved`,
    ]);

    // An event alert gone quiet queues its resolution in the same statement's transaction.
    await raiseAlert(
      db.db,
      { rule: 'transfer_refused', subject: 'tr_quiet_told', severity: 'critical', message: 'refused' },
      { logger, notify: true },
    );
    const quiet = await onlyAlert('transfer_refused', 'tr_quiet_told');
    await goneQuiet(quiet.id);
    await evaluate({ notify: true });
    expect((await onlyAlert('transfer_refused', 'tr_quiet_told')).resolved_at).not.toBeNull();
    expect(await notifyJobs(quiet.id)).toEqual([
      { key: `alert_notify:${quiet.id}:firing`, max_attempts: 10, queue_name: 'alert_notify' },
      { key: `alert_notify:${quiet.id}:resolved`, max_attempts: 10, queue_name: 'alert_notify' },
    ]);
    await db.pool.query(
      "delete from graphile_worker._private_jobs j using graphile_worker._private_tasks t where t.id = j.task_id and t.identifier = 'alert_notify'",
    );
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
    expect(
      open.body.alerts.every(
        (a: { state: string; resolvedAt: string | null }) => a.state === 'open' && a.resolvedAt === null,
      ),
    ).toBe(true);
    expect(open.body.alerts[0]).toEqual({
      id: expect.any(String),
      rule: expect.any(String),
      subject: expect.any(String),
      severity: expect.stringMatching(/^(warning|critical)$/),
      message: expect.any(String),
      details: expect.any(Object),
      state: 'open',
      firstSeenAt: expect.any(String),
      lastSeenAt: expect.any(String),
      resolvedAt: null,
      resolvedBy: null,
    });
    const resolved = await web.request('GET', '/api/alerts?state=resolved');
    expect(resolved.body.alerts.every((a: { state: string }) => a.state === 'resolved')).toBe(true);
    const all = await web.request('GET', '/api/alerts?state=all&limit=2');
    expect(all.body.alerts).toHaveLength(2);
    expect((await web.request('GET', '/api/alerts?state=firing')).status).toBe(400);
    expect((await web.request('GET', '/api/alerts?limit=0')).status).toBe(400);
  });

  it('POST /api/alerts/:id/resolve resolves once, records who in the audit log, and queues nothing without a webhook', async () => {
    await raiseAlert(
      db.db,
      { rule: 'exchange_mismatch', subject: 'conv_api', severity: 'critical', message: 'mismatch' },
      { logger },
    );
    const alert = await onlyAlert('exchange_mismatch', 'conv_api');
    expect((await web.request('POST', `/api/alerts/${alert.id}/resolve`, { token: null })).status).toBe(401);
    expect((await onlyAlert('exchange_mismatch', 'conv_api')).resolved_at).toBeNull();

    const res = await web.request('POST', `/api/alerts/${alert.id}/resolve`, {
      body: { note: 'exchange checked by hand' },
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      id: alert.id,
      rule: 'exchange_mismatch',
      subject: 'conv_api',
      state: 'resolved',
      resolvedBy: 'admin',
      resolvedAt: expect.any(String),
    });
    const { rows } = await db.pool.query('select actor, action, subject, details from audit_log where subject = $1', [
      `alert:${alert.id}`,
    ]);
    expect(rows).toEqual([
      {
        actor: 'admin',
        action: 'alert.resolve',
        subject: `alert:${alert.id}`,
        details: {
          rule: 'exchange_mismatch',
          subject: 'conv_api',
          severity: 'critical',
          note: 'exchange checked by hand',
        },
      },
    ]);
    expect(await notifyJobs(alert.id)).toEqual([]);

    expect((await web.request('POST', `/api/alerts/${alert.id}/resolve`)).status).toBe(409);
    expect((await web.request('POST', '/api/alerts/999999999/resolve')).status).toBe(404);
    expect((await web.request('POST', '/api/alerts/not-an-id/resolve')).status).toBe(400);
    expect(
      (await web.request('POST', `/api/alerts/${alert.id}/resolve`, { body: { note: 'x', extra: 1 } })).status,
    ).toBe(400);
    expect((await web.request('GET', `/api/alerts/${alert.id}`)).body).toMatchObject({
      id: alert.id,
      state: 'resolved',
    });
  });
});

describe('configuration', () => {
  it('a host wallet floor the asset cannot hold stops the start, naming the variable', () => {
    const config = loadConfig({
      DATABASE_URL: 'postgres://u@127.0.0.1/x',
      ADMIN_TOKEN,
      NOWPAYMENTS_IPN_SECRET: IPN_SECRET,
      HOST_WALLET_PRIVATE_KEY: UNUSED_WALLET_KEY,
      CHANGENOW_API_KEY: SIM_API_KEY,
      CHANGENOW_API_URL: 'http://127.0.0.1:9',
      ETH_RPC_URL: 'http://127.0.0.1:9',
      ALERT_HOST_USDT_MIN: '1.0000001',
    });
    expect(() => alertSettings(config, [])).toThrow(ConfigError);
    expect(() => alertSettings(config, [])).toThrow(/ALERT_HOST_USDT_MIN/);
  });

  it('the webhook URL needs its secret', () => {
    expect(() =>
      loadConfig({
        ADMIN_TOKEN,
        NOWPAYMENTS_IPN_SECRET: IPN_SECRET,
        HOST_WALLET_PRIVATE_KEY: UNUSED_WALLET_KEY,
        CHANGENOW_API_KEY: SIM_API_KEY,
        ALERT_WEBHOOK_URL: 'http://127.0.0.1:1/hook',
      }),
    ).toThrow(/ALERT_WEBHOOK_SECRET/);
  });
});
