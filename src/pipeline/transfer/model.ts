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

/**
 * A transfer waiting behind a lower nonce of ours that the chain has not mined looks again less often the longer it
 * has waited: a quarter of its wait, from CONFIRM_RECHECK_MS up to this. Its own look cannot move it on (only the
 * lower one's can), yet every waiter looking every 5 s while one nonce was stuck (under the fee ceiling in a gas
 * spike, say) took worker slots and node calls in proportion to the backlog: 770 waiters made about 150 looks a
 * second. Once the lower one is booked, the next waiter is looked at at once (confirm.ts, wakeNextWaiting).
 */
export const WAITING_RECHECK_MAX_MS = 60_000;

export function waitingRecheckMs(waitedMs: number): number {
  return Math.min(WAITING_RECHECK_MAX_MS, Math.max(CONFIRM_RECHECK_MS, Math.floor(waitedMs / 4)));
}

/** A transfer's send job, by its key: one at a time per transfer. */
export function sendJobKey(transferId: string): string {
  return `transfer_send:${transferId}`;
}

/**
 * A wallet's sends go before the per-payment jobs in the queue (graphile-worker takes ready jobs by priority, then
 * run_at). They run one at a time per wallet and each signs up to a batch of queued intents, so the wallet's pace is
 * one send per free worker slot: behind a backlog of other jobs each send waited a second or more for a slot while
 * the whole wallet's queue waited with it. At most one per wallet is ready at a time, so nothing waits long behind.
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
 * A conversion's transfer moves hundreds of payments' value, and the conversion waits for its confirmation: its
 * confirm steps go before the payouts' (one per conversion, so nothing waits long behind them). Behind a backlog of
 * payout confirmations a conversion's confirmation waited 3–5 s for a worker slot, most of the conversion's time.
 */
export function confirmPriority(purpose: Transfer['purpose'] | undefined): number {
  return purpose === 'conversion' ? -1 : 0;
}

/**
 * A transfer's confirm job, due now or at runAt. The pipeline's steps name the transfer's purpose (its priority);
 * a person's action or the reconciler's resume may leave it out.
 */
export function enqueueConfirm(
  trx: Transaction<Database>,
  transferId: string,
  options: { runAt?: Date; purpose?: Transfer['purpose'] } = {},
): Promise<void> {
  return enqueue(
    trx,
    'transfer_confirm',
    { transferId },
    {
      jobKey: confirmJobKey(transferId),
      jobKeyMode: 'replace',
      maxAttempts: SEND_MAX_ATTEMPTS,
      priority: confirmPriority(options.purpose),
      ...(options.runAt && { runAt: options.runAt }),
    },
  );
}

/** enqueueConfirm for several transfers of one purpose, due now, in one statement. */
export function enqueueConfirms(
  trx: Transaction<Database>,
  transferIds: readonly string[],
  purpose: Transfer['purpose'],
): Promise<void> {
  return enqueueEach(
    trx,
    'transfer_confirm',
    transferIds.map((transferId) => ({ payload: { transferId }, jobKey: confirmJobKey(transferId) })),
    { jobKeyMode: 'replace', maxAttempts: SEND_MAX_ATTEMPTS, priority: confirmPriority(purpose) },
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
