import type { Db } from '../../db/index.ts';
import { channelBalances, type Balance } from '../../ledger/index.ts';
import { listPayoutBatches, OPEN_BATCH_STATUSES, type PayoutBatchView } from '../../pipeline/index.ts';

export interface ChannelSummary {
  balances: Balance[];
  /** ETH credited and still waiting for (or in) conversion. */
  pendingEth: string;
  /** USDT converted and not yet in a payout batch: what counts toward the threshold. */
  availableUsdt: string;
  openBatches: PayoutBatchView[];
}

export async function channelSummary(db: Db, channelId: string): Promise<ChannelSummary> {
  const balances = await channelBalances(db, channelId);
  const find = (asset: string) => balances.find((b) => b.account === 'available' && b.asset === asset)?.amount ?? '0';
  const batches = await listPayoutBatches(db, { channelId, limit: 20 });
  return {
    balances,
    pendingEth: find('eth'),
    availableUsdt: find('usdt'),
    openBatches: batches.filter((b) => OPEN_BATCH_STATUSES.includes(b.status)),
  };
}
