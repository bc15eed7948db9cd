import type { Db } from '../../db/index.ts';
import { channelBalances, type Balance } from '../../ledger/index.ts';
import { OPEN_PAYOUT_STATES } from '../../db/index.ts';
import { listPayouts, type PayoutView } from '../../pipeline/index.ts';

export interface ChannelSummary {
  balances: Balance[];
  /** ETH credited and not yet converted (threshold) or set aside in a payout (instant). */
  pendingEth: string;
  /** USDT converted and not yet in a payout batch: what counts toward the threshold. */
  availableUsdt: string;
  /** Payouts not yet ended (completed, failed or cancelled), newest first. */
  openPayouts: PayoutView[];
}

export async function channelSummary(db: Db, channelId: string): Promise<ChannelSummary> {
  const balances = await channelBalances(db, channelId);
  const find = (asset: string) => balances.find((b) => b.account === 'available' && b.asset === asset)?.amount ?? '0';
  const payouts = await listPayouts(db, { channelId, limit: 50 });
  return {
    balances,
    pendingEth: find('eth'),
    availableUsdt: find('usdt'),
    openPayouts: payouts.filter((p) => OPEN_PAYOUT_STATES.includes(p.status)),
  };
}
