/**
 * The one stuck state with no row of its own: an instant channel's credited payment whose payout_instant job was
 * lost (or gave up) before it opened the payout. Nothing else would ever pay it, and the payout tables do not show
 * it, so the reconciler looks for it in payments: credited instant, not in review, not reversed after a refund,
 * something to pay, no payout ever opened for it, and no live payout_instant job. The job is queued again under its key; opening is idempotent (one
 * payout per payment, unique), so a race with a job that came back does no harm.
 */
import { sql } from 'kysely';
import type { Db } from '../../db/index.ts';
import { enqueue, noLiveJobWithKey } from '../../jobs/index.ts';
import { PAYOUT_JOB_MAX_ATTEMPTS } from '../payout/run.ts';

export async function reopenInstantPayouts(
  db: Db,
  options: { stuckAfterMs: number; limit: number },
): Promise<string[]> {
  const { rows } = await sql<{ payment_id: string }>`
    select p.payment_id::text as payment_id
      from payments p
     where p.payout_strategy = 'instant' and p.credited_at is not null and p.payout_id is null and p.review_reason is null
       and p.reversed_at is null
       and p.net_amount > 0
       and p.credited_at < now() - make_interval(secs => ${options.stuckAfterMs / 1_000})
       and not exists (select 1 from payouts o where o.payment_id = p.payment_id)
       and ${noLiveJobWithKey([sql`'payout_instant:' || p.payment_id`])}
     order by p.credited_at
     limit ${options.limit}`.execute(db);
  const ids = rows.map((r) => r.payment_id);
  if (ids.length === 0) return ids;
  await db.transaction().execute(async (trx) => {
    // replace: a job of this key that gave up is set aside and a fresh one queued (unsafe_dedupe would keep the dead one).
    for (const paymentId of ids)
      await enqueue(
        trx,
        'payout_instant',
        { paymentId },
        { jobKey: `payout_instant:${paymentId}`, jobKeyMode: 'replace', maxAttempts: PAYOUT_JOB_MAX_ATTEMPTS },
      );
  });
  return ids;
}
