/** Payments by pipeline stage, each a count over a small partial index (migrations 001, 005, 009), and those in review. */
import { sql } from 'kysely';
import type { Db, PaymentStatus } from '../db/index.ts';
import { decimalsOf, isAssetCode, parseUnits } from '../money/index.ts';
import { paymentActionsFor, REVIEW, reviewCode } from '../pipeline/index.ts';
import { formatAsset, WAITING, waited } from './amounts.ts';
import type { ReviewPayment } from './types.ts';

/** Payments in review listed; the pipeline's inReview count says if there are more (unknown channels can pile up). */
const REVIEW_SHOWN = 100;

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

type Row = {
  payment_id: string;
  channel_id: string;
  status: PaymentStatus;
  review_reason: string;
  pay_amount: string;
  actually_paid: string;
  pay_currency: string;
  price_amount: string;
  price_currency: string;
  outcome_amount: string;
  outcome_currency: string;
  asset: string | null;
  gross_amount: string | null;
  net_amount: string | null;
  restated_outcome_amount: string | null;
  restated_outcome_currency: string | null;
  credited_at: Date | null;
  updated_at: Date;
  waiting: string;
};

/**
 * Payments a person must decide on, the longest waiting first. `review_reason is not null` is the payments_review
 * partial index (on updated_at), so this never reads the credited history.
 */
export async function reviewPayments(db: Db): Promise<ReviewPayment[]> {
  const { rows } = await sql<Row>`
    select payment_id::text as payment_id, channel_id, status, review_reason,
           pay_amount::text as pay_amount, actually_paid::text as actually_paid, pay_currency,
           price_amount::text as price_amount, price_currency, outcome_amount::text as outcome_amount, outcome_currency,
           asset, gross_amount::text as gross_amount, net_amount::text as net_amount,
           restated_outcome_amount::text as restated_outcome_amount, restated_outcome_currency, credited_at, updated_at,
           ${WAITING}
    from payments where review_reason is not null
    order by updated_at, payment_id limit ${REVIEW_SHOWN}`.execute(db);
  return rows.map((r) => ({
    paymentId: r.payment_id,
    channelId: r.channel_id,
    status: r.status,
    reason: r.review_reason,
    actions: paymentActionsFor(r.review_reason),
    reported: {
      payAmount: r.pay_amount,
      actuallyPaid: r.actually_paid,
      payCurrency: r.pay_currency,
      priceAmount: r.price_amount,
      priceCurrency: r.price_currency,
      outcomeAmount: r.outcome_amount,
      outcomeCurrency: r.outcome_currency,
    },
    // A refund after the credit, or a changed amount: what is booked is what reverse takes back or ignore keeps.
    credited:
      r.credited_at === null || r.asset === null || r.gross_amount === null || r.net_amount === null
        ? null
        : {
            asset: r.asset,
            gross: formatAsset(BigInt(r.gross_amount), r.asset),
            net: formatAsset(BigInt(r.net_amount), r.asset),
          },
    creditable: creditable(r),
    ...waited(r),
  }));
}

/**
 * What the credit action would book (docs/architecture.md, Payments in review): a partial's stored outcome, or a top-up's
 * difference between the later IPN's outcome and the gross already credited. The confirmation a person answers names
 * this, never the partial's outcome for a top-up.
 */
function creditable(r: Row): ReviewPayment['creditable'] {
  const code = reviewCode(r.review_reason);
  if (code === REVIEW.partiallyPaid) return { asset: r.outcome_currency, amount: r.outcome_amount };
  const { asset, restated_outcome_amount: restated, gross_amount: gross } = r;
  if (
    code !== REVIEW.topUp ||
    restated === null ||
    asset === null ||
    r.restated_outcome_currency !== asset ||
    gross === null ||
    !isAssetCode(asset)
  )
    return null;
  const more = parseUnits(restated, decimalsOf(asset)) - BigInt(gross);
  return more > 0n ? { asset, amount: formatAsset(more, asset) } : null;
}
