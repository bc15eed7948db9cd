/**
 * A transfer's outcome, booked once: the gas the chain charged (whichever version was mined, a cancel included), the
 * final state, and the owner's follow-up through its hooks, in one transaction under the transfer's row lock.
 */
import { sql, type Transaction } from 'kysely';
import type { Database } from '../../db/index.ts';
import type { MinedReceipt } from '../../integrations/wallet/index.ts';
import { accounts, postJournal } from '../../ledger/index.ts';
import type { Logger } from '../../log.ts';
import { stageAlert } from '../alert.ts';
import type { StageDeps } from '../interfaces.ts';
import {
  FINAL_STATES,
  lockTransfer,
  RELEASED_STATES,
  type Transfer,
  type TransferFailure,
  type TransferHooksByPurpose,
  type TransferVersion,
} from './model.ts';

export type MinedOutcome =
  | { status: 'confirmed'; reason?: string }
  | { status: 'failed'; failure: TransferFailure }
  | { status: 'needs_review'; reason: string };

/**
 * What a mined version did, as the chain shows it. A token transfer counts only by its Transfer log of the whole amount
 * from the host wallet to the receiver: a token that returns false, or takes a fee, moves something else than asked.
 */
export function outcomeOf(
  transfer: Pick<Transfer, 'asset' | 'amount' | 'from_address' | 'to_address'>,
  kind: TransferVersion['kind'],
  receipt: MinedReceipt,
  token: string | undefined,
): MinedOutcome {
  if (kind === 'cancel')
    return {
      status: 'failed',
      failure: { code: 'cancelled', message: 'the cancel took the nonce: the transfer never executed' },
    };
  if (!receipt.success)
    return {
      status: 'failed',
      failure: { code: 'reverted', message: 'reverted on chain: nothing moved, the gas was paid' },
    };
  if (transfer.asset === 'eth') return { status: 'confirmed' };
  const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();
  const moved = receipt.tokenTransfers
    .filter(
      (log) =>
        token !== undefined &&
        same(log.token, token) &&
        same(log.from, transfer.from_address) &&
        same(log.to, transfer.to_address),
    )
    .reduce((sum, log) => sum + log.value, 0n);
  if (moved === BigInt(transfer.amount)) return { status: 'confirmed' };
  if (
    moved === 0n &&
    !receipt.tokenTransfers.some(
      (log) => token !== undefined && same(log.token, token) && same(log.from, transfer.from_address),
    )
  ) {
    return {
      status: 'failed',
      failure: { code: 'token_not_moved', message: 'mined without a Transfer log: the token moved nothing' },
    };
  }
  return {
    status: 'needs_review',
    reason: `the token moved ${moved} units to the receiver, not the ${transfer.amount} asked`,
  };
}

/**
 * Books a mined version's outcome. Returns false when the transfer had already ended (a second run, a person's
 * resolve): nothing is booked twice.
 */
export async function settleMined(
  trx: Transaction<Database>,
  hooks: TransferHooksByPurpose,
  transferId: string,
  mined: SettledVersion,
): Promise<boolean> {
  if (!(await bookOutcome(trx, hooks, await lockTransfer(trx, transferId), mined))) return false;
  // Last before the commit: every transfer's gas is booked on the same two balance rows, so each settlement holds
  // their locks only for this statement and its commit, not through its owner's hook.
  await bookGas(trx, transferId, mined.receipt);
  return true;
}

export interface SettledVersion {
  readonly version: Pick<TransferVersion, 'tx_hash' | 'raw_tx'>;
  readonly receipt: MinedReceipt;
  readonly outcome: MinedOutcome;
}

/**
 * A mined version's final state and its owner's follow-up (its hooks), for a transfer the caller read under its row
 * lock in this transaction; false when it had already ended. Its gas is the caller's to book (bookGas), after.
 */
export async function bookOutcome(
  trx: Transaction<Database>,
  hooks: TransferHooksByPurpose,
  current: Transfer,
  mined: SettledVersion,
): Promise<boolean> {
  if (FINAL_STATES.includes(current.status) || current.status === 'intent') return false;
  const { receipt, outcome } = mined;
  const done = await trx
    .updateTable('chain_transfers')
    .set({
      status: outcome.status,
      tx_hash: mined.version.tx_hash,
      raw_tx: mined.version.raw_tx,
      block_number: receipt.blockNumber.toString(),
      block_hash: receipt.blockHash,
      gas_cost_wei: receipt.gasCostWei.toString(),
      reason:
        outcome.status === 'confirmed'
          ? (outcome.reason ?? null)
          : outcome.status === 'failed'
            ? outcome.failure.message
            : outcome.reason,
      last_error: outcome.status === 'failed' ? outcome.failure.code : null,
      nonce_taken_seen_at: null,
      ...clearedRequest,
      reconcile_attempts: 0,
      updated_at: sql`now()`,
    })
    .where('transfer_id', '=', current.transfer_id)
    .where('status', 'in', RELEASED_STATES)
    .returningAll()
    .executeTakeFirstOrThrow();
  if (outcome.status === 'confirmed') await hooks[done.purpose].onConfirmed(trx, done);
  if (outcome.status === 'failed') await hooks[done.purpose].onFailed(trx, done, outcome.failure);
  return true;
}

/** The gas the chain charged for the mined version (a cancel's included): the platform's network cost. */
export async function bookGas(trx: Transaction<Database>, transferId: string, receipt: MinedReceipt): Promise<void> {
  if (receipt.gasCostWei <= 0n) return;
  await postJournal(trx, {
    kind: 'network_fee',
    ref: transferId,
    entries: [
      { account: accounts.networkCosts('eth'), amount: -receipt.gasCostWei },
      { account: accounts.ethereum('eth'), amount: receipt.gasCostWei },
    ],
  });
}

/** Fails a transfer none of whose versions was mined (never signed, or its nonce provably taken by another). */
export async function failIn(
  trx: Transaction<Database>,
  hooks: TransferHooksByPurpose,
  transfer: Transfer,
  failure: TransferFailure,
): Promise<void> {
  const done = await trx
    .updateTable('chain_transfers')
    .set({
      status: 'failed',
      reason: failure.message,
      last_error: failure.code,
      nonce_taken_seen_at: null,
      ...clearedRequest,
      updated_at: sql`now()`,
    })
    .where('transfer_id', '=', transfer.transfer_id)
    .where('status', 'not in', FINAL_STATES)
    .returningAll()
    .executeTakeFirst();
  if (done) await hooks[done.purpose].onFailed(trx, done, failure);
}

export const clearedRequest = {
  requested_action: null,
  requested_hash: null,
  requested_by: null,
  requested_at: null,
} as const;

/** The log line of a booked outcome; a mined transfer that moved something other than asked is a critical alert. */
export async function logSettled(
  deps: StageDeps,
  log: Logger,
  transfer: Pick<Transfer, 'transfer_id'>,
  mined: { version: Pick<TransferVersion, 'tx_hash' | 'version' | 'kind'>; receipt: MinedReceipt },
  outcome: MinedOutcome,
): Promise<void> {
  const fields = {
    txHash: mined.version.tx_hash,
    version: mined.version.version,
    kind: mined.version.kind,
    blockNumber: mined.receipt.blockNumber.toString(),
    gasCostWei: mined.receipt.gasCostWei.toString(),
  };
  if (outcome.status === 'confirmed') {
    log.info({ event: 'transfer_confirmed', ...fields }, 'transfer confirmed');
    return;
  }
  if (outcome.status === 'failed') {
    log.warn(
      { event: 'transfer_failed', ...fields, reason: outcome.failure.message },
      'transfer failed on chain; nothing moved',
    );
    return;
  }
  await stageAlert(deps, log, {
    rule: 'transfer_review',
    subject: transfer.transfer_id,
    severity: 'critical',
    message: 'a mined transfer did not move what was asked',
    details: { transferId: transfer.transfer_id, ...fields, reason: outcome.reason },
  });
}
