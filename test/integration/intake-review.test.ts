/**
 * Every signed IPN is kept: a partial payment, an outcome in a currency payrail does not credit, a changed amount for
 * a credited payment, a refund after the credit, and repeated deposits are recorded and, where a person must decide,
 * kept for review with an alert and the actions credit / ignore / reverse. Through real HTTP; the ledger checked after.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkLedger } from '../../src/ledger/index.ts';
import { parseUnits } from '../../src/money/index.ts';
import { openAlerts } from '../support/alerts.ts';
import { createChannel, createChannelPair, type ChannelOf } from '../support/channels.ts';
import { createTestDatabase, rowCounts, type TestDatabase } from '../support/db.ts';
import { fixtures, ipnBody, signed } from '../support/ipn.ts';
import { journalLines } from '../support/journals.ts';
import { eventually } from '../support/outside.ts';
import { IPN_SECRET, startTestPayrail, type TestPayrail } from '../support/payrail.ts';

const WALLET = '0x8ba1f109551bD432803012645Ac136ddd64DBA72';
const THRESHOLD_CHANNEL = '-1001100000001';
const INSTANT_CHANNEL = '-1001100000002';
/** What a channel registered after its payment came pays out, besides its strategy. */
const LATE_CHANNEL = { payoutCurrency: 'usdt', payoutNetwork: 'eth', walletAddress: WALLET };
const CHANNELS: { threshold: ChannelOf; instant: ChannelOf } = {
  threshold: [THRESHOLD_CHANNEL, 'usdt'],
  instant: [INSTANT_CHANNEL, 'usdt'],
};

/** What the partial fixture's credit books (0.00294 ETH, less the 3 % fee), as the payment API shows it. */
const PARTIAL_CREDITED = { grossAmount: '0.00294', feeAmount: '0.0000882', netAmount: '0.0028518' };
/** What a finished fixture payment's credit books (0.00487 ETH, less the 3 % fee), as the payment API shows it. */
const WHOLE_CREDITED = { grossAmount: '0.00487', feeAmount: '0.0001461', netAmount: '0.0047239' };

let db: TestDatabase;
let payrail: TestPayrail;
let nextPaymentId = 7_000_000_000;

function send(body: Record<string, unknown> | string, to: TestPayrail = payrail) {
  const { raw, headers } = signed(body, IPN_SECRET);
  return to.request('POST', '/webhooks/nowpayments', { raw, headers, token: null });
}

function order(channelId: string) {
  return `PGP-6271402111|${channelId}`;
}

function finishedFor(channelId: string, overrides: Record<string, unknown> = {}) {
  return ipnBody({ payment_id: nextPaymentId++, order_id: order(channelId), ...overrides });
}

/** The partially_paid fixture: 0.003 of 0.00495 ETH paid, outcome 0.00294 ETH. */
function partialFor(channelId: string, overrides: Record<string, unknown> = {}) {
  return {
    ...structuredClone(fixtures.partially_paid),
    payment_id: nextPaymentId++,
    order_id: order(channelId),
    ...overrides,
  };
}

/** NOWPayments' expired IPN for the same payment: the rest never came (the fixture's amounts: 0 paid, 0.00487 asked). */
function expiredFor(partial: Record<string, unknown>) {
  return {
    ...structuredClone(fixtures.expired),
    payment_id: partial.payment_id,
    invoice_id: partial.invoice_id,
    order_id: partial.order_id,
  };
}

/** NOWPayments' finished IPN for the partial's payment (no invoice named): the fixture's 0.00487 ETH. */
function finishedNow(partial: Record<string, unknown>) {
  return { ...ipnBody(), payment_id: partial.payment_id, order_id: partial.order_id };
}

/** The same body with outcome_amount written as this exact JSON number. */
function withOutcome(body: Record<string, unknown>, amountText: string): string {
  const raw = JSON.stringify(body);
  const replaced = raw.replace(/"outcome_amount":[0-9.e-]+/, `"outcome_amount":${amountText}`);
  if (replaced === raw) throw new Error('outcome_amount not found');
  return replaced;
}

async function payment(id: unknown, on: TestPayrail = payrail) {
  return (await on.request('GET', `/api/payments/${id}`)).body;
}

function act(id: unknown, action: string, options: { body?: unknown; token?: string | null; on?: TestPayrail } = {}) {
  return (options.on ?? payrail).request('POST', `/api/payments/${id}/${action}`, {
    ...(options.body !== undefined && { body: options.body }),
    ...(options.token !== undefined && { token: options.token }),
  });
}

async function available(channelId: string, on: TestPayrail = payrail): Promise<string> {
  const res = await on.request('GET', `/api/channels/${channelId}`);
  return (
    res.body.balances?.find((b: { asset: string; account: string }) => b.asset === 'eth' && b.account === 'available')
      ?.amount ?? '0'
  );
}

function journals(id: unknown, on: TestDatabase = db) {
  return journalLines(on, id);
}

function openAlert(id: unknown, on: TestPayrail = payrail) {
  return openAlerts(on, 'payment_review', id);
}

async function audit(id: unknown, on: TestDatabase = db) {
  const { rows } = await on.pool.query(`select actor, action, details from audit_log where subject = $1 order by id`, [
    String(id),
  ]);
  return rows as Array<{ actor: string; action: string; details: Record<string, unknown> }>;
}

/** The instant payout job queued for the payment (one, or none). */
async function instantPayoutJobs(paymentId: unknown) {
  const { rows } = await db.pool.query(`select key from graphile_worker._private_jobs where key = $1`, [
    `payout_instant:${paymentId}`,
  ]);
  return rows;
}

/** NOWPayments' finished IPN for the partial's payment: the fixture's 0.00487 ETH, or this outcome. */
function finishedAfter(partial: Record<string, unknown>, outcome?: string) {
  const body = {
    ...ipnBody(),
    payment_id: partial.payment_id,
    invoice_id: partial.invoice_id,
    order_id: partial.order_id,
  };
  return outcome === undefined ? body : withOutcome(body, outcome);
}

/** NOWPayments saying the payment was refunded, to `to`. */
function sendRefunded(body: Record<string, unknown>, to: TestPayrail = payrail) {
  return send({ ...body, payment_status: 'refunded' }, to);
}

/** A finished IPN for the channel, sent, then NOWPayments saying it was refunded (whatever the answers); its body. */
async function refundedAfterCredit(channelId: string) {
  const body = finishedFor(channelId);
  await send(body);
  await sendRefunded(body);
  return body;
}

/** A partial IPN for the channel, sent (whatever the answer); its body. */
async function sentPartial(channelId: string = THRESHOLD_CHANNEL) {
  const body = partialFor(channelId);
  await send(body);
  return body;
}

/** A partial IPN for the channel, sent and credited by a person; its body. */
async function creditedPartial(channelId: string = THRESHOLD_CHANNEL) {
  const body = await sentPartial(channelId);
  expect((await act(body.payment_id, 'credit')).status).toBe(200);
  return body;
}

/** The answer has this status and shows at least `shown`. */
function expectAnswer(res: { status: number; body: unknown }, status: number, shown: Record<string, unknown>) {
  expect(res.status).toBe(status);
  expect(res.body).toMatchObject(shown);
}

/** The three lines the credit of the partial fixture's 0.00294 ETH books on the threshold channel, in order. */
function partialCreditLines(paymentId: unknown) {
  const shard = shardOf(paymentId);
  return [
    { kind: 'payment_received', code: `channel:${THRESHOLD_CHANNEL}`, amount: '2851800000000000' },
    { kind: 'payment_received', code: `platform:fees#${shard}`, amount: '88200000000000' },
    { kind: 'payment_received', code: `world:nowpayments#${shard}`, amount: '-2940000000000000' },
  ];
}

/** The partial fixture's payment after its expired IPN: in review for what arrived (not what was asked), one alert. */
async function expectExpiredPartialInReview(id: unknown) {
  expect(await payment(id)).toMatchObject({
    status: 'expired',
    reviewReason: 'partially_paid',
    creditedAt: null,
    reported: { actuallyPaid: '0.003', outcomeAmount: '0.00294' },
  });
  expect(await openAlert(id)).toHaveLength(1);
}

function wei(eth: string): bigint {
  return parseUnits(eth, 18);
}

function shardOf(id: unknown): string {
  return String(BigInt(String(id)) % 16n).padStart(2, '0');
}

beforeAll(async () => {
  db = await createTestDatabase();
  // Web only: instant payout jobs stay where intake left them; the file's last part runs a worker on its own database.
  payrail = await startTestPayrail(db, { roles: { web: true, worker: false } });
  await createChannelPair(payrail, CHANNELS, WALLET);
});

afterAll(async () => {
  await payrail?.stop();
  await db?.close();
});

describe('partially_paid with PARTIAL_PAYMENTS=review (the default)', () => {
  it('is kept with the reason partially_paid, answered 202, alerted, and credits nothing; a copy changes nothing more', async () => {
    const body = partialFor(THRESHOLD_CHANNEL);
    const before = await rowCounts(db);
    const res = await send(body);
    expectAnswer(res, 202, {
      paymentId: String(body.payment_id),
      status: 'partially_paid',
      outcome: 'review',
      reviewReason: 'partially_paid',
    });
    expect(await payment(body.payment_id)).toMatchObject({
      status: 'partially_paid',
      reviewReason: 'partially_paid',
      creditedAt: null,
      grossAmount: null,
      reported: { actuallyPaid: '0.003', payAmount: '0.00495', outcomeAmount: '0.00294', outcomeCurrency: 'eth' },
    });
    const alerts = await openAlert(body.payment_id);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({
      severity: 'warning',
      details: {
        paymentId: String(body.payment_id),
        channelId: THRESHOLD_CHANNEL,
        reason: 'partially_paid',
        outcome: '0.00294 eth',
        actuallyPaid: '0.003 eth',
        payAmount: '0.00495 eth',
      },
    });
    expect((await rowCounts(db)).ledger_journals).toBe(before.ledger_journals);

    const again = await send(body);
    expectAnswer(again, 202, { outcome: 'review', reviewReason: 'partially_paid' });
    expect((await rowCounts(db)).ledger_journals).toBe(before.ledger_journals);
    expect(await openAlert(body.payment_id)).toHaveLength(1);
  });

  it('credit books exactly the IPN outcome_amount through the normal credit, once, audited; a second credit is 409', async () => {
    const body = partialFor(THRESHOLD_CHANNEL);
    expect((await send(body)).status).toBe(202);
    const balanceBefore = await available(THRESHOLD_CHANNEL);
    const res = await act(body.payment_id, 'credit', { body: { note: 'the subscriber agreed to a shorter plan' } });
    expectAnswer(res, 200, {
      status: 'partially_paid',
      reviewReason: null,
      asset: 'eth',
      ...PARTIAL_CREDITED,
      payoutStrategy: 'threshold',
      conversion: { status: 'pending' },
      reviewAction: { action: 'credit', by: 'admin' },
    });
    expect(await journals(body.payment_id)).toEqual(partialCreditLines(body.payment_id));
    expect(wei(await available(THRESHOLD_CHANNEL)) - wei(balanceBefore)).toBe(2_851_800_000_000_000n);
    expect(await audit(body.payment_id)).toEqual([
      {
        actor: 'admin',
        action: 'payment.credit',
        details: expect.objectContaining({
          reason: 'partially_paid',
          gross: '2940000000000000',
          fee: '88200000000000',
          net: '2851800000000000',
          outcomeAmount: '0.00294',
          note: 'the subscriber agreed to a shorter plan',
        }),
      },
    ]);

    const second = await act(body.payment_id, 'credit');
    expect(second.status).toBe(409);
    expect(second.body.error).toMatch(
      /^cannot credit payment \d+: it is not in review \(last decision: credit by admin\)/,
    );
    expect(await journals(body.payment_id)).toHaveLength(3);
    // The same partial IPN again: still credited once.
    expect((await send(body)).body.outcome).toBe('unchanged');
    expect(await journals(body.payment_id)).toHaveLength(3);
  });

  it('credit on an instant channel queues its payout job in the same transaction, as intake does', async () => {
    const body = await creditedPartial(INSTANT_CHANNEL);
    expect(await instantPayoutJobs(body.payment_id)).toHaveLength(1);
  });

  it('20 concurrent credits of one payment credit it once', async () => {
    const body = await sentPartial();
    const answers = await Promise.all(Array.from({ length: 20 }, () => act(body.payment_id, 'credit')));
    expect(answers.filter((a) => a.status === 200)).toHaveLength(1);
    expect(answers.filter((a) => a.status === 409)).toHaveLength(19);
    expect(await journals(body.payment_id)).toHaveLength(3);
  });

  it('ignore leaves it uncredited and out of review, audited; credit afterwards is 409; a later finished IPN is credited', async () => {
    const body = await sentPartial();
    const res = await act(body.payment_id, 'ignore');
    expectAnswer(res, 200, {
      status: 'partially_paid',
      reviewReason: null,
      creditedAt: null,
      reviewAction: { action: 'ignore', by: 'admin' },
    });
    expect(await journals(body.payment_id)).toEqual([]);
    expect((await audit(body.payment_id)).map((a) => a.action)).toEqual(['payment.ignore']);
    expect((await act(body.payment_id, 'credit')).status).toBe(409);
    expect((await act(body.payment_id, 'ignore')).status).toBe(409);
    // A copy of the partial IPN does not bring it back.
    expect((await send(body)).status).toBe(200);
    expect((await payment(body.payment_id)).reviewReason).toBeNull();

    const finished = await send(finishedNow(body));
    expect(finished.status).toBe(200);
    expect(await payment(body.payment_id)).toMatchObject({
      status: 'finished',
      grossAmount: '0.00487',
      reviewReason: null,
    });
  });

  it('the rest of the money arriving (finished) takes it out of review and credits the finished amount', async () => {
    const body = await sentPartial();
    const res = await send(finishedNow(body));
    expectAnswer(res, 200, { status: 'finished', outcome: 'advanced' });
    expect(await payment(body.payment_id)).toMatchObject({
      status: 'finished',
      reviewReason: null,
      grossAmount: '0.00487',
      netAmount: '0.0047239',
    });
  });

  it('an expired IPN after the partial (the rest never came) keeps the partial in review with its own amounts: credit books what arrived, not what the expired IPN says was asked', async () => {
    const body = partialFor(THRESHOLD_CHANNEL);
    expect((await send(body)).status).toBe(202);
    const expired = await send(expiredFor(body));
    expectAnswer(expired, 202, { status: 'expired', outcome: 'review', reviewReason: 'partially_paid' });
    // The expired IPN's outcome_amount (0.00487) is the whole price converted, with actually_paid 0: not what came.
    await expectExpiredPartialInReview(body.payment_id);
    // A copy of either changes nothing.
    expect((await send(expiredFor(body))).body).toMatchObject({ outcome: 'review', reviewReason: 'partially_paid' });
    expect((await send(body)).body).toMatchObject({ outcome: 'review', reviewReason: 'partially_paid' });

    const res = await act(body.payment_id, 'credit', { body: { note: 'the subscriber keeps a shorter plan' } });
    expectAnswer(res, 200, {
      status: 'expired',
      reviewReason: null,
      ...PARTIAL_CREDITED,
      conversion: { status: 'pending' },
      reviewAction: { action: 'credit' },
    });
    expect((await journals(body.payment_id)).map((j) => [j.code, j.amount])).toEqual(
      partialCreditLines(body.payment_id).map((j) => [j.code, j.amount]),
    );
    expect((await act(body.payment_id, 'credit')).status).toBe(409);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('an expired IPN after a partial for a channel registered later: registering the channel opens the partial review, credit books the partial', async () => {
    const late = '-1001100000078';
    const body = partialFor(late);
    expect((await send(body)).body.reviewReason).toBe('unknown_channel');
    expect((await send(expiredFor(body))).body).toMatchObject({ status: 'expired', reviewReason: 'unknown_channel' });
    await createChannel(payrail, late, { payoutStrategy: 'threshold', thresholdUsd: '100', ...LATE_CHANNEL });
    expect(await payment(body.payment_id)).toMatchObject({
      status: 'expired',
      reviewReason: 'partially_paid',
      creditedAt: null,
      reported: { outcomeAmount: '0.00294' },
    });
    const res = await act(body.payment_id, 'credit');
    expectAnswer(res, 200, { grossAmount: '0.00294', netAmount: '0.0028518' });
  });

  it("an expired IPN that arrives before its partially_paid one (NOWPayments' retries reordered them): the partial still reaches review with its own amounts, the status stays expired, credit books what arrived", async () => {
    const body = partialFor(THRESHOLD_CHANNEL);
    const expired = await send(expiredFor(body));
    expectAnswer(expired, 200, { status: 'expired', outcome: 'recorded' });
    const late = await send(body);
    expectAnswer(late, 202, { status: 'expired', outcome: 'review', reviewReason: 'partially_paid' });
    await expectExpiredPartialInReview(body.payment_id);
    // Copies of either, in any order, change nothing.
    expect((await send(expiredFor(body))).body).toMatchObject({ status: 'expired', reviewReason: 'partially_paid' });
    expect((await send(body)).body).toMatchObject({ status: 'expired', reviewReason: 'partially_paid' });
    expect(await payment(body.payment_id)).toMatchObject({ reported: { outcomeAmount: '0.00294' } });

    const res = await act(body.payment_id, 'credit');
    expectAnswer(res, 200, {
      status: 'expired',
      reviewReason: null,
      grossAmount: '0.00294',
      netAmount: '0.0028518',
      conversion: { status: 'pending' },
    });
    expect(await journals(body.payment_id)).toHaveLength(3);
    expect((await send(body)).body).toMatchObject({ status: 'expired', outcome: 'unchanged' });
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('statuses still only move forward: a partially_paid IPN after finished changes nothing, and a waiting one after partially_paid is no step back', async () => {
    const finished = finishedFor(THRESHOLD_CHANNEL);
    expect((await send(finished)).status).toBe(200);
    const afterFinished = await send({
      ...partialFor(THRESHOLD_CHANNEL),
      payment_id: finished.payment_id,
      invoice_id: finished.invoice_id,
      order_id: finished.order_id,
    });
    expectAnswer(afterFinished, 200, { status: 'finished', outcome: 'unchanged' });
    expect(await payment(finished.payment_id)).toMatchObject({
      status: 'finished',
      grossAmount: '0.00487',
      reported: { outcomeAmount: '0.00487' },
    });

    const unpaid = partialFor(THRESHOLD_CHANNEL);
    const waiting = {
      ...structuredClone(fixtures.sequence[0]),
      payment_id: unpaid.payment_id,
      order_id: unpaid.order_id,
    };
    expect((await send(waiting)).body).toMatchObject({ status: 'waiting' });
    expect((await send(unpaid)).body).toMatchObject({ status: 'partially_paid', reviewReason: 'partially_paid' });
    expect((await send(waiting)).body).toMatchObject({ status: 'partially_paid', outcome: 'review' });
  });

  it('an expired IPN after an ignored partial leaves it closed and uncredited', async () => {
    const body = await sentPartial();
    expect((await act(body.payment_id, 'ignore')).status).toBe(200);
    const expired = await send(expiredFor(body));
    expect(expired.status).toBe(200);
    expect(await payment(body.payment_id)).toMatchObject({
      status: 'expired',
      reviewReason: null,
      creditedAt: null,
      reviewAction: { action: 'ignore' },
    });
    expect(await journals(body.payment_id)).toEqual([]);
  });

  it('a partial payment for a channel registered later goes to review as partially_paid, not credited', async () => {
    const late = '-1001100000077';
    const body = partialFor(late);
    expect((await send(body)).body.reviewReason).toBe('unknown_channel');
    await createChannel(payrail, late, { payoutStrategy: 'threshold', thresholdUsd: '100', ...LATE_CHANNEL });
    expect(await payment(body.payment_id)).toMatchObject({ reviewReason: 'partially_paid', creditedAt: null });
    expect(await openAlert(body.payment_id)).toHaveLength(1);
  });
});

describe('PARTIAL_PAYMENTS=credit', () => {
  let crediting: TestPayrail;
  beforeAll(async () => {
    crediting = await startTestPayrail(db, {
      roles: { web: true, worker: false },
      env: { PARTIAL_PAYMENTS: 'credit' },
    });
  });
  afterAll(async () => {
    await crediting?.stop();
  });

  it('credits a partially_paid IPN with its outcome_amount at once, 200', async () => {
    const body = partialFor(THRESHOLD_CHANNEL);
    const res = await send(body, crediting);
    expectAnswer(res, 200, { status: 'partially_paid', outcome: 'recorded' });
    expect(await payment(body.payment_id)).toMatchObject({
      reviewReason: null,
      grossAmount: '0.00294',
      netAmount: '0.0028518',
    });
    expect(await journals(body.payment_id)).toHaveLength(3);
    expect(await openAlert(body.payment_id)).toEqual([]);
  });

  it('a later finished IPN saying more (the rest arrived) goes to review as a top-up naming both amounts, alerted; the credit is not changed until a person credits the difference', async () => {
    const body = partialFor(THRESHOLD_CHANNEL);
    await send(body, crediting);
    const res = await send(finishedNow(body), crediting);
    expectAnswer(res, 202, {
      outcome: 'review',
      reviewReason: 'top_up: credited 0.00294 eth; a later finished IPN says 0.00487 eth (0.00193 eth more)',
    });
    expect(await payment(body.payment_id)).toMatchObject({ status: 'finished', grossAmount: '0.00294' });
    expect(await journals(body.payment_id)).toHaveLength(3);
    expect(await openAlert(body.payment_id)).toEqual([
      expect.objectContaining({
        severity: 'warning',
        details: expect.objectContaining({ credited: '0.00294 eth', outcome: '0.00294 eth', restated: '0.00487 eth' }),
      }),
    ]);
    const credit = await act(body.payment_id, 'credit', { on: crediting });
    expectAnswer(credit, 200, {
      ...WHOLE_CREDITED,
      reviewReason: null,
    });
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('a later finished IPN saying less than the credited partial is a changed amount: ignore only', async () => {
    const body = partialFor(THRESHOLD_CHANNEL);
    await send(body, crediting);
    const res = await send(withOutcome(finishedNow(body), '0.002'), crediting);
    expect(res.status).toBe(202);
    expect(res.body.reviewReason).toBe(
      'outcome_amount_changed: credited 0.00294 eth; a later finished IPN says 0.002 eth',
    );
    expect(await openAlert(body.payment_id)).toEqual([expect.objectContaining({ severity: 'critical' })]);
    expect((await act(body.payment_id, 'credit', { on: crediting })).status).toBe(409);
    expect((await act(body.payment_id, 'ignore', { on: crediting })).status).toBe(200);
    expect(await journals(body.payment_id)).toHaveLength(3);
  });

  it('an ignore that lets a credited payment go on to its conversion asks for a conversion check, as a credit does', async () => {
    const nudges = async () =>
      (await db.pool.query("select id from graphile_worker._private_jobs where key = 'conversion_batch:nudge'")).rows;
    const body = partialFor(THRESHOLD_CHANNEL);
    await send(body, crediting);
    // The credit's own check (queued within a second, no worker runs here) is taken away: only the ignore can
    // queue the next one. Without it the payment waited for the periodic run (CONVERSION_INTERVAL).
    await eventually('the credit’s conversion check queued', async () => (await nudges()).length === 1);
    await db.pool.query("delete from graphile_worker._private_jobs where key = 'conversion_batch:nudge'");
    const res = await send(withOutcome(finishedNow(body), '0.002'), crediting);
    expect(res.body.reviewReason).toMatch(/^outcome_amount_changed: /);
    expect((await act(body.payment_id, 'ignore', { on: crediting })).status).toBe(200);
    const { rows } = await db.pool.query(
      'select conversion_status, review_reason from payments where payment_id = $1',
      [body.payment_id],
    );
    expect(rows).toEqual([{ conversion_status: 'pending', review_reason: null }]);
    await eventually('a conversion check queued after the ignore', async () => (await nudges()).length === 1);
  });
});

describe('a top-up: the rest of a partial payment credited by hand arrives later', () => {
  it('goes to review naming both amounts; credit books exactly the difference (its own journal, the same fee), once; copies change nothing', async () => {
    const body = await creditedPartial();
    const res = await send(finishedAfter(body));
    expectAnswer(res, 202, {
      status: 'finished',
      outcome: 'review',
      reviewReason: 'top_up: credited 0.00294 eth; a later finished IPN says 0.00487 eth (0.00193 eth more)',
    });
    expect(await payment(body.payment_id)).toMatchObject({
      status: 'finished',
      grossAmount: '0.00294',
      netAmount: '0.0028518',
    });
    // The first part is credited already: neither ignore's nor reverse's, and the top-up is not credited by a copy.
    expect((await act(body.payment_id, 'reverse')).status).toBe(409);
    expect((await send(finishedAfter(body))).body).toMatchObject({ outcome: 'review' });

    const answers = await Promise.all(
      Array.from({ length: 10 }, () =>
        act(body.payment_id, 'credit', { body: { note: 'the subscriber paid the rest' } }),
      ),
    );
    expect(answers.filter((a) => a.status === 200)).toHaveLength(1);
    const credited = answers.find((a) => a.status === 200)!.body;
    expect(credited).toMatchObject({
      status: 'finished',
      reviewReason: null,
      ...WHOLE_CREDITED,
      conversion: { status: 'pending' },
      reviewAction: { action: 'credit' },
    });
    const shard = shardOf(body.payment_id);
    expect((await journals(body.payment_id)).map((j) => [j.kind, j.code, j.amount])).toEqual(
      partialCreditLines(body.payment_id).map((j) => [j.kind, j.code, j.amount]),
    );
    expect(await journals(`${body.payment_id}:4870000000000000`)).toEqual([
      { kind: 'payment_topped_up', code: `channel:${THRESHOLD_CHANNEL}`, amount: '1872100000000000' },
      { kind: 'payment_topped_up', code: `platform:fees#${shard}`, amount: '57900000000000' },
      { kind: 'payment_topped_up', code: `world:nowpayments#${shard}`, amount: '-1930000000000000' },
    ]);
    expect(
      (await audit(body.payment_id)).map((a) => [a.action, a.details.reason, a.details.gross, a.details.note]),
    ).toEqual([
      ['payment.credit', 'partially_paid', '2940000000000000', undefined],
      [
        'payment.credit',
        'top_up: credited 0.00294 eth; a later finished IPN says 0.00487 eth (0.00193 eth more)',
        '1930000000000000',
        'the subscriber paid the rest',
      ],
    ]);
    // Copies of the finished IPN say what is credited now; nothing more to credit.
    expect((await send(finishedAfter(body))).body.outcome).toBe('unchanged');
    expect((await act(body.payment_id, 'credit')).status).toBe(409);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('after ignore, a copy of the ignored IPN leaves it closed; an IPN saying another amount again goes to review again, and its credit books the difference to that', async () => {
    const body = await creditedPartial();
    expect((await send(finishedAfter(body, '0.004'))).body.reviewReason).toBe(
      'top_up: credited 0.00294 eth; a later finished IPN says 0.004 eth (0.00106 eth more)',
    );
    expect((await act(body.payment_id, 'ignore')).status).toBe(200);
    const copy = await send(finishedAfter(body, '0.004'));
    expect(copy.status).toBe(200);
    expect(await payment(body.payment_id)).toMatchObject({
      reviewReason: null,
      grossAmount: '0.00294',
      reviewAction: { action: 'ignore' },
    });

    const again = await send(finishedAfter(body));
    expect(again.status).toBe(202);
    expect(again.body.reviewReason).toBe(
      'top_up: credited 0.00294 eth; a later finished IPN says 0.00487 eth (0.00193 eth more)',
    );
    const res = await act(body.payment_id, 'credit');
    expectAnswer(res, 200, { grossAmount: '0.00487', netAmount: '0.0047239' });
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('on an instant channel whose payout job has not run, the payout opens for the whole net', async () => {
    const body = await creditedPartial(INSTANT_CHANNEL);
    expect((await send(finishedAfter(body))).status).toBe(202);
    const res = await act(body.payment_id, 'credit');
    expectAnswer(res, 200, {
      payoutStrategy: 'instant',
      grossAmount: '0.00487',
      netAmount: '0.0047239',
      conversion: { status: null },
    });
    expect(await instantPayoutJobs(body.payment_id)).toHaveLength(1);
  });

  it('an uncredited partial restated with more (a second partially_paid IPN) after ignore goes to review again with the new amounts; an older, smaller copy changes nothing', async () => {
    const body = await sentPartial();
    expect((await act(body.payment_id, 'ignore')).status).toBe(200);
    const more = withOutcome({ ...body, actually_paid: 0.004 }, '0.0039');
    const res = await send(more);
    expectAnswer(res, 202, { status: 'partially_paid', reviewReason: 'partially_paid' });
    expect(await payment(body.payment_id)).toMatchObject({
      creditedAt: null,
      reported: { actuallyPaid: '0.004', outcomeAmount: '0.0039' },
    });
    expect((await send(body)).body).toMatchObject({ outcome: 'review', reviewReason: 'partially_paid' });
    expect((await payment(body.payment_id)).reported.outcomeAmount).toBe('0.0039');
    const credit = await act(body.payment_id, 'credit');
    expectAnswer(credit, 200, { grossAmount: '0.0039' });
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });
});

describe('an outcome_currency payrail does not credit', () => {
  it.each(['usdc', 'usdt', 'doge', 'xyz'])(
    'a signed IPN with outcome_currency "%s" is stored and answered 202 with a review reason, alerted, nothing credited',
    async (currency) => {
      const body = finishedFor(THRESHOLD_CHANNEL, { outcome_currency: currency, outcome_amount: 14.5 });
      const before = await rowCounts(db);
      const res = await send(body);
      expectAnswer(res, 202, { outcome: 'review', reviewReason: `foreign_outcome_currency: ${currency}` });
      expect(await payment(body.payment_id)).toMatchObject({
        status: 'finished',
        creditedAt: null,
        reported: { outcomeAmount: '14.5', outcomeCurrency: currency },
      });
      const after = await rowCounts(db);
      expect(after.payments - before.payments).toBe(1);
      expect(after.ledger_journals).toBe(before.ledger_journals);
      expect(after.jobs).toBe(before.jobs);
      expect(await openAlert(body.payment_id)).toEqual([
        expect.objectContaining({
          severity: 'critical',
          details: expect.objectContaining({ outcome: `14.5 ${currency}` }),
        }),
      ]);
      // A copy changes nothing.
      expect((await send(body)).status).toBe(202);
      expect((await rowCounts(db)).ledger_journals).toBe(before.ledger_journals);
    },
  );

  it('cannot be credited by hand (409); ignore closes it; registering its channel credits nothing', async () => {
    const late = '-1001100000088';
    const body = finishedFor(late, { outcome_currency: 'usdc', outcome_amount: 14.5 });
    expect((await send(body)).body.reviewReason).toBe('foreign_outcome_currency: usdc');
    await createChannel(payrail, late, { payoutStrategy: 'instant', ...LATE_CHANNEL });
    expect(await payment(body.payment_id)).toMatchObject({
      reviewReason: 'foreign_outcome_currency: usdc',
      creditedAt: null,
    });
    const credit = await act(body.payment_id, 'credit');
    expect(credit.status).toBe(409);
    expect(credit.body.error).toContain(
      'only a partially_paid payment in review is credited by hand (review reason: foreign_outcome_currency: usdc)',
    );
    expect((await act(body.payment_id, 'ignore')).status).toBe(200);
    expect(await journals(body.payment_id)).toEqual([]);
  });
});

describe('a later signed copy with another outcome_amount for a credited payment', () => {
  it('goes to review with both amounts and is alerted; the credit stays; ignore keeps it as booked', async () => {
    const body = finishedFor(THRESHOLD_CHANNEL);
    expect((await send(body)).status).toBe(200);
    const res = await send(withOutcome(body, '0.009'));
    expect(res.status).toBe(202);
    expect(res.body.reviewReason).toBe(
      'outcome_amount_changed: credited 0.00487 eth; a later finished IPN says 0.009 eth',
    );
    expect(await payment(body.payment_id)).toMatchObject({
      grossAmount: '0.00487',
      netAmount: '0.0047239',
      reported: { outcomeAmount: '0.00487' },
    });
    expect(await journals(body.payment_id)).toHaveLength(3);
    expect(await openAlert(body.payment_id)).toHaveLength(1);
    // A copy with the credited amount leaves the review as it is.
    expect((await send(body)).status).toBe(202);
    expect((await act(body.payment_id, 'credit')).status).toBe(409);
    expect((await act(body.payment_id, 'reverse')).status).toBe(409);
    expect((await act(body.payment_id, 'ignore')).status).toBe(200);
    expect(await payment(body.payment_id)).toMatchObject({ reviewReason: null, grossAmount: '0.00487' });
    expect(await journals(body.payment_id)).toHaveLength(3);
  });

  it('the same amount written differently is not a change', async () => {
    const body = finishedFor(THRESHOLD_CHANNEL);
    await send(body);
    expect((await send(withOutcome(body, '0.004870000'))).body.outcome).toBe('unchanged');
  });
});

describe('refunded_after_credit: reverse', () => {
  it('a refund after the credit is alerted; reverse takes the credit back with a journal while the ETH is on the channel, once', async () => {
    const body = finishedFor(THRESHOLD_CHANNEL);
    await send(body);
    const balanceBefore = await available(THRESHOLD_CHANNEL);
    const refund = await sendRefunded(body);
    expect(refund.status).toBe(202);
    expect(refund.body.reviewReason).toBe('refunded_after_credit');
    expect(await openAlert(body.payment_id)).toEqual([
      expect.objectContaining({
        severity: 'critical',
        details: expect.objectContaining({ reason: 'refunded_after_credit', credited: '0.00487 eth' }),
      }),
    ]);

    const res = await act(body.payment_id, 'reverse', { body: { note: 'chargeback' } });
    expectAnswer(res, 200, {
      status: 'refunded',
      reviewReason: null,
      grossAmount: '0.00487',
      conversion: { status: null },
      reviewAction: { action: 'reverse', by: 'admin' },
    });
    expect(res.body.reversedAt).not.toBeNull();
    const shard = shardOf(body.payment_id);
    // The ETH is still on the host wallet: owed, on the platform's books, until it is sent back.
    expect((await journals(body.payment_id)).filter((j) => j.kind === 'payment_reversed')).toEqual([
      { kind: 'payment_reversed', code: `channel:${THRESHOLD_CHANNEL}`, amount: '-4723900000000000' },
      { kind: 'payment_reversed', code: `platform:fees#${shard}`, amount: '-146100000000000' },
      { kind: 'payment_reversed', code: 'platform:refunds_owed', amount: '4870000000000000' },
    ]);
    expect(wei(balanceBefore) - wei(await available(THRESHOLD_CHANNEL))).toBe(4_723_900_000_000_000n);
    expect((await audit(body.payment_id)).map((a) => [a.action, a.details.note])).toEqual([
      ['payment.reverse', 'chargeback'],
    ]);

    const again = await act(body.payment_id, 'reverse');
    expect(again.status).toBe(409);
    // Late copies of any status change nothing.
    for (const status of ['finished', 'refunded'])
      expect((await send({ ...body, payment_status: status })).status).toBe(200);
    expect(await journals(body.payment_id)).toHaveLength(6);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('an instant payment whose payout job has not run yet is refused (409) and stays in review', async () => {
    const body = await refundedAfterCredit(INSTANT_CHANNEL);
    const res = await act(body.payment_id, 'reverse');
    expect(res.status).toBe(409);
    expect(res.body.error).toMatch(/its instant payout job has not run yet/);
    // Its money has not moved on: waiting is the way, not acknowledging the refund.
    const ignore = await act(body.payment_id, 'ignore');
    expect(ignore.status).toBe(409);
    expect(ignore.body.error).toMatch(/its instant payout job has not run yet/);
    expect((await payment(body.payment_id)).reviewReason).toBe('refunded_after_credit');
    expect(await journals(body.payment_id)).toHaveLength(3);
  });

  it('ignore is refused for a refund after the credit, and reverse for anything else', async () => {
    const body = await refundedAfterCredit(THRESHOLD_CHANNEL);
    const ignore = await act(body.payment_id, 'ignore');
    expect(ignore.status).toBe(409);
    expect(ignore.body.error).toContain('reverse the credit');
    const partial = await sentPartial(THRESHOLD_CHANNEL);
    const reverse = await act(partial.payment_id, 'reverse');
    expect(reverse.status).toBe(409);
    expect(reverse.body.error).toContain(
      'only a payment refunded after its credit is reversed (review reason: partially_paid)',
    );
  });
});

describe('repeated deposits', () => {
  it('an IPN with parent_payment_id is its own payment, linked both ways in the payment API, in either order', async () => {
    const parent = finishedFor(THRESHOLD_CHANNEL);
    const child = finishedFor(THRESHOLD_CHANNEL, { parent_payment_id: parent.payment_id });
    // The child arrives first: it is recorded and credited on its own.
    expect((await send(child)).status).toBe(200);
    expect((await send(parent)).status).toBe(200);
    const second = finishedFor(THRESHOLD_CHANNEL, { parent_payment_id: parent.payment_id });
    expect((await send(second)).status).toBe(200);
    expect(await payment(child.payment_id)).toMatchObject({
      parentPaymentId: String(parent.payment_id),
      childPaymentIds: [],
      grossAmount: '0.00487',
    });
    expect(await payment(parent.payment_id)).toMatchObject({
      parentPaymentId: null,
      childPaymentIds: [String(child.payment_id), String(second.payment_id)],
    });
    expect(await journals(child.payment_id)).toHaveLength(3);
    expect(await journals(parent.payment_id)).toHaveLength(3);
  });

  it('a payment that names itself as its parent is refused with 400 and nothing written', async () => {
    const body = finishedFor(THRESHOLD_CHANNEL);
    const before = await rowCounts(db);
    const res = await send({ ...body, parent_payment_id: body.payment_id });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('parent_payment_id: a payment cannot be its own parent');
    expect(await rowCounts(db)).toEqual(before);
  });
});

describe('a conflicting order ignored before the credit', () => {
  /** The payment waits (order A), an IPN names order B for it (review), and A's next IPN arrives while it is in review. */
  async function conflictedThen(next: Record<string, unknown>): Promise<Record<string, unknown>> {
    const first = { ...structuredClone(fixtures.sequence[0]), payment_id: next.payment_id, order_id: next.order_id };
    expect((await send(first)).status).toBe(200);
    const other = await send({ ...first, order_id: `PGP-2|${THRESHOLD_CHANNEL}` });
    expect(other.body.reviewReason).toBe(`conflicting_order_id: PGP-2|${THRESHOLD_CHANNEL}`);
    const res = await send(next);
    expectAnswer(res, 202, {
      status: next.payment_status,
      reviewReason: `conflicting_order_id: PGP-2|${THRESHOLD_CHANNEL}`,
    });
    expect(await payment(next.payment_id)).toMatchObject({ creditedAt: null });
    return next;
  }

  it("its first order's finished IPN, kept while it was in review, is credited by the ignore (no copy of it need come again)", async () => {
    const body = await conflictedThen(finishedFor(THRESHOLD_CHANNEL));
    const res = await act(body.payment_id, 'ignore', { body: { note: "order B was the subscriber's mistake" } });
    expectAnswer(res, 200, {
      status: 'finished',
      orderId: body.order_id,
      reviewReason: null,
      grossAmount: '0.00487',
      netAmount: '0.0047239',
      payoutStrategy: 'threshold',
      conversion: { status: 'pending' },
      reviewAction: { action: 'ignore' },
    });
    expect(res.body.creditedAt).not.toBeNull();
    expect((await journals(body.payment_id)).map((j) => [j.kind, j.amount])).toEqual([
      ['payment_received', '4723900000000000'],
      ['payment_received', '146100000000000'],
      ['payment_received', '-4870000000000000'],
    ]);
    expect((await audit(body.payment_id)).map((a) => [a.action, a.details.credited])).toEqual([
      ['payment.ignore', expect.objectContaining({ gross: '4870000000000000' })],
    ]);
    // A copy of the finished IPN credits nothing more.
    expect((await send(body)).body.outcome).toBe('unchanged');
    expect(await journals(body.payment_id)).toHaveLength(3);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it("its first order's partially_paid IPN (PARTIAL_PAYMENTS=review) goes to review as partially_paid with the ignore, creditable as any partial", async () => {
    const body = await conflictedThen(partialFor(THRESHOLD_CHANNEL));
    const res = await act(body.payment_id, 'ignore');
    expectAnswer(res, 200, {
      status: 'partially_paid',
      reviewReason: 'partially_paid',
      creditedAt: null,
      reviewAction: { action: 'ignore' },
    });
    expect(await openAlert(body.payment_id)).toEqual([
      expect.objectContaining({ details: expect.objectContaining({ reason: 'partially_paid' }) }),
    ]);
    const credit = await act(body.payment_id, 'credit');
    expectAnswer(credit, 200, { grossAmount: '0.00294', reviewReason: null });
  });
});

describe('an action bound to the reason the person saw (expectedReason)', () => {
  it('a top-up that became refunded_after_credit between view and click is not ignored: 409 naming the current reason, nothing written; the reason now shown is acted on', async () => {
    const body = await sentPartial();
    expect((await act(body.payment_id, 'credit', { body: { expectedReason: 'partially_paid' } })).status).toBe(200);
    const topUp = await send(finishedAfter(body));
    const shown = topUp.body.reviewReason as string;
    expect(shown).toMatch(/^top_up: /);
    // NOWPayments refunds the payment before the person clicks Ignore on the top-up they are looking at.
    expect((await sendRefunded(body)).body.reviewReason).toBe('refunded_after_credit');
    const auditBefore = await audit(body.payment_id);
    for (const action of ['ignore', 'credit']) {
      const res = await act(body.payment_id, action, { body: { expectedReason: shown } });
      expect(res.status, action).toBe(409);
      expect(res.body.error, action).toBe(
        `cannot ${action} payment ${body.payment_id}: its review reason is now refunded_after_credit, not the one shown (${shown}): look at it again`,
      );
    }
    expect(await payment(body.payment_id)).toMatchObject({
      reviewReason: 'refunded_after_credit',
      reversedAt: null,
      grossAmount: '0.00294',
    });
    expect(await audit(body.payment_id)).toEqual(auditBefore);

    const reversed = await act(body.payment_id, 'reverse', {
      body: { expectedReason: 'refunded_after_credit', note: 'chargeback' },
    });
    expectAnswer(reversed, 200, { reviewReason: null, reviewAction: { action: 'reverse' } });
    // Out of review: the reason shown no longer holds either.
    const late = await act(body.payment_id, 'ignore', { body: { expectedReason: 'refunded_after_credit' } });
    expect(late.status).toBe(409);
    expect(late.body.error).toBe(
      `cannot ignore payment ${body.payment_id}: its review reason is now none (it is not in review), not the one shown (refunded_after_credit): look at it again`,
    );
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('an empty or non-string expectedReason is bad input (400)', async () => {
    const body = await sentPartial();
    for (const expectedReason of ['', 7, null])
      expect((await act(body.payment_id, 'ignore', { body: { expectedReason } })).status).toBe(400);
    expect((await payment(body.payment_id)).reviewReason).toBe('partially_paid');
  });
});

describe('the payment actions as an API', () => {
  it('404 for an unknown payment, 400 for a bad id, action or body, 401 without a token', async () => {
    expect((await act(9_999_999_999, 'credit')).status).toBe(404);
    expect((await act('abc', 'credit')).status).toBe(400);
    expect((await act(1, 'refund')).status).toBe(400);
    expect((await act(1, 'credit', { body: { note: 'x', amount: '1' } })).status).toBe(400);
    expect((await act(1, 'credit', { token: null })).status).toBe(401);
    expect((await act(1, 'credit', { token: 'wrong-token-0123456789' })).status).toBe(401);
  });

  it('a payment not in review is 409', async () => {
    const body = finishedFor(THRESHOLD_CHANNEL);
    await send(body);
    for (const action of ['credit', 'ignore', 'reverse']) {
      const res = await act(body.payment_id, action);
      expect(res.status).toBe(409);
      expect(res.body.error).toBe(`cannot ${action} payment ${body.payment_id}: it is not in review`);
    }
  });
});

describe('the ledger after all of the above', () => {
  it('balances', async () => {
    const report = await checkLedger(db.db);
    expect(report.problems).toEqual([]);
  });
});

describe('reverse once the money moved on (a worker running)', () => {
  let moving: TestDatabase;
  let worker: TestPayrail;
  beforeAll(async () => {
    moving = await createTestDatabase();
    // No ChangeNow answers: a conversion waits in its exchange step, an instant payout in its first run.
    worker = await startTestPayrail(moving, { env: { CONVERSION_MAX_WAIT: '1ms', PAYOUT_MAX_ATTEMPTS: '20' } });
    await createChannelPair(worker, CHANNELS, WALLET);
  });
  afterAll(async () => {
    await worker?.stop();
    if (moving) expect((await checkLedger(moving.db)).problems).toEqual([]);
    await moving?.close();
  });

  async function until<T>(what: string, read: () => Promise<T>, ok: (value: T) => boolean): Promise<T> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const value = await read();
      if (ok(value)) return value;
      if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(value)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** The payment's payout, once the worker has opened it. */
  function payoutOpened(paymentId: unknown) {
    return until(
      'payout',
      async () =>
        (await moving.pool.query(`select payout_id, status from payouts where payment_id = $1`, [String(paymentId)]))
          .rows,
      (r) => r.length === 1,
    );
  }

  /** The threshold payment as the API shows it, once a conversion has taken it. */
  function conversionTook(paymentId: unknown) {
    return until(
      'conversion',
      () => payment(paymentId, worker),
      (p) => p.conversion.status === 'converting',
    );
  }

  it('a threshold payment taken into a conversion: 409 naming the conversion and that it has not ended, still in review, nothing booked', async () => {
    const body = finishedFor(THRESHOLD_CHANNEL);
    expect((await send(body, worker)).status).toBe(200);
    const converting = await conversionTook(body.payment_id);
    expect(converting.conversion.status).toBe('converting');
    expect((await sendRefunded(body, worker)).status).toBe(202);
    const res = await act(body.payment_id, 'reverse', { on: worker });
    expect(res.status).toBe(409);
    expect(res.body.error).toMatch(
      /^cannot reverse payment \d+: its ETH is in conversion conv_[0-9a-f]{16} \((pending|exchange_requested)\), which has not ended: wait for the conversion /,
    );
    expect((await payment(body.payment_id, worker)).reviewReason).toBe('refunded_after_credit');
    expect((await journals(body.payment_id, moving)).map((j) => j.kind)).not.toContain('payment_reversed');
  });

  it('an instant payment with its payout opened: 409 naming the payout', async () => {
    const body = finishedFor(INSTANT_CHANNEL);
    expect((await send(body, worker)).status).toBe(200);
    const rows = await payoutOpened(body.payment_id);
    expect((await sendRefunded(body, worker)).status).toBe(202);
    const res = await act(body.payment_id, 'reverse', { on: worker });
    expect(res.status).toBe(409);
    expect(res.body.error).toContain(`its money is in instant payout ${rows[0].payout_id} (`);
    expect((await payment(body.payment_id, worker)).reviewReason).toBe('refunded_after_credit');
  });

  it('a top-up of an instant payment whose payout has not ended is refused (409 naming the payout); once the payout is cancelled (its ETH back on the channel) the credit sends the whole net to the next conversion', async () => {
    const body: Record<string, unknown> = partialFor(INSTANT_CHANNEL);
    expect((await send(body, worker)).status).toBe(202);
    expect((await act(body.payment_id, 'credit', { on: worker })).status).toBe(200);
    const [payout] = await payoutOpened(body.payment_id);
    const finished = await send(finishedAfter(body), worker);
    expect(finished.body.reviewReason).toMatch(/^top_up: /);
    const refused = await act(body.payment_id, 'credit', { on: worker });
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatch(
      new RegExp(
        `^cannot credit payment \\d+: its ETH is in instant payout ${payout.payout_id} \\((pending|held)\\): credit the rest once that payout has ended \\(cancel it while it has sent nothing\\)$`,
      ),
    );
    expect(await payment(body.payment_id, worker)).toMatchObject({
      grossAmount: '0.00294',
      reviewReason: expect.stringMatching(/^top_up: /),
    });

    expect((await worker.request('POST', `/api/payouts/${payout.payout_id}/cancel`)).status).toBe(200);
    const credit = await act(body.payment_id, 'credit', { on: worker });
    expectAnswer(credit, 200, {
      grossAmount: '0.00487',
      netAmount: '0.0047239',
      payoutStrategy: 'threshold',
      reviewReason: null,
    });
    // Nothing of it moved on for good: the next conversion takes all of its net (the cancelled payout's ETH with the rest).
    const { rows } = await moving.pool.query(
      'select net_moved_wei::text as moved, payout_id from payments where payment_id = $1',
      [String(body.payment_id)],
    );
    expect(rows).toEqual([{ moved: '0', payout_id: null }]);
    expect((await checkLedger(moving.db)).problems).toEqual([]);
  });

  it('a conversion that has not ended and a payout that sent nothing can still bring the money back: reverse and ignore are both 409 (wait for the conversion, cancel the payout), nothing booked; once the payout is cancelled its ETH is back on the channel and reverse takes the credit back', async () => {
    const threshold = finishedFor(THRESHOLD_CHANNEL);
    const instant = finishedFor(INSTANT_CHANNEL);
    expect((await send(threshold, worker)).status).toBe(200);
    expect((await send(instant, worker)).status).toBe(200);
    await conversionTook(threshold.payment_id);
    const [payout] = await payoutOpened(instant.payment_id);
    const cancelPath = `POST /api/payouts/${payout.payout_id}/cancel`;
    for (const [body, why] of [
      [
        threshold,
        /^its ETH is in conversion conv_[0-9a-f]{16} \((pending|exchange_requested)\), which has not ended: wait for the conversion \(once it completed, ignore acknowledges the refund; once it failed, its ETH is back on the channel and reverse takes it\)$/,
      ],
      [
        instant,
        new RegExp(
          `^its money is in instant payout ${payout.payout_id} \\((pending|held)\\), which has sent nothing: cancel the payout \\(${cancelPath.replace(/\//g, '\\/')}\\) to return its ETH to the channel, then reverse$`,
        ),
      ],
    ] as const) {
      expect((await sendRefunded(body, worker)).status).toBe(202);
      for (const action of ['reverse', 'ignore']) {
        const res = await act(body.payment_id, action, {
          on: worker,
          body: { note: 'NOWPayments settles the refund with the subscriber' },
        });
        expect(res.status, action).toBe(409);
        expect(res.body.error.replace(/^cannot \w+ payment \d+: /, ''), action).toMatch(why);
        expect(res.body.error, action).not.toContain('ignore acknowledges the refund instead');
      }
      expect(await payment(body.payment_id, worker)).toMatchObject({
        reviewReason: 'refunded_after_credit',
        reversedAt: null,
      });
      expect((await journals(body.payment_id, moving)).map((j) => j.kind)).toEqual([
        'payment_received',
        'payment_received',
        'payment_received',
      ]);
      expect(await audit(body.payment_id, moving)).toEqual([]);
    }

    // The payout sent nothing: cancelled, its ETH is the channel's again, and the refund takes it back.
    expect((await worker.request('POST', `/api/payouts/${payout.payout_id}/cancel`)).status).toBe(200);
    const reversed = await act(instant.payment_id, 'reverse', { on: worker, body: { note: 'chargeback' } });
    expectAnswer(reversed, 200, {
      status: 'refunded',
      reviewReason: null,
      reviewAction: { action: 'reverse' },
    });
    expect(reversed.body.reversedAt).not.toBeNull();
    expect(
      (await journals(instant.payment_id, moving))
        .filter((j) => j.kind === 'payment_reversed')
        .map((j) => [j.code, j.amount]),
    ).toEqual([
      [`channel:${INSTANT_CHANNEL}`, '-4723900000000000'],
      [`platform:fees#${shardOf(instant.payment_id)}`, '-146100000000000'],
      ['platform:refunds_owed', '4870000000000000'],
    ]);
    // Ignore was never the way: nothing acknowledged while the money could come back.
    expect((await audit(instant.payment_id, moving)).map((a) => a.action)).toEqual(['payment.reverse']);
    expect((await checkLedger(moving.db)).problems).toEqual([]);
  });
});
