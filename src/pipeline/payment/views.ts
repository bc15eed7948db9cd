/** The read side of payments: what the admin API shows, amounts as decimal strings. */
import type { Selectable } from 'kysely';
import type { Db, PaymentsTable } from '../../db/index.ts';
import { decimalsOf, formatUnits, isAssetCode } from '../../money/index.ts';

export interface PaymentView {
  readonly paymentId: string;
  readonly channelId: string;
  readonly userId: string;
  readonly orderId: string;
  readonly status: string;
  readonly asset: string | null;
  readonly grossAmount: string | null;
  readonly feeAmount: string | null;
  readonly netAmount: string | null;
  readonly feePercent: string | null;
  readonly payoutStrategy: string | null;
  readonly creditedAt: string | null;
  readonly reviewReason: string | null;
  /** The last decision a person took on it in review (credit, ignore, reverse), by whom and when. */
  readonly reviewAction: { action: string; by: string | null; at: string | null } | null;
  /** Set when a refund's reversal took the credit back (the credit's amounts stay as what was credited). */
  readonly reversedAt: string | null;
  /** A repeated deposit: the payment it followed (NOWPayments' parent_payment_id). */
  readonly parentPaymentId: string | null;
  /** The repeated deposits that followed this payment, oldest first (at most CHILDREN_SHOWN). */
  readonly childPaymentIds: string[];
  readonly reported: {
    payCurrency: string;
    payAmount: string;
    actuallyPaid: string;
    priceAmount: string;
    priceCurrency: string;
    outcomeAmount: string;
    outcomeCurrency: string;
  };
  readonly conversion: {
    status: string | null;
    attempts: number;
    lastAttemptAt: string | null;
    holdUntil: string | null;
    usdtAmount: string | null;
    rate: string | null;
  };
  /** NOWPayments' check of the crediting IPN (NOWPAYMENTS_API_KEY set); null when none was asked for. */
  readonly confirmation: {
    requestedAt: string;
    deadlineAt: string | null;
    confirmedAt: string | null;
    attempts: number;
    lastError: string | null;
  } | null;
  /**
   * The last IPN that restated a credited payment otherwise (a top-up, a changed amount), null when none did: its
   * outcome, until when NOWPayments' check of it is waited for (null when not asked or answered), and when NOWPayments
   * confirmed it (a top-up is creditable with NOWPAYMENTS_API_KEY set only then).
   */
  readonly restated: {
    outcomeAmount: string;
    outcomeCurrency: string;
    confirmDeadlineAt: string | null;
    confirmedAt: string | null;
  } | null;
  readonly ipnCount: number;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** A pay address reused without end must not make one payment's view unbounded. */
export const CHILDREN_SHOWN = 100;

export async function getPayment(db: Db, paymentId: string): Promise<PaymentView | undefined> {
  if (!/^[1-9][0-9]{0,19}$/.test(paymentId)) return undefined;
  const row = await db.selectFrom('payments').selectAll().where('payment_id', '=', paymentId).executeTakeFirst();
  if (!row) return undefined;
  const children = await db
    .selectFrom('payments')
    .select('payment_id')
    .where('parent_payment_id', '=', paymentId)
    .orderBy('created_at')
    .orderBy('payment_id')
    .limit(CHILDREN_SHOWN)
    .execute();
  return toView(
    row,
    children.map((c) => c.payment_id),
  );
}

function toView(row: Selectable<PaymentsTable>, childPaymentIds: string[]): PaymentView {
  const amount = (units: string | null) =>
    units === null || row.asset === null || !isAssetCode(row.asset)
      ? null
      : formatUnits(BigInt(units), decimalsOf(row.asset));
  return {
    paymentId: row.payment_id,
    channelId: row.channel_id,
    userId: row.user_id,
    orderId: row.order_id,
    status: row.status,
    asset: row.asset,
    grossAmount: amount(row.gross_amount),
    feeAmount: amount(row.fee_amount),
    netAmount: amount(row.net_amount),
    feePercent: row.fee_percent,
    payoutStrategy: row.payout_strategy,
    creditedAt: row.credited_at?.toISOString() ?? null,
    reviewReason: row.review_reason,
    reviewAction:
      row.review_action === null
        ? null
        : { action: row.review_action, by: row.review_action_by, at: row.review_action_at?.toISOString() ?? null },
    reversedAt: row.reversed_at?.toISOString() ?? null,
    parentPaymentId: row.parent_payment_id,
    childPaymentIds,
    reported: {
      payCurrency: row.pay_currency,
      payAmount: row.pay_amount,
      actuallyPaid: row.actually_paid,
      priceAmount: row.price_amount,
      priceCurrency: row.price_currency,
      outcomeAmount: row.outcome_amount,
      outcomeCurrency: row.outcome_currency,
    },
    conversion: {
      status: row.conversion_status,
      attempts: row.conversion_attempts,
      lastAttemptAt: row.conversion_last_attempt_at?.toISOString() ?? null,
      holdUntil: row.conversion_hold_until?.toISOString() ?? null,
      usdtAmount: row.usdt_amount === null ? null : formatUnits(BigInt(row.usdt_amount), decimalsOf('usdt')),
      rate: row.conversion_rate,
    },
    confirmation:
      row.confirm_requested_at === null
        ? null
        : {
            requestedAt: row.confirm_requested_at.toISOString(),
            deadlineAt: row.confirm_deadline_at?.toISOString() ?? null,
            confirmedAt: row.confirmed_at?.toISOString() ?? null,
            attempts: row.confirm_attempts,
            lastError: row.confirm_last_error,
          },
    restated:
      row.restated_outcome_amount === null
        ? null
        : {
            outcomeAmount: row.restated_outcome_amount,
            outcomeCurrency: row.restated_outcome_currency as string,
            confirmDeadlineAt: row.restated_confirm_deadline_at?.toISOString() ?? null,
            confirmedAt: row.restated_confirmed_at?.toISOString() ?? null,
          },
    ipnCount: row.ipn_count,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}
