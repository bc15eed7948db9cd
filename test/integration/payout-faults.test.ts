/**
 * Payout failures end to end on real parts (PostgreSQL, anvil, the ChangeNow simulator over HTTP): each one ends in
 * its documented state with its alert, and no money is lost or paid twice — at most one exchange and one transfer per
 * payout, on chain and in the ledger.
 */
import { describe, expect } from 'vitest';
import { formatUnits } from '../../src/money/index.ts';
import { DEFAULT_PAIRS, rpc } from '../../src/simulators/index.ts';
import { worldFirst } from '../support/fixtures.ts';
import { eventually } from '../support/outside.ts';
import { logSink } from '../support/payrail.ts';
import { distinct, type PayoutRow } from '../support/payout-state.ts';
import {
  ETH_RESERVED,
  ETH_SETTLED,
  ethBalances,
  NET_WEI,
  payoutStepsTest,
  USDT_SETTLED,
  usdtBalances,
} from '../support/payout-steps.ts';
import { freshWallet, TRON_WALLET, tronThreshold } from '../support/payouts.ts';
import { freePort } from '../support/ports.ts';

// A valid Dogecoin P2PKH address (see test/unit/address.test.ts); the simulator has no pair for doge.
const DOGE_WALLET = 'DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L';

// Each test below lists the fixtures it uses (vitest sets up only those) and ends on its channel's balances and the
// ledger check, so those lists and endings repeat from test to test.
const it = worldFirst(
  payoutStepsTest({ env: { CONVERSION_MIN_USD: '1' }, firstPaymentId: 9_200_000_000, firstChannel: 1_003_200_000_001 })
    .extend('usdtOfPayments', ({ db }) => async (payoutId: string): Promise<bigint> => {
      const { rows } = await db.pool.query<{ total: string | null }>(
        'select sum(usdt_amount)::text as total from payments where payout_id = $1',
        [payoutId],
      );
      return BigInt(rows[0]?.total ?? '0');
    })
    /** The payout's one exchange at ChangeNow, expecting it to match `shown`. */
    .extend('onlyExchange', ({ exchangesFor }) => (payoutId: string, shown: Record<string, unknown> = {}) => {
      const exchanges = exchangesFor(payoutId);
      expect(exchanges).toHaveLength(1);
      expect(exchanges[0]).toMatchObject(shown);
      return exchanges[0]!;
    })
    /** Statements of this database waiting for a lock on payouts rows (a test holds one to order a race). */
    .extend('waitingOnPayouts', ({ db }) => async (): Promise<number> => {
      const { rows } = await db.pool.query<{ n: number }>(
        `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query ilike '%"payouts"%'`,
      );
      return rows[0]!.n;
    })
    /** The USDT a payment converted to, and the payout it is part of (if any). */
    .extend(
      'paymentUsdt',
      ({ db }) =>
        async (paymentId: string): Promise<{ usdt: bigint; payoutId: string | null }> => {
          const { rows } = await db.pool.query<{ usdt_amount: string; payout_id: string | null }>(
            'select usdt_amount::text, payout_id from payments where payment_id = $1',
            [paymentId],
          );
          return { usdt: BigInt(rows[0]!.usdt_amount), payoutId: rows[0]!.payout_id };
        },
    )
    /**
     * Orders a race on a payout's row: while a transaction of the test holds the row, `first` starts and queues on it,
     * then `second` behind it; the row is let go once both wait, and they go on in that order. Returns what each gave.
     */
    .extend(
      'queuedOnPayout',
      ({ db, waitingOnPayouts }) =>
        async <A, B>(
          payoutId: string,
          [firstWaiting, first]: [string, () => Promise<A>],
          [secondWaiting, second]: [string, () => Promise<B>],
        ): Promise<[A, B]> => {
          const blocker = await db.pool.connect();
          let started: Promise<A> | undefined;
          let secondGave: B;
          try {
            await blocker.query('begin');
            await blocker.query('select 1 from payouts where payout_id = $1 for update', [payoutId]);
            started = first();
            // Awaited once the row is let go; until then its failure must not count as unhandled.
            started.catch(() => undefined);
            await eventually(firstWaiting, async () => (await waitingOnPayouts()) === 1);
            secondGave = await second();
            await eventually(secondWaiting, async () => (await waitingOnPayouts()) === 2);
          } finally {
            await blocker.query('rollback');
            blocker.release();
          }
          return [await started, secondGave];
        },
    )
    /** Converts two payments of a new threshold channel (20 USD, USDT on trx) into a batch held below the minimum. */
    .extend(
      'heldBatch',
      ({ outside, channel, pay, conversionsDone, hasPayout, onlyPayout }) =>
        async (): Promise<{ id: string; held: PayoutRow; paymentIds: string[] }> => {
          outside.sim.setPair('usdt/eth->usdt/trx', { rate: '1', withdrawalFee: '1', minAmount: '100' });
          const id = await channel(tronThreshold('20'));
          const paymentIds = [await pay(id), await pay(id)];
          await eventually('both payments converted', () => conversionsDone(paymentIds));
          await eventually('the batch held', () => hasPayout(id, 'held'));
          return { id, held: await onlyPayout(id), paymentIds };
        },
    ),
);

describe('exchange endings', () => {
  it('a failed exchange sends the payout to review; the funds stay reserved', async ({
    outside,
    start,
    onlyExchange,
    transfersFor,
    balances,
    journalKinds,
    expectLedgerClean,
    expectOnlyAlert,
    failedExchangeInReview,
  }) => {
    await start();
    const { id, review: payout } = await failedExchangeInReview();
    expect(payout).toMatchObject({
      kind: 'instant',
      status: 'needs_review',
      reason: 'exchange failed; the funds sent have not come back',
      asset: 'eth',
      amount: NET_WEI.toString(),
    });
    expectOnlyAlert(payout.payout_id, 'payout_exchange_failed');
    onlyExchange(payout.payout_id, { id: payout.exchange_id, status: 'failed' });
    expect(await transfersFor(payout.payout_id)).toMatchObject([{ status: 'confirmed', amount: NET_WEI.toString() }]);
    // The ETH went to the exchange and stayed there: nothing came back, nothing was sent twice.
    expect(await outside.balanceOf(payout.payin_address!)).toBe(NET_WEI);
    expect(await balances(id)).toEqual(ETH_RESERVED);
    expect(await journalKinds(payout.payout_id)).toEqual(['payout_reserved']);
    await expectLedgerClean();
  });

  it('a refunded instant exchange: the refund arrives on chain, the payout fails and the ETH is back on the channel', async ({
    outside,
    db,
    start,
    onlyExchange,
    transfersFor,
    balances,
    journalKinds,
    expectLedgerClean,
    expectOnlyAlert,
    exchangeEnded,
  }) => {
    await start();
    const { id, paymentId, payout } = await exchangeEnded('refunded', 'failed');
    const exchange = onlyExchange(payout.payout_id, {
      id: payout.exchange_id,
      status: 'refunded',
      refundAddress: outside.hostAddress,
    });
    expect(payout).toMatchObject({
      status: 'failed',
      reason: `exchange refunded (refund ${exchange.refundHash}); 0.0047239 ETH back on the channel's balance`,
    });
    expectOnlyAlert(payout.payout_id, 'payout_refunded');
    expect(await transfersFor(payout.payout_id)).toMatchObject([{ status: 'confirmed', amount: NET_WEI.toString() }]);
    // On chain: the payin address got the ETH once, and the refund brought exactly that back to the host wallet.
    expect(await outside.balanceOf(exchange.payinAddress)).toBe(NET_WEI);
    const refund = (await rpc(outside.chain.rpcUrl, 'eth_getTransactionByHash', [exchange.refundHash])) as {
      to: string;
      value: string;
    };
    expect(refund.to.toLowerCase()).toBe(outside.hostAddress.toLowerCase());
    expect(BigInt(refund.value)).toBe(NET_WEI);
    // The reservation went back to the channel's available balance.
    expect(await balances(id)).toEqual(ethBalances({ available: NET_WEI }));
    expect(await journalKinds(payout.payout_id)).toEqual(['payout_reserved', 'payout_returned']);
    const { rows } = await db.pool.query('select payout_id from payments where payment_id = $1', [paymentId]);
    expect(rows).toEqual([{ payout_id: payout.payout_id }]);
    await expectLedgerClean();
  });

  it("a refund 1 % short (within CHANGENOW_REFUND_TOLERANCE): the payout fails, what came back is on the channel, the rest is ChangeNow's cost", async ({
    db,
    start,
    balances,
    expectLedgerClean,
    exchangeEnded,
  }) => {
    await start();
    const { id, payout, exchange } = await exchangeEnded('refunded_short', 'failed');
    const back = NET_WEI - NET_WEI / 100n;
    expect(payout.reason).toBe(
      `exchange refunded (refund ${exchange!.refundHash}); ${formatUnits(back, 18)} ETH back on the channel's balance; ${formatUnits(NET_WEI / 100n, 18)} ETH short, booked as ChangeNow's cost`,
    );
    expect(await balances(id)).toEqual(ethBalances({ available: back }));
    const { rows } = await db.pool.query<{ code: string; amount: string }>(
      "select a.code, e.amount::text from ledger_entries e join ledger_journals j on j.id = e.journal_id join ledger_accounts a on a.id = e.account_id where j.kind = 'payout_returned' and j.ref = $1 order by a.code",
      [payout.payout_id],
    );
    expect(rows).toEqual([
      { code: `channel:${id}`, amount: back.toString() },
      { code: `channel:${id}:payout`, amount: (-NET_WEI).toString() },
      { code: 'world:changenow', amount: (NET_WEI / 100n).toString() },
    ]);
    await expectLedgerClean();
  });

  it('a refund short by more than CHANGENOW_REFUND_TOLERANCE goes to review', async ({
    app,
    start,
    balances,
    expectLedgerClean,
    exchangeEnded,
  }) => {
    await start({ CHANGENOW_REFUND_TOLERANCE: '0.5' });
    const { id, payout, exchange } = await exchangeEnded('refunded_short', 'needs_review');
    const back = NET_WEI - NET_WEI / 100n;
    expect(payout.reason).toBe(
      `exchange refunded ${formatUnits(back, 18)} ETH of 0.0047239 ETH (refund ${exchange!.refundHash}), short by more than CHANGENOW_REFUND_TOLERANCE`,
    );
    // A person resolves it with what came back: the ledger then matches the chain again.
    // The refund ChangeNow recorded is the evidence: the amount is what that transaction brought.
    const resolved = await app.payrail.request('POST', `/api/payouts/${payout.payout_id}/resolve`, {
      body: { outcome: 'returned', amount: formatUnits(back, 18), txHash: exchange!.refundHash },
    });
    expect(resolved.status).toBe(200);
    expect(await balances(id)).toEqual(ethBalances({ available: back }));
    await expectLedgerClean();
  });

  it('a refunded threshold batch: the USDT comes back, the payout fails, its payments are free for the next batch', async ({
    outside,
    db,
    start,
    logs,
    payoutsOf,
    hasPayout,
    payoutIn,
    onlyExchange,
    transfersFor,
    balances,
    journalKinds,
    expectLedgerClean,
    payoutLinks,
    expectOnlyAlert,
    usdtOfPayments,
    expectExchangedOnce,
    convertedThresholdChannel,
    lowerThreshold,
  }) => {
    await start();
    // A threshold out of reach while the payments convert, so no batch exchange is created before the fault is set.
    const { id, paymentIds, available } = await convertedThresholdChannel(2);
    expect(available).toBeGreaterThan(20_000_000n);
    const hostUsdtBefore = await outside.usdtBalanceOf(outside.hostAddress);

    outside.sim.failNextExchange('refunded');
    await lowerThreshold(id);
    const payout = await payoutIn(id, 'failed');
    expect(payout).toMatchObject({ kind: 'threshold', asset: 'usdt', amount: available.toString(), status: 'failed' });
    const exchange = onlyExchange(payout.payout_id, {
      id: payout.exchange_id,
      status: 'refunded',
      fromCurrency: 'usdt',
      toNetwork: 'trx',
    });
    expect(payout.reason).toBe(
      `exchange refunded (refund ${exchange.refundHash}); ${formatUnits(available, 6)} USDT back on the channel's balance`,
    );
    expectOnlyAlert(payout.payout_id, 'payout_refunded');
    expect(await transfersFor(payout.payout_id)).toMatchObject([{ status: 'confirmed', amount: available.toString() }]);
    // On chain: the payin address holds the batch; the host wallet got all of it back.
    expect(await outside.usdtBalanceOf(exchange.payinAddress)).toBe(available);
    expect(await outside.usdtBalanceOf(outside.hostAddress)).toBe(hostUsdtBefore);
    expect(await balances(id)).toEqual(usdtBalances({ available }));
    expect(await journalKinds(payout.payout_id)).toEqual(['payout_reserved', 'payout_returned']);
    expect(await payoutLinks(paymentIds)).toEqual([{ payout_id: null }, { payout_id: null }]);
    // Nothing else may come to batch that USDT again: the channel's threshold check is queued, a minute out for the
    // first batch in a row to fail (doubling for each further one), so the money is never stranded.
    const check = await db.pool.query<{ due_in_s: number }>(
      'select extract(epoch from run_at - now())::int as due_in_s from graphile_worker.jobs where key = $1',
      [`threshold_check:${id}`],
    );
    expect(check.rows).toHaveLength(1);
    expect(check.rows[0]!.due_in_s).toBeGreaterThan(30);
    expect(check.rows[0]!.due_in_s).toBeLessThanOrEqual(60);
    await expectLedgerClean();

    // Nothing was lost: the next threshold check batches the same USDT and the same payments, and it goes out.
    await lowerThreshold(id);
    await eventually('the second batch completed', () => hasPayout(id, 'completed'));
    const second = (await payoutsOf(id))[1] as PayoutRow;
    expect(second).toMatchObject({ status: 'completed', amount: available.toString() });
    expect(await usdtOfPayments(second.payout_id)).toBe(available);
    await expectExchangedOnce(second.payout_id);
    expect(await balances(id)).toEqual(USDT_SETTLED);
    expect(distinct(logs.alerts())).toEqual(['payout_refunded']);
    await expectLedgerClean();
  });
});

describe('refusals and held batches', () => {
  it("below ChangeNow's minimum: the batch is held without an exchange; the next settlement tops it up and it completes", async ({
    outside,
    start,
    pay,
    logs,
    payoutIn,
    onlyExchange,
    transfersFor,
    balances,
    journalKinds,
    usdtOfPayments,
    paymentUsdt,
    heldBatch,
    expectNothingSent,
    expectEndedQuietly,
  }) => {
    await start();
    const { id, held } = await heldBatch();
    expect(held).toMatchObject({ kind: 'threshold', status: 'held', top_ups: 0, exchange_id: null, transfer_id: null });
    expect(held.reason).toMatch(/^below ChangeNow's minimum for usdt → usdt\/trx: .*minimal: 100\)$/);
    expect(held.hold_until!.getTime()).toBeGreaterThan(Date.now());
    const heldAmount = BigInt(held.amount);
    expect(heldAmount).toBe(await usdtOfPayments(held.payout_id));
    await expectNothingSent(held.payout_id);
    expect(await balances(id)).toEqual(usdtBalances({ reserved: heldAmount }));
    expect(logs.lines.some((l) => l.event === 'payout_held' && l.payoutId === held.payout_id)).toBe(true);

    outside.sim.setPair('usdt/eth->usdt/trx', DEFAULT_PAIRS['usdt/eth->usdt/trx']!);
    const more = await pay(id);
    const done = await payoutIn(id, 'completed');
    const added = await paymentUsdt(more);
    const addedUnits = added.usdt;
    expect(added.payoutId).toBe(held.payout_id);
    expect(done).toMatchObject({
      payout_id: held.payout_id,
      status: 'completed',
      top_ups: 1,
      amount: (heldAmount + addedUnits).toString(),
      reason: null,
    });
    expect(await usdtOfPayments(done.payout_id)).toBe(heldAmount + addedUnits);
    const exchange = onlyExchange(done.payout_id, {
      status: 'finished',
      expectedAmountFrom: formatUnits(heldAmount + addedUnits, 6),
      payoutAddress: TRON_WALLET,
    });
    expect(await transfersFor(done.payout_id)).toMatchObject([
      { status: 'confirmed', amount: (heldAmount + addedUnits).toString() },
    ]);
    expect(await outside.usdtBalanceOf(exchange.payinAddress)).toBe(heldAmount + addedUnits);
    expect(await journalKinds(done.payout_id)).toEqual(['payout_reserved', 'payout_topped_up', 'payout_completed']);
    // Held is a wait for more funds, not a fault: nothing to alert on.
    await expectEndedQuietly(id, USDT_SETTLED, logs);
  });

  it('a top-up racing the held batch being resumed never changes the amount of a payout already on its way', async ({
    outside,
    db,
    start,
    pay,
    logs,
    payoutIn,
    onlyExchange,
    transfersFor,
    journalKinds,
    conversionsDone,
    usdtOfPayments,
    paymentUsdt,
    queuedOnPayout,
    heldBatch,
    expectEndedQuietly,
    runAgain,
  }) => {
    await start();
    const { id, held } = await heldBatch();
    const heldAmount = BigInt(held.amount);
    outside.sim.setPair('usdt/eth->usdt/trx', DEFAULT_PAIRS['usdt/eth->usdt/trx']!);
    // Its hold has ended: the batch's next run resumes it.
    await db.pool.query("update payouts set hold_until = now() - interval '1 second' where payout_id = $1", [
      held.payout_id,
    ]);

    // Order the race: the run resumes the batch first, the settlement that would top it up waits behind it.
    const [, more] = await queuedOnPayout(
      held.payout_id,
      ['the run waiting to resume the batch', () => runAgain(held.payout_id)],
      ['the settlement waiting behind it', () => pay(id)],
    );
    await eventually('the new payment converted', () => conversionsDone([more]));
    const done = await payoutIn(id, 'completed');
    const added = await paymentUsdt(more);
    const addedUnits = added.usdt;
    // What the payout says it paid is what its exchange expected and its transfer sent, and it is what its payments hold.
    const exchange = onlyExchange(done.payout_id);
    const transfers = await transfersFor(done.payout_id);
    expect(transfers).toMatchObject([{ status: 'confirmed' }]);
    expect(transfers[0]!.amount).toBe(done.amount);
    expect(exchange.expectedAmountFrom).toBe(formatUnits(BigInt(done.amount), 6));
    expect(await outside.usdtBalanceOf(exchange.payinAddress)).toBe(BigInt(done.amount));
    expect(await usdtOfPayments(done.payout_id)).toBe(BigInt(done.amount));
    // The run resumed the batch first: it left with what it held, and the new USDT waits on the channel.
    expect(done).toMatchObject({ status: 'completed', top_ups: 0, amount: heldAmount.toString() });
    expect(added.payoutId).toBeNull();
    expect(await journalKinds(done.payout_id)).toEqual(['payout_reserved', 'payout_completed']);
    await expectEndedQuietly(id, usdtBalances({ available: addedUnits }), logs);
  });

  it('a top-up racing a person cancelling the held batch never brings the cancelled payout back', async ({
    app,
    outside,
    db,
    start,
    pay,
    onlyPayout,
    balances,
    journalKinds,
    expectLedgerClean,
    conversionsDone,
    queuedOnPayout,
    heldBatch,
    expectNothingSent,
  }) => {
    await start();
    const { id, held, paymentIds } = await heldBatch();
    const heldAmount = BigInt(held.amount);
    outside.sim.setPair('usdt/eth->usdt/trx', DEFAULT_PAIRS['usdt/eth->usdt/trx']!);

    // The cancel takes the batch's row first, the settlement that would top it up waits behind it.
    const [cancelled, more] = await queuedOnPayout(
      held.payout_id,
      ['the cancel waiting on the batch', () => app.payrail.request('POST', `/api/payouts/${held.payout_id}/cancel`)],
      ['the settlement waiting behind it', () => pay(id)],
    );
    expect(cancelled.status).toBe(200);
    await eventually('the new payment converted', () => conversionsDone([more]));

    const payout = await onlyPayout(id);
    expect(payout).toMatchObject({
      payout_id: held.payout_id,
      status: 'cancelled',
      reason: 'cancelled by admin',
      amount: heldAmount.toString(),
      top_ups: 0,
      exchange_id: null,
    });
    await expectNothingSent(payout.payout_id);
    // Everything the channel earned is back on its balance, once: the held batch's USDT and the new payment's.
    const { rows } = await db.pool.query<{ payout_id: string | null; usdt_amount: string }>(
      'select payout_id, usdt_amount::text from payments where payment_id = any($1::numeric[])',
      [[...paymentIds, more]],
    );
    expect(rows.map((r) => r.payout_id)).toEqual([null, null, null]);
    const earned = rows.reduce((sum, r) => sum + BigInt(r.usdt_amount), 0n);
    expect(await balances(id)).toEqual(usdtBalances({ available: earned }));
    expect(await journalKinds(payout.payout_id)).toEqual(['payout_reserved', 'payout_returned']);
    await expectLedgerClean();
  });

  it('a pair ChangeNow does not offer sends the payout to review with an alert; no exchange is created', async ({
    outside,
    start,
    paidInstant,
    payoutIn,
    balances,
    expectLedgerClean,
    expectOnlyAlert,
    expectNothingSent,
  }) => {
    await start();
    const id = await paidInstant('doge', 'doge', DOGE_WALLET);
    const payout = await payoutIn(id, 'needs_review');
    expect(payout).toMatchObject({
      status: 'needs_review',
      reason:
        'ChangeNow refused the payout (pair_is_inactive): ChangeNow estimate: HTTP 400 (pair_is_inactive: Pair is inactive)',
      attempts: 0,
      exchange_id: null,
    });
    expectOnlyAlert(payout.payout_id, 'changenow_permanent_error');
    await expectNothingSent(payout.payout_id);
    expect([...outside.sim.exchanges.values()].filter((e) => e.payoutAddress === DOGE_WALLET)).toHaveLength(0);
    expect(await balances(id)).toEqual(ETH_RESERVED);
    await expectLedgerClean();
  });
});

describe('outages', () => {
  it('a host wallet short of ETH: no broadcast, an alert, the payout waits; funded again it completes with one transfer', async ({
    app,
    outside,
    start,
    logs,
    instant,
    payWithHostDrained,
    onlyPayout,
    payoutIn,
    exchangesFor,
    transfersFor,
    balances,
    expectLedgerClean,
    hostNonce,
  }) => {
    await start();
    const wallet = freshWallet();
    const id = await instant('eth', 'eth', wallet);
    const nonceBefore = await hostNonce();
    await payWithHostDrained(id);

    const waiting = await onlyPayout(id);
    expect(waiting).toMatchObject({ status: 'sent', exchange_id: null });
    expect(await transfersFor(waiting.payout_id)).toMatchObject([
      { transfer_id: waiting.transfer_id, status: 'intent', tx_hash: null, nonce: null },
    ]);
    expect(await hostNonce()).toBe(nonceBefore);
    expect(await outside.balanceOf(wallet)).toBe(0n);
    expect(await balances(id)).toEqual(ETH_RESERVED);

    await app.refillHost();
    const done = await payoutIn(id, 'completed');
    expect(done).toMatchObject({ payout_id: waiting.payout_id, status: 'completed', amount_out: '0.0047239' });
    expect(await transfersFor(done.payout_id)).toMatchObject([
      { transfer_id: waiting.transfer_id, status: 'confirmed' },
    ]);
    expect(exchangesFor(done.payout_id)).toHaveLength(0);
    expect(await hostNonce()).toBe(nonceBefore + 1);
    expect(await outside.balanceOf(wallet)).toBe(NET_WEI);
    expect(await balances(id)).toEqual(ETH_SETTLED);
    expect(distinct(logs.alerts())).toEqual(['host_wallet_insufficient']);
    await expectLedgerClean();
  });

  it('the chain unreachable: the exchange waits unpaid and nothing is broadcast; with the chain back it completes once', async ({
    app,
    outside,
    db,
    pay,
    instant,
    payoutsOf,
    onlyPayout,
    payoutIn,
    onlyExchange,
    transfersFor,
    hostNonce,
    startLogged,
    expectExchangedOnce,
    expectEndedQuietly,
  }) => {
    const downLogs = await startLogged({ ETH_RPC_URL: `http://127.0.0.1:${await freePort()}` });
    const id = await instant('usdt', 'trx', TRON_WALLET);
    const nonceBefore = await hostNonce();
    await pay(id);
    await eventually('a failed send recorded', async () => {
      const [payout] = await payoutsOf(id);
      if (!payout?.transfer_id) return false;
      const { rows } = await db.pool.query<{ attempts: number; last_error: string | null }>(
        'select attempts, last_error from graphile_worker.jobs where key = $1',
        [`transfer_send:${payout.transfer_id}`],
      );
      return (rows[0]?.attempts ?? 0) >= 1 && rows[0]?.last_error != null;
    });
    await app.stop();

    const stuck = await onlyPayout(id);
    expect(stuck.status).toBe('exchange_created');
    expect(await transfersFor(stuck.payout_id)).toMatchObject([
      { transfer_id: stuck.transfer_id, status: 'intent', tx_hash: null },
    ]);
    onlyExchange(stuck.payout_id, { id: stuck.exchange_id, status: 'waiting' });
    expect(await outside.balanceOf(stuck.payin_address!)).toBe(0n);
    expect(await hostNonce()).toBe(nonceBefore);
    expect(distinct(downLogs.alerts())).toEqual(['rpc_unreachable']);

    const upLogs = await startLogged();
    const done = await payoutIn(id, 'completed', 60_000);
    expect(done).toMatchObject({ payout_id: stuck.payout_id, exchange_id: stuck.exchange_id, amount_out: '13.1717' });
    await expectExchangedOnce(done.payout_id, { transfer_id: stuck.transfer_id });
    expect(await outside.balanceOf(stuck.payin_address!)).toBe(NET_WEI);
    expect(await hostNonce()).toBe(nonceBefore + 1);
    await expectEndedQuietly(id, ETH_SETTLED, upLogs);
  });

  it('ChangeNow down: attempts are counted, the payout waits, and once ChangeNow is back it completes with one exchange', async ({
    outside,
    start,
    pay,
    logs,
    instant,
    payoutsOf,
    onlyPayout,
    payoutIn,
    balances,
    expectNothingSent,
    expectExchangedOnce,
    onlyExchange,
    expectEndedQuietly,
  }) => {
    await start();
    const id = await instant('usdt', 'trx', TRON_WALLET);
    await outside.sim.setFault('down');
    await pay(id);
    await eventually('a failed attempt recorded', async () => ((await payoutsOf(id))[0]?.attempts ?? 0) >= 1);

    const waiting = await onlyPayout(id);
    expect(waiting.status).toBe('pending');
    expect(waiting.last_error).toMatch(/^ChangeNow estimate: /);
    await expectNothingSent(waiting.payout_id);
    expect(logs.lines.some((l) => l.event === 'payout_attempt_failed' && l.payoutId === waiting.payout_id)).toBe(true);
    expect(await balances(id)).toEqual(ETH_RESERVED);

    await outside.sim.setFault('none');
    const done = await payoutIn(id, 'completed', 60_000);
    expect(done).toMatchObject({
      payout_id: waiting.payout_id,
      status: 'completed',
      amount_out: '13.1717',
      last_error: null,
    });
    expect(done.attempts).toBeGreaterThanOrEqual(1);
    await expectExchangedOnce(done.payout_id, { amount: NET_WEI.toString() });
    const exchange = onlyExchange(done.payout_id, { id: done.exchange_id, status: 'finished' });
    expect(await outside.balanceOf(exchange.payinAddress)).toBe(NET_WEI);
    await expectEndedQuietly(id, ETH_SETTLED, logs);
  });

  it('ChangeNow down while the exchange is followed: the payout keeps polling, sent, and completes once ChangeNow is back', async ({
    app,
    outside,
    start,
    logs,
    instant,
    payWithHostDrained,
    onlyPayout,
    payoutIn,
    transfersFor,
    balances,
    expectLedgerClean,
    untilPollsFail,
    expectExchangedOnce,
  }) => {
    await start();
    const id = await instant('usdt', 'trx', TRON_WALLET);
    // Hold the payin transfer back (host wallet empty) until ChangeNow is down, so the outage falls on the polling.
    await payWithHostDrained(id, 'exchange_created');
    await outside.sim.setFault('down');
    await app.refillHost();
    await untilPollsFail('polls failing while ChangeNow is down', id);

    const polling = await onlyPayout(id);
    expect(polling).toMatchObject({ status: 'sent', attempts: 0 });
    expect(await transfersFor(polling.payout_id)).toMatchObject([{ status: 'confirmed', amount: NET_WEI.toString() }]);
    expect(await outside.balanceOf(polling.payin_address!)).toBe(NET_WEI);
    expect(await balances(id)).toEqual(ETH_RESERVED);

    await outside.sim.setFault('none');
    const done = await payoutIn(id, 'completed');
    expect(done).toMatchObject({
      payout_id: polling.payout_id,
      exchange_id: polling.exchange_id,
      amount_out: '13.1717',
    });
    await expectExchangedOnce(done.payout_id);
    expect(await outside.balanceOf(done.payin_address!)).toBe(NET_WEI);
    expect(await balances(id)).toEqual(ETH_SETTLED);
    expect(distinct(logs.alerts())).toEqual(['host_wallet_insufficient']);
    await expectLedgerClean();
  });

  it('ChangeNow failing past PAYOUT_MAX_ATTEMPTS: the payout goes to review with an alert and stops retrying; a retry completes it', async ({
    app,
    outside,
    db,
    start,
    pay,
    instant,
    payoutIn,
    balances,
    expectLedgerClean,
    expectOnlyAlert,
    expectNothingSent,
    expectExchangedOnce,
  }) => {
    await start({ PAYOUT_MAX_ATTEMPTS: '2' });
    const id = await instant('usdt', 'trx', TRON_WALLET);
    await outside.sim.setFault('5xx');
    const paymentId = await pay(id);
    const payout = await payoutIn(id, 'needs_review', 30_000);
    expect(payout).toMatchObject({ status: 'needs_review', attempts: 2, exchange_id: null, transfer_id: null });
    expect(payout.reason).toMatch(/^gave up after 2 failed attempts: ChangeNow estimate: HTTP 503/);
    expectOnlyAlert(payout.payout_id, 'payout_attempts_exhausted');
    await expectNothingSent(payout.payout_id);
    expect(await balances(id)).toEqual(ETH_RESERVED);
    // Nothing keeps retrying behind the review.
    const { rows: jobs } = await db.pool.query(
      "select t.identifier from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id where j.payload->>'paymentId' = $1 or j.payload->>'payoutId' = $2",
      [paymentId, payout.payout_id],
    );
    expect(jobs).toEqual([]);
    await expectLedgerClean();

    // A person retries once ChangeNow is back: one exchange, one transfer, completed.
    await outside.sim.setFault('none');
    const retried = await app.payrail.request('POST', `/api/payouts/${payout.payout_id}/retry`);
    expect(retried.status).toBe(200);
    const done = await payoutIn(id, 'completed');
    expect(done).toMatchObject({ payout_id: payout.payout_id, amount_out: '13.1717' });
    await expectExchangedOnce(done.payout_id);
    expect(await balances(id)).toEqual(ETH_SETTLED);
    await expectLedgerClean();
  });
});

describe('two workers', () => {
  it('racing on the same payouts: every payout completes with exactly one exchange and one transfer', async ({
    app,
    outside,
    db,
    start,
    pay,
    instant,
    payoutsOf,
    onlyPayout,
    hasPayout,
    exchangesFor,
    transfersFor,
    balances,
    journalKinds,
    expectLedgerClean,
    hostNonce,
    runAgain,
  }) => {
    const logsA = logSink();
    const logsB = logSink();
    await start({}, { logs: logsA });
    await app.startAnother({}, { logs: logsB });
    const nonceBefore = await hostNonce();
    const channels: Array<{ id: string; wallet: string; direct: boolean; onEth: boolean }> = [];
    for (let i = 0; i < 3; i++) {
      channels.push({
        id: await instant('usdt', 'trx', TRON_WALLET),
        wallet: TRON_WALLET,
        direct: false,
        onEth: false,
      });
    }
    for (let i = 0; i < 2; i++) {
      const wallet = freshWallet();
      channels.push({
        id: await instant('eth', 'eth', wallet),
        wallet,
        direct: true,
        onEth: true,
      });
    }
    const usdtWallet = freshWallet();
    channels.push({
      id: await instant('usdt', 'eth', usdtWallet),
      wallet: usdtWallet,
      direct: false,
      onEth: true,
    });

    // Every payment's payout job delivered three times (the extra copies without a job key), to both workers.
    for (const c of channels) {
      const paymentId = await pay(c.id);
      for (let copy = 0; copy < 2; copy++) {
        await db.pool.query(
          "select graphile_worker.add_job('payout_instant', json_build_object('paymentId', $1::text), max_attempts => 25)",
          [paymentId],
        );
      }
    }
    // And each payout's run twice more, whatever state it has reached by then.
    await eventually('every payout opened', async () =>
      (await Promise.all(channels.map((c) => payoutsOf(c.id)))).every((rows) => rows.length > 0),
    );
    for (const c of channels) {
      const [payout] = await payoutsOf(c.id);
      for (let copy = 0; copy < 2; copy++) await runAgain(payout!.payout_id);
    }
    await eventually(
      'every payout completed',
      async () => (await Promise.all(channels.map((c) => hasPayout(c.id, 'completed')))).every(Boolean),
      60_000,
    );

    for (const c of channels) {
      const payout = await onlyPayout(c.id);
      expect(payout.status).toBe('completed');
      const exchanges = exchangesFor(payout.payout_id);
      expect(exchanges).toHaveLength(c.direct ? 0 : 1);
      const transfers = await transfersFor(payout.payout_id);
      expect(transfers).toMatchObject([{ status: 'confirmed', amount: NET_WEI.toString() }]);
      if (!c.direct) expect(await outside.balanceOf(exchanges[0]!.payinAddress)).toBe(NET_WEI);
      expect(await balances(c.id)).toEqual(ETH_SETTLED);
      expect(await journalKinds(payout.payout_id)).toEqual(['payout_reserved', 'payout_completed']);
    }
    for (const c of channels.filter((x) => x.direct)) expect(await outside.balanceOf(c.wallet)).toBe(NET_WEI);
    expect(await outside.usdtBalanceOf(usdtWallet)).toBe(13_171_700n);
    // One host wallet transaction per payout, no more.
    expect(await hostNonce()).toBe(nonceBefore + channels.length);
    expect([...logsA.alerts(), ...logsB.alerts()]).toEqual([]);
    await expectLedgerClean();
  });
});
