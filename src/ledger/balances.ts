import type { Db } from '../db/index.ts';
import { formatUnits, isAssetCode, decimalsOf } from '../money/index.ts';
import { accounts } from './accounts.ts';

export interface Balance {
  /** available: owed and free; reserved_for_payout: set aside in an open payout batch. */
  readonly account: 'available' | 'reserved_for_payout';
  readonly asset: string;
  /** Decimal string in the asset's unit. */
  readonly amount: string;
  readonly units: string;
}

/** A channel's balances straight from its ledger accounts (O(1) per asset, no sum over history). */
export async function channelBalances(db: Db, channelId: string): Promise<Balance[]> {
  const rows = await db
    .selectFrom('ledger_accounts')
    .select(['code', 'asset', 'balance'])
    .where('code', 'in', [accounts.channel(channelId, '').code, accounts.channelPayout(channelId, '').code])
    .orderBy('code')
    .orderBy('asset')
    .execute();
  return rows.map((r) => ({
    account: r.code.endsWith(':payout') ? 'reserved_for_payout' : 'available',
    asset: r.asset,
    units: r.balance,
    amount: isAssetCode(r.asset) ? formatUnits(BigInt(r.balance), decimalsOf(r.asset)) : r.balance,
  }));
}
