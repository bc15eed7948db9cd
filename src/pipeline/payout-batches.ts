/** The read side of payout batches, amounts as decimal strings. */
import type { Selectable } from 'kysely';
import type { Db, PayoutBatchesTable, PayoutBatchStatus } from '../db/index.ts';
import { decimalsOf, formatUnits } from '../money/index.ts';

export interface PayoutBatchView {
  readonly batchId: string;
  readonly channelId: string;
  readonly status: PayoutBatchStatus;
  readonly asset: string;
  readonly amount: string;
  readonly payoutCurrency: string;
  readonly payoutNetwork: string;
  readonly walletAddress: string;
  readonly reason: string | null;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export const OPEN_BATCH_STATUSES: readonly PayoutBatchStatus[] = ['pending', 'awaiting_approval', 'exchange_created', 'sent', 'needs_review'];

export async function listPayoutBatches(db: Db, filter: { channelId?: string; status?: PayoutBatchStatus; limit: number }): Promise<PayoutBatchView[]> {
  let query = db.selectFrom('payout_batches').selectAll().orderBy('created_at', 'desc').limit(filter.limit);
  if (filter.channelId !== undefined) query = query.where('channel_id', '=', filter.channelId);
  if (filter.status !== undefined) query = query.where('status', '=', filter.status);
  return (await query.execute()).map(toView);
}

function toView(row: Selectable<PayoutBatchesTable>): PayoutBatchView {
  return {
    batchId: row.batch_id,
    channelId: row.channel_id,
    status: row.status,
    asset: row.asset,
    amount: formatUnits(BigInt(row.amount), decimalsOf('usdt')),
    payoutCurrency: row.payout_currency,
    payoutNetwork: row.payout_network,
    walletAddress: row.wallet_address,
    reason: row.reason,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}
