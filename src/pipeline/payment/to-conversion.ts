/**
 * Credited instant payments whose ETH is on their channel (their payout failed or was cancelled, or was never
 * opened) join the next conversion, once their channel takes threshold payouts: at the strategy switch
 * (strategy.ts), and when such a payout ends after the switch (returnFundsIn).
 */
import { sql, type Transaction } from 'kysely';
import type { Database } from '../../db/index.ts';
import { accounts } from '../../ledger/index.ts';
import { enqueueConversionBatch } from '../conversion/run.ts';

/**
 * Moves them, the channel's or one payment, and nudges the conversion batch when any moved; returns their ids. In
 * the caller's transaction, under the channel's credit lock (src/channels/lock.ts), so no switch interleaves.
 */
export async function moveInstantToConversion(
  trx: Transaction<Database>,
  scope: { readonly channelId: string } | { readonly paymentId: string },
): Promise<string[]> {
  const which = 'channelId' in scope ? sql`p.channel_id = ${scope.channelId}` : sql`p.payment_id = ${scope.paymentId}`;
  // A payment whose payout is being opened is locked: this waits, then reads the payment's row again, but the
  // subqueries keep this statement's snapshot and miss the new payout. The payment's own link must also show no
  // payout, or one that ended.
  // What an ended payout's exchange kept of a refund that came back short is ChangeNow's (booked as its cost when
  // the payout failed), not on the channel: counted as moved on, so the conversion takes only what came back.
  const { rows } = await sql<{ payment_id: string }>`
    update payments p set payout_strategy = 'threshold', conversion_status = 'pending', payout_id = null,
      net_moved_wei = p.net_moved_wei + coalesce((
        select sum(e.amount) from payouts o
          join ledger_journals j on j.kind = 'payout_returned' and j.ref = o.payout_id
          join ledger_entries e on e.journal_id = j.id
          join ledger_accounts a on a.id = e.account_id
        where o.payment_id = p.payment_id and a.code = ${accounts.changenow('eth').code} and a.asset = p.asset), 0),
      updated_at = now()
    where ${which} and p.payout_strategy = 'instant' and p.credited_at is not null and p.reversed_at is null
      and p.review_reason is null and p.net_amount > 0
      and not exists (select 1 from payouts o where o.payment_id = p.payment_id and o.status not in ('failed', 'cancelled'))
      and (p.payout_id is null
        or exists (select 1 from payouts o where o.payout_id = p.payout_id and o.status in ('failed', 'cancelled')))
    returning p.payment_id::text`.execute(trx);
  if (rows.length > 0) await enqueueConversionBatch(trx);
  return rows.map((r) => r.payment_id);
}
