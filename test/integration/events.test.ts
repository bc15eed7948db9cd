/**
 * Events out: the stable order of GET /api/events under concurrent transactions, webhook endpoints (validation, the
 * secret shown once), signed deliveries in order per subject, retries while a receiver is down, giving up after the
 * retry window with an alert and a person's retry, and deleted endpoints.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it as base } from 'vitest';
import { evaluateAlerts } from '../../src/alerts/evaluate.ts';
import { eventRules } from '../../src/alerts/rules-events.ts';
import { createLogger } from '../../src/log.ts';
import { ASSET_DECIMALS } from '../../src/money/index.ts';
import { dispatchEvents, verifyEventSignature, type DispatchSettings } from '../../src/events/index.ts';
import { defaultAlertSettings } from '../support/alert-settings.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { IPN_SECRET, startTestPayrail, type TestPayrail } from '../support/payrail.ts';
import { startReceiver, type Receiver } from '../support/receiver.ts';
import { ipnBody, signed } from '../support/ipn.ts';

const logger = createLogger({ level: 'silent' });

/** An event as the triggers write it, for the tests that write their own. */
interface NewEvent {
  type: string;
  subject: string;
  data: Record<string, unknown>;
}
const WALLET = '0x8ba1f109551bD432803012645Ac136ddd64DBA72';
const SETTINGS: DispatchSettings = {
  retryMinDelayMs: 50,
  retryWindowMs: 60_000,
  timeoutMs: 2_000,
  pollIntervalMs: 100,
};

let db: TestDatabase;
let payrail: TestPayrail;

/** A local receiver, started only for the tests that take it, and closed after each whatever its outcome. */
const it = base.extend<{ receiver: Receiver }>({
  // eslint-disable-next-line no-empty-pattern -- vitest reads a fixture's dependencies from this destructuring
  receiver: async ({}, use) => {
    const receiver = await startReceiver();
    await use(receiver);
    await receiver.close();
  },
});

beforeAll(async () => {
  db = await createTestDatabase();
  // Web only: the tests drive each dispatch pass themselves.
  payrail = await startTestPayrail(db, {
    roles: { web: true, worker: false },
    env: { PUBLIC_URL: 'https://pay.example.com' },
  });
});

afterAll(async () => {
  await payrail?.stop();
  await db?.close();
});

function paymentEvent(paymentId: string, type: NewEvent['type'] = 'payment.received'): NewEvent {
  return {
    type,
    subject: `payment:${paymentId}`,
    data: { paymentId, channelId: '-1001', userId: '42', amount: { asset: 'ETH', amount: '0.0105' } },
  };
}

async function emit(...events: NewEvent[]): Promise<void> {
  await db.db.transaction().execute(async (trx) => {
    for (const event of events)
      await trx
        .insertInto('events')
        .values({ type: event.type, subject: event.subject, data: JSON.stringify(event.data) })
        .execute();
  });
}

function dispatch(settings: Partial<DispatchSettings> = {}) {
  return dispatchEvents({ db: db.db, logger, settings: { ...SETTINGS, ...settings } });
}

async function register(receiver: Receiver, eventTypes: string[] = ['payment.received', 'payment.credited']) {
  const created = await payrail.request('POST', '/api/webhook-endpoints', { body: { url: receiver.url, eventTypes } });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  return created.body as { id: string; secret: string };
}

interface Pulled {
  id: string;
  type: string;
  subject: string;
  data: Record<string, unknown>;
}

async function allEvents(): Promise<Pulled[]> {
  const out: Pulled[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await payrail.request('GET', `/api/events?limit=2${cursor ? `&after=${cursor}` : ''}`);
    expect(page.status).toBe(200);
    out.push(...(page.body.events as typeof out));
    if (page.body.events.length === 0) return out;
    cursor = page.body.next as string;
  }
}

describe('GET /api/events', () => {
  it('never shows an event behind a cursor already past it: a transaction committing late is waited for', async () => {
    const before = await allEvents();
    const late = await db.pool.connect();
    try {
      await late.query('begin');
      // This transaction writes first (smaller seq and txid) and commits last.
      await late.query(
        `insert into events (type, subject, data) values ('payment.received', 'payment:late', '{"paymentId":"late"}')`,
      );
      await emit(paymentEvent('early'));
      const whileOpen = await payrail.request('GET', '/api/events?limit=1000');
      expect(whileOpen.body.events.map((e: { subject: string }) => e.subject)).toEqual(before.map((e) => e.subject));
      await late.query('commit');
    } finally {
      late.release();
    }
    const after = await allEvents();
    expect(after.slice(before.length).map((e) => e.subject)).toEqual(['payment:late', 'payment:early']);
  });

  it('pages with a cursor, filters by type and refuses what is not a cursor or a type', async () => {
    await emit(paymentEvent('p1', 'payment.credited'));
    const credited = await payrail.request('GET', '/api/events?type=payment.credited');
    expect(credited.body.events.map((e: { subject: string }) => e.subject)).toEqual(['payment:p1']);
    expect(credited.body.events[0]).toMatchObject({
      type: 'payment.credited',
      data: { paymentId: 'p1', amount: { asset: 'ETH', amount: '0.0105' } },
    });
    expect(credited.body.events[0].id).toMatch(/^[0-9a-f-]{36}$/);
    expect(credited.body.events[0].sequence).toMatch(/^[1-9][0-9]*$/);
    const empty = await payrail.request('GET', `/api/events?after=${credited.body.next}&type=payment.credited`);
    expect(empty.body).toEqual({ events: [], next: credited.body.next });
    for (const query of [
      'after=12',
      'after=x.y',
      'after=99999999999999999999.1',
      'after=1.9223372036854775808',
      'type=payment.nope',
      'limit=0',
      'limit=1001',
      'other=1',
    ]) {
      const bad = await payrail.request('GET', `/api/events?${query}`);
      expect(bad.status, query).toBe(400);
    }
    expect((await payrail.request('GET', '/api/events', { token: null })).status).toBe(401);
  });
});

describe('webhook endpoints', () => {
  it('refuses a URL that is not http(s), points at payrail itself, or an unknown event type; stores nothing', async () => {
    const self = new URL(payrail.url);
    for (const url of [
      'ftp://example.com/hook',
      'not a url',
      `http://127.0.0.1:${self.port}/x`,
      `http://localhost:${self.port}/`,
      `http://localhost.:${self.port}/`,
      `http://[::ffff:127.0.0.1]:${self.port}/`,
      `http://[::1]:${self.port}/`,
      `http://127.1:${self.port}/`,
      `http://0:${self.port}/`,
      'https://pay.example.com/hook',
      'http://PAY.example.com./hook',
      'https://user:secret@example.com/hook',
      'http://example.com:25/hook',
    ]) {
      const refused = await payrail.request('POST', '/api/webhook-endpoints', {
        body: { url, eventTypes: ['payment.credited'] },
      });
      expect(refused.status, url).toBe(400);
    }
    for (const body of [
      { url: 'https://example.com', eventTypes: [] },
      { url: 'https://example.com', eventTypes: ['x'] },
      { url: 'https://example.com' },
    ]) {
      expect((await payrail.request('POST', '/api/webhook-endpoints', { body })).status).toBe(400);
    }
    const { rows } = await db.pool.query('select count(*)::int as n from webhook_endpoints');
    expect(rows[0].n).toBe(0);
  });

  it('shows the secret once, at creation', async ({ receiver }) => {
    const created = await register(receiver);
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    const shown = await payrail.request('GET', `/api/webhook-endpoints/${created.id}`);
    expect(shown.body).toMatchObject({
      id: created.id,
      url: receiver.url,
      eventTypes: ['payment.credited', 'payment.received'],
    });
    expect(JSON.stringify(shown.body)).not.toContain(created.secret);
    expect(JSON.stringify((await payrail.request('GET', '/api/webhook-endpoints')).body)).not.toContain(created.secret);
    expect((await payrail.request('DELETE', `/api/webhook-endpoints/${created.id}`)).status).toBe(200);
    expect((await payrail.request('DELETE', `/api/webhook-endpoints/${created.id}`)).status).toBe(404);
  });

  it('delivers signed events committed after registration, in order per subject, and keeps their attempts', async ({
    receiver,
  }) => {
    await emit(paymentEvent('before-registration'));
    const endpoint = await register(receiver);
    await emit(paymentEvent('a'), paymentEvent('a', 'payment.credited'), paymentEvent('b'));
    await emit({ type: 'payout.opened', subject: 'payout:x', data: { payoutId: 'x' } });
    await dispatch();
    await dispatch();
    expect(receiver.received.map((r) => `${r.event.subject} ${r.event.type}`).sort()).toEqual([
      'payment:a payment.credited',
      'payment:a payment.received',
      'payment:b payment.received',
    ]);
    // payment:a's second event waited for its first to be acknowledged.
    const forA = receiver.received.filter((r) => r.event.subject === 'payment:a').map((r) => r.event.type);
    expect(forA).toEqual(['payment.received', 'payment.credited']);
    for (const r of receiver.received) {
      expect(
        verifyEventSignature({
          secret: endpoint.secret,
          body: r.body,
          header: r.headers['payrail-signature'] as string,
        }),
      ).toBe(true);
      expect(
        verifyEventSignature({ secret: 'another', body: r.body, header: r.headers['payrail-signature'] as string }),
      ).toBe(false);
      expect(r.headers['payrail-event-id']).toBe(r.event.id);
    }
    const deliveries = await payrail.request('GET', `/api/webhook-endpoints/${endpoint.id}/deliveries`);
    expect(deliveries.body.deliveries).toHaveLength(3);
    expect(deliveries.body.deliveries[0]).toMatchObject({ status: 'delivered', attempts: 1, lastStatus: 200 });
    expect(deliveries.body.deliveries[0].recentAttempts).toHaveLength(1);
    await payrail.request('DELETE', `/api/webhook-endpoints/${endpoint.id}`);
  });

  it('a receiver down for a while gets every event afterwards, once per id it acknowledged', async ({ receiver }) => {
    const endpoint = await register(receiver);
    receiver.answer(503);
    await emit(paymentEvent('c'), paymentEvent('c', 'payment.credited'), paymentEvent('d'));
    for (let i = 0; i < 3; i++) {
      await dispatch();
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(receiver.acknowledged).toHaveLength(0);
    // Only the head of each subject was tried: payment:c's credit waits behind its receipt.
    expect(new Set(receiver.received.map((r) => r.event.type))).toEqual(new Set(['payment.received']));
    const failing = await payrail.request('GET', `/api/webhook-endpoints/${endpoint.id}/deliveries?status=pending`);
    expect(
      failing.body.deliveries.some(
        (d: { attempts: number; lastStatus: number }) => d.attempts >= 2 && d.lastStatus === 503,
      ),
    ).toBe(true);
    const alerts = await evaluateAlertsNow();
    expect(alerts).toContain(`event_endpoint_failing:${endpoint.id}`);

    receiver.answer(200);
    await expect
      .poll(
        async () => {
          await dispatch();
          return receiver.acknowledged.length;
        },
        { timeout: 20_000, interval: 300 },
      )
      .toBe(3);
    const ids = receiver.acknowledged.map((r) => r.event.id);
    expect(new Set(ids).size).toBe(3);
    await dispatch();
    expect(receiver.acknowledged).toHaveLength(3);
    expect(await evaluateAlertsNow()).not.toContain(`event_endpoint_failing:${endpoint.id}`);
    await payrail.request('DELETE', `/api/webhook-endpoints/${endpoint.id}`);
  });

  it('gives up after the retry window, lets the subject go on, and a person retries the failed delivery', async ({
    receiver,
  }) => {
    const endpoint = await register(receiver);
    receiver.answer(500);
    await emit(paymentEvent('e'));
    await dispatch();
    expect(receiver.received).toHaveLength(1);
    await emit(paymentEvent('e', 'payment.credited'));
    // The window has passed for the head, which was first tried two minutes ago; the credit queued behind it is old
    // too, but has never been tried: its window starts at its first attempt.
    await sql`update webhook_deliveries set first_attempt_at = now() - interval '2 minutes', next_attempt_at = now()
      where first_attempt_at is not null`.execute(db.db);
    await sql`update webhook_deliveries set created_at = now() - interval '2 minutes'`.execute(db.db);
    const summary = await dispatch();
    expect(summary.givenUp).toBe(1);
    expect(receiver.received.map((r) => r.event.type)).toEqual(['payment.received', 'payment.credited']);
    const pending = await payrail.request('GET', `/api/webhook-endpoints/${endpoint.id}/deliveries?status=pending`);
    expect(pending.body.deliveries).toMatchObject([{ eventType: 'payment.credited', attempts: 1 }]);
    receiver.answer(200);
    await sql`update webhook_deliveries set next_attempt_at = now() where status = 'pending'`.execute(db.db);
    await dispatch();
    expect(receiver.acknowledged.map((r) => r.event.type)).toEqual(['payment.credited']);
    expect(await evaluateAlertsNow()).toContain(`event_endpoint_failing:${endpoint.id}`);

    const failed = await payrail.request('GET', `/api/webhook-endpoints/${endpoint.id}/deliveries?status=failed`);
    expect(failed.body.deliveries).toHaveLength(1);
    const eventId = failed.body.deliveries[0].eventId as string;
    const path = `/api/webhook-endpoints/${endpoint.id}/deliveries/${eventId}/retry`;
    expect((await payrail.request('POST', path)).status).toBe(200);
    expect((await payrail.request('POST', path)).status).toBe(409);
    const retried = await payrail.request('GET', `/api/webhook-endpoints/${endpoint.id}/deliveries?status=pending`);
    // A fresh start: its attempts count from zero again, so it is not alerted or backed off as a long failure.
    expect(retried.body.deliveries).toMatchObject([{ eventId, attempts: 0 }]);
    await dispatch();
    expect(receiver.acknowledged.map((r) => r.event.type)).toEqual(['payment.credited', 'payment.received']);
    expect(await evaluateAlertsNow()).not.toContain(`event_endpoint_failing:${endpoint.id}`);
    const audit = await db.pool.query(`select action from audit_log where action like 'webhook_%' order by id`);
    expect(audit.rows.map((r) => r.action)).toContain('webhook_delivery.retry');
    await payrail.request('DELETE', `/api/webhook-endpoints/${endpoint.id}`);
  });

  it('a deleted endpoint gets nothing more', async ({ receiver }) => {
    const endpoint = await register(receiver);
    await payrail.request('DELETE', `/api/webhook-endpoints/${endpoint.id}`);
    await emit(paymentEvent('f'));
    await dispatch();
    expect(receiver.received).toHaveLength(0);
  });
});

describe('event triggers', () => {
  it('write amounts with the decimals of src/money/assets.ts, exactly, and refuse an asset they do not know', async () => {
    const amount = async (units: string, asset: string) =>
      (
        await db.pool.query<{ a: { asset: string; amount: string } }>(
          'select payrail_event_amount($1::numeric, $2) as a',
          [units, asset],
        )
      ).rows[0]!.a;
    for (const [asset, decimals] of Object.entries(ASSET_DECIMALS)) {
      expect(await amount(`123${'0'.repeat(decimals - 1)}7`, asset)).toEqual({
        asset,
        amount: `123.${'0'.repeat(decimals - 1)}7`,
      });
      expect(await amount(`1${'0'.repeat(decimals)}`, asset)).toEqual({ asset, amount: '1' });
      expect(await amount('0', asset)).toEqual({ asset, amount: '0' });
    }
    await expect(amount('1', 'btc')).rejects.toThrow(/no decimals known for asset btc/);
  });

  it('a refund reversal, a failed payout and a payout in review are events with exact amounts', async () => {
    const channelId = '-1009000000001';
    const saved = await payrail.request('PUT', `/api/channels/${channelId}`, {
      body: { payoutStrategy: 'instant', payoutCurrency: 'eth', payoutNetwork: 'eth', walletAddress: WALLET },
    });
    expect(saved.status).toBe(201);
    const { raw, headers } = signed(ipnBody({ payment_id: 9_900_000_001, order_id: `PGP-5|${channelId}` }), IPN_SECRET);
    expect((await payrail.request('POST', '/webhooks/nowpayments', { raw, headers, token: null })).status).toBe(200);
    const before = await allEvents();
    // Each fact as the pipeline's own guarded updates make it; here written directly, the triggers being the subject.
    await sql`insert into payouts (payout_id, kind, channel_id, payment_id, status, asset, amount, payout_currency,
        payout_network, wallet_address)
      values ('po_events_1', 'instant', ${channelId}, 9900000001, 'pending', 'eth', 4723900000000000, 'eth', 'eth', ${WALLET})`.execute(
      db.db,
    );
    await sql`update payouts set status = 'needs_review', reason = 'exchange unlike the request' where payout_id = 'po_events_1'`.execute(
      db.db,
    );
    await sql`update payouts set status = 'failed', reason = 'cancelled by a person' where payout_id = 'po_events_1'`.execute(
      db.db,
    );
    await sql`update payments set reversed_at = now() where payment_id = 9900000001`.execute(db.db);
    const added = (await allEvents()).slice(before.length);
    expect(added.map((e) => e.type)).toEqual([
      'payout.opened',
      'payout.needs_review',
      'payout.failed',
      'payment.refunded',
    ]);
    expect(added[1]!.data).toMatchObject({ payoutId: 'po_events_1', reason: 'exchange unlike the request' });
    expect(added[2]!.data).toMatchObject({ status: 'failed', amount: { asset: 'eth', amount: '0.0047239' } });
    expect(added[3]!.data).toMatchObject({
      paymentId: '9900000001',
      channelId,
      userId: '5',
      gross: { asset: 'eth', amount: '0.00487' },
      fee: { asset: 'eth', amount: '0.0001461' },
      net: { asset: 'eth', amount: '0.0047239' },
    });
  });
});

/** One alert evaluation pass; the open alerts as rule:subject. */
async function evaluateAlertsNow(): Promise<string[]> {
  await evaluateAlerts(alertDeps());
  const { rows } = await db.pool.query<{ rule: string; subject: string }>(
    'select rule, subject from alerts where resolved_at is null',
  );
  return rows.map((r) => `${r.rule}:${r.subject}`);
}

function alertDeps(): Parameters<typeof evaluateAlerts>[0] {
  return {
    db: db.db,
    logger,
    wallet: { balance: async () => 0n, blockNumber: async () => 1n },
    exchange: { listExchanges: async () => [] },
    settings: defaultAlertSettings(db.url),
    notify: false,
    rules: eventRules,
  };
}
