import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkLedger } from '../../src/ledger/index.ts';
import { instantEthChannel, usdtThresholdChannel, WALLET } from '../support/api-seed.ts';
import { createChannelPair } from '../support/channels.ts';
import { createTestDatabase, rowCounts, type RowCounts, type TestDatabase } from '../support/db.ts';
import { fixtures, ipnBody, signed } from '../support/ipn.ts';
import { IPN_SECRET, startTestPayrail, type TestPayrail } from '../support/payrail.ts';

const THRESHOLD_CHANNEL = '-1001000000001';
const INSTANT_CHANNEL = '-1001000000002';

let db: TestDatabase;
let payrail: TestPayrail;
let nextPaymentId = 6_000_000_000;

function send(body: Record<string, unknown> | string) {
  const { raw, headers } = signed(body, IPN_SECRET);
  return payrail.request('POST', '/webhooks/nowpayments', { raw, headers, token: null });
}

function finishedFor(channelId: string, overrides: Record<string, unknown> = {}) {
  return ipnBody({ payment_id: nextPaymentId++, order_id: `PGP-6271402111|${channelId}`, ...overrides });
}

async function balance(channelId: string, asset = 'eth'): Promise<string | undefined> {
  const res = await payrail.request('GET', `/api/channels/${channelId}`);
  return res.body.balances?.find((b: { asset: string }) => b.asset === asset)?.amount;
}

async function jobsFor(task: string) {
  const { rows } = await db.pool.query(
    `select j.key, j.payload, j.max_attempts from graphile_worker._private_jobs j
     join graphile_worker._private_tasks t on t.id = j.task_id where t.identifier = $1 order by j.id`,
    [task],
  );
  return rows;
}

beforeAll(async () => {
  db = await createTestDatabase();
  // Web only: no worker picks the instant payout jobs up, so they can be inspected where intake left them.
  payrail = await startTestPayrail(db, { roles: { web: true, worker: false } });
  await createChannelPair(
    payrail,
    { threshold: [THRESHOLD_CHANNEL, 'usdt'], instant: [INSTANT_CHANNEL, 'usdt'] },
    WALLET,
  );
});

afterAll(async () => {
  await payrail?.stop();
  await db?.close();
});

describe('a finished IPN for a threshold channel', () => {
  it('records the payment, splits the fee exactly, credits the ledger and leaves the conversion pending', async () => {
    const body = finishedFor(THRESHOLD_CHANNEL);
    const res = await send(body);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ paymentId: String(body.payment_id), status: 'finished', outcome: 'recorded' });

    const payment = (await payrail.request('GET', `/api/payments/${body.payment_id}`)).body;
    expect(payment).toMatchObject({
      paymentId: String(body.payment_id),
      channelId: THRESHOLD_CHANNEL,
      status: 'finished',
      asset: 'eth',
      grossAmount: '0.00487',
      feeAmount: '0.0001461',
      netAmount: '0.0047239',
      feePercent: '3',
      payoutStrategy: 'threshold',
      conversion: { status: 'pending', attempts: 0, lastAttemptAt: null, usdtAmount: null, rate: null },
    });
    expect(await balance(THRESHOLD_CHANNEL)).toBe('0.0047239');
    const { rows } = await db.pool.query(
      `select a.code, e.amount::text from ledger_entries e join ledger_accounts a on a.id = e.account_id
      join ledger_journals j on j.id = e.journal_id where j.kind = 'payment_received' and j.ref = $1 order by a.code`,
      [String(body.payment_id)],
    );
    // The platform's and NOWPayments' accounts are sharded by payment id (16 shards).
    const shard = String(BigInt(body.payment_id as number) % 16n).padStart(2, '0');
    expect(rows).toEqual([
      { code: `channel:${THRESHOLD_CHANNEL}`, amount: '4723900000000000' },
      { code: `platform:fees#${shard}`, amount: '146100000000000' },
      { code: `world:nowpayments#${shard}`, amount: '-4870000000000000' },
    ]);
    expect(await jobsFor('payout_instant')).toEqual([]);
  });
});

describe('a finished IPN for an instant channel', () => {
  it('credits the channel and queues its payout job in the same transaction', async () => {
    const body = finishedFor(INSTANT_CHANNEL);
    expect((await send(body)).status).toBe(200);
    const payment = (await payrail.request('GET', `/api/payments/${body.payment_id}`)).body;
    expect(payment).toMatchObject({ netAmount: '0.0047239', payoutStrategy: 'instant', conversion: { status: null } });
    const jobs = await jobsFor('payout_instant');
    expect(jobs).toEqual([
      { key: `payout_instant:${body.payment_id}`, payload: { paymentId: String(body.payment_id) }, max_attempts: 25 },
    ]);
  });
});

describe('idempotency', () => {
  it('50 concurrent copies of one IPN record one payment and one credit', async () => {
    const body = finishedFor(INSTANT_CHANNEL);
    const before = await rowCounts(db);
    const responses = await Promise.all(Array.from({ length: 50 }, () => send(body)));
    expect(responses.map((r) => r.status)).toEqual(Array(50).fill(200));
    expect(responses.filter((r) => r.body.outcome === 'recorded')).toHaveLength(1);
    expect(responses.filter((r) => r.body.outcome === 'unchanged')).toHaveLength(49);
    const after = await rowCounts(db);
    expect(after.payments - before.payments).toBe(1);
    expect(after.ledger_journals - before.ledger_journals).toBe(1);
    expect(after.ledger_entries - before.ledger_entries).toBe(3);
    expect(after.jobs - before.jobs).toBe(1);
    expect(after.ipn_count - before.ipn_count).toBe(50);
  });

  it('the same IPN sent again later changes nothing but the count', async () => {
    const body = finishedFor(THRESHOLD_CHANNEL);
    await send(body);
    const before = await rowCounts(db);
    const balanceBefore = await balance(THRESHOLD_CHANNEL);
    for (let i = 0; i < 3; i++) expect((await send(body)).body.outcome).toBe('unchanged');
    expect({ ...(await rowCounts(db)), ipn_count: 0 }).toEqual({ ...before, ipn_count: 0 });
    expect(await balance(THRESHOLD_CHANNEL)).toBe(balanceBefore);
  });
});

describe('statuses only move forward', () => {
  const sequence = fixtures.sequence.map((b) => b.payment_status as string);

  it('in order: each status advances, only finished credits', async () => {
    const id = nextPaymentId++;
    const outcomes: string[] = [];
    for (const step of fixtures.sequence) {
      const res = await send({ ...step, payment_id: id, order_id: `PGP-1|${THRESHOLD_CHANNEL}` });
      outcomes.push(res.body.outcome);
      const payment = (await payrail.request('GET', `/api/payments/${id}`)).body;
      expect(payment.status).toBe(step.payment_status);
      expect(payment.creditedAt !== null).toBe(step.payment_status === 'finished');
    }
    expect(sequence).toEqual(['waiting', 'confirming', 'confirmed', 'sending', 'finished']);
    expect(outcomes).toEqual(['recorded', 'advanced', 'advanced', 'advanced', 'advanced']);
  });

  it('reversed: finished first, the late statuses change nothing', async () => {
    const id = nextPaymentId++;
    const before = await balance(THRESHOLD_CHANNEL);
    const reversed = [...fixtures.sequence].reverse();
    const outcomes: string[] = [];
    for (const step of reversed)
      outcomes.push((await send({ ...step, payment_id: id, order_id: `PGP-1|${THRESHOLD_CHANNEL}` })).body.outcome);
    expect(outcomes).toEqual(['recorded', 'unchanged', 'unchanged', 'unchanged', 'unchanged']);
    const payment = (await payrail.request('GET', `/api/payments/${id}`)).body;
    expect(payment).toMatchObject({ status: 'finished', netAmount: '0.0047239' });
    expect(
      BigInt((await balance(THRESHOLD_CHANNEL))!.replace('.', '').padEnd(20, '0')) >
        BigInt(before!.replace('.', '').padEnd(20, '0')),
    ).toBe(true);
  });

  it('every permutation of the sequence ends finished with exactly one credit', async () => {
    // Shuffles are deterministic: a failure names the order that broke.
    const orders = [
      [4, 0, 1, 2, 3],
      [0, 4, 2, 1, 3],
      [2, 3, 4, 1, 0],
      [1, 0, 3, 4, 2],
    ];
    for (const order of orders) {
      const id = nextPaymentId++;
      const before = await rowCounts(db);
      for (const index of order)
        await send({ ...fixtures.sequence[index], payment_id: id, order_id: `PGP-1|${THRESHOLD_CHANNEL}` });
      const payment = (await payrail.request('GET', `/api/payments/${id}`)).body;
      expect(payment.status, `order ${order}`).toBe('finished');
      const after = await rowCounts(db);
      expect(after.ledger_journals - before.ledger_journals, `order ${order}`).toBe(1);
    }
  });

  it('non-finished statuses are recorded without crediting', async () => {
    for (const body of [fixtures.partially_paid, fixtures.expired]) {
      const id = nextPaymentId++;
      const before = await rowCounts(db);
      const res = await send({ ...body, payment_id: id, order_id: `PGP-1|${THRESHOLD_CHANNEL}` });
      // A partial payment is kept for a person by default (PARTIAL_PAYMENTS=review; intake-review.test.ts).
      expect(res.status).toBe(body.payment_status === 'partially_paid' ? 202 : 200);
      const payment = (await payrail.request('GET', `/api/payments/${id}`)).body;
      expect(payment).toMatchObject({
        status: body.payment_status,
        creditedAt: null,
        grossAmount: null,
        conversion: { status: null },
      });
      const after = await rowCounts(db);
      expect(after.payments - before.payments).toBe(1);
      expect(after.ledger_journals).toBe(before.ledger_journals);
    }
  });

  it('money arriving after an expiry is still credited', async () => {
    const id = nextPaymentId++;
    await send({ ...fixtures.expired, payment_id: id, order_id: `PGP-1|${THRESHOLD_CHANNEL}` });
    const res = await send(finishedFor(THRESHOLD_CHANNEL, { payment_id: id, order_id: `PGP-1|${THRESHOLD_CHANNEL}` }));
    expect(res.body.outcome).toBe('advanced');
    expect((await payrail.request('GET', `/api/payments/${id}`)).body).toMatchObject({
      status: 'finished',
      netAmount: '0.0047239',
    });
  });

  it('a refund after the credit does not undo the ledger silently: it goes to review', async () => {
    const body = finishedFor(THRESHOLD_CHANNEL);
    await send(body);
    const before = await rowCounts(db);
    const res = await send({ ...body, payment_status: 'refunded' });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ outcome: 'review', reviewReason: 'refunded_after_credit' });
    expect(after(await rowCounts(db), before)).toEqual({ ledger_journals: 0, ledger_entries: 0 });
  });
});

function after(now: RowCounts, before: RowCounts) {
  return {
    ledger_journals: now.ledger_journals - before.ledger_journals,
    ledger_entries: now.ledger_entries - before.ledger_entries,
  };
}

describe('unknown channels and conflicting data', () => {
  it('keeps a signed IPN for an unknown channel, flags it for review, answers 202, credits nothing', async () => {
    const unknown = '-1009999999999';
    const body = finishedFor(unknown);
    const before = await rowCounts(db);
    const res = await send(body);
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ outcome: 'review', reviewReason: 'unknown_channel' });
    const payment = (await payrail.request('GET', `/api/payments/${body.payment_id}`)).body;
    expect(payment).toMatchObject({
      channelId: unknown,
      status: 'finished',
      reviewReason: 'unknown_channel',
      creditedAt: null,
    });
    const now = await rowCounts(db);
    expect(now.payments - before.payments).toBe(1);
    expect(now.ledger_journals).toBe(before.ledger_journals);
  });

  it('registering the channel credits a finished payment kept for it, without waiting for another IPN', async () => {
    const late = '-1008888888886';
    const body = finishedFor(late);
    expect((await send(body)).status).toBe(202);
    const before = await rowCounts(db);
    const res = await payrail.request('PUT', `/api/channels/${late}`, { body: usdtThresholdChannel('100') });
    expect(res.status).toBe(201);
    expect(res.body.pendingEth).toBe('0.0047239');
    expect((await payrail.request('GET', `/api/payments/${body.payment_id}`)).body).toMatchObject({
      reviewReason: null,
      netAmount: '0.0047239',
      conversion: { status: 'pending' },
    });
    const after = await rowCounts(db);
    expect(after.ledger_journals - before.ledger_journals).toBe(1);
    // Saving the channel again credits nothing more.
    await payrail.request('PUT', `/api/channels/${late}`, { body: usdtThresholdChannel('100') });
    expect((await rowCounts(db)).ledger_journals).toBe(after.ledger_journals);
  });

  it('credits once the channel is registered and the IPN comes again', async () => {
    const late = '-1008888888888';
    const body = finishedFor(late);
    expect((await send(body)).status).toBe(202);
    await payrail.request('PUT', `/api/channels/${late}`, { body: instantEthChannel() });
    const res = await send(body);
    expect(res.status).toBe(200);
    expect((await payrail.request('GET', `/api/payments/${body.payment_id}`)).body).toMatchObject({
      reviewReason: null,
      netAmount: '0.0047239',
    });
    expect(await balance(late)).toBe('0.0047239');
  });

  it('credits the amount of the finished IPN, not that of a late lower-status copy that releases it', async () => {
    const late = '-1008888888887';
    const body = finishedFor(late);
    expect((await send(body)).status).toBe(202);
    await payrail.request('PUT', `/api/channels/${late}`, { body: instantEthChannel() });
    const stale = JSON.stringify({ ...body, payment_status: 'confirming' }).replace(
      '"outcome_amount":0.00487',
      '"outcome_amount":0.009',
    );
    const res = await send(stale);
    expect(res.status).toBe(200);
    expect((await payrail.request('GET', `/api/payments/${body.payment_id}`)).body).toMatchObject({
      status: 'finished',
      grossAmount: '0.00487',
      netAmount: '0.0047239',
    });
  });

  it('never re-routes a payment to another order on the word of a later IPN', async () => {
    const body = finishedFor(THRESHOLD_CHANNEL);
    await send(body);
    const res = await send({ ...body, order_id: `PGP-6271402111|${INSTANT_CHANNEL}` });
    expect(res.status).toBe(202);
    expect(res.body.reviewReason).toMatch(/^conflicting_order_id/);
    const payment = (await payrail.request('GET', `/api/payments/${body.payment_id}`)).body;
    expect(payment).toMatchObject({ channelId: THRESHOLD_CHANNEL, netAmount: '0.0047239' });
  });
});

describe('fee rounding at the edge of the smallest unit', () => {
  it('1 wei pays no fee; 34 wei pays 1 wei of fee (3% of 34 = 1.02, rounded down)', async () => {
    for (const [amount, fee, net] of [
      ['0.000000000000000001', '0', '0.000000000000000001'],
      ['0.000000000000000034', '0.000000000000000001', '0.000000000000000033'],
    ]) {
      const raw = JSON.stringify(finishedFor(THRESHOLD_CHANNEL)).replace(
        '"outcome_amount":0.00487',
        `"outcome_amount":${amount}`,
      );
      const res = await send(raw);
      expect(res.status).toBe(200);
      const payment = (await payrail.request('GET', `/api/payments/${res.body.paymentId}`)).body;
      expect(payment).toMatchObject({ grossAmount: amount, feeAmount: fee, netAmount: net });
    }
  });
});

describe('bodies PostgreSQL could not hold as jsonb', () => {
  it.each([
    ['a NUL character in an extra field', /"order_description":"[^"]*"/, '"order_description":"Premium\\u0000tier"'],
    ['a lone surrogate in an extra field', /"order_description":"[^"]*"/, '"order_description":"\\ud800"'],
    ['a huge exponent in an extra field', /"actually_paid_at_fiat":[0-9.]+/, '"actually_paid_at_fiat":1e999999'],
  ])('a signed IPN with %s is still recorded and credited', async (_name, pattern, field) => {
    const body = finishedFor(THRESHOLD_CHANNEL);
    const raw = JSON.stringify(body).replace(pattern, field);
    expect(raw).toContain(field);
    const res = await send(raw);
    expect(res.status).toBe(200);
    expect((await payrail.request('GET', `/api/payments/${body.payment_id}`)).body.netAmount).toBe('0.0047239');
  });
});

describe('the ledger after all of the above', () => {
  it('balances: every journal sums to zero and every balance matches its entries', async () => {
    const report = await checkLedger(db.db);
    expect(report.problems).toEqual([]);
    expect(report.journals).toBeGreaterThan(10);
  });
});
