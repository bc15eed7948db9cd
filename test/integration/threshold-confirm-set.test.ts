// Its own world, not the shared fixtures': no payrail runs; the stages are run by hand on real parts.
/**
 * Threshold payouts and the confirm sets (src/pipeline/transfer/confirm-set.ts), on PostgreSQL and anvil: two
 * channels' batches, paid in USDT from the host wallet, signed in one send. The first one's confirm run does not take
 * the other into its set (completing a threshold batch replaces its channel's threshold_check job, often running,
 * whose row a set must not lock: see the query there); the other's own confirm job completes it. Each batch is
 * completed once, its gas booked once, its channel's threshold check queued.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobWithKeyExists } from '../../src/jobs/index.ts';
import { accounts, checkLedger, postJournal } from '../../src/ledger/index.ts';
import type { StageDeps } from '../../src/pipeline/index.ts';
import { conversionTransferHooks } from '../../src/pipeline/conversion/run.ts';
import { payoutTransferHooks, runPayout } from '../../src/pipeline/payout/run.ts';
import { runThresholdCheck } from '../../src/pipeline/payout/threshold.ts';
import { confirmTransfer, sendTransfer } from '../../src/pipeline/transfer/index.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { startOutside, type Outside } from '../support/outside.ts';
import { runJobByHand, workerStageDeps } from '../support/payrail.ts';
import { freshWallet } from '../support/payouts.ts';

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

/** A threshold channel paying USDT on Ethereum to a wallet of its own, credited CREDIT (the host wallet holds it). */
async function creditedChannel(channelId: string): Promise<string> {
  const wallet = freshWallet();
  await db.db
    .insertInto('channels')
    .values({
      channel_id: channelId,
      payout_strategy: 'threshold',
      threshold_usd_cents: '2000',
      payout_currency: 'usdt',
      payout_network: 'eth',
      wallet_address: wallet,
    })
    .execute();
  await db.db.transaction().execute((trx) =>
    postJournal(trx, {
      kind: 'test_credit',
      ref: channelId,
      entries: [
        { account: accounts.changenow('usdt'), amount: -CREDIT },
        { account: accounts.channel(channelId, 'usdt'), amount: CREDIT },
      ],
    }),
  );
  await outside.changenowReturn(outside.hostAddress, CREDIT);
  return wallet;
}

async function payout(channelId: string) {
  return db.db.selectFrom('payouts').selectAll().where('channel_id', '=', channelId).executeTakeFirstOrThrow();
}

describe('threshold payouts and the confirm sets', () => {
  it('a confirm run leaves another threshold batch to its own job, which completes it once', async () => {
    const channels = ['-1008400000001', '-1008400000002'];
    const wallets = [await creditedChannel(channels[0]!), await creditedChannel(channels[1]!)];
    expect(await runThresholdCheck(db.db, channels)).toHaveLength(2);
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
