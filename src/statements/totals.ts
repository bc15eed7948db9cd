/**
 * A statement's totals, whatever the size of its range: per asset and account, the balance at `from` (opening) and at
 * `to` (closing), the range's movements per journal kind, what was booked after `to`, and the balance the ledger keeps.
 *
 * Whole UTC days come from ledger_channel_days (migration 027: the channel's sums per day and journal kind, kept with
 * the entries), the parts of the day of `from` and of the day of `to` on either side of the bound from the entries
 * themselves. So a statement reads one row per day and kind and at most two days of entries, at 100 payments as at
 * 100,000. The proof compares the two sources: opening + movements = closing holds only if the day of `from` sums to
 * its own entries, and closing + after = the ledger's balance only if every day's sums do.
 */
import { sql, type Transaction } from 'kysely';
import type { Database } from '../db/index.ts';
import type { TimeRange } from './range.ts';

export type Part = 'available' | 'reserved';

/** What journals of one kind moved in the range, on one asset. */
export interface KindSums {
  available: bigint;
  reserved: bigint;
  journals: bigint;
  gross: bigint;
  fee: bigint;
}

export interface AccountFigures {
  opening: bigint;
  closing: bigint;
  within: bigint;
  after: bigint;
  balance: bigint;
}

export interface AssetTotals {
  readonly asset: string;
  readonly accounts: Record<Part, AccountFigures>;
  readonly kinds: Map<string, KindSums>;
}

export interface ChannelAccounts {
  readonly channelId: string;
  /** channel:<id> and channel:<id>:payout, every asset. */
  readonly available: string;
  readonly reserved: string;
  readonly ids: string[];
}

const DAY_MS = 86_400_000;

/** The UTC day of `at`: its date and the instants it starts and ends. */
function dayOf(at: Date): { date: string; start: Date; end: Date } {
  const start = new Date(Math.floor(at.getTime() / DAY_MS) * DAY_MS);
  return { date: start.toISOString().slice(0, 10), start, end: new Date(start.getTime() + DAY_MS) };
}

type DayRow = {
  asset: string;
  kind: string;
  av_before_from: string;
  rs_before_from: string;
  av_before_to: string;
  rs_before_to: string;
  av_between: string;
  rs_between: string;
  journals_between: string;
  gross_between: string;
  fee_between: string;
  av_after_to: string;
  rs_after_to: string;
};
type PieceRow = {
  piece: 'open' | 'in_from_day' | 'in_to_day' | 'after';
  asset: string;
  kind: string;
  available: string;
  reserved: string;
  journals: string;
  gross: string;
  fee: string;
};

const zeroKind = (): KindSums => ({ available: 0n, reserved: 0n, journals: 0n, gross: 0n, fee: 0n });
const zeroAccount = (): AccountFigures => ({ opening: 0n, closing: 0n, within: 0n, after: 0n, balance: 0n });

/** The totals of every asset the channel's accounts or day sums hold. */
export async function readTotals(
  trx: Transaction<Database>,
  accounts: ChannelAccounts,
  range: TimeRange,
): Promise<Map<string, AssetTotals>> {
  const fromDay = dayOf(range.from);
  const toDay = dayOf(range.to);
  const sameDay = fromDay.date === toDay.date;
  const { rows: balances } = await sql<{ code: string; asset: string; balance: string }>`
    select code, asset, balance::text as balance from ledger_accounts
    where code in (${accounts.available}, ${accounts.reserved})`.execute(trx);
  const days = await readDays(trx, accounts, fromDay.date, toDay.date);
  const pieces = await readPieces(trx, accounts, range, fromDay, toDay);
  const out = new Map<string, AssetTotals>();
  for (const b of balances) {
    const part = b.code === accounts.reserved ? 'reserved' : 'available';
    totalsOf(out, b.asset).accounts[part].balance = BigInt(b.balance);
  }
  for (const d of days) addDay(totalsOf(out, d.asset), d, sameDay);
  for (const p of pieces) addPiece(totalsOf(out, p.asset), p, sameDay);
  return out;
}

/** The day sums of whole UTC days, per asset and kind, on either side of the two bound days and between them. */
async function readDays(
  trx: Transaction<Database>,
  accounts: ChannelAccounts,
  fromDate: string,
  toDate: string,
): Promise<DayRow[]> {
  const { rows } = await sql<DayRow>`
    select asset, kind,
           coalesce(sum(available) filter (where day < ${fromDate}::date), 0)::text as av_before_from,
           coalesce(sum(reserved) filter (where day < ${fromDate}::date), 0)::text as rs_before_from,
           coalesce(sum(available) filter (where day < ${toDate}::date), 0)::text as av_before_to,
           coalesce(sum(reserved) filter (where day < ${toDate}::date), 0)::text as rs_before_to,
           coalesce(sum(available) filter (where day > ${fromDate}::date and day < ${toDate}::date), 0)::text as av_between,
           coalesce(sum(reserved) filter (where day > ${fromDate}::date and day < ${toDate}::date), 0)::text as rs_between,
           coalesce(sum(journals) filter (where day > ${fromDate}::date and day < ${toDate}::date), 0)::text as journals_between,
           coalesce(sum(gross) filter (where day > ${fromDate}::date and day < ${toDate}::date), 0)::text as gross_between,
           coalesce(sum(fee) filter (where day > ${fromDate}::date and day < ${toDate}::date), 0)::text as fee_between,
           coalesce(sum(available) filter (where day > ${toDate}::date), 0)::text as av_after_to,
           coalesce(sum(reserved) filter (where day > ${toDate}::date), 0)::text as rs_after_to
    from ledger_channel_days where channel_id = ${accounts.channelId}
    group by asset, kind`.execute(trx);
  return rows;
}

/** The entries of the two bound days, each on its side of the bound; a payment's gross and fee from its own journal. */
async function readPieces(
  trx: Transaction<Database>,
  accounts: ChannelAccounts,
  range: TimeRange,
  fromDay: { start: Date; end: Date },
  toDay: { start: Date; end: Date },
): Promise<PieceRow[]> {
  if (accounts.ids.length === 0) return [];
  const { rows } = await sql<PieceRow>`
    select p.piece, a.asset, j.kind,
           coalesce(sum(e.amount) filter (where a.code = ${accounts.available}), 0)::text as available,
           coalesce(sum(e.amount) filter (where a.code = ${accounts.reserved}), 0)::text as reserved,
           count(distinct e.journal_id)::text as journals, coalesce(sum(g.gross), 0)::text as gross,
           coalesce(sum(g.fee), 0)::text as fee
    from ledger_entries e
    join ledger_accounts a on a.id = e.account_id
    join ledger_journals j on j.id = e.journal_id
    cross join lateral (select case when e.created_at < ${range.from} then 'open'
                                    when e.created_at >= ${range.to} then 'after'
                                    when e.created_at < ${fromDay.end} then 'in_from_day'
                                    else 'in_to_day' end as piece) p
    left join lateral (
      select -sum(x.amount) filter (where xa.code like 'world:nowpayments#%') as gross,
             sum(x.amount) filter (where xa.code like 'platform:fees#%') as fee
      from ledger_entries x join ledger_accounts xa on xa.id = x.account_id
      where x.journal_id = e.journal_id and a.code = ${accounts.available}
        and j.kind in ('payment_received', 'payment_topped_up')) g on true
    where e.account_id in (${sql.join(accounts.ids.map((id) => sql`${id}::bigint`))})
      and ((e.created_at >= ${fromDay.start} and e.created_at < ${fromDay.end})
           or (e.created_at >= ${toDay.start} and e.created_at < ${toDay.end}))
    group by p.piece, a.asset, j.kind`.execute(trx);
  return rows;
}

function totalsOf(out: Map<string, AssetTotals>, asset: string): AssetTotals {
  let t = out.get(asset);
  if (!t) {
    t = { asset, accounts: { available: zeroAccount(), reserved: zeroAccount() }, kinds: new Map() };
    out.set(asset, t);
  }
  return t;
}

function kindOf(t: AssetTotals, name: string): KindSums {
  let k = t.kinds.get(name);
  if (!k) {
    k = zeroKind();
    t.kinds.set(name, k);
  }
  return k;
}

/** One kind's whole days: the range's own only when the bound days are two (one day is all entries). */
function addDay(t: AssetTotals, d: DayRow, sameDay: boolean): void {
  const { available: av, reserved: rs } = t.accounts;
  av.opening += BigInt(d.av_before_from);
  rs.opening += BigInt(d.rs_before_from);
  av.closing += BigInt(d.av_before_to);
  rs.closing += BigInt(d.rs_before_to);
  av.after += BigInt(d.av_after_to);
  rs.after += BigInt(d.rs_after_to);
  if (sameDay) return;
  av.within += BigInt(d.av_between);
  rs.within += BigInt(d.rs_between);
  const k = kindOf(t, d.kind);
  k.available += BigInt(d.av_between);
  k.reserved += BigInt(d.rs_between);
  k.journals += BigInt(d.journals_between);
  k.gross += BigInt(d.gross_between);
  k.fee += BigInt(d.fee_between);
}

/** One kind's entries of a bound day, on their side of the bound. */
function addPiece(t: AssetTotals, p: PieceRow, sameDay: boolean): void {
  const moved: Record<Part, bigint> = { available: BigInt(p.available), reserved: BigInt(p.reserved) };
  for (const part of ['available', 'reserved'] as const) {
    const a = t.accounts[part];
    const amount = moved[part];
    if (p.piece === 'open') {
      a.opening += amount;
      if (sameDay) a.closing += amount;
    } else if (p.piece === 'after') a.after += amount;
    else {
      a.within += amount;
      // The day of `to` counts in closing from its entries; when it is also the day of `from`, so does the range.
      if (p.piece === 'in_to_day' || sameDay) a.closing += amount;
    }
  }
  if (p.piece === 'in_from_day' || p.piece === 'in_to_day') {
    const k = kindOf(t, p.kind);
    k.available += moved.available;
    k.reserved += moved.reserved;
    k.journals += BigInt(p.journals);
    k.gross += BigInt(p.gross);
    k.fee += BigInt(p.fee);
  }
}
