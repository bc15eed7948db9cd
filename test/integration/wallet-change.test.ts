/**
 * A channel's wallet change on real parts (IPNs over HTTP, the ChangeNow simulator over HTTP, transfers on anvil):
 * recorded (channels.wallet_changed_at, never at creation) and alerted (`channel_wallet_changed`), and with
 * WALLET_CHANGE_HOLD set, the channel's payouts wait in `held` until the hold ends before the new wallet is paid;
 * retry and threshold top-ups do not shorten the hold, cancel still works. Independently of the hold, a payout
 * whose stored wallet is not valid for its network goes to review before any exchange or transfer.
 */
import { describe, expect } from 'vitest';
import { parseUnits } from '../../src/money/index.ts';
import { worldFirst } from '../support/fixtures.ts';
import { eventually } from '../support/outside.ts';
import { instantBody, payoutApiTest, type ApiPayout as Payout } from '../support/payout-state.ts';
import { freshWallet } from '../support/payouts.ts';

const TRON_WALLET = 'TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7';
/** TRON_WALLET with its last character changed: the base58check checksum no longer matches. */
const TRON_WALLET_BAD = 'TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU8';
const ALICE = 'alice-admin-token-0123456789';
/** One fixture payment's net ETH (0.00487 less the 3% fee), in wei. */
const NET_WEI = 4_723_900_000_000_000n;
/** What ChangeNow's simulator gives for it in USDT: 0.0047239 × 3000 − 1. */
const NET_AS_USDT = '13.1717';
const HOUR_MS = 3_600_000;

const holdEnd = (changedAt: string, holdMs: number) => new Date(Date.parse(changedAt) + holdMs).toISOString();
const holdReason = (changedAt: string, holdMs: number) =>
  `wallet changed at ${changedAt}; held until ${holdEnd(changedAt, holdMs)}`;

// Each test below lists the fixtures it uses (vitest sets up only those), so those lists repeat from test to test.
const it = worldFirst(
  payoutApiTest({
    env: { CONVERSION_MIN_USD: '1', ADMIN_TOKENS: `alice:${ALICE}` },
    firstPaymentId: 9_600_000_000,
    firstChannel: 1_003_600_000_001,
  })
    .extend('put', ({ app }) => async (channelId: string, body: Record<string, unknown>, token?: string) => {
      const res = await app.payrail.request('PUT', `/api/channels/${channelId}`, { body, token });
      expect([200, 201], JSON.stringify(res.body)).toContain(res.status);
      return res.body as Record<string, any>;
    })
    .extend('channel', ({ app, put }) => async (body: Record<string, unknown>): Promise<string> => {
      const id = app.nextChannelId();
      const created = await put(id, body);
      expect(created.walletChangedAt).toBeNull();
      return id;
    })
    /**
     * A new instant channel paying out to one fresh wallet, then changed (by `token`'s holder, the default admin
     * unless given) to pay out to another; `changedAt` is the change's time as the API answered it.
     */
    .extend(
      'walletChanged',
      ({ channel, put }) =>
        async (payoutCurrency: string, payoutNetwork: string, token?: string) => {
          const oldWallet = freshWallet();
          const newWallet = freshWallet();
          const id = await channel(instantBody(payoutCurrency, payoutNetwork, oldWallet));
          const changed = await put(id, instantBody(payoutCurrency, payoutNetwork, newWallet), token);
          return { id, oldWallet, newWallet, changedAt: changed.walletChangedAt as string };
        },
    )
    /** Sends the channel a finished payment and returns that payment's payout, once opened. */
    .extend('payoutOfNewPayment', ({ pay, payoutsOf }) => async (channelId: string): Promise<Payout> => {
      const paymentId = await pay(channelId);
      let found: Payout | undefined;
      await eventually(
        `a payout for payment ${paymentId}`,
        async () => (found = (await payoutsOf(channelId)).find((p) => p.paymentId === paymentId)) !== undefined,
      );
      return found!;
    })
    .extend('walletAlerts', ({ logs }) => (channelId: string) => {
      return logs.lines.filter(
        (l) => l.event === 'alert' && l.alert === 'channel_wallet_changed' && l.channelId === channelId,
      );
    })
    .extend('heldLines', ({ logs }) => (payoutId: string) => {
      return logs.lines.filter((l) => l.event === 'payout_held' && l.payoutId === payoutId);
    }),
);

describe('recording and alerting a wallet change', () => {
  it('creating a channel is not a change, nor is a change of strategy or threshold, nor the same wallet again; a new network is', async ({
    outside,
    db,
    start,
    channel,
    put,
    payoutOfNewPayment,
    reaches,
    auditOf,
    walletAlerts,
    heldLines,
  }) => {
    const payrail = await start({ WALLET_CHANGE_HOLD: '1h' });
    const wallet = freshWallet();
    const id = await channel(instantBody('eth', 'eth', wallet));
    expect((await payrail.request('GET', `/api/channels/${id}`)).body.walletChangedAt).toBeNull();

    expect(
      (
        await put(id, {
          payoutStrategy: 'threshold',
          thresholdUsd: '500',
          payoutCurrency: 'eth',
          payoutNetwork: 'eth',
          walletAddress: wallet,
        })
      ).walletChangedAt,
    ).toBeNull();
    expect((await put(id, instantBody('eth', 'eth', wallet))).walletChangedAt).toBeNull();
    // The same address in another letter case is the same wallet (stored in one spelling).
    expect((await put(id, instantBody('ETH', 'ETH', wallet.toLowerCase()))).walletChangedAt).toBeNull();
    expect(walletAlerts(id)).toEqual([]);
    const row = await db.db
      .selectFrom('channels')
      .select('wallet_changed_at')
      .where('channel_id', '=', id)
      .executeTakeFirstOrThrow();
    expect(row.wallet_changed_at).toBeNull();

    // A new channel's first payout is not held, even with the hold on.
    const payout = await payoutOfNewPayment(id);
    const done = await reaches(payout.payoutId, 'completed');
    expect(done).toMatchObject({ reason: null, holdUntil: null, walletAddress: wallet });
    expect(await outside.balanceOf(wallet)).toBe(NET_WEI);
    expect(heldLines(payout.payoutId)).toEqual([]);

    // The same address on another network is another destination: a change, alerted.
    const moved = await put(id, instantBody('usdt', 'bsc', wallet), ALICE);
    expect(moved.walletChangedAt).toEqual(expect.any(String));
    expect(walletAlerts(id)).toEqual([
      expect.objectContaining({
        level: 40,
        channelId: id,
        actor: 'alice',
        from: { payoutCurrency: 'eth', payoutNetwork: 'eth', walletAddress: wallet },
        to: { payoutCurrency: 'usdt', payoutNetwork: 'bsc', walletAddress: wallet },
        changedAt: moved.walletChangedAt,
      }),
    ]);
    const audit = await auditOf(`channel:${id}`);
    expect(audit.map((a) => a.action)).toEqual([
      'channel.create',
      'channel.update',
      'channel.update',
      'channel.update',
      'channel.update',
    ]);
    expect(audit.map((a) => (a.details as Record<string, unknown>).walletChanged ?? false)).toEqual([
      false,
      false,
      false,
      false,
      true,
    ]);
    expect(audit[4]).toMatchObject({
      actor: 'alice',
      details: { after: { payoutNetwork: 'bsc', walletChangedAt: moved.walletChangedAt } },
    });
  });
});

describe('WALLET_CHANGE_HOLD', () => {
  it('holds the payout to a changed wallet with its reason, asks nothing of ChangeNow or the chain; retry re-holds it, cancel returns it', async ({
    outside,
    db,
    start,
    logs,
    walletChanged,
    getPayout,
    payoutOfNewPayment,
    reaches,
    act,
    balances,
    expectNothingSent,
    expectLedgerClean,
    walletAlerts,
    heldLines,
  }) => {
    await start({ WALLET_CHANGE_HOLD: '1h' });
    const { id, oldWallet, newWallet, changedAt } = await walletChanged('usdt', 'eth', ALICE);
    expect(new Date(changedAt).toISOString()).toBe(changedAt);
    expect(walletAlerts(id)).toEqual([
      expect.objectContaining({ actor: 'alice', changedAt, to: expect.objectContaining({ walletAddress: newWallet }) }),
    ]);
    expect(logs.alerts()).toContain('channel_wallet_changed');

    const opened = await payoutOfNewPayment(id);
    const held = await reaches(opened.payoutId, 'held');
    const until = holdEnd(changedAt, HOUR_MS);
    expect(held).toMatchObject({
      reason: holdReason(changedAt, HOUR_MS),
      holdUntil: until,
      walletAddress: newWallet,
      exchangeId: null,
      approvedAt: null,
    });
    await expectNothingSent(held.payoutId);
    expect(await balances(id, 'eth')).toEqual({ available: 0n, reserved: NET_WEI });
    await eventually('the hold logged', async () => heldLines(held.payoutId).length === 1);
    expect(heldLines(held.payoutId)[0]).toMatchObject({
      channelId: id,
      hold: 'wallet_change',
      reason: held.reason,
      until,
    });

    // Its job waits for the end of the hold.
    const job = await db.pool.query<{ run_at: Date }>(
      'select run_at from graphile_worker._private_jobs where key = $1',
      [`payout_run:${held.payoutId}`],
    );
    expect(job.rows.map((r) => r.run_at.toISOString())).toEqual([until]);

    // A retry before the hold ends does not shorten it: the run holds the payout again, same reason, same end.
    const retried = await act(held.payoutId, 'retry', ALICE);
    expect(retried.status).toBe(200);
    expect(retried.body.status).toBe('pending');
    await eventually('held again after the retry', async () => heldLines(held.payoutId).length === 2);
    expect(await getPayout(held.payoutId)).toMatchObject({ status: 'held', reason: held.reason, holdUntil: until });
    await expectNothingSent(held.payoutId);

    // A person can still cancel it: its ETH is back on the channel.
    const cancelled = await act(held.payoutId, 'cancel', ALICE);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ status: 'cancelled', reason: 'cancelled by alice', holdUntil: null });
    expect(await balances(id, 'eth')).toEqual({ available: NET_WEI, reserved: 0n });
    expect(await outside.usdtBalanceOf(newWallet)).toBe(0n);
    expect(await outside.usdtBalanceOf(oldWallet)).toBe(0n);
    await expectLedgerClean();
  });

  it('after a short hold the payout is paid to the new wallet, and its transfer was not made before the hold ended', async ({
    outside,
    start,
    walletChanged,
    payoutOfNewPayment,
    reaches,
    balances,
    exchangesOf,
    transfersOf,
    expectLedgerClean,
    walletAlerts,
    heldLines,
  }) => {
    const holdMs = 2_000;
    await start({ WALLET_CHANGE_HOLD: '2s' });
    const { id, oldWallet, newWallet, changedAt } = await walletChanged('usdt', 'eth');
    expect(walletAlerts(id)).toEqual([expect.objectContaining({ actor: 'admin' })]);
    const opened = await payoutOfNewPayment(id);

    const done = await reaches(opened.payoutId, 'completed');
    expect(done).toMatchObject({ walletAddress: newWallet, amountOut: NET_AS_USDT });
    expect(exchangesOf(done.payoutId)).toEqual([
      expect.objectContaining({ payoutAddress: newWallet, status: 'finished' }),
    ]);
    expect(await outside.usdtBalanceOf(newWallet)).toBe(parseUnits(NET_AS_USDT, 6));
    expect(await outside.usdtBalanceOf(oldWallet)).toBe(0n);
    // Whenever the payout first ran, nothing left before the end of the hold (both times from the database's clock).
    const [transfer] = await transfersOf(done.payoutId);
    expect(transfer!.created_at.getTime()).toBeGreaterThanOrEqual(Date.parse(changedAt) + holdMs);
    // Every hold it went through (normally one, unless the payout first ran after the hold) named the change.
    for (const line of heldLines(done.payoutId))
      expect(line).toMatchObject({ hold: 'wallet_change', reason: holdReason(changedAt, holdMs) });
    expect(await balances(id, 'eth')).toEqual({ available: 0n, reserved: 0n });
    await expectLedgerClean();
  });

  it('without the hold, the changed wallet is paid at once (and the change is still alerted)', async ({
    outside,
    start,
    walletChanged,
    payoutOfNewPayment,
    reaches,
    walletAlerts,
    heldLines,
  }) => {
    await start();
    const { id, oldWallet, newWallet, changedAt } = await walletChanged('eth', 'eth');
    expect(changedAt).toEqual(expect.any(String));
    expect(walletAlerts(id)).toEqual([
      expect.objectContaining({ level: 40, actor: 'admin', to: expect.objectContaining({ walletAddress: newWallet }) }),
    ]);

    const opened = await payoutOfNewPayment(id);
    const done = await reaches(opened.payoutId, 'completed');
    expect(done).toMatchObject({ walletAddress: newWallet, reason: null, holdUntil: null, exchangeId: null });
    expect(await outside.balanceOf(newWallet)).toBe(NET_WEI);
    expect(await outside.balanceOf(oldWallet)).toBe(0n);
    expect(heldLines(done.payoutId)).toEqual([]);
  });

  it('a threshold batch held for a wallet change takes new balance in a top-up but stays held until the same end', async ({
    db,
    start,
    channel,
    pay,
    put,
    payoutsOf,
    getPayout,
    act,
    balances,
    expectNothingSent,
    expectLedgerClean,
  }) => {
    await start({ WALLET_CHANGE_HOLD: '1h' });
    const oldWallet = freshWallet();
    const newWallet = freshWallet();
    const body = (walletAddress: string) => ({
      payoutStrategy: 'threshold',
      thresholdUsd: '20',
      payoutCurrency: 'eth',
      payoutNetwork: 'eth',
      walletAddress,
    });
    const id = await channel(body(oldWallet));
    const changedAt = (await put(id, body(newWallet))).walletChangedAt as string;
    await pay(id);
    await pay(id);
    let batch: Payout | undefined;
    await eventually(
      'the batch held',
      async () => (batch = (await payoutsOf(id)).find((p) => p.status === 'held')) !== undefined,
      60_000,
    );
    const until = holdEnd(changedAt, HOUR_MS);
    expect(batch).toMatchObject({
      kind: 'threshold',
      reason: holdReason(changedAt, HOUR_MS),
      holdUntil: until,
      walletAddress: newWallet,
    });
    const firstAmount = parseUnits(batch!.amount, 6);

    // More balance: the held batch is topped up (and set pending by the top-up); its run holds it again.
    await pay(id);
    await eventually(
      'the batch topped up and held again',
      async () => {
        const row = await db.db
          .selectFrom('payouts')
          .select(['status', 'top_ups'])
          .where('payout_id', '=', batch!.payoutId)
          .executeTakeFirstOrThrow();
        return row.top_ups === 1 && row.status === 'held';
      },
      60_000,
    );
    const topped = await getPayout(batch!.payoutId);
    expect(topped).toMatchObject({
      status: 'held',
      reason: holdReason(changedAt, HOUR_MS),
      holdUntil: until,
      walletAddress: newWallet,
      exchangeId: null,
    });
    const toppedAmount = parseUnits(topped.amount, 6);
    expect(toppedAmount).toBeGreaterThan(firstAmount);
    await expectNothingSent(batch!.payoutId);
    expect(await payoutsOf(id)).toHaveLength(1);
    expect(await balances(id, 'usdt')).toEqual({ available: 0n, reserved: toppedAmount });

    expect((await act(batch!.payoutId, 'cancel')).status).toBe(200);
    expect(await balances(id, 'usdt')).toEqual({ available: toppedAmount, reserved: 0n });
    await expectLedgerClean();
  });
});

describe('the payout run checks the stored wallet for its network', () => {
  it('a channel wallet edited by hand in SQL to an invalid address: the payout goes to review before any exchange', async ({
    db,
    start,
    channel,
    logs,
    getPayout,
    payoutOfNewPayment,
    reaches,
    act,
    balances,
    expectNothingSent,
  }) => {
    await start();
    const id = await channel(instantBody('usdt', 'trx', TRON_WALLET));
    await db.pool.query('update channels set wallet_address = $1 where channel_id = $2', [TRON_WALLET_BAD, id]);
    const opened = await payoutOfNewPayment(id);
    const review = await reaches(opened.payoutId, 'needs_review');
    expect(review.walletAddress).toBe(TRON_WALLET_BAD);
    expect(review.reason).toBe(
      `wallet address "${TRON_WALLET_BAD}" is not a valid tron address for usdt on trx: base58check checksum does not match; nothing was sent (cancel it to return its funds to the channel, and fix the channel's wallet)`,
    );
    await expectNothingSent(review.payoutId);
    await eventually('the alert logged', async () =>
      logs.lines.some((l) => l.alert === 'payout_address_invalid' && l.payoutId === review.payoutId),
    );

    // Retrying changes nothing while the address is bad: back in review, still nothing asked of ChangeNow.
    expect((await act(review.payoutId, 'retry')).status).toBe(200);
    await eventually(
      'back in review',
      async () =>
        logs.lines.filter((l) => l.alert === 'payout_address_invalid' && l.payoutId === review.payoutId).length === 2,
    );
    expect(await getPayout(review.payoutId)).toMatchObject({ status: 'needs_review', reason: review.reason });
    await expectNothingSent(review.payoutId);
    expect((await act(review.payoutId, 'cancel')).status).toBe(200);
    expect(await balances(id, 'eth')).toEqual({ available: NET_WEI, reserved: 0n });
  });

  it('a held payout whose own wallet was edited by hand goes to review on retry, before its hold or any transfer', async ({
    db,
    start,
    walletChanged,
    payoutOfNewPayment,
    reaches,
    act,
    balances,
    transfersOf,
  }) => {
    await start({ WALLET_CHANGE_HOLD: '1h' });
    const { id } = await walletChanged('eth', 'eth');
    const held = await reaches((await payoutOfNewPayment(id)).payoutId, 'held');
    await db.pool.query('update payouts set wallet_address = $1 where payout_id = $2', [
      '0x0000000000000000000000000000000000000000',
      held.payoutId,
    ]);

    expect((await act(held.payoutId, 'retry')).status).toBe(200);
    const review = await reaches(held.payoutId, 'needs_review');
    expect(review.reason).toContain('is not a valid evm address for eth on eth: zero address would burn the funds');
    expect(await transfersOf(held.payoutId)).toEqual([]);
    expect(await balances(id, 'eth')).toEqual({ available: 0n, reserved: NET_WEI });
  });
});
