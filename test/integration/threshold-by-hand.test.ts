// Its own world, not the shared fixtures': no payrail runs; the stages are run by hand on real parts.
/**
 * Threshold batches run by hand on PostgreSQL and anvil, paid in USDT from the host wallet.
 *
 * The confirm sets (src/pipeline/transfer/confirm-set.ts): two channels' batches signed in one send. The first one's
 * confirm run does not take the other into its set (completing a threshold batch replaces its channel's
 * threshold_check job, often running, whose row a set must not lock: see the query there); the other's own confirm
 * job completes it. Each batch is completed once, its gas booked once, its channel's threshold check queued.
 *
 * A batch sent as it is opened (src/pipeline/payout/send-at-opening.ts), by the check the threshold_check job runs:
 * a direct batch (USDT on Ethereum) whose run would only record its transfer is `sent` with its transfer intent and
 * send job in the check's own commit, and gets no payout_run. A batch its run has something to decide for (an
 * approval, a wallet change on hold, an address that is not valid, an exchange), and every batch of a check given no
 * settings (a person's threshold change), is left `pending` to its run, nothing recorded for the chain.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobWithKeyExists } from '../../src/jobs/index.ts';
import { checkLedger } from '../../src/ledger/index.ts';
import type { StageDeps } from '../../src/pipeline/index.ts';
import { conversionTransferHooks } from '../../src/pipeline/conversion/run.ts';
import { payoutTransferHooks, runPayout } from '../../src/pipeline/payout/run.ts';
import { applyPayoutAction } from '../../src/pipeline/payout/review.ts';
import { openingSettings } from '../../src/pipeline/payout/send-at-opening.ts';
import { runThresholdCheck } from '../../src/pipeline/payout/threshold.ts';
import { confirmTransfer, sendTransfer } from '../../src/pipeline/transfer/index.ts';
import { creditedThresholdChannel } from '../support/credited-channel.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { startOutside, type Outside } from '../support/outside.ts';
import { runJobByHand, workerStageDeps } from '../support/payrail.ts';
import { freshWallet, TRON_WALLET } from '../support/payouts.ts';

/** 25 USDT, over a threshold of 20 USD. */
const CREDIT = 25_000_000n;

let outside: Outside;
let db: TestDatabase;
let deps: StageDeps;

beforeAll(async () => {
  outside = await startOutside();
  db = await createTestDatabase();
  deps = workerStageDeps(db, outside);
});
afterAll(async () => {
  await db?.close();
  await outside?.stop();
});

async function payout(channelId: string) {
  return db.db.selectFrom('payouts').selectAll().where('channel_id', '=', channelId).executeTakeFirstOrThrow();
}

describe('threshold payouts and the confirm sets', () => {
  it('a confirm run leaves another threshold batch to its own job, which completes it once', async () => {
    const channels = ['-1008400000001', '-1008400000002'];
    const wallets = [
      await creditedThresholdChannel(db, outside, channels[0]!, CREDIT),
      await creditedThresholdChannel(db, outside, channels[1]!, CREDIT),
    ];
    expect((await runThresholdCheck(db.db, channels)).batchIds).toHaveLength(2);
    const payouts = [await payout(channels[0]!), await payout(channels[1]!)];
    for (const p of payouts) await runJobByHand(db, `payout_run:${p.payout_id}`, () => runPayout(deps, p.payout_id));
    const transfers = await Promise.all(channels.map(async (c) => (await payout(c)).transfer_id as string));
    expect(transfers.every((t) => t !== null)).toBe(true);

    const hooks = { conversion: conversionTransferHooks(deps), payout: payoutTransferHooks(deps) };
    // One send signs both (the second is its companion); the first one's confirm run books only its own.
    await runJobByHand(db, `transfer_send:${transfers[0]}`, () => sendTransfer(deps, hooks, transfers[0]!));
    await runJobByHand(db, `transfer_confirm:${transfers[0]}`, () => confirmTransfer(deps, hooks, transfers[0]!));
    expect(await payout(channels[0]!)).toMatchObject({ status: 'completed' });
    expect(await payout(channels[1]!)).toMatchObject({ status: 'sent' });
    expect(await jobWithKeyExists(db.db, `threshold_check:${channels[1]}`)).toBe(false);
    await runJobByHand(db, `transfer_confirm:${transfers[1]}`, () => confirmTransfer(deps, hooks, transfers[1]!));

    for (const [i, channelId] of channels.entries()) {
      expect(await payout(channelId)).toMatchObject({ status: 'completed', amount: CREDIT.toString() });
      expect(await outside.usdtBalanceOf(wallets[i]!)).toBe(CREDIT);
      expect(await jobWithKeyExists(db.db, `threshold_check:${channelId}`)).toBe(true);
    }
    const { rows: gas } = await db.pool.query<{ ref: string }>(
      "select ref from ledger_journals where kind = 'network_fee' and ref = any($1) order by ref",
      [transfers],
    );
    expect(gas.map((g) => g.ref)).toEqual([...transfers].sort());
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });
});

/** The channel's batch, whether its transfer was recorded in the same transaction (the same now()), and its jobs. */
async function batchOf(channelId: string) {
  const { rows } = await db.pool.query(
    `select p.payout_id, p.status, p.amount::text, t.transfer_id, t.status as transfer_status, t.asset,
            t.amount::text as transfer_amount, t.to_address = p.wallet_address as to_owner,
            t.created_at = p.created_at as with_opening
     from payouts p left join chain_transfers t on t.purpose = 'payout' and t.ref = p.payout_id
     where p.channel_id = $1`,
    [channelId],
  );
  expect(rows).toHaveLength(1);
  const row = rows[0];
  return {
    ...row,
    run: await jobWithKeyExists(db.db, `payout_run:${row.payout_id}`),
    send: row.transfer_id !== null && (await jobWithKeyExists(db.db, `transfer_send:${row.transfer_id}`)),
  };
}

describe('a threshold batch sent as it is opened', () => {
  it('a direct batch is sent with its transfer in the opening commit, no run; it is paid and completed once', async () => {
    const channelId = '-1008500000001';
    await creditedThresholdChannel(db, outside, channelId, CREDIT);
    expect((await runThresholdCheck(db.db, [channelId], openingSettings(deps))).batchIds).toHaveLength(1);
    const batch = await batchOf(channelId);
    expect(batch).toMatchObject({
      status: 'sent',
      amount: CREDIT.toString(),
      transfer_status: 'intent',
      asset: 'usdt',
      transfer_amount: CREDIT.toString(),
      to_owner: true,
      with_opening: true,
      run: false,
      send: true,
    });
    // A run delivered anyway (an older version queued it, say) finds the batch sent and records nothing more.
    await runPayout(deps, batch.payout_id);
    const { rows: transfers } = await db.pool.query('select 1 from chain_transfers where ref = $1', [batch.payout_id]);
    expect(transfers).toHaveLength(1);

    const hooks = { conversion: conversionTransferHooks(deps), payout: payoutTransferHooks(deps) };
    await runJobByHand(db, `transfer_send:${batch.transfer_id}`, () => sendTransfer(deps, hooks, batch.transfer_id));
    await runJobByHand(db, `transfer_confirm:${batch.transfer_id}`, () =>
      confirmTransfer(deps, hooks, batch.transfer_id),
    );
    expect(await batchOf(channelId)).toMatchObject({ status: 'completed', transfer_status: 'confirmed' });
    const { rows: wallet } = await db.pool.query('select wallet_address from channels where channel_id = $1', [
      channelId,
    ]);
    expect(await outside.usdtBalanceOf(wallet[0].wallet_address)).toBe(CREDIT);
    expect(await jobWithKeyExists(db.db, `threshold_check:${channelId}`)).toBe(true);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('a batch with something for its run to decide is left pending to that run, nothing recorded for the chain', async () => {
    const settings = openingSettings(deps);
    const cases = [
      // Above PAYOUT_APPROVAL_ABOVE_USD (20 USD): a person approves first.
      { channelId: '-1008500000011', settings: { ...settings, approvalAboveUsdCents: 2000n } },
      // Within it: sent (the case that is not left to the run, for contrast).
      { channelId: '-1008500000012', settings: { ...settings, approvalAboveUsdCents: 2500n }, sent: true },
      // Its wallet changed within WALLET_CHANGE_HOLD: held by its run.
      { channelId: '-1008500000013', settings: { ...settings, walletChangeHoldMs: 3_600_000 }, changed: true },
      // Its wallet edited by hand into no valid Ethereum address: its run sends it to review.
      { channelId: '-1008500000014', settings, wallet: '0x1234' },
      // USDT on Tron: through an exchange, which its run asks ChangeNow for.
      { channelId: '-1008500000015', settings, network: 'trx' as const, wallet: TRON_WALLET },
      // No settings: a person's threshold change leaves every batch to its run.
      { channelId: '-1008500000016', settings: undefined },
    ];
    for (const c of cases) {
      await creditedThresholdChannel(db, outside, c.channelId, CREDIT, {
        network: c.network ?? 'eth',
        wallet: c.wallet ?? freshWallet(),
      });
      if (c.changed)
        await db.pool.query('update channels set wallet_address = $2 where channel_id = $1', [
          c.channelId,
          freshWallet(),
        ]);
      expect((await runThresholdCheck(db.db, [c.channelId], c.settings)).batchIds).toHaveLength(1);
      const batch = { channelId: c.channelId, ...(await batchOf(c.channelId)) };
      if (c.sent)
        expect(batch).toMatchObject({
          channelId: c.channelId,
          status: 'sent',
          with_opening: true,
          run: false,
          send: true,
        });
      else
        expect(batch).toMatchObject({
          channelId: c.channelId,
          status: 'pending',
          transfer_id: null,
          run: true,
          send: false,
        });
    }
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });
});

describe("asking ChangeNow for a batch's exchange", () => {
  /** `base` with its ChangeNow client's list calls counted (the real client, over HTTP to the simulator). */
  function countingLists(base: StageDeps): { deps: StageDeps; lists: () => number } {
    let lists = 0;
    const exchange = {
      ...base.exchange,
      listExchanges: (filter: Parameters<StageDeps['exchange']['listExchanges']>[0]) => {
        lists += 1;
        return base.exchange.listExchanges(filter);
      },
    };
    return { deps: { ...base, exchange }, lists: () => lists };
  }

  function exchangesFor(payoutId: string) {
    return [...outside.sim.exchanges.values()].filter((e) => e.userId === payoutId);
  }

  async function tronBatch(channelId: string) {
    await creditedThresholdChannel(db, outside, channelId, CREDIT, { network: 'trx', wallet: TRON_WALLET });
    expect((await runThresholdCheck(db.db, [channelId])).batchIds).toHaveLength(1);
    return payout(channelId);
  }

  it('a batch never asked for an exchange is asked without listing first', async () => {
    const batch = await tronBatch('-1008600000001');
    expect(batch).toMatchObject({ status: 'pending', exchange_asked_at: null });
    const counted = countingLists(deps);
    await runJobByHand(db, `payout_run:${batch.payout_id}`, () => runPayout(counted.deps, batch.payout_id));

    const [exchange] = exchangesFor(batch.payout_id);
    expect(exchangesFor(batch.payout_id)).toHaveLength(1);
    expect(await payout('-1008600000001')).toMatchObject({
      status: 'exchange_created',
      exchange_id: exchange?.id,
      exchange_asked_at: expect.any(Date),
    });
    expect(counted.lists()).toBe(0);
  });

  it('one asked whose answer was lost, then held and resumed as pending, adopts that exchange and asks for no other', async () => {
    const channelId = '-1008600000002';
    const batch = await tronBatch(channelId);
    // ChangeNow created the exchange; the answer never reached the run.
    const losing = workerStageDeps(db, outside, {
      crashPoint: (name) => {
        if (name === 'payout_after_exchange_created') throw new Error('answer lost');
      },
    });
    await expect(
      runJobByHand(db, `payout_run:${batch.payout_id}`, () => runPayout(losing, batch.payout_id)),
    ).rejects.toThrow('answer lost');
    expect(exchangesFor(batch.payout_id)).toHaveLength(1);
    const asked = await payout(channelId);
    expect(asked).toMatchObject({ status: 'exchange_requested', exchange_id: null, attempts: 1 });

    // The owner changes the channel's destination: under WALLET_CHANGE_HOLD the next run holds the batch.
    await db.pool.query('update channels set payout_network = $2, wallet_address = $3 where channel_id = $1', [
      channelId,
      'eth',
      freshWallet(),
    ]);
    const holding = workerStageDeps(db, outside, { env: { WALLET_CHANGE_HOLD: '1h' } });
    await runPayout(holding, batch.payout_id);
    expect(await payout(channelId)).toMatchObject({ status: 'held' });

    // A person retries it: pending again, as a payout never asked would be.
    const retried = await applyPayoutAction(db.db, batch.payout_id, 'retry', 'alice', { pollDeadlineMs: 60_000 });
    expect(retried).toMatchObject({ from: 'held', to: 'pending' });
    expect(await payout(channelId)).toMatchObject({ status: 'pending', exchange_asked_at: asked.exchange_asked_at });

    const counted = countingLists(deps);
    await runJobByHand(db, `payout_run:${batch.payout_id}`, () => runPayout(counted.deps, batch.payout_id));
    const exchanges = exchangesFor(batch.payout_id);
    expect(exchanges).toHaveLength(1);
    const recorded = await payout(channelId);
    expect(recorded).toMatchObject({ status: 'exchange_created', exchange_id: exchanges[0]?.id });
    expect(recorded.payin_address?.toLowerCase()).toBe(exchanges[0]?.payinAddress.toLowerCase());
    expect(counted.lists()).toBe(1);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });
});
