/**
 * A transfer from the host wallet and the signed versions of it: what every step of the transfer aggregate shares.
 *
 * States: intent (no nonce yet) → broadcast (signed, and possibly on the network: written before the first broadcast
 * call, never undone) → confirmed | failed, with needs_review for a person. `signed` is the state of rows written by
 * versions that signed and broadcast in two steps; it is treated as possibly on the network too.
 */
import type { Selectable, Transaction } from 'kysely';
import type { ChainTransfersTable, ChainTransferVersionsTable, Database, Db, TransferStatus } from '../../db/index.ts';
import type { TransferAsset } from '../../integrations/wallet/index.ts';
import { enqueue, enqueueEach } from '../../jobs/index.ts';
import type { StageDeps } from '../interfaces.ts';

export type Transfer = Selectable<ChainTransfersTable>;
export type TransferVersion = Selectable<ChainTransferVersionsTable>;

/** Why a transfer failed: in every case nothing it was for reached its receiver. */
export type FailureCode = 'reverted' | 'cancelled' | 'never_sent' | 'estimate_failed' | 'token_not_moved';

export interface TransferFailure {
  readonly code: FailureCode;
  readonly message: string;
}

export interface TransferHooks {
  /** In the transaction that marks the transfer confirmed. */
  onConfirmed(trx: Transaction<Database>, transfer: Transfer): Promise<void>;
  /** In the transaction that marks it failed: the funds never left the host wallet. */
  onFailed(trx: Transaction<Database>, transfer: Transfer, failure: TransferFailure): Promise<void>;
}

export type TransferHooksByPurpose = Record<Transfer['purpose'], TransferHooks>;

/** The step cannot go on yet (funds, a lock): its job is retried. */
export class TransferNotReady extends Error {
  override name = 'TransferNotReady';
}

/** States in which a transfer may be on the network, or mined without payrail knowing yet. */
export const RELEASED_STATES: readonly TransferStatus[] = ['signed', 'broadcast', 'needs_review'];
export const FINAL_STATES: readonly TransferStatus[] = ['confirmed', 'failed'];

export const SEND_MAX_ATTEMPTS = 25;
export const CONFIRM_RECHECK_MS = 5_000;

/** The most transfers a confirm run settles besides its own (confirm-set.ts): their receipts are read together. */
export const CONFIRM_SET_MAX = 32;

/**
 * A transfer waiting behind a lower nonce of ours that the chain has not mined looks again less often the farther it
 * is from the chain's next nonce: the nearest CONFIRM_SET_MAX every CONFIRM_RECHECK_MS, the next as many twice as
 * long, and so on, up to this. Its own look cannot move it on before the ones below it; every waiter looking every
 * 5 s while one nonce was stuck (under the fee ceiling in a gas spike, say) took worker slots and node calls in
 * proportion to the backlog: 770 waiters made about 150 looks a second, now about 26. The nearest keep the short
 * cadence, so once the chain moves they are sent again if the node forgot them, replaced if they are stuck in turn,
 * or booked with a set of the others (confirm-set.ts).
 */
export const WAITING_RECHECK_MAX_MS = 60_000;

/** When a transfer `distance` nonces above the chain's next one (1: right behind it) looks again. */
export function waitingRecheckMs(distance: number): number {
  const step = Math.floor(Math.max(0, distance - 1) / CONFIRM_SET_MAX);
  return Math.min(WAITING_RECHECK_MAX_MS, CONFIRM_RECHECK_MS * (1 + step));
}

/** A transfer's send job, by its key: one at a time per transfer. */
export function sendJobKey(transferId: string): string {
  return `transfer_send:${transferId}`;
}

/**
 * A wallet's sends go before the per-payment jobs in the queue (graphile-worker takes ready jobs by priority, then
 * run_at). They run one at a time per wallet and each signs up to a batch of queued intents, so the wallet's pace is
 * one send per free worker slot: behind a backlog of other jobs each send waited a second or more for a slot while
 * the whole wallet's queue waited with it. graphile-worker runs one job of a queue at a time, so the sends hold at
 * most one slot per wallet, however many intents wait.
 */
export const SEND_PRIORITY = -1;

export function enqueueSend(trx: Transaction<Database>, transferId: string, from: string): Promise<void> {
  return enqueue(
    trx,
    'transfer_send',
    { transferId },
    {
      queueName: `wallet:${from.toLowerCase()}`,
      jobKey: sendJobKey(transferId),
      jobKeyMode: 'replace',
      maxAttempts: SEND_MAX_ATTEMPTS,
      priority: SEND_PRIORITY,
    },
  );
}

/** enqueueSend for several transfers of one wallet, in one statement. */
export function enqueueSends(trx: Transaction<Database>, transferIds: readonly string[], from: string): Promise<void> {
  return enqueueEach(
    trx,
    'transfer_send',
    transferIds.map((transferId) => ({ payload: { transferId }, jobKey: sendJobKey(transferId) })),
    {
      queueName: `wallet:${from.toLowerCase()}`,
      jobKeyMode: 'replace',
      maxAttempts: SEND_MAX_ATTEMPTS,
      priority: SEND_PRIORITY,
    },
  );
}

export const CONFIRM_KEY_PREFIX = 'transfer_confirm:';

/** A transfer's confirm job, by its key: one at a time per transfer. */
export function confirmJobKey(transferId: string): string {
  return `${CONFIRM_KEY_PREFIX}${transferId}`;
}

/**
 * A conversion's transfer moves hundreds of payments' value, and the conversion waits for its confirmation: the first
 * look after its broadcast goes before the payouts' jobs (a few per conversion run, at most MAX_CONVERSIONS_PER_RUN).
 * Behind a backlog of payout confirmations it waited 3–5 s for a worker slot, most of the conversion's time. Its
 * looks again (not mined yet, not deep enough) keep priority 0, as a conversion's polls do: a few of them each
 * waiting out a hanging node's timeout, ahead of everything, could hold every worker slot.
 */
export function firstLookPriority(purpose: Transfer['purpose'] | undefined): number {
  return purpose === 'conversion' ? -1 : 0;
}

/**
 * A transfer's confirm job, due now or at runAt. `first`: the first look after its broadcast, which names the
 * transfer's purpose (firstLookPriority); every other look is queued at priority 0.
 */
export function enqueueConfirm(
  trx: Transaction<Database>,
  transferId: string,
  options: { runAt?: Date; first?: Transfer['purpose'] } = {},
): Promise<void> {
  return enqueue(
    trx,
    'transfer_confirm',
    { transferId },
    {
      jobKey: confirmJobKey(transferId),
      jobKeyMode: 'replace',
      maxAttempts: SEND_MAX_ATTEMPTS,
      priority: firstLookPriority(options.first),
      ...(options.runAt && { runAt: options.runAt }),
    },
  );
}

/** The first looks of several transfers of one purpose, due now, in one statement. */
export function enqueueConfirms(
  trx: Transaction<Database>,
  transferIds: readonly string[],
  purpose: Transfer['purpose'],
): Promise<void> {
  return enqueueEach(
    trx,
    'transfer_confirm',
    transferIds.map((transferId) => ({ payload: { transferId }, jobKey: confirmJobKey(transferId) })),
    { jobKeyMode: 'replace', maxAttempts: SEND_MAX_ATTEMPTS, priority: firstLookPriority(purpose) },
  );
}

export function assetOf(deps: Pick<StageDeps, 'usdtContract'>, transfer: Pick<Transfer, 'asset'>): TransferAsset {
  if (transfer.asset === 'eth') return { kind: 'native' };
  if (!deps.usdtContract) throw new Error('USDT transfers need a USDT contract address');
  return { kind: 'erc20', contract: deps.usdtContract };
}

export function loadTransfer(db: Db | Transaction<Database>, transferId: string): Promise<Transfer> {
  return db.selectFrom('chain_transfers').selectAll().where('transfer_id', '=', transferId).executeTakeFirstOrThrow();
}

/** The transfer under its row lock, for a change that must see its current state: the caller's transaction. */
export function lockTransfer(trx: Transaction<Database>, transferId: string): Promise<Transfer> {
  return transferForUpdate(trx, transferId).executeTakeFirstOrThrow();
}

/** The same row lock as a query: a person's action may name a transfer that does not exist, and answers null then. */
export function transferForUpdate(trx: Transaction<Database>, transferId: string) {
  return trx.selectFrom('chain_transfers').selectAll().where('transfer_id', '=', transferId).forUpdate();
}

export function loadVersions(db: Db | Transaction<Database>, transferId: string): Promise<TransferVersion[]> {
  return db
    .selectFrom('chain_transfer_versions')
    .selectAll()
    .where('transfer_id', '=', transferId)
    .orderBy('version')
    .execute();
}

/** Queues the job that moves a transfer on from its state (a person's retry, the reconciler's resume). */
export async function resumeTransfer(
  trx: Transaction<Database>,
  transfer: Pick<Transfer, 'transfer_id' | 'status' | 'from_address'>,
): Promise<void> {
  if (transfer.status === 'intent' || transfer.status === 'signed')
    await enqueueSend(trx, transfer.transfer_id, transfer.from_address);
  else if (transfer.status === 'broadcast') await enqueueConfirm(trx, transfer.transfer_id);
}
