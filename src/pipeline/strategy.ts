/**
 * A channel's payout strategy changed: no unit it holds may be stranded by the switch. Run in every channel save's
 * transaction (and safe to run any number of times: it looks at the channel's strategy now, not at what it was).
 *
 * - Now threshold: credited instant payments whose ETH is on the channel (their payout failed or was cancelled, or
 *   was never opened) join the next conversion, for what came back to the channel; an instant payout job still
 *   queued for one then skips it.
 * - Now instant: threshold payments still waiting for a conversion (not in one, and never in an instant payout) are
 *   paid as instant payments, each by its own payout_instant job; USDT already on the channel is paid out as one batch at once (the threshold
 *   check treats an instant channel's USDT as due).
 * Payments in a conversion, or in a payout on its way, finish as they are and land on whatever strategy the channel
 * has when they settle.
 */
import { sql, type Transaction } from 'kysely';
import { lockChannelForSave } from '../channels/lock.ts';
import type { Database } from '../db/index.ts';
import { enqueue } from '../jobs/index.ts';
import { PAYOUT_JOB_MAX_ATTEMPTS } from './payout/run.ts';
import { moveInstantToConversion } from './payment/to-conversion.ts';

export interface Rehomed {
  /** Instant payments whose ETH now waits for a conversion. */
  readonly toConversion: readonly string[];
  /** Threshold payments now paid as instant payments. */
  readonly toInstant: readonly string[];
}

/**
 * In the channel save's transaction (see upsertChannel), so a switch and its payments' moves commit together. The save
 * took the channel's credit lock exclusively before writing the channel (src/channels/lock.ts): every payment credited
 * at the version before it has committed, so the statements below see it, and no credit books the old version after
 * them. Taking the lock again here costs nothing in that transaction, and keeps a caller that forgot it from racing.
 */
export async function rehomeChannelPayments(trx: Transaction<Database>, channelId: string): Promise<Rehomed> {
  await lockChannelForSave(trx, channelId);
  const channel = await trx
    .selectFrom('channels')
    .select('payout_strategy')
    .where('channel_id', '=', channelId)
    .forNoKeyUpdate()
    .executeTakeFirst();
  if (!channel) return { toConversion: [], toInstant: [] };
  if (channel.payout_strategy === 'threshold') {
    return { toConversion: await moveInstantToConversion(trx, { channelId }), toInstant: [] };
  }
  // A payment that had an instant payout before (ended, its ETH back on the channel) cannot have another (one per
  // payment): it stays with the conversion.
  const { rows } = await sql<{ payment_id: string }>`
    update payments p set payout_strategy = 'instant', conversion_status = null, conversion_hold_until = null, updated_at = now()
    where p.channel_id = ${channelId} and p.payout_strategy = 'threshold' and p.conversion_status = 'pending'
      and p.exchange_cost_wei = 0 and p.net_moved_wei = 0
      and not exists (select 1 from payouts o where o.payment_id = p.payment_id)
    returning p.payment_id::text`.execute(trx);
  for (const { payment_id: paymentId } of rows) {
    await enqueue(
      trx,
      'payout_instant',
      { paymentId },
      { jobKey: `payout_instant:${paymentId}`, jobKeyMode: 'replace', maxAttempts: PAYOUT_JOB_MAX_ATTEMPTS },
    );
  }
  return { toConversion: [], toInstant: rows.map((r) => r.payment_id) };
}
