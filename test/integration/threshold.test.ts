import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Transaction } from 'kysely';
import type { Database } from '../../src/db/index.ts';
import { accounts, postJournal } from '../../src/ledger/index.ts';
import { checkThresholds as check } from '../../src/pipeline/payout/threshold.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';

/** The check as a caller runs it: batches, then the reservation journals posted last. */
async function checkThresholds(trx: Transaction<Database>, channelIds: string[]): Promise<string[]> {
  const outcome = await check(trx, channelIds);
  for (const journal of outcome.journals) await postJournal(trx, journal);
  return outcome.batchIds;
}

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => db?.close());

/** A threshold channel paying out USDT on eth, written straight to its table: these tests run the check with no payrail. */
async function insertThresholdChannel(channelId: string, thresholdUsdCents: string) {
  await db.db
    .insertInto('channels')
    .values({
      channel_id: channelId,
      payout_strategy: 'threshold',
      threshold_usd_cents: thresholdUsdCents,
      payout_currency: 'usdt',
      payout_network: 'eth',
      wallet_address: '0x8ba1f109551bD432803012645Ac136ddd64DBA72',
    })
    .execute();
}

async function creditUsdt(channelId: string, units: bigint, ref: string) {
  await db.db.transaction().execute((trx) =>
    postJournal(trx, {
      kind: 'test_credit',
      ref,
      entries: [
        { account: accounts.changenow('usdt'), amount: -units },
        { account: accounts.channel(channelId, 'usdt'), amount: units },
      ],
    }),
  );
}

describe('threshold check', () => {
  it('ten concurrent checks for one channel over its threshold create exactly one batch holding exactly its balance', async () => {
    const channelId = '-1004000000001';
    await insertThresholdChannel(channelId, '1000');
    await creditUsdt(channelId, 12_345_678n, 'a');
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () => db.db.transaction().execute((trx) => checkThresholds(trx, [channelId]))),
    );
    const created = results.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
    expect(created).toHaveLength(1);
    const batches = await db.db
      .selectFrom('payouts')
      .select(['amount', 'status'])
      .where('channel_id', '=', channelId)
      .execute();
    expect(batches).toEqual([{ amount: '12345678', status: 'pending' }]);

    // USDT arriving while the batch is open waits for the next batch.
    await creditUsdt(channelId, 20_000_000n, 'b');
    await db.db.transaction().execute((trx) => checkThresholds(trx, [channelId]));
    expect(
      await db.db.selectFrom('payouts').select('amount').where('channel_id', '=', channelId).execute(),
    ).toHaveLength(1);
    const available = await db.db
      .selectFrom('ledger_accounts')
      .select('balance')
      .where('code', '=', `channel:${channelId}`)
      .where('asset', '=', 'usdt')
      .executeTakeFirstOrThrow();
    expect(available.balance).toBe('20000000');
  });

  it('USDT about to be credited counts toward the threshold', async () => {
    await insertThresholdChannel('-1004000000003', '500');
    await creditUsdt('-1004000000003', 3_000_000n, 'd');
    // The 2 USDT are never posted here: the transaction is rolled back once the outcome is known.
    class Rollback extends Error {}
    let outcome: Awaited<ReturnType<typeof check>> | undefined;
    await db.db
      .transaction()
      .execute(async (trx) => {
        outcome = await check(trx, ['-1004000000003'], new Map([['-1004000000003', 2_000_000n]]));
        throw new Rollback();
      })
      .catch((error: unknown) => {
        if (!(error instanceof Rollback)) throw error;
      });
    expect(outcome?.batchIds).toHaveLength(1);
    expect(outcome?.journals[0]?.entries.map((e) => e.amount)).toEqual([-5_000_000n, 5_000_000n]);
    expect(
      await db.db.selectFrom('payouts').select('payout_id').where('channel_id', '=', '-1004000000003').execute(),
    ).toEqual([]);
  });

  it('a channel below its threshold, or on the instant strategy, gets no batch', async () => {
    await insertThresholdChannel('-1004000000002', '100000');
    await creditUsdt('-1004000000002', 999_999_999n, 'c'); // 999.999999 USDT < 1000.00 USD
    expect(await db.db.transaction().execute((trx) => checkThresholds(trx, ['-1004000000002']))).toEqual([]);
  });
});
