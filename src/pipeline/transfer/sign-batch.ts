/**
 * Signing in batches. The host wallet's sends run one at a time (its queue), and each used to pay for its own fee
 * quote, balance reads, nonce read, job and commit: the wallet sent about twenty transfers a second however many
 * waited. A send now also signs the wallet's other queued intents in the same commit, at the nonces that follow,
 * with one fee quote and one balance read for all of them. Each keeps every guarantee of a send of its own: its row
 * is locked and must still be an intent nobody cancelled; it is signed and marked as possibly on the network before
 * anything is broadcast; and its own send job is removed in that commit, its confirm job queued.
 *
 * What the batch may spend is counted as it grows: a transfer joins only while the balances read before it, less
 * what the transfers before it may cost (amount and gas at the quoted max fee), still pay for it. One that does not
 * fit, or whose estimate the chain refuses or does not answer, is left to its own send job, which reports it.
 */
import { sql, type Transaction } from 'kysely';
import type { Hex } from 'viem';
import type { Database, Db } from '../../db/index.ts';
import {
  gasWithMargin,
  type FeeQuote,
  type GasEstimate,
  type SignedTransfer,
  type TransferAsset,
} from '../../integrations/wallet/index.ts';
import { liveJobKeys, removeJobs } from '../../jobs/index.ts';
import type { Logger } from '../../log.ts';
import type { StageDeps } from '../interfaces.ts';
import { assetOf, enqueueConfirm, enqueueConfirms, sendJobKey, TransferNotReady, type Transfer } from './model.ts';

/**
 * The most transfers one send signs. Broadcasts follow the commit, a window at a time (send.ts), so a larger batch
 * delays its last broadcast; 32 keeps that to a few rounds of node calls.
 */
export const SEND_BATCH_MAX = 32;

/** A transfer's call as it will be signed: the gas is the chain's estimate with its margin. */
export interface SignRequest {
  readonly to: Hex;
  readonly asset: TransferAsset;
  readonly amount: bigint;
  readonly gas: bigint;
}

export interface ReadyTransfer {
  readonly transfer: Transfer;
  readonly request: SignRequest;
}

/** What the wallet holds, less what the transfers already in the batch may spend. */
export interface Budget {
  native: bigint;
  /** Null until a token transfer needs it read. */
  token: bigint | null;
}

/** A transfer signed in the batch's commit, with its first version, ready to broadcast. */
export interface SignedInBatch {
  readonly transfer: Transfer;
  readonly version: { readonly raw_tx: string; readonly tx_hash: string; readonly version: number };
  readonly log: Logger;
}

/** What a transfer may cost at most: its amount in its asset, and gas at the quoted max fee in the native coin. */
export function costOf(request: SignRequest, fees: FeeQuote): { native: bigint; token: bigint } {
  const gas = request.gas * fees.maxFeePerGas;
  return request.asset.kind === 'native'
    ? { native: gas + request.amount, token: 0n }
    : { native: gas, token: request.amount };
}

/** Takes the cost out of the budget when it fits; leaves the budget as it was and answers false when not. */
export function spend(budget: Budget, cost: { native: bigint; token: bigint }): boolean {
  if (budget.native < cost.native) return false;
  if (cost.token > 0n && (budget.token === null || budget.token < cost.token)) return false;
  budget.native -= cost.native;
  if (cost.token > 0n && budget.token !== null) budget.token -= cost.token;
  return true;
}

/**
 * The wallet's other intents waiting for their send (oldest first, none a person asked to cancel): those whose send
 * job will still run. An intent whose job ran out of attempts waits for a person's retry, not for a neighbour.
 */
export async function queuedCompanions(db: Db, transfer: Transfer): Promise<Transfer[]> {
  const rows = await db
    .selectFrom('chain_transfers')
    .selectAll()
    .where('status', '=', 'intent')
    .where('from_address', '=', transfer.from_address)
    .where('transfer_id', '<>', transfer.transfer_id)
    .where('requested_action', 'is', null)
    .orderBy('created_at')
    .orderBy('transfer_id')
    .limit(SEND_BATCH_MAX - 1)
    .execute();
  const live = await liveJobKeys(
    db,
    rows.map((r) => sendJobKey(r.transfer_id)),
  );
  return rows.filter((r) => live.has(sendJobKey(r.transfer_id)));
}

/**
 * The companions that fit, in order, each with its estimate: estimated together; one the chain refuses, or does not
 * answer for, stays out. The budget is what remains after the job's own transfer.
 */
export async function readyCompanions(
  deps: StageDeps,
  companions: readonly Transfer[],
  budget: Budget,
  fees: FeeQuote,
): Promise<ReadyTransfer[]> {
  if (budget.token === null && companions.some((t) => t.asset !== 'eth')) budget.token = await tokenBalance(deps);
  // A companion whose asset cannot be priced now (no token balance read, no USDT contract) waits for its own send.
  const entries = companions
    .filter((t) => t.asset === 'eth' || budget.token !== null)
    .map((transfer) => ({
      transfer,
      call: { to: transfer.to_address as Hex, asset: assetOf(deps, transfer), amount: BigInt(transfer.amount) },
    }));
  if (entries.length === 0) return [];
  const estimates = await Promise.allSettled(entries.map(({ call }) => deps.wallet.estimateGas(call)));
  const ready: ReadyTransfer[] = [];
  for (const [i, { transfer, call }] of entries.entries()) {
    const gas = estimateOf(estimates[i]);
    if (gas === null) continue;
    const request = { ...call, gas: gasWithMargin(gas) };
    if (spend(budget, costOf(request, fees))) ready.push({ transfer, request });
  }
  return ready;
}

/** The host wallet's USDT, or null when it cannot be read now: the companions' own reads fail loudly, not this one. */
async function tokenBalance(deps: StageDeps): Promise<bigint | null> {
  if (!deps.usdtContract) return null;
  try {
    return await deps.wallet.balance(assetOf(deps, { asset: 'usdt' }));
  } catch {
    return null;
  }
}

function estimateOf(settled: PromiseSettledResult<GasEstimate> | undefined): bigint | null {
  if (settled?.status !== 'fulfilled' || !settled.value.ok) return null;
  return settled.value.gas;
}

/**
 * One commit: the wallet's nonce row locked first, then the batch's rows (in id order). The job's own transfer must
 * still be an intent nobody cancelled, or nothing is signed (its retry reads what it became); a companion that moved
 * or was cancelled meanwhile is left out. Each is signed at the next nonce and released as possibly on the network,
 * its confirm job queued and its own send job removed.
 */
export async function signAndReleaseBatch(
  deps: StageDeps,
  batch: readonly ReadyTransfer[],
  fees: FeeQuote,
  chainNonce: number,
  log: Logger,
): Promise<SignedInBatch[]> {
  const own = (batch[0] as ReadyTransfer).transfer;
  return deps.db.transaction().execute(async (trx) => {
    const address = own.from_address.toLowerCase();
    const next = await lockNextNonce(trx, address);
    const current = await lockRows(
      trx,
      batch.map((b) => b.transfer.transfer_id),
    );
    const ownNow = current.get(own.transfer_id);
    // Signed meanwhile by another run's batch (a job delivered twice, or taken over from a stalled worker): that run
    // broadcasts it; this one only makes sure its confirm job exists, and ends without an error its job cannot retry.
    if (ownNow?.status === 'broadcast') {
      await enqueueConfirm(trx, own.transfer_id, { first: own.purpose });
      return [];
    }
    if (ownNow?.status !== 'intent')
      throw new TransferNotReady(`transfer ${own.transfer_id} moved to ${ownNow?.status} meanwhile`);
    if (ownNow.requested_action === 'cancel')
      throw new TransferNotReady(`transfer ${own.transfer_id} was cancelled before it was signed`);
    // The chain may know of transactions we did not send (an operator's manual transfer): never reuse their nonces.
    const first = Math.max(next, chainNonce);
    const eligible = batch.filter(({ transfer }) => {
      const row = current.get(transfer.transfer_id);
      return row?.status === 'intent' && row.requested_action === null;
    });
    if (eligible[0]?.transfer.transfer_id !== own.transfer_id)
      throw new TransferNotReady(`transfer ${own.transfer_id} has a request pending; nothing was signed`);
    const signed: SignedAt[] = [];
    for (const [i, ready] of eligible.entries()) {
      const nonce = first + i;
      signed.push({ ...ready, nonce, signed: await deps.wallet.sign({ ...ready.request, nonce }, fees) });
    }
    const released = await releaseSigned(trx, signed, fees);
    await trx
      .updateTable('wallet_nonces')
      .set({ next_nonce: String(first + signed.length), updated_at: sql`now()` })
      .where('address', '=', address)
      .execute();
    await removeJobs(
      trx,
      signed.filter((s) => s.transfer.transfer_id !== own.transfer_id).map((s) => sendJobKey(s.transfer.transfer_id)),
    );
    return signed.map((one) => {
      const itsLog =
        one.transfer.transfer_id === own.transfer_id
          ? log
          : deps.logger.child({
              transferId: one.transfer.transfer_id,
              purpose: one.transfer.purpose,
              ref: one.transfer.ref,
            });
      itsLog.info(
        {
          event: 'transfer_signed',
          txHash: one.signed.hash,
          nonce: one.nonce,
          gas: one.request.gas.toString(),
          maxFeePerGas: fees.maxFeePerGas.toString(),
        },
        'transfer signed and released',
      );
      return {
        transfer: released.get(one.transfer.transfer_id) as Transfer,
        version: { raw_tx: one.signed.rawTx, tx_hash: one.signed.hash, version: 1 },
        log: itsLog,
      };
    });
  });
}

async function lockRows(
  trx: Transaction<Database>,
  ids: readonly string[],
): Promise<Map<string, Pick<Transfer, 'status' | 'requested_action'>>> {
  const rows = await trx
    .selectFrom('chain_transfers')
    .select(['transfer_id', 'status', 'requested_action'])
    .where('transfer_id', 'in', [...ids])
    .orderBy('transfer_id')
    .forUpdate()
    .execute();
  return new Map(rows.map((r) => [r.transfer_id, r]));
}

/** A transfer of the batch, signed at its nonce. */
interface SignedAt extends ReadyTransfer {
  readonly nonce: number;
  readonly signed: SignedTransfer;
}

/**
 * The batch's first versions stored and its transfers released as possibly on the network, each with its confirm job,
 * in three statements whatever the batch's size: the wallet's nonce row stays locked for as short a time as it can.
 * Each row must still be the intent read under its lock; the returned rows are the released transfers.
 */
async function releaseSigned(
  trx: Transaction<Database>,
  signed: readonly SignedAt[],
  fees: FeeQuote,
): Promise<Map<string, Transfer>> {
  await trx
    .insertInto('chain_transfer_versions')
    .values(
      signed.map((one) => ({
        transfer_id: one.transfer.transfer_id,
        version: 1,
        kind: 'transfer' as const,
        tx_hash: one.signed.hash,
        raw_tx: one.signed.rawTx,
        gas_limit: one.request.gas,
        max_fee_per_gas: fees.maxFeePerGas,
        max_priority_fee_per_gas: fees.maxPriorityFeePerGas,
      })),
    )
    .execute();
  const { rows } = await sql<Transfer>`
    update chain_transfers t
    set status = 'broadcast', nonce = s.nonce, tx_hash = s.tx_hash, raw_tx = s.raw_tx, gas_limit = s.gas_limit,
        broadcast_at = now(), attempts = t.attempts + 1, reconcile_attempts = 0, updated_at = now()
    from unnest(${signed.map((one) => one.transfer.transfer_id)}::text[],
                ${signed.map((one) => String(one.nonce))}::numeric[],
                ${signed.map((one) => one.signed.hash)}::text[],
                ${signed.map((one) => one.signed.rawTx)}::text[],
                ${signed.map((one) => one.request.gas.toString())}::numeric[]) as s(transfer_id, nonce, tx_hash, raw_tx, gas_limit)
    where t.transfer_id = s.transfer_id and t.status = 'intent'
    returning t.*`.execute(trx);
  // Every row was read as an intent under its lock in this transaction: anything else is a bug, and nothing commits.
  if (rows.length !== signed.length)
    throw new Error(`released ${rows.length} of the ${signed.length} transfers signed in one batch`);
  for (const purpose of ['conversion', 'payout'] as const)
    await enqueueConfirms(
      trx,
      rows.filter((r) => r.purpose === purpose).map((r) => r.transfer_id),
      purpose,
    );
  return new Map(rows.map((r) => [r.transfer_id, r]));
}

/** The host wallet's next nonce by payrail's count, its row created on first use and locked until the commit. */
async function lockNextNonce(trx: Transaction<Database>, address: string): Promise<number> {
  await trx
    .insertInto('wallet_nonces')
    .values({ address, next_nonce: '0' })
    .onConflict((oc) => oc.column('address').doNothing())
    .execute();
  const row = await trx
    .selectFrom('wallet_nonces')
    .select('next_nonce')
    .where('address', '=', address)
    .forUpdate()
    .executeTakeFirstOrThrow();
  return Number(row.next_nonce);
}
