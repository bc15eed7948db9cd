/**
 * Ways a conversion ends once its ETH left, shared by the poll and a person's resolve: the ETH came back whole or
 * short (the shortfall is ChangeNow's cost, shared among the payments), or it is lost (the platform bears it).
 */
import { sql, type Transaction } from 'kysely';
import type { Database } from '../../db/index.ts';
import { accounts, postJournal, type EntryInput } from '../../ledger/index.ts';
import { splitProportionally } from '../../money/index.ts';
import { enqueueConversionBatch, releasePaymentsIn } from './run.ts';
import { claimRefund } from '../refunds.ts';

/**
 * Out of review, a person's retry or resolve: in review a conversion's payments are 'failed' (kept out of every
 * batch); back out they are this conversion's again ('converting'), which is what the poll's, the release's and each
 * outcome's own guarded updates expect.
 */
export async function reclaimPayments(trx: Transaction<Database>, conversionId: string): Promise<void> {
  await trx
    .updateTable('payments')
    .set({ conversion_status: 'converting', updated_at: sql`now()` })
    .where('conversion_id', '=', conversionId)
    .where('conversion_status', '=', 'failed')
    .execute();
}

/**
 * The refund `refundHash` brought `returnedWei` of the conversion's ETH back: the hash is used for this conversion
 * only, the shortfall (if any) is split among its payments by their ETH (largest remainder, exact) and booked from
 * their channels to ChangeNow, each payment remembers what it lost (exchange_cost_wei), and the payments go back to
 * pending, worth that much less. False when the hash already returned funds for something else (nothing changed).
 */
export async function returnConversionFunds(
  trx: Transaction<Database>,
  conversionId: string,
  refundHash: string,
  returnedWei: bigint,
  reason: string,
): Promise<boolean> {
  const conversion = await trx
    .selectFrom('conversions')
    .select(['amount_wei'])
    .where('conversion_id', '=', conversionId)
    .executeTakeFirstOrThrow();
  if (
    !(await claimRefund(trx, {
      txHash: refundHash,
      purpose: 'conversion',
      ref: conversionId,
      asset: 'eth',
      amount: returnedWei,
    }))
  )
    return false;
  // More than was sent is not booked to anyone here: `check-ledger --chain` shows the surplus for a person.
  const shortfall = BigInt(conversion.amount_wei) - returnedWei;
  if (shortfall > 0n) await bookShortfall(trx, conversionId, shortfall);
  await releasePaymentsIn(trx, conversionId, 'failed', reason);
  // Their ETH is back on the host wallet: the next batch need not wait for the periodic check.
  await enqueueConversionBatch(trx);
  return true;
}

async function bookShortfall(trx: Transaction<Database>, conversionId: string, shortfall: bigint): Promise<void> {
  const rows = await trx
    .selectFrom('conversion_payments')
    .select(['payment_id', 'channel_id', 'net_wei'])
    .where('conversion_id', '=', conversionId)
    .orderBy('payment_id')
    .execute();
  const shares = splitProportionally(
    shortfall,
    rows.map((r) => BigInt(r.net_wei)),
  );
  const ids = rows.map((r) => r.payment_id);
  const units = shares.map((x) => x.toString());
  await sql`update payments p set exchange_cost_wei = p.exchange_cost_wei + s.share, updated_at = now()
    from unnest(${ids}::numeric[], ${units}::numeric[]) as s(payment_id, share)
    where p.payment_id = s.payment_id`.execute(trx);
  const byChannel = new Map<string, bigint>();
  rows.forEach((r, i) => byChannel.set(r.channel_id, (byChannel.get(r.channel_id) ?? 0n) + (shares[i] as bigint)));
  const entries: EntryInput[] = [];
  for (const [channelId, amount] of byChannel)
    if (amount > 0n) entries.push({ account: accounts.channel(channelId, 'eth'), amount: -amount });
  entries.push({ account: accounts.changenow('eth'), amount: shortfall });
  await postJournal(trx, { kind: 'conversion_shortfall', ref: conversionId, entries });
}
