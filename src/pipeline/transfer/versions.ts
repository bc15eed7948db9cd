/**
 * Signed versions of one transfer, all at its nonce: the first, replacements with higher fees, and a cancel. Each is
 * stored before it is broadcast, so whichever of them the chain mines is known to be ours.
 */
import { sql, type Transaction } from 'kysely';
import { parseTransaction, type Hex } from 'viem';
import type { Database } from '../../db/index.ts';
import type { BroadcastResult, FeeQuote, SignedTransfer } from '../../integrations/wallet/index.ts';
import type { Logger } from '../../log.ts';
import { stageAlert } from '../alert.ts';
import type { StageDeps } from '../interfaces.ts';
import { assetOf, lockTransfer, RELEASED_STATES, type Transfer, type TransferVersion } from './model.ts';

/**
 * geth and most nodes take a replacement only with both fees at least 10 % above the pooled version's; one wei more
 * than a tenth keeps the integer rounding on the right side of that rule.
 */
export function minimumBump(fee: bigint): bigint {
  return fee + fee / 10n + 1n;
}

/**
 * Fees for a replacement: what the network asks now, and at least the minimum bump over the last version, never above
 * the ceiling. Null when even the minimum bump would pass the ceiling: the transfer waits, and a person is told.
 */
export function replacementFees(previous: FeeQuote, now: FeeQuote, ceilingWei: bigint): FeeQuote | null {
  const minMax = minimumBump(previous.maxFeePerGas);
  const minPriority = minimumBump(previous.maxPriorityFeePerGas);
  if (minMax > ceilingWei || minPriority > ceilingWei) return null;
  const maxFeePerGas =
    now.maxFeePerGas > minMax ? (now.maxFeePerGas > ceilingWei ? ceilingWei : now.maxFeePerGas) : minMax;
  const wantedPriority = now.maxPriorityFeePerGas > minPriority ? now.maxPriorityFeePerGas : minPriority;
  if (minPriority > maxFeePerGas) return null;
  return { maxFeePerGas, maxPriorityFeePerGas: wantedPriority > maxFeePerGas ? maxFeePerGas : wantedPriority };
}

/** The first version's fees: the network's, with the max fee held at the ceiling (the tip never above it). */
export function cappedFees(now: FeeQuote, ceilingWei: bigint): FeeQuote {
  const maxFeePerGas = now.maxFeePerGas > ceilingWei ? ceilingWei : now.maxFeePerGas;
  return {
    maxFeePerGas,
    maxPriorityFeePerGas: now.maxPriorityFeePerGas > maxFeePerGas ? maxFeePerGas : now.maxPriorityFeePerGas,
  };
}

/** A version's fees, read from its signed bytes when they were not stored (versions kept before fees were). */
export function feesOf(
  version: Pick<TransferVersion, 'raw_tx' | 'max_fee_per_gas' | 'max_priority_fee_per_gas'>,
): FeeQuote {
  if (version.max_fee_per_gas !== null && version.max_priority_fee_per_gas !== null) {
    return {
      maxFeePerGas: BigInt(version.max_fee_per_gas),
      maxPriorityFeePerGas: BigInt(version.max_priority_fee_per_gas),
    };
  }
  const parsed = parseTransaction(version.raw_tx as Hex);
  if (parsed.maxFeePerGas === undefined || parsed.maxPriorityFeePerGas === undefined)
    throw new Error('a stored version is not an EIP-1559 transaction');
  return { maxFeePerGas: parsed.maxFeePerGas, maxPriorityFeePerGas: parsed.maxPriorityFeePerGas };
}

export function gasOf(transfer: Pick<Transfer, 'gas_limit' | 'raw_tx'>): bigint {
  if (transfer.gas_limit !== null) return BigInt(transfer.gas_limit);
  const parsed = parseTransaction(transfer.raw_tx as Hex);
  if (parsed.gas === undefined) throw new Error('a stored version has no gas limit');
  return parsed.gas;
}

export async function insertVersion(
  trx: Transaction<Database>,
  transferId: string,
  version: number,
  kind: TransferVersion['kind'],
  signed: SignedTransfer,
  gas: bigint,
  fees: FeeQuote,
): Promise<void> {
  await trx
    .insertInto('chain_transfer_versions')
    .values({
      transfer_id: transferId,
      version,
      kind,
      tx_hash: signed.hash,
      raw_tx: signed.rawTx,
      gas_limit: gas,
      max_fee_per_gas: fees.maxFeePerGas,
      max_priority_fee_per_gas: fees.maxPriorityFeePerGas,
    })
    .execute();
}

export type ReplaceOutcome = { replaced: true; version: TransferVersion } | { replaced: false; why: string };

/**
 * Signs the next version at the transfer's nonce (the same payment, or a cancel) with replacement fees, stores it,
 * then broadcasts it. Under the transfer's row lock, so two replacements of one transfer never race.
 */
export async function replace(
  deps: StageDeps,
  transfer: Transfer,
  asked: TransferVersion['kind'],
  log: Logger,
  cause: string,
  options: { olderThanMs?: number } = {},
): Promise<ReplaceOutcome> {
  const now = await deps.wallet.fees();
  const outcome = await deps.db
    .transaction()
    .execute((trx) => signNextVersion(trx, deps, transfer.transfer_id, asked, now, options));
  if (!outcome.replaced) {
    if (outcome.why.includes('TRANSFER_MAX_FEE_GWEI')) await alertFeeCeiling(deps, log, transfer, cause, outcome.why);
    return outcome;
  }
  logSigned(log, outcome.version, cause);
  await broadcastVersion(deps, transfer.transfer_id, outcome.version, log);
  return outcome;
}

/** Under the transfer's row lock: the next version signed with replacement fees and stored, or why not. */
async function signNextVersion(
  trx: Transaction<Database>,
  deps: StageDeps,
  transferId: string,
  asked: TransferVersion['kind'],
  now: FeeQuote,
  options: { olderThanMs?: number },
): Promise<ReplaceOutcome> {
  const current = await lockTransfer(trx, transferId);
  if (!RELEASED_STATES.includes(current.status) || current.nonce === null)
    return { replaced: false, why: `the transfer is ${current.status}` };
  if (current.block_number !== null)
    return { replaced: false, why: `a version is mined in block ${current.block_number}` };
  const last = await latestVersion(trx, transferId);
  // Read under the lock, not from the caller's snapshot: a run that looked before a person's cancel (or another
  // run's bump) must neither sign the payment over that cancel nor bump twice.
  if (options.olderThanMs !== undefined && Date.now() - last.created_at.getTime() < options.olderThanMs)
    return { replaced: false, why: `version ${last.version} was signed meanwhile` };
  const kind = last.kind === 'cancel' ? 'cancel' : asked;
  const fees = replacementFees(feesOf(last), now, deps.settings.transfer.maxFeePerGasWei);
  if (fees === null)
    return {
      replaced: false,
      why: `the next bump over ${feesOf(last).maxFeePerGas} wei per gas passes TRANSFER_MAX_FEE_GWEI`,
    };
  const gas = kind === 'cancel' ? 21_000n : gasOf(current);
  const signed = await signAtNonce(deps, current, kind, gas, fees);
  const version = await storeVersion(trx, current.transfer_id, last.version + 1, kind, signed, gas, fees);
  return { replaced: true, version };
}

function latestVersion(trx: Transaction<Database>, transferId: string): Promise<TransferVersion> {
  return trx
    .selectFrom('chain_transfer_versions')
    .selectAll()
    .where('transfer_id', '=', transferId)
    .orderBy('version', 'desc')
    .limit(1)
    .executeTakeFirstOrThrow();
}

/** The same payment again, or a cancel (nothing to ourselves), at the transfer's nonce. */
function signAtNonce(
  deps: StageDeps,
  current: Transfer,
  kind: TransferVersion['kind'],
  gas: bigint,
  fees: FeeQuote,
): Promise<SignedTransfer> {
  const nonce = Number(current.nonce);
  if (kind === 'cancel') return deps.wallet.signCancel(nonce, fees);
  return deps.wallet.sign(
    {
      to: current.to_address as Hex,
      asset: assetOf(deps, current),
      amount: BigInt(current.amount),
      nonce,
      gas,
    },
    fees,
  );
}

/** Stored as a version and as the transfer's current one, before any broadcast. */
async function storeVersion(
  trx: Transaction<Database>,
  transferId: string,
  next: number,
  kind: TransferVersion['kind'],
  signed: SignedTransfer,
  gas: bigint,
  fees: FeeQuote,
): Promise<TransferVersion> {
  await insertVersion(trx, transferId, next, kind, signed, gas, fees);
  await trx
    .updateTable('chain_transfers')
    .set({ tx_hash: signed.hash, raw_tx: signed.rawTx, updated_at: sql`now()` })
    .where('transfer_id', '=', transferId)
    .execute();
  return trx
    .selectFrom('chain_transfer_versions')
    .selectAll()
    .where('tx_hash', '=', signed.hash)
    .executeTakeFirstOrThrow();
}

async function alertFeeCeiling(
  deps: StageDeps,
  log: Logger,
  transfer: Transfer,
  cause: string,
  why: string,
): Promise<void> {
  await stageAlert(deps, log, {
    rule: 'transfer_fee_ceiling',
    subject: transfer.transfer_id,
    severity: 'critical',
    message: 'a waiting transfer cannot be bumped: its fees are at TRANSFER_MAX_FEE_GWEI',
    details: { transferId: transfer.transfer_id, nonce: transfer.nonce, cause, why },
  });
}

function logSigned(log: Logger, version: TransferVersion, cause: string): void {
  log.warn(
    {
      event: version.kind === 'cancel' ? 'transfer_cancel_signed' : 'transfer_replaced',
      version: version.version,
      txHash: version.tx_hash,
      maxFeePerGas: version.max_fee_per_gas,
      cause,
    },
    'new version signed at the same nonce',
  );
}

/**
 * Hands one stored version to the node. Never changes the transfer's state: whatever the answer (taken, refused, lost),
 * the version may be on the network, and the confirm step finds out from the chain what became of it. False when the
 * node did not answer.
 */
export async function broadcastVersion(
  deps: StageDeps,
  transferId: string,
  version: Pick<TransferVersion, 'raw_tx' | 'tx_hash' | 'version'>,
  log: Logger,
): Promise<boolean> {
  let result;
  try {
    result = await deps.wallet.broadcast(version.raw_tx as Hex);
  } catch (error) {
    log.warn(
      { event: 'transfer_broadcast_unanswered', txHash: version.tx_hash, err: (error as Error).message },
      'broadcast unanswered: it may have reached the node; the chain will tell',
    );
    return false;
  }
  await reportAnswer(deps, transferId, version, log, result);
  return true;
}

async function reportAnswer(
  deps: StageDeps,
  transferId: string,
  version: Pick<TransferVersion, 'tx_hash' | 'version'>,
  log: Logger,
  result: BroadcastResult,
): Promise<void> {
  if (result.ok) {
    log.info({ event: 'transfer_broadcast', txHash: version.tx_hash, version: version.version }, 'transfer broadcast');
    return;
  }
  if (result.reason === 'insufficient_funds') {
    await stageAlert(deps, log, {
      rule: 'host_wallet_insufficient',
      subject: 'eth',
      severity: 'critical',
      message: 'the node refused a host wallet transaction for lack of funds; it keeps its nonce and is sent again',
      details: { transferId, txHash: version.tx_hash, message: result.message },
    });
    return;
  }
  // Nonce too low: some version (ours or not) took the nonce; underpriced: the node holds a version paying more; a
  // gap: it arrived before a lower nonce of the batch, and its confirm step sends it again behind that one.
  if (result.reason === 'nonce_too_low' || result.reason === 'underpriced' || result.reason === 'nonce_gap') {
    log.info(
      { event: 'transfer_broadcast_refused', reason: result.reason, txHash: version.tx_hash, message: result.message },
      'broadcast refused; the confirm step reads the chain',
    );
    return;
  }
  await stageAlert(deps, log, {
    rule: 'transfer_refused',
    subject: transferId,
    severity: 'critical',
    message: 'the node refused a host wallet transaction',
    details: { transferId, reason: result.reason, txHash: version.tx_hash, message: result.message },
  });
}
