/** Payments by pipeline stage, each a count over a small partial index (migrations 001, 005, 009). */
import { sql } from 'kysely';
import type { Db } from '../db/index.ts';

export interface PaymentStages {
  readonly awaitingConversion: number;
  readonly awaitingPayout: number;
  readonly inReview: number;
}

export async function paymentStages(db: Db): Promise<PaymentStages> {
  const { rows } = await sql<{ awaiting_conversion: number; awaiting_payout: number; in_review: number }>`
    select (select count(*) from payments where conversion_status = 'pending')::int as awaiting_conversion,
           (select count(*) from payments where conversion_status = 'completed' and payout_id is null)::int as awaiting_payout,
           (select count(*) from payments where review_reason is not null)::int as in_review`.execute(db);
  const r = rows[0] ?? { awaiting_conversion: 0, awaiting_payout: 0, in_review: 0 };
  return { awaitingConversion: r.awaiting_conversion, awaitingPayout: r.awaiting_payout, inReview: r.in_review };
}
