/** The read side of transfers: every signed version with its fees, and what the chain showed. */
import type { Db, TransferStatus } from '../../db/index.ts';
import type { Transfer, TransferVersion } from './model.ts';

export interface TransferVersionView {
  readonly version: number;
  readonly kind: 'transfer' | 'cancel';
  readonly txHash: string;
  readonly gasLimit: string | null;
  readonly maxFeePerGasWei: string | null;
  readonly maxPriorityFeePerGasWei: string | null;
  readonly signedAt: string;
}

export interface TransferView {
  readonly transferId: string;
  readonly purpose: 'conversion' | 'payout';
  readonly ref: string;
  readonly status: TransferStatus;
  readonly asset: string;
  /** Smallest units (wei, or USDT's 6-decimal units), as a decimal string. */
  readonly amount: string;
  readonly from: string;
  readonly to: string;
  readonly nonce: string | null;
  /** The mined version's hash once one is mined; before, the latest version's. */
  readonly txHash: string | null;
  readonly blockNumber: string | null;
  readonly blockHash: string | null;
  readonly gasCostWei: string | null;
  readonly gasLimit: string | null;
  readonly reason: string | null;
  readonly lastError: string | null;
  readonly requested: { action: string; by: string | null; at: string | null; txHash: string | null } | null;
  readonly broadcastAt: string | null;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly versions?: readonly TransferVersionView[];
}

export async function listTransfers(
  db: Db,
  filter: { status?: TransferStatus; limit: number },
): Promise<TransferView[]> {
  let query = db.selectFrom('chain_transfers').selectAll().orderBy('created_at', 'desc').limit(filter.limit);
  if (filter.status !== undefined) query = query.where('status', '=', filter.status);
  return (await query.execute()).map((row) => toView(row));
}

export async function getTransfer(db: Db, transferId: string): Promise<TransferView | null> {
  const row = await db
    .selectFrom('chain_transfers')
    .selectAll()
    .where('transfer_id', '=', transferId)
    .executeTakeFirst();
  if (!row) return null;
  const versions = await db
    .selectFrom('chain_transfer_versions')
    .selectAll()
    .where('transfer_id', '=', transferId)
    .orderBy('version')
    .execute();
  return toView(row, versions);
}

function toView(row: Transfer, versions?: TransferVersion[]): TransferView {
  return {
    transferId: row.transfer_id,
    purpose: row.purpose,
    ref: row.ref,
    status: row.status,
    asset: row.asset,
    amount: row.amount,
    from: row.from_address,
    to: row.to_address,
    nonce: row.nonce,
    txHash: row.tx_hash,
    blockNumber: row.block_number,
    blockHash: row.block_hash,
    gasCostWei: row.gas_cost_wei,
    gasLimit: row.gas_limit,
    reason: row.reason,
    lastError: row.last_error,
    requested:
      row.requested_action === null
        ? null
        : {
            action: row.requested_action,
            by: row.requested_by,
            at: row.requested_at?.toISOString() ?? null,
            txHash: row.requested_hash,
          },
    broadcastAt: row.broadcast_at?.toISOString() ?? null,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    ...(versions && {
      versions: versions.map((v) => ({
        version: v.version,
        kind: v.kind,
        txHash: v.tx_hash,
        gasLimit: v.gas_limit,
        maxFeePerGasWei: v.max_fee_per_gas,
        maxPriorityFeePerGasWei: v.max_priority_fee_per_gas,
        signedAt: v.created_at.toISOString(),
      })),
    }),
  };
}
