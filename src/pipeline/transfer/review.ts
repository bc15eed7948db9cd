/**
 * A person's actions on a transfer. The web process only checks the state and records the request (audited, under
 * the transfer's row lock, with the job that carries it out); the worker, which holds the key and reads the chain,
 * carries it out (requests.ts) and refuses it there too when the chain disagrees.
 *
 * - bump: a replacement with higher fees now; while broadcast and not seen mined.
 * - cancel: a zero-value transfer to the host wallet at the same nonce; broadcast or in review, not seen mined. The
 *   transfer fails only once the chain mines the cancel and none of its other versions.
 * - resolve: with `txHash`, the transaction that paid (checked on chain); with `neverSent`, the chain must show the
 *   nonce used by another transaction and none of ours mined (refused here for a transfer with no nonce on record).
 * - retry: out of review, back to watching the chain (a nonce that only seemed taken, a lagging node).
 */
import { sql, type Transaction } from 'kysely';
import { recordAudit } from '../../db/index.ts';
import type { Database, Db, TransferRequestedAction, TransferStatus } from '../../db/index.ts';
import { enqueueConfirm, enqueueSend, transferForUpdate, type Transfer } from './model.ts';

export type TransferAction = 'bump' | 'cancel' | 'resolve' | 'retry';
export type TransferResolution =
  { outcome: 'mined'; txHash: string; note?: string } | { outcome: 'never_sent'; note?: string };

export class TransferActionRefused extends Error {
  override name = 'TransferActionRefused';
}

export interface TransferActionResult {
  readonly transferId: string;
  readonly from: TransferStatus;
  readonly to: TransferStatus;
  /** What the worker will carry out, when the action is its to do. */
  readonly requested: TransferRequestedAction | null;
}

const WATCHED: readonly TransferStatus[] = ['broadcast', 'needs_review'];
/** A request not carried out after this long (its job failing on an unreachable chain) may be replaced. */
const STALE_REQUEST_MS = 10 * 60_000;
const CLEARED = { requested_action: null, requested_hash: null, requested_by: null, requested_at: null } as const;

export async function applyTransferAction(
  db: Db,
  transferId: string,
  action: TransferAction,
  actor: string,
  resolution?: TransferResolution,
): Promise<TransferActionResult | null> {
  return db.transaction().execute(async (trx) => {
    const transfer = await transferForUpdate(trx, transferId).executeTakeFirst();
    if (!transfer) return null;
    const status = transfer.status;
    // A request the worker could not carry out for long (the chain unreachable for days) must not lock every other.
    const stale = transfer.requested_at !== null && Date.now() - transfer.requested_at.getTime() > STALE_REQUEST_MS;
    if (transfer.requested_action !== null && !stale) {
      throw new TransferActionRefused(
        `a ${transfer.requested_action} requested by ${transfer.requested_by} is still being carried out`,
      );
    }
    const replacing =
      transfer.requested_action === null
        ? undefined
        : { action: transfer.requested_action, by: transfer.requested_by, at: transfer.requested_at };
    let requested: TransferRequestedAction | null = null;
    let to: TransferStatus = status;
    if (action === 'retry') {
      to = await retry(trx, transfer);
    } else if (action === 'cancel' && status === 'intent') {
      // Nothing signed yet (it waits for the host wallet's funds, say): the send step ends it under its row lock,
      // unless it signed meanwhile, in which case the confirm step carries the cancel out at the nonce.
      requested = 'cancel';
      await recordRequest(trx, transferId, requested, null, actor);
      await enqueueSend(trx, transferId, transfer.from_address);
    } else {
      requested = watchedRequest(transfer, action, resolution);
      const hash = resolution?.outcome === 'mined' ? resolution.txHash.toLowerCase() : null;
      await recordRequest(trx, transferId, requested, hash, actor);
    }
    // A retry back to intent (a row without a nonce) is signed afresh by its send job: queued here, as a confirm is.
    if (action === 'retry' && to === 'intent') await enqueueSend(trx, transferId, transfer.from_address);
    else if (to !== 'intent' && !(action === 'cancel' && status === 'intent')) await enqueueConfirm(trx, transferId);
    await recordAudit(trx, {
      actor,
      action: `transfer.${action}`,
      subject: transferId,
      details: {
        from: status,
        to,
        reason: transfer.reason,
        ...(requested && { requested }),
        ...(resolution && { resolution }),
        ...(replacing && { replacing }),
      },
    });
    return { transferId, from: status, to, requested };
  });
}

/** Out of review, back to watching the chain; the state it goes to. */
async function retry(trx: Transaction<Database>, transfer: Transfer): Promise<TransferStatus> {
  if (transfer.status !== 'needs_review')
    throw new TransferActionRefused(`a transfer in state ${transfer.status} is not in review`);
  // Without a nonce (released by an earlier version of payrail), it is signed afresh: the person checked that the
  // bytes signed then were never mined.
  const to = transfer.nonce === null ? 'intent' : 'broadcast';
  await trx
    .updateTable('chain_transfers')
    .set({
      status: to,
      reason: null,
      nonce_taken_seen_at: null,
      reconcile_attempts: 0,
      ...CLEARED,
      updated_at: sql`now()`,
    })
    .where('transfer_id', '=', transfer.transfer_id)
    .where('status', '=', 'needs_review')
    .execute();
  if (to === 'intent') await enqueueSend(trx, transfer.transfer_id, transfer.from_address);
  return to;
}

/** A bump, cancel or resolve of a signed transfer the worker is to carry out, refused where it cannot be. */
function watchedRequest(
  transfer: Transfer,
  action: Exclude<TransferAction, 'retry'>,
  resolution: TransferResolution | undefined,
): TransferRequestedAction {
  const status = transfer.status;
  if ((action === 'bump' || action === 'cancel') && transfer.nonce === null)
    throw new TransferActionRefused(
      'it has no nonce on record: resolve it with the hash that paid, or retry to sign it again',
    );
  if (!WATCHED.includes(status))
    throw new TransferActionRefused(
      `a transfer in state ${status} cannot be ${action === 'bump' ? 'bumped' : action === 'cancel' ? 'cancelled' : 'resolved'}`,
    );
  if (action === 'bump' && status !== 'broadcast')
    throw new TransferActionRefused(
      'a transfer in review is not bumped: cancel or resolve it, or retry to watch it again',
    );
  if ((action === 'bump' || action === 'cancel') && transfer.block_number !== null) {
    throw new TransferActionRefused(`it is mined in block ${transfer.block_number} and waits for its confirmations`);
  }
  if (action === 'resolve' && !resolution)
    throw new TransferActionRefused(
      'a resolution is required: {"outcome":"mined","txHash":"0x..."} or {"outcome":"never_sent"}',
    );
  // The worker could only refuse it: never_sent rests on the chain showing this transfer's nonce used by another
  // transaction, and without a nonce there is nothing to look up.
  if (action === 'resolve' && resolution?.outcome === 'never_sent' && transfer.nonce === null) {
    throw new TransferActionRefused(
      'it has no nonce on record, so the chain cannot show it unused: look for its payment, then resolve with the hash (outcome mined), or retry to sign it again',
    );
  }
  if (action !== 'resolve') return action;
  return resolution?.outcome === 'mined' ? 'resolve_mined' : 'resolve_never_sent';
}

/** The request the worker carries out, kept on the transfer with who asked and when. */
async function recordRequest(
  trx: Transaction<Database>,
  transferId: string,
  requested: TransferRequestedAction,
  hash: string | null,
  actor: string,
): Promise<void> {
  await trx
    .updateTable('chain_transfers')
    .set({
      requested_action: requested,
      requested_hash: hash,
      requested_by: actor,
      // Milliseconds, as a JS Date holds it: the worker clears the request it read, and not a newer one, by this value.
      requested_at: sql`date_trunc('milliseconds', now())`,
      updated_at: sql`now()`,
    })
    .where('transfer_id', '=', transferId)
    .execute();
}
