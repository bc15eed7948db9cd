/** Channels with their balances against their thresholds, from the ledger's channel accounts (≈ 3 per channel). */
import { sql } from 'kysely';
import type { Db } from '../db/index.ts';
import { USDT_UNITS_PER_CENT } from '../pipeline/index.ts';
import { formatAsset, toAmounts } from './amounts.ts';
import type { ChannelRow, ChannelsView } from './types.ts';

export const CHANNELS_SHOWN = 50;

type Row = {
  channel_id: string;
  payout_strategy: 'instant' | 'threshold';
  threshold_usd_cents: string | null;
  payout_currency: string;
  payout_network: string;
  eth_available: string;
  usdt_available: string;
  eth_reserved: string;
  usdt_reserved: string;
};

export async function readChannels(db: Db): Promise<ChannelsView> {
  const counts = await sql<{ total: number; threshold: number; at_threshold: number }>`
    select count(*)::int as total,
           count(*) filter (where c.payout_strategy = 'threshold')::int as threshold,
           count(*) filter (where c.payout_strategy = 'threshold' and coalesce(a.balance, 0) >= c.threshold_usd_cents * ${USDT_UNITS_PER_CENT.toString()}::numeric)::int as at_threshold
    from channels c left join ledger_accounts a on a.code = 'channel:' || c.channel_id and a.asset = 'usdt'`.execute(db);
  // Ordered by fill in SQL only to pick the rows shown; the fill itself is computed exactly below.
  const { rows } = await sql<Row>`
    with balances as (
      select split_part(code, ':', 2) as channel_id,
             coalesce(sum(balance) filter (where asset = 'eth' and code not like '%:payout'), 0) as eth_available,
             coalesce(sum(balance) filter (where asset = 'usdt' and code not like '%:payout'), 0) as usdt_available,
             coalesce(sum(balance) filter (where asset = 'eth' and code like '%:payout'), 0) as eth_reserved,
             coalesce(sum(balance) filter (where asset = 'usdt' and code like '%:payout'), 0) as usdt_reserved
      from ledger_accounts where code like 'channel:%' group by 1)
    select c.channel_id, c.payout_strategy, c.threshold_usd_cents::text as threshold_usd_cents, c.payout_currency, c.payout_network,
           coalesce(b.eth_available, 0)::text as eth_available, coalesce(b.usdt_available, 0)::text as usdt_available,
           coalesce(b.eth_reserved, 0)::text as eth_reserved, coalesce(b.usdt_reserved, 0)::text as usdt_reserved
    from channels c left join balances b on b.channel_id = c.channel_id
    order by (c.payout_strategy = 'threshold') desc,
             coalesce(b.usdt_available, 0) / coalesce(c.threshold_usd_cents, 1) desc,
             coalesce(b.eth_available, 0) + coalesce(b.eth_reserved, 0) desc,
             c.channel_id
    limit ${CHANNELS_SHOWN}`.execute(db);
  const c = counts.rows[0] ?? { total: 0, threshold: 0, at_threshold: 0 };
  return { total: c.total, threshold: c.threshold, atThreshold: c.at_threshold, items: rows.map(channelRow) };
}

function channelRow(r: Row): ChannelRow {
  const availableUsdt = BigInt(r.usdt_available);
  const thresholdCents = r.threshold_usd_cents === null ? null : BigInt(r.threshold_usd_cents);
  return {
    channelId: r.channel_id,
    strategy: r.payout_strategy,
    payoutCurrency: r.payout_currency,
    payoutNetwork: r.payout_network,
    thresholdUsd: thresholdCents === null ? null : formatAsset(thresholdCents, 'usd'),
    pendingEth: formatAsset(BigInt(r.eth_available), 'eth'),
    availableUsdt: formatAsset(availableUsdt, 'usdt'),
    reserved: toAmounts(new Map([['eth', BigInt(r.eth_reserved)], ['usdt', BigInt(r.usdt_reserved)]].filter(([, u]) => u !== 0n) as Array<[string, bigint]>)),
    fillBps: thresholdCents === null ? null : fillBps(availableUsdt, thresholdCents),
  };
}

/** Available USDT units against a threshold in cents, in basis points, rounded down (10000 = reached). */
export function fillBps(availableUnits: bigint, thresholdCents: bigint): number {
  return Number((availableUnits * 10_000n) / (thresholdCents * USDT_UNITS_PER_CENT));
}
