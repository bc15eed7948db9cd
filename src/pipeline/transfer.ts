/**
 * On-chain transfers from the host wallet, exactly once: intent → signed → broadcast → confirmed | failed.
 *
 * The intent row is written in the same transaction as the state change that calls for it (unique per purpose and
 * ref). Signing stores the raw transaction and its hash before anything is broadcast, so a retry after any crash asks
 * the chain about that hash and re-sends the same bytes at most (which the chain cannot execute twice). Sends of one
 * wallet run in one job queue, so nonces are assigned one at a time; a nonce whose transaction the node refused is
 * released, leaving no gap.
 *
 * Every change of state starts the reconciler's count of resumes (reconcile_attempts) afresh: it counts how often the
 * stage died in one state, so a transfer that keeps moving is never taken for one that is stuck.
 */
import { randomBytes } from 'node:crypto';
import { sql, type Selectable, type Transaction } from 'kysely';
import type { Hex } from 'viem';
import type { ChainTransfersTable, Database } from '../db/index.ts';
import type { TransferAsset } from '../integrations/wallet/index.ts';
import { enqueue } from '../jobs/index.ts';
import { accounts, postJournal } from '../ledger/index.ts';
import type { StageDeps } from './interfaces.ts';
import { stageAlert } from './alert.ts';

export type Transfer = Selectable<ChainTransfersTable>;

export interface TransferHooks {
  /** In the transaction that marks the transfer confirmed. */
  onConfirmed(trx: Transaction<Database>, transfer: Transfer): Promise<void>;
  /** In the transaction that marks it failed: the funds never left (refused) or the call reverted. */
  onFailed(trx: Transaction<Database>, transfer: Transfer, reason: string): Promise<void>;
}

export type TransferHooksByPurpose = Record<Transfer['purpose'], TransferHooks>;

export class TransferNotReady extends Error {
  override name = 'TransferNotReady';
}

const CONFIRM_WAIT_MS = 15_000;
const CONFIRM_RECHECK_MS = 5_000;
const SEND_MAX_ATTEMPTS = 25;

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
  const inserted = await trx
    .insertInto('chain_transfers')
    .values({
      transfer_id: `tr_${randomBytes(8).toString('hex')}`,
      purpose: intent.purpose,
      ref: intent.ref,
      asset: intent.asset,
      from_address: intent.from,
      to_address: intent.to,
      amount: intent.amount,
      status: 'intent',
      nonce: null,
      tx_hash: null,
      raw_tx: null,
      block_number: null,
      gas_cost_wei: null,
      last_error: null,
    })
    .onConflict((oc) => oc.columns(['purpose', 'ref']).doNothing())
    .returning('transfer_id')
    .executeTakeFirst();
  if (!inserted) {
    const existing = await trx.selectFrom('chain_transfers').select('transfer_id').where('purpose', '=', intent.purpose).where('ref', '=', intent.ref).executeTakeFirstOrThrow();
    return existing.transfer_id;
  }
  await enqueueSend(trx, inserted.transfer_id, intent.from);
  return inserted.transfer_id;
}

function enqueueSend(trx: Transaction<Database>, transferId: string, from: string) {
  return enqueue(trx, 'transfer_send', { transferId }, { queueName: `wallet:${from.toLowerCase()}`, jobKey: `transfer_send:${transferId}`, jobKeyMode: 'replace', maxAttempts: SEND_MAX_ATTEMPTS });
}

function enqueueConfirm(trx: Transaction<Database>, transferId: string, runAt?: Date) {
  return enqueue(trx, 'transfer_confirm', { transferId }, { jobKey: `transfer_confirm:${transferId}`, jobKeyMode: 'replace', maxAttempts: SEND_MAX_ATTEMPTS, ...(runAt && { runAt }) });
}

function assetOf(deps: StageDeps, transfer: Transfer): TransferAsset {
  if (transfer.asset === 'eth') return { kind: 'native' };
  if (!deps.usdtContract) throw new Error('USDT transfers need a USDT contract address');
  return { kind: 'erc20', contract: deps.usdtContract };
}

async function load(deps: StageDeps, transferId: string): Promise<Transfer> {
  return deps.db.selectFrom('chain_transfers').selectAll().where('transfer_id', '=', transferId).executeTakeFirstOrThrow();
}

/** Queues the job that moves a transfer on from its state (a person's retry after its job gave up). */
export async function resumeTransfer(trx: Transaction<Database>, transfer: Pick<Transfer, 'transfer_id' | 'status' | 'from_address'>): Promise<void> {
  if (transfer.status === 'intent' || transfer.status === 'signed') await enqueueSend(trx, transfer.transfer_id, transfer.from_address);
  else if (transfer.status === 'broadcast') await enqueueConfirm(trx, transfer.transfer_id);
}

/** transfer_send: sign (once) and broadcast (as often as needed, always the same bytes). */
export async function sendTransfer(deps: StageDeps, transferId: string): Promise<void> {
  let transfer = await load(deps, transferId);
  const log = deps.logger.child({ transferId, purpose: transfer.purpose, ref: transfer.ref });
  if (transfer.status === 'confirmed' || transfer.status === 'failed') return;
  if (transfer.status === 'broadcast') {
    await deps.db.transaction().execute((trx) => enqueueConfirm(trx, transferId));
    return;
  }
  if (transfer.status === 'intent') transfer = await sign(deps, transfer, log);

  const hash = transfer.tx_hash as Hex;
  const seen = await deps.wallet.lookup(hash);
  if (seen.state === 'unknown') {
    const result = await deps.wallet.broadcast(transfer.raw_tx as Hex);
    deps.crashPoint?.(transfer.purpose === 'payout' ? 'payout_after_broadcast' : 'after_broadcast');
    if (!result.ok && result.reason === 'insufficient_funds' && transfer.broadcast_at !== null) {
      // It was on the network before (then dropped): it may still be mined from another node's pool, so it keeps
      // its nonce and bytes; re-signing it with another nonce could pay twice.
      await stageAlert(deps, log, { rule: 'host_wallet_insufficient', subject: 'eth', severity: 'critical', message: 'the node refused a rebroadcast for lack of funds; kept signed', details: { transferId, asset: transfer.asset, txHash: hash, message: result.message } });
      throw new TransferNotReady(`host wallet cannot pay rebroadcast transfer ${transferId} yet; kept signed`);
    }
    if (!result.ok && result.reason === 'insufficient_funds') {
      // The node has not taken it: release the nonce and wait for funds.
      await releaseForFunds(deps, transfer, result.message);
      await stageAlert(deps, log, { rule: 'host_wallet_insufficient', subject: 'eth', severity: 'critical', message: 'the node refused a host wallet transfer for lack of funds', details: { transferId, asset: transfer.asset, txHash: hash, message: result.message } });
      throw new TransferNotReady(`host wallet cannot pay transfer ${transferId} yet`);
    }
    if (!result.ok && (await deps.wallet.lookup(hash)).state === 'unknown') {
      // "Nonce too low" or an unexplained refusal, and our hash is not (yet) visible: a lagging node may simply not
      // show a transaction that is already mined. Never conclude it failed from that: keep it signed, retry later,
      // and let a person look if it persists.
      await stageAlert(deps, log, { rule: 'transfer_refused', subject: transferId, severity: 'critical', message: 'the node refused a host wallet transfer', details: { transferId, reason: result.reason, txHash: hash, message: result.message } });
      throw new TransferNotReady(`transfer ${transferId} refused (${result.reason}); kept signed`);
    }
  }
  await deps.db.transaction().execute(async (trx) => {
    await trx.updateTable('chain_transfers').set({ status: 'broadcast', broadcast_at: sql`coalesce(broadcast_at, now())`, reconcile_attempts: 0, updated_at: sql`now()` }).where('transfer_id', '=', transferId).where('status', '=', 'signed').execute();
    await enqueueConfirm(trx, transferId);
  });
  log.info({ event: 'transfer_broadcast', txHash: hash, nonce: transfer.nonce }, 'transfer broadcast');
}

async function sign(deps: StageDeps, transfer: Transfer, log: StageDeps['logger']): Promise<Transfer> {
  const asset = assetOf(deps, transfer);
  const amount = BigInt(transfer.amount);
  // Network reads first, outside the transaction: the nonce row lock below is held only while signing locally.
  const fees = await deps.wallet.fees();
  const chainNonce = await deps.wallet.pendingNonce();
  const native = await deps.wallet.balance({ kind: 'native' });
  const needNative = deps.wallet.maxFeeWei(asset, fees) + (asset.kind === 'native' ? amount : 0n);
  const tokenShort = asset.kind === 'erc20' && (await deps.wallet.balance(asset)) < amount;
  // A transfer that cannot succeed is an alert, not a send.
  if (native < needNative || tokenShort) {
    // One alert per asset short (ETH also pays the gas of a USDT transfer), whichever transfers run into it.
    await stageAlert(deps, log, { rule: 'host_wallet_insufficient', subject: native < needNative ? 'eth' : 'usdt', severity: 'critical', message: 'host wallet cannot pay this transfer', details: { transferId: transfer.transfer_id, asset: transfer.asset, amount: transfer.amount, nativeBalanceWei: native.toString() } });
    throw new TransferNotReady(`host wallet balance too low for transfer ${transfer.transfer_id}`);
  }
  return deps.db.transaction().execute(async (trx) => {
    const address = transfer.from_address.toLowerCase();
    await trx.insertInto('wallet_nonces').values({ address, next_nonce: '0' }).onConflict((oc) => oc.column('address').doNothing()).execute();
    const row = await trx.selectFrom('wallet_nonces').select('next_nonce').where('address', '=', address).forUpdate().executeTakeFirstOrThrow();
    // One signed-but-not-broadcast transfer per wallet at a time: a later nonce never overtakes an earlier one that
    // might still be refused and released, so a released nonce is always the latest (no gap).
    const waiting = await trx.selectFrom('chain_transfers').select('transfer_id').where('from_address', '=', transfer.from_address).where('status', '=', 'signed').where('transfer_id', '<>', transfer.transfer_id).executeTakeFirst();
    if (waiting) throw new TransferNotReady(`transfer ${waiting.transfer_id} of this wallet is signed but not broadcast yet`);
    // The chain may know of transactions we did not send (an operator's manual transfer): never reuse their nonces.
    const nonce = Math.max(Number(row.next_nonce), chainNonce);
    const signed = await deps.wallet.sign({ to: transfer.to_address as Hex, asset, amount, nonce }, fees);
    await trx.updateTable('wallet_nonces').set({ next_nonce: String(nonce + 1), updated_at: sql`now()` }).where('address', '=', address).execute();
    return trx
      .updateTable('chain_transfers')
      .set({ status: 'signed', nonce: String(nonce), tx_hash: signed.hash, raw_tx: signed.rawTx, attempts: sql`attempts + 1`, reconcile_attempts: 0, updated_at: sql`now()` })
      .where('transfer_id', '=', transfer.transfer_id)
      .where('status', '=', 'intent')
      .returningAll()
      .executeTakeFirstOrThrow();
  });
}

/** The node refused the transaction for lack of funds: release its nonce and go back to intent (re-signed later). */
async function releaseForFunds(deps: StageDeps, transfer: Transfer, message: string): Promise<void> {
  await deps.db.transaction().execute(async (trx) => {
    const address = transfer.from_address.toLowerCase();
    const row = await trx.selectFrom('wallet_nonces').select('next_nonce').where('address', '=', address).forUpdate().executeTakeFirstOrThrow();
    // Only one transfer per wallet is ever signed and not yet broadcast (see sign), so this is the latest nonce.
    if (BigInt(row.next_nonce) === BigInt(transfer.nonce as string) + 1n) {
      await trx.updateTable('wallet_nonces').set({ next_nonce: transfer.nonce as string, updated_at: sql`now()` }).where('address', '=', address).execute();
    }
    await trx
      .updateTable('chain_transfers')
      .set({ status: 'intent', nonce: null, tx_hash: null, raw_tx: null, last_error: message, reconcile_attempts: 0, updated_at: sql`now()` })
      .where('transfer_id', '=', transfer.transfer_id)
      .where('status', '=', 'signed')
      .execute();
  });
}

/** transfer_confirm: wait a little for the receipt; record the outcome with its follow-up, or look again later. */
export async function confirmTransfer(deps: StageDeps, hooks: TransferHooksByPurpose, transferId: string): Promise<void> {
  const transfer = await load(deps, transferId);
  if (transfer.status !== 'broadcast') return;
  const log = deps.logger.child({ transferId, purpose: transfer.purpose, ref: transfer.ref, txHash: transfer.tx_hash });
  const found = await deps.wallet.waitMined(transfer.tx_hash as Hex, CONFIRM_WAIT_MS);
  await deps.db.transaction().execute(async (trx) => {
    const current = await trx.selectFrom('chain_transfers').selectAll().where('transfer_id', '=', transferId).forUpdate().executeTakeFirstOrThrow();
    if (current.status !== 'broadcast') return;
    if (found.state === 'mined') {
      const done = await trx
        .updateTable('chain_transfers')
        .set({ status: found.success ? 'confirmed' : 'failed', block_number: found.blockNumber.toString(), gas_cost_wei: found.gasCostWei, last_error: found.success ? null : 'reverted', updated_at: sql`now()` })
        .where('transfer_id', '=', transferId)
        .returningAll()
        .executeTakeFirstOrThrow();
      if (found.gasCostWei > 0n) {
        await postJournal(trx, { kind: 'network_fee', ref: transferId, entries: [
          { account: accounts.networkCosts('eth'), amount: -found.gasCostWei },
          { account: accounts.ethereum('eth'), amount: found.gasCostWei },
        ] });
      }
      if (found.success) await hooks[current.purpose].onConfirmed(trx, done);
      else await hooks[current.purpose].onFailed(trx, done, 'reverted');
      log.info({ event: found.success ? 'transfer_confirmed' : 'transfer_reverted', blockNumber: found.blockNumber.toString() }, 'transfer mined');
      return;
    }
    if (found.state === 'unknown') {
      // Dropped from the mempool (or the node restarted): send the same signed bytes again.
      await trx.updateTable('chain_transfers').set({ status: 'signed', reconcile_attempts: 0, updated_at: sql`now()` }).where('transfer_id', '=', transferId).execute();
      await enqueueSend(trx, transferId, current.from_address);
      log.warn({ event: 'transfer_rebroadcast' }, 'transaction unknown to the node: broadcasting it again');
      return;
    }
    const ageMs = Date.now() - current.updated_at.getTime();
    if (ageMs > deps.settings.transferConfirmDeadlineMs) {
      await stageAlert(deps, log, { rule: 'transfer_unconfirmed', subject: transferId, severity: 'critical', message: 'transfer still pending past its deadline', details: { transferId, txHash: current.tx_hash, ageMs } }, trx);
    }
    await enqueueConfirm(trx, transferId, new Date(Date.now() + CONFIRM_RECHECK_MS));
  });
}
