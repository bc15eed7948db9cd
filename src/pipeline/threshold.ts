/**
 * The threshold check: a threshold channel whose available USDT reaches its threshold gets exactly one payout batch
 * holding exactly that balance, moved aside in the ledger, with its payout job, in the caller's transaction. The
 * channel row lock and the one-open-batch index make concurrent checks for one channel create one batch at most.
 *
 * Channel rows are locked first (in id order) and the reservation journals are returned, not posted: the caller
 * posts every journal last, so balance rows stay locked only from there to the commit.
 */
import { randomBytes } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import type { Database } from '../db/index.ts';
import { enqueue } from '../jobs/index.ts';
import type { Db } from '../db/index.ts';
import { accounts, postJournal, type JournalInput } from '../ledger/index.ts';

/** USDT has 6 decimals, USD cents 2: one cent is 10^4 USDT units (USDT valued at one USD). */
const USDT_UNITS_PER_CENT = 10n ** 4n;

export interface ThresholdOutcome {
  batchIds: string[];
  /** One `payout_reserved` journal per batch, for the caller to post last. */
  journals: JournalInput[];
}

/**
 * @param incoming USDT units the caller is about to credit each channel (in a journal not yet posted): they count
 *   toward the threshold as if already booked.
 */
export async function checkThresholds(trx: Transaction<Database>, channelIds: readonly string[], payoutMaxAttempts: number, incoming: ReadonlyMap<string, bigint> = new Map()): Promise<ThresholdOutcome> {
  const outcome: ThresholdOutcome = { batchIds: [], journals: [] };
  for (const channelId of [...channelIds].sort()) {
    const channel = await trx.selectFrom('channels').selectAll().where('channel_id', '=', channelId).forUpdate().executeTakeFirst();
    if (!channel || channel.payout_strategy !== 'threshold' || channel.threshold_usd_cents === null) continue;
    const account = accounts.channel(channelId, 'usdt');
    const balanceRow = await trx.selectFrom('ledger_accounts').select('balance').where('code', '=', account.code).where('asset', '=', 'usdt').executeTakeFirst();
    const balance = BigInt(balanceRow?.balance ?? '0') + (incoming.get(channelId) ?? 0n);
    if (balance === 0n || balance < BigInt(channel.threshold_usd_cents) * USDT_UNITS_PER_CENT) continue;
    const open = await trx.selectFrom('payout_batches').select('batch_id').where('channel_id', '=', channelId).where('status', 'not in', ['completed', 'failed', 'cancelled']).executeTakeFirst();
    if (open) continue;

    const batchId = `pb_${randomBytes(8).toString('hex')}`;
    await trx
      .insertInto('payout_batches')
      .values({ batch_id: batchId, channel_id: channelId, status: 'pending', asset: 'usdt', amount: balance, payout_currency: channel.payout_currency, payout_network: channel.payout_network, wallet_address: channel.wallet_address, reason: null })
      .execute();
    await trx
      .updateTable('payments')
      .set({ payout_batch_id: batchId, updated_at: sql`now()` })
      .where('channel_id', '=', channelId)
      .where('conversion_status', '=', 'completed')
      .where('payout_batch_id', 'is', null)
      .execute();
    await enqueue(trx, 'payout_batch', { batchId }, { jobKey: `payout_batch:${batchId}`, jobKeyMode: 'replace', maxAttempts: payoutMaxAttempts });
    outcome.batchIds.push(batchId);
    outcome.journals.push({ kind: 'payout_reserved', ref: batchId, entries: [
      { account, amount: -balance },
      { account: accounts.channelPayout(channelId, 'usdt'), amount: balance },
    ] });
  }
  return outcome;
}

/** The check on its own (after a channel's threshold or strategy changed): batches, then their journals. */
export async function runThresholdCheck(db: Db, channelIds: readonly string[], payoutMaxAttempts: number): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    const outcome = await checkThresholds(trx, channelIds, payoutMaxAttempts);
    for (const journal of outcome.journals) await postJournal(trx, journal);
    return outcome.batchIds;
  });
}
