/**
 * readOverview against a seeded database: payments through signed IPNs (web role only, so nothing moves on its own),
 * conversions, payouts, alerts and observations written as the stages and the alert engine leave them. Every figure
 * is checked against what was seeded, and paid out (derived from ledger balances) against the sum of completed
 * payouts, its pair.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { checkLedger } from '../../src/ledger/index.ts';
import { formatUnits } from '../../src/money/index.ts';
import {
  CHANNELS_SHOWN,
  fillBps,
  formatStatus,
  readOverview,
  volumeSeries,
  type Overview,
} from '../../src/overview/index.ts';
import {
  FEE_WEI,
  GROSS_WEI,
  instantEthChannel,
  NET_WEI,
  sendIpn,
  usdtThresholdChannel,
  WALLET,
} from '../support/api-seed.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import {
  insertAlert,
  observe,
  seedCompletedBatch,
  seedInstantPayout,
  seedNetworkFee,
  seedThresholdBatch,
  seedTransfer,
  settleConversion,
} from '../support/overview-seed.ts';
import { fixtures, ipnBody, signed } from '../support/ipn.ts';
import { IPN_SECRET, startTestPayrail, type TestPayrail } from '../support/payrail.ts';
import { saveChannel, sendFinished } from '../support/payouts.ts';

const eth = (wei: bigint) => formatUnits(wei, 18);

// Each suite seeds its own channels under ids of its own range, so its list of them looks like the others'.
const THRESHOLD = '-1006000000001';
const SMALL_THRESHOLD = '-1006000000002';
const INSTANT = '-1006000000003';
const UNKNOWN = '-1006000000009';

let db: TestDatabase;
let payrail: TestPayrail;
let nextPaymentId = 9_600_000_000;
const paid: Record<string, string[]> = { [THRESHOLD]: [], [SMALL_THRESHOLD]: [], [INSTANT]: [] };
const ids: Record<string, string> = {};
let overview: Overview;

async function pay(channelId: string, times: number): Promise<void> {
  for (let i = 0; i < times; i++) {
    const id = await sendFinished(payrail, nextPaymentId++, channelId);
    paid[channelId]?.push(id);
  }
}

beforeAll(async () => {
  db = await createTestDatabase();
  payrail = await startTestPayrail(db, { roles: { web: true, worker: false } });
  await saveChannel(payrail, THRESHOLD, usdtThresholdChannel('50'));
  await saveChannel(payrail, SMALL_THRESHOLD, usdtThresholdChannel('10'));
  await saveChannel(payrail, INSTANT, instantEthChannel());
  await pay(THRESHOLD, 4);
  await pay(SMALL_THRESHOLD, 2);
  await pay(INSTANT, 4);
  // Kept for review (no such channel): answered 202.
  ids.unknown = String(nextPaymentId);
  expect(await sendIpn(payrail, ipnBody({ payment_id: nextPaymentId++, order_id: `PGP-1|${UNKNOWN}` }))).toBe(202);

  const t = paid[THRESHOLD] as string[];
  const s = paid[SMALL_THRESHOLD] as string[];
  const i = paid[INSTANT] as string[];
  ids.conversionA = await settleConversion(db.db, t.slice(0, 3), 42_000_000n);
  ids.conversionB = await settleConversion(db.db, s, 12_500_000n);
  ids.batch = await seedCompletedBatch(db.db, THRESHOLD, 20_000_000n);
  ids.direct = await seedInstantPayout(db.db, i[0] as string, 'completed', { via: 'direct' });
  ids.exchanged = await seedInstantPayout(db.db, i[1] as string, 'completed', { via: 'exchange' });
  ids.review = await seedInstantPayout(db.db, i[2] as string, 'needs_review');
  // ChangeNow kept 1,000 wei of this one: a loss, not a payout.
  ids.failed = await seedInstantPayout(db.db, i[3] as string, 'failed', { returned: NET_WEI - 1000n });

  ids.critical = await insertAlert(db.db, {
    rule: 'ledger_invariant',
    subject: 'ledger',
    severity: 'critical',
    message: 'ledger check found 1 violation',
  });
  ids.warning = await insertAlert(db.db, {
    rule: 'payout_review',
    subject: ids.review,
    severity: 'warning',
    message: 'payout in review',
    details: { payoutId: ids.review },
  });
  await insertAlert(db.db, {
    rule: 'queue_depth',
    subject: 'payout_run',
    severity: 'warning',
    message: 'resolved long ago',
    resolved: true,
  });
  await observe(db.db, 'host_wallet.eth', true, '1500000000000000000');
  await observe(db.db, 'host_wallet.usdt', true, '250000000');
  await observe(db.db, 'chain_rpc', true, '12345', 'block 12345');
  await observe(db.db, 'changenow', false, null, 'HTTP 503');
  overview = await readOverview(db.db);
});

afterAll(async () => {
  await payrail?.stop();
  await db?.close();
});

describe('readOverview', () => {
  it('totals come from the ledger, exactly', () => {
    expect(overview.totals).toEqual({
      received: { eth: eth(10n * GROSS_WEI) },
      platformFees: { eth: eth(10n * FEE_WEI) },
      // No transfer was mined: no gas paid yet.
      feesVsNetworkCosts: { asset: 'eth', fees: eth(10n * FEE_WEI), networkCosts: '0', net: eth(10n * FEE_WEI) },
      converted: { count: 2, sent: { eth: eth(5n * NET_WEI) }, received: { usdt: '54.5' } },
      paidOut: { eth: eth(2n * NET_WEI), usdt: '20' },
      inFlight: {
        // THRESHOLD's unconverted payment, and INSTANT's failed payout back on its balance less the 1,000 wei kept.
        available: { eth: eth(NET_WEI + NET_WEI - 1000n), usdt: '34.5' },
        reserved: { eth: eth(NET_WEI), usdt: '0' },
        converting: { eth: '0' },
        total: { eth: eth(3n * NET_WEI - 1000n), usdt: '34.5' },
      },
    });
  });

  it('shows the ETH of conversions not settled yet as converting, part of what is available', async () => {
    const id = 'cv_00000000000000aa';
    await db.pool.query(
      "insert into conversions (conversion_id, status, from_asset, to_asset, amount_wei, payment_count) values ($1, 'sent', 'eth', 'usdt', $2, 1)",
      [id, NET_WEI.toString()],
    );
    try {
      const now = await readOverview(db.db);
      expect(now.totals.inFlight.converting).toEqual({ eth: eth(NET_WEI) });
      expect(now.totals.inFlight.available).toEqual(overview.totals.inFlight.available);
    } finally {
      await db.pool.query('delete from conversions where conversion_id = $1', [id]);
    }
  });

  it('paid out derived from balances equals the sum of completed payouts (its pair), and the ledger checks out', async () => {
    const { rows } = await sql<{
      asset: string;
      units: string;
    }>`select asset, sum(amount)::text as units from payouts where status = 'completed' group by asset`.execute(db.db);
    const fromPayouts = Object.fromEntries(
      rows.map((r) => [r.asset, formatUnits(BigInt(r.units), r.asset === 'eth' ? 18 : 6)]),
    );
    expect(overview.totals.paidOut).toEqual(fromPayouts);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('counts payments by stage, conversions and payouts by state', () => {
    expect(overview.pipeline.payments).toEqual({
      awaitingConversion: 1,
      inConversion: 0,
      awaitingPayout: 5,
      inReview: 1,
      receivedInWindow: 10,
    });
    expect(overview.pipeline.conversions).toMatchObject({ completed: 2, pending: 0, needs_review: 0 });
    expect(overview.pipeline.payouts).toEqual({
      pending: 0,
      held: 0,
      awaiting_approval: 0,
      exchange_requested: 0,
      exchange_created: 0,
      sent: 0,
      needs_review: 1,
      failed: 1,
      cancelled: 0,
      completedInWindow: 3,
    });
    expect(overview.pipeline.transfers).toEqual({ intent: 0, signed: 0, broadcast: 0, needs_review: 0 });
  });

  it('lists recent conversions and payouts with state and age, open ones first', () => {
    expect(overview.conversions.map((c) => [c.conversionId, c.status, c.paymentCount, c.sent, c.received])).toEqual([
      [ids.conversionB, 'completed', 2, eth(2n * NET_WEI), '12.5'],
      [ids.conversionA, 'completed', 3, eth(3n * NET_WEI), '42'],
    ]);
    expect(overview.payouts[0]).toMatchObject({
      payoutId: ids.review,
      status: 'needs_review',
      asset: 'eth',
      amount: eth(NET_WEI),
      channelId: INSTANT,
    });
    expect(overview.payouts.slice(1).map((p) => [p.payoutId, p.status])).toEqual([
      [ids.failed, 'failed'],
      [ids.exchanged, 'completed'],
      [ids.direct, 'completed'],
      [ids.batch, 'completed'],
    ]);
    for (const row of [...overview.payouts, ...overview.conversions]) {
      expect(row.ageSeconds).toBeGreaterThanOrEqual(0);
      expect(row.inStateSeconds).toBeGreaterThanOrEqual(0);
    }
  });

  it('shows channels against their thresholds, fullest first, in exact basis points', () => {
    expect(overview.channels).toMatchObject({ total: 3, threshold: 2, atThreshold: 1 });
    expect(
      overview.channels.items.map((c) => [c.channelId, c.availableUsdt, c.thresholdUsd, c.fillBps, c.pendingEth]),
    ).toEqual([
      [SMALL_THRESHOLD, '12.5', '10', 12_500, '0'],
      [THRESHOLD, '22', '50', 4_400, eth(NET_WEI)],
      [INSTANT, '0', null, null, eth(NET_WEI - 1000n)],
    ]);
    expect(overview.channels.items[2]?.reserved).toEqual({ eth: eth(NET_WEI) });
    // INSTANT's payout is in review: its row says so; the others wait for nobody.
    expect(overview.channels.items.map((c) => c.payoutInReview)).toEqual([
      null,
      null,
      { payoutId: ids.review, transferId: null, count: 1 },
    ]);
    // THRESHOLD's batch completed: nothing open. INSTANT holds no USDT: nothing to pay now.
    expect(overview.channels.items.map((c) => [c.openBatch, c.canPayNow])).toEqual([
      [null, true],
      [null, true],
      [null, false],
    ]);
  });

  it('shows every channel whose payout waits for a person, however many fuller channels there are', async () => {
    // CHANNELS_SHOWN + 1 empty threshold channels rank before INSTANT (threshold channels first).
    const first = 1_006_000_100_000;
    await db.pool.query(
      "insert into channels (channel_id, payout_strategy, threshold_usd_cents, payout_currency, payout_network, wallet_address) select '-' || (($1::bigint) + n), 'threshold', 1000, 'usdt', 'eth', $2 from generate_series(1, $3::int) n",
      [first, WALLET, CHANNELS_SHOWN + 1],
    );
    try {
      const now = await readOverview(db.db);
      expect(now.channels.total).toBe(CHANNELS_SHOWN + 4);
      expect(now.channels.items).toHaveLength(CHANNELS_SHOWN + 1);
      expect(now.channels.items.slice(0, 2).map((c) => c.channelId)).toEqual([SMALL_THRESHOLD, THRESHOLD]);
      // Ranked 54th: past the 50 shown, listed anyway, last (its place in the order).
      expect(now.channels.items.at(-1)).toMatchObject({
        channelId: INSTANT,
        payoutInReview: { payoutId: ids.review, transferId: null, count: 1 },
      });
      expect(formatStatus(now)).toContain(
        `CHANNELS (${CHANNELS_SHOWN + 4}, 1 at threshold, ${CHANNELS_SHOWN + 1} shown)`,
      );
    } finally {
      await db.pool.query("delete from channels where channel_id like '-10060001%'");
    }
  });

  it('puts payouts in review in the review queue, and the payment kept for review with what NOWPayments reported', () => {
    expect(overview.review.payouts.map((p) => [p.payoutId, p.status, p.reason])).toEqual([
      [ids.review, 'needs_review', 'seeded: exchange failed'],
    ]);
    expect(overview.review.payouts[0]?.waitingSeconds).toBeGreaterThanOrEqual(0);
    // No such channel: no action here (registering the channel releases it).
    expect(overview.review.payments.map(({ waitingSeconds: _, updatedAt: __, ...rest }) => rest)).toEqual([
      {
        paymentId: ids.unknown,
        channelId: UNKNOWN,
        status: 'finished',
        reason: 'unknown_channel',
        actions: [],
        reported: {
          payAmount: '0.00495',
          actuallyPaid: '0.00495',
          payCurrency: 'eth',
          priceAmount: '15',
          priceCurrency: 'usd',
          outcomeAmount: '0.00487',
          outcomeCurrency: 'eth',
        },
        credited: null,
        creditable: null,
      },
    ]);
    expect(overview.review.payments.length).toBe(overview.pipeline.payments.inReview);
    expect(overview.review.conversions).toEqual([]);
    expect(overview.review.transfers).toEqual([]);
  });

  it('lists a partial payment in review with credit and ignore, the text report too; ignored, it leaves the queue', async () => {
    const body = {
      ...structuredClone(fixtures.partially_paid),
      payment_id: nextPaymentId++,
      order_id: `PGP-1|${THRESHOLD}`,
    };
    expect(await sendIpn(payrail, body)).toBe(202);
    const id = String(body.payment_id);
    const now = await readOverview(db.db);
    // The longest waiting first: the unknown channel's payment came in before.
    expect(
      now.review.payments.map((p) => [
        p.paymentId,
        p.channelId,
        p.status,
        p.reason,
        p.actions,
        p.reported.actuallyPaid,
        p.reported.payAmount,
        p.reported.outcomeAmount,
        p.credited,
      ]),
    ).toEqual([
      [ids.unknown, UNKNOWN, 'finished', 'unknown_channel', [], '0.00495', '0.00495', '0.00487', null],
      [id, THRESHOLD, 'partially_paid', 'partially_paid', ['credit', 'ignore'], '0.003', '0.00495', '0.00294', null],
    ]);
    expect(now.pipeline.payments.inReview).toBe(2);
    // Nothing credited: the totals are the ledger's, as before.
    expect(now.totals.received).toEqual(overview.totals.received);

    const text = formatStatus(now);
    expect(text).toContain('REVIEW QUEUE (1 payouts, 2 payments)');
    expect(text).toMatch(
      new RegExp(
        `\\n  payment ${ids.unknown}\\s+finished\\s+0\\.00487 ETH\\s+paid 0\\.00495 of 0\\.00495 ETH\\s+${UNKNOWN}\\s+\\S+\\s+no action\\s+unknown_channel\\n`,
      ),
    );
    expect(text).toMatch(
      new RegExp(
        `\\n  payment ${id}\\s+partially_paid\\s+0\\.00294 ETH\\s+paid 0\\.003 of 0\\.00495 ETH\\s+${THRESHOLD}\\s+\\S+\\s+credit/ignore\\s+partially_paid\\n`,
      ),
    );

    expect((await payrail.request('POST', `/api/payments/${id}/ignore`)).status).toBe(200);
    expect((await readOverview(db.db)).review.payments.map((p) => p.paymentId)).toEqual([ids.unknown]);
  });

  it('puts conversions in review in the review queue, the longest waiting first, and the text report lists them', async () => {
    const older = 'conv_00000000000000b1';
    const newer = 'conv_00000000000000b2';
    const insert =
      "insert into conversions (conversion_id, status, from_asset, to_asset, amount_wei, payment_count, reason, updated_at) values ($1, 'needs_review', 'eth', 'usdt', $2, $3, $4, now() - $5::interval)";
    await db.pool.query(insert, [newer, NET_WEI.toString(), 1, 'seeded: transfer state unknown', '10 minutes']);
    await db.pool.query(insert, [
      older,
      (3n * NET_WEI).toString(),
      3,
      'seeded: ChangeNow lost the exchange',
      '2 hours',
    ]);
    try {
      const now = await readOverview(db.db);
      expect(now.review.conversions.map(({ waitingSeconds: _, updatedAt: __, ...rest }) => rest)).toEqual([
        {
          conversionId: older,
          reason: 'seeded: ChangeNow lost the exchange',
          sent: eth(3n * NET_WEI),
          sentAsset: 'eth',
          paymentCount: 3,
        },
        {
          conversionId: newer,
          reason: 'seeded: transfer state unknown',
          sent: eth(NET_WEI),
          sentAsset: 'eth',
          paymentCount: 1,
        },
      ]);
      // updated_at was set from the database's clock: the wait is the interval plus the moments since the insert.
      const [first, second] = now.review.conversions;
      expect(first?.waitingSeconds).toBeGreaterThanOrEqual(7_200);
      expect(first?.waitingSeconds).toBeLessThan(7_260);
      expect(second?.waitingSeconds).toBeGreaterThanOrEqual(600);
      expect(second?.waitingSeconds).toBeLessThan(660);
      expect(now.review.payouts).toEqual(
        overview.review.payouts.map((p) => ({ ...p, waitingSeconds: expect.any(Number) })),
      );

      const text = formatStatus(now);
      expect(text).toContain('REVIEW QUEUE (1 payouts, 2 conversions, 1 payments)');
      expect(text).toMatch(
        new RegExp(
          `${older}\\s+needs_review\\s+${eth(3n * NET_WEI).replace('.', '\\.')} ETH\\s+3 payments\\s+2h00m\\s+seeded: ChangeNow lost the exchange`,
        ),
      );
      expect(text).toMatch(
        new RegExp(
          `${newer}\\s+needs_review\\s+${eth(NET_WEI).replace('.', '\\.')} ETH\\s+1 payments\\s+10m\\s+seeded: transfer state unknown`,
        ),
      );
      expect(text.indexOf(older)).toBeLessThan(text.indexOf(newer));
    } finally {
      await db.pool.query('delete from conversions where conversion_id = any($1)', [[older, newer]]);
    }
  });

  it('shows open alerts only, critical first', () => {
    expect(overview.alerts.open).toBe(2);
    expect(overview.alerts.items.map((a) => [a.id, a.rule, a.severity])).toEqual([
      [ids.critical, 'ledger_invariant', 'critical'],
      [ids.warning, 'payout_review', 'warning'],
    ]);
    expect(overview.alerts.items[1]?.details).toEqual({ payoutId: ids.review });
  });

  it('reads the host wallet in exact units and the other observations', () => {
    expect(overview.hostWallet.eth).toMatchObject({ asset: 'eth', amount: '1.5', ok: true });
    expect(overview.hostWallet.usdt).toMatchObject({ asset: 'usdt', amount: '250', ok: true });
    expect(overview.services.map((s) => [s.name, s.ok, s.detail])).toEqual([
      ['chain_rpc', true, 'block 12345'],
      ['changenow', false, 'HTTP 503'],
    ]);
  });

  it('lists every task with its queue depth, idle ones at zero', () => {
    const instant = overview.queues.find((q) => q.task === 'payout_instant');
    // One payout job per instant payment, waiting for a worker (none runs here).
    expect(instant).toMatchObject({ runnable: 4, running: 0, failed: 0 });
    expect(overview.queues.find((q) => q.task === 'reconcile')).toMatchObject({
      runnable: 0,
      oldestRunnableAgeSeconds: null,
    });
  });

  it('buckets what was received per hour over the window, the current hour last', async () => {
    expect(overview.volume.hours).toBe(24);
    expect(overview.volume.buckets).toHaveLength(24);
    const last = overview.volume.buckets.at(-1);
    expect(last).toMatchObject({ received: { eth: eth(10n * GROSS_WEI) }, payments: 10, scaleBps: { eth: 10_000 } });
    expect(overview.volume.buckets.slice(0, -1).every((b) => b.payments === 0 && b.received.eth === '0')).toBe(true);
    expect(overview.volume.peak).toEqual({ eth: eth(10n * GROSS_WEI) });
    expect(Date.parse(last?.hour ?? '') % 3_600_000).toBe(0);
    const wide = await readOverview(db.db, { windowHours: 48 });
    expect(wide.volume.buckets).toHaveLength(48);
    expect(wide.pipeline.payments.receivedInWindow).toBe(10);
    await expect(readOverview(db.db, { windowHours: 0 })).rejects.toThrow(RangeError);
  });

  it('the text report names the same figures', () => {
    const text = formatStatus(overview);
    expect(text).toContain(`${eth(10n * GROSS_WEI)} ETH`);
    expect(text).toMatch(/paid out\s+0\.0094478 ETH/);
    expect(text).toContain('20 USDT');
    expect(text).toMatch(/CRITICAL\s+ledger_invariant/);
    expect(text).toContain(ids.review);
    expect(text).toMatch(/host wallet ETH\s+1\.5 ETH/);
    expect(text).toMatch(/payout_instant\s+4\s+0\s+0/);
  });
});

describe('readOverview of host-wallet transfers', () => {
  // Seeded after the tests above read the overview of beforeAll: these journals stay (a ledger is never rewound).
  const GAS_CONFIRMED_WEI = 21_000n * 30_000_000_000n;
  const GAS_REVERTED_WEI = 48_113n * 31_500_000_001n;
  const seeded: Record<string, string> = {};
  let now: Overview;

  beforeAll(async () => {
    // SMALL_THRESHOLD's 12.5 USDT in a batch whose exchange was created and whose token transfer moved less.
    seeded.batch = await seedThresholdBatch(db.db, SMALL_THRESHOLD, 12_500_000n, 'exchange_created');
    seeded.batchTransfer = await seedTransfer(db.db, {
      purpose: 'payout',
      ref: seeded.batch,
      asset: 'usdt',
      amount: 12_500_000n,
      status: 'needs_review',
      nonce: 17,
      blockNumber: 4_242,
      changedAgo: '2 hours',
      txHash: `0x${'ab'.repeat(32)}`,
      reason: 'the token moved 12000000 units to the receiver, not the 12500000 asked',
    });
    // A conversion's ETH whose nonce another transaction took; a person asked to cancel it, the worker has not yet.
    seeded.conversionTransfer = await seedTransfer(db.db, {
      purpose: 'conversion',
      ref: 'conv_00000000000000e1',
      asset: 'eth',
      amount: NET_WEI,
      status: 'needs_review',
      nonce: 18,
      changedAgo: '10 minutes',
      txHash: `0x${'cd'.repeat(32)}`,
      reason: 'nonce 18 was taken by a transaction payrail did not sign',
    });
    // As review.ts records a request: the row changes (updated_at) with it.
    await db.pool.query(
      "update chain_transfers set requested_action = 'cancel', requested_by = 'admin', requested_at = date_trunc('milliseconds', now()), updated_at = now() where transfer_id = $1",
      [seeded.conversionTransfer],
    );
    seeded.broadcast = await seedTransfer(db.db, {
      purpose: 'conversion',
      ref: 'conv_00000000000000e2',
      asset: 'eth',
      amount: NET_WEI,
      status: 'broadcast',
      nonce: 19,
    });
    // Ended transfers are not counted; their gas is.
    seeded.confirmed = await seedTransfer(db.db, {
      purpose: 'conversion',
      ref: 'conv_00000000000000e3',
      asset: 'eth',
      amount: NET_WEI,
      status: 'confirmed',
      nonce: 15,
      blockNumber: 4_000,
    });
    seeded.reverted = await seedTransfer(db.db, {
      purpose: 'conversion',
      ref: 'conv_00000000000000e4',
      asset: 'eth',
      amount: NET_WEI,
      status: 'failed',
      nonce: 16,
      blockNumber: 4_001,
      reason: 'reverted on chain',
    });
    await seedNetworkFee(db.db, seeded.confirmed, GAS_CONFIRMED_WEI);
    await seedNetworkFee(db.db, seeded.reverted, GAS_REVERTED_WEI);
    now = await readOverview(db.db);
  });

  it("lists transfers in review, the longest waiting first, with amounts in the asset's unit and any request not carried out", () => {
    expect(now.review.transfers.map(({ waitingSeconds: _, updatedAt: __, ...rest }) => rest)).toEqual([
      {
        transferId: seeded.batchTransfer,
        purpose: 'payout',
        ref: seeded.batch,
        asset: 'usdt',
        amount: '12.5',
        nonce: '17',
        txHash: `0x${'ab'.repeat(32)}`,
        blockNumber: '4242',
        reason: 'the token moved 12000000 units to the receiver, not the 12500000 asked',
        lastError: null,
        requested: null,
      },
      {
        transferId: seeded.conversionTransfer,
        purpose: 'conversion',
        ref: 'conv_00000000000000e1',
        asset: 'eth',
        amount: eth(NET_WEI),
        nonce: '18',
        txHash: `0x${'cd'.repeat(32)}`,
        blockNumber: null,
        reason: 'nonce 18 was taken by a transaction payrail did not sign',
        lastError: null,
        requested: { action: 'cancel', by: 'admin', at: expect.any(String) },
      },
    ]);
    const [older, newer] = now.review.transfers;
    expect(older?.waitingSeconds).toBeGreaterThanOrEqual(7_200);
    expect(older?.waitingSeconds).toBeLessThan(7_260);
    // The request changed it (updated_at): its wait counts from then.
    expect(newer?.waitingSeconds).toBeLessThan(60);
    // The payout and conversion parts of the queue are untouched.
    expect(now.review.payouts.map((p) => p.payoutId)).toEqual([ids.review]);
    expect(now.review.conversions).toEqual([]);
  });

  it('counts transfers by open state only', () => {
    expect(now.pipeline.transfers).toEqual({ intent: 0, signed: 0, broadcast: 1, needs_review: 2 });
  });

  it('flags the channel whose batch waits behind a transfer in review', () => {
    const small = now.channels.items.find((c) => c.channelId === SMALL_THRESHOLD);
    expect(small).toMatchObject({
      availableUsdt: '0',
      reserved: { usdt: '12.5' },
      payoutInReview: { payoutId: seeded.batch, transferId: seeded.batchTransfer, count: 1 },
    });
    expect(now.channels.items.find((c) => c.channelId === THRESHOLD)?.payoutInReview).toBeNull();
    expect(now.channels.items.find((c) => c.channelId === INSTANT)?.payoutInReview).toEqual({
      payoutId: ids.review,
      transferId: null,
      count: 1,
    });
  });

  it('sets fees earned against network costs paid, exactly, and the costs equal the network_fee journals (their pair)', async () => {
    const costs = GAS_CONFIRMED_WEI + GAS_REVERTED_WEI;
    expect(now.totals.feesVsNetworkCosts).toEqual({
      asset: 'eth',
      fees: eth(10n * FEE_WEI),
      networkCosts: eth(costs),
      net: eth(10n * FEE_WEI - costs),
    });
    expect(now.totals.platformFees).toEqual({ eth: eth(10n * FEE_WEI) });
    const { rows } = await sql<{ units: string }>`
      select coalesce(sum(e.amount), 0)::text as units from ledger_journals j join ledger_entries e on e.journal_id = j.id join ledger_accounts a on a.id = e.account_id
      where j.kind = 'network_fee' and a.code = 'platform:network_costs' and a.asset = 'eth'`.execute(db.db);
    expect(eth(-BigInt(rows[0]?.units ?? '0'))).toBe(now.totals.feesVsNetworkCosts.networkCosts);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('shows a net loss as a negative amount when gas cost more than the fees', async () => {
    const extra = 10n * FEE_WEI;
    // A network_fee journal per transfer (one per (kind, ref)): a second mined transfer, its gas worth all the fees.
    const expensive = await seedTransfer(db.db, {
      purpose: 'conversion',
      ref: 'conv_00000000000000e5',
      asset: 'eth',
      amount: NET_WEI,
      status: 'confirmed',
      nonce: 20,
      blockNumber: 4_100,
    });
    await seedNetworkFee(db.db, expensive, extra);
    const after = await readOverview(db.db);
    const net = 10n * FEE_WEI - (GAS_CONFIRMED_WEI + GAS_REVERTED_WEI + extra);
    expect(net).toBeLessThan(0n);
    expect(after.totals.feesVsNetworkCosts.net).toBe(`-${eth(-net)}`);
    expect(formatStatus(after)).toMatch(new RegExp(`fees less network costs\\s+-${eth(-net).replace('.', '\\.')} ETH`));
  });

  it('the text report lists them in its review queue, counts and channels', () => {
    const text = formatStatus(now);
    expect(text).toContain('REVIEW QUEUE (1 payouts, 2 transfers, 1 payments)');
    expect(text).toMatch(
      new RegExp(
        `${seeded.batchTransfer}\\s+needs_review\\s+12\\.5 USDT\\s+payout ${seeded.batch}\\s+nonce 17\\s+2h00m\\s+the token moved 12000000 units`,
      ),
    );
    expect(text).toMatch(
      new RegExp(
        `${seeded.conversionTransfer}\\s+needs_review\\s+${eth(NET_WEI).replace('.', '\\.')} ETH\\s+conversion conv_00000000000000e1\\s+nonce 18\\s+\\d+s\\s+cancel requested by admin; nonce 18 was taken`,
      ),
    );
    expect(text.indexOf(seeded.batchTransfer as string)).toBeLessThan(
      text.indexOf(seeded.conversionTransfer as string),
    );
    expect(text).toMatch(/transfers\s+intent 0 · signed 0 · broadcast 1 · needs review 2/);
    expect(text).toMatch(
      new RegExp(`network costs paid\\s+${eth(GAS_CONFIRMED_WEI + GAS_REVERTED_WEI).replace('.', '\\.')} ETH`),
    );
    expect(text).toMatch(
      new RegExp(
        `${SMALL_THRESHOLD}\\s+threshold\\s+0 USDT.*payout ${seeded.batch}: transfer ${seeded.batchTransfer} in review`,
      ),
    );
    expect(text).toMatch(new RegExp(`${INSTANT}\\s+instant.*payout ${ids.review} in review`));
  });
});

describe('readOverview of pay now', () => {
  // Last in the file: the batch it opens stays open (web role only, no worker runs it).
  const channel = async (id: string) => (await readOverview(db.db)).channels.items.find((c) => c.channelId === id);

  it('offers pay now exactly where POST /api/channels/:id/payout pays: USDT available and no open batch', async () => {
    // INSTANT holds no USDT; SMALL_THRESHOLD's batch is open (exchange_created, its transfer in review: above).
    expect(await channel(INSTANT)).toMatchObject({ availableUsdt: '0', openBatch: null, canPayNow: false });
    const small = await channel(SMALL_THRESHOLD);
    expect(small).toMatchObject({
      canPayNow: false,
      openBatch: { payoutId: expect.stringMatching(/^po_/), status: 'exchange_created' },
    });
    const noUsdt = await payrail.request('POST', `/api/channels/${INSTANT}/payout`);
    expect(noUsdt.status).toBe(409);
    expect(noUsdt.body.error).toContain('holds no USDT');
    const open = await payrail.request('POST', `/api/channels/${SMALL_THRESHOLD}/payout`);
    expect(open.status).toBe(409);
    expect(open.body.error).toContain(`batch ${small?.openBatch?.payoutId} is open (exchange_created)`);

    // THRESHOLD: 22 USDT, below its 50 threshold, no batch open: paid now, and then its batch is the open one.
    expect(await channel(THRESHOLD)).toMatchObject({ availableUsdt: '22', openBatch: null, canPayNow: true });
    const paidNow = await payrail.request('POST', `/api/channels/${THRESHOLD}/payout`);
    expect(paidNow.status).toBe(201);
    expect(paidNow.body).toMatchObject({ kind: 'threshold', status: 'pending', asset: 'usdt', amount: '22' });
    expect(await channel(THRESHOLD)).toMatchObject({
      availableUsdt: '0',
      reserved: { usdt: '22' },
      openBatch: { payoutId: paidNow.body.payoutId, status: 'pending' },
      canPayNow: false,
    });

    // USDT arriving while the batch is open waits for it: available, and still no pay now.
    await settleConversion(db.db, (paid[THRESHOLD] as string[]).slice(3), 5_000_000n);
    expect(await channel(THRESHOLD)).toMatchObject({
      availableUsdt: '5',
      openBatch: { payoutId: paidNow.body.payoutId },
      canPayNow: false,
    });
    const again = await payrail.request('POST', `/api/channels/${THRESHOLD}/payout`);
    expect(again.status).toBe(409);
    expect(again.body.error).toContain(`batch ${paidNow.body.payoutId} is open (pending)`);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });
});

describe('overview arithmetic', () => {
  it('fills are exact basis points rounded down', () => {
    expect(fillBps(0n, 5_000n)).toBe(0);
    expect(fillBps(49_999_999n, 5_000n)).toBe(9_999);
    expect(fillBps(50_000_000n, 5_000n)).toBe(10_000);
    expect(fillBps(10n ** 30n, 1n)).toBe(Number((10n ** 30n * 10_000n) / 10_000n));
  });

  it('scales each hour against the peak without floats, and keeps empty hours', () => {
    const since = new Date('2026-01-01T00:00:00Z');
    const series = volumeSeries(since, 3, [
      { hour: new Date('2026-01-01T00:00:00Z'), asset: 'eth', units: 1n, payments: 1 },
      { hour: new Date('2026-01-01T02:00:00Z'), asset: 'eth', units: 3n, payments: 2 },
    ]);
    expect(series.buckets.map((b) => [b.hour, b.received.eth, b.payments, b.scaleBps.eth])).toEqual([
      ['2026-01-01T00:00:00.000Z', '0.000000000000000001', 1, 3_333],
      ['2026-01-01T01:00:00.000Z', '0', 0, 0],
      ['2026-01-01T02:00:00.000Z', '0.000000000000000003', 2, 10_000],
    ]);
    expect(series.peak).toEqual({ eth: '0.000000000000000003' });
    expect(volumeSeries(since, 2, []).buckets.map((b) => b.scaleBps.eth)).toEqual([0, 0]);
  });
});

describe('readOverview of a top-up in review', () => {
  it("says what a credit would book: the difference to the partial credit, not the partial's outcome (the text report too)", async () => {
    const body: Record<string, unknown> = {
      ...structuredClone(fixtures.partially_paid),
      payment_id: nextPaymentId++,
      order_id: `PGP-1|${THRESHOLD}`,
    };
    const id = String(body.payment_id);
    const send = async (ipn: Record<string, unknown>) => {
      const { raw, headers } = signed(ipn, IPN_SECRET);
      return payrail.request('POST', '/webhooks/nowpayments', { raw, headers, token: null });
    };
    expect((await send(body)).status).toBe(202);
    expect((await readOverview(db.db)).review.payments.find((p) => p.paymentId === id)?.creditable).toEqual({
      asset: 'eth',
      amount: '0.00294',
    });
    expect((await payrail.request('POST', `/api/payments/${id}/credit`)).status).toBe(200);
    expect(
      (await send({ ...ipnBody(), payment_id: body.payment_id, invoice_id: body.invoice_id, order_id: body.order_id }))
        .body.reviewReason,
    ).toMatch(/^top_up: /);

    const now = await readOverview(db.db);
    const topUp = now.review.payments.find((p) => p.paymentId === id);
    expect(topUp).toMatchObject({
      reason: 'top_up: credited 0.00294 eth; a later finished IPN says 0.00487 eth (0.00193 eth more)',
      actions: ['credit', 'ignore'],
      reported: { outcomeAmount: '0.00294' },
      credited: { asset: 'eth', gross: '0.00294' },
      creditable: { asset: 'eth', amount: '0.00193' },
    });
    expect(formatStatus(now)).toMatch(
      new RegExp(
        `\\n  payment ${id}\\s+finished\\s+0\\.00193 ETH\\s+paid 0\\.003 of 0\\.00495 ETH\\s+${THRESHOLD}\\s+\\S+\\s+credit/ignore\\s+top_up: `,
      ),
    );
    expect((await payrail.request('POST', `/api/payments/${id}/ignore`)).status).toBe(200);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });
});
