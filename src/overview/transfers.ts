/**
 * Host-wallet transfers by open state and the ones in review. There is one transfer per conversion and per payout
 * (≈ 318,000 for 1,000,000 payments), so nothing here reads them all: the counts come from the chain_transfers_open
 * partial index, the review list from chain_transfers_review (both migrations 011 and 014).
 */
import { sql } from 'kysely';
import { TRANSFER_STATES, type Db, type TransferRequestedAction } from '../db/index.ts';
import { formatAsset, WAITING, waited } from './amounts.ts';
import { countByState } from './counts.ts';
import type { OpenTransferStatus, PipelineCounts, ReviewTransfer } from './types.ts';

const OPEN_STATES = TRANSFER_STATES.filter((s): s is OpenTransferStatus => s !== 'confirmed' && s !== 'failed');
/** Transfers in review listed; a handful at most, the pipeline's needs_review count says if there are more. */
const REVIEW_SHOWN = 100;

export async function transferCounts(db: Db): Promise<PipelineCounts['transfers']> {
  // The same predicate as the chain_transfers_open index, so the planner can prove the index covers it.
  const { rows } = await sql<{ status: OpenTransferStatus; n: number }>`
    select status, count(*)::int as n from chain_transfers where status not in ('confirmed', 'failed') group by status`.execute(
    db,
  );
  return countByState(OPEN_STATES, rows);
}

// Alike in form to the other overview reads' rows (payouts.ts), not in content: each is its own query's columns.
type Row = {
  transfer_id: string;
  purpose: 'conversion' | 'payout';
  ref: string;
  asset: string;
  amount: string;
  nonce: string | null;
  tx_hash: string | null;
  block_number: string | null;
  reason: string | null;
  last_error: string | null;
  requested_action: TransferRequestedAction | null;
  requested_by: string | null;
  requested_at: Date | null;
  updated_at: Date;
  waiting: string;
};

/** Transfers a person must act on, the longest waiting first. */
// Spelt out like payments' and conversions' review reads, not generated: each query states the partial index it uses.
export async function reviewTransfers(db: Db): Promise<ReviewTransfer[]> {
  const { rows } = await sql<Row>`
    select transfer_id, purpose, ref, asset, amount::text as amount, nonce::text as nonce, tx_hash, block_number::text as block_number,
           reason, last_error, requested_action, requested_by, requested_at, updated_at, ${WAITING}
    from chain_transfers where status = 'needs_review'
    order by updated_at, transfer_id limit ${REVIEW_SHOWN}`.execute(db);
  return rows.map((r) => ({
    transferId: r.transfer_id,
    purpose: r.purpose,
    ref: r.ref,
    asset: r.asset,
    amount: formatAsset(BigInt(r.amount), r.asset),
    nonce: r.nonce,
    txHash: r.tx_hash,
    blockNumber: r.block_number,
    reason: r.reason,
    lastError: r.last_error,
    requested:
      r.requested_action === null
        ? null
        : { action: r.requested_action, by: r.requested_by, at: r.requested_at?.toISOString() ?? null },
    ...waited(r),
  }));
}
