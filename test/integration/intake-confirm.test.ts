/**
 * Credits confirmed with NOWPayments: with NOWPAYMENTS_API_KEY set, a crediting IPN is stored and answered at once,
 * and credited only once NOWPayments' API (the simulator, over real HTTP) agrees on status, outcome amount and
 * currency. A disagreement, an unknown payment or an API unreachable past the deadline → review with a critical
 * payment_unconfirmed alert, nothing credited. Without the key: credited on the IPN, as before. Ledger checked after each.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createNowPaymentsApi } from '../../src/integrations/nowpayments/index.ts';
import { checkLedger } from '../../src/ledger/index.ts';
import { createLogger } from '../../src/log.ts';
import { confirmPayment } from '../../src/pipeline/index.ts';
import { parsePercent } from '../../src/money/index.ts';
import { startNowPaymentsSimulator, type NowPaymentsSimulator } from '../../src/simulators/index.ts';
import { openAlerts } from '../support/alerts.ts';
import { usdtThresholdChannel } from '../support/api-seed.ts';
import { createChannel } from '../support/channels.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { fixtures, ipnBody, signed } from '../support/ipn.ts';
import { journalLines } from '../support/journals.ts';
import { IPN_SECRET, logSink, startTestPayrail, type TestPayrail } from '../support/payrail.ts';

const API_KEY = 'test-nowpayments-api-key-0123456789';
const CHANNEL_ID = '-1001200000001';
const CHANNEL = usdtThresholdChannel('100000.00');

let db: TestDatabase;
let sim: NowPaymentsSimulator;
let payrail: TestPayrail;
let nextPaymentId = 8_000_000_000;

function order(channelId = CHANNEL_ID) {
  return `PGP-6271402111|${channelId}`;
}

function finished(overrides: Record<string, unknown> = {}) {
  return ipnBody({ payment_id: nextPaymentId++, order_id: order(), ...overrides });
}

function partial(overrides: Record<string, unknown> = {}) {
  return { ...structuredClone(fixtures.partially_paid), payment_id: nextPaymentId++, order_id: order(), ...overrides };
}

function send(body: Record<string, unknown>, to: TestPayrail = payrail) {
  const { raw, headers } = signed(body, IPN_SECRET);
  return to.request('POST', '/webhooks/nowpayments', { raw, headers, token: null });
}

/** NOWPayments holds the payment as the IPN describes it (overrides: as it really is, when the IPN lies). */
function known(body: Record<string, unknown>, overrides: Record<string, unknown> = {}) {
  sim.addPayment(signed(body, IPN_SECRET).raw, overrides);
}

async function payment(id: unknown, on: TestPayrail = payrail) {
  return (await on.request('GET', `/api/payments/${id}`)).body;
}

function journals(id: unknown, on: TestDatabase = db) {
  return journalLines(on, id);
}

function unconfirmedAlerts(id: unknown, on: TestPayrail = payrail) {
  return openAlerts(on, 'payment_unconfirmed', id);
}

/**
 * An IPN NOWPayments holds as it says, sent while its API is as `fault` makes it (as it was, unless told): answered
 * 200 at once, its check to come.
 */
async function sendKnown(body: Record<string, unknown>, fault?: Parameters<NowPaymentsSimulator['setFault']>) {
  known(body);
  if (fault) await sim.setFault(...fault);
  expect((await send(body)).status).toBe(200);
}

/** A payrail that confirms credits with the simulated NOWPayments API. */
function startConfirming(on: TestDatabase, partialPayments: 'credit' | 'review'): Promise<TestPayrail> {
  return startTestPayrail(on, {
    env: {
      NOWPAYMENTS_API_KEY: API_KEY,
      NOWPAYMENTS_API_URL: sim.url,
      NOWPAYMENTS_TIMEOUT: '5s',
      PARTIAL_PAYMENTS: partialPayments,
    },
  });
}

/** The payment as the API shows it once `done` holds of it (15 s unless told). */
function paymentWhen(
  id: unknown,
  done: (p: Awaited<ReturnType<typeof payment>>) => boolean,
  timeoutMs?: number,
  on: TestPayrail = payrail,
) {
  return eventually(() => payment(id, on), done, timeoutMs);
}
const isCredited = (p: { creditedAt: unknown }) => p.creditedAt !== null;
const isInReview = (p: { reviewReason: unknown }) => p.reviewReason !== null;
/** NOWPayments' API asked at least once. */
const wasAsked = (p: { confirmation?: { attempts: number } }) => (p.confirmation?.attempts ?? 0) >= 1;

/**
 * The payment's deadline to be confirmed by (or its restated amount's) passes now: NOWPAYMENTS_CONFIRM_DEADLINE is an
 * hour, so the test moves the payment's own deadline instead.
 */
function deadlinePasses(
  id: unknown,
  deadline: 'confirm_deadline_at' | 'restated_confirm_deadline_at' = 'confirm_deadline_at',
) {
  return db.pool.query(`update payments set ${deadline} = now() - interval '1 second' where payment_id = $1`, [
    String(id),
  ]);
}

/** NOWPayments' expired IPN for the partial payment: the rest never came (the fixture's amounts). */
function expiredFor(body: Record<string, unknown>) {
  return {
    ...structuredClone(fixtures.expired),
    payment_id: body.payment_id,
    invoice_id: fixtures.partially_paid.invoice_id,
    order_id: body.order_id,
  };
}

/** Until no check of the payment with NOWPayments is queued any more. */
function confirmJobsDone(id: unknown, on: TestDatabase = db) {
  return eventually(
    async () =>
      (
        await on.pool.query('select count(*)::int as n from graphile_worker._private_jobs where key = $1', [
          `payment_confirm:${id}`,
        ])
      ).rows[0].n,
    (n) => n === 0,
    20_000,
  );
}

async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > until) throw new Error(`timed out; last value: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

beforeAll(async () => {
  db = await createTestDatabase();
  sim = await startNowPaymentsSimulator({ port: 0, apiKey: API_KEY });
  // Partial payments are credited here, so their check is exercised too; finished ones are credited either way.
  payrail = await startConfirming(db, 'credit');
  await createChannel(payrail, CHANNEL_ID, CHANNEL);
});

afterEach(async () => {
  await sim.setFault('none');
  expect((await checkLedger(db.db)).problems).toEqual([]);
});

afterAll(async () => {
  await payrail?.stop();
  await sim?.stop();
  await db?.close();
});

describe('with NOWPAYMENTS_API_KEY', () => {
  it('answers the IPN at once, and credits only after NOWPayments agrees', async () => {
    const body = finished();
    known(body);
    // The API answers slowly, so the moment between the IPN's answer and the credit can be looked at.
    await sim.setFault('slow', { slowMs: 1_500 });
    const callsBefore = sim.calls();
    const res = await send(body);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ paymentId: String(body.payment_id), status: 'finished', outcome: 'recorded' });
    const waiting = await payment(body.payment_id);
    expect(waiting).toMatchObject({
      status: 'finished',
      creditedAt: null,
      grossAmount: null,
      reviewReason: null,
      confirmation: { confirmedAt: null },
    });
    expect(await journals(body.payment_id)).toEqual([]);

    const credited = await paymentWhen(body.payment_id, isCredited);
    expect(sim.calls()).toBeGreaterThan(callsBefore);
    expect(credited).toMatchObject({
      grossAmount: '0.00487',
      feeAmount: '0.0001461',
      netAmount: '0.0047239',
      payoutStrategy: 'threshold',
      reviewReason: null,
      conversion: { status: 'pending' },
    });
    expect(credited.confirmation.confirmedAt).not.toBeNull();
    expect((await journals(body.payment_id)).map((e) => e.kind)).toEqual([
      'payment_received',
      'payment_received',
      'payment_received',
    ]);
  });

  it('credits a partial payment (PARTIAL_PAYMENTS=credit) only after NOWPayments agrees too', async () => {
    const body = partial();
    await sendKnown(body, ['slow', { slowMs: 1_000 }]);
    expect(await payment(body.payment_id)).toMatchObject({ status: 'partially_paid', creditedAt: null });
    const credited = await paymentWhen(body.payment_id, isCredited);
    expect(credited).toMatchObject({ grossAmount: '0.00294', reviewReason: null });
    expect(credited.confirmation.confirmedAt).not.toBeNull();
  });

  it("a partial payment that expires before NOWPayments confirmed it goes to review as partially_paid: a person's credit books the partial once NOWPayments' API agrees with it, never the expired IPN's amount", async () => {
    const body = partial();
    await sendKnown(body, ['down']);
    await paymentWhen(body.payment_id, wasAsked);
    // The rest never came: NOWPayments expires the payment (its IPN), while its books keep the partial as it arrived.
    const expired = expiredFor(body);
    const res = await send(expired);
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ status: 'expired', reviewReason: 'partially_paid' });
    await sim.setFault('none');
    await confirmJobsDone(body.payment_id);
    expect(await payment(body.payment_id)).toMatchObject({
      status: 'expired',
      reviewReason: 'partially_paid',
      creditedAt: null,
      reported: { outcomeAmount: '0.00294' },
    });
    expect(await journals(body.payment_id)).toEqual([]);

    // A person's credit waits for NOWPayments too: its API holds the partial, for this order, with that amount.
    const decided = await payrail.request('POST', `/api/payments/${body.payment_id}/credit`);
    expect(decided.status).toBe(200);
    expect(decided.body).toMatchObject({ creditedAt: null, reviewReason: null });
    const credited = await paymentWhen(body.payment_id, isCredited);
    expect(credited).toMatchObject({ grossAmount: '0.00294', netAmount: '0.0028518', reviewReason: null });
    expect(await journals(body.payment_id)).toHaveLength(3);
  });

  for (const [what, overrides, ipnSays, apiSays] of [
    ['another outcome amount', { outcome_amount: '0.00087' }, 'IPN 0.00487', 'NOWPayments 0.00087'],
    ['another status', { payment_status: 'partially_paid' }, 'IPN finished', 'NOWPayments partially_paid'],
    ['another outcome currency', { outcome_currency: 'usdttrc20' }, 'IPN eth', 'NOWPayments usdttrc20'],
  ] as const) {
    it(`NOWPayments saying ${what} → review with both values and a critical payment_unconfirmed alert, nothing credited`, async () => {
      const body = finished();
      known(body, overrides);
      expect((await send(body)).status).toBe(200);
      const held = await paymentWhen(body.payment_id, isInReview);
      expect(held.reviewReason).toMatch(/^payment_unconfirmed: NOWPayments disagrees with the IPN/);
      expect(held.reviewReason).toContain(ipnSays);
      expect(held.reviewReason).toContain(apiSays);
      expect(held).toMatchObject({ creditedAt: null, grossAmount: null });
      expect(await journals(body.payment_id)).toEqual([]);
      const alerts = await unconfirmedAlerts(body.payment_id);
      expect(alerts).toHaveLength(1);
      expect(alerts[0]).toMatchObject({
        severity: 'critical',
        details: {
          paymentId: String(body.payment_id),
          ipn: { status: 'finished', outcomeAmount: '0.00487', outcomeCurrency: 'eth' },
        },
      });
      expect(alerts[0]?.details.nowpayments).toBeTruthy();
      // NOWPayments resending the IPN does not credit it either.
      expect((await send(body)).status).toBe(202);
      expect(await payment(body.payment_id)).toMatchObject({ creditedAt: null });
    });
  }

  it('a payment NOWPayments does not know (a forged IPN) → review and alert, nothing credited', async () => {
    const body = finished();
    expect((await send(body)).status).toBe(200);
    const held = await paymentWhen(body.payment_id, isInReview);
    expect(held.reviewReason).toMatch(
      new RegExp(`^payment_unconfirmed: NOWPayments knows no payment ${body.payment_id}`),
    );
    expect(held.creditedAt).toBeNull();
    expect(await journals(body.payment_id)).toEqual([]);
    expect(await unconfirmedAlerts(body.payment_id)).toHaveLength(1);
  });

  describe('a payment for a channel saved only after it (unknown_channel) goes to the check when the channel is saved', () => {
    async function heldForChannel(channelId: string, isKnown: boolean) {
      const body = finished({ order_id: order(channelId) });
      if (isKnown) known(body);
      // Accepted and kept for a person: no channel to credit it to yet.
      expect((await send(body)).status).toBe(202);
      expect(await payment(body.payment_id)).toMatchObject({ reviewReason: 'unknown_channel', creditedAt: null });
      return body;
    }

    it('out of review at the save, credited only once NOWPayments agrees', async () => {
      const channelId = '-1001200000101';
      const body = await heldForChannel(channelId, true);
      // The API answers slowly, so the moment between the release and the credit can be looked at.
      await sim.setFault('slow', { slowMs: 1_500 });
      await createChannel(payrail, channelId, CHANNEL);
      expect(await payment(body.payment_id)).toMatchObject({ reviewReason: null, creditedAt: null });
      expect(await journals(body.payment_id)).toEqual([]);

      const credited = await paymentWhen(body.payment_id, isCredited);
      expect(credited).toMatchObject({ grossAmount: '0.00487', netAmount: '0.0047239', reviewReason: null });
      expect(credited.confirmation.confirmedAt).not.toBeNull();
      expect(await journals(body.payment_id)).toHaveLength(3);
    });

    it('one NOWPayments does not know (a forged IPN) → review and alert at the check, nothing credited', async () => {
      const channelId = '-1001200000102';
      const body = await heldForChannel(channelId, false);
      await createChannel(payrail, channelId, CHANNEL);
      const held = await paymentWhen(body.payment_id, (p) => String(p.reviewReason).startsWith('payment_unconfirmed'));
      expect(held.reviewReason).toMatch(
        new RegExp(`^payment_unconfirmed: NOWPayments knows no payment ${body.payment_id}`),
      );
      expect(held.creditedAt).toBeNull();
      expect(await journals(body.payment_id)).toEqual([]);
      expect(await unconfirmedAlerts(body.payment_id)).toHaveLength(1);
    });
  });

  it('NOWPayments down → not credited, retried; credited once it is back', async () => {
    const body = finished();
    await sendKnown(body, ['down']);
    const failing = await paymentWhen(body.payment_id, wasAsked);
    expect(failing).toMatchObject({ creditedAt: null, reviewReason: null });
    expect(failing.confirmation.lastError).toMatch(/network|ECONNREFUSED|connect/i);
    const { rows } = await db.pool.query(
      `select attempts, last_error from graphile_worker._private_jobs where key = $1`,
      [`payment_confirm:${body.payment_id}`],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0].attempts).toBeGreaterThanOrEqual(1);
    expect(await journals(body.payment_id)).toEqual([]);

    await sim.setFault('none');
    const credited = await paymentWhen(body.payment_id, isCredited, 20_000);
    expect(credited).toMatchObject({ grossAmount: '0.00487', reviewReason: null });
    expect(credited.confirmation.confirmedAt).not.toBeNull();
    expect(await journals(body.payment_id)).toHaveLength(3);
  });

  it('NOWPayments answering 5xx past the deadline → review and alert, and never credited on the IPN alone', async () => {
    const body = finished();
    await sendKnown(body, ['5xx']);
    await paymentWhen(body.payment_id, wasAsked);
    // The deadline passes (NOWPAYMENTS_CONFIRM_DEADLINE is an hour; the test moves the payment's deadline instead).
    await deadlinePasses(body.payment_id);
    const held = await paymentWhen(body.payment_id, isInReview, 20_000);
    expect(held.reviewReason).toMatch(/^payment_unconfirmed: NOWPayments unreachable until the deadline/);
    expect(held.reviewReason).toContain('HTTP 503');
    expect(held.creditedAt).toBeNull();
    expect(await unconfirmedAlerts(body.payment_id)).toHaveLength(1);

    await sim.setFault('none');
    expect((await send(body)).status).toBe(202);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(await payment(body.payment_id)).toMatchObject({ creditedAt: null });
    expect(await journals(body.payment_id)).toEqual([]);
  });

  describe('a top-up (a later IPN saying more than a credited partial) is offered only once NOWPayments agrees', () => {
    /** A partial payment credited once NOWPayments agreed (PARTIAL_PAYMENTS=credit here): 0.00294 ETH. */
    async function creditedPartial(): Promise<Record<string, unknown>> {
      const body = partial();
      await sendKnown(body);
      await paymentWhen(body.payment_id, isCredited);
      return body;
    }
    const finishedFor = (body: Record<string, unknown>, overrides: Record<string, unknown> = {}) =>
      ipnBody({ payment_id: body.payment_id, invoice_id: body.invoice_id, order_id: body.order_id, ...overrides });
    const topUpJournals = async (id: unknown) =>
      (await journals(id)).length +
      (await journals(`${id}:4870000000000000`)).length +
      (await journals(`${id}:50000000000000000000`)).length;

    it('a forged finished IPN saying 50 ETH while NOWPayments says partially_paid 0.00294 → review payment_unconfirmed with both values and a critical alert; never offered or credited', async () => {
      const body = await creditedPartial();
      // Signed with the IPN secret, but NOWPayments' books still hold the partial.
      const forged = finishedFor(body, { outcome_amount: 50 });
      const res = await send(forged);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ status: 'finished', outcome: 'advanced' });
      expect(res.body.reviewReason).toBeUndefined();
      const held = await paymentWhen(body.payment_id, isInReview);
      expect(held.reviewReason).toBe(
        'payment_unconfirmed: NOWPayments disagrees with the top-up IPN (credited 0.00294 eth): payment_status: IPN finished, NOWPayments partially_paid; outcome_amount: IPN 50, NOWPayments 0.00294',
      );
      expect(held).toMatchObject({
        grossAmount: '0.00294',
        netAmount: '0.0028518',
        restated: { outcomeAmount: '50', outcomeCurrency: 'eth', confirmedAt: null },
      });
      const alerts = await unconfirmedAlerts(body.payment_id);
      expect(alerts).toHaveLength(1);
      expect(alerts[0]).toMatchObject({
        severity: 'critical',
        details: {
          ipn: { status: 'finished', outcomeAmount: '50', outcomeCurrency: 'eth' },
          nowpayments: { status: 'partially_paid', outcomeAmount: '0.00294' },
        },
      });

      const credit = await payrail.request('POST', `/api/payments/${body.payment_id}/credit`);
      expect(credit.status).toBe(409);
      // Copies of the forgery change nothing; ignore closes it with the credit as it was booked.
      expect((await send(forged)).status).toBe(202);
      expect((await payrail.request('POST', `/api/payments/${body.payment_id}/ignore`)).status).toBe(200);
      expect((await send(forged)).status).toBe(200);
      expect(await payment(body.payment_id)).toMatchObject({ reviewReason: null, grossAmount: '0.00294' });
      expect(await topUpJournals(body.payment_id)).toBe(3);
    });

    it('the real rest (NOWPayments says finished 0.00487) is offered as top_up once the check agrees, not before, and its credit books the difference', async () => {
      const body = await creditedPartial();
      const rest = finishedFor(body);
      await sendKnown(rest, ['slow', { slowMs: 1_500 }]);
      // Asked, not offered yet: a person cannot credit what NOWPayments has not confirmed.
      expect(await payment(body.payment_id)).toMatchObject({
        reviewReason: null,
        grossAmount: '0.00294',
        restated: { outcomeAmount: '0.00487', confirmedAt: null },
      });
      expect((await payrail.request('POST', `/api/payments/${body.payment_id}/credit`)).status).toBe(409);
      const offered = await paymentWhen(body.payment_id, isInReview);
      expect(offered.reviewReason).toBe(
        'top_up: credited 0.00294 eth; a later finished IPN says 0.00487 eth (0.00193 eth more)',
      );
      expect(offered.restated.confirmedAt).not.toBeNull();
      expect(await unconfirmedAlerts(body.payment_id)).toEqual([]);
      const credit = await payrail.request('POST', `/api/payments/${body.payment_id}/credit`);
      expect(credit.status).toBe(200);
      expect(credit.body).toMatchObject({ grossAmount: '0.00487', netAmount: '0.0047239', reviewReason: null });
      expect((await journals(`${body.payment_id}:4870000000000000`)).map((e) => [e.kind, e.amount])).toEqual([
        ['payment_topped_up', '1872100000000000'],
        ['payment_topped_up', '57900000000000'],
        ['payment_topped_up', '-1930000000000000'],
      ]);
    });

    it('NOWPayments unreachable past the deadline → payment_unconfirmed; the top-up is never offered on the IPN alone', async () => {
      const body = await creditedPartial();
      const rest = finishedFor(body);
      await sendKnown(rest, ['5xx']);
      await paymentWhen(body.payment_id, wasAsked);
      expect(await payment(body.payment_id)).toMatchObject({ reviewReason: null, grossAmount: '0.00294' });
      await deadlinePasses(body.payment_id, 'restated_confirm_deadline_at');
      const held = await paymentWhen(body.payment_id, isInReview, 20_000);
      expect(held.reviewReason).toMatch(
        /^payment_unconfirmed: NOWPayments unreachable until the deadline \(.*\) about the top-up IPN \(credited 0\.00294 eth, the IPN says finished 0\.00487 eth\); last: .*HTTP 503/,
      );
      expect(held.grossAmount).toBe('0.00294');
      expect((await payrail.request('POST', `/api/payments/${body.payment_id}/credit`)).status).toBe(409);
      expect(await unconfirmedAlerts(body.payment_id)).toHaveLength(1);
      expect(await topUpJournals(body.payment_id)).toBe(3);
    });

    it('unconfirmed through an outage, then asked again (recheck) once NOWPayments answers: offered as top_up only when its API agrees, and its credit books the difference', async () => {
      const body = await creditedPartial();
      const rest = finishedFor(body);
      const attempts = (await payment(body.payment_id)).confirmation.attempts as number;
      await sendKnown(rest, ['down']);
      await paymentWhen(body.payment_id, (p) => p.confirmation.attempts > attempts);
      await deadlinePasses(body.payment_id, 'restated_confirm_deadline_at');
      const held = await paymentWhen(body.payment_id, isInReview, 20_000);
      expect(held.reviewReason).toMatch(
        /^payment_unconfirmed: NOWPayments unreachable until the deadline \(.*\) about the top-up IPN/,
      );

      await sim.setFault('none');
      const asked = await payrail.request('POST', `/api/payments/${body.payment_id}/recheck`);
      expect(asked.status).toBe(200);
      expect(asked.body).toMatchObject({
        reviewReason: null,
        grossAmount: '0.00294',
        restated: { outcomeAmount: '0.00487', confirmedAt: null },
      });
      expect(asked.body.restated.confirmDeadlineAt).not.toBeNull();
      const offered = await paymentWhen(body.payment_id, isInReview, 20_000);
      expect(offered.reviewReason).toBe(
        'top_up: credited 0.00294 eth; a later finished IPN says 0.00487 eth (0.00193 eth more)',
      );
      expect(offered.restated.confirmedAt).not.toBeNull();
      const credit = await payrail.request('POST', `/api/payments/${body.payment_id}/credit`);
      expect(credit.status).toBe(200);
      expect(credit.body).toMatchObject({ grossAmount: '0.00487', netAmount: '0.0047239', reviewReason: null });
      expect(await topUpJournals(body.payment_id)).toBe(6);
    });
  });

  it("a conflicting order ignored before the credit: the first order's finished IPN, kept while in review, goes to NOWPayments' check with the ignore and is credited once it agrees", async () => {
    const body = finished();
    const first = { ...structuredClone(fixtures.sequence[0]), payment_id: body.payment_id, order_id: body.order_id };
    expect((await send(first)).status).toBe(200);
    expect((await send({ ...first, order_id: `PGP-2|${CHANNEL_ID}` })).body.reviewReason).toBe(
      `conflicting_order_id: PGP-2|${CHANNEL_ID}`,
    );
    known(body);
    expect((await send(body)).status).toBe(202);
    await sim.setFault('slow', { slowMs: 1_000 });
    const res = await payrail.request('POST', `/api/payments/${body.payment_id}/ignore`);
    expect(res.status).toBe(200);
    // Not on the IPN's word: the check is asked for, and the credit waits for it.
    expect(res.body).toMatchObject({
      status: 'finished',
      reviewReason: null,
      creditedAt: null,
      confirmation: { confirmedAt: null },
    });
    const credited = await paymentWhen(body.payment_id, isCredited);
    expect(credited).toMatchObject({ grossAmount: '0.00487', orderId: body.order_id, reviewReason: null });
    expect(credited.confirmation.confirmedAt).not.toBeNull();
    expect(await journals(body.payment_id)).toHaveLength(3);
  });

  it('copies of the IPN and repeated runs of the check credit once', async () => {
    const body = finished();
    known(body);
    await sim.setFault('slow', { slowMs: 500 });
    const answers = await Promise.all(Array.from({ length: 20 }, () => send(body)));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    // The check run by hand, three at once, besides the queue's job: every one of them may find it uncredited.
    const deps = {
      db: db.db,
      logger: createLogger({ level: 'silent' }),
      notifyAlerts: false,
      api: createNowPaymentsApi({ baseUrl: sim.url, apiKey: API_KEY, timeoutMs: 5_000 }),
      intake: { feePercent: parsePercent('3'), partialPayments: 'credit' as const, confirm: { deadlineMs: 3_600_000 } },
    };
    const runs = await Promise.all([
      confirmPayment(deps, String(body.payment_id)),
      confirmPayment(deps, String(body.payment_id)),
      confirmPayment(deps, String(body.payment_id)),
    ]);
    expect(runs.filter((r) => r === 'credited').length).toBeLessThanOrEqual(1);
    const credited = await paymentWhen(body.payment_id, isCredited);
    expect(credited.confirmation.confirmedAt).not.toBeNull();
    for (let i = 0; i < 5; i++) expect((await send(body)).body.outcome).toBe('unchanged');
    expect(await confirmPayment(deps, String(body.payment_id))).toBe('nothing');
    await db.pool.query(`select graphile_worker.add_job('payment_confirm', json_build_object('paymentId', $1::text))`, [
      String(body.payment_id),
    ]);
    await eventually(
      async () =>
        (
          await db.pool.query(
            `select count(*)::int as n from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id where t.identifier = 'payment_confirm'`,
          )
        ).rows[0].n,
      (n) => n === 0,
    );
    const entries = await journals(body.payment_id);
    expect(entries).toHaveLength(3);
    expect(entries.find((e) => e.code === `channel:${CHANNEL_ID}`)?.amount).toBe('4723900000000000');
    expect((await payment(body.payment_id)).ipnCount).toBe(25);
  });
});

describe('recheck: a payment NOWPayments did not confirm is asked about again', () => {
  const recheck = (id: unknown, body?: unknown) =>
    payrail.request('POST', `/api/payments/${id}/recheck`, body === undefined ? {} : { body });
  const audits = async (id: unknown) =>
    (await db.pool.query(`select action, details from audit_log where subject = $1 order by id`, [String(id)]))
      .rows as Array<{ action: string; details: Record<string, unknown> }>;
  /** The payment's confirmation deadline passes now (NOWPAYMENTS_CONFIRM_DEADLINE is an hour). */
  /** NOWPayments down until the payment's deadline: in review as payment_unconfirmed, nothing credited. */
  async function unreachableUntilDeadline(body: Record<string, unknown>) {
    await sim.setFault('down');
    expect((await send(body)).status).toBe(200);
    await paymentWhen(body.payment_id, wasAsked);
    await deadlinePasses(body.payment_id);
    const held = await paymentWhen(body.payment_id, isInReview, 20_000);
    expect(held.reviewReason).toMatch(/^payment_unconfirmed: NOWPayments unreachable until the deadline/);
    return held;
  }

  it('after an outage past the deadline: a recheck while NOWPayments is still down leaves it uncredited and back in review at the new deadline; once it is up, a recheck credits it, once', async () => {
    const body = finished();
    known(body);
    const held = await unreachableUntilDeadline(body);
    expect(held.creditedAt).toBeNull();
    expect(await journals(body.payment_id)).toEqual([]);

    // Still down: it waits for the check again, with a fresh deadline, and is never credited on the IPN.
    const asked = await recheck(body.payment_id, { note: 'NOWPayments had an outage' });
    expect(asked.status).toBe(200);
    expect(asked.body).toMatchObject({ reviewReason: null, creditedAt: null, reviewAction: null });
    expect(Date.parse(asked.body.confirmation.deadlineAt)).toBeGreaterThan(Date.now() + 3_000_000);
    const attempts = asked.body.confirmation.attempts as number;
    await paymentWhen(body.payment_id, (p) => p.confirmation.attempts > attempts, 20_000);
    expect(await payment(body.payment_id)).toMatchObject({ reviewReason: null, creditedAt: null });
    await deadlinePasses(body.payment_id);
    const again = await paymentWhen(body.payment_id, isInReview, 20_000);
    expect(again).toMatchObject({ creditedAt: null });
    expect(again.reviewReason).toMatch(/^payment_unconfirmed: NOWPayments unreachable until the deadline/);
    expect(await journals(body.payment_id)).toEqual([]);

    await sim.setFault('none');
    expect((await recheck(body.payment_id)).status).toBe(200);
    const credited = await paymentWhen(body.payment_id, isCredited, 20_000);
    expect(credited).toMatchObject({
      grossAmount: '0.00487',
      netAmount: '0.0047239',
      reviewReason: null,
      conversion: { status: 'pending' },
    });
    expect(credited.confirmation.confirmedAt).not.toBeNull();
    expect(await journals(body.payment_id)).toHaveLength(3);
    expect((await audits(body.payment_id)).map((a) => a.action)).toEqual(['payment.recheck', 'payment.recheck']);
    expect((await audits(body.payment_id))[0]?.details).toMatchObject({
      reason: held.reviewReason,
      note: 'NOWPayments had an outage',
      confirmDeadline: asked.body.confirmation.deadlineAt,
    });
    // Out of review and credited: nothing to recheck.
    expect((await recheck(body.payment_id)).status).toBe(409);
  });

  it('never credits on the IPN alone: NOWPayments still disagreeing puts it back in review naming both values; once its API agrees, the recheck credits it', async () => {
    const body = finished();
    known(body, { outcome_amount: '0.00087' });
    expect((await send(body)).status).toBe(200);
    await paymentWhen(body.payment_id, isInReview);
    expect((await recheck(body.payment_id)).status).toBe(200);
    const again = await paymentWhen(body.payment_id, isInReview);
    expect(again.reviewReason).toContain('outcome_amount: IPN 0.00487, NOWPayments 0.00087');
    expect(again.creditedAt).toBeNull();
    expect(await journals(body.payment_id)).toEqual([]);

    known(body);
    expect((await recheck(body.payment_id)).status).toBe(200);
    const credited = await paymentWhen(body.payment_id, isCredited, 20_000);
    expect(credited).toMatchObject({ grossAmount: '0.00487', reviewReason: null });
    expect(await journals(body.payment_id)).toHaveLength(3);
  });

  it('a partial payment the check did not confirm, expired since: recheck is refused (NOWPayments can no longer confirm what arrived), ignore closes it, nothing credited', async () => {
    const body = partial();
    known(body);
    await unreachableUntilDeadline(body);
    const expired = expiredFor(body);
    known(expired);
    await sim.setFault('none');
    expect((await send(expired)).body).toMatchObject({
      status: 'expired',
      reviewReason: expect.stringMatching(/^payment_unconfirmed: /),
    });
    const refused = await recheck(body.payment_id);
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatch(
      /NOWPayments expired the partial payment since: its API no longer describes what arrived \(0\.00294 eth\)/,
    );
    expect(await payment(body.payment_id)).toMatchObject({
      status: 'expired',
      reviewReason: expect.stringMatching(/^payment_unconfirmed: /),
      confirmation: { attempts: expect.any(Number) },
    });
    expect((await payrail.request('POST', `/api/payments/${body.payment_id}/ignore`)).status).toBe(200);
    expect(await journals(body.payment_id)).toEqual([]);
    expect((await audits(body.payment_id)).map((a) => a.action)).toEqual(['payment.ignore']);
  });

  it('is refused (409, nothing written) for any other review reason, and out of review', async () => {
    const foreign = finished({ outcome_currency: 'usdttrc20' });
    expect((await send(foreign)).status).toBe(202);
    const refused = await recheck(foreign.payment_id);
    expect(refused.status).toBe(409);
    expect(refused.body.error).toContain('only a payment NOWPayments did not confirm is checked again');
    expect(await payment(foreign.payment_id)).toMatchObject({ reviewReason: 'foreign_outcome_currency: usdttrc20' });
    expect(await audits(foreign.payment_id)).toEqual([]);
    const waiting = { ...structuredClone(fixtures.sequence[0]), payment_id: nextPaymentId++, order_id: order() };
    expect((await send(waiting)).status).toBe(200);
    expect((await recheck(waiting.payment_id)).status).toBe(409);
  });
});

describe("a person's credit of a partial payment (PARTIAL_PAYMENTS=review) waits for NOWPayments' API too", () => {
  let reviewed: TestPayrail;
  let reviewedDb: TestDatabase;
  const credit = (id: unknown) => reviewed.request('POST', `/api/payments/${id}/credit`);
  const expiredOf = (body: Record<string, unknown>) => ({
    ...structuredClone(fixtures.expired),
    payment_id: body.payment_id,
    invoice_id: fixtures.partially_paid.invoice_id,
    order_id: body.order_id,
  });

  beforeAll(async () => {
    reviewedDb = await createTestDatabase();
    reviewed = await startConfirming(reviewedDb, 'review');
    await createChannel(reviewed, CHANNEL_ID, CHANNEL);
  });

  afterEach(async () => {
    expect((await checkLedger(reviewedDb.db)).problems).toEqual([]);
  });

  afterAll(async () => {
    await reviewed?.stop();
    await reviewedDb?.close();
  });

  /** A partial IPN NOWPayments holds as it says, kept for a person (202); its body. */
  async function heldPartial() {
    const body = partial();
    known(body);
    expect((await send(body, reviewed)).status).toBe(202);
    return body;
  }

  async function creditedLater(id: unknown) {
    const res = await credit(id);
    expect(res.status).toBe(200);
    // The decision is the person's; the credit waits for NOWPayments' answer.
    expect(res.body).toMatchObject({ creditedAt: null, reviewReason: null, reviewAction: { action: 'credit' } });
    return eventually(
      () => payment(id, reviewed),
      (p) => p.creditedAt !== null || p.reviewReason !== null,
      20_000,
    );
  }

  it('a forged partially_paid IPN (signed, unknown to NOWPayments) a person credits is never credited: payment_unconfirmed with a critical alert', async () => {
    const body = partial();
    expect((await send(body, reviewed)).status).toBe(202);
    const held = await creditedLater(body.payment_id);
    expect(held).toMatchObject({ creditedAt: null, grossAmount: null });
    expect(held.reviewReason).toBe(
      `payment_unconfirmed: NOWPayments knows no payment ${body.payment_id}; the IPN says partially_paid 0.00294 eth`,
    );
    expect(await journals(body.payment_id, reviewedDb)).toEqual([]);
    expect(await unconfirmedAlerts(body.payment_id, reviewed)).toMatchObject([{ severity: 'critical' }]);
    // A recheck asks again, and cannot credit it either; ignore closes it.
    expect((await reviewed.request('POST', `/api/payments/${body.payment_id}/recheck`)).status).toBe(200);
    const again = await paymentWhen(body.payment_id, isInReview, 20_000, reviewed);
    expect(again).toMatchObject({
      creditedAt: null,
      reviewReason: expect.stringMatching(/^payment_unconfirmed: NOWPayments knows no payment/),
    });
    expect((await reviewed.request('POST', `/api/payments/${body.payment_id}/ignore`)).status).toBe(200);
    expect(await journals(body.payment_id, reviewedDb)).toEqual([]);
  });

  it('a partial NOWPayments holds as the IPN says is credited with its amount once the API agrees, once', async () => {
    const body = await heldPartial();
    const credited = await creditedLater(body.payment_id);
    expect(credited).toMatchObject({
      grossAmount: '0.00294',
      netAmount: '0.0028518',
      reviewReason: null,
      reviewAction: { action: 'credit' },
    });
    expect(credited.confirmation.confirmedAt).not.toBeNull();
    expect(await journals(body.payment_id, reviewedDb)).toHaveLength(3);
    // A second click finds it credited.
    expect((await credit(body.payment_id)).status).toBe(409);
  });

  it("a partial that ended (expired since) is credited with the partial amount once NOWPayments' books hold that partial", async () => {
    const body = await heldPartial();
    expect((await send(expiredOf(body), reviewed)).body).toMatchObject({
      status: 'expired',
      reviewReason: 'partially_paid',
    });
    const credited = await creditedLater(body.payment_id);
    expect(credited).toMatchObject({ status: 'expired', grossAmount: '0.00294', reviewReason: null });
    expect(await journals(body.payment_id, reviewedDb)).toHaveLength(3);
  });

  it('an API that says expired cannot confirm what arrived: payment_unconfirmed, nothing credited', async () => {
    const body = partial();
    known(expiredOf(body));
    expect((await send(body, reviewed)).status).toBe(202);
    expect((await send(expiredOf(body), reviewed)).status).toBe(202);
    const held = await creditedLater(body.payment_id);
    expect(held).toMatchObject({
      creditedAt: null,
      reviewReason: expect.stringMatching(
        /^payment_unconfirmed: NOWPayments disagrees with the IPN: payment_status: IPN partially_paid, NOWPayments expired; outcome_amount: IPN 0\.00294/,
      ),
    });
    expect(await journals(body.payment_id, reviewedDb)).toEqual([]);
  });

  it('more arriving after the decision (a larger partially_paid IPN, real or forged) sends it back to review: the decision was for the amount seen', async () => {
    const body = await heldPartial();
    await sim.setFault('down');
    expect((await credit(body.payment_id)).body).toMatchObject({
      creditedAt: null,
      reviewReason: null,
      reviewAction: { action: 'credit' },
    });
    // Signed with the IPN secret: 50 ETH "arrived" while the check waits for NOWPayments.
    expect((await send({ ...body, outcome_amount: 50 }, reviewed)).status).toBe(202);
    const again = await payment(body.payment_id, reviewed);
    expect(again).toMatchObject({
      creditedAt: null,
      reviewReason: 'partially_paid',
      reviewAction: null,
      reported: { outcomeAmount: '50' },
    });
    await sim.setFault('none');
    await confirmJobsDone(body.payment_id, reviewedDb);
    expect(await payment(body.payment_id, reviewed)).toMatchObject({
      creditedAt: null,
      reviewReason: 'partially_paid',
    });
    expect(await journals(body.payment_id, reviewedDb)).toEqual([]);
  });

  it('NOWPayments expiring the payment after the decision keeps the decision: the check books the partial', async () => {
    const body = await heldPartial();
    await sim.setFault('down');
    expect((await credit(body.payment_id)).status).toBe(200);
    expect(await send(expiredOf(body), reviewed)).toMatchObject({ status: 200, body: { status: 'expired' } });
    expect(await payment(body.payment_id, reviewed)).toMatchObject({
      status: 'expired',
      reviewReason: null,
      reviewAction: { action: 'credit' },
    });
    await sim.setFault('none');
    const credited = await eventually(
      () => payment(body.payment_id, reviewed),
      (p) => p.creditedAt !== null || p.reviewReason !== null,
      30_000,
    );
    expect(credited).toMatchObject({ status: 'expired', grossAmount: '0.00294', reviewReason: null });
  });

  it('a forged ended partial (partially_paid then expired, both unknown to NOWPayments) is never credited', async () => {
    const body = partial();
    expect((await send(body, reviewed)).status).toBe(202);
    expect((await send(expiredOf(body), reviewed)).status).toBe(202);
    const held = await creditedLater(body.payment_id);
    expect(held).toMatchObject({
      creditedAt: null,
      reviewReason: expect.stringMatching(/^payment_unconfirmed: NOWPayments knows no payment/),
    });
    expect(await journals(body.payment_id, reviewedDb)).toEqual([]);
  });
});

describe('without NOWPAYMENTS_API_KEY', () => {
  let plain: TestPayrail;
  let plainDb: TestDatabase;
  const logs = logSink();

  beforeAll(async () => {
    plainDb = await createTestDatabase();
    plain = await startTestPayrail(plainDb, { roles: { web: true, worker: false }, logs });
    await createChannel(plain, CHANNEL_ID, CHANNEL);
  });

  afterAll(async () => {
    await plain?.stop();
    await plainDb?.close();
  });

  it('credits from the signed IPN as before, asking nothing of NOWPayments, and warns at start on mainnet', async () => {
    const warning = logs.lines.find((l) => l.event === 'ipn_credits_unconfirmed');
    expect(warning).toBeDefined();
    expect(String(warning?.msg)).toContain('NOWPAYMENTS_API_KEY');
    const body = finished();
    const callsBefore = sim.calls();
    expect((await send(body, plain)).status).toBe(200);
    const credited = await payment(body.payment_id, plain);
    expect(credited).toMatchObject({ grossAmount: '0.00487', netAmount: '0.0047239', confirmation: null });
    expect(credited.creditedAt).not.toBeNull();
    expect(await journals(body.payment_id, plainDb)).toHaveLength(3);
    const { rows } = await plainDb.pool.query(
      `select count(*)::int as n from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id where t.identifier = 'payment_confirm'`,
    );
    expect(rows[0].n).toBe(0);
    expect(sim.calls()).toBe(callsBefore);
    expect((await checkLedger(plainDb.db)).problems).toEqual([]);
  });
});
