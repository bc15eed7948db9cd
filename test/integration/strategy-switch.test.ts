/**
 * Switching a channel's payout strategy strands no unit, and a person can pay a channel now (real PostgreSQL, anvil,
 * the ChangeNow simulator over HTTP; ledger = chain at the end).
 */
import { describe, expect } from 'vitest';
import { checkLedger } from '../../src/ledger/index.ts';
import { worldFirst, worldTest } from '../support/fixtures.ts';
import { eventually } from '../support/outside.ts';
import { instantBody } from '../support/payout-state.ts';
import { freshWallet, TRON_WALLET, tronThreshold } from '../support/payouts.ts';

/** An instant channel paying out USDT on Tron. */
const TRON_INSTANT = instantBody('usdt', 'trx', TRON_WALLET);

const it = worldFirst(
  worldTest({ env: { CONVERSION_MIN_USD: '1' }, firstPaymentId: 9_800_000_000, firstChannel: 1_003_800_000_001 })
    /** A person switching the channel to `body`'s strategy, expecting it saved over the existing channel (200). */
    .extend('switchTo', ({ app }) => async (channelId: string, body: Record<string, unknown>) => {
      expect((await app.payrail.request('PUT', `/api/channels/${channelId}`, { body })).status).toBe(200);
    })
    .extend(
      'payouts',
      ({ db }) =>
        async (channelId: string) =>
          (
            await db.pool.query<{ payout_id: string; kind: string; status: string; asset: string; amount: string }>(
              'select payout_id, kind, status, asset, amount::text from payouts where channel_id = $1 order by created_at',
              [channelId],
            )
          ).rows,
    )
    .extend(
      'balance',
      ({ db }) =>
        async (channelId: string, asset: string) =>
          BigInt(
            (
              await db.pool.query<{ b: string }>(
                'select coalesce(sum(balance), 0)::text as b from ledger_accounts where code = $1 and asset = $2',
                [`channel:${channelId}`, asset],
              )
            ).rows[0]!.b,
          ),
    )
    .extend(
      'paymentRow',
      ({ db }) =>
        async (paymentId: string) =>
          (
            await db.pool.query('select payout_strategy, conversion_status from payments where payment_id = $1', [
              paymentId,
            ])
          ).rows[0],
    )
    .extend('converted', ({ paymentRow }) => async (paymentId: string) => {
      await eventually('converted', async () => (await paymentRow(paymentId))?.conversion_status === 'completed');
    })
    .extend('batchCompleted', ({ payouts }) => async (channelId: string) => {
      await eventually('the batch completed', async () => (await payouts(channelId))[0]?.status === 'completed');
    })
    /** A new USDT-on-Tron threshold channel (far from its threshold) paid once, its payment converted. */
    .extend('convertedOnThreshold', ({ channel, pay, converted }) => async () => {
      const channelId = await channel(tronThreshold('1000'));
      const paymentId = await pay(channelId);
      await converted(paymentId);
      return { channelId, paymentId };
    })
    /** A new USDT-on-Tron instant channel paid once, its payout failed: ChangeNow refunded the exchange (or most of it). */
    .extend(
      'refundedOnInstant',
      ({ outside, channel, pay, payouts }) =>
        async (refund: 'refunded' | 'refunded_short' = 'refunded') => {
          const channelId = await channel(TRON_INSTANT);
          outside.sim.failNextExchange(refund);
          const paymentId = await pay(channelId);
          await eventually('the instant payout failed', async () => (await payouts(channelId))[0]?.status === 'failed');
          return { channelId, paymentId };
        },
    ),
);

describe('threshold → instant', () => {
  it('USDT already on the channel is paid out as one batch at once', async ({
    start,
    switchTo,
    payouts,
    balance,
    batchCompleted,
    convertedOnThreshold,
  }) => {
    await start();
    const { channelId } = await convertedOnThreshold();
    const usdt = await balance(channelId, 'usdt');
    expect(usdt).toBeGreaterThan(0n);
    expect(await payouts(channelId)).toEqual([]);
    await switchTo(channelId, TRON_INSTANT);
    await batchCompleted(channelId);
    expect(await payouts(channelId)).toMatchObject([
      { kind: 'threshold', asset: 'usdt', amount: usdt.toString(), status: 'completed' },
    ]);
    expect(await balance(channelId, 'usdt')).toBe(0n);
  });

  it('payments still waiting for a conversion are paid as instant payments, directly in ETH', async ({
    outside,
    start,
    channel,
    pay,
    switchTo,
    payouts,
    balance,
    paymentRow,
  }) => {
    // A batch waits until it is worth 1,000 USD or an hour passed: these two never start converting.
    await start({ CONVERSION_MIN_USD: '1000' });
    const owner = freshWallet();
    const channelId = await channel({
      payoutStrategy: 'threshold',
      thresholdUsd: '1000',
      payoutCurrency: 'eth',
      payoutNetwork: 'eth',
      walletAddress: owner,
    });
    const ids = [await pay(channelId), await pay(channelId)];
    for (const id of ids)
      expect(await paymentRow(id)).toMatchObject({ payout_strategy: 'threshold', conversion_status: 'pending' });
    await switchTo(channelId, instantBody('eth', 'eth', owner));
    await eventually(
      'both paid',
      async () => (await payouts(channelId)).filter((p) => p.status === 'completed').length === 2,
    );
    for (const id of ids)
      expect(await paymentRow(id)).toMatchObject({ payout_strategy: 'instant', conversion_status: null });
    expect(await outside.balanceOf(owner)).toBe(2n * 4_723_900_000_000_000n);
    expect(await balance(channelId, 'eth')).toBe(0n);
  });
});

describe('instant → threshold', () => {
  it('ETH back on the channel from a refunded instant payout joins the next conversion', async ({
    db,
    start,
    switchTo,
    balance,
    paymentRow,
    converted,
    refundedOnInstant,
  }) => {
    await start();
    const { channelId, paymentId } = await refundedOnInstant();
    expect(await balance(channelId, 'eth')).toBe(4_723_900_000_000_000n);
    await switchTo(channelId, tronThreshold('1000'));
    await converted(paymentId);
    expect(await paymentRow(paymentId)).toMatchObject({ payout_strategy: 'threshold' });
    expect(await balance(channelId, 'eth')).toBe(0n);
    expect(await balance(channelId, 'usdt')).toBeGreaterThan(0n);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });
  it('ETH back short from a refund joins the next conversion for what came back; what ChangeNow kept stays its cost', async ({
    db,
    start,
    switchTo,
    balance,
    paymentRow,
    converted,
    refundedOnInstant,
  }) => {
    await start();
    const { channelId, paymentId } = await refundedOnInstant('refunded_short');
    const back = 4_723_900_000_000_000n - 47_239_000_000_000n;
    expect(await balance(channelId, 'eth')).toBe(back);
    await switchTo(channelId, tronThreshold('1000'));
    await converted(paymentId);
    expect(await paymentRow(paymentId)).toMatchObject({ payout_strategy: 'threshold' });
    const { rows } = await db.pool.query<{ amount_wei: string }>(
      'select cp.net_wei::text as amount_wei from conversion_payments cp where cp.payment_id = $1',
      [paymentId],
    );
    expect(rows).toEqual([{ amount_wei: back.toString() }]);
    expect(await balance(channelId, 'eth')).toBe(0n);
    expect(await balance(channelId, 'usdt')).toBeGreaterThan(0n);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });
  it('an instant payout ending after the switch brings its ETH to the next conversion', async ({
    app,
    start,
    channel,
    pay,
    payouts,
    switchTo,
    balance,
    paymentRow,
    converted,
    db,
  }) => {
    // Above PAYOUT_APPROVAL_ABOVE_USD the payout waits for a person; the switch leaves its payment to it.
    await start({ PAYOUT_APPROVAL_ABOVE_USD: '1' });
    const channelId = await channel(TRON_INSTANT);
    const paymentId = await pay(channelId);
    await eventually(
      'the payout awaits approval',
      async () => (await payouts(channelId))[0]?.status === 'awaiting_approval',
    );
    await switchTo(channelId, tronThreshold('1000'));
    expect(await paymentRow(paymentId)).toMatchObject({ payout_strategy: 'instant', conversion_status: null });

    const [payout] = await payouts(channelId);
    const cancelled = await app.payrail.request('POST', `/api/payouts/${payout!.payout_id}/cancel`);
    expect(cancelled.status).toBe(200);
    await converted(paymentId);
    expect(await paymentRow(paymentId)).toMatchObject({ payout_strategy: 'threshold' });
    expect(await balance(channelId, 'eth')).toBe(0n);
    expect(await balance(channelId, 'usdt')).toBeGreaterThan(0n);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });
});

describe('POST /api/channels/:id/payout', () => {
  it('pays the whole available USDT now, whatever the threshold; refused while a batch is open or with nothing to pay', async ({
    outside,
    db,
    start,
    payouts,
    balance,
    batchCompleted,
    convertedOnThreshold,
  }) => {
    const payrail = await start();
    const { channelId } = await convertedOnThreshold();
    const usdt = await balance(channelId, 'usdt');
    await outside.sim.setFault('5xx'); // the batch stays open while ChangeNow refuses
    const res = await payrail.request('POST', `/api/channels/${channelId}/payout`);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ kind: 'threshold', asset: 'usdt', amount: '13.1717' });
    expect(usdt).toBe(13_171_700n);
    const again = await payrail.request('POST', `/api/channels/${channelId}/payout`);
    expect(again.status).toBe(409);
    expect(again.body.error).toBe(
      `cannot pay channel ${channelId} now: batch ${res.body.payoutId} is open (${(await payouts(channelId))[0]!.status}): it pays the channel's balance when it runs`,
    );
    await outside.sim.setFault('none');
    await batchCompleted(channelId);
    const empty = await payrail.request('POST', `/api/channels/${channelId}/payout`);
    expect(empty.status).toBe(409);
    expect(empty.body.error).toMatch(/holds no USDT to pay out/);
    expect((await payrail.request('POST', '/api/channels/-1009999999999/payout')).status).toBe(404);
    expect((await payrail.request('POST', `/api/channels/${channelId}/payout`, { token: null })).status).toBe(401);
    const audit = await db.pool.query("select actor, action from audit_log where action = 'channel.payout_now'");
    expect(audit.rows).toEqual([{ actor: 'admin', action: 'channel.payout_now' }]);
  });
});
