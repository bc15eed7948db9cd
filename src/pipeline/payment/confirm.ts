/**
 * payment_confirm: a crediting IPN (finished, or partially_paid under PARTIAL_PAYMENTS=credit), or a partial payment a
 * person decided to credit, is credited only once NOWPayments' API agrees with it on status, outcome amount and
 * currency, and on the order when the API names one.
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
 *
 * A top-up (a later IPN saying more than a credited partial) is checked the same way before a person is offered its
 * credit: the restated status, outcome amount and currency (and order) must be NOWPayments' own. Agreeing puts it in
 * review as top_up (restated_confirmed_at: the credit action books the difference only then); anything else goes to
 * review as payment_unconfirmed with both values and the critical alert. The credit already booked stands either way.
 */
import { sql, type Selectable, type Transaction } from 'kysely';
import { reviewWithAlert } from '../alert.ts';
import { lockChannelForCredit } from '../../channels/lock.ts';
import type { Database, Db, PaymentsTable } from '../../db/index.ts';
import type { ApiPayment, NowPaymentsApi, PaymentLookup } from '../../integrations/nowpayments/index.ts';
import type { Logger } from '../../log.ts';
import { AmountError, decimalsOf, parseUnits, type AssetCode } from '../../money/index.ts';
import {
  alertReview,
  creditColumns,
  creditEffects,
  CREDIT_CHANNEL_COLUMNS,
  creditedText,
  creditsOnStatus,
  partialCreditDecided,
  restatementAwaitsCheck,
  REVIEW,
  storedCredit,
  topUpReason,
  type CreditBasis,
  type IntakeSettings,
} from './intake.ts';
import { paymentForUpdate } from './lock.ts';

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

/** offered: NOWPayments confirmed a top-up, which now waits in review for a person's credit. */
export type ConfirmOutcome = 'credited' | 'offered' | 'review' | 'nothing';

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
    const seen = await deps.db
      .selectFrom('payments')
      .selectAll()
      .where('payment_id', '=', paymentId)
      .executeTakeFirst();
    if (!seen || checkOf(seen, deps.intake) === null) return 'nothing';
    if (!deps.api)
      throw new ConfirmationPending(
        `payment ${paymentId} waits for NOWPayments' confirmation, but NOWPAYMENTS_API_KEY is unset: it is not credited on its IPN alone`,
      );
    const lookup = await deps.api.getPayment(paymentId);
    const verdict = await deps.db.transaction().execute((trx) => applyLookup(trx, deps, logger, seen, lookup));
    if (verdict === 'changed') continue;
    if (verdict === 'retry')
      throw new ConfirmationPending(
        `NOWPayments gave no usable answer about payment ${paymentId}: ${(lookup as { detail: string }).detail}`,
      );
    if (verdict === 'threshold' || verdict === 'instant') {
      logger.info({ event: 'payment_confirmed', strategy: verdict }, 'NOWPayments confirmed the payment: credited');
      if (verdict === 'threshold') deps.onThresholdCredit?.();
      return 'credited';
    }
    if (verdict === 'offered')
      logger.info({ event: 'top_up_confirmed' }, "NOWPayments confirmed the top-up: it waits for a person's credit");
    return verdict;
  }
  // Moved under us on every pass. Still waiting for this check (a partial whose amounts kept growing, say): the queue
  // runs it again with its backoff; nothing else may queue it.
  const last = await deps.db.selectFrom('payments').selectAll().where('payment_id', '=', paymentId).executeTakeFirst();
  if (last && checkOf(last, deps.intake) !== null)
    throw new ConfirmationPending(`payment ${paymentId} changed during each of ${MAX_PASSES} checks: asked again`);
  return 'nothing';
}

/** What this job checks of a payment: its credit, or a top-up of its credit; null when it waits for neither. */
type Check = 'credit' | 'top_up';

/**
 * credit: a crediting status (or a partial a person decided to credit), not credited, not in review, a check asked
 * for. top_up: credited, its restatement's check asked for and not answered (restatementAwaitsCheck).
 */
function checkOf(row: PaymentRow, settings: IntakeSettings): Check | null {
  const creditable = creditsOnStatus(row.status, settings) || partialCreditDecided(row);
  if (
    row.credited_at === null &&
    row.review_reason === null &&
    row.confirm_requested_at !== null &&
    creditable &&
    storedCredit(row) !== null
  )
    return 'credit';
  if (restatementAwaitsCheck(row) && topUpReason(row) !== null) return 'top_up';
  return null;
}

/** What was compared with NOWPayments: the row must still say this when the verdict is applied. */
function sameClaim(a: PaymentRow, b: PaymentRow): boolean {
  return (
    a.status === b.status &&
    a.outcome_amount === b.outcome_amount &&
    a.outcome_currency === b.outcome_currency &&
    a.order_id === b.order_id &&
    a.channel_id === b.channel_id &&
    a.gross_amount === b.gross_amount &&
    a.restated_outcome_amount === b.restated_outcome_amount &&
    a.restated_outcome_currency === b.restated_outcome_currency
  );
}

type Verdict = ConfirmOutcome | 'changed' | 'retry' | 'instant' | 'threshold';

async function applyLookup(
  trx: Transaction<Database>,
  deps: ConfirmDeps,
  logger: Logger,
  seen: PaymentRow,
  lookup: PaymentLookup,
): Promise<Verdict> {
  const locked = await lockUnmoved(trx, deps, seen);
  if (locked === 'nothing' || locked === 'changed') return locked;
  const { row, check } = locked;
  if (lookup.kind === 'unavailable') return onUnavailable(trx, deps, logger, row, check, lookup.detail);
  const ipn = claimOf(row, check);
  if (lookup.kind === 'not_found') {
    const reason = `${REVIEW.unconfirmed}: NOWPayments knows no payment ${row.payment_id}; ${whichIpn(row, check)} says ${ipn.status} ${ipn.outcomeAmount} ${ipn.outcomeCurrency}`;
    await toReview(trx, deps, logger, row, check, reason, { ipn, nowpayments: null, error: lookup.detail });
    return 'review';
  }
  const asset = check === 'credit' ? (storedCredit(row) as CreditBasis).asset : (row.asset as AssetCode);
  const differences = compare(ipn, asset, lookup.payment);
  if (differences.length > 0) {
    const reason = `${REVIEW.unconfirmed}: NOWPayments disagrees with ${whichIpn(row, check)}: ${differences.join('; ')}`;
    await toReview(trx, deps, logger, row, check, reason, { ipn, nowpayments: lookup.payment, differences });
    return 'review';
  }
  if (check === 'top_up') return offerTopUp(trx, deps, logger, row);
  return creditConfirmed(trx, deps, row);
}

/** The payment under its locks, with what this job checks of it; unless it moved since `seen` was read. */
async function lockUnmoved(
  trx: Transaction<Database>,
  deps: ConfirmDeps,
  seen: PaymentRow,
): Promise<{ row: PaymentRow; check: Check } | 'nothing' | 'changed'> {
  // Before the row lock (lock order: src/channels/lock.ts), on the channel the row named when read; sameClaim below
  // sends a row whose channel changed meanwhile round again.
  await lockChannelForCredit(trx, seen.channel_id);
  const row = await paymentForUpdate(trx, seen.payment_id).executeTakeFirstOrThrow();
  const check = checkOf(row, deps.intake);
  if (check === null) return 'nothing';
  if (check !== checkOf(seen, deps.intake) || !sameClaim(seen, row)) return 'changed';
  return { row, check };
}

// The evidence says which IPN was not confirmed: a top-up's names the credit it would add to.
function whichIpn(row: PaymentRow, check: Check): string {
  return check === 'credit' ? 'the IPN' : `the top-up IPN (credited ${creditedText(row)})`;
}

/** No usable answer: the attempt is recorded and asked again, until the deadline sends the payment to review. */
async function onUnavailable(
  trx: Transaction<Database>,
  deps: ConfirmDeps,
  logger: Logger,
  row: PaymentRow,
  check: Check,
  detail: string,
): Promise<'retry' | 'review'> {
  const deadline = check === 'credit' ? row.confirm_deadline_at : row.restated_confirm_deadline_at;
  const { rows } = await sql<{ past: boolean }>`select now() >= ${deadline} as past`.execute(trx);
  if (rows[0]?.past !== true) {
    await waiting(trx, row, check)
      .set({ confirm_attempts: sql`confirm_attempts + 1`, confirm_last_error: detail })
      .execute();
    logger.warn(
      { event: 'payment_confirm_unavailable', check, detail, attempts: row.confirm_attempts + 1 },
      'NOWPayments gave no usable answer: the check is retried',
    );
    return 'retry';
  }
  const ipn = claimOf(row, check);
  const about =
    check === 'credit'
      ? ''
      : ` about the top-up IPN (credited ${creditedText(row)}, the IPN says ${ipn.status} ${ipn.outcomeAmount} ${ipn.outcomeCurrency})`;
  const reason = `${REVIEW.unconfirmed}: NOWPayments unreachable until the deadline (${deadline?.toISOString()})${about}; last: ${detail}`;
  await toReview(trx, deps, logger, row, check, reason, {
    ipn,
    nowpayments: null,
    error: detail,
    attempts: row.confirm_attempts + 1,
  });
  return 'review';
}

/** NOWPayments agrees: credited as intake credits, with the channel's fee and strategy as they are now. */
async function creditConfirmed(
  trx: Transaction<Database>,
  deps: ConfirmDeps,
  row: PaymentRow,
): Promise<'nothing' | 'instant' | 'threshold'> {
  const id = row.payment_id;
  // In the credit's transaction, under the channel's credit lock: the fee and strategy booked are the channel's now,
  // not as they were when the check was asked for, and a save of the channel waits for this commit.
  const channel = await trx
    .selectFrom('channels')
    .select(CREDIT_CHANNEL_COLUMNS)
    .where('channel_id', '=', row.channel_id)
    .executeTakeFirst();
  const basis = storedCredit(row);
  if (!channel || !basis) return 'nothing';
  const credited = await trx
    .updateTable('payments')
    .set({
      ...creditColumns(basis, channel, deps.intake),
      confirmed_at: sql`now()`,
      confirm_last_error: null,
      updated_at: sql`now()`,
    })
    .where('payment_id', '=', id)
    .where('credited_at', 'is', null)
    .where('review_reason', 'is', null)
    .where('status', '=', row.status)
    .executeTakeFirst();
  if (credited.numUpdatedRows !== 1n) throw new Error(`payment ${id} changed under its row lock`);
  await creditEffects(trx, basis, channel, deps.intake);
  return channel.payout_strategy;
}

/** What the IPN under check says: the crediting IPN's stored amounts, or the restatement a top-up would credit to. */
function claimOf(row: PaymentRow, check: Check) {
  // A partial NOWPayments ended since keeps the partial IPN's amounts: that IPN is what is checked. NOWPayments' books
  // keep a partial payment as partially_paid with what arrived; an API that says expired (its outcome_amount then is
  // what was asked) cannot confirm what arrived, and the check disagrees.
  if (check === 'credit' && row.partial_amounts)
    return {
      status: 'partially_paid',
      outcomeAmount: row.outcome_amount,
      outcomeCurrency: row.outcome_currency,
      orderId: row.order_id,
    };
  if (check === 'credit')
    return {
      status: row.status,
      outcomeAmount: row.outcome_amount,
      outcomeCurrency: row.outcome_currency,
      orderId: row.order_id,
    };
  return {
    status: row.status,
    outcomeAmount: row.restated_outcome_amount as string,
    outcomeCurrency: row.restated_outcome_currency as string,
    orderId: row.order_id,
  };
}

/**
 * Each field the API contradicts, naming both values. Amounts are compared in the asset's smallest unit.
 */
function compare(claim: ReturnType<typeof claimOf>, asset: AssetCode, api: ApiPayment): string[] {
  const differences: string[] = [];
  if (api.status !== claim.status) differences.push(`payment_status: IPN ${claim.status}, NOWPayments ${api.status}`);
  if (api.outcomeCurrency !== claim.outcomeCurrency)
    differences.push(`outcome_currency: IPN ${claim.outcomeCurrency}, NOWPayments ${api.outcomeCurrency ?? 'none'}`);
  if (!sameUnits(api.outcomeAmount, parseUnits(claim.outcomeAmount, decimalsOf(asset)), decimalsOf(asset)))
    differences.push(`outcome_amount: IPN ${claim.outcomeAmount}, NOWPayments ${api.outcomeAmount ?? 'none'}`);
  if (api.orderId !== null && api.orderId !== claim.orderId)
    differences.push(`order_id: IPN ${claim.orderId}, NOWPayments ${api.orderId}`);
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

/** The payment's row while it still waits for this check, and only then: each verdict names the state it leaves. */
function waiting(trx: Transaction<Database>, row: PaymentRow, check: Check) {
  const update = trx
    .updateTable('payments')
    .where('payment_id', '=', row.payment_id)
    .where('review_reason', 'is', null);
  if (check === 'credit') return update.where('credited_at', 'is', null);
  return update
    .where('credited_at', 'is not', null)
    .where('reversed_at', 'is', null)
    .where('restated_confirm_deadline_at', 'is not', null)
    .where('gross_amount', '=', row.gross_amount as string);
}

async function toReview(
  trx: Transaction<Database>,
  deps: ConfirmDeps,
  logger: Logger,
  row: PaymentRow,
  check: Check,
  reason: string,
  evidence: Record<string, unknown> & { error?: string },
): Promise<void> {
  const what = check === 'credit' ? 'not credited' : `its top-up not offered (credited ${creditedText(row)} stands)`;
  const moved = await reviewWithAlert(deps, trx, {
    move: async () => {
      const updated = await waiting(trx, row, check)
        .set({
          review_reason: reason,
          updated_at: sql`now()`,
          ...(evidence.error !== undefined && { confirm_last_error: String(evidence.error) }),
          // The top-up's check is answered: nothing more is asked unless another restatement comes.
          ...(check === 'top_up' && { restated_confirm_deadline_at: null }),
        })
        .executeTakeFirst();
      return updated.numUpdatedRows === 1n;
    },
    notice: {
      logger,
      alert: {
        rule: 'payment_unconfirmed',
        subject: row.payment_id,
        severity: 'critical',
        message: `payment ${row.payment_id} (channel ${row.channel_id}) ${what}, kept for review: ${reason}`,
        details: { paymentId: row.payment_id, channelId: row.channel_id, reason, check, ...evidence },
      },
    },
  });
  if (!moved) throw new Error(`payment ${row.payment_id} changed under its row lock`);
}

/**
 * NOWPayments agrees that more arrived: the top-up goes to review for a person's credit (top_up, alerted as intake
 * alerts it), marked confirmed, which is what lets the credit action book the difference.
 */
async function offerTopUp(
  trx: Transaction<Database>,
  deps: ConfirmDeps,
  logger: Logger,
  row: PaymentRow,
): Promise<'offered'> {
  const reason = topUpReason(row) as string;
  const offered = await waiting(trx, row, 'top_up')
    .set({
      review_reason: reason,
      restated_confirmed_at: sql`now()`,
      restated_confirm_deadline_at: null,
      confirm_last_error: null,
      updated_at: sql`now()`,
    })
    .returningAll()
    .executeTakeFirst();
  if (!offered) throw new Error(`payment ${row.payment_id} changed under its row lock`);
  await alertReview(trx, offered, { logger, notify: deps.notifyAlerts });
  return 'offered';
}
