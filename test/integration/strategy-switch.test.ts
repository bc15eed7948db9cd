/**
 * Switching a channel's payout strategy strands no unit, and a person can pay a channel now (real PostgreSQL, anvil,
 * the ChangeNow simulator over HTTP; ledger = chain at the end).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkLedger } from '../../src/ledger/index.ts';
import { bookHostFunding, expectLedgerEqualsChain } from '../support/ledger-chain.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { eventually, resetFaults, startOutside, type Outside } from '../support/outside.ts';
import { startTestPayrail, type TestPayrail } from '../support/payrail.ts';
import { freshWallet, saveChannel, sendFinished } from '../support/payouts.ts';

const TRON_WALLET = 'TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7';

let outside: Outside;
let db: TestDatabase;
let payrail: TestPayrail | undefined;
let nextPaymentId = 9_800_000_000;
let nextChannel = 1_003_800_000_001;

beforeAll(async () => {
  outside = await startOutside();
  db = await createTestDatabase();
  await bookHostFunding(db, outside);
});
afterEach(async () => {
  await payrail?.stop();
  payrail = undefined;
  await resetFaults(outside);
});
afterAll(async () => {
  try {
    if (db && outside) await expectLedgerEqualsChain(db, outside);
  } finally {
    await db?.close();
    await outside?.stop();
  }
});

async function start(env: Record<string, string> = {}): Promise<TestPayrail> {
  payrail = await startTestPayrail(db, { outside, env: { ...outside.env, CONVERSION_MIN_USD: '1', ...env } });
  return payrail;
}
const pay = (channelId: string) => sendFinished(payrail!, nextPaymentId++, channelId);
const put = (channelId: string, body: Record<string, unknown>) =>
  payrail!.request('PUT', `/api/channels/${channelId}`, { body });
const payouts = async (channelId: string) =>
  (
    await db.pool.query<{ payout_id: string; kind: string; status: string; asset: string; amount: string }>(
      'select payout_id, kind, status, asset, amount::text from payouts where channel_id = $1 order by created_at',
      [channelId],
    )
  ).rows;
const balance = async (channelId: string, asset: string) =>
  BigInt(
    (
      await db.pool.query<{ b: string }>(
        'select coalesce(sum(balance), 0)::text as b from ledger_accounts where code = $1 and asset = $2',
        [`channel:${channelId}`, asset],
      )
    ).rows[0]!.b,
  );
const paymentRow = async (paymentId: string) =>
  (await db.pool.query('select payout_strategy, conversion_status from payments where payment_id = $1', [paymentId]))
    .rows[0];

describe('threshold → instant', () => {
  it('USDT already on the channel is paid out as one batch at once', async () => {
    await start();
    const channelId = await saveChannel(payrail!, `-${nextChannel++}`, {
      payoutStrategy: 'threshold',
      thresholdUsd: '1000',
      payoutCurrency: 'usdt',
      payoutNetwork: 'trx',
      walletAddress: TRON_WALLET,
    });
    const paymentId = await pay(channelId);
    await eventually('converted', async () => (await paymentRow(paymentId))?.conversion_status === 'completed');
    const usdt = await balance(channelId, 'usdt');
    expect(usdt).toBeGreaterThan(0n);
    expect(await payouts(channelId)).toEqual([]);
    expect(
      (
        await put(channelId, {
          payoutStrategy: 'instant',
          payoutCurrency: 'usdt',
          payoutNetwork: 'trx',
          walletAddress: TRON_WALLET,
        })
      ).status,
    ).toBe(200);
    await eventually('the batch completed', async () => (await payouts(channelId))[0]?.status === 'completed');
    expect(await payouts(channelId)).toMatchObject([
      { kind: 'threshold', asset: 'usdt', amount: usdt.toString(), status: 'completed' },
    ]);
    expect(await balance(channelId, 'usdt')).toBe(0n);
  });

  it('payments still waiting for a conversion are paid as instant payments, directly in ETH', async () => {
    // A batch waits until it is worth 1,000 USD or an hour passed: these two never start converting.
    await start({ CONVERSION_MIN_USD: '1000' });
    const owner = freshWallet();
    const channelId = await saveChannel(payrail!, `-${nextChannel++}`, {
      payoutStrategy: 'threshold',
      thresholdUsd: '1000',
      payoutCurrency: 'eth',
      payoutNetwork: 'eth',
      walletAddress: owner,
    });
    const ids = [await pay(channelId), await pay(channelId)];
    for (const id of ids)
      expect(await paymentRow(id)).toMatchObject({ payout_strategy: 'threshold', conversion_status: 'pending' });
    expect(
      (
        await put(channelId, {
          payoutStrategy: 'instant',
          payoutCurrency: 'eth',
          payoutNetwork: 'eth',
          walletAddress: owner,
        })
      ).status,
    ).toBe(200);
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
  it('ETH back on the channel from a refunded instant payout joins the next conversion', async () => {
    await start();
    const channelId = await saveChannel(payrail!, `-${nextChannel++}`, {
      payoutStrategy: 'instant',
      payoutCurrency: 'usdt',
      payoutNetwork: 'trx',
      walletAddress: TRON_WALLET,
    });
    outside.sim.failNextExchange('refunded');
    const paymentId = await pay(channelId);
    await eventually('the instant payout failed', async () => (await payouts(channelId))[0]?.status === 'failed');
    expect(await balance(channelId, 'eth')).toBe(4_723_900_000_000_000n);
    expect(
      (
        await put(channelId, {
          payoutStrategy: 'threshold',
          thresholdUsd: '1000',
          payoutCurrency: 'usdt',
          payoutNetwork: 'trx',
          walletAddress: TRON_WALLET,
        })
      ).status,
    ).toBe(200);
    await eventually('converted', async () => (await paymentRow(paymentId))?.conversion_status === 'completed');
    expect(await paymentRow(paymentId)).toMatchObject({ payout_strategy: 'threshold' });
    expect(await balance(channelId, 'eth')).toBe(0n);
    expect(await balance(channelId, 'usdt')).toBeGreaterThan(0n);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });
});

describe('POST /api/channels/:id/payout', () => {
  it('pays the whole available USDT now, whatever the threshold; refused while a batch is open or with nothing to pay', async () => {
    await start();
    const channelId = await saveChannel(payrail!, `-${nextChannel++}`, {
      payoutStrategy: 'threshold',
      thresholdUsd: '1000',
      payoutCurrency: 'usdt',
      payoutNetwork: 'trx',
      walletAddress: TRON_WALLET,
    });
    const paymentId = await pay(channelId);
    await eventually('converted', async () => (await paymentRow(paymentId))?.conversion_status === 'completed');
    const usdt = await balance(channelId, 'usdt');
    await outside.sim.setFault('5xx'); // the batch stays open while ChangeNow refuses
    const res = await payrail!.request('POST', `/api/channels/${channelId}/payout`);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ kind: 'threshold', asset: 'usdt', amount: '13.1717' });
    expect(usdt).toBe(13_171_700n);
    const again = await payrail!.request('POST', `/api/channels/${channelId}/payout`);
    expect(again.status).toBe(409);
    expect(again.body.error).toBe(
      `cannot pay channel ${channelId} now: batch ${res.body.payoutId} is open (${(await payouts(channelId))[0]!.status}): it pays the channel's balance when it runs`,
    );
    await outside.sim.setFault('none');
    await eventually('the batch completed', async () => (await payouts(channelId))[0]?.status === 'completed');
    const empty = await payrail!.request('POST', `/api/channels/${channelId}/payout`);
    expect(empty.status).toBe(409);
    expect(empty.body.error).toMatch(/holds no USDT to pay out/);
    expect((await payrail!.request('POST', '/api/channels/-1009999999999/payout')).status).toBe(404);
    expect((await payrail!.request('POST', `/api/channels/${channelId}/payout`, { token: null })).status).toBe(401);
    const audit = await db.pool.query("select actor, action from audit_log where action = 'channel.payout_now'");
    expect(audit.rows).toEqual([{ actor: 'admin', action: 'channel.payout_now' }]);
  });
});
