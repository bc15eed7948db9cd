/**
 * A refund after the credit, on real parts (signed IPNs over HTTP, the ChangeNow simulator, anvil), with the ledger
 * compared to the chain after every step: reverse keeps the ETH NOWPayments forwarded on the platform's books as
 * refunds owed (it is still on the host wallet), `payrail withdrawal --from refunds` books the transaction that sends
 * it back, a payment whose conversion came back short is reversed for what is left of it, a refund whose money was
 * paid out is acknowledged by ignore, and one whose payout failed (its ETH back on the channel) is reversed.
 */
import type { Hex } from 'viem';
import { describe, expect } from 'vitest';
import { createChainWallet } from '../../src/integrations/wallet/index.ts';
import { checkLedger } from '../../src/ledger/index.ts';
import { checkLedgerAgainstChain } from '../../src/treasury/index.ts';
import { exchangesOf, usdtThreshold } from '../support/conversions.ts';
import { worldFirst, worldTest } from '../support/fixtures.ts';
import { ipnBody, signed } from '../support/ipn.ts';
import { eventually } from '../support/outside.ts';
import { instantBody } from '../support/payout-state.ts';
import { IPN_SECRET } from '../support/payrail.ts';
import { cliEnv, payrailCli, payrailCliFailure } from '../support/payrail-cli.ts';
import { freshWallet } from '../support/payouts.ts';
import { mined, walletApp } from '../support/wallet-app.ts';

/** The fixture's finished IPN: 0.00487 ETH forwarded, 3 % fee, the rest the channel's. */
const GROSS_WEI = 4_870_000_000_000_000n;
const FEE_WEI = 146_100_000_000_000n;
const NET_WEI = 4_723_900_000_000_000n;
/** What the simulator's short refund keeps of a conversion of one such payment (1 % of its net). */
const SHORT_WEI = 47_239_000_000_000n;

const shardOf = (paymentId: string) => String(BigInt(paymentId) % 16n).padStart(2, '0');

/**
 * The entries reverse books for one fixture payment: its channel and the fee give back what they were credited, and
 * refunds owed get what the wallet holds for it; what an exchange kept of it is neither the channel's nor owed.
 */
const reversalEntries = (channelId: string, paymentId: string, exchangeCostWei = 0n) => [
  { code: `channel:${channelId}`, amount: (-(NET_WEI - exchangeCostWei)).toString() },
  { code: 'platform:fees#' + shardOf(paymentId), amount: (-FEE_WEI).toString() },
  { code: 'platform:refunds_owed', amount: (GROSS_WEI - exchangeCostWei).toString() },
];

/** A reversal's note (none sends no body), and what an exchange kept of the payment, which is given back by nobody. */
interface ReverseOptions {
  note?: string;
  exchangeCostWei?: bigint;
}

// Each test lists the fixtures it uses (vitest sets up only those): tests on the same steps list the same names.
const it = worldFirst(
  worldTest({
    firstPaymentId: 9_600_000_000,
    firstChannel: 1_003_600_000_001,
    atEnd: async ({ db }) => expect((await checkLedger(db.db)).problems).toEqual([]),
  })
    .extend('reader', { scope: 'file' }, ({ outside }) =>
      createChainWallet({
        rpcUrl: outside.chain.rpcUrl,
        address: outside.hostAddress,
        chainId: outside.chain.chainId,
        timeoutMs: 5_000,
      }),
    )
    /** A threshold channel far from its threshold. */
    .extend(
      'thresholdChannel',
      ({ channel }) =>
        (): Promise<string> =>
          channel(usdtThreshold()),
    )
    .extend('refund', ({ app }) => async (paymentId: string, channelId: string) => {
      const { raw, headers } = signed(
        ipnBody({ payment_id: Number(paymentId), order_id: `PGP-1|${channelId}`, payment_status: 'refunded' }),
        IPN_SECRET,
      );
      const res = await app.payrail.request('POST', '/webhooks/nowpayments', { raw, headers, token: null });
      expect(res.status).toBe(202);
      expect(res.body.reviewReason).toBe('refunded_after_credit');
    })
    .extend(
      'act',
      ({ app }) =>
        (paymentId: string, action: string, body?: unknown) =>
          app.payrail.request('POST', `/api/payments/${paymentId}/${action}`, body === undefined ? {} : { body }),
    )
    .extend('ethDifference', ({ outside, db, reader }) => async (): Promise<bigint> => {
      const report = await checkLedgerAgainstChain(db.db, { wallet: reader, usdtContract: outside.usdt });
      return report.assets.find((a) => a.asset === 'eth')!.difference;
    })
    /** Where a test ends: the ETH the ledger books is what the chain holds, and the ledger checks out. */
    .extend('expectLedgerMatchesChain', ({ db, ethDifference }) => async () => {
      expect(await ethDifference()).toBe(0n);
      expect((await checkLedger(db.db)).problems).toEqual([]);
    })
    .extend('balance', ({ db }) => async (code: string, asset = 'eth'): Promise<bigint> => {
      const { rows } = await db.pool.query<{ sum: string }>(
        'select coalesce(sum(balance), 0)::text as sum from ledger_accounts where code like $1 and asset = $2',
        [code, asset],
      );
      return BigInt(rows[0]!.sum);
    })
    .extend('journal', ({ db }) => async (kind: string, ref: string) => {
      const { rows } = await db.pool.query<{ code: string; amount: string }>(
        'select a.code, e.amount::text from ledger_entries e join ledger_journals j on j.id = e.journal_id join ledger_accounts a on a.id = e.account_id where j.kind = $1 and j.ref = $2 order by a.code',
        [kind, ref],
      );
      return rows;
    })
    /** A person reverses the payment (200), and reverse books exactly reversalEntries; returns the payment it answers. */
    .extend(
      'reversed',
      ({ act, journal }) =>
        async (channelId: string, paymentId: string, { note, exchangeCostWei = 0n }: ReverseOptions = {}) => {
          const res = await act(paymentId, 'reverse', note === undefined ? undefined : { note });
          expect(res.status).toBe(200);
          expect(await journal('payment_reversed', paymentId)).toEqual(
            reversalEntries(channelId, paymentId, exchangeCostWei),
          );
          return res.body;
        },
    )
    /** Whether the payment's payout is in `status`. */
    .extend('payoutIs', ({ db }) => async (paymentId: string, status: string): Promise<boolean> => {
      const { rows } = await db.pool.query('select 1 from payouts where payment_id = $1 and status = $2', [
        paymentId,
        status,
      ]);
      return rows.length === 1;
    })
    /** The host key used outside payrail, as an operator's wallet app would. */
    .extend(
      'hostApp',
      ({ outside }) =>
        () =>
          walletApp(outside.chain, outside.hostKey),
    ),
);

describe('reverse keeps ledger = chain', () => {
  it("the reversed payment's ETH is still on the host wallet: reverse books it as refunds owed, and withdrawal --from refunds books the transaction that sends it back", async ({
    outside,
    db,
    start,
    pay,
    thresholdChannel,
    refund,
    reversed,
    ethDifference,
    balance,
    journal,
    hostApp,
    expectLedgerMatchesChain,
  }) => {
    // Nothing converts: the payment's ETH stays on its channel until the refund.
    await start({ CONVERSION_MIN_USD: '1000000', CONVERSION_MAX_WAIT: '24h' });
    const channelId = await thresholdChannel();
    const paymentId = await pay(channelId);
    expect(await ethDifference()).toBe(0n);
    await refund(paymentId, channelId);

    await reversed(channelId, paymentId, { note: 'chargeback' });
    expect(await balance('platform:refunds_owed')).toBe(GROSS_WEI);
    expect(await ethDifference()).toBe(0n);

    // The operator sends the refunded ETH back (to NOWPayments, say) with the host key: a difference until booked.
    const sent = await hostApp().sendTransaction({ to: freshWallet() as Hex, value: GROSS_WEI });
    const receipt = await mined(outside.chain, sent);
    const gas = receipt.gasUsed * receipt.effectiveGasPrice;
    expect(await ethDifference()).toBe(-(GROSS_WEI + gas));
    const booked = await payrailCli(['withdrawal', sent, '--from', 'refunds'], cliEnv(db, outside));
    expect(booked.stdout).toMatch(
      /^booked: .* 0\.00487 ETH sent away, taken from the refunds owed \(platform:refunds_owed\)/,
    );
    expect(await journal('wallet_withdrawal', sent.toLowerCase())).toEqual([
      { code: 'platform:network_costs', amount: (-gas).toString() },
      { code: 'platform:refunds_owed', amount: (-GROSS_WEI).toString() },
      { code: 'world:ethereum', amount: gas.toString() },
      { code: 'world:refunds', amount: GROSS_WEI.toString() },
    ]);
    expect(await balance('platform:refunds_owed')).toBe(0n);
    expect(await ethDifference()).toBe(0n);
    expect(
      (
        await db.pool.query(
          "select actor, details->>'from' as source from audit_log where action = 'wallet.withdrawal' and subject = $1",
          [sent.toLowerCase()],
        )
      ).rows,
    ).toEqual([{ actor: 'cli', source: 'refunds' }]);

    // Beyond what is owed: refused, nothing booked; it is the platform's own money that left (booked from capital).
    const more = await hostApp().sendTransaction({ to: freshWallet() as Hex, value: 1_000n });
    await mined(outside.chain, more);
    const refused = await payrailCliFailure(['withdrawal', more, '--from', 'refunds'], cliEnv(db, outside));
    expect(refused?.code).toBe(1);
    expect(refused?.stderr).toMatch(
      /withdrawal refused: the platform's refunds owed hold 0 wei, less than the 1000 this transaction sent away/,
    );
    expect(await journal('wallet_withdrawal', more.toLowerCase())).toEqual([]);
    await payrailCli(['withdrawal', more], cliEnv(db, outside));
    await expectLedgerMatchesChain();
  });

  it('a payment whose conversion came back short is reversed for what is left of it: the channel gives back its net less the exchange cost, refunds owed get what the wallet holds for it', async ({
    outside,
    db,
    start,
    pay,
    thresholdChannel,
    refund,
    reversed,
    ethDifference,
    balance,
    expectLedgerMatchesChain,
  }) => {
    // Beyond the tolerance, the short refund waits for a person; the refund IPN arrives meanwhile.
    const payrail = await start({ CONVERSION_MIN_USD: '1', CHANGENOW_REFUND_TOLERANCE: '0.5' });
    const channelId = await thresholdChannel();
    outside.sim.failNextExchange('refunded_short');
    const paymentId = await pay(channelId);
    let conversionId = '';
    await eventually('the conversion in review', async () => {
      const { rows } = await db.pool.query<{ conversion_id: string; status: string }>(
        'select c.conversion_id, c.status from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1',
        [paymentId],
      );
      conversionId = rows[0]?.conversion_id ?? '';
      return rows[0]?.status === 'needs_review';
    });
    await refund(paymentId, channelId);
    const [exchange] = exchangesOf(outside, conversionId);
    const returned = await payrail.request('POST', `/api/conversions/${conversionId}/resolve`, {
      body: { outcome: 'returned', txHash: exchange!.refundHash },
    });
    expect(returned.status).toBe(200);
    // In review, the payment is no batch's: it waits on its channel, worth its net less what ChangeNow kept.
    const { rows } = await db.pool.query(
      'select conversion_status, exchange_cost_wei::text as cost from payments where payment_id = $1',
      [paymentId],
    );
    expect(rows).toEqual([{ conversion_status: 'pending', cost: SHORT_WEI.toString() }]);
    expect(await ethDifference()).toBe(0n);
    const channelBefore = await balance(`channel:${channelId}`);

    const payment = await reversed(channelId, paymentId, { exchangeCostWei: SHORT_WEI });
    expect(payment).toMatchObject({
      status: 'refunded',
      reviewReason: null,
      grossAmount: '0.00487',
      netAmount: '0.0047239',
      conversion: { status: null },
    });
    expect(await balance(`channel:${channelId}`)).toBe(channelBefore - (NET_WEI - SHORT_WEI));
    await expectLedgerMatchesChain();
  });
});

describe('a refund whose money was paid out', () => {
  it('reverse is 409 naming the completed payout; ignore acknowledges it and books nothing: ledger = chain', async ({
    outside,
    start,
    channel,
    pay,
    refund,
    act,
    ethDifference,
    journal,
    payoutIs,
  }) => {
    await start();
    const owner = freshWallet();
    const channelId = await channel(instantBody('eth', 'eth', owner));
    const paymentId = await pay(channelId);
    await eventually('the owner paid on chain', async () => (await outside.balanceOf(owner)) === NET_WEI);
    await eventually('the payout completed', () => payoutIs(paymentId, 'completed'));
    await refund(paymentId, channelId);
    const reverse = await act(paymentId, 'reverse');
    expect(reverse.status).toBe(409);
    expect(reverse.body.error).toMatch(/its money is in instant payout po_[0-9a-f]{16} \(completed\)/);
    const res = await act(paymentId, 'ignore', { note: 'the owner keeps it; NOWPayments settles with the subscriber' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ reviewReason: null, reversedAt: null, reviewAction: { action: 'ignore' } });
    expect(await journal('payment_reversed', paymentId)).toEqual([]);
    expect(await ethDifference()).toBe(0n);
  });
});

describe('a refund whose money came back', () => {
  it("the instant payout's exchange refunded in full: the payout failed, its ETH is on the channel again, and reverse takes the credit back (ignore is refused): ledger = chain", async ({
    outside,
    start,
    channel,
    pay,
    refund,
    act,
    reversed,
    balance,
    payoutIs,
    expectLedgerMatchesChain,
  }) => {
    await start();
    const channelId = await channel(instantBody('usdt', 'eth', freshWallet()));
    outside.sim.failNextExchange('refunded');
    const paymentId = await pay(channelId);
    await eventually('the payout failed, refunded in full', () => payoutIs(paymentId, 'failed'));
    expect(await balance(`channel:${channelId}`)).toBe(NET_WEI);
    await refund(paymentId, channelId);

    const ignore = await act(paymentId, 'ignore');
    expect(ignore.status).toBe(409);
    expect(ignore.body.error).toContain('reverse the credit');
    const payment = await reversed(channelId, paymentId, { note: 'chargeback' });
    expect(payment).toMatchObject({ status: 'refunded', reviewReason: null, reviewAction: { action: 'reverse' } });
    expect(await balance(`channel:${channelId}`)).toBe(0n);
    await expectLedgerMatchesChain();
  });
});
