/**
 * Payouts: a threshold batch (USDT) or an instant payment (its net ETH) becomes the owner's currency on the owner's
 * network, through one ChangeNow exchange paid by one host wallet transfer, or through one direct transfer when the
 * owner takes the held asset on the host wallet's own network.
 *
 *   pending ─► exchange_requested ─► exchange_created ─► sent ─► completed
 *      │ (held: below ChangeNow's minimum, or its channel's wallet changed within WALLET_CHANGE_HOLD;
 *      │  awaiting_approval: above the approval limit; needs_review: its wallet is not valid for its network)
 *      └─ direct: pending ─► sent (transfer recorded) ─► completed (transfer mined)
 *   and failed (funds back on the channel's balance), needs_review (a person decides), cancelled (by a person).
 *
 * Every state change commits with the job that follows it, and intent is stored before each outside effect: the
 * exchange is asked for in `exchange_requested` (a retry lists ChangeNow's exchanges by the payout id before
 * creating one), and the transfer is a chain_transfers row unique per payout. So a payout has at most one exchange
 * and one transfer, ever, whatever crashes or repeats.
 */
import { randomBytes } from 'node:crypto';
import { sql, type Selectable, type Transaction } from 'kysely';
import {
  OPEN_PAYOUT_STATES,
  type Database,
  type ChannelsTable,
  type Db,
  type PaymentsTable,
  type PayoutsTable,
  type PayoutStatus,
} from '../../db/index.ts';
import { ADDRESS_FORMATS, checkAddress, type AddressFormat } from '../../channels/address.ts';
import { ChangeNowError } from '../../integrations/changenow/index.ts';
import { enqueue, enqueueEach, type TaskPayloads } from '../../jobs/index.ts';
import { accounts, postJournal, type AccountRef } from '../../ledger/index.ts';
import { decimalsOf, formatUnits, parseUnitsFloor } from '../../money/index.ts';
import type { StageDeps } from '../interfaces.ts';
import { RunLocked, withRunLock } from '../run-lock.ts';
import { lockChannelForCredit } from '../../channels/lock.ts';
import { lockPayment } from '../payment/lock.ts';
import { moveInstantToConversion } from '../payment/to-conversion.ts';
import { createTransfer, holdTransfer, TransferNotReady, type TransferHooks } from '../transfer/index.ts';
import { reviewWithAlert, stageAlert } from '../alert.ts';
import { createdMismatch, createdPayin, foundPayin, statusMismatch } from '../exchange-answer.ts';
import type { ExchangeAsk, Payin } from '../exchange-answer.ts';

export type Payout = Selectable<PayoutsTable>;

/** Graphile's own limit, a backstop: payrail's attempt counter (PAYOUT_MAX_ATTEMPTS) sends a payout to review first. */
export const PAYOUT_JOB_MAX_ATTEMPTS = 25;
/** A payout below ChangeNow's minimum is looked at again this often (and at once when its balance grows). */
const HOLD_RETRY_MS = 60 * 60_000;
/** USDT has 6 decimals, USD cents 2: one cent is 10^4 USDT units (USDT valued at one USD). */
export const USDT_UNITS_PER_CENT = 10n ** 4n;

/** ChangeNow refusals that no retry of the same request can change: a person must look. */
const REFUSALS_FOR_REVIEW = new Set([
  'pair_is_inactive',
  'not_valid_address',
  'not_valid_extra_id',
  'out_of_range',
  'invalid_request',
]);

/**
 * How the review reasons of an exchange that ChangeNow holds for the payout, unlike the request and never funded,
 * begin: a retry would look for the payout's exchange by its id at ChangeNow and find that one again.
 */
export const UNLIKE_REQUEST = { created: 'ChangeNow created exchange', found: 'found exchange' } as const;

export function newPayoutId(): string {
  return `po_${randomBytes(8).toString('hex')}`;
}

export function enqueuePayoutRun(trx: Transaction<Database>, payoutId: string, runAt?: Date): Promise<void> {
  return enqueueReplacing(trx, 'payout_run', { payoutId }, payoutId, runAt);
}

/** enqueuePayoutRun for several payouts opened together, in one statement. */
export function enqueuePayoutRuns(
  trx: Transaction<Database>,
  payoutIds: readonly string[],
  runAt?: Date,
): Promise<void> {
  return enqueueEach(
    trx,
    'payout_run',
    payoutIds.map((payoutId) => ({ payload: { payoutId }, jobKey: payoutRunKey(payoutId) })),
    { jobKeyMode: 'replace', maxAttempts: PAYOUT_JOB_MAX_ATTEMPTS, ...(runAt && { runAt }) },
  );
}

export function payoutRunKey(payoutId: string): string {
  return `payout_run:${payoutId}`;
}

/** The run lock of a payout: one run at a time, and none while a set asks for its exchange (ask-at-opening.ts). */
export function payoutRunLock(payoutId: string): string {
  return `payout:${payoutId}`;
}

export function enqueuePayoutPoll(trx: Transaction<Database>, payoutId: string, runAt: Date): Promise<void> {
  return enqueueReplacing(trx, 'payout_poll', { payoutId }, payoutId, runAt);
}

/** A payout stage's job, one per `<task>:<key>`: queued again, it replaces the waiting one (payload and run time). */
function enqueueReplacing<T extends 'payout_run' | 'payout_poll' | 'threshold_check'>(
  trx: Transaction<Database>,
  task: T,
  payload: TaskPayloads[T],
  key: string,
  runAt?: Date,
): Promise<void> {
  return enqueue(trx, task, payload, {
    jobKey: `${task}:${key}`,
    jobKeyMode: 'replace',
    maxAttempts: PAYOUT_JOB_MAX_ATTEMPTS,
    ...(runAt && { runAt }),
  });
}

export async function loadPayout(db: Db | Transaction<Database>, payoutId: string): Promise<Payout> {
  return db.selectFrom('payouts').selectAll().where('payout_id', '=', payoutId).executeTakeFirstOrThrow();
}

/** The payout under its row lock, for a change that must see its current state (the caller's transaction). */
export function payoutForUpdate(trx: Transaction<Database>, payoutId: string) {
  return trx.selectFrom('payouts').selectAll().where('payout_id', '=', payoutId).forUpdate();
}

/** The same row lock, for a step that records its transfer only if the payout has not moved on: its state alone. */
async function lockedStatus(trx: Transaction<Database>, payoutId: string): Promise<PayoutStatus> {
  return (await payoutForUpdate(trx, payoutId).executeTakeFirstOrThrow()).status;
}

/** A payout's exchange: the payout's amount from the host wallet, out to the owner's wallet, any refund back. */
export function askFor(
  deps: Pick<StageDeps, 'hostAddress'>,
  payout: Pick<Payout, 'asset' | 'amount' | 'payout_currency' | 'payout_network' | 'wallet_address'>,
): ExchangeAsk {
  return {
    fromCurrency: payout.asset,
    fromNetwork: 'eth',
    toCurrency: payout.payout_currency,
    toNetwork: payout.payout_network,
    fromAmount: amountText(payout),
    payoutAddress: payout.wallet_address,
    refundAddress: deps.hostAddress,
  };
}

function amountText(payout: Pick<Payout, 'asset' | 'amount'>): string {
  return formatUnits(BigInt(payout.amount), decimalsOf(payout.asset));
}

/** The owner takes exactly what the host wallet holds, on its network: no exchange, one transfer. */
export function isDirect(payout: Pick<Payout, 'asset' | 'payout_currency' | 'payout_network'>): boolean {
  return payout.payout_network === 'eth' && payout.payout_currency === payout.asset;
}

/**
 * payout_instant: a credited instant payment's payout, opened once with its reservation in the ledger, then run.
 * A payment refunded after its credit (in review) is not paid out.
 */
export async function openInstantPayout(deps: StageDeps, paymentId: string): Promise<void> {
  const opened = await deps.db.transaction().execute(async (trx) => {
    const payment = await lockPayment(trx, paymentId);
    if (!payment) throw new Error(`payment ${paymentId} not found`);
    // Read after the lock, so a run that opened the payout meanwhile is seen (a new snapshot in READ COMMITTED).
    const read = await trx
      .selectFrom('channels')
      .select((eb) => [
        eb.selectFrom('payouts').select('payout_id').where('payment_id', '=', paymentId).as('existing_payout_id'),
        'payout_currency',
        'payout_network',
        'wallet_address',
      ])
      .where('channel_id', '=', payment.channel_id)
      .executeTakeFirst();
    // No such channel (intake keeps an IPN for an unknown one, for review): its payout is looked up on its own.
    const existing = read ? read.existing_payout_id : ((await existingPayout(trx, paymentId)) ?? null);
    if (existing !== null) {
      await leaveToItsRun(trx, existing);
      return null;
    }
    if (!payableNow(deps, paymentId, payment)) return null;
    const net = BigInt(payment.net_amount as string);
    if (net === 0n) return null;
    if (!read) throw new Error(`payment ${paymentId}: its channel ${payment.channel_id} is not registered`);
    return reserveInstantPayout(trx, { paymentId, payment, channel: read, net });
  });
  if (opened !== null) await runPayout(deps, opened);
}

/** The states a payout's run moves on from (advance); the others are moved by their transfer's or poll's job. */
const RUN_STATES: readonly PayoutStatus[] = ['pending', 'held', 'exchange_requested'];

/**
 * A payout opened by another run (a set, this job delivered twice, its earlier attempt) is moved on by that run's job,
 * or by a payout_run queued here unless one waits (a hold's keeps its time; one running gets a successor): never by a
 * second run inline, which could meet the first at its run lock.
 */
async function leaveToItsRun(trx: Transaction<Database>, payoutId: string): Promise<void> {
  const { status } = await trx
    .selectFrom('payouts')
    .select('status')
    .where('payout_id', '=', payoutId)
    .executeTakeFirstOrThrow();
  if (!RUN_STATES.includes(status)) return;
  await enqueue(
    trx,
    'payout_run',
    { payoutId },
    { jobKey: `payout_run:${payoutId}`, jobKeyMode: 'preserve_run_at', maxAttempts: PAYOUT_JOB_MAX_ATTEMPTS },
  );
}

async function existingPayout(trx: Transaction<Database>, paymentId: string): Promise<string | undefined> {
  const row = await trx
    .selectFrom('payouts')
    .select('payout_id')
    .where('payment_id', '=', paymentId)
    .executeTakeFirst();
  return row?.payout_id;
}

type Payment = Selectable<PaymentsTable>;
type PayablePayment = Payment & { readonly asset: string };

/**
 * Whether the payment's credit is the owner's to pay out now; false (logged) when it waits elsewhere. A payment that
 * was never a credited instant one is a bug in whatever queued the job: it throws.
 */
function payableNow(deps: StageDeps, paymentId: string, payment: Payment): payment is PayablePayment {
  if (payment.credited_at !== null && payment.payout_strategy === 'threshold') {
    // Its channel switched to threshold before this job ran: the payment waits for a conversion instead.
    deps.logger.info(
      { event: 'payout_skipped', paymentId, reason: 'channel switched to threshold' },
      'payment moved to conversion: no instant payout',
    );
    return false;
  }
  if (payment.payout_strategy !== 'instant' || payment.credited_at === null || payment.asset === null) {
    throw new Error(`payment ${paymentId} is not a credited instant payment`);
  }
  // A reversed credit's money is owed back (platform:refunds_owed), not the owner's; a payment in review waits for
  // a person.
  if (payment.review_reason !== null || payment.reversed_at !== null) {
    deps.logger.warn(
      {
        event: 'payout_skipped',
        paymentId,
        reason: payment.reversed_at !== null ? 'credit reversed' : payment.review_reason,
      },
      'payment in review or reversed: no instant payout',
    );
    return false;
  }
  return true;
}

/**
 * The payment's payout, opened under the payment's row lock: the payout row to its channel's wallet, the payment
 * pointing at it, and its net moved to the channel's payout account, all in the caller's transaction.
 */
async function reserveInstantPayout(
  trx: Transaction<Database>,
  opening: {
    paymentId: string;
    payment: PayablePayment;
    channel: Pick<Selectable<ChannelsTable>, 'payout_currency' | 'payout_network' | 'wallet_address'>;
    net: bigint;
  },
): Promise<string> {
  const { paymentId, payment, channel, net } = opening;
  const id = newPayoutId();
  await trx
    .insertInto('payouts')
    .values({
      payout_id: id,
      kind: 'instant',
      channel_id: payment.channel_id,
      payment_id: paymentId,
      status: 'pending',
      asset: payment.asset as 'eth',
      amount: net,
      payout_currency: channel.payout_currency,
      payout_network: channel.payout_network,
      wallet_address: channel.wallet_address,
      reason: null,
    })
    .execute();
  await trx
    .updateTable('payments')
    .set({ payout_id: id, updated_at: sql`now()` })
    .where('payment_id', '=', paymentId)
    .execute();
  await postJournal(trx, {
    kind: 'payout_reserved',
    ref: id,
    entries: [
      { account: accounts.channel(payment.channel_id, payment.asset), amount: -net },
      { account: accounts.channelPayout(payment.channel_id, payment.asset), amount: net },
    ],
  });
  return id;
}

/**
 * payout_run: moves a payout as far as it can go now. A failure counts as an attempt; after PAYOUT_MAX_ATTEMPTS the
 * payout goes to review instead of retrying forever.
 */
export async function runPayout(deps: StageDeps, payoutId: string): Promise<void> {
  try {
    await withRunLock(deps.runLocks, payoutRunLock(payoutId), () => advance(deps, payoutId));
  } catch (error) {
    if (error instanceof RunLocked || error instanceof TransferNotReady) throw error;
    await recordFailure(deps, payoutId, error);
  }
}

async function recordFailure(deps: StageDeps, payoutId: string, error: unknown): Promise<void> {
  const message = error instanceof Error ? error.message : String(error);
  const row = await deps.db
    .updateTable('payouts')
    .set({ attempts: sql`attempts + 1`, last_error: message, updated_at: sql`now()` })
    .where('payout_id', '=', payoutId)
    .where('status', 'in', ['pending', 'exchange_requested'])
    .returning('attempts')
    .executeTakeFirst();
  if (!row) throw error;
  const fields =
    error instanceof ChangeNowError
      ? { code: error.code, kind: error.kind, endpoint: error.endpoint }
      : { err: message };
  if (error instanceof ChangeNowError && error.kind === 'permanent')
    await stageAlert(deps, deps.logger, {
      rule: 'changenow_permanent_error',
      subject: error.code,
      severity: 'critical',
      message: 'ChangeNow refused a payout request',
      details: { payoutId, ...fields },
    });
  if (row.attempts >= deps.settings.payoutMaxAttempts) {
    await toReview(
      deps,
      payoutId,
      `gave up after ${row.attempts} failed attempts: ${message}`,
      'payout_attempts_exhausted',
    );
    return;
  }
  deps.logger.warn(
    { event: 'payout_attempt_failed', payoutId, attempts: row.attempts, ...fields },
    'payout attempt failed; will retry',
  );
  throw error;
}

/** The address format of a payout's pair as read with the payout: null when supported_pairs has no such pair. */
interface PairRead {
  readonly currency: string;
  readonly network: string;
  readonly addressFormat: string | null;
}

async function advance(deps: StageDeps, payoutId: string): Promise<void> {
  const { pair_address_format: addressFormat, ...loaded } = await deps.db
    .selectFrom('payouts')
    .selectAll('payouts')
    .select((eb) =>
      eb
        .selectFrom('supported_pairs')
        .select('address_format')
        .whereRef('supported_pairs.currency', '=', 'payouts.payout_currency')
        .whereRef('supported_pairs.network', '=', 'payouts.payout_network')
        .as('pair_address_format'),
    )
    .where('payout_id', '=', payoutId)
    .executeTakeFirstOrThrow();
  const pair = { currency: loaded.payout_currency, network: loaded.payout_network, addressFormat };
  let payout: Payout = loaded;
  if (payout.status === 'held') {
    if (payout.hold_until !== null && payout.hold_until.getTime() > Date.now()) {
      // Woken early (clocks of the database and this worker differ, say): the hold keeps its job.
      await deps.db.transaction().execute((trx) => enqueuePayoutRun(trx, payoutId, payout.hold_until as Date));
      return;
    }
    const resumed = await deps.db
      .updateTable('payouts')
      .set({ status: 'pending', hold_until: null, updated_at: sql`now()` })
      .where('payout_id', '=', payoutId)
      .where('status', '=', 'held')
      .returningAll()
      .executeTakeFirst();
    if (!resumed) return;
    payout = resumed;
  }
  if (payout.status === 'pending' || payout.status === 'exchange_requested') {
    // Before anything is asked of ChangeNow or the chain (and before the approval check): where the payout goes must
    // be a valid address for its network, and not a wallet changed too recently.
    if (!(await destinationValid(deps, payout, pair))) return;
    if (await heldForWalletChange(deps, payout)) return;
  }
  if (payout.status === 'pending') {
    if (payout.approved_at === null && (await needsApproval(deps, payout))) {
      await awaitApproval(deps, payout);
      return;
    }
    if (isDirect(payout)) {
      await startDirectTransfer(deps, payout);
      return;
    }
    if (!(await passesEstimate(deps, payout))) return;
  }
  if (payout.status === 'pending' || payout.status === 'exchange_requested') await createPayoutExchange(deps, payout);
}

/**
 * The payout's wallet, checked again for its currency and network as at channel registration: a row edited by hand,
 * or written under an older validator, must not reach ChangeNow or the chain. False when the payout went to review.
 */
async function destinationValid(deps: StageDeps, payout: Payout, read: PairRead): Promise<boolean> {
  // Read with the payout (one round trip); again only if its pair changed before a held payout resumed.
  const format =
    read.currency === payout.payout_currency && read.network === payout.payout_network
      ? read.addressFormat
      : ((
          await deps.db
            .selectFrom('supported_pairs')
            .select('address_format')
            .where('currency', '=', payout.payout_currency)
            .where('network', '=', payout.payout_network)
            .executeTakeFirst()
        )?.address_format ?? null);
  const problem = destinationProblem(payout, format);
  if (problem === null) return true;
  await toReview(
    deps,
    payout.payout_id,
    `${problem}; nothing was sent (cancel it to return its funds to the channel, and fix the channel's wallet)`,
    'payout_address_invalid',
  );
  return false;
}

/** What is wrong with where a payout goes, given its pair's address format (null: no such pair); null when nothing. */
export function destinationProblem(
  payout: Pick<Payout, 'payout_currency' | 'payout_network' | 'wallet_address'>,
  format: string | null,
): string | null {
  if (format === null) return `payout pair ${payout.payout_currency} on ${payout.payout_network} is not supported`;
  if (!(ADDRESS_FORMATS as readonly string[]).includes(format))
    return `supported_pairs has an unknown address format ${format} for ${payout.payout_currency} on ${payout.payout_network}`;
  const invalid = checkAddress(format as AddressFormat, payout.wallet_address);
  return invalid === null
    ? null
    : `wallet address ${JSON.stringify(payout.wallet_address)} is not a valid ${format} address for ${payout.payout_currency} on ${payout.payout_network}: ${invalid}`;
}

/** Until when WALLET_CHANGE_HOLD holds a channel's payouts, by the database's clock; null when it does not. */
export function walletHoldUntil(changedAt: Date | null, holdMs: number, now: Date): Date | null {
  if (holdMs <= 0 || changedAt === null) return null;
  const until = new Date(changedAt.getTime() + holdMs);
  return until.getTime() > now.getTime() ? until : null;
}

/**
 * WALLET_CHANGE_HOLD: while the channel's payout destination changed less than the hold ago, none of its payouts is
 * sent; each waits in `held` until the hold ends (its run re-holds it if woken, retried or topped up sooner). The
 * database's clock decides, the one that recorded the change. True when this run must stop.
 */
async function heldForWalletChange(deps: StageDeps, payout: Payout): Promise<boolean> {
  const holdMs = deps.settings.walletChangeHoldMs ?? 0;
  if (holdMs <= 0) return false;
  const channel = await deps.db
    .selectFrom('channels')
    .select(['wallet_changed_at', sql<Date>`now()`.as('now')])
    .where('channel_id', '=', payout.channel_id)
    .executeTakeFirst();
  if (!channel) return false;
  const changedAt = channel.wallet_changed_at;
  const until = walletHoldUntil(changedAt, holdMs, channel.now);
  if (changedAt === null || until === null) return false;
  const reason = `wallet changed at ${changedAt.toISOString()}; held until ${until.toISOString()}`;
  // Not held (cancelled meanwhile, say): this run stops all the same.
  await hold(deps, payout.payout_id, reason, until, { channelId: payout.channel_id, hold: 'wallet_change' });
  return true;
}

async function awaitApproval(deps: StageDeps, payout: Payout): Promise<void> {
  const waiting = await deps.db
    .updateTable('payouts')
    .set({ status: 'awaiting_approval', updated_at: sql`now()` })
    .where('payout_id', '=', payout.payout_id)
    .where('status', '=', payout.status)
    .returning('payout_id')
    .executeTakeFirst();
  // A person has to act: an alert, not just a log line.
  if (waiting)
    deps.logger.warn(
      {
        event: 'alert',
        alert: 'payout_awaiting_approval',
        payoutId: payout.payout_id,
        channelId: payout.channel_id,
        amount: amountText(payout),
        asset: payout.asset,
      },
      'payout above the approval limit waits for approval',
    );
}

/** Above PAYOUT_APPROVAL_ABOVE_USD (USDT at one USD; ETH valued through a ChangeNow estimate). */
async function needsApproval(deps: StageDeps, payout: Payout): Promise<boolean> {
  const limit = deps.settings.payoutApprovalAboveUsdCents;
  if (limit === null) return false;
  if (payout.asset === 'usdt') return BigInt(payout.amount) > limit * USDT_UNITS_PER_CENT;
  try {
    const estimate = await deps.exchange.estimate({
      fromCurrency: payout.asset,
      fromNetwork: 'eth',
      toCurrency: 'usdt',
      toNetwork: 'eth',
      fromAmount: amountText(payout),
    });
    return parseUnitsFloor(estimate.toAmount, 2).units > limit;
  } catch (error) {
    // Too small for ChangeNow to value is too small to need a person.
    if (error instanceof ChangeNowError && error.code === 'deposit_too_small') return false;
    throw error;
  }
}

/** Asks ChangeNow whether the pair takes this amount before asking for an exchange. False when the payout stopped. */
export async function passesEstimate(deps: StageDeps, payout: AskedPayout): Promise<boolean> {
  try {
    await deps.exchange.estimate({
      fromCurrency: payout.asset,
      fromNetwork: 'eth',
      toCurrency: payout.payout_currency,
      toNetwork: payout.payout_network,
      fromAmount: amountText(payout),
    });
    return true;
  } catch (error) {
    if (await stopOnRefusal(deps, payout, error)) return false;
    throw error;
  }
}

/** A refusal that ends this run: below the minimum holds the payout, a refused pair or address sends it to review. */
async function stopOnRefusal(
  deps: StageDeps,
  payout: Pick<Payout, 'payout_id' | 'asset' | 'payout_currency' | 'payout_network'>,
  error: unknown,
): Promise<boolean> {
  if (!(error instanceof ChangeNowError) || error.kind !== 'permanent') return false;
  if (error.code === 'deposit_too_small') {
    await hold(
      deps,
      payout.payout_id,
      `below ChangeNow's minimum for ${payout.asset} → ${payout.payout_currency}/${payout.payout_network}: ${error.message}`,
    );
    return true;
  }
  if (REFUSALS_FOR_REVIEW.has(error.code)) {
    const reason = `ChangeNow refused the payout (${error.code}): ${error.message}`;
    // toReview wrote the alert's log line; stored once per ChangeNow error code (the payout has its own review alert).
    if (await toReview(deps, payout.payout_id, reason, 'changenow_permanent_error')) {
      await stageAlert(
        deps,
        deps.logger,
        {
          rule: 'changenow_permanent_error',
          subject: error.code,
          severity: 'critical',
          message: 'ChangeNow refused the payout',
          details: { payoutId: payout.payout_id, code: error.code, endpoint: error.endpoint, reason },
        },
        deps.db,
        { logged: true },
      );
    }
    return true;
  }
  return false;
}

async function startDirectTransfer(deps: StageDeps, payout: Payout): Promise<void> {
  await deps.db.transaction().execute(async (trx) => {
    if ((await lockedStatus(trx, payout.payout_id)) !== 'pending') return;
    const transferId = await createTransfer(trx, {
      purpose: 'payout',
      ref: payout.payout_id,
      asset: payout.asset,
      from: deps.hostAddress,
      to: payout.wallet_address,
      amount: BigInt(payout.amount),
    });
    await trx
      .updateTable('payouts')
      .set({ status: 'sent', transfer_id: transferId, last_error: null, updated_at: sql`now()` })
      .where('payout_id', '=', payout.payout_id)
      .execute();
  });
  deps.logger.info(
    { event: 'payout_transfer_created', payoutId: payout.payout_id, asset: payout.asset },
    'direct payout transfer recorded',
  );
}

/** The payout went to review, was held, or moved on meanwhile: this run stops. */
const STOPPED = 'stopped';

async function createPayoutExchange(deps: StageDeps, payout: Payout): Promise<void> {
  const log = deps.logger.child({ payoutId: payout.payout_id });
  const earlier = await findEarlierExchange(deps, payout);
  if (earlier === STOPPED) return;
  if (
    earlier === null &&
    payout.status === 'exchange_requested' &&
    payout.approved_at === null &&
    (await needsApproval(deps, payout))
  ) {
    // A payout retried from review may have gone there before its approval check (its USD estimate kept failing).
    // ChangeNow holds no exchange for it, so it can wait for approval like any payout above the limit.
    await awaitApproval(deps, payout);
    return;
  }
  const payin = earlier ?? (await requestExchange(deps, payout));
  if (payin === STOPPED) return;
  if (await recordExchange(deps, payout, payin))
    log.info(
      { event: 'payout_exchange_created', exchangeId: payin.id, payinAddress: payin.payinAddress },
      'payout exchange created',
    );
}

/**
 * Look before asking: an earlier attempt may have asked ChangeNow and died before recording the answer (and the
 * payout may have been held or approved since). The exchange found, null when there is none (or the payout was never
 * asked for one: no call then), or STOPPED when what ChangeNow holds sent the payout to review.
 */
async function findEarlierExchange(deps: StageDeps, payout: Payout): Promise<Payin | null | typeof STOPPED> {
  const payoutId = payout.payout_id;
  // Never asked (the intent comes before every request, and its first time is kept): ChangeNow can hold none.
  if (payout.exchange_asked_at === null && payout.status === 'pending') return null;
  // An exchange that expired without a deposit is dead and harmless.
  const found = (await deps.exchange.listExchanges({ userId: payoutId })).filter(
    (e) => !(e.status === 'expired' && e.payinHash === null && e.amountFrom === null),
  );
  if (found.length > 1) {
    await toReview(
      deps,
      payoutId,
      `ChangeNow holds ${found.length} exchanges for this payout: ${found.map((e) => e.id).join(', ')}`,
      'duplicate_exchanges',
    );
    return STOPPED;
  }
  const [first] = found;
  if (!first) return null;
  const wrong = ['new', 'waiting'].includes(first.status)
    ? statusMismatch(askFor(deps, payout), first)
    : `status ${first.status} (expected a waiting exchange)`;
  if (wrong) {
    await toReview(
      deps,
      payoutId,
      `${UNLIKE_REQUEST.found} ${first.id} does not match the payout: ${wrong}`,
      'exchange_mismatch',
    );
    return STOPPED;
  }
  return foundPayin(first);
}

/**
 * Asks ChangeNow for the payout's exchange, its intent (exchange_requested) recorded first. STOPPED when the payout
 * was cancelled meanwhile, ChangeNow refused it in a way no retry changes (held or review), or answered unlike the
 * request (review); any other failure throws.
 */
async function requestExchange(deps: StageDeps, payout: Payout): Promise<Payin | typeof STOPPED> {
  const payoutId = payout.payout_id;
  const requested = await deps.db
    .updateTable('payouts')
    .set({ status: 'exchange_requested', updated_at: sql`now()` })
    .where('payout_id', '=', payoutId)
    .where('status', 'in', ['pending', 'exchange_requested'])
    .returning('payout_id')
    .executeTakeFirst();
  // Cancelled meanwhile: ask for nothing.
  if (!requested) return STOPPED;
  return (await createAsked(deps, payout)) ?? STOPPED;
}

/** A payout as its exchange is asked for: what the request is made of, and what a refusal acts on. */
export type AskedPayout = Pick<
  Payout,
  'payout_id' | 'asset' | 'amount' | 'payout_currency' | 'payout_network' | 'wallet_address'
>;

/**
 * ChangeNow's create for the payout, its intent recorded: the exchange as created, or null when there is none to
 * record (refused: held or review; unlike the request: review, never funded). Any other failure throws.
 */
export async function createAsked(deps: StageDeps, payout: AskedPayout): Promise<Payin | null> {
  const payoutId = payout.payout_id;
  const ask = askFor(deps, payout);
  let created;
  try {
    created = await deps.exchange.createExchange({
      fromCurrency: ask.fromCurrency,
      fromNetwork: ask.fromNetwork,
      toCurrency: ask.toCurrency,
      toNetwork: ask.toNetwork,
      fromAmount: ask.fromAmount,
      address: ask.payoutAddress,
      refundAddress: ask.refundAddress,
      userId: payoutId,
      payload: { payoutId },
    });
  } catch (error) {
    if (await stopOnRefusal(deps, payout, error)) return null;
    throw error;
  }
  deps.crashPoint?.('payout_after_exchange_created');
  // Never funded when it is not the exchange asked for (another payout address is someone else's money).
  const wrong = createdMismatch(ask, created);
  if (wrong) {
    await toReview(
      deps,
      payoutId,
      `${UNLIKE_REQUEST.created} ${created.id} unlike the request: ${wrong}; not funded`,
      'exchange_mismatch',
    );
    return null;
  }
  return createdPayin(created);
}

/**
 * The exchange and the transfer that pays it, recorded together as the payout moves to exchange_created. False when
 * the payout was cancelled or moved on meanwhile.
 */
async function recordExchange(deps: StageDeps, payout: Payout, payin: Payin): Promise<boolean> {
  const payoutId = payout.payout_id;
  return deps.db.transaction().execute(async (trx) => {
    const status = await lockedStatus(trx, payoutId);
    // pending: an exchange found before asking again (adopted); anything else: cancelled or moved on meanwhile.
    if (status !== 'exchange_requested' && status !== 'pending') return false;
    const transfer = await holdTransfer(trx, {
      purpose: 'payout',
      ref: payoutId,
      asset: payout.asset,
      from: deps.hostAddress,
      to: payin.payinAddress,
      amount: BigInt(payout.amount),
    });
    // One transfer per payout: one recorded earlier for another deposit must not pay this exchange.
    if (
      transfer.to_address.toLowerCase() !== payin.payinAddress.toLowerCase() ||
      BigInt(transfer.amount) !== BigInt(payout.amount) ||
      transfer.asset !== payout.asset
    ) {
      throw new Error(
        `payout ${payoutId}: its transfer pays ${transfer.amount} ${transfer.asset} to ${transfer.to_address}, not the exchange's ${payin.payinAddress}`,
      );
    }
    await trx
      .updateTable('payouts')
      .set({
        status: 'exchange_created',
        exchange_id: payin.id,
        payin_address: payin.payinAddress,
        expected_amount_out: payin.toAmount,
        transfer_id: transfer.transfer_id,
        last_error: null,
        updated_at: sql`now()`,
      })
      .where('payout_id', '=', payoutId)
      .execute();
    return true;
  });
}

/** The payout a transfer pays (its ref), locked until the commit: whatever else moves the payout waits for the hook. */
function lockPayout(trx: Transaction<Database>, payoutId: string): Promise<Payout> {
  return payoutForUpdate(trx, payoutId).executeTakeFirstOrThrow();
}

/** What happens to a payout when its transfer is mined, or never leaves. */
export function payoutTransferHooks(deps: StageDeps): TransferHooks {
  return {
    async onConfirmed(trx, transfer) {
      const payout = await lockPayout(trx, transfer.ref);
      if (payout.exchange_id === null) {
        if (payout.status !== 'sent') return unexpected(deps, payout, 'confirmed');
        // Direct: the owner's wallet received the transfer itself.
        await completeIn(trx, payout, {
          amountOut: amountText(payout),
          payoutHash: transfer.tx_hash,
          counterparty: accounts.payees(payout.asset),
        });
        deps.logger.info({ event: 'payout_completed', payoutId: payout.payout_id, direct: true }, 'payout completed');
        return;
      }
      if (payout.status !== 'exchange_created') return unexpected(deps, payout, 'confirmed');
      await trx
        .updateTable('payouts')
        .set({
          status: 'sent',
          poll_deadline_at: new Date(Date.now() + deps.settings.pollDeadlineMs),
          updated_at: sql`now()`,
        })
        .where('payout_id', '=', payout.payout_id)
        .execute();
      await enqueuePayoutPoll(trx, payout.payout_id, new Date());
    },
    async onFailed(trx, transfer, failure) {
      const payout = await lockPayout(trx, transfer.ref);
      if (payout.status !== 'exchange_created' && payout.status !== 'sent')
        return unexpected(deps, payout, `failed (${failure.code})`);
      if (failure.code === 'estimate_failed') {
        // The receiver (a contract that refuses it, a token blacklist) would make every try fail: a person decides,
        // with the funds still reserved; cancel returns them to the channel (nothing was signed).
        await toReview(
          deps,
          payout.payout_id,
          `transfer ${transfer.transfer_id}: ${failure.message}`,
          'payout_transfer_would_fail',
          trx,
        );
        return;
      }
      await returnFundsIn(
        trx,
        payout,
        'failed',
        `transfer ${transfer.transfer_id} ${failure.code}: ${failure.message}; the funds never left`,
      );
      deps.logger.error(
        { event: 'alert', alert: 'payout_failed', payoutId: payout.payout_id, reason: failure.code },
        'payout transfer failed; funds back on the channel balance',
      );
    },
  };
}

/** No path leads here; if one ever does, the transfer's outcome is recorded and a person is told. */
function unexpected(deps: StageDeps, payout: Payout, outcome: string): void {
  deps.logger.error(
    { event: 'alert', alert: 'payout_state_unexpected', payoutId: payout.payout_id, status: payout.status, outcome },
    'payout transfer ended while the payout was not waiting for it',
  );
}

/**
 * Completes a payout: the reserved funds leave the books to ChangeNow (or the owner), in one journal. A threshold
 * channel's balance that grew meanwhile past its threshold gets its next batch.
 */
export async function completeIn(
  trx: Transaction<Database>,
  payout: Payout,
  result: {
    amountOut: string | null;
    payoutHash: string | null;
    counterparty: AccountRef;
    reason?: string;
    from?: PayoutStatus;
  },
): Promise<boolean> {
  const done = await trx
    .updateTable('payouts')
    .set({
      status: 'completed',
      amount_out: result.amountOut,
      payout_hash: result.payoutHash,
      reason: result.reason ?? null,
      completed_at: sql`now()`,
      updated_at: sql`now()`,
    })
    .where('payout_id', '=', payout.payout_id)
    .where('status', '=', result.from ?? 'sent')
    .returning('payout_id')
    .executeTakeFirst();
  if (!done) return false;
  const amount = BigInt(payout.amount);
  const journal = await postJournal(trx, {
    kind: 'payout_completed',
    ref: payout.payout_id,
    entries: [
      { account: accounts.channelPayout(payout.channel_id, payout.asset), amount: -amount },
      { account: result.counterparty, amount },
    ],
  });
  if (!journal.posted) throw new Error(`payout ${payout.payout_id} already has a completion journal`);
  if (payout.kind === 'threshold')
    await enqueueReplacing(trx, 'threshold_check', { channelId: payout.channel_id }, payout.channel_id);
  return true;
}

/**
 * Ends a payout whose funds are still (or again) ours: they go back to the channel's available balance, and a
 * threshold batch's payments become free for the next batch. An instant payment's ETH joins the next conversion when
 * its channel switched to threshold while the payout was on its way (the switch left it to the payout).
 */
export async function returnFundsIn(
  trx: Transaction<Database>,
  payout: Payout,
  status: 'failed' | 'cancelled',
  reason: string,
  returned = BigInt(payout.amount),
): Promise<void> {
  // Before the channel is read and the payment moved: a switch of its strategy either committed before (read here)
  // or waits for this commit and then sees the payout ended (src/channels/lock.ts). A save never waits for a payout's
  // row, which the caller holds. The payment's row is locked before the journal's balances, as every path that
  // writes a payment and books for it does (an intake group locks the rows of its payments, then their balances).
  if (payout.kind === 'instant') {
    await lockChannelForCredit(trx, payout.channel_id);
    if (payout.payment_id !== null) await lockPayment(trx, String(payout.payment_id));
  }
  await trx
    .updateTable('payouts')
    .set({ status, reason, hold_until: null, updated_at: sql`now()` })
    .where('payout_id', '=', payout.payout_id)
    .execute();
  if (payout.kind === 'threshold') {
    await trx
      .updateTable('payments')
      .set({ payout_id: null, updated_at: sql`now()` })
      .where('payout_id', '=', payout.payout_id)
      .execute();
  }
  const amount = BigInt(payout.amount);
  if (returned < 0n || returned > amount)
    throw new Error(`payout ${payout.payout_id}: cannot return ${returned} of ${amount}`);
  // What did not come back stayed with ChangeNow (a person's finding, see payout-review).
  const entries = [
    { account: accounts.channelPayout(payout.channel_id, payout.asset), amount: -amount },
    { account: accounts.channel(payout.channel_id, payout.asset), amount: returned },
    { account: accounts.changenow(payout.asset), amount: amount - returned },
  ].filter((e) => e.amount !== 0n);
  const journal = await postJournal(trx, { kind: 'payout_returned', ref: payout.payout_id, entries });
  if (!journal.posted) throw new Error(`payout ${payout.payout_id} already has a return journal`);
  if (payout.kind === 'threshold' && status === 'failed') await checkAgainAfterFailedBatch(trx, payout.channel_id);
  if (payout.kind === 'instant' && payout.payment_id !== null) {
    const channel = await trx
      .selectFrom('channels')
      .select('payout_strategy')
      .where('channel_id', '=', payout.channel_id)
      .executeTakeFirst();
    if (channel?.payout_strategy === 'threshold')
      await moveInstantToConversion(trx, { paymentId: String(payout.payment_id) });
  }
}

/**
 * A failed batch's USDT is on the channel again, often above its threshold, and no credit may come to open the next
 * batch: the channel's threshold check is queued, after 2^(n-1) minutes for the n-th batch in a row to fail (at most a
 * day), so an exchange that keeps refunding is not asked again and again. A cancel is a person's decision: no check.
 */
async function checkAgainAfterFailedBatch(trx: Transaction<Database>, channelId: string): Promise<void> {
  const recent = await trx
    .selectFrom('payouts')
    .select('status')
    .where('channel_id', '=', channelId)
    .where('kind', '=', 'threshold')
    .orderBy('created_at', 'desc')
    .limit(12)
    .execute();
  const firstNotFailed = recent.findIndex((p) => p.status !== 'failed');
  const failedInARow = Math.max(1, firstNotFailed === -1 ? recent.length : firstNotFailed);
  const delayMinutes = Math.min(2 ** (failedInARow - 1), 24 * 60);
  await enqueueReplacing(
    trx,
    'threshold_check',
    { channelId },
    channelId,
    new Date(Date.now() + delayMinutes * 60_000),
  );
}

/** Parks a payout in `held` with its payout_run job at `until`. False when it was no longer pending or requested. */
async function hold(
  deps: StageDeps,
  payoutId: string,
  reason: string,
  until = new Date(Date.now() + HOLD_RETRY_MS),
  fields: Record<string, string> = {},
): Promise<boolean> {
  const held = await deps.db.transaction().execute(async (trx) => {
    const held = await trx
      .updateTable('payouts')
      .set({ status: 'held', reason, hold_until: until, updated_at: sql`now()` })
      .where('payout_id', '=', payoutId)
      .where('status', 'in', ['pending', 'exchange_requested'])
      .returning('payout_id')
      .executeTakeFirst();
    if (held) await enqueuePayoutRun(trx, payoutId, until);
    return held !== undefined;
  });
  if (held)
    deps.logger.warn(
      { event: 'payout_held', payoutId, ...fields, reason, until: until.toISOString() },
      'payout held until the hold ends',
    );
  return held;
}

/**
 * From a state the pipeline works on only: a payout already in review keeps the reason a person is reading (a stale
 * poll or run must not replace it, nor write what goes with its own reason).
 */
const PAYOUT_REVIEWABLE: readonly PayoutStatus[] = OPEN_PAYOUT_STATES.filter((s) => s !== 'needs_review');

/**
 * A person decides: the payout keeps its reservation and stops until retried or cancelled. In the caller's transaction
 * when given one (the reconciler decides under the payout's row lock). True when it moved. The alert is the log line
 * only: the payout_needs_review state rule stores it from the payout's state.
 */
export function toReview(
  deps: StageDeps,
  payoutId: string,
  reason: string,
  alert: string,
  within: Db | Transaction<Database> = deps.db,
): Promise<boolean> {
  return reviewWithAlert(deps, within, {
    move: { table: 'payouts', id: payoutId, from: PAYOUT_REVIEWABLE, reason },
    notice: { logger: deps.logger, line: { alert, payoutId, reason }, message: 'payout sent to review' },
  });
}
