/**
 * A person's decision on a payment intake kept for review: credit, ignore, or reverse. As for payouts and
 * conversions, each is allowed only where it is safe, takes the payment's row lock (intake's copies of the IPN wait
 * on it, and every write below names the state it leaves), and is kept in the audit log with the acting token's name.
 *
 * - credit: a `partially_paid` payment (also once NOWPayments called it expired or failed: the partial money did
 *   arrive), credited with exactly its partially_paid IPN's outcome_amount through intake's own credit (the fee
 *   split, the journal ('payment_received', id), the conversion or payout job), once. With NOWPAYMENTS_API_KEY set,
 *   the decision is kept and payment_confirm books it once NOWPayments' API knows the payment (a forged partial is
 *   never credited on a person's word: it goes to payment_unconfirmed). A top-up (the rest of a
 *   payment credited as partial, said by a later IPN) is credited as the difference only (creditTopUp), and with
 *   NOWPAYMENTS_API_KEY set only once NOWPayments' API confirmed the later IPN (payment_confirm offers it then).
 * - ignore: the payment is left as it is: a partial or foreign-currency payment is never credited (unless a later
 *   IPN says it finished), a changed amount leaves the credit as it was booked, a conflicting order leaves the payment
 *   with its first order and does what that order's IPNs called for while it was in review (a threshold one is
 *   batched again: in review, no batch takes it; an unpaid instant one gets its payout job again; an uncredited one
 *   is credited, or goes to the review its amounts need: resumeFirstOrder), and a refund after the credit whose money has moved on for good (where reverse cannot
 *   take it back, and waiting will not bring it back) is acknowledged: the credit stays as booked.
 * - reverse: a refund after the credit takes the credit back (journal ('payment_reversed', id)) while its money is
 *   still on the channel's available balance: not converted, not in a payout (one that failed or was cancelled
 *   brought it back). The ETH is still on the host wallet, so it moves to platform:refunds_owed (less what an
 *   exchange kept of it), not back to the world. Anywhere else, the refusal says where it is, and what to do while
 *   it may still come back (cancel the payout, wait for the conversion), and the payment stays in review.
 */
import { sql, type ExpressionBuilder, type RawBuilder, type Selectable, type Transaction } from 'kysely';
import { recordAudit } from '../../db/index.ts';
import { lockChannelForCredit } from '../../channels/lock.ts';
import type { Database, Db, PaymentReviewAction, PaymentsTable, PayoutStatus, PayoutsTable } from '../../db/index.ts';
import { jobWithKeyExists } from '../../jobs/index.ts';
import { accounts, postJournal } from '../../ledger/index.ts';
// Intake's money names: a top-up is parsed, split and shown with the very arithmetic of a first credit.
import {
  decimalsOf,
  formatUnits,
  isAssetCode,
  parsePercent,
  parseUnits,
  splitFee,
  type AssetCode,
  type Percent,
} from '../../money/index.ts';
import {
  alertReview,
  confirmDeadline,
  creditColumns,
  creditEffects,
  creditEntries,
  CREDIT_CHANNEL_COLUMNS,
  feeInForce,
  creditsOnStatus,
  enqueueConfirm,
  enqueueInstantPayout,
  partialCreditDecided,
  requestConfirmation,
  REVIEW,
  reviewCode,
  standingReason,
  storedCredit,
  topUpReason,
  type ConfirmSettings,
  type IntakeSettings,
} from './intake.ts';
import { lockPayment } from './lock.ts';

/**
 * credit, ignore and reverse are a person's decision (kept on the payment as review_action); recheck decides nothing
 * itself: it hands the payment back to NOWPayments' check, whose answer decides.
 */
export const PAYMENT_ACTIONS = ['credit', 'ignore', 'reverse', 'recheck'] as const satisfies readonly (
  PaymentReviewAction | 'recheck'
)[];
export type PaymentAction = (typeof PAYMENT_ACTIONS)[number];

export class PaymentActionRefused extends Error {
  override name = 'PaymentActionRefused';
}

export interface PaymentActionResult {
  readonly paymentId: string;
  /** The review reason the action resolved. */
  readonly reason: string;
  /** The strategy of the channel a credit went to (the caller asks for a conversion check), else null. */
  readonly credited: 'instant' | 'threshold' | null;
  /**
   * Out of review with ETH waiting for a conversion: a credit to a threshold channel, or a payment credited before
   * that the review held back (the caller asks for a conversion check, as after a credit).
   */
  readonly toConversion: boolean;
}

type PaymentRow = Selectable<PaymentsTable>;

/** Reasons `ignore` may close: nothing is credited that was not, and nothing booked is undone. */
const IGNORABLE: readonly string[] = [
  REVIEW.partiallyPaid,
  REVIEW.foreignOutcome,
  REVIEW.outcomeChanged,
  REVIEW.unconfirmed,
  REVIEW.topUp,
  REVIEW.conflictingOrder,
];

/**
 * The actions a review reason allows, as applyPaymentAction checks them (the overview offers these and no others).
 * Allowed is not done: each still looks at the payment's state and where its money is, and refuses; a refund after
 * the credit is offered both, reverse while its money is on the channel, ignore once it moved on.
 */
export function paymentActionsFor(reason: string | null): PaymentAction[] {
  const code = reviewCode(reason);
  if (code === null) return [];
  const allowed: Record<PaymentAction, boolean> = {
    credit: code === REVIEW.partiallyPaid || code === REVIEW.topUp,
    ignore: IGNORABLE.includes(code) || code === REVIEW.refundedAfterCredit,
    reverse: code === REVIEW.refundedAfterCredit,
    recheck: code === REVIEW.unconfirmed,
  };
  return PAYMENT_ACTIONS.filter((action) => allowed[action]);
}

/**
 * `expectedReason`: the exact review reason the person saw when deciding. A reason can change between the look and the
 * click (a refund turns a top-up into refunded_after_credit, a new restatement replaces the last): the action then
 * applies to what the person did not see, so it is refused, naming the reason now held.
 */
export async function applyPaymentAction(
  db: Db,
  paymentId: string,
  action: PaymentAction,
  actor: string,
  settings: IntakeSettings,
  note?: string,
  expectedReason?: string,
): Promise<PaymentActionResult | null> {
  return db.transaction().execute(async (trx) => {
    // A credit or top-up below books from the channel as a save leaves it: its credit lock, shared, is taken before
    // the payment's row lock (lock order: src/channels/lock.ts), so its channel is read first, unlocked.
    const owner = await trx
      .selectFrom('payments')
      .select('channel_id')
      .where('payment_id', '=', paymentId)
      .executeTakeFirst();
    if (!owner) return null;
    await lockChannelForCredit(trx, owner.channel_id);
    const payment = await lockPayment(trx, paymentId);
    if (!payment) return null;
    if (payment.channel_id !== owner.channel_id) throw new Error(`payment ${paymentId} changed channel`);
    const reason = inReview(payment, expectedReason);
    const { credited, evidence, next } = await decide(trx, payment, action, settings);
    // A recheck is no decision on the payment: NOWPayments' answer makes it (the audit log keeps who asked).
    const decided =
      action === 'recheck'
        ? {}
        : { review_action: action, review_action_by: actor, review_action_at: sql<Date>`now()` };
    const moved = await trx
      .updateTable('payments')
      .set({ review_reason: next, ...decided, updated_at: sql`now()` })
      .where('payment_id', '=', paymentId)
      .where('review_reason', '=', reason)
      .returningAll()
      .executeTakeFirst();
    if (!moved) throw new Error(`payment ${paymentId} left review under its row lock`);
    if (next !== null) await alertReview(trx, moved, undefined);
    await recordAudit(trx, {
      actor,
      action: `payment.${action}`,
      subject: paymentId,
      details: { reason, status: payment.status, ...evidence, ...(note !== undefined && { note }) },
    });
    return {
      paymentId,
      reason,
      credited,
      toConversion: moved.review_reason === null && moved.conversion_status === 'pending',
    };
  });
}

/** The review reason the action resolves; refused when the payment is not in review, or not in the one shown. */
function inReview(payment: PaymentRow, expectedReason: string | undefined): string {
  if (expectedReason !== undefined && payment.review_reason !== expectedReason) {
    throw new PaymentActionRefused(
      `its review reason is now ${payment.review_reason ?? 'none (it is not in review)'}, not the one shown (${expectedReason}): look at it again`,
    );
  }
  if (payment.review_reason === null)
    throw new PaymentActionRefused(
      `it is not in review${payment.review_action ? ` (last decision: ${payment.review_action} by ${payment.review_action_by})` : ''}`,
    );
  return payment.review_reason;
}

/**
 * What the action does, under the payment's row lock: the strategy a credit went to, the evidence the audit log keeps,
 * and the review the payment goes to instead of none, when closing this one leaves another decision to a person.
 */
async function decide(
  trx: Transaction<Database>,
  payment: PaymentRow,
  action: PaymentAction,
  settings: IntakeSettings,
): Promise<{ credited: PaymentActionResult['credited']; evidence: Record<string, unknown>; next: string | null }> {
  const code = reviewCode(payment.review_reason);
  if (action === 'credit') {
    const done =
      code === REVIEW.topUp ? await creditTopUp(trx, payment, settings) : await credit(trx, payment, settings);
    return { credited: done.strategy, evidence: done.evidence, next: null };
  }
  if (action === 'recheck') return { credited: null, evidence: await recheck(trx, payment, settings), next: null };
  if (action === 'reverse') return { credited: null, evidence: await reverse(trx, payment), next: null };
  if (code === REVIEW.refundedAfterCredit)
    return { credited: null, evidence: await acknowledgeRefund(trx, payment), next: null };
  if (!IGNORABLE.includes(code as string))
    throw new PaymentActionRefused(`${refusalHint(payment)} (review reason: ${payment.review_reason})`);
  let ignored: Awaited<ReturnType<typeof decide>> = { credited: null, evidence: {}, next: null };
  if (code === REVIEW.conflictingOrder) ignored = await resumeFirstOrder(trx, payment, settings);
  if (await payInstantCredit(trx, payment))
    ignored = { ...ignored, evidence: { ...ignored.evidence, payoutQueued: true } };
  return ignored;
}

/**
 * An instant payment whose credit stands as booked leaves review unpaid when its payout job ran meanwhile (the job
 * skips a payment in review, and nothing queues it again): its ETH would stay on the channel's balance for good. The
 * job is queued with the review's close; under its key it is one job, and it opens nothing for a payment it paid.
 */
async function payInstantCredit(trx: Transaction<Database>, payment: PaymentRow): Promise<boolean> {
  if (payment.credited_at === null || payment.reversed_at !== null || payment.payout_strategy !== 'instant')
    return false;
  const payout = await trx
    .selectFrom('payouts')
    .select('payout_id')
    .where('payment_id', '=', payment.payment_id)
    .executeTakeFirst();
  if (payout) return false;
  await enqueueInstantPayout(trx, payment.payment_id);
  return true;
}

/**
 * NOWPayments is asked again about a payment its check did not confirm (it disagreed, knew no such payment, or gave no
 * usable answer until the deadline, as in an outage): the payment leaves review waiting for payment_confirm again,
 * with a fresh deadline, and the job credits it (or, for a top-up, offers it as top_up) only if the API now agrees,
 * exactly as for a first check. Nothing is booked here; a disagreement, or no answer until the new deadline, puts it
 * back in review.
 */
async function recheck(
  trx: Transaction<Database>,
  payment: PaymentRow,
  settings: IntakeSettings,
): Promise<Record<string, unknown>> {
  if (reviewCode(payment.review_reason) !== REVIEW.unconfirmed)
    throw new PaymentActionRefused(
      `only a payment NOWPayments did not confirm is checked again (review reason: ${payment.review_reason})`,
    );
  if (!settings.confirm)
    throw new PaymentActionRefused(
      'NOWPAYMENTS_API_KEY is unset: there is no NOWPayments API to ask, and a payment is never credited on its IPN alone',
    );
  const deadline = confirmDeadline(settings.confirm);
  if (payment.credited_at !== null) return recheckTopUp(trx, payment, deadline);
  // An ended partial (expired or failed after its partially_paid IPN): NOWPayments' API now describes the expired
  // payment, whose outcome_amount is what was asked, so it can never again agree with the partial's amount. Only a
  // person's decision to credit it has its check compare what the API still shows (the payment, its order, its end).
  if (
    payment.partial_amounts &&
    (payment.status === 'expired' || payment.status === 'failed') &&
    !partialCreditDecided(payment)
  ) {
    throw new PaymentActionRefused(
      `NOWPayments ${payment.status} the partial payment since: its API no longer describes what arrived (${payment.outcome_amount} ${payment.outcome_currency}), so it can never confirm it; ignore closes the review`,
    );
  }
  if (!(creditsOnStatus(payment.status, settings) || partialCreditDecided(payment)) || storedCredit(payment) === null)
    throw new PaymentActionRefused(
      `its status ${payment.status} (${payment.outcome_amount} ${payment.outcome_currency}) is nothing payrail credits, whatever NOWPayments says`,
    );
  const asked = await trx
    .updateTable('payments')
    .set({ confirm_requested_at: sql<Date>`coalesce(confirm_requested_at, now())`, confirm_deadline_at: deadline })
    .where('payment_id', '=', payment.payment_id)
    .where('review_reason', '=', payment.review_reason)
    .where('credited_at', 'is', null)
    .returning('confirm_deadline_at')
    .executeTakeFirst();
  if (!asked) throw new Error(`payment ${payment.payment_id} changed under its row lock`);
  await enqueueConfirm(trx, payment.payment_id);
  return {
    confirmDeadline: asked.confirm_deadline_at?.toISOString() ?? null,
    previousDeadline: payment.confirm_deadline_at?.toISOString() ?? null,
  };
}

/** A credited payment's top-up NOWPayments did not confirm: its restatement waits for the check again. */
async function recheckTopUp(
  trx: Transaction<Database>,
  payment: PaymentRow,
  deadline: RawBuilder<Date>,
): Promise<Record<string, unknown>> {
  if (payment.reversed_at !== null || payment.status === 'refunded')
    throw new PaymentActionRefused('NOWPayments refunded it: no top-up of its credit is checked');
  if (topUpReason(payment) === null)
    throw new PaymentActionRefused(
      `it was credited already at ${(payment.credited_at as Date).toISOString()}, and no later IPN says more than that credit`,
    );
  const asked = await trx
    .updateTable('payments')
    .set({ restated_confirm_deadline_at: deadline, restated_confirmed_at: null })
    .where('payment_id', '=', payment.payment_id)
    .where('review_reason', '=', payment.review_reason)
    .where('gross_amount', '=', payment.gross_amount as string)
    .where('reversed_at', 'is', null)
    .returning('restated_confirm_deadline_at')
    .executeTakeFirst();
  if (!asked) throw new Error(`payment ${payment.payment_id} changed under its row lock`);
  await enqueueConfirm(trx, payment.payment_id);
  return {
    topUp: `${payment.restated_outcome_amount} ${payment.restated_outcome_currency}`,
    confirmDeadline: asked.restated_confirm_deadline_at?.toISOString() ?? null,
  };
}

/**
 * A conflicting order closed by ignore: the payment goes on with its first order from where it stands, as if the other
 * order's IPN had never come. While it was in review, its first order's IPNs were stored but nothing they called for
 * was done, and no copy of them need come again: an uncredited payment in a crediting status is credited now (through
 * NOWPayments' check when NOWPAYMENTS_API_KEY is set, as intake would), one whose amounts need a person goes to that
 * review instead (a partial, say), and a credited one whose top-up waited for NOWPayments' check has it asked again.
 */
async function resumeFirstOrder(
  trx: Transaction<Database>,
  payment: PaymentRow,
  settings: IntakeSettings,
): Promise<{ evidence: Record<string, unknown>; credited: PaymentActionResult['credited']; next: string | null }> {
  const id = payment.payment_id;
  const nothing = { evidence: {}, credited: null, next: null };
  if (payment.credited_at !== null) {
    if (
      !settings.confirm ||
      payment.restated_confirm_deadline_at === null ||
      payment.reversed_at !== null ||
      payment.status === 'refunded'
    )
      return nothing;
    await enqueueConfirm(trx, id);
    return { ...nothing, evidence: { topUpCheck: 'queued' } };
  }
  const channel = await trx
    .selectFrom('channels')
    .select(CREDIT_CHANNEL_COLUMNS)
    .where('channel_id', '=', payment.channel_id)
    .executeTakeFirst();
  const standing = standingReason(payment, channel !== undefined, settings);
  if (standing !== null) return { ...nothing, next: standing };
  const basis = storedCredit(payment);
  if (!channel || !basis || !creditsOnStatus(payment.status, settings)) return nothing;
  if (settings.confirm) {
    await requestConfirmation(trx, id, settings.confirm);
    return { ...nothing, evidence: { confirming: true } };
  }
  const columns = creditColumns(basis, channel, settings);
  const updated = await trx
    .updateTable('payments')
    .set(columns)
    .where('payment_id', '=', id)
    .where('credited_at', 'is', null)
    .where('status', '=', payment.status)
    .executeTakeFirst();
  if (updated.numUpdatedRows !== 1n) throw new Error(`payment ${id} changed under its row lock`);
  await creditEffects(trx, basis, channel, settings);
  return {
    ...nothing,
    credited: channel.payout_strategy,
    evidence: {
      credited: {
        asset: basis.asset,
        gross: columns.gross_amount.toString(),
        fee: columns.fee_amount.toString(),
        net: columns.net_amount.toString(),
      },
    },
  };
}

/** What ignore cannot close, and what can. */
function refusalHint(payment: PaymentRow): string {
  const code = reviewCode(payment.review_reason);
  if (code === REVIEW.unknownChannel)
    return 'register the channel (PUT /api/channels/:id): its payments are released then';
  return 'only a partial payment, a top-up, an outcome currency payrail does not credit, a changed outcome amount, a payment NOWPayments did not confirm, or a conflicting order can be ignored';
}

async function credit(trx: Transaction<Database>, payment: PaymentRow, settings: IntakeSettings) {
  if (reviewCode(payment.review_reason) !== REVIEW.partiallyPaid)
    throw new PaymentActionRefused(
      `only a partially_paid payment in review is credited by hand (review reason: ${payment.review_reason})`,
    );
  if (payment.credited_at !== null)
    throw new PaymentActionRefused(`it was credited already at ${payment.credited_at.toISOString()}`);
  // Its amounts are a partially_paid IPN's while that is its status, or an expired or failed one followed it; any
  // other later IPN's replace them.
  if (!payment.partial_amounts)
    throw new PaymentActionRefused(
      `its status is now ${payment.status}: the stored outcome_amount is no longer the partial payment's`,
    );
  const channel = await trx
    .selectFrom('channels')
    .select(CREDIT_CHANNEL_COLUMNS)
    .where('channel_id', '=', payment.channel_id)
    .executeTakeFirst();
  if (!channel) throw new PaymentActionRefused(`channel ${payment.channel_id} is not registered`);
  const basis = storedCredit(payment);
  if (!basis)
    throw new PaymentActionRefused(
      `its outcome (${payment.outcome_amount} ${payment.outcome_currency}) is nothing payrail can credit`,
    );
  // With NOWPAYMENTS_API_KEY set, a person's word is no more proof than the signed IPN: the decision is kept
  // (review_action credit) and payment_confirm credits it once NOWPayments' API agrees, with a fresh deadline.
  if (settings.confirm) return { strategy: null, evidence: await creditOnceConfirmed(trx, payment, settings.confirm) };
  const columns = creditColumns(basis, channel, settings);
  const updated = await trx
    .updateTable('payments')
    .set(columns)
    .where('payment_id', '=', payment.payment_id)
    .where('credited_at', 'is', null)
    .where('status', '=', payment.status)
    .where('partial_amounts', '=', true)
    .executeTakeFirst();
  if (updated.numUpdatedRows !== 1n) throw new Error(`payment ${payment.payment_id} changed under its row lock`);
  await creditEffects(trx, basis, channel, settings);
  return {
    strategy: channel.payout_strategy,
    evidence: {
      asset: basis.asset,
      gross: columns.gross_amount.toString(),
      fee: columns.fee_amount.toString(),
      net: columns.net_amount.toString(),
      outcomeAmount: payment.outcome_amount,
    },
  };
}

/** The partial waits for NOWPayments' check (the caller marks the decision, which is what the check credits on). */
async function creditOnceConfirmed(
  trx: Transaction<Database>,
  payment: PaymentRow,
  confirm: ConfirmSettings,
): Promise<Record<string, unknown>> {
  const asked = await trx
    .updateTable('payments')
    .set({
      confirm_requested_at: sql<Date>`coalesce(confirm_requested_at, now())`,
      confirm_deadline_at: confirmDeadline(confirm),
    })
    .where('payment_id', '=', payment.payment_id)
    .where('credited_at', 'is', null)
    .where('review_reason', '=', payment.review_reason as string)
    .returning('confirm_deadline_at')
    .executeTakeFirst();
  if (!asked) throw new Error(`payment ${payment.payment_id} changed under its row lock`);
  await enqueueConfirm(trx, payment.payment_id);
  return {
    confirming: true,
    outcomeAmount: payment.outcome_amount,
    confirmDeadline: asked.confirm_deadline_at?.toISOString() ?? null,
  };
}

/**
 * The fee of a top-up: the one the payment was first credited at (its fee_percent), the fee in force at that credit.
 * The rest belongs to the same payment, so a fee changed since (the channel's own or PLATFORM_FEE_PERCENT) never splits
 * one payment two ways, and its fee_percent stays true of all of it. Only a credit that kept no fee_percent (every
 * credit keeps one) would take the channel's fee in force now.
 */
async function topUpFee(trx: Transaction<Database>, payment: PaymentRow, settings: IntakeSettings): Promise<Percent> {
  if (payment.fee_percent !== null) return parsePercent(payment.fee_percent);
  const channel = await trx
    .selectFrom('channels')
    .select('platform_fee_percent')
    .where('channel_id', '=', payment.channel_id)
    .executeTakeFirst();
  return channel ? feeInForce(channel, settings) : settings.feePercent;
}

/**
 * A top-up: the rest of a payment credited as partial arrived. Exactly the difference to the outcome the later IPN
 * restated is credited, at the payment's own fee, on its own journal ('payment_topped_up', '<id>:<new gross>'): the
 * first part is never credited again, and the same total never twice. The difference goes the first part's way: with
 * it while that still waits (a pending conversion, an instant payout not opened yet), else to the next conversion on
 * its own (net_moved_wei holds back what already went), whose USDT the channel is paid as any (at once when instant).
 */
async function creditTopUp(
  trx: Transaction<Database>,
  payment: PaymentRow,
  settings: IntakeSettings,
): Promise<{ strategy: 'instant' | 'threshold'; evidence: Record<string, unknown> }> {
  const id = payment.payment_id;
  const topUp = await topUpAmounts(trx, payment, settings);
  const { asset, total, before, gross, fee, net } = topUp;
  const { way, payoutJob } =
    payment.payout_strategy === 'threshold'
      ? { way: thresholdTopUpWay(payment, before.net), payoutJob: false }
      : await instantTopUpWay(trx, payment, asset);
  await moveTopUp(trx, payment, topUp, way);
  // Not paid out yet: its payout opens from the whole net, the difference included.
  if (payoutJob) await enqueueInstantPayout(trx, id);
  const entries = creditEntries(asset, id, payment.channel_id, { gross, fee, net });
  const journal = await postJournal(trx, { kind: 'payment_topped_up', ref: `${id}:${total}`, entries });
  if (!journal.posted) throw new Error(`payment ${id} already has a top-up to ${total}: refusing to credit twice`);
  const converting = way.conversion_status === 'pending' || payment.conversion_status === 'pending';
  return {
    strategy: converting ? 'threshold' : 'instant',
    evidence: {
      asset,
      creditedBefore: before.gross.toString(),
      total: total.toString(),
      gross: gross.toString(),
      fee: fee.toString(),
      net: net.toString(),
      netMoved: (way.net_moved_wei ?? BigInt(payment.net_moved_wei)).toString(),
      journal: journal.journalId,
    },
  };
}

/** A top-up's amounts: the credit before it, the total the later IPN restated, and the difference split at its fee. */
interface TopUpAmounts {
  readonly asset: AssetCode;
  readonly total: bigint;
  readonly before: { readonly gross: bigint; readonly fee: bigint; readonly net: bigint };
  readonly gross: bigint;
  readonly fee: bigint;
  readonly net: bigint;
}

/** The columns a top-up moves the payment's money to: the first part's way, or the next conversion on its own. */
interface TopUpWay {
  payout_strategy?: 'threshold';
  conversion_status?: 'pending';
  conversion_id?: null;
  net_moved_wei?: bigint;
  payout_id?: null;
}

/** Refuses a top-up that is not there to credit (or not yet confirmed), else says how much it is. */
async function topUpAmounts(
  trx: Transaction<Database>,
  payment: PaymentRow,
  settings: IntakeSettings,
): Promise<TopUpAmounts> {
  if (
    payment.credited_at === null ||
    payment.reversed_at !== null ||
    payment.asset === null ||
    !isAssetCode(payment.asset)
  )
    throw new PaymentActionRefused('it holds no credit to top up');
  // After a refund nothing more arrives: a later IPN saying more is an older one retried, whatever review it opened.
  if (payment.status === 'refunded')
    throw new PaymentActionRefused('NOWPayments refunded it: no top-up is credited on a refunded payment');
  const asset = payment.asset;
  if (payment.restated_outcome_amount === null || payment.restated_outcome_currency !== asset)
    throw new PaymentActionRefused(`no later IPN says more ${asset.toUpperCase()} than was credited`);
  // With NOWPAYMENTS_API_KEY set, the signed IPN is not enough: NOWPayments' API must have said the same (payment_confirm
  // marks it, and any later restatement clears the mark).
  if (settings.confirm && payment.restated_confirmed_at === null)
    throw new PaymentActionRefused(
      `NOWPayments has not confirmed the later IPN's ${payment.restated_outcome_amount} ${asset.toUpperCase()}: only a top-up its API agreed with is credited`,
    );
  const total = parseUnits(payment.restated_outcome_amount, decimalsOf(asset));
  const before = {
    gross: BigInt(payment.gross_amount as string),
    fee: BigInt(payment.fee_amount as string),
    net: BigInt(payment.net_amount as string),
  };
  if (total <= before.gross)
    throw new PaymentActionRefused(
      `${shown(before.gross, asset)} is credited already, no less than the ${shown(total, asset)} the later IPN says`,
    );
  const gross = total - before.gross;
  const { fee, net } = splitFee(gross, await topUpFee(trx, payment, settings));
  return { asset, total, before, gross, fee, net };
}

/** A threshold payment's top-up: with its pending conversion, or on its own once the first part was converted. */
function thresholdTopUpWay(payment: PaymentRow, netBefore: bigint): TopUpWay {
  // Everything it had to convert was converted: the difference is all the next batch takes of it.
  if (payment.conversion_status === 'completed')
    return {
      conversion_status: 'pending',
      conversion_id: null,
      net_moved_wei: netBefore - BigInt(payment.exchange_cost_wei),
    };
  if (payment.conversion_status !== 'pending')
    throw new PaymentActionRefused(
      `its ETH is in conversion ${payment.conversion_id ?? 'unknown'} (${payment.conversion_status}): credit the rest once that conversion has ended`,
    );
  return {};
}

/**
 * An instant payout is one per payment, opened for the net it had: the difference is converted and paid as USDT,
 * with whatever of the first part the payout did not take for good. With no payout yet, its job is queued instead.
 */
async function instantTopUpWay(
  trx: Transaction<Database>,
  payment: PaymentRow,
  asset: AssetCode,
): Promise<{ way: TopUpWay; payoutJob: boolean }> {
  const payout = await trx
    .selectFrom('payouts')
    .select(['payout_id', 'amount', 'status'])
    .where('payment_id', '=', payment.payment_id)
    .executeTakeFirst();
  if (!payout) return { way: {}, payoutJob: true };
  if (payout.status === 'completed')
    return {
      way: { payout_strategy: 'threshold', conversion_status: 'pending', net_moved_wei: BigInt(payout.amount) },
      payoutJob: false,
    };
  if (PAYOUT_ENDED_BACK.includes(payout.status)) {
    // Failed or cancelled: its ETH is back on the channel, less what ChangeNow kept of a refund that came back short.
    // Counting the payout's amount as moved would leave that ETH on the channel, never converted or paid.
    const way: TopUpWay = {
      payout_strategy: 'threshold',
      conversion_status: 'pending',
      net_moved_wei: await keptByChangeNow(trx, payout.payout_id, asset),
      payout_id: null,
    };
    return { way, payoutJob: false };
  }
  // Under way, it may still fail and bring its ETH back: how much moved on is known only once it ends.
  throw new PaymentActionRefused(
    `its ETH is in instant payout ${payout.payout_id} (${payout.status}): credit the rest once that payout has ended${PAYOUT_SENT_NOTHING.includes(payout.status) ? ' (cancel it while it has sent nothing)' : ''}`,
  );
}

/** The payment's credit grows by the top-up, guarded on every column it was read with (its gross, strategy, way). */
async function moveTopUp(
  trx: Transaction<Database>,
  payment: PaymentRow,
  { total, before, fee, net }: TopUpAmounts,
  way: TopUpWay,
): Promise<void> {
  const id = payment.payment_id;
  let update = trx
    .updateTable('payments')
    .set({
      gross_amount: total,
      fee_amount: before.fee + fee,
      net_amount: before.net + net,
      credited_partial: payment.status === 'partially_paid',
      ...way,
      updated_at: sql`now()`,
    })
    .where('payment_id', '=', id)
    .where('gross_amount', '=', before.gross.toString())
    .where('reversed_at', 'is', null)
    .where('payout_strategy', '=', payment.payout_strategy as 'instant' | 'threshold')
    .where(samePayout(payment.payout_id));
  update =
    payment.conversion_status === null
      ? update.where('conversion_status', 'is', null)
      : update.where('conversion_status', '=', payment.conversion_status);
  const moved = await update.executeTakeFirst();
  if (moved.numUpdatedRows !== 1n) throw new Error(`payment ${id} changed under its row lock`);
}

/**
 * A payment's update guard: the payout it was read with under its row lock, none or that one, is still its payout,
 * so the update writes over the very state the decision was taken on.
 */
function samePayout(payoutId: string | null) {
  return (eb: ExpressionBuilder<Database, 'payments'>) =>
    payoutId === null ? eb('payout_id', 'is', null) : eb('payout_id', '=', payoutId);
}

async function reverse(trx: Transaction<Database>, payment: PaymentRow): Promise<Record<string, unknown>> {
  if (reviewCode(payment.review_reason) !== REVIEW.refundedAfterCredit)
    throw new PaymentActionRefused(
      `only a payment refunded after its credit is reversed (review reason: ${payment.review_reason})`,
    );
  if (payment.credited_at === null || payment.asset === null || !isAssetCode(payment.asset))
    throw new PaymentActionRefused('nothing was credited');
  if (payment.reversed_at !== null)
    throw new PaymentActionRefused(`its credit was reversed already at ${payment.reversed_at.toISOString()}`);
  const id = payment.payment_id;
  const asset = payment.asset;
  const gross = BigInt(payment.gross_amount as string);
  const fee = BigInt(payment.fee_amount as string);
  const net = BigInt(payment.net_amount as string);
  // What ChangeNow kept of it when a conversion came back short: the channel bore it, and the wallet no longer holds it.
  const cost = BigInt(payment.exchange_cost_wei);

  const blocked = await reverseBlocked(trx, payment);
  if (blocked)
    throw new PaymentActionRefused(
      blocked.lasting
        ? `${blocked.why}: ignore acknowledges the refund instead (the credit stays as booked; the refund is settled outside payrail)`
        : blocked.why,
    );

  // The ETH NOWPayments forwarded is still on the host wallet: it stays on the platform's books, owed, until the
  // transaction that sends it back is booked (payrail withdrawal --from refunds).
  const entries = [
    { account: accounts.refundsOwed(asset), amount: gross - cost },
    { account: accounts.platformFees(asset, id), amount: -fee },
    { account: accounts.channel(payment.channel_id, asset), amount: -(net - cost) },
  ].filter((e) => e.amount !== 0n);
  const journal = await postJournal(trx, { kind: 'payment_reversed', ref: id, entries });
  if (!journal.posted) throw new Error(`payment ${id} already has a reversal journal`);
  // The guard names the state left: a threshold payment still pending, an instant one with no payout or only the one
  // that failed or was cancelled (its ETH back on the channel; an ended payout never changes again).
  let update = trx
    .updateTable('payments')
    .set({ reversed_at: sql`now()`, conversion_status: null })
    .where('payment_id', '=', id)
    .where('reversed_at', 'is', null)
    .where(samePayout(payment.payout_id));
  update =
    payment.conversion_status === null
      ? update.where('conversion_status', 'is', null)
      : update.where('conversion_status', '=', 'pending');
  const moved = await update.executeTakeFirst();
  if (moved.numUpdatedRows !== 1n) throw new Error(`payment ${id} changed under its row lock`);
  return {
    asset,
    gross: gross.toString(),
    fee: fee.toString(),
    net: net.toString(),
    exchangeCost: cost.toString(),
    refundsOwed: (gross - cost).toString(),
    journal: journal.journalId,
  };
}

/**
 * A refund after the credit is acknowledged without taking the credit back only where reverse cannot take it: the
 * money has moved on for good (converted, paid out, kept by ChangeNow, fees taken out), so nothing on payrail's books
 * can be returned. While reverse can, or could once a conversion or payout ends, it is the way (acknowledging would
 * pay the owner for a payment the subscriber got back).
 */
async function acknowledgeRefund(trx: Transaction<Database>, payment: PaymentRow): Promise<Record<string, unknown>> {
  const blocked = await reverseBlocked(trx, payment);
  if (!blocked)
    throw new PaymentActionRefused(
      'its money is still on the channel: reverse the credit (POST /api/payments/:id/reverse) rather than acknowledge the refund',
    );
  if (!blocked.lasting) throw new PaymentActionRefused(blocked.why);
  return { moved: blocked.why };
}

/** Payout states that have sent nothing: a person's cancel returns the funds to the channel at once. */
const PAYOUT_SENT_NOTHING: readonly PayoutStatus[] = ['pending', 'held', 'awaiting_approval'];
/** Payout states after which its funds never come back to the channel by themselves. */
const PAYOUT_ENDED_BACK: readonly PayoutStatus[] = ['failed', 'cancelled'];

/** What to do about a conversion or payout that has not ended, whichever way it ends. */
const UNTIL_ENDED =
  'once it completed, ignore acknowledges the refund; once it failed, its ETH is back on the channel and reverse takes it';

/**
 * Why the credit cannot be taken back now, or null when it can. `lasting`: its money has moved on for good and will
 * not come back by waiting (ignore is then the way out). Otherwise it may still come back: a payout that sent nothing
 * (cancel it), a conversion or payout that has not ended (wait for it), or a job that has to run first; ignore is no
 * way out then, or the money would be paid to the owner after all once it is back on the channel.
 */
async function reverseBlocked(trx: Transaction<Database>, payment: PaymentRow): Promise<ReverseBlock | null> {
  const asset = payment.asset as AssetCode;
  const before = BigInt(payment.net_moved_wei);
  if (before > 0n) return movedOn(`${shown(before, asset)} of it was converted or paid out before its top-up`);
  if (payment.conversion_status !== null && payment.conversion_status !== 'pending')
    return conversionBlock(trx, payment);
  const payouts = await paymentPayouts(trx, payment);
  for (const payout of payouts) {
    const blocked = await payoutBlock(trx, payout, asset);
    if (blocked) return blocked;
  }
  if (payment.payout_strategy === 'instant' && payouts.length === 0) {
    // Its payout job opens a payout for any credited payment out of review: it must have run (and skipped this one).
    if (await jobWithKeyExists(trx, `payout_instant:${payment.payment_id}`))
      return waitFor('its instant payout job has not run yet: try again once it has (it skips a payment in review)');
  }
  return balancesBlock(trx, payment, asset);
}

/** Why reverse cannot take the credit back; `lasting` when its money has moved on for good (see reverseBlocked). */
interface ReverseBlock {
  readonly why: string;
  readonly lasting: boolean;
}

const movedOn = (why: string): ReverseBlock => ({ why, lasting: true });
const waitFor = (why: string): ReverseBlock => ({ why, lasting: false });
const shown = (units: bigint, asset: AssetCode) => `${formatUnits(units, decimalsOf(asset))} ${asset.toUpperCase()}`;

/** The payment went into a conversion that completed, or has not ended yet. */
async function conversionBlock(trx: Transaction<Database>, payment: PaymentRow): Promise<ReverseBlock> {
  const conversion = payment.conversion_id
    ? await trx
        .selectFrom('conversions')
        .select(['status'])
        .where('conversion_id', '=', payment.conversion_id)
        .executeTakeFirst()
    : undefined;
  const where = `conversion ${payment.conversion_id ?? 'unknown'} (${conversion?.status ?? 'not found'}`;
  if (payment.conversion_status === 'completed')
    return movedOn(
      `its ETH was converted to USDT in ${where}${payment.usdt_amount ? `, ${formatUnits(BigInt(payment.usdt_amount), decimalsOf('usdt'))} USDT` : ''})`,
    );
  // Converting, or in review (its payments 'failed' until a person ends it): the ETH may come back (refunded,
  // never sent), and the payment with it to the next batch.
  return waitFor(`its ETH is in ${where}), which has not ended: wait for the conversion (${UNTIL_ENDED})`);
}

type PaymentPayout = Pick<Selectable<PayoutsTable>, 'payout_id' | 'status' | 'kind'>;

/** Its own instant payout (one per payment), or the batch that pays its USDT. */
function paymentPayouts(trx: Transaction<Database>, payment: PaymentRow): Promise<PaymentPayout[]> {
  return trx
    .selectFrom('payouts')
    .select(['payout_id', 'status', 'kind'])
    .where((eb) =>
      eb.or([
        eb('payment_id', '=', payment.payment_id),
        ...(payment.payout_id ? [eb('payout_id', '=', payment.payout_id)] : []),
      ]),
    )
    .execute();
}

/** A payout that paid the money out, may still send or bring it back, or brought it back short. */
async function payoutBlock(
  trx: Transaction<Database>,
  payout: PaymentPayout,
  asset: AssetCode,
): Promise<ReverseBlock | null> {
  const named = `its money is in ${payout.kind} payout ${payout.payout_id} (${payout.status})`;
  if (payout.status === 'completed') return movedOn(named);
  if (PAYOUT_SENT_NOTHING.includes(payout.status))
    return waitFor(
      `${named}, which has sent nothing: cancel the payout (POST /api/payouts/${payout.payout_id}/cancel) to return its ETH to the channel, then reverse`,
    );
  if (!PAYOUT_ENDED_BACK.includes(payout.status))
    return waitFor(`${named}, which has not ended: wait for the payout (${UNTIL_ENDED})`);
  // Failed or cancelled: its funds are back on the channel, less what ChangeNow kept of a refund that came back short.
  const paid = payout.kind === 'instant' ? asset : 'usdt';
  const kept = await keptByChangeNow(trx, payout.payout_id, paid);
  if (kept > 0n)
    return movedOn(
      `its ${payout.kind} payout ${payout.payout_id} (${payout.status}) came back ${formatUnits(kept, decimalsOf(paid))} short: ChangeNow kept it`,
    );
  return null;
}

/** The channel and the platform's fee account still hold what reverse takes back from them. */
async function balancesBlock(
  trx: Transaction<Database>,
  payment: PaymentRow,
  asset: AssetCode,
): Promise<ReverseBlock | null> {
  // Back to pending after a conversion that did not complete, its ETH is known to the wei: what came back (a short
  // refund's cost is on exchange_cost_wei), or what the platform bore (a lost conversion leaves the channel whole).
  const left = BigInt(payment.net_amount as string) - BigInt(payment.exchange_cost_wei);
  const fee = BigInt(payment.fee_amount as string);
  const held = await balanceOf(trx, accounts.channel(payment.channel_id, asset).code, asset);
  if (held < left)
    return movedOn(
      `channel ${payment.channel_id} holds ${shown(held, asset)} available, less than the ${shown(left, asset)} left of its credit: the rest has moved on`,
    );
  const feeAccount = accounts.platformFees(asset, payment.payment_id);
  const fees = await balanceOf(trx, feeAccount.code, asset);
  if (fees < fee)
    return movedOn(
      `the platform's fee account ${feeAccount.code} holds ${shown(fees, asset)}, less than the fee of ${shown(fee, asset)}: fees were taken out`,
    );
  return null;
}

/** What ChangeNow kept of an ended payout's funds (its return journal's share to world:changenow), 0 when all came back. */
async function keptByChangeNow(trx: Transaction<Database>, payoutId: string, asset: AssetCode): Promise<bigint> {
  const row = await trx
    .selectFrom('ledger_entries as e')
    .innerJoin('ledger_journals as j', 'j.id', 'e.journal_id')
    .innerJoin('ledger_accounts as a', 'a.id', 'e.account_id')
    .select('e.amount')
    .where('j.kind', '=', 'payout_returned')
    .where('j.ref', '=', payoutId)
    .where('a.code', '=', accounts.changenow(asset).code)
    .where('a.asset', '=', asset)
    .executeTakeFirst();
  return row ? BigInt(row.amount) : 0n;
}

/** Locked FOR NO KEY UPDATE, the lock its journal's update takes: an intake group's entries (FOR KEY SHARE) pass. */
async function balanceOf(trx: Transaction<Database>, code: string, asset: string): Promise<bigint> {
  const row = await trx
    .selectFrom('ledger_accounts')
    .select('balance')
    .where('code', '=', code)
    .where('asset', '=', asset)
    .forNoKeyUpdate()
    .executeTakeFirst();
  return row ? BigInt(row.balance) : 0n;
}
