/**
 * Channels with their balances against their thresholds, from the ledger's channel accounts (≈ 3 per channel), and
 * the open payouts of each that wait for a person (payouts in review and payout transfers in review: two small
 * partial indexes), and the open threshold batch of each shown (the one-open-batch index).
 */
import { sql } from 'kysely';
import type { Db, PayoutStatus } from '../db/index.ts';
import { USDT_UNITS_PER_CENT } from '../pipeline/index.ts';
import { formatAsset, toAmounts } from './amounts.ts';
import type { ChannelRow, ChannelsView } from './types.ts';

/** The fullest channels shown; channels whose payout waits for a person are shown besides, wherever they rank. */
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
  review_payout_id: string | null;
  review_transfer_id: string | null;
  review_payouts: number | null;
  open_batch_id: string | null;
  open_batch_status: PayoutStatus | null;
};

export async function readChannels(db: Db): Promise<ChannelsView> {
  const counts = await sql<{ total: number; threshold: number; at_threshold: number }>`
    select count(*)::int as total,
           count(*) filter (where c.payout_strategy = 'threshold')::int as threshold,
           count(*) filter (where c.payout_strategy = 'threshold' and coalesce(a.balance, 0) >= c.threshold_usd_cents * ${USDT_UNITS_PER_CENT.toString()}::numeric)::int as at_threshold
    from channels c left join ledger_accounts a on a.code = 'channel:' || c.channel_id and a.asset = 'usdt'`.execute(
    db,
  );
  // Ranked by fill in SQL only to pick the rows shown; the fill itself is computed exactly below.
  const { rows } = await sql<Row>`
    with balances as (
      select split_part(code, ':', 2) as channel_id,
             coalesce(sum(balance) filter (where asset = 'eth' and code not like '%:payout'), 0) as eth_available,
             coalesce(sum(balance) filter (where asset = 'usdt' and code not like '%:payout'), 0) as usdt_available,
             coalesce(sum(balance) filter (where asset = 'eth' and code like '%:payout'), 0) as eth_reserved,
             coalesce(sum(balance) filter (where asset = 'usdt' and code like '%:payout'), 0) as usdt_reserved
      from ledger_accounts where code like 'channel:%' group by 1),
    waiting as (
      select channel_id, payout_id, null::text as transfer_id, updated_at as since
      from payouts where status = 'needs_review'
      union all
      select p.channel_id, p.payout_id, t.transfer_id, t.updated_at
      from chain_transfers t join payouts p on p.payout_id = t.ref
      where t.status = 'needs_review' and t.purpose = 'payout' and p.status not in ('completed', 'failed', 'cancelled')),
    review as (
      select channel_id, count(distinct payout_id)::int as payouts,
             (array_agg(payout_id order by since, payout_id))[1] as payout_id,
             (array_agg(transfer_id order by since, payout_id))[1] as transfer_id
      from waiting group by channel_id),
    ranked as (
      select c.channel_id, c.payout_strategy, c.threshold_usd_cents, c.payout_currency, c.payout_network,
             b.eth_available, b.usdt_available, b.eth_reserved, b.usdt_reserved,
             row_number() over (
               order by (c.payout_strategy = 'threshold') desc,
                        coalesce(b.usdt_available, 0) / coalesce(c.threshold_usd_cents, 1) desc,
                        coalesce(b.eth_available, 0) + coalesce(b.eth_reserved, 0) desc,
                        c.channel_id) as rank
      from channels c left join balances b on b.channel_id = c.channel_id)
    select r.channel_id, r.payout_strategy, r.threshold_usd_cents::text as threshold_usd_cents, r.payout_currency, r.payout_network,
           coalesce(r.eth_available, 0)::text as eth_available, coalesce(r.usdt_available, 0)::text as usdt_available,
           coalesce(r.eth_reserved, 0)::text as eth_reserved, coalesce(r.usdt_reserved, 0)::text as usdt_reserved,
           v.payout_id as review_payout_id, v.transfer_id as review_transfer_id, v.payouts as review_payouts,
           o.payout_id as open_batch_id, o.status as open_batch_status
    from ranked r left join review v on v.channel_id = r.channel_id
    -- The predicate of payouts_one_open_batch, as payChannelNow's refusal reads it: at most one row per channel.
    left join payouts o on o.channel_id = r.channel_id and o.kind = 'threshold' and o.status not in ('completed', 'failed', 'cancelled')
    where r.rank <= ${CHANNELS_SHOWN} or v.channel_id is not null
    order by r.rank`.execute(db);
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
    reserved: toAmounts(
      new Map(
        [
          ['eth', BigInt(r.eth_reserved)],
          ['usdt', BigInt(r.usdt_reserved)],
        ].filter(([, u]) => u !== 0n) as Array<[string, bigint]>,
      ),
    ),
    fillBps: thresholdCents === null ? null : fillBps(availableUsdt, thresholdCents),
    payoutInReview:
      r.review_payout_id === null
        ? null
        : { payoutId: r.review_payout_id, transferId: r.review_transfer_id, count: r.review_payouts ?? 1 },
    openBatch:
      r.open_batch_id === null ? null : { payoutId: r.open_batch_id, status: r.open_batch_status as PayoutStatus },
    // What payChannelNow checks before it opens a batch; it reads both again under the channel's lock.
    canPayNow: availableUsdt > 0n && r.open_batch_id === null,
  };
}

/** Available USDT units against a threshold in cents, in basis points, rounded down (10000 = reached). */
export function fillBps(availableUnits: bigint, thresholdCents: bigint): number {
  return Number((availableUnits * 10_000n) / (thresholdCents * USDT_UNITS_PER_CENT));
}
