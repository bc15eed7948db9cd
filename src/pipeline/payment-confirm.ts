/**
 * payment_confirm: a crediting IPN (finished, or partially_paid under PARTIAL_PAYMENTS=credit) is credited only once
 * NOWPayments' API agrees with it on status, outcome amount and currency, and on the order when the API names one.
 * The IPN's signature proves only that someone holds the IPN secret; the API answers from NOWPayments' books.
 *
 * The call happens outside any transaction; its verdict is applied in one transaction under the payment's row lock,
 * and only if the row still says what was compared (another IPN may have moved it meanwhile: then it is checked
 * again). Every write names the state it leaves (not credited, not in review), and the credit is guarded by the
 * ledger's unique journal key besides, so any number of runs of this job credit once.
 *
 * - agrees: credited as intake credits (fee split, journal, conversion pending or the instant payout job), confirmed_at.
 * - disagrees, or NOWPayments knows no such payment: review (payment_unconfirmed, both values) + a critical alert.
 * - no usable answer (down, 5xx, slow, our key refused): the attempt is recorded and the job fails, so the queue runs
 *   it again with its backoff; on the first run past the payment's confirm deadline it goes to review instead.
 */
import { sql, type Selectable, type Transaction } from 'kysely';
import { raiseAlert } from '../alerts/index.ts';
import type { Database, Db, PaymentsTable } from '../db/index.ts';
import type { ApiPayment, NowPaymentsApi, PaymentLookup } from '../integrations/nowpayments/index.ts';
import type { Logger } from '../log.ts';
import { AmountError, decimalsOf, parseUnits } from '../money/index.ts';
import { creditColumns, creditEffects, creditsOnStatus, REVIEW, storedCredit, type IntakeSettings } from './intake.ts';

export interface ConfirmDeps {
  readonly db: Db;
  readonly logger: Logger;
  /** ALERT_WEBHOOK_URL is set: the alert is queued for the webhook too. */
  readonly notifyAlerts: boolean;
  /** Absent when NOWPAYMENTS_API_KEY is unset: payments queued for a check wait (the job fails) rather than credit unchecked. */
  readonly api: NowPaymentsApi | undefined;
  readonly intake: IntakeSettings;
  /** Called after a threshold channel's credit committed: asks for a conversion check soon. */
  readonly onThresholdCredit?: () => void;
}

export type ConfirmOutcome = 'credited' | 'review' | 'nothing';

/** Thrown when NOWPayments gave no usable answer and the deadline is not past: the queue retries with its backoff. */
export class ConfirmationPending extends Error {
  override name = 'ConfirmationPending';
}

type PaymentRow = Selectable<PaymentsTable>;

/** Passes when the row changed between the call and the lock: each pass asks NOWPayments again about the new state. */
const MAX_PASSES = 3;

export async function confirmPayment(deps: ConfirmDeps, paymentId: string): Promise<ConfirmOutcome> {
  const logger = deps.logger.child({ paymentId });
  for (let pass = 0; pass < MAX_PASSES; pass++) {
    const seen = await deps.db.selectFrom('payments').selectAll().where('payment_id', '=', paymentId).executeTakeFirst();
    if (!seen || !awaitsConfirmation(seen, deps.intake)) return 'nothing';
    if (!deps.api) throw new ConfirmationPending(`payment ${paymentId} waits for NOWPayments' confirmation, but NOWPAYMENTS_API_KEY is unset: it is not credited on its IPN alone`);
    const lookup = await deps.api.getPayment(paymentId);
    const verdict = await deps.db.transaction().execute((trx) => applyLookup(trx, deps, logger, seen, lookup));
    if (verdict === 'changed') continue;
    if (verdict === 'retry') throw new ConfirmationPending(`NOWPayments gave no usable answer about payment ${paymentId}: ${(lookup as { detail: string }).detail}`);
    if (verdict === 'threshold' || verdict === 'instant') {
      logger.info({ event: 'payment_confirmed', strategy: verdict }, 'NOWPayments confirmed the payment: credited');
      if (verdict === 'threshold') deps.onThresholdCredit?.();
      return 'credited';
    }
    return verdict;
  }
  // Moved under us on every pass: whatever moves it queues its own check when it credits.
  return 'nothing';
}

/** A payment whose credit waits for this job: a crediting status, not credited, not in review, a check asked for. */
function awaitsConfirmation(row: PaymentRow, settings: IntakeSettings): boolean {
  return row.credited_at === null && row.review_reason === null && row.confirm_requested_at !== null && creditsOnStatus(row.status, settings) && storedCredit(row) !== null;
}

/** What was compared with NOWPayments: the row must still say this when the verdict is applied. */
function sameClaim(a: PaymentRow, b: PaymentRow): boolean {
  return a.status === b.status && a.outcome_amount === b.outcome_amount && a.outcome_currency === b.outcome_currency && a.order_id === b.order_id && a.channel_id === b.channel_id;
}

async function applyLookup(trx: Transaction<Database>, deps: ConfirmDeps, logger: Logger, seen: PaymentRow, lookup: PaymentLookup): Promise<ConfirmOutcome | 'changed' | 'retry' | 'instant' | 'threshold'> {
  const row = await trx.selectFrom('payments').selectAll().where('payment_id', '=', seen.payment_id).forUpdate().executeTakeFirstOrThrow();
  if (!awaitsConfirmation(row, deps.intake)) return 'nothing';
  if (!sameClaim(seen, row)) return 'changed';
  const id = row.payment_id;
  const ipn = claimOf(row);

  if (lookup.kind === 'unavailable') {
    const { rows } = await sql<{ past: boolean }>`select now() >= ${row.confirm_deadline_at} as past`.execute(trx);
    if (rows[0]?.past !== true) {
      await trx.updateTable('payments').set({ confirm_attempts: sql`confirm_attempts + 1`, confirm_last_error: lookup.detail }).where('payment_id', '=', id).where('credited_at', 'is', null).where('review_reason', 'is', null).execute();
      logger.warn({ event: 'payment_confirm_unavailable', detail: lookup.detail, attempts: row.confirm_attempts + 1 }, 'NOWPayments gave no usable answer: the check is retried');
      return 'retry';
    }
    const reason = `${REVIEW.unconfirmed}: NOWPayments unreachable until the deadline (${row.confirm_deadline_at?.toISOString()}); last: ${lookup.detail}`;
    await toReview(trx, deps, logger, row, reason, { ipn, nowpayments: null, error: lookup.detail, attempts: row.confirm_attempts + 1 });
    return 'review';
  }
  if (lookup.kind === 'not_found') {
    const reason = `${REVIEW.unconfirmed}: NOWPayments knows no payment ${id}; the IPN says ${ipn.status} ${ipn.outcomeAmount} ${ipn.outcomeCurrency}`;
    await toReview(trx, deps, logger, row, reason, { ipn, nowpayments: null, error: lookup.detail });
    return 'review';
  }
  const differences = compare(row, lookup.payment);
  if (differences.length > 0) {
    const reason = `${REVIEW.unconfirmed}: NOWPayments disagrees with the IPN: ${differences.join('; ')}`;
    await toReview(trx, deps, logger, row, reason, { ipn, nowpayments: lookup.payment, differences });
    return 'review';
  }

  const channel = await trx.selectFrom('channels').select('payout_strategy').where('channel_id', '=', row.channel_id).executeTakeFirst();
  const basis = storedCredit(row);
  if (!channel || !basis) return 'nothing';
  const credited = await trx
    .updateTable('payments')
    .set({ ...creditColumns(basis, channel.payout_strategy, deps.intake), confirmed_at: sql`now()`, confirm_last_error: null, updated_at: sql`now()` })
    .where('payment_id', '=', id)
    .where('credited_at', 'is', null)
    .where('review_reason', 'is', null)
    .where('status', '=', row.status)
    .executeTakeFirst();
  if (credited.numUpdatedRows !== 1n) throw new Error(`payment ${id} changed under its row lock`);
  await creditEffects(trx, basis, channel.payout_strategy, deps.intake);
  return channel.payout_strategy;
}

function claimOf(row: PaymentRow) {
  return { status: row.status, outcomeAmount: row.outcome_amount, outcomeCurrency: row.outcome_currency, orderId: row.order_id };
}

/** Each field the API contradicts, naming both values. Amounts are compared in the asset's smallest unit. */
function compare(row: PaymentRow, api: ApiPayment): string[] {
  const differences: string[] = [];
  if (api.status !== row.status) differences.push(`payment_status: IPN ${row.status}, NOWPayments ${api.status}`);
  if (api.outcomeCurrency !== row.outcome_currency) differences.push(`outcome_currency: IPN ${row.outcome_currency}, NOWPayments ${api.outcomeCurrency ?? 'none'}`);
  const basis = storedCredit(row) as NonNullable<ReturnType<typeof storedCredit>>;
  if (!sameUnits(api.outcomeAmount, basis.grossUnits, decimalsOf(basis.asset))) differences.push(`outcome_amount: IPN ${row.outcome_amount}, NOWPayments ${api.outcomeAmount ?? 'none'}`);
  if (api.orderId !== null && api.orderId !== row.order_id) differences.push(`order_id: IPN ${row.order_id}, NOWPayments ${api.orderId}`);
  return differences;
}

function sameUnits(text: string | null, units: bigint, decimals: number): boolean {
  if (text === null) return false;
  try {
    return parseUnits(text, decimals) === units;
  } catch (error) {
    // More decimals than the asset has: it cannot be the amount the IPN gave.
    if (error instanceof AmountError) return false;
    throw error;
  }
}

async function toReview(trx: Transaction<Database>, deps: ConfirmDeps, logger: Logger, row: PaymentRow, reason: string, evidence: Record<string, unknown>): Promise<void> {
  const moved = await trx
    .updateTable('payments')
    .set({ review_reason: reason, updated_at: sql`now()`, ...(evidence.error !== undefined && { confirm_last_error: String(evidence.error) }) })
    .where('payment_id', '=', row.payment_id)
    .where('credited_at', 'is', null)
    .where('review_reason', 'is', null)
    .executeTakeFirst();
  if (moved.numUpdatedRows !== 1n) throw new Error(`payment ${row.payment_id} changed under its row lock`);
  await raiseAlert(
    trx,
    {
      rule: 'payment_unconfirmed',
      subject: row.payment_id,
      severity: 'critical',
      message: `payment ${row.payment_id} (channel ${row.channel_id}) not credited, kept for review: ${reason}`,
      details: { paymentId: row.payment_id, channelId: row.channel_id, reason, ...evidence },
    },
    { logger, notify: deps.notifyAlerts },
  );
}
