/**
 * The manual side of payouts on real parts (IPNs over HTTP, the ChangeNow simulator over HTTP, transfers on anvil):
 * reading payouts, approving the ones above PAYOUT_APPROVAL_ABOVE_USD, cancelling and retrying, each action kept in
 * the audit log under the acting token's name, and refused (409, nothing changed, nothing logged) where unsafe.
 */
import { describe, expect } from 'vitest';
import { parseUnits } from '../../src/money/index.ts';
import { worldFirst } from '../support/fixtures.ts';
import { eventually } from '../support/outside.ts';
import { payoutState, type ApiPayout as Payout } from '../support/payout-state.ts';
import { NET_WEI, payoutApiStepsTest } from '../support/payout-steps.ts';
import { freshWallet, TRON_WALLET, tronThreshold } from '../support/payouts.ts';

const ALICE = 'alice-admin-token-0123456789';
const BOB = 'bob-admin-token-0123456789ab';
/** What ChangeNow's simulator gives for it in USDT: 0.0047239 × 3000 − 1. */
const NET_AS_USDT = '13.1717';

// Each test below lists the fixtures it uses (vitest sets up only those), so those lists repeat from test to test.
const it = worldFirst(
  payoutApiStepsTest({
    env: { CONVERSION_MIN_USD: '1', ADMIN_TOKENS: `alice:${ALICE},bob:${BOB}` },
    firstPaymentId: 9_300_000_000,
    firstChannel: 1_003_300_000_001,
  })
    .extend('holdBlocks', ({ world }) => payoutState(world).holdBlocks)
    .extend('mineHeld', ({ world }) => payoutState(world).mineHeld)
    /** The action as `token`'s holder, expecting it refused as unsafe now (409); returns the error it gave. */
    .extend('refusal', ({ act }) => async (payoutId: string, action: string, token: string | undefined) => {
      const res = await act(payoutId, action, token);
      expect(res.status).toBe(409);
      return res.body.error as string;
    })
    /** The payout's audit trail is one retry by `actor`, out of review into `to`. */
    .extend(
      'expectOnlyRetry',
      ({ expectOnlyAction }) =>
        (payoutId: string, actor: string, to: string, reason: string | null): Promise<void> =>
          expectOnlyAction(payoutId, actor, 'payout.retry', { from: 'needs_review', to, reason }),
    )
    /** The payout's audit trail is one `action` by `actor`, moving it `from` one state `to` another. */
    .extend(
      'expectOnlyMove',
      ({ auditOf }) =>
        async (payoutId: string, actor: string, action: string, from: string, to: string): Promise<void> => {
          expect(await auditOf(payoutId)).toEqual([
            expect.objectContaining({ actor, action, details: expect.objectContaining({ from, to }) }),
          ]);
        },
    )
    /**
     * An instant payout sent to review by ChangeNow failing (HTTP 503) on every attempt, ChangeNow back once it is
     * there: the test's payrail must have started with PAYOUT_MAX_ATTEMPTS low enough to give up.
     */
    .extend(
      'inReviewAfterOutage',
      ({ outside, paidInstant, payoutIn }) =>
        async (payoutCurrency: string, payoutNetwork: string, walletAddress: string) => {
          await outside.sim.setFault('5xx');
          const id = await paidInstant(payoutCurrency, payoutNetwork, walletAddress);
          const review = await payoutIn(id, 'needs_review');
          await outside.sim.setFault('none');
          return { id, review };
        },
    )
    /**
     * A threshold batch (two payments, USDT on Tron) awaiting approval: the test's payrail must have started with
     * PAYOUT_APPROVAL_ABOVE_USD under the batch's worth (20).
     */
    .extend('batchAwaitingApproval', ({ channel, pay, payoutIn }) => async () => {
      const id = await channel(tronThreshold('20'));
      const paymentIds = [await pay(id), await pay(id)];
      return { id, paymentIds, waiting: await payoutIn(id, 'awaiting_approval', 60_000) };
    }),
);

describe('reading payouts', () => {
  it('lists only payouts in review by status, and reads one by id (404 unknown, 400 malformed)', async ({
    start,
    paidInstant,
    getPayout,
    payoutIn,
    exchangesOf,
    failedExchangeInReview,
  }) => {
    const payrail = await start();
    const { id: inReview, review } = await failedExchangeInReview();
    expect(review.reason).toContain('exchange failed');

    const direct = await paidInstant('eth', 'eth', freshWallet());
    const done = await payoutIn(direct, 'completed');

    const listed = await payrail.request('GET', '/api/payouts?status=needs_review');
    expect(listed.status).toBe(200);
    const ids = (listed.body.payouts as Payout[]).map((p) => p.payoutId);
    expect(ids).toContain(review.payoutId);
    expect(ids).not.toContain(done.payoutId);
    expect((listed.body.payouts as Payout[]).every((p) => p.status === 'needs_review')).toBe(true);
    const completed = (await payrail.request('GET', '/api/payouts?status=completed')).body.payouts as Payout[];
    expect(completed.map((p) => p.payoutId)).toContain(done.payoutId);
    expect(completed.map((p) => p.payoutId)).not.toContain(review.payoutId);

    expect(await getPayout(review.payoutId)).toMatchObject({
      payoutId: review.payoutId,
      kind: 'instant',
      channelId: inReview,
      status: 'needs_review',
      asset: 'eth',
      amount: '0.0047239',
      payoutCurrency: 'usdt',
      payoutNetwork: 'trx',
      walletAddress: TRON_WALLET,
      exchangeId: exchangesOf(review.payoutId)[0]!.id,
    });

    const unknown = await payrail.request('GET', '/api/payouts/po_0000000000000000');
    expect(unknown).toEqual({ status: 404, body: { error: 'payout po_0000000000000000 not found' } });
    for (const bad of ['po_123', 'PO_0000000000000000', 'po_000000000000000g', 'po_00000000000000000', '123']) {
      expect((await payrail.request('GET', `/api/payouts/${bad}`)).status, bad).toBe(400);
    }
    expect((await payrail.request('GET', '/api/payouts?status=stuck')).status).toBe(400);
  });
});

describe('approval above PAYOUT_APPROVAL_ABOVE_USD', () => {
  it('a threshold batch above the limit waits, asks nothing of ChangeNow or the chain; approved by alice, it completes', async ({
    start,
    reaches,
    accepted,
    refusal,
    balances,
    expectOnlyAction,
    exchangesOf,
    transfersOf,
    expectNothingSent,
    expectLedgerClean,
    batchAwaitingApproval,
  }) => {
    await start({ PAYOUT_APPROVAL_ABOVE_USD: '20' });
    const { id, waiting } = await batchAwaitingApproval();
    expect(waiting).toMatchObject({
      kind: 'threshold',
      asset: 'usdt',
      approvedBy: null,
      approvedAt: null,
      exchangeId: null,
    });
    const units = parseUnits(waiting.amount, 6);
    expect(units).toBeGreaterThan(20_000_000n);
    await expectNothingSent(waiting.payoutId);
    expect(await balances(id, 'usdt')).toEqual({ available: 0n, reserved: units });

    const approved = await accepted(waiting.payoutId, 'approve', ALICE, {
      payoutId: waiting.payoutId,
      status: 'pending',
      approvedBy: 'alice',
    });
    expect(approved.approvedAt).toEqual(expect.any(String));

    const done = await reaches(waiting.payoutId, 'completed', 60_000);
    expect(done).toMatchObject({ approvedBy: 'alice', amount: waiting.amount });
    expect(exchangesOf(done.payoutId)).toHaveLength(1);
    expect(await transfersOf(done.payoutId)).toEqual([
      expect.objectContaining({ status: 'confirmed', amount: units.toString() }),
    ]);
    expect(await balances(id, 'usdt')).toEqual({ available: 0n, reserved: 0n });

    expect(await refusal(done.payoutId, 'approve', ALICE)).toContain('not awaiting approval');
    await expectOnlyAction(done.payoutId, 'alice', 'payout.approve', {
      from: 'awaiting_approval',
      to: 'pending',
      reason: null,
    });
    await expectLedgerClean();
  });

  it('a batch and an instant payout under the limit go straight through; approving one not awaiting approval is refused', async ({
    outside,
    start,
    channel,
    pay,
    instant,
    getPayout,
    payoutIn,
    refusal,
    auditOf,
  }) => {
    await start({ PAYOUT_APPROVAL_ABOVE_USD: '20' });
    const batchChannel = await channel(tronThreshold('10'));
    const wallet = freshWallet();
    const instantChannel = await instant('usdt', 'eth', wallet);
    await pay(batchChannel);
    await pay(instantChannel);
    const batch = await payoutIn(batchChannel, 'completed', 60_000);
    const single = await payoutIn(instantChannel, 'completed');
    expect(parseUnits(batch.amount, 6)).toBeLessThanOrEqual(20_000_000n);
    expect(batch).toMatchObject({ kind: 'threshold', approvedBy: null, approvedAt: null });
    expect(single).toMatchObject({ kind: 'instant', approvedBy: null, amountOut: NET_AS_USDT });
    expect(await outside.usdtBalanceOf(wallet)).toBe(parseUnits(NET_AS_USDT, 6));

    for (const payout of [batch, single]) {
      expect(await refusal(payout.payoutId, 'approve', ALICE)).toBe(
        `cannot approve payout ${payout.payoutId}: a payout in state completed is not awaiting approval`,
      );
      expect(await getPayout(payout.payoutId)).toMatchObject({ status: 'completed', approvedBy: null });
      expect(await auditOf(payout.payoutId)).toEqual([]);
    }
  });

  it('an instant ETH payout is valued in USD through a ChangeNow estimate: 13.17 is not above 13.17, but is above 13.16', async ({
    outside,
    start,
    paidInstant,
    payoutIn,
    reaches,
    act,
    transfersOf,
    expectLedgerClean,
    expectOnlyMove,
  }) => {
    await start({ PAYOUT_APPROVAL_ABOVE_USD: '13.17' });
    const underWallet = freshWallet();
    const under = await paidInstant('eth', 'eth', underWallet);
    expect(await payoutIn(under, 'completed')).toMatchObject({ approvedBy: null, amountOut: '0.0047239' });

    await start({ PAYOUT_APPROVAL_ABOVE_USD: '13.16' });
    const overWallet = freshWallet();
    const over = await paidInstant('eth', 'eth', overWallet);
    const waiting = await payoutIn(over, 'awaiting_approval');
    expect(await transfersOf(waiting.payoutId)).toEqual([]);
    expect(await outside.balanceOf(overWallet)).toBe(0n);

    expect((await act(waiting.payoutId, 'approve', BOB)).status).toBe(200);
    expect(await reaches(waiting.payoutId, 'completed')).toMatchObject({
      approvedBy: 'bob',
      exchangeId: null,
      amountOut: '0.0047239',
    });
    expect(await outside.balanceOf(overWallet)).toBe(NET_WEI);
    await expectOnlyMove(waiting.payoutId, 'bob', 'payout.approve', 'awaiting_approval', 'pending');
    await expectLedgerClean();
  });
});

describe('cancel', () => {
  it('bob cancels a batch awaiting approval: the funds go back to the channel and its payments are free for the next batch', async ({
    db,
    start,
    getPayout,
    act,
    accepted,
    balances,
    expectOnlyAction,
    expectNothingSent,
    expectLedgerClean,
    batchAwaitingApproval,
  }) => {
    await start({ PAYOUT_APPROVAL_ABOVE_USD: '20' });
    const { id, paymentIds, waiting } = await batchAwaitingApproval();
    const units = parseUnits(waiting.amount, 6);
    const linked = await db.db
      .selectFrom('payments')
      .select(['payment_id', 'payout_id'])
      .where('channel_id', '=', id)
      .orderBy('payment_id')
      .execute();
    expect(linked).toEqual(paymentIds.map((paymentId) => ({ payment_id: paymentId, payout_id: waiting.payoutId })));

    await accepted(waiting.payoutId, 'cancel', BOB, {
      status: 'cancelled',
      reason: 'cancelled by bob',
      approvedBy: null,
    });
    expect(await balances(id, 'usdt')).toEqual({ available: units, reserved: 0n });
    const unlinked = await db.db.selectFrom('payments').select('payout_id').where('channel_id', '=', id).execute();
    expect(unlinked).toEqual([{ payout_id: null }, { payout_id: null }]);
    await expectNothingSent(waiting.payoutId);

    // Cancelled is final: neither approval nor another cancel revives it.
    for (const action of ['approve', 'cancel', 'retry']) {
      const refused = await act(waiting.payoutId, action, ALICE);
      expect(refused.status, action).toBe(409);
    }
    expect(await getPayout(waiting.payoutId)).toMatchObject({ status: 'cancelled' });
    // The audit row in full, as for the approval above, not through expectOnlyMove: its null reason is checked too.
    await expectOnlyAction(waiting.payoutId, 'bob', 'payout.cancel', {
      from: 'awaiting_approval',
      to: 'cancelled',
      reason: null,
    });
    await expectLedgerClean();
  });

  it('bob cancels a payout in review that sent nothing (its pair inactive), and a held one: their ETH is available again', async ({
    start,
    accepted,
    balances,
    expectOnlyAction,
    exchangesOf,
    transfersOf,
    expectLedgerClean,
    inactivePairInReview,
    heldBelowMinimum,
    expectOnlyMove,
  }) => {
    await start();
    const { id: inactive, review } = await inactivePairInReview('eth');
    expect(await transfersOf(review.payoutId)).toEqual([]);
    expect(await balances(inactive, 'eth')).toEqual({ available: 0n, reserved: NET_WEI });

    await accepted(review.payoutId, 'cancel', BOB, { status: 'cancelled', reason: 'cancelled by bob' });
    expect(await balances(inactive, 'eth')).toEqual({ available: NET_WEI, reserved: 0n });
    await expectOnlyAction(review.payoutId, 'bob', 'payout.cancel', {
      from: 'needs_review',
      to: 'cancelled',
      reason: review.reason,
    });

    const { id: small, held } = await heldBelowMinimum();
    expect(held.reason).toContain("below ChangeNow's minimum");
    expect(held.holdUntil).toEqual(expect.any(String));
    await accepted(held.payoutId, 'cancel', BOB, { status: 'cancelled', reason: 'cancelled by bob', holdUntil: null });
    expect(await balances(small, 'eth')).toEqual({ available: NET_WEI, reserved: 0n });
    expect(exchangesOf(held.payoutId)).toEqual([]);
    await expectOnlyMove(held.payoutId, 'bob', 'payout.cancel', 'held', 'cancelled');
    await expectLedgerClean();
  });

  it('refuses to cancel a payout whose funds left (its exchange failed after the transfer) or a completed one, and changes nothing', async ({
    start,
    paidInstant,
    getPayout,
    payoutIn,
    refusal,
    balances,
    auditOf,
    transfersOf,
    expectLedgerClean,
    failedExchangeInReview,
  }) => {
    await start();
    const { id, review } = await failedExchangeInReview();
    expect(await transfersOf(review.payoutId)).toEqual([expect.objectContaining({ status: 'confirmed' })]);
    const before = { payout: await getPayout(review.payoutId), balances: await balances(id, 'eth') };
    expect(before.balances).toEqual({ available: 0n, reserved: NET_WEI });

    expect(await refusal(review.payoutId, 'cancel', BOB)).toContain('the funds may have left');
    expect(await getPayout(review.payoutId)).toEqual(before.payout);
    expect(await balances(id, 'eth')).toEqual(before.balances);
    expect(await auditOf(review.payoutId)).toEqual([]);

    const direct = await paidInstant('eth', 'eth', freshWallet());
    const done = await payoutIn(direct, 'completed');
    expect(await refusal(done.payoutId, 'cancel', BOB)).toBe(
      `cannot cancel payout ${done.payoutId}: a payout in state completed cannot be cancelled`,
    );
    expect(await getPayout(done.payoutId)).toEqual(done);
    expect(await balances(direct, 'eth')).toEqual({ available: 0n, reserved: 0n });
    expect(await auditOf(done.payoutId)).toEqual([]);
    await expectLedgerClean();
  });
});

describe('retry', () => {
  it('a payout whose funds are at ChangeNow, sent to review past its poll deadline, polls again on retry and completes: one exchange, one transfer', async ({
    outside,
    start,
    paidInstant,
    payoutIn,
    reaches,
    accepted,
    refusal,
    balances,
    expectOnlyRetry,
    exchangesOf,
    transfersOf,
    expectLedgerClean,
    holdBlocks,
    mineHeld,
  }) => {
    await start({ CONVERSION_POLL_DEADLINE: '1ms' });
    // Blocks are mined by hand, so ChangeNow can be made unreachable between the exchange and the first poll.
    await holdBlocks();
    const wallet = freshWallet();
    const id = await paidInstant('usdt', 'eth', wallet);
    const created = await payoutIn(id, 'exchange_created');
    await eventually('the payout transfer broadcast', async () =>
      (await transfersOf(created.payoutId)).some((t) => t.status === 'broadcast'),
    );
    await outside.sim.setFault('5xx');
    await mineHeld();

    const stuck = await reaches(created.payoutId, 'needs_review');
    expect(stuck.reason).toBe('no exchange status past the poll deadline (http_503)');
    expect(await transfersOf(created.payoutId)).toEqual([expect.objectContaining({ status: 'confirmed' })]);
    // Its funds are at ChangeNow: cancelling is refused.
    await refusal(created.payoutId, 'cancel', BOB);

    await outside.sim.setFault('none');
    await accepted(created.payoutId, 'retry', ALICE, { status: 'sent' });
    const done = await reaches(created.payoutId, 'completed');
    expect(done).toMatchObject({ amountOut: NET_AS_USDT, exchangeId: created.exchangeId });
    expect(await outside.usdtBalanceOf(wallet)).toBe(parseUnits(NET_AS_USDT, 6));
    expect(exchangesOf(created.payoutId)).toHaveLength(1);
    expect(await transfersOf(created.payoutId)).toHaveLength(1);
    expect(await balances(id, 'eth')).toEqual({ available: 0n, reserved: 0n });

    expect(await refusal(created.payoutId, 'retry', ALICE)).toContain('a payout in state completed cannot be retried');
    await expectOnlyRetry(created.payoutId, 'alice', 'sent', stuck.reason);
    await expectLedgerClean();
  });

  it('a payout whose exchange failed is only looked at again on retry: back in review, no second exchange or transfer', async ({
    start,
    reaches,
    accepted,
    balances,
    expectOnlyRetry,
    exchangesOf,
    transfersOf,
    failedExchangeInReview,
  }) => {
    await start();
    const { id, review } = await failedExchangeInReview();
    await accepted(review.payoutId, 'retry', undefined, { status: 'sent' }); // ADMIN_TOKEN: recorded as "admin"
    const again = await reaches(review.payoutId, 'needs_review');
    expect(again.reason).toContain('exchange failed');
    expect(exchangesOf(review.payoutId)).toHaveLength(1);
    expect(await transfersOf(review.payoutId)).toHaveLength(1);
    expect(await balances(id, 'eth')).toEqual({ available: 0n, reserved: NET_WEI });
    await expectOnlyRetry(review.payoutId, 'admin', 'sent', review.reason);
  });

  it('a payout in review before any transfer (its pair inactive) asks ChangeNow again on retry, once the pair is back, and completes', async ({
    outside,
    start,
    reaches,
    accepted,
    refusal,
    balances,
    expectOnlyRetry,
    exchangesOf,
    transfersOf,
    expectNothingSent,
    expectLedgerClean,
    inactivePairInReview,
  }) => {
    await start();
    const { id, review } = await inactivePairInReview('base');
    await expectNothingSent(review.payoutId);

    outside.sim.setPair('eth/eth->usdc/base', { rate: '3000', withdrawalFee: '1', minAmount: '0.001' });
    await accepted(review.payoutId, 'retry', ALICE, { status: 'exchange_requested', attempts: 0 });
    const done = await reaches(review.payoutId, 'completed');
    expect(done.amountOut).toBe(NET_AS_USDT);
    expect(exchangesOf(review.payoutId)).toHaveLength(1);
    expect(await transfersOf(review.payoutId)).toEqual([
      expect.objectContaining({ status: 'confirmed', to_address: exchangesOf(review.payoutId)[0]!.payinAddress }),
    ]);
    expect(await balances(id, 'eth')).toEqual({ available: 0n, reserved: 0n });

    await refusal(review.payoutId, 'retry', ALICE);
    await expectOnlyRetry(review.payoutId, 'alice', 'exchange_requested', review.reason);
    await expectLedgerClean();
  });

  it('a held payout runs again at once on retry', async ({
    outside,
    start,
    paidInstant,
    payoutIn,
    reaches,
    accepted,
    exchangesOf,
    expectOnlyMove,
  }) => {
    await start();
    outside.sim.setPair('eth/eth->usdt/matic', { rate: '3000', withdrawalFee: '1', minAmount: '1' });
    const id = await paidInstant('usdt', 'matic', freshWallet());
    const held = await payoutIn(id, 'held');
    outside.sim.setPair('eth/eth->usdt/matic', { rate: '3000', withdrawalFee: '1', minAmount: '0.001' });
    await accepted(held.payoutId, 'retry', BOB, { status: 'pending', holdUntil: null });
    expect(await reaches(held.payoutId, 'completed')).toMatchObject({ amountOut: NET_AS_USDT });
    expect(exchangesOf(held.payoutId)).toHaveLength(1);
    await expectOnlyMove(held.payoutId, 'bob', 'payout.retry', 'held', 'pending');
  });

  it('a direct payout sent to review before its transfer is retried as a direct transfer, never through an exchange', async ({
    outside,
    start,
    reaches,
    accepted,
    expectOnlyRetry,
    exchangesOf,
    transfersOf,
    expectLedgerClean,
    inReviewAfterOutage,
  }) => {
    // ChangeNow down while the payout is valued for the approval limit, and one attempt allowed: review.
    await start({ PAYOUT_APPROVAL_ABOVE_USD: '1000', PAYOUT_MAX_ATTEMPTS: '1' });
    const wallet = freshWallet();
    const { review } = await inReviewAfterOutage('eth', 'eth', wallet);
    expect(review.reason).toContain('gave up after 1 failed attempts');

    await accepted(review.payoutId, 'retry', ALICE, { status: 'pending', attempts: 0, lastError: null });
    const done = await reaches(review.payoutId, 'completed');
    expect(done).toMatchObject({ exchangeId: null, amountOut: '0.0047239' });
    expect(exchangesOf(review.payoutId)).toEqual([]);
    expect(await transfersOf(review.payoutId)).toEqual([
      expect.objectContaining({ status: 'confirmed', to_address: wallet }),
    ]);
    expect(await outside.balanceOf(wallet)).toBe(NET_WEI);
    await expectOnlyRetry(review.payoutId, 'alice', 'pending', review.reason);
    await expectLedgerClean();
  });

  it('a payout sent to review before its approval check still waits for approval after a retry', async ({
    start,
    reaches,
    act,
    accepted,
    auditOf,
    exchangesOf,
    expectNothingSent,
    inReviewAfterOutage,
  }) => {
    await start({ PAYOUT_APPROVAL_ABOVE_USD: '5', PAYOUT_MAX_ATTEMPTS: '1' });
    const { review } = await inReviewAfterOutage('usdt', 'trx', TRON_WALLET);

    // ChangeNow may hold an exchange from an earlier attempt, so the retry looks there first; it holds none.
    await accepted(review.payoutId, 'retry', ALICE, { status: 'exchange_requested' });
    const waiting = await reaches(review.payoutId, 'awaiting_approval');
    expect(waiting.approvedBy).toBeNull();
    await expectNothingSent(review.payoutId);

    expect((await act(review.payoutId, 'approve', BOB)).status).toBe(200);
    expect(await reaches(review.payoutId, 'completed')).toMatchObject({ approvedBy: 'bob' });
    expect(exchangesOf(review.payoutId)).toHaveLength(1);
    expect((await auditOf(review.payoutId)).map((a) => [a.actor, a.action])).toEqual([
      ['alice', 'payout.retry'],
      ['bob', 'payout.approve'],
    ]);
  });
});

describe('access and bad requests', () => {
  it('no token or a wrong one gets 401 for reading and acting; an unknown action is refused; nothing changes', async ({
    db,
    start,
    getPayout,
    act,
    balances,
    auditOf,
    awaitingApproval,
  }) => {
    const payrail = await start({ PAYOUT_APPROVAL_ABOVE_USD: '1' });
    const { id, waiting } = await awaitingApproval();
    const requests: Array<[string, string]> = [
      ['GET', '/api/payouts'],
      ['GET', `/api/payouts?status=awaiting_approval`],
      ['GET', `/api/payouts/${waiting.payoutId}`],
      ['POST', `/api/payouts/${waiting.payoutId}/approve`],
      ['POST', `/api/payouts/${waiting.payoutId}/cancel`],
      ['POST', `/api/payouts/${waiting.payoutId}/retry`],
    ];
    for (const [method, path] of requests) {
      for (const token of [null, 'wrong-admin-token-0123456789', `${ALICE}x`, '']) {
        const res = await payrail.request(method, path, { token });
        expect(res.status, `${method} ${path} with ${JSON.stringify(token)}`).toBe(401);
      }
    }
    const exploded = await act(waiting.payoutId, 'explode', ALICE);
    // No such action: the route refuses it (400), or no route matches (404); either way nothing happens.
    expect([400, 404]).toContain(exploded.status);
    expect((await act('po_123', 'approve', ALICE)).status).toBe(400);
    expect((await act('po_0000000000000000', 'approve', ALICE)).status).toBe(404);

    expect(await getPayout(waiting.payoutId)).toEqual(waiting);
    expect(await balances(id, 'eth')).toEqual({ available: 0n, reserved: NET_WEI });
    expect(await auditOf(waiting.payoutId)).toEqual([]);
    expect(
      await db.db
        .selectFrom('audit_log')
        .select('id')
        .where('action', 'like', 'payout.%')
        .where('subject', 'in', [waiting.payoutId, 'po_0000000000000000', 'po_123'])
        .execute(),
    ).toEqual([]);
  });
});
