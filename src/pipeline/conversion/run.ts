/**
 * Conversion: threshold channels' pending ETH becomes USDT, in micro-batches. One conversion = one ChangeNow
 * exchange ETH→USDT (paid out to the host wallet, payrail's conversion id in userId/payload) + one ETH transfer to
 * its payin address. Every step records its intent before its outside effect, so a repeat of any step finds what
 * the last attempt did instead of doing it again.
 */
import { randomBytes } from 'node:crypto';
import { sql, type Selectable, type Transaction } from 'kysely';
import type { AlertInput } from '../../alerts/index.ts';
import type { ConversionState, ConversionsTable, Database, Db } from '../../db/index.ts';
import type { Logger } from '../../log.ts';
import { ChangeNowError } from '../../integrations/changenow/index.ts';
import { enqueue } from '../../jobs/index.ts';
import { formatUnits, parseUnitsFloor } from '../../money/index.ts';
import type { StageDeps } from '../interfaces.ts';
import { withRunLock } from '../run-lock.ts';
import { reviewWithAlert, stageAlert } from '../alert.ts';
import { createdMismatch, createdPayin, foundPayin, statusMismatch } from '../exchange-answer.ts';
import type { ExchangeAsk, Payin } from '../exchange-answer.ts';
import { holdTransfer, type TransferHooks } from '../transfer/index.ts';

const EXCHANGE_MAX_ATTEMPTS = 25;
const HOLD_MAX_MINUTES = 24 * 60;

/** Batch runs (cron and nudges) share one queue: they run one at a time, never racing for the same payments. */
export const CONVERSION_BATCH_QUEUE = 'conversion_batch';

/** Where ChangeNow should send what it owes us when a swap fails: the host wallet. */
const PAIR = { fromCurrency: 'eth', fromNetwork: 'eth', toCurrency: 'usdt', toNetwork: 'eth' } as const;

/** A conversion's exchange: the batch's ETH in, USDT out to the host wallet, any refund back to it. */
function askFor(deps: StageDeps, fromAmount: string): ExchangeAsk {
  return { ...PAIR, fromAmount, payoutAddress: deps.hostAddress, refundAddress: deps.hostAddress };
}

/**
 * The check after intake: queue a conversion_batch run soon. It runs after the intake commit, at most once per
 * `minIntervalMs` per process, and outside any request's transaction: the payment row (conversion_status pending) is
 * the durable record the batch job works from, and the cron run picks up anything a lost nudge left.
 */
export function createConversionNudger(db: Db, logger: Logger, minIntervalMs = 1_000): () => void {
  let last = 0;
  let timer: NodeJS.Timeout | undefined;
  const fire = () => {
    timer = undefined;
    last = Date.now();
    db.transaction()
      .execute(enqueueConversionBatch)
      .catch((error: Error) =>
        logger.warn(
          { event: 'conversion_nudge_failed', err: error.message },
          'could not queue a conversion check; the cron run will',
        ),
      );
  };
  // Trailing throttle: every call is followed by a check within minIntervalMs, however many calls come at once.
  return () => {
    if (timer) return;
    timer = setTimeout(fire, Math.max(0, last + minIntervalMs - Date.now()));
    timer.unref();
  };
}

/**
 * conversion_batch: the pending payments converted together, as many conversions as a backlog larger than one
 * conversion needs (at most `maxConversions`). A batch that took fewer payments than a conversion may take ends the
 * run: what is credited meanwhile waits for the next nudge, so a busy intake makes one conversion a nudge interval,
 * not one for every few payments credited while the last was being made.
 */
export async function convertPendingPayments(deps: StageDeps, maxConversions: number): Promise<void> {
  for (let i = 0; i < maxConversions; i++) {
    const batched = await batchOnce(deps);
    if (batched === null || batched.payments < deps.settings.maxPayments) return;
  }
}

/**
 * One conversion of the pending payments, once their value reaches the minimum or the oldest has waited long enough.
 * Outside calls failing here change nothing but the payments' attempt counters; the next run (cron or nudge) tries
 * again.
 */
export async function batchPendingPayments(deps: StageDeps): Promise<string | null> {
  return (await batchOnce(deps))?.conversionId ?? null;
}

async function batchOnce(deps: StageDeps): Promise<{ conversionId: string; payments: number } | null> {
  const candidates = await pendingCandidates(deps);
  if (candidates.length === 0) return null;
  const totalWei = candidates.reduce((sum, p) => sum + BigInt(p.convertible), 0n);
  const oldest = candidates[0]?.credited_at as Date;
  const waitedEnough = Date.now() - oldest.getTime() >= deps.settings.maxWaitMs;
  const ids = candidates.map((p) => p.payment_id);
  if (!waitedEnough && !(await worthConverting(deps, ids, totalWei))) return null;
  const conversionId = `conv_${randomBytes(8).toString('hex')}`;
  const created = await deps.db.transaction().execute((trx) => createConversion(trx, conversionId, ids));
  if (!created) return null;
  deps.logger.info(
    {
      event: 'conversion_created',
      conversionId,
      payments: candidates.length,
      amountWei: totalWei.toString(),
      waitedEnough,
    },
    'conversion created',
  );
  return { conversionId, payments: candidates.length };
}

/** The oldest credited payments waiting for a conversion, with what each has left to convert. */
async function pendingCandidates(deps: StageDeps) {
  return (
    deps.db
      .selectFrom('payments')
      .select([
        'payment_id',
        'credited_at',
        sql<string>`net_amount - exchange_cost_wei - net_moved_wei`.as('convertible'),
      ])
      .where('conversion_status', '=', 'pending')
      // A payment whose whole ETH an exchange kept has nothing left to convert; a top-up's, only what came with it.
      .where(sql<bigint>`net_amount - exchange_cost_wei - net_moved_wei`, '>', 0n)
      .where('review_reason', 'is', null)
      .where((eb) =>
        eb.or([eb('conversion_hold_until', 'is', null), eb('conversion_hold_until', '<', sql<Date>`now()`)]),
      )
      .orderBy('credited_at')
      .limit(deps.settings.maxPayments)
      .execute()
  );
}

/** Whether ChangeNow values the batch at the minimum; a failed ask counts as an attempt on its payments. */
async function worthConverting(deps: StageDeps, ids: string[], totalWei: bigint): Promise<boolean> {
  try {
    const estimate = await deps.exchange.estimate({ ...PAIR, fromAmount: formatUnits(totalWei, 18) });
    // USDT is valued at one USD; cents rounded down.
    const usdCents = parseUnitsFloor(estimate.toAmount, 2).units;
    return usdCents >= deps.settings.minUsdCents;
  } catch (error) {
    if (error instanceof ChangeNowError && error.code === 'deposit_too_small') return false;
    await recordAttempt(deps, ids, error);
    return false;
  }
}

/**
 * The conversion's intent, before any outside call: the payments locked (still pending, out of review), the
 * conversion and its share of each recorded, the payments moved to converting, its exchange job queued. False when
 * another run took some of them meanwhile.
 */
async function createConversion(trx: Transaction<Database>, conversionId: string, ids: string[]): Promise<boolean> {
  const locked = await trx
    .selectFrom('payments')
    .select(['payment_id', 'channel_id', sql<string>`net_amount - exchange_cost_wei - net_moved_wei`.as('convertible')])
    .where('payment_id', 'in', ids)
    .where('conversion_status', '=', 'pending')
    .where('review_reason', 'is', null)
    .orderBy('payment_id')
    .forUpdate()
    .skipLocked()
    .execute();
  // Another run took some of them meanwhile: what is left is looked at again by the next run, never converted
  // on the strength of a valuation that included payments we do not hold.
  if (locked.length !== ids.length) return false;
  // Less what an earlier exchange of the payment kept (a short refund): that ETH left the channel's balance.
  const amountWei = locked.reduce((sum, p) => sum + BigInt(p.convertible), 0n);
  await trx
    .insertInto('conversions')
    .values({
      conversion_id: conversionId,
      status: 'pending',
      from_asset: 'eth',
      to_asset: 'usdt',
      amount_wei: amountWei,
      payment_count: locked.length,
    })
    .execute();
  await trx
    .insertInto('conversion_payments')
    .values(
      locked.map((p) => ({
        conversion_id: conversionId,
        payment_id: p.payment_id,
        channel_id: p.channel_id,
        net_wei: p.convertible,
      })),
    )
    .execute();
  // Named from-state, though the rows are locked as pending: a payment that is not is never moved, and the whole
  // conversion rolls back rather than carry a payment it does not hold. The exchange's first request is queued
  // below in this transaction, so its attempt is counted here, with the move: one new version of each payment row
  // rather than two (markRequested counts only the requests made again).
  const moved = await trx
    .updateTable('payments')
    .set({
      conversion_status: 'converting',
      conversion_id: conversionId,
      conversion_attempts: sql`conversion_attempts + 1`,
      conversion_last_attempt_at: sql`now()`,
      updated_at: sql`now()`,
    })
    .where(
      'payment_id',
      'in',
      locked.map((p) => p.payment_id),
    )
    .where('conversion_status', '=', 'pending')
    .executeTakeFirst();
  if (moved.numUpdatedRows !== BigInt(locked.length))
    throw new Error(`conversion ${conversionId}: ${moved.numUpdatedRows} of ${locked.length} payments still pending`);
  await enqueueConversionExchange(trx, conversionId);
  return true;
}

async function recordAttempt(deps: StageDeps, paymentIds: string[], error: unknown): Promise<void> {
  await deps.db
    .updateTable('payments')
    .set({ conversion_attempts: sql`conversion_attempts + 1`, conversion_last_attempt_at: sql`now()` })
    .where('payment_id', 'in', paymentIds)
    .where('conversion_status', '=', 'pending')
    .execute();
  const fields =
    error instanceof ChangeNowError
      ? { code: error.code, kind: error.kind, endpoint: error.endpoint }
      : { err: (error as Error).message };
  if (error instanceof ChangeNowError && error.kind === 'permanent')
    await stageAlert(deps, deps.logger, {
      rule: 'changenow_permanent_error',
      subject: error.code,
      severity: 'critical',
      message: 'ChangeNow refused a conversion estimate',
      details: fields,
    });
  else deps.logger.warn({ event: 'conversion_estimate_failed', ...fields }, 'conversion estimate failed; will retry');
}

/** conversion_exchange: at most one ChangeNow exchange per conversion, then the transfer that pays it. */
export async function createConversionExchange(deps: StageDeps, conversionId: string): Promise<void> {
  await withRunLock(deps.runLocks, `conversion_exchange:${conversionId}`, () =>
    createExchangeLocked(deps, conversionId),
  );
}

/** The conversion went to review or was released: this run stops. */
const STOPPED = 'stopped';

async function createExchangeLocked(deps: StageDeps, conversionId: string): Promise<void> {
  const conversion = await deps.db
    .selectFrom('conversions')
    .selectAll()
    .where('conversion_id', '=', conversionId)
    .executeTakeFirstOrThrow();
  const log = deps.logger.child({ conversionId });
  if (conversion.status !== 'pending' && conversion.status !== 'exchange_requested') return;

  const earlier = conversion.status === 'exchange_requested' ? await findEarlierExchange(deps, conversion) : null;
  if (earlier === STOPPED) return;
  const payin = earlier ?? (await requestExchange(deps, conversion, log));
  if (payin === STOPPED) return;
  await recordExchange(deps, conversion, payin);
  log.info(
    { event: 'conversion_exchange_created', exchangeId: payin.id, payinAddress: payin.payinAddress },
    'conversion exchange created',
  );
}

/**
 * An earlier attempt asked ChangeNow and may have died before recording the answer: look before asking again. The
 * exchange found, null when there is none, or STOPPED when what ChangeNow holds sent the conversion to review.
 */
async function findEarlierExchange(
  deps: StageDeps,
  conversion: Selectable<ConversionsTable>,
): Promise<Payin | null | typeof STOPPED> {
  const conversionId = conversion.conversion_id;
  const found = await deps.exchange.listExchanges({ userId: conversionId });
  if (found.length > 1) {
    await toReview(deps, conversionId, `ChangeNow holds ${found.length} exchanges for this conversion`, {
      rule: 'duplicate_exchanges',
      message: 'more than one exchange for a conversion',
      details: { exchangeIds: found.map((e) => e.id) },
    });
    return STOPPED;
  }
  const [first] = found;
  if (!first) return null;
  const amount = formatUnits(BigInt(conversion.amount_wei), 18);
  const wrong = ['new', 'waiting'].includes(first.status)
    ? statusMismatch(askFor(deps, amount), first)
    : `status ${first.status} (expected a waiting exchange)`;
  if (wrong) {
    await toReview(deps, conversionId, `found exchange ${first.id} does not match the conversion: ${wrong}`, {
      rule: 'exchange_mismatch',
      message: 'the exchange found for a conversion does not match it',
      details: { exchangeId: first.id },
    });
    return STOPPED;
  }
  return foundPayin(first);
}

/**
 * Asks ChangeNow for the conversion's exchange, its intent (exchange_requested) recorded first. STOPPED when ChangeNow
 * refused it for good (the payments released) or answered unlike the request (review); any other failure throws.
 */
async function requestExchange(
  deps: StageDeps,
  conversion: Selectable<ConversionsTable>,
  log: Logger,
): Promise<Payin | typeof STOPPED> {
  const conversionId = conversion.conversion_id;
  await markRequested(deps, conversionId, conversion.status === 'exchange_requested');
  const ask = askFor(deps, formatUnits(BigInt(conversion.amount_wei), 18));
  let created;
  try {
    created = await deps.exchange.createExchange({
      ...PAIR,
      fromAmount: ask.fromAmount,
      address: ask.payoutAddress,
      refundAddress: ask.refundAddress,
      userId: conversionId,
      payload: { conversionId },
    });
  } catch (error) {
    if (error instanceof ChangeNowError && error.kind === 'permanent') {
      await releaseRefused(deps, conversionId, log, error);
      return STOPPED;
    }
    await deps.db
      .updateTable('conversions')
      .set({ last_error: (error as Error).message, updated_at: sql`now()` })
      .where('conversion_id', '=', conversionId)
      .execute();
    throw error;
  }
  deps.crashPoint?.('after_exchange_created');
  // Never funded when it is not the exchange asked for: it waits at ChangeNow until it expires.
  const wrong = createdMismatch(ask, created);
  if (wrong) {
    await toReview(
      deps,
      conversionId,
      `ChangeNow created exchange ${created.id} unlike the request: ${wrong}; not funded`,
      {
        rule: 'exchange_mismatch',
        message: 'ChangeNow answered a conversion exchange unlike the request; not funded',
        details: { exchangeId: created.id },
      },
    );
    return STOPPED;
  }
  return createdPayin(created);
}

/**
 * The intent, committed before ChangeNow is asked: a repeat lists ChangeNow's exchanges before asking again. A
 * repeat is another attempt on the conversion's payments; the first was counted when the conversion took them.
 */
async function markRequested(deps: StageDeps, conversionId: string, repeat: boolean): Promise<void> {
  await deps.db.transaction().execute(async (trx) => {
    // The reconciler's budget of resumes is per state: a new one starts at pending → exchange_requested, not at
    // every attempt within exchange_requested (a stage that keeps dying there must still run out of it).
    await trx
      .updateTable('conversions')
      .set({
        status: 'exchange_requested',
        reconcile_attempts: sql<number>`case when status = 'exchange_requested' then reconcile_attempts else 0 end`,
        updated_at: sql`now()`,
      })
      .where('conversion_id', '=', conversionId)
      .where('status', 'in', ['pending', 'exchange_requested'])
      .execute();
    if (!repeat) return;
    await trx
      .updateTable('payments')
      .set({ conversion_attempts: sql`conversion_attempts + 1`, conversion_last_attempt_at: sql`now()` })
      .where('conversion_id', '=', conversionId)
      .execute();
  });
}

/** ChangeNow refused the exchange for good: the payments go back to pending, held before the next try. */
async function releaseRefused(
  deps: StageDeps,
  conversionId: string,
  log: Logger,
  error: ChangeNowError,
): Promise<void> {
  await deps.db
    .transaction()
    .execute((trx) => releaseWithHold(trx, conversionId, `changenow ${error.code}: ${error.message}`));
  await stageAlert(deps, log, {
    rule: 'changenow_permanent_error',
    subject: error.code,
    severity: 'critical',
    message: 'ChangeNow refused the conversion exchange; payments back to pending, held before the next try',
    details: { code: error.code, endpoint: error.endpoint, conversionId },
  });
}

/**
 * The exchange and the transfer that pays it, recorded together as the conversion moves from exchange_requested to
 * exchange_created (a conversion that moved meanwhile is left as it is).
 */
async function recordExchange(deps: StageDeps, conversion: Selectable<ConversionsTable>, payin: Payin): Promise<void> {
  const conversionId = conversion.conversion_id;
  await deps.db.transaction().execute(async (trx) => {
    const current = await conversionForUpdate(trx, conversionId).executeTakeFirstOrThrow();
    if (current.status !== 'exchange_requested') return;
    const transfer = await holdTransfer(trx, {
      purpose: 'conversion',
      ref: conversionId,
      asset: 'eth',
      from: deps.hostAddress,
      to: payin.payinAddress,
      amount: BigInt(conversion.amount_wei),
    });
    // One transfer per conversion: one recorded earlier for another deposit address must not pay this exchange.
    if (
      transfer.to_address.toLowerCase() !== payin.payinAddress.toLowerCase() ||
      BigInt(transfer.amount) !== BigInt(conversion.amount_wei)
    ) {
      throw new Error(
        `conversion ${conversionId}: its transfer pays ${transfer.to_address}, not the exchange's ${payin.payinAddress}`,
      );
    }
    await trx
      .updateTable('conversions')
      .set({
        status: 'exchange_created',
        exchange_id: payin.id,
        payin_address: payin.payinAddress,
        expected_usdt: payin.toAmount === null ? null : parseUnitsFloor(payin.toAmount, 6).units,
        transfer_id: transfer.transfer_id,
        last_error: null,
        reconcile_attempts: 0,
        updated_at: sql`now()`,
      })
      .where('conversion_id', '=', conversionId)
      .where('status', '=', 'exchange_requested')
      .execute();
  });
}

/** What happens to a conversion when its ETH transfer is mined, or never leaves. */
export function conversionTransferHooks(deps: StageDeps): TransferHooks {
  return {
    async onConfirmed(trx, transfer) {
      await trx
        .updateTable('conversions')
        .set({
          status: 'sent',
          poll_deadline_at: new Date(Date.now() + deps.settings.pollDeadlineMs),
          reconcile_attempts: 0,
          updated_at: sql`now()`,
        })
        .where('conversion_id', '=', transfer.ref)
        .where('status', '=', 'exchange_created')
        .execute();
      await enqueuePoll(trx, transfer.ref, new Date());
    },
    async onFailed(trx, transfer, failure) {
      const reason = `transfer ${transfer.transfer_id} ${failure.code}: ${failure.message}`;
      // The ETH never reached ChangeNow: the payments wait for the next conversion; held first when the chain said the
      // deposit would revert, since the next exchange's deposit address may do the same.
      if (failure.code === 'estimate_failed') {
        await releaseWithHold(trx, transfer.ref, reason);
      } else {
        await releasePaymentsIn(trx, transfer.ref, 'failed', reason);
        // Their ETH never left the host wallet: the next batch need not wait for the periodic check.
        await enqueueConversionBatch(trx);
      }
    },
  };
}

/**
 * A conversion's steps go before the payouts' in the queue (graphile-worker takes ready jobs by priority, then run_at):
 * one step moves hundreds of payments' value, and under a backlog of per-payout jobs each of its steps waited behind
 * seconds of them. They are few (one job per conversion and step), so nothing waits long behind them. Not a poll
 * queued again while its exchange is still under way: those come back every CONVERSION_POLL_INTERVAL for as long as
 * ChangeNow takes, and ahead of everything, a few of them each waiting up to CHANGENOW_TIMEOUT on a ChangeNow that
 * hangs would hold every worker slot.
 */
export const CONVERSION_PRIORITY = -1;

/**
 * A conversion_batch run soon, under the nudger's key. A pending check is reused; one already running (or left locked
 * by a dead worker) gets a successor. 'preserve_run_at', not 'replace': 'replace' reset a pending check's run_at to now
 * at every nudge, so under a job backlog deeper than the nudge interval it went to the back of the line each second
 * and never ran while intake lasted (no conversion for the whole of a busy period).
 */
export function enqueueConversionBatch(trx: Transaction<Database>): Promise<void> {
  return enqueue(
    trx,
    'conversion_batch',
    {},
    {
      jobKey: 'conversion_batch:nudge',
      jobKeyMode: 'preserve_run_at',
      queueName: CONVERSION_BATCH_QUEUE,
      priority: CONVERSION_PRIORITY,
      maxAttempts: 1,
    },
  );
}

export function enqueueConversionExchange(trx: Transaction<Database>, conversionId: string): Promise<void> {
  return enqueue(
    trx,
    'conversion_exchange',
    { conversionId },
    {
      jobKey: `conversion_exchange:${conversionId}`,
      jobKeyMode: 'replace',
      priority: CONVERSION_PRIORITY,
      maxAttempts: EXCHANGE_MAX_ATTEMPTS,
    },
  );
}

/** `again`: the exchange was still under way at the last look (no priority, see CONVERSION_PRIORITY). */
export function enqueuePoll(
  trx: Transaction<Database>,
  conversionId: string,
  runAt: Date,
  options: { again?: boolean } = {},
): Promise<void> {
  return enqueue(
    trx,
    'conversion_poll',
    { conversionId },
    {
      jobKey: `conversion_poll:${conversionId}`,
      jobKeyMode: 'replace',
      runAt,
      priority: options.again ? 0 : CONVERSION_PRIORITY,
      maxAttempts: EXCHANGE_MAX_ATTEMPTS,
    },
  );
}

/** The conversion under its row lock, for a change that must see its current state (the caller's transaction). */
export function conversionForUpdate(trx: Transaction<Database>, conversionId: string) {
  return trx.selectFrom('conversions').selectAll().where('conversion_id', '=', conversionId).forUpdate();
}

/** The transfer that pays the conversion, by ref, not conversions.transfer_id: at most one, recorded or not. */
export function conversionTransfer(trx: Transaction<Database>, conversionId: string) {
  return trx
    .selectFrom('chain_transfers')
    .select(['transfer_id', 'status'])
    .where('purpose', '=', 'conversion')
    .where('ref', '=', conversionId)
    .executeTakeFirst();
}

/**
 * Ends a conversion whose ETH is still ours: its payments go back to pending, the reason is kept on the conversion.
 * 'failed' ones too: a conversion in review keeps its payments so, out of every batch, and when its transfer then fails
 * (a person's cancel, or never_sent) they are released here; left failed on a failed conversion, nothing would ever
 * batch them again.
 */
export async function releasePaymentsIn(
  trx: Transaction<Database>,
  conversionId: string,
  status: 'failed',
  reason: string,
): Promise<void> {
  await trx
    .updateTable('conversions')
    .set({ status, reason, updated_at: sql`now()` })
    .where('conversion_id', '=', conversionId)
    .where('status', 'not in', ['completed', 'failed'])
    .execute();
  await trx
    .updateTable('payments')
    .set({ conversion_status: 'pending', conversion_id: null, updated_at: sql`now()` })
    .where('conversion_id', '=', conversionId)
    .where('conversion_status', 'in', ['converting', 'failed'])
    .execute();
}

/**
 * Ends a conversion whose ETH never left, for a cause that may come back (a ChangeNow refusal, a stage that keeps
 * dying): its payments go back to pending, held 2^attempts minutes (at most a day) before the next batch takes them.
 * An exchange it may have made at ChangeNow is never funded, and ChangeNow expires it.
 */
export async function releaseWithHold(trx: Transaction<Database>, conversionId: string, reason: string): Promise<void> {
  // Before the release, which takes the payments out of the conversion.
  await trx
    .updateTable('payments')
    .set({
      conversion_hold_until: sql`now() + least(power(2, conversion_attempts), ${HOLD_MAX_MINUTES}) * interval '1 minute'`,
    })
    .where('conversion_id', '=', conversionId)
    .where('conversion_status', 'in', ['converting', 'failed'])
    .execute();
  await releasePaymentsIn(trx, conversionId, 'failed', reason);
}

/** States a conversion leaves for needs_review: every one a stage still works on (never a final one). */
export const CONVERSION_REVIEWABLE: readonly ConversionState[] = [
  'pending',
  'exchange_requested',
  'exchange_created',
  'sent',
];

/** What the review tells a person, raised only when the conversion did move to review. */
export type ReviewAlert = Pick<AlertInput, 'rule' | 'message'> & { details?: Record<string, unknown> };

/**
 * Ends a conversion whose ETH may be gone: a person decides, the payments stay out of every batch. Only from a state a
 * stage still works on: a poll that looked before another run settled (a reaped worker still alive) must not turn a
 * completed conversion into one in review, which a retry would settle again. True when it moved; the alert is raised
 * then only. In the caller's transaction when given one (the reconciler decides under the conversion's row lock).
 */
export async function toReview(
  deps: StageDeps,
  conversionId: string,
  reason: string,
  alert: ReviewAlert | null,
  within?: Transaction<Database>,
): Promise<boolean> {
  const review = (trx: Transaction<Database>) =>
    reviewWithAlert(deps, trx, {
      move: { table: 'conversions', id: conversionId, from: CONVERSION_REVIEWABLE, reason },
      also: (db) =>
        db
          .updateTable('payments')
          .set({ conversion_status: 'failed', updated_at: sql`now()` })
          .where('conversion_id', '=', conversionId)
          .where('conversion_status', '=', 'converting')
          .execute(),
      notice: alert && {
        logger: deps.logger.child({ conversionId }),
        alert: {
          rule: alert.rule,
          subject: conversionId,
          severity: 'critical',
          message: alert.message,
          details: { conversionId, reason, ...alert.details },
        },
      },
    });
  return within ? review(within) : deps.db.transaction().execute(review);
}
