/**
 * A worker process SIGKILLed at each step of a payout, then a fresh worker: the payout completes with one ChangeNow
 * exchange and one host wallet transfer, and the owner is paid once. Two payouts through an exchange: an instant
 * payout (a payment's ETH → USDT on Ethereum, paid by the simulator in LocalUSDT on chain to a fresh wallet) and a
 * threshold batch (USDT → USDT on Tron, after the payment's conversion, which the doomed worker runs normally: its
 * transfer crosses `after_broadcast`, not `payout_after_broadcast`).
 *
 * Before the survivor starts, each case checks what the kill left behind (the outside effect done, its record not
 * committed), so a crash point that stopped firing where it should would fail here rather than pass unnoticed.
 */
import { describe, expect } from 'vitest';
import { createPublicClient, http, type Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { checkLedger } from '../../src/ledger/index.ts';
import { parseUnits } from '../../src/money/index.ts';
import { worldFirst, type TestApp, type World } from '../support/fixtures.ts';
import { eventually } from '../support/outside.ts';
import { TRON_WALLET } from '../support/payouts.ts';
import { workerProcessTest, type Workers } from '../support/worker-processes.ts';

const POINTS = ['payout_after_exchange_created', 'payout_after_broadcast', 'payout_before_complete'] as const;
type Point = (typeof POINTS)[number];

/** What a kill leaves behind and how a survivor ends it, read from the file's world. */
function crashes({ outside, db }: World, pay: TestApp['pay'], workers: Workers) {
  async function payoutRow(channelId: string) {
    const { rows } = await db.pool.query(
      'select payout_id, kind, status, asset, amount::text, amount_out, exchange_id, payin_address, wallet_address from payouts where channel_id = $1',
      [channelId],
    );
    return rows as Array<{
      payout_id: string;
      kind: string;
      status: string;
      asset: string;
      amount: string;
      amount_out: string | null;
      exchange_id: string | null;
      payin_address: string | null;
      wallet_address: string;
    }>;
  }

  async function payoutTransfers(payoutId: string) {
    const { rows } = await db.pool.query(
      "select status, to_address, amount::text, tx_hash from chain_transfers where purpose = 'payout' and ref = $1",
      [payoutId],
    );
    return rows as Array<{ status: string; to_address: string; amount: string; tx_hash: string | null }>;
  }

  function exchangesOf(payoutId: string) {
    return [...outside.sim.exchanges.values()].filter((e) => e.userId === payoutId);
  }

  /** The state between the outside effect and the commit that records it, as the kill at `point` left it. */
  async function expectLeftBehind(point: Point, payoutId: string): Promise<void> {
    const [payout] = await db.pool
      .query('select status from payouts where payout_id = $1', [payoutId])
      .then((r) => r.rows);
    const transfers = await payoutTransfers(payoutId);
    if (point === 'payout_after_exchange_created') {
      // ChangeNow holds the exchange; payrail has only its intent.
      expect(payout.status).toBe('exchange_requested');
      expect(exchangesOf(payoutId)).toHaveLength(1);
      expect(transfers).toEqual([]);
    } else if (point === 'payout_after_broadcast') {
      // The transaction is on the chain (anvil mines on arrival); payrail has it released (marked as possibly on the
      // network before the broadcast call) and has not seen it mined yet.
      expect(payout.status).toBe('exchange_created');
      expect(transfers.map((t) => t.status)).toEqual(['broadcast']);
      const [exchange] = exchangesOf(payoutId);
      const mined = await createPublicClient({ transport: http(outside.chain.rpcUrl) }).getTransactionReceipt({
        hash: transfers[0]!.tx_hash as Hex,
      });
      expect(mined.status).toBe('success');
      expect(exchange?.payinAddress.toLowerCase()).toBe(transfers[0]!.to_address.toLowerCase());
    } else {
      // ChangeNow finished and paid out; payrail has not recorded the completion.
      expect(payout.status).toBe('sent');
      expect(exchangesOf(payoutId).map((e) => e.status)).toEqual(['finished']);
      expect(transfers.map((t) => t.status)).toEqual(['confirmed']);
    }
  }

  /**
   * Pays `payments` IPNs into the channel with a doomed worker running, waits for it to SIGKILL itself at `point`,
   * checks what it left behind, then lets a survivor finish. Returns the completed payout.
   */
  async function killAndRecover(point: Point, channelId: string, payments: number) {
    const doomed = workers.start({ PAYRAIL_CRASH_AT: point });
    for (let i = 0; i < payments; i++) await pay(channelId);
    await Promise.race([doomed.exited, new Promise((r) => setTimeout(r, 30_000))]);
    if (doomed.child.signalCode === null)
      throw new Error(`worker did not crash at ${point} (exit ${doomed.child.exitCode}):\n${doomed.output()}`);
    expect(doomed.child.signalCode).toBe('SIGKILL');
    expect(doomed.output()).toContain('crash_injection_armed');

    const [open] = await payoutRow(channelId);
    if (!open) throw new Error(`no payout before the kill at ${point}:\n${doomed.output()}`);
    await expectLeftBehind(point, open.payout_id);

    const survivor = workers.start();
    await eventually(
      `payout completed after a SIGKILL at ${point}`,
      async () => (await payoutRow(channelId))[0]?.status === 'completed',
      45_000,
    ).catch(async (error: Error) => {
      const jobs = await db.pool.query(
        'select task_identifier, attempts, max_attempts, locked_by, run_at, last_error from graphile_worker.jobs',
      );
      throw new Error(
        `${error.message}\npayouts: ${JSON.stringify(await payoutRow(channelId))}\njobs: ${JSON.stringify(jobs.rows)}\nkilled worker:\n${doomed.output()}\nsurvivor:\n${survivor.output()}`,
      );
    });
    survivor.child.kill('SIGTERM');
    expect(await survivor.exited).toBe(0);

    const rows = await payoutRow(channelId);
    expect(rows).toHaveLength(1);
    const payout = rows[0]!;
    expect(payout.payout_id).toBe(open.payout_id);

    // One exchange, and it is the one the payout recorded.
    const exchanges = exchangesOf(payout.payout_id);
    expect(exchanges).toHaveLength(1);
    const exchange = exchanges[0]!;
    expect(exchange).toMatchObject({
      id: payout.exchange_id,
      status: 'finished',
      payinAddress: payout.payin_address,
      payoutAddress: payout.wallet_address,
    });
    expect(payout.amount_out).toBe(exchange.amountTo);

    // One transfer, confirmed, of exactly the payout's amount to the exchange's payin address.
    const transfers = await payoutTransfers(payout.payout_id);
    expect(transfers).toHaveLength(1);
    expect(transfers[0]).toMatchObject({ status: 'confirmed', amount: payout.amount });
    expect(transfers[0]!.to_address.toLowerCase()).toBe(exchange.payinAddress.toLowerCase());

    expect((await checkLedger(db.db)).problems).toEqual([]);
    return { payout, exchange };
  }

  return { killAndRecover };
}

const it = worldFirst(
  workerProcessTest({
    env: { CONVERSION_MIN_USD: '1' },
    firstPaymentId: 9_200_000_000,
    firstChannel: 1_005_200_000_001,
  }).extend('killAndRecover', ({ world, pay, workers }) => crashes(world, pay, workers).killAndRecover),
);

describe('SIGKILL of a worker during a payout', () => {
  it.for(POINTS)(
    'instant ETH → USDT on eth, killed at %s: restart pays the owner once, through one exchange and one transfer',
    async (point, { outside, newChannel, killAndRecover }) => {
      const wallet = privateKeyToAccount(generatePrivateKey()).address;
      const channelId = await newChannel({
        payoutStrategy: 'instant',
        payoutCurrency: 'usdt',
        payoutNetwork: 'eth',
        walletAddress: wallet,
      });
      const { payout, exchange } = await killAndRecover(point, channelId, 1);

      expect(payout).toMatchObject({
        kind: 'instant',
        asset: 'eth',
        amount: '4723900000000000',
        amount_out: '13.1717',
      });
      // The payin address got the payment's net ETH once; the owner got the payout's amount out once, on chain.
      expect(await outside.balanceOf(exchange.payinAddress)).toBe(4_723_900_000_000_000n);
      expect(await outside.usdtBalanceOf(wallet)).toBe(parseUnits(payout.amount_out as string, 6));
      expect(await outside.usdtBalanceOf(wallet)).toBe(13_171_700n);
    },
  );

  it.for(POINTS)(
    'threshold batch USDT → USDT on trx, killed at %s: restart finishes it with one exchange and one transfer',
    async (point, { db, outside, newChannel, killAndRecover }) => {
      const channelId = await newChannel({
        payoutStrategy: 'threshold',
        thresholdUsd: '5',
        payoutCurrency: 'usdt',
        payoutNetwork: 'trx',
        walletAddress: TRON_WALLET,
      });
      const { payout, exchange } = await killAndRecover(point, channelId, 1);

      // One payment's conversion (0.0047239 ETH × 3000 − 1 USDT) makes the batch; its exchange takes 1 USDT more.
      expect(payout).toMatchObject({ kind: 'threshold', asset: 'usdt', amount: '13171700', amount_out: '12.1717' });
      expect(exchange).toMatchObject({
        fromCurrency: 'usdt',
        toCurrency: 'usdt',
        toNetwork: 'trx',
        payoutAddress: TRON_WALLET,
      });
      // The payin address received the batch once, in USDT.
      expect(await outside.usdtBalanceOf(exchange.payinAddress)).toBe(13_171_700n);
      // The channel's USDT all left in the batch: nothing available, nothing reserved.
      const { rows } = await db.pool.query(
        "select code, balance::text from ledger_accounts where code like $1 and asset = 'usdt' order by code",
        [`%${channelId}%`],
      );
      expect(rows.map((r) => r.balance)).toEqual(rows.map(() => '0'));
      expect(rows.length).toBeGreaterThan(0);
    },
  );
});
