/**
 * Intake: one NOWPayments IPN becomes, in ONE short transaction, the payment's record and, when it is the first
 * `finished` for a known channel, the fee split, the ledger credit and the next step (conversion pending or a payout
 * job). With NOWPAYMENTS_API_KEY set, that credit waits for NOWPayments' API to agree: intake queues the
 * payment_confirm job instead, in the same transaction, and the job credits (confirm.ts). No outside call
 * happens here; the webhook answers right after the commit. In the common case that transaction is a single database
 * call (intake-one-call.ts), with no round trip to Node inside it.
 *
 * Every IPN may arrive many times, concurrently and out of order. The payment row (primary key payment_id) is the
 * lock: the first insert wins, later copies wait on it and then see the committed state. Statuses only move forward,
 * and the credit is guarded twice, by `credited_at` and by the ledger's unique (kind, ref) journal key.
 */
import { sql, type Selectable, type Transaction } from 'kysely';
import { raiseAlert, storeEventAlert, type AlertInput } from '../../alerts/index.ts';
import { lockChannelForCredit } from '../../channels/lock.ts';
import type { Database, Db, PaymentsTable } from '../../db/index.ts';
import { PAYMENT_STATUSES, type Ipn, type IpnStatus } from '../../integrations/nowpayments/index.ts';
import { enqueue } from '../../jobs/index.ts';
import { accounts, postJournal, type JournalInput } from '../../ledger/index.ts';
import type { Logger } from '../../log.ts';
import {
  decimalsOf,
  formatUnits,
  INTAKE_ASSETS,
  isAssetCode,
  parsePercent,
  parseUnits,
  splitFee,
  type AssetCode,
  type Percent,
} from '../../money/index.ts';
import { PAYOUT_JOB_MAX_ATTEMPTS } from '../payout/run.ts';
import type { IntakeBatcher } from './intake-batch.ts';
import { intakeInOneCall, mayTakeOneCall, type OneCallSettings } from './intake-one-call.ts';
import { paymentForUpdate } from './lock.ts';

export interface IntakeSettings {
  /** PLATFORM_FEE_PERCENT: the fee of a channel without its own (feeInForce). */
  readonly feePercent: Percent;
  /**
   * PARTIAL_PAYMENTS: a `partially_paid` payment is credited with what its IPN's outcome_amount says (`credit`), or
   * kept for a person (`review`, the default: less arrived than was asked, and only the merchant can say whether
   * that buys the subscription).
   */
  readonly partialPayments?: 'credit' | 'review';
  /**
   * NOWPAYMENTS_API_KEY is set: a crediting IPN is not credited on its signature alone; the payment_confirm job asks
   * NOWPayments' API and credits once it agrees. deadlineMs: how long an unreachable API is asked again.
   */
  readonly confirm?: { readonly deadlineMs: number };
}

export type ConfirmSettings = NonNullable<IntakeSettings['confirm']>;

/** payment_confirm's attempts: far more than NOWPAYMENTS_CONFIRM_DEADLINE (at most 24h) takes with the queue's backoff. */
export const CONFIRM_JOB_MAX_ATTEMPTS = 25;

/**
 * The jobs a credit or its check queues, keyed `<task>:<payment id>`; the one call (migration 026) is given the same.
 * payout_instant: a copy of the IPN never touches the job queued, or running, for the payment (unsafe_dedupe).
 * payment_confirm: one job waits per payment; a copy asking again updates the waiting one without delaying it
 * (preserve_run_at), and one arriving while the check runs queues another run.
 */
export const PAYOUT_JOB = { task: 'payout_instant', keyMode: 'unsafe_dedupe' } as const;
export const CONFIRM_JOB = { task: 'payment_confirm', keyMode: 'preserve_run_at' } as const;

/** Where intake's alerts go: the caller's logger, and the webhook when ALERT_WEBHOOK_URL is set. */
export interface IntakeAlerting {
  readonly logger: Logger;
  readonly notify: boolean;
}

export type IntakeOutcome =
  /** First time this payment was seen. */
  | 'recorded'
  /** A later status was applied. */
  | 'advanced'
  /** Same or earlier status than the one recorded: nothing changed. */
  | 'unchanged'
  /** Kept, but a person must look at it (unknown channel, conflicting data, refund after credit). */
  | 'review';

export interface IntakeResult {
  readonly outcome: IntakeOutcome;
  readonly paymentId: string;
  readonly status: IpnStatus;
  /** The strategy of the channel this call credited, or null when it credited nothing. */
  readonly credited: 'instant' | 'threshold' | null;
  /** The credit waits for NOWPayments' API (payment_confirm queued by this call or an earlier copy). */
  readonly confirming: boolean;
  readonly reviewReason: string | null;
}

/**
 * Forward order of statuses. Terminal failures share a rank below `finished`: money that arrives after an expiry
 * must still be credited, while nothing after `finished` may undo a credit except a refund, which goes to review.
 */
const STATUS_RANK: Record<IpnStatus, number> = {
  waiting: 1,
  confirming: 2,
  confirmed: 3,
  sending: 4,
  partially_paid: 5,
  failed: 6,
  expired: 6,
  finished: 7,
  refunded: 8,
};

/**
 * Why a payment waits for a person. A reason is its code, alone or followed by ": " and the evidence (the code is
 * what actions and tests match on: reviewCode).
 */
export const REVIEW = {
  unknownChannel: 'unknown_channel',
  conflictingOrder: 'conflicting_order_id',
  refundedAfterCredit: 'refunded_after_credit',
  partiallyPaid: 'partially_paid',
  foreignOutcome: 'foreign_outcome_currency',
  outcomeChanged: 'outcome_amount_changed',
  /** NOWPayments' API disagreed with the crediting IPN, knew no such payment, or stayed unreachable past the deadline. */
  unconfirmed: 'payment_unconfirmed',
  /** The rest of a payment credited as partial arrived: a later IPN says more than was credited. */
  topUp: 'top_up',
} as const;

export type ReviewCode = (typeof REVIEW)[keyof typeof REVIEW];

export function reviewCode(reason: string | null): string | null {
  if (reason === null) return null;
  const colon = reason.indexOf(':');
  return colon < 0 ? reason : reason.slice(0, colon);
}

/** The reasons intake alerts on when it sets them (unknown_channel and conflicting_order_id predate alerts here). */
const ALERTED: Partial<Record<string, 'warning' | 'critical'>> = {
  [REVIEW.partiallyPaid]: 'warning',
  [REVIEW.foreignOutcome]: 'critical',
  [REVIEW.outcomeChanged]: 'critical',
  [REVIEW.refundedAfterCredit]: 'critical',
  [REVIEW.topUp]: 'warning',
};

/**
 * Records one IPN. The common case (a first IPN for a known channel that needs no person, a later one that only
 * advances or repeats its payment) is one database call (intake-one-call.ts); every other IPN, which may call for a
 * person, takes the statement-by-statement path below, which the one call writes exactly as. With a batcher (the web
 * process's), the one call is grouped with the IPNs arriving meanwhile (intake-batch.ts).
 */
export async function recordIpn(
  db: Db,
  ipn: Ipn,
  settings: IntakeSettings,
  alerting?: IntakeAlerting,
  batcher?: IntakeBatcher,
): Promise<IntakeResult> {
  const oneCall = (common: Ipn, s: OneCallSettings) =>
    batcher ? batcher.take(common, s) : intakeInOneCall(db, common, s);
  const done = mayTakeOneCall(ipn) ? await oneCall(ipn, oneCallSettings(ipn, settings)) : null;
  if (done) return { ...done, paymentId: ipn.paymentId, reviewReason: null };
  return recordIpnStepwise(db, ipn, settings, alerting);
}

/** What payrail_intake_ipn takes of intake's settings and rules. */
export function oneCallSettings(ipn: Ipn, settings: IntakeSettings): OneCallSettings {
  return {
    feePercent: settings.feePercent,
    // The very number confirmDeadline sends: both paths set the same deadline.
    confirmDeadlineSeconds: settings.confirm ? settings.confirm.deadlineMs / 1000 : null,
    payoutJob: { ...PAYOUT_JOB, maxAttempts: PAYOUT_JOB_MAX_ATTEMPTS },
    confirmJob: { ...CONFIRM_JOB, maxAttempts: CONFIRM_JOB_MAX_ATTEMPTS },
    advancesFrom: PAYMENT_STATUSES.filter((status) => STATUS_RANK[status] < STATUS_RANK[ipn.status]),
  };
}

/**
 * Intake statement by statement, in one transaction: every IPN the one call does not take. Exported for the test
 * that holds the one call to it; payrail calls recordIpn.
 */
export async function recordIpnStepwise(
  db: Db,
  ipn: Ipn,
  settings: IntakeSettings,
  alerting?: IntakeAlerting,
): Promise<IntakeResult> {
  return db.transaction().execute(async (trx) => {
    // The transaction's first lock (lock order: src/channels/lock.ts): a save of this channel under way commits first.
    await lockChannelForCredit(trx, ipn.channelId);
    const channel = await trx
      .selectFrom('channels')
      .selectAll()
      .where('channel_id', '=', ipn.channelId)
      .executeTakeFirst();
    const first = await insertFirstCopy(trx, ipn, channel, settings);
    const { inserted } = first;
    let outcome: IntakeOutcome = inserted ? 'recorded' : 'unchanged';
    // A later copy waits here for the first one's commit, then sees what it did.
    let current = inserted ?? (await paymentForUpdate(trx, ipn.paymentId).executeTakeFirstOrThrow());
    const reasonBefore = inserted ? null : current.review_reason;
    if (!inserted) ({ current, outcome } = await applyLaterCopy(trx, current, ipn, channel !== undefined, settings));
    const { credited, confirming } = await creditRecorded(trx, ipn, current, first, channel, settings);
    const reviewReason = current.review_reason;
    if (reviewReason !== null && reviewReason !== reasonBefore) await alertReview(trx, current, alerting);
    return {
      outcome: reviewReason ? 'review' : outcome,
      paymentId: ipn.paymentId,
      status: current.status,
      credited,
      confirming,
      reviewReason,
    };
  });
}

/** The first copy's insert, and the credit (or its check) it carries when the insert itself credits. */
interface FirstCopy {
  /** The row inserted, or undefined when the payment was there already. */
  readonly inserted: PaymentRow | undefined;
  readonly basis: CreditBasis | null;
  readonly creditOnInsert: ReturnType<typeof creditColumns> | undefined;
  readonly confirmOnInsert: ReturnType<typeof confirmColumns> | undefined;
}

/** Inserts the payment unless it is there already (the first insert wins; a later copy inserts nothing). */
async function insertFirstCopy(
  trx: Transaction<Database>,
  ipn: Ipn,
  channel: CreditChannel | undefined,
  settings: IntakeSettings,
): Promise<FirstCopy> {
  const arrivalReason = reasonOnArrival(ipn, channel !== undefined, settings);
  // The common case, a first IPN that is already `finished` for a known channel, is credited by the insert itself.
  const basis =
    arrivalReason === null && channel !== undefined && creditsOnStatus(ipn.status, settings) ? creditOf(ipn) : null;
  const creditOnInsert = basis && !settings.confirm ? creditColumns(basis, channel!, settings) : undefined;
  const confirmOnInsert = basis && settings.confirm ? confirmColumns(settings.confirm, true) : undefined;
  const inserted = await trx
    .insertInto('payments')
    .values({
      payment_id: ipn.paymentId,
      invoice_id: ipn.invoiceId,
      parent_payment_id: ipn.parentPaymentId,
      order_id: ipn.orderId,
      user_id: ipn.userId,
      channel_id: ipn.channelId,
      status: ipn.status,
      ...reportedAmounts(ipn),
      partial_amounts: ipn.status === 'partially_paid',
      review_reason: arrivalReason,
      last_ipn: ipn.json,
      ...creditOnInsert,
      ...confirmOnInsert,
    })
    .onConflict((oc) => oc.column('payment_id').doNothing())
    .returningAll()
    .executeTakeFirst();
  return { inserted, basis, creditOnInsert, confirmOnInsert };
}

/** A later copy, under the payment's row lock: what it changes (nextState), and every copy counted. */
async function applyLaterCopy(
  trx: Transaction<Database>,
  current: PaymentRow,
  ipn: Ipn,
  channelKnown: boolean,
  settings: IntakeSettings,
): Promise<{ current: PaymentRow; outcome: IntakeOutcome }> {
  const update = nextState(current, ipn, channelKnown, settings);
  if (!update) {
    await trx
      .updateTable('payments')
      .set({ ipn_count: sql`ipn_count + 1` })
      .where('payment_id', '=', ipn.paymentId)
      .execute();
    return { current, outcome: 'unchanged' };
  }
  const advanced = await trx
    .updateTable('payments')
    .set({ ...update, ipn_count: sql`ipn_count + 1`, updated_at: sql`now()` })
    .where('payment_id', '=', ipn.paymentId)
    .returningAll()
    .executeTakeFirstOrThrow();
  return { current: advanced, outcome: 'advanced' };
}

/** What the recorded payment calls for now: its credit, the check before it, or nothing. */
async function creditRecorded(
  trx: Transaction<Database>,
  ipn: Ipn,
  current: PaymentRow,
  { inserted, basis, creditOnInsert, confirmOnInsert }: FirstCopy,
  channel: CreditChannel | undefined,
  settings: IntakeSettings,
): Promise<{ credited: IntakeResult['credited']; confirming: boolean }> {
  const nothing = { credited: null, confirming: false };
  if (settings.confirm && restatementAwaitsCheck(current)) {
    // A top-up waits for NOWPayments' check before a person is asked: every copy queues it (one job waits).
    await enqueueConfirm(trx, ipn.paymentId);
    return { ...nothing, confirming: true };
  }
  if (inserted && basis && creditOnInsert) {
    await creditEffects(trx, basis, channel!, settings);
    return { ...nothing, credited: channel!.payout_strategy };
  }
  if (inserted && basis && confirmOnInsert) {
    await enqueueConfirm(trx, ipn.paymentId);
    return { ...nothing, confirming: true };
  }
  if (
    !creditsOnStatus(current.status, settings) ||
    current.credited_at !== null ||
    current.review_reason !== null ||
    !channel
  )
    return nothing;
  // Credit what the crediting IPN reported (stored on the row), never the amounts of whichever copy came last.
  const stored = storedCredit(current);
  if (stored && settings.confirm) {
    await requestConfirmation(trx, ipn.paymentId, settings.confirm);
    return { ...nothing, confirming: true };
  }
  if (!stored) return nothing;
  await trx
    .updateTable('payments')
    .set(creditColumns(stored, channel, settings))
    .where('payment_id', '=', ipn.paymentId)
    .execute();
  await creditEffects(trx, stored, channel, settings);
  return { ...nothing, credited: channel.payout_strategy };
}

type PaymentRow = Selectable<PaymentsTable>;

/**
 * A credited payment whose restatement (more than its partial credit: a top-up) waits for NOWPayments' check: out of
 * review (the credit stands as booked meanwhile), not reversed or refunded since (a refund ends what it could add to),
 * the check's deadline set.
 */
export function restatementAwaitsCheck(row: PaymentRow): boolean {
  return (
    row.credited_at !== null &&
    row.reversed_at === null &&
    row.status !== 'refunded' &&
    row.review_reason === null &&
    row.restated_confirm_deadline_at !== null
  );
}

/** Until when an unreachable NOWPayments API is asked again, counted from this statement. */
export function confirmDeadline(confirm: ConfirmSettings) {
  return sql<Date>`now() + make_interval(secs => ${confirm.deadlineMs / 1000})`;
}

/** The check's clock starts with the first crediting IPN; a later copy keeps it (coalesce), never restarts it. */
function confirmColumns(confirm: ConfirmSettings, onInsert = false) {
  const deadline = confirmDeadline(confirm);
  if (onInsert) return { confirm_requested_at: sql<Date>`now()`, confirm_deadline_at: deadline };
  return {
    confirm_requested_at: sql<Date>`coalesce(confirm_requested_at, now())`,
    confirm_deadline_at: sql<Date>`coalesce(confirm_deadline_at, ${deadline})`,
  };
}

/**
 * The credit of this payment waits for NOWPayments' API: the deadline is set (once) and payment_confirm queued, in the
 * caller's transaction. Every copy of the IPN may call this: the job key keeps one job waiting, and a copy arriving
 * while the job runs queues another run, which finds the payment credited or checks it again.
 */
export async function requestConfirmation(
  trx: Transaction<Database>,
  paymentId: string,
  confirm: ConfirmSettings,
): Promise<void> {
  await trx
    .updateTable('payments')
    .set(confirmColumns(confirm))
    .where('payment_id', '=', paymentId)
    .where('credited_at', 'is', null)
    .execute();
  await enqueueConfirm(trx, paymentId);
}

export async function enqueueConfirm(trx: Transaction<Database>, paymentId: string): Promise<void> {
  await enqueuePaymentJob(trx, CONFIRM_JOB, paymentId, CONFIRM_JOB_MAX_ATTEMPTS);
}

/**
 * A partial payment a person decided to credit (review_action credit) that is not credited yet: with
 * NOWPAYMENTS_API_KEY set, the decision waits for NOWPayments' check like a crediting IPN (payment_confirm credits it
 * once the API agrees), so a forged partial is never credited on a person's word either.
 */
export function partialCreditDecided(row: PaymentRow): boolean {
  return row.review_action === 'credit' && row.partial_amounts && row.credited_at === null;
}

/** The statuses whose IPN credits the channel: `finished`, and `partially_paid` when PARTIAL_PAYMENTS=credit. */
export function creditsOnStatus(status: IpnStatus, settings: IntakeSettings): boolean {
  return status === 'finished' || (status === 'partially_paid' && settings.partialPayments === 'credit');
}

/** Why a first IPN is kept for a person, or null. An outcome payrail cannot credit outranks everything else. */
function reasonOnArrival(ipn: Ipn, channelKnown: boolean, settings: IntakeSettings): string | null {
  if (ipn.outcomeAsset === null) return `${REVIEW.foreignOutcome}: ${ipn.outcomeCurrency}`;
  if (!channelKnown) return REVIEW.unknownChannel;
  if (ipn.status === 'partially_paid' && partialNeedsPerson(ipn, settings)) return REVIEW.partiallyPaid;
  return null;
}

/** A partial payment waits for a person unless PARTIAL_PAYMENTS=credit and there is something to credit. */
function partialNeedsPerson(ipn: Ipn, settings: IntakeSettings): boolean {
  return settings.partialPayments !== 'credit' || ipn.outcomeUnits === null || ipn.outcomeUnits === 0n;
}

/**
 * Why an uncredited payment out of review waits for a person, judged from what it holds now (its last applied status
 * and the amounts it keeps) as intake judges an IPN, or null when nothing does (it is credited, creditable, or waits
 * for more IPNs). For a payment whose review for another reason held back what its own IPNs called for.
 */
export function standingReason(row: PaymentRow, channelKnown: boolean, settings: IntakeSettings): string | null {
  if (row.credited_at !== null) return null;
  const asset = row.outcome_currency;
  if (!isAssetCode(asset) || !INTAKE_ASSETS.includes(asset)) return `${REVIEW.foreignOutcome}: ${row.outcome_currency}`;
  if (!channelKnown) return REVIEW.unknownChannel;
  // A partial still partially_paid is credited on its own only under PARTIAL_PAYMENTS=credit; one that ended (expired
  // or failed after it) never is.
  if (
    row.partial_amounts &&
    (row.status !== 'partially_paid' || settings.partialPayments !== 'credit' || storedCredit(row) === null)
  )
    return REVIEW.partiallyPaid;
  return null;
}

/** What a later copy of the IPN changes, or undefined when it changes nothing. */
function nextState(current: PaymentRow, ipn: Ipn, channelKnown: boolean, settings: IntakeSettings) {
  if (current.order_id !== ipn.orderId) {
    // The same payment id for another order: never re-route money on the word of a later message.
    return current.review_reason === null ? { review_reason: `${REVIEW.conflictingOrder}: ${ipn.orderId}` } : undefined;
  }
  const facts = copyFacts(current, ipn);
  const { forward, credited, partialEnds, partialGrows, latePartial } = facts;
  const { reviewReason, restatement, checkRestatement, decisionVoided } = nextReview(
    current,
    ipn,
    channelKnown,
    settings,
    facts,
  );
  const parent =
    current.parent_payment_id === null && ipn.parentPaymentId !== null
      ? { parent_payment_id: ipn.parentPaymentId }
      : undefined;
  if (!forward && reviewReason === current.review_reason && !parent && !partialGrows && !latePartial && !restatement)
    return undefined;
  return {
    review_reason: reviewReason,
    ...parent,
    ...(forward && { status: ipn.status, last_ipn: ipn.json }),
    // Reported amounts follow the status until the credit fixes them, or until a partial payment ends.
    ...(forward &&
      !credited &&
      !partialEnds && { ...reportedAmounts(ipn), partial_amounts: ipn.status === 'partially_paid' }),
    ...(partialGrows && { ...reportedAmounts(ipn), last_ipn: ipn.json }),
    ...(latePartial && { ...reportedAmounts(ipn), partial_amounts: true, last_ipn: ipn.json }),
    ...(decisionVoided && { review_action: null, review_action_by: null, review_action_at: null }),
    // A new restatement is not the one NOWPayments may have confirmed: it is checked again (with the key) or not at all.
    ...(restatement && {
      restated_outcome_amount: ipn.outcomeAmount,
      restated_outcome_currency: ipn.outcomeCurrency,
      restated_confirmed_at: null,
      restated_confirm_deadline_at: checkRestatement && settings.confirm ? confirmDeadline(settings.confirm) : null,
    }),
  };
}

/** What a later copy of the same order is, next to what the payment holds. */
interface CopyFacts {
  /** Its status is later than the payment's. */
  readonly forward: boolean;
  readonly credited: boolean;
  readonly partialEnds: boolean;
  readonly partialGrows: boolean;
  readonly latePartial: boolean;
  readonly restated: boolean;
}

function copyFacts(current: PaymentRow, ipn: Ipn): CopyFacts {
  const forward = STATUS_RANK[ipn.status] > STATUS_RANK[current.status];
  const credited = current.credited_at !== null;
  // The rest never came (NOWPayments' real sequence: partially_paid, then expired): what did arrive is still the
  // partial's to credit, and an expired IPN's outcome_amount is what was asked, not what came.
  const partialEnds =
    forward && !credited && current.partial_amounts && (ipn.status === 'expired' || ipn.status === 'failed');
  // More of an uncredited partial payment arrived (a later partially_paid IPN): its amounts are what a credit books.
  // What was paid only grows, so a smaller one is an older copy.
  const partialGrows =
    !forward && !credited && current.partial_amounts && ipn.status === 'partially_paid' && paysMore(current, ipn);
  // NOWPayments' retries can deliver the expired (or failed) IPN before the partially_paid one. The status stays where
  // it is, but the money the partial reports did arrive: it takes the partial's amounts as if it had come first, and
  // a person decides, as for any partial that ended.
  const latePartial =
    !forward &&
    !credited &&
    !current.partial_amounts &&
    (current.status === 'expired' || current.status === 'failed') &&
    ipn.status === 'partially_paid';
  // A credited payment restated otherwise than the credit and than the last restatement a person looked at. Not once
  // NOWPayments refunded it: a finished IPN after the refund is an older one retried, and no money arrives after it.
  const restated =
    credited &&
    current.reversed_at === null &&
    current.status !== 'refunded' &&
    restatesCredit(current, ipn) &&
    outcomeDiffers(current, ipn) &&
    restatedAgain(current, ipn);
  return { forward, credited, partialEnds, partialGrows, latePartial, restated };
}

/** The review a later copy leaves the payment in, and what it does to a restatement or a person's decision. */
interface NextReview {
  readonly reviewReason: string | null;
  readonly restatement: boolean;
  readonly checkRestatement: boolean;
  readonly decisionVoided: boolean;
}

function nextReview(
  current: PaymentRow,
  ipn: Ipn,
  channelKnown: boolean,
  settings: IntakeSettings,
  { forward, credited, partialEnds, partialGrows, latePartial, restated }: CopyFacts,
): NextReview {
  let reviewReason = current.review_reason;
  const code = reviewCode(reviewReason);
  // A channel registered after its first IPN clears that flag, so its payment can proceed.
  if (code === REVIEW.unknownChannel && channelKnown) reviewReason = null;
  // The rest of the money arrived: the finished IPN is credited as any other.
  if (code === REVIEW.partiallyPaid && forward && ipn.status === 'finished' && !credited) reviewReason = null;
  const only = (reason: string | null) => ({
    reviewReason: reason,
    restatement: false,
    checkRestatement: false,
    decisionVoided: false,
  });
  if (forward && ipn.status === 'refunded' && credited && current.reversed_at === null)
    return only(REVIEW.refundedAfterCredit);
  if (
    restated &&
    (reviewReason === null || code === REVIEW.outcomeChanged || code === REVIEW.topUp || code === REVIEW.unconfirmed)
  )
    return restatementReview(current, ipn, settings);
  if (latePartial) {
    if (reviewReason !== null || current.review_action === 'ignore') return only(reviewReason);
    if (ipn.outcomeAsset === null) return only(`${REVIEW.foreignOutcome}: ${ipn.outcomeCurrency}`);
    return only(channelKnown ? REVIEW.partiallyPaid : REVIEW.unknownChannel);
  }
  if (partialGrows) {
    // After an ignore, a person looks again at what arrived since; after a credit not booked yet too: the decision was
    // for the amount the person saw, and waiting for NOWPayments' check it must not book another one.
    if (reviewReason === null && (current.review_action === 'ignore' || partialCreditDecided(current)))
      reviewReason = REVIEW.partiallyPaid;
    return { ...only(reviewReason), decisionVoided: partialCreditDecided(current) };
  }
  if (reviewReason !== null || credited || !forward) return only(reviewReason);
  if (partialEnds) {
    // Waiting for NOWPayments' check (PARTIAL_PAYMENTS=credit), which can no longer agree: a person decides. A partial
    // a person already ignored stays so; one a person decided to credit stays with that check, which compares the
    // partial's amount with what NOWPayments' books still hold of it.
    const decided = current.review_action === 'ignore' || partialCreditDecided(current);
    return only(decided ? null : REVIEW.partiallyPaid);
  }
  // Any other step forward of an uncredited payment out of review is judged as a first IPN is.
  return only(reasonOnArrival(ipn, channelKnown, settings));
}

/**
 * The credit stands until a person decides: more than a partial credit is its rest arriving (creditable), any other
 * amount NOWPayments restating it. A later restatement replaces one a person has not decided on, a top-up NOWPayments
 * did not confirm included (its critical alert stays open): only the last one can still be credited.
 */
function restatementReview(current: PaymentRow, ipn: Ipn, settings: IntakeSettings): NextReview {
  const more = topUpOf(current, ipn);
  const says = restatementText(current, ipn.status, ipn.outcomeAmount, ipn.outcomeCurrency);
  const restated = { restatement: true, decisionVoided: false };
  // With NOWPAYMENTS_API_KEY set, more money is creditable only once NOWPayments' API says it arrived: the
  // payment_confirm job asks before a person is offered the credit (the signed IPN alone proves only the secret).
  if (more !== null && settings.confirm) return { ...restated, reviewReason: null, checkRestatement: true };
  const reviewReason =
    more === null ? `${REVIEW.outcomeChanged}: ${says}` : topUpText(says, more, current.asset as AssetCode);
  return { ...restated, reviewReason, checkRestatement: false };
}

/** An uncredited partial's next partially_paid IPN that says more arrived, in the same asset. */
function paysMore(current: PaymentRow, ipn: Ipn): boolean {
  if (ipn.outcomeAsset === null || ipn.outcomeUnits === null || current.outcome_currency !== ipn.outcomeAsset)
    return false;
  return ipn.outcomeUnits > parseUnits(current.outcome_amount, decimalsOf(ipn.outcomeAsset));
}

/** How much more than the partial credit the IPN says, in the credited asset; null when it is no top-up. */
function topUpOf(current: PaymentRow, ipn: Ipn): bigint | null {
  if (
    !current.credited_partial ||
    ipn.outcomeAsset === null ||
    ipn.outcomeAsset !== current.asset ||
    ipn.outcomeUnits === null ||
    current.gross_amount === null
  )
    return null;
  const more = ipn.outcomeUnits - BigInt(current.gross_amount);
  return more > 0n ? more : null;
}

function restatementText(current: PaymentRow, status: string, amount: string, currency: string): string {
  return `credited ${creditedText(current)}; a later ${status} IPN says ${amount} ${currency}`;
}

function topUpText(says: string, more: bigint, asset: AssetCode): string {
  return `${REVIEW.topUp}: ${says} (${formatUnits(more, decimalsOf(asset))} ${asset} more)`;
}

/**
 * The top_up review reason of a credited payment from its stored restatement (the IPN that said more, whose status
 * the row took), as intake words it: what payment_confirm offers once NOWPayments agreed. Null when it is no top-up.
 */
export function topUpReason(row: PaymentRow): string | null {
  const { asset, restated_outcome_amount: amount, gross_amount: gross } = row;
  if (
    amount === null ||
    asset === null ||
    row.restated_outcome_currency !== asset ||
    !isAssetCode(asset) ||
    gross === null ||
    !row.credited_partial
  )
    return null;
  const more = parseUnits(amount, decimalsOf(asset)) - BigInt(gross);
  if (more <= 0n) return null;
  return topUpText(restatementText(row, row.status, amount, asset), more, asset);
}

/** What the credit of a payment is, for the review reasons that name it. */
export function creditedText(row: PaymentRow): string {
  const asset = row.asset ?? '';
  return row.gross_amount !== null && isAssetCode(asset)
    ? `${formatUnits(BigInt(row.gross_amount), decimalsOf(asset))} ${asset}`
    : 'nothing';
}

/** After a person looked at a restatement (ignore), only another amount or currency is looked at again. */
function restatedAgain(current: PaymentRow, ipn: Ipn): boolean {
  if (current.restated_outcome_amount === null) return true;
  return (
    current.restated_outcome_currency !== ipn.outcomeCurrency ||
    decimalKey(current.restated_outcome_amount) !== decimalKey(ipn.outcomeAmount)
  );
}

/** A plain non-negative decimal without the zeros that do not change its value ("0.004870" and "0.00487" alike). */
function decimalKey(text: string): string {
  const [whole = '', fraction = ''] = text.split('.');
  const int = whole.replace(/^0+(?=\d)/, '');
  const frac = fraction.replace(/0+$/, '');
  return frac === '' ? int : `${int}.${frac}`;
}

/** A copy that speaks for the credited amount: any finished one, or one of the (partially paid) status credited. */
function restatesCredit(current: PaymentRow, ipn: Ipn): boolean {
  return ipn.status === 'finished' || (ipn.status === 'partially_paid' && current.status === 'partially_paid');
}

function outcomeDiffers(current: PaymentRow, ipn: Ipn): boolean {
  return (
    ipn.outcomeAsset !== current.asset ||
    ipn.outcomeUnits === null ||
    current.gross_amount === null ||
    ipn.outcomeUnits !== BigInt(current.gross_amount)
  );
}

/** The alert for a payment just kept for review, in the same transaction as the reason. */
export async function alertReview(
  trx: Transaction<Database>,
  row: PaymentRow,
  alerting: IntakeAlerting | undefined,
): Promise<void> {
  const reason = row.review_reason as string;
  const severity = ALERTED[reviewCode(reason) as string];
  if (!severity) return;
  const alert: AlertInput = {
    rule: 'payment_review',
    subject: row.payment_id,
    severity,
    message: `payment ${row.payment_id} (channel ${row.channel_id}, ${row.status}) kept for review: ${reason}`,
    details: {
      paymentId: row.payment_id,
      channelId: row.channel_id,
      status: row.status,
      reason,
      outcome: `${row.outcome_amount} ${row.outcome_currency}`,
      actuallyPaid: `${row.actually_paid} ${row.pay_currency}`,
      payAmount: `${row.pay_amount} ${row.pay_currency}`,
      credited: row.credited_at === null ? null : creditedText(row),
      ...(row.restated_outcome_amount !== null && {
        restated: `${row.restated_outcome_amount} ${row.restated_outcome_currency}`,
      }),
      parentPaymentId: row.parent_payment_id,
    },
  };
  if (alerting) await raiseAlert(trx, alert, { logger: alerting.logger, notify: alerting.notify });
  else await storeEventAlert(trx, alert, { notify: false });
}

function reportedAmounts(ipn: Ipn) {
  return {
    pay_currency: ipn.payCurrency,
    pay_amount: ipn.payAmount,
    actually_paid: ipn.actuallyPaid,
    price_amount: ipn.priceAmount,
    price_currency: ipn.priceCurrency,
    outcome_amount: ipn.outcomeAmount,
    outcome_currency: ipn.outcomeCurrency,
  };
}

/**
 * A channel was registered (or changed): its payments kept for review as `unknown_channel` are released, and those
 * already `finished` are credited from their stored finished amounts, one transaction each. Returns the strategies
 * credited, so the caller can ask for a conversion check.
 */
export async function releaseUnknownChannelPayments(
  db: Db,
  channelId: string,
  settings: IntakeSettings,
): Promise<Array<'instant' | 'threshold'>> {
  const waiting = await db
    .selectFrom('payments')
    .select('payment_id')
    .where('channel_id', '=', channelId)
    .where('review_reason', '=', REVIEW.unknownChannel)
    .execute();
  const credited: Array<'instant' | 'threshold'> = [];
  for (const { payment_id } of waiting) {
    const strategy = await db
      .transaction()
      .execute((trx) => releaseUnknownChannelPayment(trx, channelId, payment_id, settings));
    if (strategy) credited.push(strategy);
  }
  return credited;
}

/** One payment's release, in its own transaction: the strategy it was credited under, or null when not credited. */
async function releaseUnknownChannelPayment(
  trx: Transaction<Database>,
  channelId: string,
  paymentId: string,
  settings: IntakeSettings,
): Promise<'instant' | 'threshold' | null> {
  const { channel, row } = await lockForRelease(trx, channelId, paymentId);
  if (!channel || row.review_reason !== REVIEW.unknownChannel) return null;
  const stored = storedCredit(row);
  // A partial that expired since is not credited on its own either, even under PARTIAL_PAYMENTS=credit.
  if (
    row.partial_amounts &&
    (settings.partialPayments !== 'credit' || stored === null || row.status !== 'partially_paid')
  ) {
    await keepPartialForReview(trx, paymentId);
    return null;
  }
  if (!creditsOnStatus(row.status, settings) || row.credited_at !== null || stored === null) {
    await trx
      .updateTable('payments')
      .set({ review_reason: null, updated_at: sql`now()` })
      .where('payment_id', '=', paymentId)
      .execute();
    return null;
  }
  if (settings.confirm) {
    await releaseToConfirmation(trx, paymentId, settings.confirm);
    return null;
  }
  await creditReleased(trx, stored, channel, settings);
  return channel.payout_strategy;
}

/** The channel as a credit reads it, then the payment's row lock. */
async function lockForRelease(trx: Transaction<Database>, channelId: string, paymentId: string) {
  // Before the channel's read and the payment's row lock (lock order: src/channels/lock.ts).
  await lockChannelForCredit(trx, channelId);
  const channel = await trx
    .selectFrom('channels')
    .select(CREDIT_CHANNEL_COLUMNS)
    .where('channel_id', '=', channelId)
    .executeTakeFirst();
  const row = await paymentForUpdate(trx, paymentId).executeTakeFirstOrThrow();
  return { channel, row };
}

/** Known now, it is the partial payment it always was: a person decides (PARTIAL_PAYMENTS=review). */
async function keepPartialForReview(trx: Transaction<Database>, paymentId: string): Promise<void> {
  const moved = await trx
    .updateTable('payments')
    .set({ review_reason: REVIEW.partiallyPaid, updated_at: sql`now()` })
    .where('payment_id', '=', paymentId)
    .where('review_reason', '=', REVIEW.unknownChannel)
    .returningAll()
    .executeTakeFirstOrThrow();
  await alertReview(trx, moved, undefined);
}

/**
 * Known now, it is credited as any other: once NOWPayments' API agrees. Its own update before requestConfirmation's,
 * as each is guarded on what it changes: leaving review on the review it leaves, the clock on no credit booked yet.
 */
async function releaseToConfirmation(
  trx: Transaction<Database>,
  paymentId: string,
  confirm: ConfirmSettings,
): Promise<void> {
  await trx
    .updateTable('payments')
    .set({ review_reason: null, updated_at: sql`now()` })
    .where('payment_id', '=', paymentId)
    .where('review_reason', '=', REVIEW.unknownChannel)
    .execute();
  await requestConfirmation(trx, paymentId, confirm);
}

/** Credited from the amounts the row stored when it finished, out of review in the same update. */
async function creditReleased(
  trx: Transaction<Database>,
  stored: CreditBasis,
  channel: CreditChannel,
  settings: IntakeSettings,
): Promise<void> {
  await trx
    .updateTable('payments')
    .set({
      ...creditColumns(stored, channel, settings),
      review_reason: null,
      updated_at: sql`now()`,
    })
    .where('payment_id', '=', stored.paymentId)
    .execute();
  await creditEffects(trx, stored, channel, settings);
}

/** What a credit is computed from: the payment, its channel, and the amount received in smallest units. */
export interface CreditBasis {
  readonly paymentId: string;
  readonly channelId: string;
  readonly asset: AssetCode;
  readonly grossUnits: bigint;
  /** The amounts are a partially_paid IPN's: its rest may arrive later (a top-up). */
  readonly partial: boolean;
}

function creditOf(ipn: Ipn): CreditBasis {
  if (ipn.outcomeAsset === null || ipn.outcomeUnits === null)
    throw new Error(`payment ${ipn.paymentId}: outcome currency ${ipn.outcomeCurrency} is not credited`);
  return {
    paymentId: ipn.paymentId,
    channelId: ipn.channelId,
    asset: ipn.outcomeAsset,
    grossUnits: ipn.outcomeUnits,
    partial: ipn.status === 'partially_paid',
  };
}

/**
 * The credit from the amounts the row holds: those of the IPN that moved it to its crediting status. Null when they
 * cannot be credited (an outcome currency payrail does not credit, or nothing to credit).
 */
export function storedCredit(row: PaymentRow): CreditBasis | null {
  const asset = row.outcome_currency;
  if (!isAssetCode(asset) || !INTAKE_ASSETS.includes(asset)) return null;
  const grossUnits = parseUnits(row.outcome_amount, decimalsOf(asset));
  if (grossUnits <= 0n) return null;
  return { paymentId: row.payment_id, channelId: row.channel_id, asset, grossUnits, partial: row.partial_amounts };
}

/**
 * What a credit takes of the channel it credits: its strategy and its own fee. Read in the credit's own transaction,
 * after the channel's credit lock taken shared (src/channels/lock.ts; the channel row itself is not locked), so the
 * version read is the one in force until the credit commits: a save of the channel waits for the credit and then
 * moves it with the channel's other payments to its new strategy, and a credit arriving during a save waits for the
 * save's commit and reads the new version. A fee changed before the credit began is the one booked, whatever was read
 * when the IPN was first seen or the check asked.
 */
export interface CreditChannel {
  readonly payout_strategy: 'instant' | 'threshold';
  readonly platform_fee_percent: string | null;
}

/** The columns to select for a CreditChannel. */
export const CREDIT_CHANNEL_COLUMNS = ['payout_strategy', 'platform_fee_percent'] as const;

/** The fee a credit made now takes: the channel's own when it has one, else PLATFORM_FEE_PERCENT. */
export function feeInForce(channel: Pick<CreditChannel, 'platform_fee_percent'>, settings: IntakeSettings): Percent {
  // The column's check holds the setting's bounds, so a stored fee always parses.
  return channel.platform_fee_percent === null ? settings.feePercent : parsePercent(channel.platform_fee_percent);
}

export function creditColumns(basis: CreditBasis, channel: CreditChannel, settings: IntakeSettings) {
  if (basis.grossUnits <= 0n)
    throw new Error(`payment ${basis.paymentId}: a finished payment must have a positive amount`);
  const strategy = channel.payout_strategy;
  const percent = feeInForce(channel, settings);
  const { fee, net } = splitFee(basis.grossUnits, percent);
  return {
    asset: basis.asset,
    gross_amount: basis.grossUnits,
    fee_amount: fee,
    net_amount: net,
    // What statements, exports and the payment.credited event show, and what a top-up of this credit takes again.
    fee_percent: percent.text,
    payout_strategy: strategy,
    credited_partial: basis.partial,
    credited_at: sql<Date>`now()`,
    // Threshold: the ETH waits to be converted with others; the conversion stage picks pending payments up.
    conversion_status: strategy === 'threshold' ? ('pending' as const) : null,
  };
}

/**
 * What a credit does besides the payment row, in the same transaction: the instant payout job, then the balanced
 * journal. The journal goes last: it locks balance rows, which stay locked until the commit. Given the same channel
 * as creditColumns, so the journal books the very split the row holds.
 */
export async function creditEffects(
  trx: Transaction<Database>,
  basis: CreditBasis,
  channel: CreditChannel,
  settings: IntakeSettings,
): Promise<void> {
  const { asset, grossUnits: gross, paymentId, channelId } = basis;
  const strategy = channel.payout_strategy;
  const { fee, net } = splitFee(gross, feeInForce(channel, settings));
  if (strategy === 'instant') await enqueueInstantPayout(trx, paymentId);
  const entries = creditEntries(asset, paymentId, channelId, { gross, fee, net });
  const journal = await postJournal(trx, { kind: 'payment_received', ref: paymentId, entries });
  if (!journal.posted) throw new Error(`payment ${paymentId} already has a ledger credit: refusing to credit twice`);
}

/** The instant payout job of a credited payment (PAYOUT_JOB), whichever credit or decision queues it. */
export async function enqueueInstantPayout(trx: Transaction<Database>, paymentId: string): Promise<void> {
  await enqueuePaymentJob(trx, PAYOUT_JOB, paymentId, PAYOUT_JOB_MAX_ATTEMPTS);
}

/**
 * A job of one payment under the key the one call gives it too (PAYOUT_JOB, CONFIRM_JOB), so that whichever path
 * queues it, a copy meets the same job.
 */
async function enqueuePaymentJob(
  trx: Transaction<Database>,
  job: typeof PAYOUT_JOB | typeof CONFIRM_JOB,
  paymentId: string,
  maxAttempts: number,
): Promise<void> {
  await enqueue(
    trx,
    job.task,
    { paymentId },
    { jobKey: `${job.task}:${paymentId}`, jobKeyMode: job.keyMode, maxAttempts },
  );
}

/** A credit's legs, a first credit's or a top-up's: out of NOWPayments, the platform's fee, the channel's net. */
export function creditEntries(
  asset: AssetCode,
  paymentId: string,
  channelId: string,
  { gross, fee, net }: { gross: bigint; fee: bigint; net: bigint },
): JournalInput['entries'] {
  return [
    { account: accounts.nowpayments(asset, paymentId), amount: -gross },
    { account: accounts.platformFees(asset, paymentId), amount: fee },
    { account: accounts.channel(channelId, asset), amount: net },
  ].filter((e) => e.amount !== 0n);
}
