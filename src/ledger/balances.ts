import type { Db } from '../db/index.ts';
import { formatUnits, isAssetCode, decimalsOf } from '../money/index.ts';
import { accounts } from './accounts.ts';

export interface Balance {
  readonly asset: string;
  /** Decimal string in the asset's unit. */
  readonly amount: string;
  readonly units: string;
}

/** A channel's balances straight from its ledger accounts (O(1) per asset, no sum over history). */
export async function channelBalances(db: Db, channelId: string): Promise<Balance[]> {
  const rows = await db
    .selectFrom('ledger_accounts')
    .select(['asset', 'balance'])
    .where('code', '=', accounts.channel(channelId, '').code)
    .orderBy('asset')
    .execute();
  return rows.map((r) => ({
    asset: r.asset,
    units: r.balance,
    amount: isAssetCode(r.asset) ? formatUnits(BigInt(r.balance), decimalsOf(r.asset)) : r.balance,
  }));
}
