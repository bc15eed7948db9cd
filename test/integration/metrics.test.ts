// Its own databases, not the shared fixtures' world: most cases need no chain or ChangeNow, some no payrail at all.
/**
 * GET /metrics scraped over real HTTP and parsed strictly: IPN answers by outcome (refusals included), the database's
 * figures (payments, queue, host wallet, alerts, amounts as exact decimals), the token, and a run through the worker
 * (ChangeNow calls and job attempts), in one process and split into web and worker processes.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openPool } from '../../src/db/index.ts';
import { createLogger } from '../../src/log.ts';
import { createMetrics } from '../../src/metrics/index.ts';
import { bareHttpApp, unreachableDatabase } from '../support/bare-app.ts';
import { bookHostFunding, expectLedgerEqualsChain } from '../support/ledger-chain.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { fixtures, ipnBody, signed } from '../support/ipn.ts';
import { eventually, startOutside, type Outside } from '../support/outside.ts';
import { freePort } from '../support/ports.ts';
import { IPN_SECRET, logSink, startTestPayrail, type TestPayrail } from '../support/payrail.ts';
import { parseExposition, type Exposition } from '../support/prometheus.ts';

const WALLET = '0x8ba1f109551bD432803012645Ac136ddd64DBA72';
const INSTANT = '-1003500000001';
const THRESHOLD = '-1003500000002';
const METRICS_TOKEN = 'metrics-token-0123456789abcdef';

const started: TestPayrail[] = [];
let nextPaymentId = 8_500_000_000;

async function start(db: TestDatabase, options: Parameters<typeof startTestPayrail>[1] = {}): Promise<TestPayrail> {
  const payrail = await startTestPayrail(db, options);
  started.push(payrail);
  return payrail;
}

afterEach(async () => {
  for (const payrail of started.splice(0)) await payrail.stop();
});

async function scrape(
  base: string,
  token?: string,
): Promise<{ status: number; contentType: string | null; text: string }> {
  const response = await fetch(`${base}/metrics`, {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  return { status: response.status, contentType: response.headers.get('content-type'), text: await response.text() };
}

async function metrics(base: string, token?: string): Promise<Exposition> {
  const res = await scrape(base, token);
  expect(res.status).toBe(200);
  expect(res.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  const exposition = parseExposition(res.text);
  expectConventions(exposition);
  return exposition;
}

/**
 * payrail_ prefix, _total for counters only, durations in _seconds, HELP text on every family. Node's own figures
 * (payrail_process_) keep prom-client's standard names, which dashboards know, gauges such as
 * nodejs_active_handles_total included.
 */
function expectConventions(exposition: Exposition): void {
  expect(exposition.families.get('payrail_process_nodejs_eventloop_lag_p99_seconds')?.type).toBe('gauge');
  for (const family of exposition.families.values()) {
    expect(family.name, family.name).toMatch(/^payrail_[a-z0-9_]+$/);
    expect(family.help.length, family.name).toBeGreaterThan(10);
    if (family.name.startsWith('payrail_process_')) continue;
    if (family.type === 'counter') expect(family.name).toMatch(/_total$/);
    else expect(family.name).not.toMatch(/_total$/);
    if (family.type === 'histogram') expect(family.name).toMatch(/_seconds$/);
  }
}

async function channel(payrail: TestPayrail, id: string, body: Record<string, string>) {
  const res = await payrail.request('PUT', `/api/channels/${id}`, {
    body: { payoutCurrency: 'usdt', payoutNetwork: 'eth', walletAddress: WALLET, ...body },
  });
  expect([200, 201]).toContain(res.status);
}

async function postIpn(payrail: TestPayrail, raw: string, headers: Record<string, string>): Promise<number> {
  const response = await fetch(`${payrail.url}/webhooks/nowpayments`, { method: 'POST', headers, body: raw });
  await response.text();
  return response.status;
}

async function pay(
  payrail: TestPayrail,
  channelId: string,
  overrides: Record<string, unknown> = {},
): Promise<{ id: number; status: number }> {
  const id = nextPaymentId++;
  const { raw, headers } = signed(
    ipnBody({ payment_id: id, order_id: `PGP-1|${channelId}`, ...overrides }),
    IPN_SECRET,
  );
  await payrail.forwardOutcome(raw);
  return { id, status: await postIpn(payrail, raw, headers) };
}

/** An exact decimal from PostgreSQL's own numeric division: an independent check of the amount formatting. */
async function decimalFromDb(db: TestDatabase, query: string, decimals: number): Promise<string> {
  const { rows } = await db.pool.query<{ v: string }>(`select trim_scale((${query}) / 1e${decimals})::text as v`);
  return rows[0]?.v ?? 'missing';
}

describe('GET /metrics on a web process', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => db?.close());

  it('counts IPNs by outcome, refusals included, and reports the database figures', async () => {
    // Web only: the queued jobs stay queued, so the queue figures are exact.
    const web = await start(db, { roles: { web: true, worker: false }, env: { WEBHOOK_BODY_LIMIT_BYTES: '4096' } });
    await channel(web, INSTANT, { payoutStrategy: 'instant' });

    const first = await pay(web, INSTANT);
    expect(first.status).toBe(200);
    const again = signed(ipnBody({ payment_id: first.id, order_id: `PGP-1|${INSTANT}` }), IPN_SECRET);
    expect(await postIpn(web, again.raw, again.headers)).toBe(200);
    const waiting = fixtures.sequence.find((b) => b.payment_status === 'waiting') as Record<string, unknown>;
    const second = nextPaymentId++;
    const asWaiting = signed(
      { ...structuredClone(waiting), payment_id: second, order_id: `PGP-1|${INSTANT}` },
      IPN_SECRET,
    );
    expect(await postIpn(web, asWaiting.raw, asWaiting.headers)).toBe(200);
    const confirming = fixtures.sequence.find((b) => b.payment_status === 'confirming') as Record<string, unknown>;
    const asConfirming = signed(
      { ...structuredClone(confirming), payment_id: second, order_id: `PGP-1|${INSTANT}` },
      IPN_SECRET,
    );
    expect(await postIpn(web, asConfirming.raw, asConfirming.headers)).toBe(200);
    expect((await pay(web, '-1003599999999')).status).toBe(202); // unknown channel: kept for review

    const good = signed(ipnBody({ payment_id: nextPaymentId++, order_id: `PGP-1|${INSTANT}` }), IPN_SECRET);
    expect(await postIpn(web, good.raw, { ...good.headers, 'x-nowpayments-sig': 'f'.repeat(128) })).toBe(401);
    expect(await postIpn(web, 'not json', { 'content-type': 'application/json', 'x-nowpayments-sig': 'ab' })).toBe(400);
    expect(
      await postIpn(web, `{"pad":"${'x'.repeat(5_000)}"}`, {
        'content-type': 'application/json',
        'x-nowpayments-sig': 'ab',
      }),
    ).toBe(413);
    // Other routes are not IPNs.
    expect((await fetch(`${web.url}/webhooks/nowpayments`)).status).toBe(404);

    await db.pool.query(`insert into observations (name, ok, value, detail) values
      ('host_wallet.eth', true, '1234500000000000000', null),
      ('host_wallet.usdt', true, '12345678901', null),
      ('chain_rpc', true, '19000000', null),
      ('changenow', false, null, 'ChangeNow estimate: network: connect ECONNREFUSED')`);
    await db.pool.query(`insert into alerts (rule, subject, severity, message) values
      ('queue_depth', 'payout_instant', 'critical', 'deep'),
      ('host_wallet_low', 'usdt', 'warning', 'low')`);
    await db.pool.query(
      `insert into alerts (rule, subject, severity, message, resolved_at) values ('queue_depth', 'transfer_send', 'critical', 'was deep', now())`,
    );

    const m = await metrics(web.url);
    const ipn = (outcome: string) => m.value('payrail_ipn_received_total', { outcome });
    expect({
      recorded: ipn('recorded'),
      unchanged: ipn('unchanged'),
      advanced: ipn('advanced'),
      review: ipn('review'),
      bad_signature: ipn('bad_signature'),
      invalid: ipn('invalid'),
      too_large: ipn('too_large'),
      source_refused: ipn('source_refused'),
      rate_limited: ipn('rate_limited'),
      error: ipn('error'),
    }).toEqual({
      recorded: '2',
      unchanged: '1',
      advanced: '1',
      review: '1',
      bad_signature: '1',
      invalid: '1',
      too_large: '1',
      source_refused: '0',
      rate_limited: '0',
      error: '0',
    });

    expect(m.value('payrail_database_up')).toBe('1');
    expect(m.value('payrail_payments', { status: 'finished' })).toBe('2');
    expect(m.value('payrail_payments', { status: 'confirming' })).toBe('1');
    expect(m.value('payrail_payments', { status: 'waiting' })).toBe('0');
    expect(m.value('payrail_conversions', { state: 'pending' })).toBe('0');
    expect(m.value('payrail_payouts', { state: 'completed', kind: 'instant' })).toBe('0');
    expect(m.value('payrail_queue_runnable_jobs', { task: 'payout_instant' })).toBe('1');
    expect(m.number('payrail_queue_oldest_runnable_age_seconds', { task: 'payout_instant' })).toBeGreaterThanOrEqual(0);
    expect(m.value('payrail_queue_failed_jobs', { task: 'payout_instant' })).toBe('0');

    expect(m.value('payrail_host_wallet_balance', { asset: 'eth' })).toBe('1.2345');
    expect(m.value('payrail_host_wallet_balance', { asset: 'usdt' })).toBe('12345.678901');
    expect(m.value('payrail_chain_rpc_up')).toBe('1');
    expect(m.value('payrail_chain_block_number')).toBe('19000000');
    expect(m.value('payrail_changenow_up')).toBe('0');
    expect(m.number('payrail_observation_age_seconds', { name: 'changenow' })).toBeGreaterThanOrEqual(0);

    // Open alerts only: the resolved one is not firing.
    const firing = m.samples('payrail_alerts_firing').map((s) => `${s.labels.rule}/${s.labels.severity}=${s.value}`);
    expect(firing.sort()).toEqual(['host_wallet_low/warning=1', 'queue_depth/critical=1']);
    expect(m.value('payrail_converted_amount', { asset: 'usdt' })).toBe('0');
    expect(m.value('payrail_paid_out_amount', { asset: 'usdt' })).toBe('0');
    expect(m.families.get('payrail_paid_out_amount')?.type).toBe('gauge');
    // A web process runs no jobs: the families are declared, with no samples.
    expect(m.samples('payrail_job_attempts_total')).toEqual([]);
  });

  it("keeps each payrail instance's counts apart, and counts the guard's refusals (403, 429)", async () => {
    const guarded = await start(db, {
      roles: { web: true, worker: false },
      env: { NOWPAYMENTS_ALLOWED_IPS: '10.0.0.0/8' },
    });
    const limited = await start(db, { roles: { web: true, worker: false }, env: { WEBHOOK_RATE_LIMIT: '1' } });
    expect((await pay(guarded, INSTANT)).status).toBe(403);
    expect((await pay(guarded, INSTANT)).status).toBe(403);
    // The one request a minute this source has, then two refused (a token comes back only after a minute).
    expect((await pay(limited, '-1003599999999')).status).toBe(202);
    expect((await pay(limited, INSTANT)).status).toBe(429);
    expect((await pay(limited, INSTANT)).status).toBe(429);

    const g = await metrics(guarded.url);
    const l = await metrics(limited.url);
    expect([
      g.value('payrail_ipn_received_total', { outcome: 'source_refused' }),
      g.value('payrail_ipn_received_total', { outcome: 'rate_limited' }),
    ]).toEqual(['2', '0']);
    expect([
      l.value('payrail_ipn_received_total', { outcome: 'source_refused' }),
      l.value('payrail_ipn_received_total', { outcome: 'rate_limited' }),
      l.value('payrail_ipn_received_total', { outcome: 'review' }),
    ]).toEqual(['0', '2', '1']);
  });

  it('asks for METRICS_TOKEN when it is set', async () => {
    const web = await start(db, { roles: { web: true, worker: false }, env: { METRICS_TOKEN } });
    const without = await scrape(web.url);
    expect(without.status).toBe(401);
    expect(without.text).not.toContain('payrail_');
    expect((await scrape(web.url, 'metrics-token-0123456789abcdeX')).status).toBe(401);
    expect((await scrape(web.url, 'test-admin-token-0123456789')).status).toBe(401);
    const withToken = await metrics(web.url, METRICS_TOKEN);
    expect(withToken.value('payrail_database_up')).toBe('1');
  });

  it('is open without METRICS_TOKEN', async () => {
    const web = await start(db, { roles: { web: true, worker: false } });
    expect((await scrape(web.url)).status).toBe(200);
  });

  it('reads the whole-history counts at most once a minute, the open figures at every scrape', async () => {
    const web = await start(db, { roles: { web: true, worker: false } });
    const before = await metrics(web.url);
    const finished = before.value('payrail_payments', { status: 'finished' });
    await db.pool.query(
      `insert into alerts (rule, subject, severity, message) values ('conversion_pending', 'conv_x', 'warning', 'late')`,
    );
    expect((await pay(web, INSTANT)).status).toBe(200);
    const after = await metrics(web.url);
    expect(after.value('payrail_payments', { status: 'finished' })).toBe(finished);
    expect(after.number('payrail_history_figures_age_seconds')).toBeGreaterThanOrEqual(0);
    expect(after.value('payrail_alerts_firing', { rule: 'conversion_pending', severity: 'warning' })).toBe('1');
    expect(after.value('payrail_ipn_received_total', { outcome: 'recorded' })).toBe('1');
  });

  it("warns at start when /metrics is open on the webhook's port, and when a worker-only process serves no /metrics", async () => {
    const exposure = async (roles: { web: boolean; worker: boolean }, env: Record<string, string> = {}) => {
      const logs = logSink();
      await start(db, { roles, env, logs });
      return logs.lines
        .filter((l) => l.event === 'metrics_open' || l.event === 'worker_metrics_off')
        .map((l) => [l.event, l.level]);
    };
    // startTestPayrail sets DATABASE_URL: these are deployments. 40 is pino's warn.
    expect(await exposure({ web: true, worker: false })).toEqual([['metrics_open', 40]]);
    expect(await exposure({ web: true, worker: false }, { METRICS_TOKEN })).toEqual([]);
    expect(await exposure({ web: false, worker: true })).toEqual([['worker_metrics_off', 40]]);
    expect(await exposure({ web: false, worker: true }, { WORKER_METRICS_PORT: '0', METRICS_TOKEN })).toEqual([]);
    expect(await exposure({ web: false, worker: true }, { WORKER_METRICS_PORT: '0' })).toEqual([['metrics_open', 40]]);
  });

  it('keeps the last good history figures, waits a minute after a failed history read, and keeps payrail_database_up at 1', async () => {
    // A role that may read everything but payments: the history read fails on a real permission error while the
    // live read beside it (which never touches payments) goes on.
    const reader = `metrics_reader_${randomBytes(4).toString('hex')}`;
    const password = randomBytes(12).toString('hex');
    await db.pool.query(`create role ${reader} login password '${password}'`);
    await db.pool.query(`grant usage on schema public, graphile_worker to ${reader}`);
    await db.pool.query(`grant select on all tables in schema public, graphile_worker to ${reader}`);
    const url = new URL(db.url);
    url.username = reader;
    url.password = password;
    const limited = openPool(url.toString(), {
      max: 2,
      applicationName: 'metrics-reader',
      logger: createLogger({ level: 'silent' }),
    });
    let clock = Date.now();
    const metricsOf = createMetrics({ alertIntervalMs: 60_000, now: () => clock });
    const warnings: Array<Record<string, unknown>> = [];
    const logger = { warn: (fields: Record<string, unknown>) => void warnings.push(fields) };
    const scrapeNow = async () => parseExposition(await metricsOf.render({ db: limited.db, logger }));
    try {
      const good = await scrapeNow();
      const finished = good.value('payrail_payments', { status: 'finished' });
      expect(finished).toMatch(/^\d+$/);
      expect(good.value('payrail_history_figures_age_seconds')).toBe('0');

      await db.pool.query(`revoke select on payments from ${reader}`);
      await db.pool.query(
        `insert into alerts (rule, subject, severity, message) values ('conversion_stuck', 'conv_history', 'critical', 'stuck')`,
      );
      clock += 61_000;
      const failed = await scrapeNow();
      expect(failed.value('payrail_database_up')).toBe('1');
      expect(failed.value('payrail_payments', { status: 'finished' })).toBe(finished);
      expect(failed.value('payrail_payouts', { state: 'completed', kind: 'threshold' })).toBe(
        good.value('payrail_payouts', { state: 'completed', kind: 'threshold' }),
      );
      expect(failed.value('payrail_paid_out_amount', { asset: 'usdt' })).toBe(
        good.value('payrail_paid_out_amount', { asset: 'usdt' }),
      );
      expect(failed.value('payrail_history_figures_age_seconds')).toBe('61');
      // The live figures are this scrape's own.
      expect(failed.value('payrail_alerts_firing', { rule: 'conversion_stuck', severity: 'critical' })).toBe('1');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({
        event: 'metrics_history_failed',
        err: expect.stringMatching(/permission denied/),
        servingAgeSeconds: 61,
      });

      // Readable again, but the failed attempt started the minute: the next read waits until it has passed.
      await db.pool.query(`grant select on payments to ${reader}`);
      clock += 30_000;
      const waiting = await scrapeNow();
      expect(waiting.value('payrail_history_figures_age_seconds')).toBe('91');
      expect(warnings).toHaveLength(1);
      clock += 30_000;
      const recovered = await scrapeNow();
      expect(recovered.value('payrail_history_figures_age_seconds')).toBe('0');
      expect(recovered.value('payrail_payments', { status: 'finished' })).toBe(finished);

      // A process whose first history read fails leaves those families out: zero payments would be a false figure.
      await db.pool.query(`revoke select on payments from ${reader}`);
      const fresh = parseExposition(
        await createMetrics({ alertIntervalMs: 60_000 }).render({ db: limited.db, logger }),
      );
      expect(fresh.value('payrail_database_up')).toBe('1');
      expect(fresh.families.has('payrail_payments')).toBe(false);
      expect(fresh.families.has('payrail_history_figures_age_seconds')).toBe(false);
      expect(fresh.families.has('payrail_paid_out_amount')).toBe(false);
      expect(fresh.value('payrail_payouts', { state: 'completed', kind: 'instant' })).toBeUndefined();
      expect(fresh.value('payrail_payouts', { state: 'pending', kind: 'instant' })).toMatch(/^\d+$/);
      expect(fresh.value('payrail_alerts_firing', { rule: 'conversion_stuck', severity: 'critical' })).toBe('1');
    } finally {
      await limited.close();
      await db.pool.query(`delete from alerts where subject = 'conv_history'`);
      await db.pool.query(`drop owned by ${reader}`);
      await db.pool.query(`drop role ${reader}`);
    }
  });

  it('leaves out the up gauges and balances of an observation older than three alert intervals', async () => {
    // Web only: no worker refreshes the observations written here. ALERT_INTERVAL 1m: stale after 180 s.
    const web = await start(db, { roles: { web: true, worker: false } });
    await db.pool.query(`insert into observations (name, ok, value, detail, observed_at) values
        ('chain_rpc', true, '19000002', null, now() - interval '1 hour'),
        ('changenow', true, null, null, now() - interval '181 seconds'),
        ('host_wallet.eth', true, '1000000000000000000', null, now() - interval '1 hour'),
        ('host_wallet.usdt', true, '5000000', null, now() - interval '170 seconds')
      on conflict (name) do update set ok = excluded.ok, value = excluded.value, detail = excluded.detail, observed_at = excluded.observed_at`);
    const m = await metrics(web.url);
    expect(m.families.has('payrail_chain_rpc_up')).toBe(false);
    expect(m.families.has('payrail_chain_block_number')).toBe(false);
    expect(m.families.has('payrail_changenow_up')).toBe(false);
    expect(m.value('payrail_host_wallet_balance', { asset: 'eth' })).toBeUndefined();
    expect(m.value('payrail_host_wallet_balance', { asset: 'usdt' })).toBe('5');
    expect({
      chain: m.value('payrail_observation_stale', { name: 'chain_rpc' }),
      changenow: m.value('payrail_observation_stale', { name: 'changenow' }),
      eth: m.value('payrail_observation_stale', { name: 'host_wallet.eth' }),
      usdt: m.value('payrail_observation_stale', { name: 'host_wallet.usdt' }),
    }).toEqual({ chain: '1', changenow: '1', eth: '1', usdt: '0' });
    expect(m.number('payrail_observation_age_seconds', { name: 'chain_rpc' })).toBeGreaterThanOrEqual(3_600);

    // A longer ALERT_INTERVAL moves the line: with 5m, an hour-old observation is still stale, a 181 s one is not.
    const slow = await start(db, { roles: { web: true, worker: false }, env: { ALERT_INTERVAL: '5m' } });
    const s = await metrics(slow.url);
    expect(s.families.has('payrail_chain_rpc_up')).toBe(false);
    expect(s.value('payrail_changenow_up')).toBe('1');
    expect(s.value('payrail_observation_stale', { name: 'changenow' })).toBe('0');
  });

  it('still answers, with payrail_database_up 0, when the database cannot be read', async () => {
    const dead = await unreachableDatabase();
    const app = await bareHttpApp(dead.db, { metrics: createMetrics({ alertIntervalMs: 60_000 }) });
    try {
      expect(
        (
          await app.inject({
            method: 'POST',
            url: '/webhooks/nowpayments',
            payload: 'x',
            headers: { 'content-type': 'application/json' },
          })
        ).statusCode,
      ).toBe(401);
      const res = await app.inject({ method: 'GET', url: '/metrics' });
      expect(res.statusCode).toBe(200);
      const m = parseExposition(res.body);
      expect(m.value('payrail_database_up')).toBe('0');
      expect(m.value('payrail_ipn_received_total', { outcome: 'bad_signature' })).toBe('1');
      expect(m.families.has('payrail_payments')).toBe(false);
    } finally {
      await app.close();
      await dead.close();
    }
  });
});

describe('GET /metrics through a worker run', () => {
  let outside: Outside;
  let db: TestDatabase;
  beforeAll(async () => {
    outside = await startOutside();
    db = await createTestDatabase();
    await bookHostFunding(db, outside);
  });
  afterAll(async () => {
    try {
      if (db && outside) await expectLedgerEqualsChain(db, outside);
    } finally {
      await db?.close();
      await outside?.stop();
    }
  });

  it('payrail start: one /metrics carries ChangeNow calls, job attempts and the exact amounts converted and paid out', async () => {
    // Two payments are worth ≈ 27 USDT: the first alone stays below the 20 USD minimum, the second makes one
    // conversion of both, and the channel's balance is then over its 20 USD threshold: one batch, paid out.
    const payrail = await start(db, { outside, env: { ...outside.env, CONVERSION_MIN_USD: '20' } });
    await channel(payrail, THRESHOLD, { payoutStrategy: 'threshold', thresholdUsd: '20.00' });
    expect((await pay(payrail, THRESHOLD)).status).toBe(200);
    expect((await pay(payrail, THRESHOLD)).status).toBe(200);
    await eventually(
      'the batch paid out',
      async () => (await db.pool.query("select 1 from payouts where status = 'completed'")).rows.length === 1,
    );

    const m = await metrics(payrail.url);
    const calls = (endpoint: string) =>
      m.number('payrail_changenow_request_duration_seconds_count', { endpoint, result: 'ok' }) ?? 0;
    expect(calls('estimate')).toBeGreaterThanOrEqual(1);
    expect(calls('create')).toBe(1);
    expect(calls('by-id')).toBeGreaterThanOrEqual(1);
    expect(m.samples('payrail_changenow_errors_total')).toEqual([]);

    const attempts = (task: string) => m.number('payrail_job_attempts_total', { task, result: 'success' }) ?? 0;
    expect(attempts('conversion_exchange')).toBe(1);
    expect(attempts('transfer_send')).toBeGreaterThanOrEqual(2); // the conversion's ETH, the payout's USDT
    expect(attempts('conversion_poll')).toBeGreaterThanOrEqual(1);
    // The conversion's ETH (the payout's own confirm job may still be ending as its completion shows).
    expect(attempts('transfer_confirm')).toBeGreaterThanOrEqual(1);
    // The batch (USDT on eth, nothing to approve) was sent by the settlement that opened it: it had no run.
    expect(attempts('payout_run')).toBe(0);
    expect(m.number('payrail_job_duration_seconds_count', { task: 'conversion_exchange', result: 'success' })).toBe(1);
    expect(m.number('payrail_job_wait_seconds_count', { task: 'conversion_exchange' })).toBe(1);

    expect(m.value('payrail_ipn_received_total', { outcome: 'recorded' })).toBe('2');
    expect(m.value('payrail_conversions', { state: 'completed' })).toBe('1');
    expect(m.value('payrail_payouts', { state: 'completed', kind: 'threshold' })).toBe('1');
    expect(m.value('payrail_conversion_input_amount', { asset: 'eth' })).toBe(
      await decimalFromDb(db, "select sum(amount_wei) from conversions where status = 'completed'", 18),
    );
    expect(m.value('payrail_converted_amount', { asset: 'usdt' })).toBe(
      await decimalFromDb(db, "select sum(usdt_received) from conversions where status = 'completed'", 6),
    );
    expect(m.value('payrail_paid_out_amount', { asset: 'usdt' })).toBe(
      await decimalFromDb(db, "select sum(amount) from payouts where status = 'completed' and asset = 'usdt'", 6),
    );
    expect(m.value('payrail_converted_amount', { asset: 'usdt' })).toMatch(/^2\d\.\d+$/);
  });

  it('payrail worker: serves its own /metrics on WORKER_METRICS_PORT, behind METRICS_TOKEN; the web process keeps the database figures', async () => {
    const port = await freePort();
    const worker = await start(db, {
      outside,
      roles: { web: false, worker: true },
      env: { ...outside.env, WORKER_METRICS_PORT: String(port), METRICS_TOKEN },
    });
    const web = await start(db, {
      outside,
      roles: { web: true, worker: false },
      env: { ...outside.env, METRICS_TOKEN },
    });
    expect(worker.metricsUrl).toBe(`http://127.0.0.1:${port}`);
    const workerUrl = worker.metricsUrl as string;
    expect((await scrape(workerUrl)).status).toBe(401);
    expect((await fetch(`${workerUrl}/health`)).status).toBe(404);

    // A threshold credit nudges a conversion check: the worker runs it and asks ChangeNow for an estimate.
    expect((await pay(web, THRESHOLD)).status).toBe(200);
    await eventually(
      'the worker ran a conversion check',
      async () =>
        ((await metrics(workerUrl, METRICS_TOKEN)).number('payrail_job_attempts_total', {
          task: 'conversion_batch',
          result: 'success',
        }) ?? 0) >= 1,
    );

    const w = await metrics(workerUrl, METRICS_TOKEN);
    expect(
      w.number('payrail_changenow_request_duration_seconds_count', { endpoint: 'estimate', result: 'ok' }),
    ).toBeGreaterThanOrEqual(1);
    expect(w.families.has('payrail_payments')).toBe(false);
    expect(w.value('payrail_ipn_received_total', { outcome: 'recorded' })).toBe('0');

    const s = await metrics(web.url, METRICS_TOKEN);
    expect(s.value('payrail_ipn_received_total', { outcome: 'recorded' })).toBe('1');
    expect(s.samples('payrail_job_attempts_total')).toEqual([]);
    expect(s.value('payrail_payments', { status: 'finished' })).toBe('3');
  });
});
