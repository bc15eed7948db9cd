/**
 * A top-up on real parts (signed IPNs over HTTP, the ChangeNow simulator, anvil): a partial payment credited by hand
 * whose money already moved on (converted, or paid out as an instant payment), then the rest arriving (NOWPayments
 * forwards it, then says `finished`). The difference is credited once and follows the first part's way: converted by
 * the next batch, and paid out; ledger = chain at the end.
 */
import { describe, expect } from 'vitest';
import { checkLedger } from '../../src/ledger/index.ts';
import { worldFirst, worldTest } from '../support/fixtures.ts';
import { fixtures, ipnBody, signed } from '../support/ipn.ts';
import { eventually } from '../support/outside.ts';
import { instantBody } from '../support/payout-state.ts';
import { IPN_SECRET } from '../support/payrail.ts';
import { usdtThreshold } from '../support/conversions.ts';
import { freshWallet } from '../support/payouts.ts';

/** The partial fixture's outcome, and what the finished IPN after it says: 0.00294 then 0.00487 ETH. */
const PARTIAL_WEI = 2_940_000_000_000_000n;
const REST_WEI = 1_930_000_000_000_000n;
/** Net of each part after the 3 % fee. */
const PARTIAL_NET_WEI = 2_851_800_000_000_000n;
const REST_NET_WEI = 1_872_100_000_000_000n;

/** NOWPayments' finished IPN for the partial's payment, saying the fixture's whole 0.00487 ETH. */
function finishedAfter(partial: Record<string, unknown>): Record<string, unknown> {
  return { ...ipnBody(), payment_id: partial.payment_id, invoice_id: partial.invoice_id, order_id: partial.order_id };
}

const it = worldFirst(
  worldTest({
    env: { CONVERSION_MIN_USD: '1' },
    filePayrail: {},
    firstPaymentId: 9_700_000_000,
    firstChannel: 1_003_700_000_001,
    atEnd: async ({ db }) => expect((await checkLedger(db.db)).problems).toEqual([]),
  })
    .extend('send', ({ payrail }) => async (body: Record<string, unknown>) => {
      const { raw, headers } = signed(body, IPN_SECRET);
      return payrail.request('POST', '/webhooks/nowpayments', { raw, headers, token: null });
    })
    .extend(
      'act',
      ({ payrail }) =>
        (paymentId: string, action: string) =>
          payrail.request('POST', `/api/payments/${paymentId}/${action}`),
    )
    /** NOWPayments forwards the partial outcome, says partially_paid, and a person credits it. */
    .extend(
      'creditedPartial',
      ({ outside, nextPaymentId, send, act }) =>
        async (channelId: string): Promise<Record<string, unknown>> => {
          const body = {
            ...structuredClone(fixtures.partially_paid),
            payment_id: nextPaymentId(),
            order_id: `PGP-1|${channelId}`,
          };
          await outside.nowpayments.send(outside.hostAddress, PARTIAL_WEI);
          expect((await send(body)).status).toBe(202);
          expect((await act(String(body.payment_id), 'credit')).status).toBe(200);
          return body;
        },
    )
    /** NOWPayments forwards the rest, says finished with the whole outcome, and a person credits the difference. */
    .extend(
      'creditedRest',
      ({ outside, send, act }) =>
        async (partial: Record<string, unknown>): Promise<Record<string, any>> => {
          await outside.nowpayments.send(outside.hostAddress, REST_WEI);
          const res = await send(finishedAfter(partial));
          expect(res.status).toBe(202);
          expect(res.body.reviewReason).toBe(
            'top_up: credited 0.00294 eth; a later finished IPN says 0.00487 eth (0.00193 eth more)',
          );
          const credit = await act(String(partial.payment_id), 'credit');
          expect(credit.status).toBe(200);
          return credit.body;
        },
    )
    .extend('conversionsOf', ({ db }) => async (paymentId: string) => {
      const { rows } = await db.pool.query<{ status: string; net_wei: string }>(
        'select c.status, p.net_wei::text from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1 order by c.created_at',
        [paymentId],
      );
      return rows;
    })
    .extend('ethOf', ({ db }) => async (channelId: string): Promise<bigint> => {
      const { rows } = await db.pool.query<{ balance: string }>(
        "select balance::text from ledger_accounts where code = $1 and asset = 'eth'",
        [`channel:${channelId}`],
      );
      return BigInt(rows[0]?.balance ?? '0');
    })
    /** Waits until one of the payment's conversions has completed. */
    .extend('conversionCompleted', ({ conversionsOf }) => async (what: string, paymentId: string) => {
      await eventually(what, async () => (await conversionsOf(paymentId)).some((c) => c.status === 'completed'));
    })
    /** A new threshold channel's partial, credited by hand and converted. */
    .extend('partialConverted', ({ channel, creditedPartial, conversionCompleted }) => async () => {
      const channelId = await channel(usdtThreshold());
      const partial = await creditedPartial(channelId);
      const paymentId = String(partial.payment_id);
      await conversionCompleted('the partial converted', paymentId);
      return { channelId, partial, paymentId };
    })
    /**
     * A new instant channel paying a fresh owner in USDT on eth, its partial credited by hand, once the partial's payout
     * is in `status`.
     */
    .extend('instantPartialPayout', ({ db, channel, creditedPartial }) => async (status: string, what: string) => {
      const owner = freshWallet();
      const channelId = await channel(instantBody('usdt', 'eth', owner));
      const partial = await creditedPartial(channelId);
      const paymentId = String(partial.payment_id);
      await eventually(
        what,
        async () =>
          (await db.pool.query('select 1 from payouts where payment_id = $1 and status = $2', [paymentId, status])).rows
            .length === 1,
      );
      return { owner, channelId, partial, paymentId };
    })
    /** Nothing of the channel's ETH is left on it, and the ledger is consistent. */
    .extend('expectEthMovedOn', ({ db, ethOf }) => async (channelId: string) => {
      expect(await ethOf(channelId)).toBe(0n);
      expect((await checkLedger(db.db)).problems).toEqual([]);
    }),
);

describe('a top-up after the partial moved on', () => {
  it('threshold: the partial was converted; the difference goes back to pending for exactly its own ETH and the next batch converts it', async ({
    db,
    payrail,
    creditedRest,
    conversionsOf,
    ethOf,
    partialConverted,
  }) => {
    const { channelId, partial, paymentId } = await partialConverted();
    const firstUsdt = (await payrail.request('GET', `/api/payments/${paymentId}`)).body.conversion.usdtAmount as string;

    const credited = await creditedRest(partial);
    expect(credited).toMatchObject({
      grossAmount: '0.00487',
      netAmount: '0.0047239',
      payoutStrategy: 'threshold',
      reviewReason: null,
    });
    await eventually(
      'the difference converted',
      async () => (await conversionsOf(paymentId)).filter((c) => c.status === 'completed').length === 2,
    );
    expect(await conversionsOf(paymentId)).toEqual([
      { status: 'completed', net_wei: PARTIAL_NET_WEI.toString() },
      { status: 'completed', net_wei: REST_NET_WEI.toString() },
    ]);
    expect(await ethOf(channelId)).toBe(0n);
    const after = (await payrail.request('GET', `/api/payments/${paymentId}`)).body;
    expect(after.conversion.status).toBe('completed');
    // Both conversions' USDT: 0.0028518 and 0.0018721 ETH at 3000, less 1 USDT each.
    expect(firstUsdt).toBe('7.5554');
    expect(after.conversion.usdtAmount).toBe('12.1717');
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('refunded: once NOWPayments refunded the payment (the refund acknowledged by ignore), a stale finished IPN saying more is no top-up: nothing opens, nothing is credited', async ({
    db,
    payrail,
    send,
    act,
    partialConverted,
  }) => {
    const { partial, paymentId } = await partialConverted();
    const refund = await send({ ...partial, payment_status: 'refunded' });
    expect(refund.body.reviewReason).toBe('refunded_after_credit');
    // Converted: reverse cannot take it back, ignore acknowledges the refund.
    expect((await act(paymentId, 'reverse')).status).toBe(409);
    expect((await act(paymentId, 'ignore')).status).toBe(200);

    // NOWPayments' retry of a finished IPN from before the refund arrives late (nothing more was forwarded).
    const stale = await send(finishedAfter(partial));
    expect(stale.status).toBe(200);
    expect(stale.body).toMatchObject({ status: 'refunded', outcome: 'unchanged' });
    const after = (await payrail.request('GET', `/api/payments/${paymentId}`)).body;
    expect(after).toMatchObject({
      status: 'refunded',
      reviewReason: null,
      grossAmount: '0.00294',
      restated: null,
      reviewAction: { action: 'ignore' },
    });
    const credit = await act(paymentId, 'credit');
    expect(credit.status).toBe(409);
    const { rows } = await db.pool.query(
      "select 1 from ledger_journals where kind = 'payment_topped_up' and ref like $1",
      [`${paymentId}:%`],
    );
    expect(rows).toEqual([]);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it("instant: the partial's payout failed (ChangeNow refunded it, its ETH back on the channel); the top-up sends the whole net to the next conversion, and the owner is paid all of it as the channel's USDT", async ({
    outside,
    db,
    creditedRest,
    conversionsOf,
    ethOf,
    conversionCompleted,
    instantPartialPayout,
    expectEthMovedOn,
  }) => {
    outside.sim.failNextExchange('refunded');
    const { owner, channelId, partial, paymentId } = await instantPartialPayout(
      'failed',
      "the partial's payout failed, refunded in full",
    );
    expect(await ethOf(channelId)).toBe(PARTIAL_NET_WEI);

    const credited = await creditedRest(partial);
    expect(credited).toMatchObject({
      grossAmount: '0.00487',
      netAmount: '0.0047239',
      payoutStrategy: 'threshold',
      conversion: { status: 'pending' },
      reviewReason: null,
    });
    await conversionCompleted('the whole net converted', paymentId);
    expect(await conversionsOf(paymentId)).toEqual([
      { status: 'completed', net_wei: (PARTIAL_NET_WEI + REST_NET_WEI).toString() },
    ]);
    // 0.0047239 ETH at 3000, less 1 USDT, paid at once (an instant channel has no threshold).
    await eventually('the owner paid the whole net', async () => (await outside.usdtBalanceOf(owner)) === 13_171_700n);
    await eventually(
      'every open payout ended',
      async () =>
        (
          await db.pool.query("select 1 from payouts where channel_id = $1 and status not in ('completed', 'failed')", [
            channelId,
          ])
        ).rows.length === 0,
    );
    await expectEthMovedOn(channelId);
  });

  it("instant: the partial was paid out; the difference is converted and paid to the owner as the channel's USDT", async ({
    outside,
    db,
    creditedRest,
    conversionsOf,
    conversionCompleted,
    instantPartialPayout,
    expectEthMovedOn,
  }) => {
    const { owner, channelId, partial, paymentId } = await instantPartialPayout('completed', 'the partial paid out');
    const paid = await outside.usdtBalanceOf(owner);

    const credited = await creditedRest(partial);
    expect(credited).toMatchObject({ grossAmount: '0.00487', netAmount: '0.0047239', reviewReason: null });
    await conversionCompleted('the difference converted', paymentId);
    expect(await conversionsOf(paymentId)).toEqual([{ status: 'completed', net_wei: REST_NET_WEI.toString() }]);
    // Its USDT is paid at once (an instant channel has no threshold): 0.0018721 ETH at 3000, less 1 USDT.
    await eventually(
      'the owner paid the difference',
      async () => (await outside.usdtBalanceOf(owner)) - paid === 4_616_300n,
    );
    await eventually(
      'every payout completed',
      async () =>
        (await db.pool.query("select 1 from payouts where channel_id = $1 and status <> 'completed'", [channelId])).rows
          .length === 0,
    );
    await expectEthMovedOn(channelId);
  });
});
