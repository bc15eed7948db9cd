/**
 * transfer_send: the intent becomes its first signed version and is marked as possibly on the network in one commit,
 * before the first broadcast call. From that commit on the transfer keeps its nonce for good: only its own versions
 * (the same bytes, a replacement, a cancel) may follow it, whatever a node answers, because an answer can be lost
 * after the node took the transaction, and a second transaction at another nonce would pay twice.
 */
import { randomBytes } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import type { Hex } from 'viem';
import type { Database } from '../../db/index.ts';
import { gasWithMargin } from '../../integrations/wallet/index.ts';
import type { Logger } from '../../log.ts';
import { stageAlert } from '../alert.ts';
import type { StageDeps } from '../interfaces.ts';
import { failIn } from './settle.ts';
import {
  assetOf,
  enqueueConfirm,
  enqueueSend,
  enqueueSends,
  loadTransfer,
  loadVersions,
  lockTransfer,
  TransferNotReady,
  type Transfer,
  type TransferHooksByPurpose,
} from './model.ts';
import {
  costOf,
  queuedCompanions,
  readyCompanions,
  signAndReleaseBatch,
  spend,
  type Budget,
  type SignedInBatch,
} from './sign-batch.ts';
import { broadcastVersion, cappedFees } from './versions.ts';

export interface TransferIntent {
  purpose: Transfer['purpose'];
  ref: string;
  asset: Transfer['asset'];
  from: string;
  to: string;
  amount: bigint;
}

/** Records the intent and queues its send, in the caller's transaction. Returns the existing one when present. */
export async function createTransfer(trx: Transaction<Database>, intent: TransferIntent): Promise<string> {
  return (await holdTransfer(trx, intent)).transfer_id;
}

/** What a (purpose, ref) holds: the caller compares it with what it meant to pay before it relies on it. */
export type HeldTransfer = Pick<Transfer, 'transfer_id' | 'to_address' | 'amount' | 'asset'>;

/** A new intent's row: nothing signed yet. */
function intentRow(transferId: string, intent: TransferIntent) {
  return {
    transfer_id: transferId,
    purpose: intent.purpose,
    ref: intent.ref,
    asset: intent.asset,
    from_address: intent.from,
    to_address: intent.to,
    amount: intent.amount,
    status: 'intent' as const,
    nonce: null,
    tx_hash: null,
    raw_tx: null,
    block_number: null,
    gas_cost_wei: null,
    last_error: null,
  };
}

/**
 * createTransfer, answering with the transfer the (purpose, ref) holds: the new intent, or one recorded earlier for
 * it, which may pay another address or amount (a payin from an earlier exchange). No second read when new.
 */
export async function holdTransfer(trx: Transaction<Database>, intent: TransferIntent): Promise<HeldTransfer> {
  const held = ['transfer_id', 'to_address', 'amount', 'asset'] as const;
  const inserted = await trx
    .insertInto('chain_transfers')
    .values(intentRow(`tr_${randomBytes(8).toString('hex')}`, intent))
    .onConflict((oc) => oc.columns(['purpose', 'ref']).doNothing())
    .returning(held)
    .executeTakeFirst();
  if (!inserted) {
    // An earlier intent holds (purpose, ref): found by that unique key, as the ledger finds a journal already booked.
    return trx
      .selectFrom('chain_transfers')
      .select(held)
      .where('purpose', '=', intent.purpose)
      .where('ref', '=', intent.ref)
      .executeTakeFirstOrThrow();
  }
  await enqueueSend(trx, inserted.transfer_id, intent.from);
  return inserted;
}

/**
 * createTransfer for intents whose refs are new (their owners' rows written in the same transaction), in two
 * statements, all from one wallet. An intent already recorded under its ref is not theirs to find here: nothing of the
 * caller's transaction is kept. Returns the transfer ids in the intents' order.
 */
export async function createTransfers(
  trx: Transaction<Database>,
  from: string,
  intents: readonly Omit<TransferIntent, 'from'>[],
): Promise<string[]> {
  if (intents.length === 0) return [];
  const ids = intents.map(() => `tr_${randomBytes(8).toString('hex')}`);
  const inserted = await trx
    .insertInto('chain_transfers')
    .values(intents.map((intent, i) => intentRow(ids[i] as string, { ...intent, from })))
    .onConflict((oc) => oc.columns(['purpose', 'ref']).doNothing())
    .returning('transfer_id')
    .execute();
  if (inserted.length !== intents.length)
    throw new Error(`${intents.length - inserted.length} of ${intents.length} transfer intents were recorded before`);
  await enqueueSends(trx, ids, from);
  return ids;
}

export async function sendTransfer(deps: StageDeps, hooks: TransferHooksByPurpose, transferId: string): Promise<void> {
  let transfer = await loadTransfer(deps.db, transferId);
  const log = deps.logger.child({ transferId, purpose: transfer.purpose, ref: transfer.ref });
  if (transfer.status === 'confirmed' || transfer.status === 'failed' || transfer.status === 'needs_review') return;
  if (transfer.status === 'broadcast') {
    // Released before: the confirm step owns it now (a lost confirm job is queued again here).
    await deps.db.transaction().execute((trx) => enqueueConfirm(trx, transferId, { first: transfer.purpose }));
    return;
  }
  if (transfer.status === 'intent' && transfer.requested_action === 'cancel') {
    await cancelUnsigned(deps, hooks, transfer, log);
    return;
  }
  if (transfer.status === 'intent') {
    const signed = await signWithQueued(deps, hooks, transfer, log);
    if (signed === null) return;
    await broadcastBatch(deps, signed);
  } else {
    transfer = await release(deps, transfer);
    const latest = (await loadVersions(deps.db, transferId)).at(-1);
    if (!latest) throw new Error(`transfer ${transferId} is released without a signed version`);
    await broadcastVersion(deps, transferId, latest, log);
  }
  deps.crashPoint?.(transfer.purpose === 'payout' ? 'payout_after_broadcast' : 'after_broadcast');
}

/**
 * Broadcasts one send keeps in flight at once. One after the other, a batch's node calls took most of its send (about
 * 10 ms each on a busy machine) while the wallet's queue waited.
 */
export const BROADCAST_WINDOW = 8;

/**
 * The batch's broadcasts, all after the commit that marked them possibly on the network, started in nonce order, at
 * most BROADCAST_WINDOW at once. They may reach the node out of order. Most nodes keep a transaction whose nonce is
 * ahead until the ones before it arrive; one that refuses it instead (Hardhat when automining, geth with a full pool)
 * answers a nonce gap, which is logged, not alerted: the transfer's confirm step sends it again behind the lower
 * nonces. A node that does not answer gets no new ones from this run (each would wait its timeout while the wallet's
 * queue waits): the confirm steps send the stored bytes of the others.
 */
async function broadcastBatch(deps: StageDeps, signed: readonly SignedInBatch[]): Promise<void> {
  let next = 0;
  let stopped = false;
  const lane = async (): Promise<void> => {
    while (!stopped && next < signed.length) {
      const one = signed[next++] as SignedInBatch;
      try {
        if (!(await broadcastVersion(deps, one.transfer.transfer_id, one.version, one.log))) stopped = true;
      } catch (error) {
        stopped = true;
        throw error;
      }
    }
  };
  const lanes = await Promise.allSettled(Array.from({ length: Math.min(BROADCAST_WINDOW, signed.length) }, lane));
  // Every lane has ended before the job does, so its retry never overlaps a broadcast of this run.
  const failed = lanes.find((one): one is PromiseRejectedResult => one.status === 'rejected');
  if (failed) throw failed.reason;
}

/** A person cancelled it before anything was signed: it fails under its row lock, and its owner's funds are free. */
async function cancelUnsigned(
  deps: StageDeps,
  hooks: TransferHooksByPurpose,
  transfer: Transfer,
  log: Logger,
): Promise<void> {
  const by = transfer.requested_by ?? 'unknown';
  await deps.db.transaction().execute(async (trx) => {
    const current = await lockTransfer(trx, transfer.transfer_id);
    if (current.status === 'intent')
      await failIn(trx, hooks, current, {
        code: 'cancelled',
        message: `cancelled by ${by} before it was signed: nothing left the host wallet`,
      });
  });
  log.warn({ event: 'transfer_cancelled_unsigned', by }, 'transfer cancelled before it was signed');
}

/**
 * A row signed by an earlier version but not marked as possibly sent: marked now, before any broadcast. Its own
 * guarded update, not the signing's: that one moves intent, with the signed transaction's fields, this one signed.
 */
async function release(deps: StageDeps, transfer: Transfer): Promise<Transfer> {
  return deps.db.transaction().execute(async (trx) => {
    const released = await trx
      .updateTable('chain_transfers')
      .set({
        status: 'broadcast',
        broadcast_at: sql`coalesce(broadcast_at, now())`,
        reconcile_attempts: 0,
        updated_at: sql`now()`,
      })
      .where('transfer_id', '=', transfer.transfer_id)
      .where('status', '=', 'signed')
      .returningAll()
      .executeTakeFirst();
    await enqueueConfirm(trx, transfer.transfer_id, { first: transfer.purpose });
    return released ?? loadTransfer(trx, transfer.transfer_id);
  });
}

/**
 * Checks the wallet can pay this transfer, estimates the gas of the real call and takes the wallet's other queued
 * intents that the balances still cover (sign-batch.ts); then one commit signs them all at consecutive nonces. A call
 * the chain says would revert fails this transfer before anything is signed (the funds never leave); null then.
 */
async function signWithQueued(
  deps: StageDeps,
  hooks: TransferHooksByPurpose,
  transfer: Transfer,
  log: Logger,
): Promise<SignedInBatch[] | null> {
  const asset = assetOf(deps, transfer);
  const amount = BigInt(transfer.amount);
  const to = transfer.to_address as Hex;
  // Network reads first, outside the transaction: the nonce row lock below is held only while signing locally.
  const fees = cappedFees(await deps.wallet.fees(), deps.settings.transfer.maxFeePerGasWei);
  const native = await deps.wallet.balance({ kind: 'native' });
  const token = asset.kind === 'erc20' ? await deps.wallet.balance(asset) : null;
  if ((token !== null && token < amount) || (asset.kind === 'native' && native < amount))
    throw await short(deps, log, transfer, token !== null && token < amount ? 'usdt' : 'eth', native);
  const estimate = await deps.wallet.estimateGas({ to, asset, amount });
  if (!estimate.ok && estimate.reason === 'insufficient_funds') throw await short(deps, log, transfer, 'eth', native);
  if (!estimate.ok) {
    await failEstimate(deps, hooks, transfer, log, estimate.message);
    return null;
  }
  const request = { to, asset, amount, gas: gasWithMargin(estimate.gas) };
  const budget: Budget = { native, token };
  if (!spend(budget, costOf(request, fees))) throw await short(deps, log, transfer, 'eth', native);
  const companions = await readyCompanions(deps, await queuedCompanions(deps.db, transfer), budget, fees);
  // Mined transactions only: a pending one of someone else's may be forgotten by the pool, and a nonce taken after it
  // would then never be mined (nor anything after it). Signing at its nonce instead, one of the two is mined; if it is
  // theirs, the confirm step sees the nonce taken and asks a person.
  const chainNonce = await deps.wallet.nonceAt('latest');
  return signAndReleaseBatch(deps, [{ transfer, request }, ...companions], fees, chainNonce, log);
}

/** The chain says the call would revert: the transfer fails unsigned (its funds never left), and a person is told. */
async function failEstimate(
  deps: StageDeps,
  hooks: TransferHooksByPurpose,
  transfer: Transfer,
  log: Logger,
  chainMessage: string,
): Promise<void> {
  const message = `gas estimate failed: the chain says this transfer would fail (${chainMessage})`;
  await deps.db.transaction().execute(async (trx) => {
    const current = await lockTransfer(trx, transfer.transfer_id);
    if (current.status === 'intent') await failIn(trx, hooks, current, { code: 'estimate_failed', message });
  });
  await stageAlert(deps, log, {
    rule: 'transfer_estimate_failed',
    subject: transfer.transfer_id,
    severity: 'critical',
    message: 'a transfer would fail on chain (a receiver that reverts, a token that refuses it): nothing was signed',
    details: {
      transferId: transfer.transfer_id,
      purpose: transfer.purpose,
      ref: transfer.ref,
      to: transfer.to_address,
      asset: transfer.asset,
      amount: transfer.amount,
      message: chainMessage,
    },
  });
}

/** One alert per asset short (ETH also pays the gas of a USDT transfer), whichever transfers run into it. */
async function short(
  deps: StageDeps,
  log: Logger,
  transfer: Transfer,
  asset: 'eth' | 'usdt',
  nativeBalanceWei: bigint,
): Promise<TransferNotReady> {
  await stageAlert(deps, log, {
    rule: 'host_wallet_insufficient',
    subject: asset,
    severity: 'critical',
    message: 'host wallet cannot pay this transfer',
    details: {
      transferId: transfer.transfer_id,
      asset: transfer.asset,
      amount: transfer.amount,
      nativeBalanceWei: nativeBalanceWei.toString(),
    },
  });
  return new TransferNotReady(`host wallet balance too low for transfer ${transfer.transfer_id}`);
}
