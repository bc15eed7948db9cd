/**
 * A channel's own platform fee. Through PUT /api/channels/:id it is set, kept when left out, cleared by null and
 * refused with a 400 naming the field (nothing stored); every save is audited with it before and after, and the
 * column's check holds the bounds PLATFORM_FEE_PERCENT has. Every credit takes the fee in force in its own
 * transaction (the channel's, else PLATFORM_FEE_PERCENT): on the payment row (fee_percent, the split) and in its
 * journal alike; a later change of the fee leaves a credit as it was, and a top-up takes the fee its payment was first
 * credited at. Web only: intake credits on the webhook's own request, and no worker moves anything afterwards (with
 * NOWPayments' check, the check is run by hand).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createNowPaymentsApi } from '../../src/integrations/nowpayments/index.ts';
import { checkLedger } from '../../src/ledger/index.ts';
import { createLogger } from '../../src/log.ts';
import { parsePercent } from '../../src/money/index.ts';
import { confirmPayment } from '../../src/pipeline/index.ts';
import { startNowPaymentsSimulator } from '../../src/simulators/index.ts';
import { createTestDatabase, fingerprint, type TestDatabase } from '../support/db.ts';
import { fixtures, ipnBody, signed } from '../support/ipn.ts';
import { IPN_SECRET, startTestPayrail, type TestPayrail } from '../support/payrail.ts';

const WALLET = '0x8ba1f109551bD432803012645Ac136ddd64DBA72';
/** PLATFORM_FEE_PERCENT of this file: neither the setting's default (3) nor any channel's own fee here. */
const DEFAULT_FEE = '4';
/** The finished fixture's outcome, and the partial fixture's: 0.00487 and 0.00294 ETH. */
const FINISHED_WEI = 4_870_000_000_000_000n;
const PARTIAL_WEI = 2_940_000_000_000_000n;

const channelBody = {
  payoutStrategy: 'threshold',
  // Far above what these payments add up to: nothing is batched for a payout.
  thresholdUsd: '100000.00',
  payoutCurrency: 'usdt',
  payoutNetwork: 'eth',
  walletAddress: WALLET,
};

/** The fee a percent (as text) takes of a gross amount, computed here on its own: rounded down in wei. */
function feeOf(gross: bigint, percent: string): bigint {
  const [whole, fraction = ''] = percent.split('.');
  const scale = 10n ** BigInt(fraction.length);
  return (gross * BigInt(`${whole}${fraction}`)) / (scale * 100n);
}

interface AuditRow {
  action: string;
  details: { before: Record<string, unknown> | null; after: Record<string, unknown> };
}

let db: TestDatabase;
let payrail: TestPayrail;
let nextPaymentId = 9_240_000_000;
let nextChannel = 1_002_400_000_001;

beforeAll(async () => {
  db = await createTestDatabase();
  payrail = await startTestPayrail(db, {
    roles: { web: true, worker: false },
    env: { PLATFORM_FEE_PERCENT: DEFAULT_FEE },
  });
});

afterEach(async () => {
  expect((await checkLedger(db.db)).problems).toEqual([]);
});

afterAll(async () => {
  await payrail?.stop();
  await db?.close();
});

const put = (channelId: string, body: unknown) => payrail.request('PUT', `/api/channels/${channelId}`, { body });
const get = (channelId: string) => payrail.request('GET', `/api/channels/${channelId}`);

async function newChannel(fee?: string | null): Promise<string> {
  const channelId = `-${nextChannel++}`;
  const res = await put(channelId, { ...channelBody, ...(fee !== undefined && { platformFeePercent: fee }) });
  expect(res.status).toBe(201);
  return channelId;
}

async function send(body: Record<string, unknown>) {
  const { raw, headers } = signed(body, IPN_SECRET);
  return payrail.request('POST', '/webhooks/nowpayments', { raw, headers, token: null });
}

/** A finished IPN for the channel (0.00487 ETH), credited on its request. */
async function pay(channelId: string): Promise<string> {
  const body = ipnBody({ payment_id: nextPaymentId++, order_id: `PGP-1|${channelId}` });
  const res = await send(body);
  expect(res.status).toBe(200);
  expect(res.body).toMatchObject({ outcome: 'recorded', status: 'finished' });
  return String(body.payment_id);
}

async function auditRows(channelId: string): Promise<AuditRow[]> {
  const { rows } = await db.pool.query<AuditRow>(
    'select action, details from audit_log where subject = $1 order by id',
    [`channel:${channelId}`],
  );
  return rows;
}

async function storedFee(channelId: string): Promise<string | null | undefined> {
  const { rows } = await db.pool.query<{ fee: string | null }>(
    'select platform_fee_percent::text as fee from channels where channel_id = $1',
    [channelId],
  );
  return rows[0]?.fee;
}

/** The credit as the payment row holds it, in wei. */
async function creditOf(paymentId: string) {
  const { rows } = await db.pool.query<{ gross: string | null; fee: string; net: string; percent: string | null }>(
    `select gross_amount::text as gross, fee_amount::text as fee, net_amount::text as net, fee_percent::text as percent
     from payments where payment_id = $1`,
    [paymentId],
  );
  const row = rows[0]!;
  if (row.gross === null) return { gross: null, fee: null, net: null, percent: row.percent };
  return { gross: BigInt(row.gross), fee: BigInt(row.fee), net: BigInt(row.net), percent: row.percent };
}

/** What a journal of the payment booked: NOWPayments' debit, the platform's fee, the channel's net (wei). */
async function journalOf(kind: 'payment_received' | 'payment_topped_up', ref: string, channelId: string) {
  const { rows } = await db.pool.query<{ code: string; amount: string }>(
    `select a.code, e.amount::text as amount from ledger_journals j join ledger_entries e on e.journal_id = j.id
     join ledger_accounts a on a.id = e.account_id where j.kind = $1 and j.ref = $2 and a.asset = 'eth'`,
    [kind, ref],
  );
  const sum = (match: (code: string) => boolean) =>
    rows.filter((r) => match(r.code)).reduce((total, r) => total + BigInt(r.amount), 0n);
  expect(rows.length).toBeGreaterThan(0);
  return {
    nowpayments: sum((code) => code.startsWith('world:nowpayments#')),
    fee: sum((code) => code.startsWith('platform:fees#')),
    channel: sum((code) => code === `channel:${channelId}`),
    entries: rows.length,
  };
}

/** The feePercent of each payment.credited event of the payment, oldest first. */
async function creditedEvents(paymentId: string) {
  const { rows } = await db.pool.query<{ data: Record<string, unknown> }>(
    "select data from events where type = 'payment.credited' and subject = $1 order by seq",
    [`payment:${paymentId}`],
  );
  return rows.map((r) => ({ feePercent: r.data.feePercent, topUp: r.data.topUp }));
}

/** Expects the payment credited at `percent` of `gross`, on its row, in its journal and through the API. */
async function expectCreditedAt(paymentId: string, channelId: string, gross: bigint, percent: string) {
  const fee = feeOf(gross, percent);
  const credit = await creditOf(paymentId);
  expect(credit).toEqual({ gross, fee, net: gross - fee, percent });
  expect(await journalOf('payment_received', paymentId, channelId)).toEqual({
    nowpayments: -gross,
    fee,
    channel: gross - fee,
    entries: fee === 0n ? 2 : 3,
  });
  const view = (await payrail.request('GET', `/api/payments/${paymentId}`)).body;
  expect(view).toMatchObject({ feePercent: percent, channelId });
}

describe("a channel's own fee through the API", () => {
  it('is none on a new channel: GET shows null and the default in force', async () => {
    const channelId = await newChannel();
    const res = await get(channelId);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ platformFeePercent: null, feePercentInForce: DEFAULT_FEE });
    expect(await storedFee(channelId)).toBeNull();
  });

  it('is set on creation, shown by PUT and GET, and in the create audit row', async () => {
    const before = await fingerprint(db);
    const channelId = `-${nextChannel++}`;
    const res = await put(channelId, { ...channelBody, platformFeePercent: '2.5' });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ channelId, platformFeePercent: '2.5', feePercentInForce: '2.5' });
    expect((await get(channelId)).body).toMatchObject({ platformFeePercent: '2.5', feePercentInForce: '2.5' });
    expect(await storedFee(channelId)).toBe('2.5');
    const after = await fingerprint(db);
    expect(after.channels).toBe((before.channels as number) + 1);
    expect(after.audit_log).toBe((before.audit_log as number) + 1);
    const audit = await auditRows(channelId);
    expect(audit.map((a) => a.action)).toEqual(['channel.create']);
    expect(audit[0]!.details.before).toBeNull();
    expect(audit[0]!.details.after).toMatchObject({ channelId, platformFeePercent: '2.5' });
  });

  it('is changed, kept when left out, and cleared by null back to the default; each save audited before and after', async () => {
    const channelId = await newChannel();

    const set = await put(channelId, { ...channelBody, platformFeePercent: '0.125' });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({ platformFeePercent: '0.125', feePercentInForce: '0.125' });

    // A save that does not name the fee (another field changed) leaves it as it is.
    const kept = await put(channelId, { ...channelBody, thresholdUsd: '200000.00' });
    expect(kept.status).toBe(200);
    expect(kept.body).toMatchObject({ thresholdUsd: '200000.00', platformFeePercent: '0.125' });
    expect(await storedFee(channelId)).toBe('0.125');

    const zero = await put(channelId, { ...channelBody, platformFeePercent: '0' });
    expect(zero.status).toBe(200);
    expect(zero.body).toMatchObject({ platformFeePercent: '0', feePercentInForce: '0' });

    const top = await put(channelId, { ...channelBody, platformFeePercent: '99.999999' });
    expect(top.status).toBe(200);
    expect(top.body).toMatchObject({ platformFeePercent: '99.999999' });

    const cleared = await put(channelId, { ...channelBody, platformFeePercent: null });
    expect(cleared.status).toBe(200);
    expect(cleared.body).toMatchObject({ platformFeePercent: null, feePercentInForce: DEFAULT_FEE });
    expect((await get(channelId)).body).toMatchObject({ platformFeePercent: null, feePercentInForce: DEFAULT_FEE });
    expect(await storedFee(channelId)).toBeNull();

    const audit = await auditRows(channelId);
    expect(
      audit.map((a) => [a.action, a.details.before?.platformFeePercent, a.details.after.platformFeePercent]),
    ).toEqual([
      ['channel.create', undefined, null],
      ['channel.update', null, '0.125'],
      ['channel.update', '0.125', '0.125'],
      ['channel.update', '0.125', '0'],
      ['channel.update', '0', '99.999999'],
      ['channel.update', '99.999999', null],
    ]);
  });

  it.each<{ name: string; fee: unknown; says: RegExp }>([
    { name: 'negative', fee: '-1', says: /^platformFeePercent: percent must be a decimal from 0 to below 100/ },
    { name: 'negative zero', fee: '-0', says: /^platformFeePercent: percent must be/ },
    { name: '100', fee: '100', says: /^platformFeePercent: percent must be a decimal from 0 to below 100/ },
    { name: 'above 100', fee: '250.5', says: /^platformFeePercent: percent must be/ },
    { name: 'seven decimals', fee: '2.1234567', says: /^platformFeePercent: .*at most 6 decimals/ },
    { name: 'trailing zeros past six decimals', fee: '2.5000000', says: /^platformFeePercent: .*at most 6 decimals/ },
    { name: 'a number, not a string', fee: 2.5, says: /^platformFeePercent: / },
    { name: 'a boolean', fee: true, says: /^platformFeePercent: / },
    { name: 'an object', fee: { percent: '2' }, says: /^platformFeePercent: / },
    { name: 'empty', fee: '', says: /^platformFeePercent: percent must be/ },
    { name: 'a percent sign', fee: '2.5%', says: /^platformFeePercent: percent must be/ },
    { name: 'a comma', fee: '2,5', says: /^platformFeePercent: percent must be/ },
    { name: 'spaces', fee: ' 2.5', says: /^platformFeePercent: percent must be/ },
    { name: 'exponent', fee: '1e1', says: /^platformFeePercent: percent must be/ },
    { name: 'a leading zero', fee: '05', says: /^platformFeePercent: percent must be/ },
    { name: 'no digits after the point', fee: '2.', says: /^platformFeePercent: percent must be/ },
    { name: 'very long', fee: '1'.repeat(100), says: /^platformFeePercent: / },
  ])('refuses $name: 400 naming the field, nothing stored', async ({ fee, says }) => {
    const channelId = await newChannel('1.5');
    const stored = (await get(channelId)).body;
    const before = await fingerprint(db);
    const res = await put(channelId, { ...channelBody, thresholdUsd: '300000.00', platformFeePercent: fee });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatch(says);
    expect(await fingerprint(db)).toEqual(before);
    expect((await get(channelId)).body).toEqual(stored);

    // A new channel is not created either.
    const fresh = `-${nextChannel++}`;
    const refused = await put(fresh, { ...channelBody, platformFeePercent: fee });
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatch(says);
    expect(await fingerprint(db)).toEqual(before);
    expect((await get(fresh)).status).toBe(404);
  });

  it("the column's check holds the setting's bounds against a write by hand", async () => {
    const channelId = await newChannel();
    const write = (value: string) =>
      db.pool.query('update channels set platform_fee_percent = $1::numeric where channel_id = $2', [value, channelId]);
    for (const refused of ['-0.000001', '100', '100.000000', '1.1234567', '2.5000000', 'NaN'])
      await expect(write(refused), refused).rejects.toThrow(/channels_platform_fee_percent/);
    for (const accepted of ['0', '0.000001', '2.5', '99.999999']) {
      await write(accepted);
      expect(await storedFee(channelId)).toBe(accepted);
    }
  });
});

describe('credits at the fee in force', () => {
  it('a channel with its own fee is credited at exactly that fee; another at PLATFORM_FEE_PERCENT; the payment.credited event carries each', async () => {
    const own = await newChannel('2.5');
    const other = await newChannel();
    const odd = await newChannel('1.234567');

    const paidOwn = await pay(own);
    const paidOther = await pay(other);
    const paidOdd = await pay(odd);

    await expectCreditedAt(paidOwn, own, FINISHED_WEI, '2.5');
    // 0.00487 ETH at 2.5 %: 0.00012175 ETH of fee.
    expect((await creditOf(paidOwn)).fee).toBe(121_750_000_000_000n);
    await expectCreditedAt(paidOther, other, FINISHED_WEI, DEFAULT_FEE);
    expect((await creditOf(paidOther)).fee).toBe(194_800_000_000_000n);
    await expectCreditedAt(paidOdd, odd, FINISHED_WEI, '1.234567');

    expect(await creditedEvents(paidOwn)).toEqual([{ feePercent: '2.5', topUp: false }]);
    expect(await creditedEvents(paidOther)).toEqual([{ feePercent: DEFAULT_FEE, topUp: false }]);

    // The channel's balance is the net at its own fee.
    const balances = (await get(own)).body.balances;
    expect(balances).toEqual([
      {
        account: 'available',
        asset: 'eth',
        amount: '0.00474825',
        units: (FINISHED_WEI - 121_750_000_000_000n).toString(),
      },
    ]);
  });

  it('a fee of 0 credits the whole amount to the channel', async () => {
    const channelId = await newChannel('0');
    const paymentId = await pay(channelId);
    await expectCreditedAt(paymentId, channelId, FINISHED_WEI, '0');
  });

  it('a change of the fee after a credit leaves that credit as it was; the next payment takes the new fee, and after clearing the default', async () => {
    const channelId = await newChannel('2.5');
    const first = await pay(channelId);
    const firstCredit = await creditOf(first);
    const firstJournal = await journalOf('payment_received', first, channelId);

    expect((await put(channelId, { ...channelBody, platformFeePercent: '7' })).status).toBe(200);
    const second = await pay(channelId);
    expect((await put(channelId, { ...channelBody, platformFeePercent: null })).status).toBe(200);
    const third = await pay(channelId);

    expect(await creditOf(first)).toEqual(firstCredit);
    expect(await journalOf('payment_received', first, channelId)).toEqual(firstJournal);
    await expectCreditedAt(first, channelId, FINISHED_WEI, '2.5');
    await expectCreditedAt(second, channelId, FINISHED_WEI, '7');
    await expectCreditedAt(third, channelId, FINISHED_WEI, DEFAULT_FEE);
  });

  it('payments kept for a channel not registered yet are credited at the fee it is registered with', async () => {
    const channelId = `-${nextChannel++}`;
    const body = ipnBody({ payment_id: nextPaymentId++, order_id: `PGP-1|${channelId}` });
    const res = await send(body);
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ reviewReason: 'unknown_channel' });

    expect((await put(channelId, { ...channelBody, platformFeePercent: '5.75' })).status).toBe(201);
    await expectCreditedAt(String(body.payment_id), channelId, FINISHED_WEI, '5.75');
  });

  it('a top-up is credited at the fee its payment was first credited at, whatever the fee became since', async () => {
    const channelId = await newChannel('2.5');
    const partial: Record<string, unknown> = {
      ...structuredClone(fixtures.partially_paid),
      payment_id: nextPaymentId++,
      order_id: `PGP-1|${channelId}`,
    };
    const paymentId = String(partial.payment_id);
    expect((await send(partial)).status).toBe(202);
    // A person credits the partial (PARTIAL_PAYMENTS=review): through review's credit, at the channel's fee.
    expect((await payrail.request('POST', `/api/payments/${paymentId}/credit`)).status).toBe(200);
    await expectCreditedAt(paymentId, channelId, PARTIAL_WEI, '2.5');

    expect((await put(channelId, { ...channelBody, platformFeePercent: '10' })).status).toBe(200);

    // The rest arrives: NOWPayments says finished with the whole outcome, and a person credits the difference.
    const rest = await send({
      ...ipnBody(),
      payment_id: partial.payment_id,
      invoice_id: partial.invoice_id,
      order_id: partial.order_id,
    });
    expect(rest.status).toBe(202);
    expect(rest.body.reviewReason).toMatch(/^top_up: /);
    const credited = await payrail.request('POST', `/api/payments/${paymentId}/credit`);
    expect(credited.status).toBe(200);

    const restWei = FINISHED_WEI - PARTIAL_WEI;
    const partialFee = feeOf(PARTIAL_WEI, '2.5');
    const restFee = feeOf(restWei, '2.5');
    expect(restFee).toBe(48_250_000_000_000n);
    expect(await creditOf(paymentId)).toEqual({
      gross: FINISHED_WEI,
      fee: partialFee + restFee,
      net: FINISHED_WEI - partialFee - restFee,
      percent: '2.5',
    });
    expect(await journalOf('payment_topped_up', `${paymentId}:${FINISHED_WEI}`, channelId)).toEqual({
      nowpayments: -restWei,
      fee: restFee,
      channel: restWei - restFee,
      entries: 3,
    });
    expect(await creditedEvents(paymentId)).toEqual([
      { feePercent: '2.5', topUp: false },
      { feePercent: '2.5', topUp: true },
    ]);
    // The channel's next payment takes the fee in force now.
    await expectCreditedAt(await pay(channelId), channelId, FINISHED_WEI, '10');
  });
});

describe("with NOWPayments' check (NOWPAYMENTS_API_KEY)", () => {
  it('the credit takes the fee in force when the check credits it, not the one when the IPN came', async () => {
    const apiKey = 'test-nowpayments-api-key-0123456789';
    const sim = await startNowPaymentsSimulator({ port: 0, apiKey });
    const confirming = await startTestPayrail(db, {
      roles: { web: true, worker: false },
      env: { PLATFORM_FEE_PERCENT: DEFAULT_FEE, NOWPAYMENTS_API_KEY: apiKey, NOWPAYMENTS_API_URL: sim.url },
    });
    try {
      const channelId = await newChannel('2.5');
      const body = ipnBody({ payment_id: nextPaymentId++, order_id: `PGP-1|${channelId}` });
      const paymentId = String(body.payment_id);
      const { raw, headers } = signed(body, IPN_SECRET);
      sim.addPayment(raw);
      const res = await confirming.request('POST', '/webhooks/nowpayments', { raw, headers, token: null });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ outcome: 'recorded' });
      expect((await creditOf(paymentId)).percent).toBeNull();

      expect((await put(channelId, { ...channelBody, platformFeePercent: '6' })).status).toBe(200);
      const deps = {
        db: db.db,
        logger: createLogger({ level: 'silent' }),
        notifyAlerts: false,
        api: createNowPaymentsApi({ baseUrl: sim.url, apiKey, timeoutMs: 5_000 }),
        intake: { feePercent: parsePercent(DEFAULT_FEE), confirm: { deadlineMs: 3_600_000 } },
      };
      expect(await confirmPayment(deps, paymentId)).toBe('credited');
      await expectCreditedAt(paymentId, channelId, FINISHED_WEI, '6');
      expect(await creditedEvents(paymentId)).toEqual([{ feePercent: '6', topUp: false }]);
    } finally {
      await confirming.stop();
      await sim.stop();
    }
  });
});
