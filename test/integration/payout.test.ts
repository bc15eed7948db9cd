/**
 * Payouts end to end on real parts: IPNs over HTTP → (conversion →) payout → ChangeNow simulator over HTTP → host
 * wallet transfer on anvil → owner's wallet, checked on chain where the simulator pays out on the local chain, and
 * in the ledger.
 */
import { describe, expect } from 'vitest';
import { parseUnits } from '../../src/money/index.ts';
import { worldFirst, worldTest } from '../support/fixtures.ts';
import { eventually } from '../support/outside.ts';
import { expectLedgerCleanOn, instantOn } from '../support/payout-state.ts';
import { NET_WEI } from '../support/payout-steps.ts';
import { freshWallet, TRON_WALLET } from '../support/payouts.ts';

type Payout = Record<string, any>;

// Each test below lists the fixtures it uses (vitest sets up only those), so those lists repeat from test to test.
const it = worldFirst(
  worldTest({
    env: { CONVERSION_MIN_USD: '1' },
    firstPaymentId: 9_100_000_000,
    firstChannel: 1_003_100_000_001,
  })
    .extend(
      'payoutsOf',
      ({ app }) =>
        async (channelId: string) =>
          (await app.payrail.request('GET', `/api/payouts?channelId=${channelId}`)).body.payouts as Payout[],
    )
    .extend(
      'settled',
      ({ payoutsOf }) =>
        async (channelId: string, status = 'completed') =>
          (await payoutsOf(channelId)).some((p) => p.status === status),
    )
    .extend('instant', ({ channel }) => instantOn(channel))
    /** Pays the channel `payments` times and waits for its first payout to complete; returns it and the last payment. */
    .extend(
      'paidUntilCompleted',
      ({ pay, payoutsOf, settled }) =>
        async (channelId: string, what: string, payments = 1, timeoutMs?: number) => {
          let paymentId = '';
          for (let i = 0; i < payments; i++) paymentId = await pay(channelId);
          await eventually(what, () => settled(channelId), timeoutMs);
          const [payout] = await payoutsOf(channelId);
          return { payout: payout!, paymentId };
        },
    )
    /** Pays a new instant channel (to a fresh wallet) once and waits for its payout to complete; returns the wallet too. */
    .extend(
      'completedInstant',
      ({ instant, paidUntilCompleted }) =>
        async (payoutCurrency: string, payoutNetwork: string) => {
          const wallet = freshWallet();
          const id = await instant(payoutCurrency, payoutNetwork, wallet);
          return { wallet, ...(await paidUntilCompleted(id, 'the instant payout completed')) };
        },
    )
    /** The payout of a new threshold channel (20 USD) that two payments filled, once it completed. */
    .extend(
      'completedBatch',
      ({ channel, paidUntilCompleted }) =>
        async (payoutCurrency: string, payoutNetwork: string, walletAddress: string) => {
          const id = await channel({
            payoutStrategy: 'threshold',
            thresholdUsd: '20',
            payoutCurrency,
            payoutNetwork,
            walletAddress,
          });
          return (await paidUntilCompleted(id, 'the batch completed', 2, 60_000)).payout;
        },
    )
    /**
     * The completed batch went out as `payoutCurrency` on `payoutNetwork` through one finished exchange from USDT
     * (matching `exchange` too), whose payin address received exactly the batch; returns that exchange.
     */
    .extend(
      'expectBatchExchanged',
      ({ outside }) =>
        async (payout: Payout, payoutCurrency: string, payoutNetwork: string, exchange: Record<string, unknown>) => {
          expect(payout).toMatchObject({
            kind: 'threshold',
            status: 'completed',
            asset: 'usdt',
            payoutCurrency,
            payoutNetwork,
          });
          const exchanged = outside.sim.exchanges.get(payout.exchangeId)!;
          expect(exchanged).toMatchObject({ status: 'finished', fromCurrency: 'usdt', ...exchange });
          expect(await outside.usdtBalanceOf(exchanged.payinAddress)).toBe(parseUnits(payout.amount, 6));
          return exchanged;
        },
    )
    .extend('expectLedgerClean', ({ db }) => expectLedgerCleanOn(db)),
);

describe('instant payouts', () => {
  it('ETH on eth: one direct transfer of the net amount to the owner, no exchange', async ({
    outside,
    start,
    completedInstant,
    expectLedgerClean,
  }) => {
    await start();
    const exchangesBefore = outside.sim.exchanges.size;
    const { wallet, payout, paymentId } = await completedInstant('eth', 'eth');
    expect(payout).toMatchObject({
      kind: 'instant',
      paymentId,
      status: 'completed',
      asset: 'eth',
      amount: '0.0047239',
      amountOut: '0.0047239',
      exchangeId: null,
    });
    expect(payout.payoutHash).toMatch(/^0x[0-9a-f]{64}$/);
    expect(await outside.balanceOf(wallet)).toBe(NET_WEI);
    expect(outside.sim.exchanges.size).toBe(exchangesBefore);
    await expectLedgerClean();
  });

  it('USDT on eth: one exchange ETH → USDT paid to the owner, one transfer to its payin address', async ({
    outside,
    start,
    completedInstant,
    expectLedgerClean,
  }) => {
    await start();
    const { wallet, payout } = await completedInstant('usdt', 'eth');
    // 0.0047239 ETH × 3000 − 1 USDT withdrawal fee
    expect(payout).toMatchObject({ status: 'completed', asset: 'eth', amount: '0.0047239', amountOut: '13.1717' });
    const exchange = outside.sim.exchanges.get(payout.exchangeId)!;
    expect(exchange).toMatchObject({ status: 'finished', userId: payout.payoutId, payoutAddress: wallet });
    expect(await outside.usdtBalanceOf(wallet)).toBe(13_171_700n);
    expect(await outside.balanceOf(exchange.payinAddress)).toBe(NET_WEI);
    await expectLedgerClean();
  });
});

describe('threshold payouts', () => {
  it('ETH on eth: the batch goes through one exchange USDT → ETH, and the owner receives the ETH on chain', async ({
    outside,
    db,
    start,
    completedBatch,
    expectBatchExchanged,
    expectLedgerClean,
  }) => {
    await start();
    const wallet = freshWallet();
    const payout = await completedBatch('eth', 'eth', wallet);
    const exchange = await expectBatchExchanged(payout, 'eth', 'eth', {
      toCurrency: 'eth',
      payoutAddress: wallet,
      userId: payout.payoutId,
    });
    // What ChangeNow reports it paid is what the owner's wallet holds.
    expect(await outside.balanceOf(wallet)).toBe(parseUnits(payout.amountOut, 18));
    expect(payout.payoutHash).toBe(exchange.payoutHash);
    const journals = await db.pool.query('select kind from ledger_journals where ref = $1 order by id', [
      payout.payoutId,
    ]);
    expect(journals.rows.map((r) => r.kind)).toEqual(['payout_reserved', 'payout_completed']);
    await expectLedgerClean();
  });

  it('USDT on trx: the batch goes through one exchange USDT → USDT/TRC-20, paid by one ERC-20 transfer', async ({
    start,
    completedBatch,
    expectBatchExchanged,
    expectLedgerClean,
  }) => {
    await start();
    const payout = await completedBatch('usdt', 'trx', TRON_WALLET);
    // The payin address received exactly the batch, in USDT.
    await expectBatchExchanged(payout, 'usdt', 'trx', {
      toCurrency: 'usdt',
      toNetwork: 'trx',
      payoutAddress: TRON_WALLET,
    });
    await expectLedgerClean();
  });
});
