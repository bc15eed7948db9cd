/**
 * Intake: one NOWPayments IPN becomes, in ONE short transaction, the payment's record and, when it is the first
 * `finished` for a known channel, the fee split, the ledger credit and the next step (conversion pending or a payout
 * job). No outside call happens here; the webhook answers right after the commit.
 *
 * Every IPN may arrive many times, concurrently and out of order. The payment row (primary key payment_id) is the
 * lock: the first insert wins, later copies wait on it and then see the committed state. Statuses only move forward,
 * and the credit is guarded twice, by `credited_at` and by the ledger's unique (kind, ref) journal key.
 */
import { sql, type Selectable, type Transaction } from 'kysely';
import type { Database, Db, PaymentsTable } from '../db/index.ts';
import type { Ipn, IpnStatus } from '../integrations/nowpayments/index.ts';
import { enqueue } from '../jobs/index.ts';
import { accounts, postJournal } from '../ledger/index.ts';
import { decimalsOf, INTAKE_ASSETS, isAssetCode, parseUnits, splitFee, type AssetCode, type Percent } from '../money/index.ts';
import { PAYOUT_JOB_MAX_ATTEMPTS } from './payout.ts';

export interface IntakeSettings {
  readonly feePercent: Percent;
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

export const REVIEW = {
  unknownChannel: 'unknown_channel',
  conflictingOrder: 'conflicting_order_id',
  refundedAfterCredit: 'refunded_after_credit',
} as const;

export async function recordIpn(db: Db, ipn: Ipn, settings: IntakeSettings): Promise<IntakeResult> {
  return db.transaction().execute(async (trx) => {
    const channel = await trx.selectFrom('channels').selectAll().where('channel_id', '=', ipn.channelId).executeTakeFirst();
    // The common case, a first IPN that is already `finished` for a known channel, is credited by the insert itself.
    const creditOnInsert = ipn.status === 'finished' && channel !== undefined ? creditColumns(creditOf(ipn), channel.payout_strategy, settings) : undefined;
    const inserted = await trx
      .insertInto('payments')
      .values({
        payment_id: ipn.paymentId,
        invoice_id: ipn.invoiceId,
        order_id: ipn.orderId,
        user_id: ipn.userId,
        channel_id: ipn.channelId,
        status: ipn.status,
        ...reportedAmounts(ipn),
        review_reason: channel ? null : REVIEW.unknownChannel,
        last_ipn: ipn.json,
        ...creditOnInsert,
      })
      .onConflict((oc) => oc.column('payment_id').doNothing())
      .returningAll()
      .executeTakeFirst();

    let outcome: IntakeOutcome = inserted ? 'recorded' : 'unchanged';
    // A later copy waits here for the first one's commit, then sees what it did.
    let current = inserted ?? (await trx.selectFrom('payments').selectAll().where('payment_id', '=', ipn.paymentId).forUpdate().executeTakeFirstOrThrow());

    if (!inserted) {
      const update = nextState(current, ipn, channel !== undefined);
      if (update) {
        current = await trx
          .updateTable('payments')
          .set({ ...update, ipn_count: sql`ipn_count + 1`, updated_at: sql`now()` })
          .where('payment_id', '=', ipn.paymentId)
          .returningAll()
          .executeTakeFirstOrThrow();
        outcome = 'advanced';
      } else {
        await trx.updateTable('payments').set({ ipn_count: sql`ipn_count + 1` }).where('payment_id', '=', ipn.paymentId).execute();
      }
    }

    let credited: IntakeResult['credited'] = null;
    if (inserted && creditOnInsert) {
      await creditEffects(trx, creditOf(ipn), channel!.payout_strategy, settings);
      credited = channel!.payout_strategy;
    } else if (current.status === 'finished' && current.credited_at === null && current.review_reason === null && channel) {
      // Credit what the finished IPN reported (stored on the row), never the amounts of whichever copy came last.
      const stored = storedCredit(current);
      await trx.updateTable('payments').set(creditColumns(stored, channel.payout_strategy, settings)).where('payment_id', '=', ipn.paymentId).execute();
      await creditEffects(trx, stored, channel.payout_strategy, settings);
      credited = channel.payout_strategy;
    }
    const reviewReason = current.review_reason;
    return { outcome: reviewReason ? 'review' : outcome, paymentId: ipn.paymentId, status: current.status, credited, reviewReason };
  });
}

type PaymentRow = Selectable<PaymentsTable>;

/** What a later copy of the IPN changes, or undefined when it changes nothing. */
function nextState(current: PaymentRow, ipn: Ipn, channelKnown: boolean) {
  if (current.order_id !== ipn.orderId) {
    // The same payment id for another order: never re-route money on the word of a later message.
    return current.review_reason === null ? { review_reason: `${REVIEW.conflictingOrder}: ${ipn.orderId}` } : undefined;
  }
  const forward = STATUS_RANK[ipn.status] > STATUS_RANK[current.status];
  let reviewReason = current.review_reason;
  // A channel registered after its first IPN clears that flag, so its payment can proceed.
  if (reviewReason === REVIEW.unknownChannel && channelKnown) reviewReason = null;
  if (forward && ipn.status === 'refunded' && current.credited_at !== null) reviewReason = REVIEW.refundedAfterCredit;
  if (!forward && reviewReason === current.review_reason) return undefined;
  return {
    review_reason: reviewReason,
    ...(forward && { status: ipn.status, last_ipn: ipn.json }),
    // Reported amounts follow the status until the credit fixes them.
    ...(forward && current.credited_at === null && reportedAmounts(ipn)),
  };
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

/** The credit as the payment row records it: the fee split and the payment's next step. */
/**
 * A channel was registered (or changed): its payments kept for review as `unknown_channel` are released, and those
 * already `finished` are credited from their stored finished amounts, one transaction each. Returns the strategies
 * credited, so the caller can ask for a conversion check.
 */
export async function releaseUnknownChannelPayments(db: Db, channelId: string, settings: IntakeSettings): Promise<Array<'instant' | 'threshold'>> {
  const waiting = await db.selectFrom('payments').select('payment_id').where('channel_id', '=', channelId).where('review_reason', '=', REVIEW.unknownChannel).execute();
  const credited: Array<'instant' | 'threshold'> = [];
  for (const { payment_id } of waiting) {
    const strategy = await db.transaction().execute(async (trx) => {
      const channel = await trx.selectFrom('channels').select('payout_strategy').where('channel_id', '=', channelId).executeTakeFirst();
      const row = await trx.selectFrom('payments').selectAll().where('payment_id', '=', payment_id).forUpdate().executeTakeFirstOrThrow();
      if (!channel || row.review_reason !== REVIEW.unknownChannel) return null;
      if (row.status !== 'finished' || row.credited_at !== null) {
        await trx.updateTable('payments').set({ review_reason: null, updated_at: sql`now()` }).where('payment_id', '=', payment_id).execute();
        return null;
      }
      const stored = storedCredit(row);
      await trx.updateTable('payments').set({ ...creditColumns(stored, channel.payout_strategy, settings), review_reason: null, updated_at: sql`now()` }).where('payment_id', '=', payment_id).execute();
      await creditEffects(trx, stored, channel.payout_strategy, settings);
      return channel.payout_strategy;
    });
    if (strategy) credited.push(strategy);
  }
  return credited;
}

/** What a credit is computed from: the payment, its channel, and the amount received in smallest units. */
interface CreditBasis {
  readonly paymentId: string;
  readonly channelId: string;
  readonly asset: AssetCode;
  readonly grossUnits: bigint;
}

function creditOf(ipn: Ipn): CreditBasis {
  return { paymentId: ipn.paymentId, channelId: ipn.channelId, asset: ipn.outcomeCurrency, grossUnits: ipn.outcomeUnits };
}

/** The credit from the amounts the row holds: those of the IPN that moved it to `finished`. */
function storedCredit(row: PaymentRow): CreditBasis {
  const asset = row.outcome_currency;
  if (!isAssetCode(asset) || !INTAKE_ASSETS.includes(asset)) throw new Error(`payment ${row.payment_id} holds an outcome currency intake does not accept: ${asset}`);
  return { paymentId: row.payment_id, channelId: row.channel_id, asset, grossUnits: parseUnits(row.outcome_amount, decimalsOf(asset)) };
}

function creditColumns(basis: CreditBasis, strategy: 'instant' | 'threshold', settings: IntakeSettings) {
  if (basis.grossUnits <= 0n) throw new Error(`payment ${basis.paymentId}: a finished payment must have a positive amount`);
  const { fee, net } = splitFee(basis.grossUnits, settings.feePercent);
  return {
    asset: basis.asset,
    gross_amount: basis.grossUnits,
    fee_amount: fee,
    net_amount: net,
    fee_percent: settings.feePercent.text,
    payout_strategy: strategy,
    credited_at: sql<Date>`now()`,
    // Threshold: the ETH waits to be converted with others; the conversion stage picks pending payments up.
    conversion_status: strategy === 'threshold' ? ('pending' as const) : null,
  };
}

/**
 * What a credit does besides the payment row, in the same transaction: the instant payout job, then the balanced
 * journal. The journal goes last: it locks balance rows, which stay locked until the commit.
 */
async function creditEffects(trx: Transaction<Database>, basis: CreditBasis, strategy: 'instant' | 'threshold', settings: IntakeSettings): Promise<void> {
  const { asset, grossUnits: gross, paymentId, channelId } = basis;
  const { fee, net } = splitFee(gross, settings.feePercent);
  if (strategy === 'instant') {
    await enqueue(trx, 'payout_instant', { paymentId }, { jobKey: `payout_instant:${paymentId}`, jobKeyMode: 'unsafe_dedupe', maxAttempts: PAYOUT_JOB_MAX_ATTEMPTS });
  }
  const entries = [
    { account: accounts.nowpayments(asset, paymentId), amount: -gross },
    { account: accounts.platformFees(asset, paymentId), amount: fee },
    { account: accounts.channel(channelId, asset), amount: net },
  ].filter((e) => e.amount !== 0n);
  const journal = await postJournal(trx, { kind: 'payment_received', ref: paymentId, entries });
  if (!journal.posted) throw new Error(`payment ${paymentId} already has a ledger credit: refusing to credit twice`);
}
