/**
 * Payouts by state, the recent ones, and the review queue. There is one payout per instant payment (≈ 313,000 for
 * 1,000,000 payments), so nothing here reads them all: open payouts come from their partial index, failed and
 * cancelled ones from their `payout_returned` journals (every payout that ends either way returns its funds in one),
 * and ended ones of the window from the window's journals.
 */
import { sql } from 'kysely';
import type { Db, PayoutStatus } from '../db/index.ts';
import { PAYOUT_STATES } from '../db/index.ts';
import { listPayouts } from '../pipeline/index.ts';
import { formatAsset, seconds } from './amounts.ts';
import { countByState } from './counts.ts';
import type { PayoutRow, PipelineCounts, ReviewQueue } from './types.ts';
import type { LedgerWindow } from './window.ts';

const OPEN_SHOWN = 50;
const ENDED_SHOWN = 20;
/** States a person must act in, oldest waiting first. */
const REVIEW_STATES: readonly PayoutStatus[] = ['needs_review', 'awaiting_approval'];
const REVIEW_SHOWN = 100;

export async function payoutCounts(db: Db, window: LedgerWindow): Promise<PipelineCounts['payouts']> {
  const open = await sql<{ status: PayoutStatus; n: number }>`
    select status, count(*)::int as n from payouts where status not in ('completed', 'failed', 'cancelled') group by status`.execute(
    db,
  );
  const returned = await sql<{ status: PayoutStatus; n: number }>`
    select p.status, count(*)::int as n from ledger_journals j join payouts p on p.payout_id = j.ref
    where j.kind = 'payout_returned' group by p.status`.execute(db);
  const completed = await sql<{ n: number }>`
    select count(*)::int as n from ledger_journals
    where id > ${window.afterJournalId}::bigint and kind = 'payout_completed' and created_at >= ${window.since}::timestamptz`.execute(
    db,
  );
  // Every state counted as it stands, but completed: that one counts within the window only.
  const standing = PAYOUT_STATES.filter((s): s is Exclude<PayoutStatus, 'completed'> => s !== 'completed');
  const rows = [...open.rows, ...returned.rows].filter((row) => row.status !== 'completed');
  return { ...countByState(standing, rows), completedInWindow: completed.rows[0]?.n ?? 0 };
}

type Row = {
  payout_id: string;
  kind: 'threshold' | 'instant';
  channel_id: string;
  status: PayoutStatus;
  asset: string;
  amount: string;
  payout_currency: string;
  payout_network: string;
  amount_out: string | null;
  reason: string | null;
  created_at: Date;
  updated_at: Date;
  age: string;
  in_state: string;
};

const COLUMNS = sql`p.payout_id, p.kind, p.channel_id, p.status, p.asset, p.amount::text as amount, p.payout_currency, p.payout_network,
  p.amount_out, p.reason, p.created_at, p.updated_at,
  extract(epoch from now() - p.created_at)::bigint::text as age, extract(epoch from now() - p.updated_at)::bigint::text as in_state`;

export async function recentPayouts(db: Db, window: LedgerWindow): Promise<PayoutRow[]> {
  const open = await sql<Row>`
    select ${COLUMNS} from payouts p where p.status not in ('completed', 'failed', 'cancelled')
    order by p.updated_at desc limit ${OPEN_SHOWN}`.execute(db);
  const ended = await sql<Row>`
    select ${COLUMNS} from ledger_journals j join payouts p on p.payout_id = j.ref
    where j.id > ${window.afterJournalId}::bigint and j.kind in ('payout_completed', 'payout_returned') and j.created_at >= ${window.since}::timestamptz
    order by j.id desc limit ${ENDED_SHOWN}`.execute(db);
  return [...open.rows, ...ended.rows].map((r) => ({
    payoutId: r.payout_id,
    kind: r.kind,
    channelId: r.channel_id,
    status: r.status,
    asset: r.asset,
    amount: formatAsset(BigInt(r.amount), r.asset),
    payoutCurrency: r.payout_currency,
    payoutNetwork: r.payout_network,
    amountOut: r.amount_out,
    reason: r.reason,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    ageSeconds: seconds(r.age),
    inStateSeconds: seconds(r.in_state),
  }));
}

/**
 * The payout part of the review queue; its conversions are read in conversions.ts, its transfers in transfers.ts,
 * its payments in payments.ts.
 */
export async function reviewQueue(db: Db, now: Date): Promise<ReviewQueue['payouts']> {
  const listed = [];
  for (const status of REVIEW_STATES) listed.push(...(await listPayouts(db, { status, limit: REVIEW_SHOWN })));
  const payouts = listed
    .map((p) => ({ ...p, waitingSeconds: Math.max(0, Math.floor((now.getTime() - Date.parse(p.updatedAt)) / 1000)) }))
    .sort((a, b) => b.waitingSeconds - a.waitingSeconds);
  return payouts;
}
