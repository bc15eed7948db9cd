/**
 * Conversions by state and the recent ones. The table holds one row per batch (≈ 4,500 for 1,000,000 payments), so
 * grouping all of it is cheap; the recent list still uses the open-conversions index and the settlement journals of
 * the window rather than sorting the whole table.
 */
import { sql } from 'kysely';
import { CONVERSION_STATES, type ConversionState, type Db } from '../db/index.ts';
import { formatAsset, seconds, WAITING, waited } from './amounts.ts';
import type { ConversionRow, ReviewConversion } from './types.ts';
import type { LedgerWindow } from './window.ts';

const ENDED: readonly ConversionState[] = ['completed', 'failed'];
/** Settled conversions listed besides the open ones. */
const RECENT_SETTLED = 10;
/** Open conversions listed (there are a handful; more means something is stuck, and the count says so). */
const OPEN_SHOWN = 50;
/** Conversions in review listed; a handful at most, the pipeline's needs_review count says if there are more. */
const REVIEW_SHOWN = 100;

export interface ConversionStates {
  readonly counts: Record<ConversionState, number>;
  /** Payments in conversions that have not ended. */
  readonly openPayments: number;
  readonly settledCount: number;
  /** Settled legs per asset pair (one pair today: ETH → USDT). */
  readonly settled: Array<{ fromAsset: string; toAsset: string; sentUnits: bigint; receivedUnits: bigint }>;
  /** What conversions that have not ended took from their channels, per asset (still on those balances until settled). */
  readonly openSent: Array<{ fromAsset: string; sentUnits: bigint }>;
}

export async function readConversionStates(db: Db): Promise<ConversionStates> {
  const { rows } = await sql<{
    status: ConversionState;
    from_asset: string;
    to_asset: string;
    n: number;
    payments: string;
    sent: string;
    received: string;
  }>`
    select status, from_asset, to_asset, count(*)::int as n, sum(payment_count)::text as payments,
           sum(amount_wei)::text as sent, coalesce(sum(usdt_received), 0)::text as received
    from conversions group by 1, 2, 3`.execute(db);
  const counts = Object.fromEntries(CONVERSION_STATES.map((s) => [s, 0])) as Record<ConversionState, number>;
  let openPayments = 0;
  let settledCount = 0;
  const settled: ConversionStates['settled'] = [];
  const openSent: ConversionStates['openSent'] = [];
  for (const row of rows) {
    counts[row.status] = (counts[row.status] ?? 0) + row.n;
    if (!ENDED.includes(row.status)) {
      openPayments += Number.parseInt(row.payments, 10);
      openSent.push({ fromAsset: row.from_asset, sentUnits: BigInt(row.sent) });
    }
    if (row.status === 'completed') {
      settledCount += row.n;
      settled.push({
        fromAsset: row.from_asset,
        toAsset: row.to_asset,
        sentUnits: BigInt(row.sent),
        receivedUnits: BigInt(row.received),
      });
    }
  }
  return { counts, openPayments, settledCount, settled, openSent };
}

type Row = {
  conversion_id: string;
  status: ConversionState;
  payment_count: number;
  amount_wei: string;
  from_asset: string;
  to_asset: string;
  received: string | null;
  reason: string | null;
  created_at: Date;
  updated_at: Date;
  age: string;
  in_state: string;
};

const COLUMNS = sql`c.conversion_id, c.status, c.payment_count, c.amount_wei::text as amount_wei, c.from_asset, c.to_asset,
  coalesce(c.usdt_received, c.expected_usdt)::text as received, c.reason, c.created_at, c.updated_at,
  extract(epoch from now() - c.created_at)::bigint::text as age, extract(epoch from now() - c.updated_at)::bigint::text as in_state`;

/** Open conversions, then those settled within the window, newest first. */
export async function recentConversions(db: Db, window: LedgerWindow): Promise<ConversionRow[]> {
  const open = await sql<Row>`
    select ${COLUMNS} from conversions c where c.status not in ('completed', 'failed')
    order by c.created_at desc limit ${OPEN_SHOWN}`.execute(db);
  const settled = await sql<Row>`
    select ${COLUMNS} from ledger_journals j join conversions c on c.conversion_id = j.ref
    where j.id > ${window.afterJournalId}::bigint and j.kind = 'conversion_settled' and j.created_at >= ${window.since}::timestamptz
    order by j.id desc limit ${RECENT_SETTLED}`.execute(db);
  return [...open.rows, ...settled.rows].map((r) => ({
    conversionId: r.conversion_id,
    status: r.status,
    paymentCount: r.payment_count,
    sent: formatAsset(BigInt(r.amount_wei), r.from_asset),
    sentAsset: r.from_asset,
    received: r.received === null ? null : formatAsset(BigInt(r.received), r.to_asset),
    receivedAsset: r.to_asset,
    reason: r.reason,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    ageSeconds: seconds(r.age),
    inStateSeconds: seconds(r.in_state),
  }));
}

/**
 * Conversions a person must act on (retry), the longest waiting first. `status = 'needs_review'` lies within the
 * conversions_open partial index, so this never reads settled conversions.
 */
export async function reviewConversions(db: Db): Promise<ReviewConversion[]> {
  const { rows } = await sql<{
    conversion_id: string;
    reason: string | null;
    amount_wei: string;
    from_asset: string;
    payment_count: number;
    updated_at: Date;
    waiting: string;
  }>`
    select conversion_id, reason, amount_wei::text as amount_wei, from_asset, payment_count, updated_at, ${WAITING}
    from conversions where status = 'needs_review'
    order by updated_at, conversion_id limit ${REVIEW_SHOWN}`.execute(db);
  return rows.map((r) => ({
    conversionId: r.conversion_id,
    reason: r.reason,
    sent: formatAsset(BigInt(r.amount_wei), r.from_asset),
    sentAsset: r.from_asset,
    paymentCount: r.payment_count,
    ...waited(r),
  }));
}
