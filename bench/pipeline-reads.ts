/**
 * What bench/pipeline.ts reads back once the pipeline has completed: from payrail's database (when the last payment
 * settled and the last payout completed, the conversions, the host wallet's transfers and their signing, the payouts
 * by kind, the sums its checks compare, the ledger and the cost lines) and from the chain (what the owners and
 * ChangeNow's payin addresses received). One function per group of figures.
 */
import { createPublicClient, erc20Abi, http, type Address } from 'viem';
import type { DatabaseHandle } from '../src/db/index.ts';
import { checkLedger, type LedgerReport } from '../src/ledger/index.ts';
import { readCosts } from '../src/overview/index.ts';

/** The last settlement and the last payout, as the database recorded them. */
export interface PipelineTiming {
  lastPayoutAt: number | undefined;
  /** A payment is settled when its channel holds its value in the payout asset: converted (threshold) or paid out (instant). */
  lastSettledAt: number;
}

export async function readTiming(database: DatabaseHandle): Promise<PipelineTiming> {
  const epochMs = (column: string) => `(extract(epoch from ${column}) * 1000)::bigint::text`;
  const timing = (
    await database.pool.query<{
      last_converted_ms: string | null;
      last_instant_ms: string | null;
      last_payout_ms: string | null;
    }>(
      `select ${epochMs(`(select max(completed_at) from conversions where status = 'completed')`)} as last_converted_ms,
                ${epochMs(`(select max(completed_at) from payouts where kind = 'instant' and status = 'completed')`)} as last_instant_ms,
                ${epochMs(`(select max(completed_at) from payouts where status = 'completed')`)} as last_payout_ms`,
    )
  ).rows[0];
  const lastConvertedAt = timing?.last_converted_ms == null ? undefined : Number(timing.last_converted_ms);
  const lastInstantAt = timing?.last_instant_ms == null ? undefined : Number(timing.last_instant_ms);
  const lastPayoutAt = timing?.last_payout_ms == null ? undefined : Number(timing.last_payout_ms);
  return { lastPayoutAt, lastSettledAt: Math.max(lastConvertedAt ?? 0, lastInstantAt ?? 0) };
}

export interface ConversionFigures {
  total: number;
  with_exchange: number;
  completed: number;
  under_min: number;
  under_min_early: number;
  min_p: number;
  avg_p: string;
  max_p: number;
  avg_ms: string;
  max_ms: string;
}

/** The conversions' counts, sizes and durations; "early" = created before its oldest payment waited maxWaitMs. */
export async function readConversions(
  database: DatabaseHandle,
  minUsd: string,
  maxWaitMs: number,
): Promise<ConversionFigures | undefined> {
  return (
    await database.pool.query<ConversionFigures>(
      `select count(*)::int as total, count(exchange_id)::int as with_exchange, count(*) filter (where status = 'completed')::int as completed,
                count(*) filter (where usdt_received < $1::numeric * 1000000)::int as under_min,
                count(*) filter (where usdt_received < $1::numeric * 1000000 and created_at - (
                  select min(p.credited_at) from conversion_payments cp join payments p using (payment_id) where cp.conversion_id = conversions.conversion_id
                ) < $2::numeric * interval '1 millisecond')::int as under_min_early,
                min(payment_count)::int as min_p, round(avg(payment_count), 1)::text as avg_p, max(payment_count)::int as max_p,
                round(avg(extract(epoch from completed_at - created_at)) * 1000)::text as avg_ms,
                round(max(extract(epoch from completed_at - created_at)) * 1000)::text as max_ms
         from conversions`,
      [minUsd, String(maxWaitMs)],
    )
  ).rows[0];
}

export interface UnderMinConversion {
  at_ms: string;
  payments: number;
  usdt: string;
  waited_ms: string;
}

/** The first five conversions that received less than CONVERSION_MIN_USD, for the notes under the checks. */
export async function readUnderMin(database: DatabaseHandle, minUsd: string): Promise<UnderMinConversion[]> {
  return (
    await database.pool.query<UnderMinConversion>(
      `select (extract(epoch from c.created_at) * 1000)::bigint::text as at_ms, c.payment_count::int as payments, c.usdt_received::text as usdt,
                round(extract(epoch from c.created_at - min(p.credited_at)) * 1000)::text as waited_ms
         from conversions c join conversion_payments cp using (conversion_id) join payments p using (payment_id)
         where c.usdt_received < $1::numeric * 1000000 group by c.conversion_id order by c.created_at limit 5`,
      [minUsd],
    )
  ).rows;
}

export interface TransferFigures {
  conversion: number;
  threshold: number;
  instant: number;
  other: number;
  payout_rows: number;
  payout_refs: number;
  avg_ms: string | null;
  p50_ms: string | null;
  max_ms: string | null;
  span_ms: string | null;
  /** Of the confirmed: intent -> its signing commit, and that commit -> recorded mined. */
  signed_avg_ms: string | null;
  signed_p90_ms: string | null;
  booked_avg_ms: string | null;
  booked_p90_ms: string | null;
}

/** Host wallet transfers, by what they paid for: a conversion, a threshold batch, an instant payout. */
export async function readTransfers(database: DatabaseHandle): Promise<TransferFigures | undefined> {
  return (
    await database.pool.query<TransferFigures>(
      `select count(*) filter (where t.status = 'confirmed' and t.purpose = 'conversion')::int as conversion,
                count(*) filter (where t.status = 'confirmed' and t.purpose = 'payout' and p.kind = 'threshold')::int as threshold,
                count(*) filter (where t.status = 'confirmed' and t.purpose = 'payout' and p.kind = 'instant')::int as instant,
                count(*) filter (where t.status <> 'confirmed')::int as other,
                count(*) filter (where t.purpose = 'payout')::int as payout_rows,
                count(distinct t.ref) filter (where t.purpose = 'payout')::int as payout_refs,
                round(avg(w.ms))::text as avg_ms, round(percentile_cont(0.5) within group (order by w.ms))::text as p50_ms, round(max(w.ms))::text as max_ms,
                round(extract(epoch from max(t.updated_at) filter (where t.status = 'confirmed') - min(t.created_at)) * 1000)::text as span_ms,
                round(avg(w.signed_ms))::text as signed_avg_ms, round(percentile_cont(0.9) within group (order by w.signed_ms))::text as signed_p90_ms,
                round(avg(w.booked_ms))::text as booked_avg_ms, round(percentile_cont(0.9) within group (order by w.booked_ms))::text as booked_p90_ms
         from chain_transfers t
              -- a confirmed transfer is not touched after its confirmation: updated_at is when it was recorded mined;
              -- broadcast_at is its signing commit's time (sign-batch.ts)
              cross join lateral (select case when t.status = 'confirmed' then extract(epoch from t.updated_at - t.created_at) * 1000 end as ms,
                                         case when t.status = 'confirmed' then extract(epoch from t.broadcast_at - t.created_at) * 1000 end as signed_ms,
                                         case when t.status = 'confirmed' then extract(epoch from t.updated_at - t.broadcast_at) * 1000 end as booked_ms) w
              left join payouts p on t.purpose = 'payout' and p.payout_id = t.ref`,
    )
  ).rows[0];
}

export interface SigningFigures {
  commits: number;
  signed: number;
  largest: number | null;
}

/**
 * A send signs the wallet's queued intents in one commit (src/pipeline/transfer/sign-batch.ts): the transfers of
 * one commit share its now() as broadcast_at.
 */
export async function readSigning(database: DatabaseHandle): Promise<SigningFigures | undefined> {
  return (
    await database.pool.query<SigningFigures>(
      `select count(*)::int as commits, coalesce(sum(n), 0)::int as signed, max(n)::int as largest
           from (select count(*) as n from chain_transfers where nonce is not null group by broadcast_at) c`,
    )
  ).rows[0];
}

export interface PayoutKindFigures {
  n: number;
  completed: number;
  with_exchange: number;
  direct: number;
  channels: number;
  amount: string;
  avg_ms: string | null;
  p50_ms: string | null;
  max_ms: string | null;
}

const NO_PAYOUTS: PayoutKindFigures = {
  n: 0,
  completed: 0,
  with_exchange: 0,
  direct: 0,
  channels: 0,
  amount: '0',
  avg_ms: null,
  p50_ms: null,
  max_ms: null,
};

/** Threshold: batch created -> completed. Instant: payment credited -> payout completed (the owner's wait). */
export async function readPayoutKinds(
  database: DatabaseHandle,
): Promise<{ thresholdPo: PayoutKindFigures; instantPo: PayoutKindFigures }> {
  const payoutKinds = (
    await database.pool.query<PayoutKindFigures & { kind: 'threshold' | 'instant' }>(
      `select po.kind, count(*)::int as n, count(*) filter (where po.status = 'completed')::int as completed,
                count(po.exchange_id)::int as with_exchange, count(*) filter (where po.exchange_id is null)::int as direct,
                count(distinct po.channel_id)::int as channels, coalesce(sum(po.amount), 0)::text as amount,
                round(avg(w.ms))::text as avg_ms, round(percentile_cont(0.5) within group (order by w.ms))::text as p50_ms, round(max(w.ms))::text as max_ms
         from payouts po left join payments p on p.payment_id = po.payment_id,
              lateral (select extract(epoch from po.completed_at - coalesce(p.credited_at, po.created_at)) * 1000 as ms) w
         group by po.kind`,
    )
  ).rows;
  return {
    thresholdPo: payoutKinds.find((r) => r.kind === 'threshold') ?? NO_PAYOUTS,
    instantPo: payoutKinds.find((r) => r.kind === 'instant') ?? NO_PAYOUTS,
  };
}

export interface MoneySums {
  shared: string;
  received: string;
  eth_net: string;
  eth_sent: string;
  instant_net: string;
  instant_paid: string;
  batched_usdt: string;
  batched_payments: number;
  reserved_left: string;
}

/** The sums the checks compare: what the payments hold against what the conversions and payouts moved. */
export async function readSums(database: DatabaseHandle, userId: string): Promise<MoneySums | undefined> {
  return (
    await database.pool.query<MoneySums>(
      `select (select coalesce(sum(usdt_amount), 0)::text from payments where user_id = $1 and payout_strategy = 'threshold') as shared,
                (select coalesce(sum(usdt_received), 0)::text from conversions where status = 'completed') as received,
                (select coalesce(sum(net_amount), 0)::text from payments where user_id = $1 and payout_strategy = 'threshold') as eth_net,
                (select coalesce(sum(amount_wei), 0)::text from conversions where status = 'completed') as eth_sent,
                (select coalesce(sum(net_amount), 0)::text from payments where user_id = $1 and payout_strategy = 'instant') as instant_net,
                (select coalesce(sum(amount), 0)::text from payouts where kind = 'instant' and status = 'completed') as instant_paid,
                (select coalesce(sum(p.usdt_amount), 0)::text from payments p join payouts po on po.payout_id = p.payout_id where po.kind = 'threshold') as batched_usdt,
                (select count(*)::int from payments p join payouts po on po.payout_id = p.payout_id where po.kind = 'threshold' and p.user_id = $1) as batched_payments,
                (select coalesce(sum(balance), 0)::text from ledger_accounts where code like 'channel:%:payout') as reserved_left`,
      [userId],
    )
  ).rows[0];
}

// ---------------------------------------------------------------------------------------------------------------
// What the chain shows the payouts paid

export interface OnChainCheck {
  directWallets: number;
  directOk: boolean;
  directProblems: string[];
  payins: number;
  payinOk: boolean;
  payinProblems: string[];
}

type BalanceOf = (asset: string, address: string) => Promise<bigint>;

interface PaidAddress {
  address: string;
  asset: string;
  amount: string;
}

/**
 * Reads balances on anvil: every owner wallet paid directly (fresh per channel, paid by nobody else) holds exactly the
 * sum of its completed payouts, and every payout exchange's payin address (new per exchange) holds exactly what its
 * payout sent: nobody was paid twice, nothing went missing.
 */
export async function checkPaidOnChain(database: DatabaseHandle, rpcUrl: string, usdt: Address): Promise<OnChainCheck> {
  const client = createPublicClient({ transport: http(rpcUrl) });
  const balance: BalanceOf = (asset, address) =>
    asset === 'eth'
      ? client.getBalance({ address: address as Address })
      : client.readContract({ address: usdt, abi: erc20Abi, functionName: 'balanceOf', args: [address as Address] });
  const direct = (
    await database.pool.query<PaidAddress>(
      "select wallet_address as address, asset, sum(amount)::text as amount from payouts where exchange_id is null and status = 'completed' group by wallet_address, asset",
    )
  ).rows;
  const payins = (
    await database.pool.query<PaidAddress>(
      "select payin_address as address, asset, amount::text as amount from payouts where exchange_id is not null and status = 'completed'",
    )
  ).rows;
  const directProblems = await balanceMismatches(balance, direct);
  const payinProblems = await balanceMismatches(balance, payins);
  return {
    directWallets: direct.length,
    directOk: directProblems.length === 0,
    directProblems,
    payins: payins.length,
    payinOk: payinProblems.length === 0,
    payinProblems,
  };
}

/** Each address whose balance on chain is not the amount the payouts say, read 16 at a time. */
async function balanceMismatches(balance: BalanceOf, rows: PaidAddress[]): Promise<string[]> {
  const problems: string[] = [];
  let next = 0;
  const reader = async () => {
    for (let row = rows[next++]; row !== undefined; row = rows[next++]) {
      const held = await balance(row.asset, row.address);
      if (held !== BigInt(row.amount))
        problems.push(`${row.address} holds ${held} ${row.asset}, payouts say ${row.amount}`);
    }
  };
  await Promise.all(Array.from({ length: 16 }, reader));
  return problems;
}

// ---------------------------------------------------------------------------------------------------------------
// All of it

export interface PipelineResults {
  timing: PipelineTiming;
  conv: ConversionFigures | undefined;
  underMin: UnderMinConversion[];
  transfers: TransferFigures | undefined;
  signing: SigningFigures | undefined;
  thresholdPo: PayoutKindFigures;
  instantPo: PayoutKindFigures;
  sums: MoneySums | undefined;
  onChain: OnChainCheck;
  ledger: LedgerReport;
  costs: Awaited<ReturnType<typeof readCosts>>;
}

export interface ResultsScope {
  userId: string;
  /** CONVERSION_MIN_USD as configured. */
  minUsd: string;
  /** CONVERSION_MAX_WAIT in milliseconds. */
  maxWaitMs: number;
  rpcUrl: string;
  usdtContract: Address;
}

/** Every figure the report prints and the checks compare, read one group after the other. */
export async function readResults(database: DatabaseHandle, scope: ResultsScope): Promise<PipelineResults> {
  const timing = await readTiming(database);
  const conv = await readConversions(database, scope.minUsd, scope.maxWaitMs);
  const underMin = await readUnderMin(database, scope.minUsd);
  const transfers = await readTransfers(database);
  const signing = await readSigning(database);
  const { thresholdPo, instantPo } = await readPayoutKinds(database);
  const sums = await readSums(database, scope.userId);
  const onChain = await checkPaidOnChain(database, scope.rpcUrl, scope.usdtContract);
  const ledger = await checkLedger(database.db);
  const costs = await readCosts(database.db);
  return { timing, conv, underMin, transfers, signing, thresholdPo, instantPo, sums, onChain, ledger, costs };
}
