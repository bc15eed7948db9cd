/**
 * How far a statement's range may reach when it is first read. A ledger line's time is the start of the transaction
 * that booked it (now(): the default of ledger_journals.created_at and ledger_entries.created_at, which
 * payrail_post_journal, migration 003, leaves to the database), not its commit. A transaction still open can so commit
 * lines at any time from its start on, times a statement read now would already have passed: read page by page, its
 * later pages would count such a line in their totals but never list it, and the next statement, starting where this
 * one ended, would not list it either.
 *
 * So a range ends no later than the start of the earliest transaction open on the database, or now when there is
 * none. Every open transaction counts, idle in one included: one that has written nothing yet has no transaction id,
 * but whatever it books later still takes its start as its time. Only client connections count: autovacuum, WAL
 * senders and the other server processes never book a journal.
 *
 * It is read before the statement's snapshot is taken, never inside it: a transaction that commits between the two is
 * then either seen open here (the range ends before its lines) or committed before the snapshot (its lines are in it).
 * The one blind spot is inside the server: a transaction takes its start time a moment before it shows as open, so one
 * begun just before this read and not shown yet by the time it looks (microseconds, unless that process is held up
 * just then) goes unseen.
 * pg_stat_activity hides the transactions of another database role from a role without pg_read_all_stats: such a
 * transaction is not seen, and a line it books is not covered.
 */
import { sql } from 'kysely';
import type { Db } from '../db/index.ts';
import type { TimeRange } from './range.ts';

export interface Horizon {
  /** The database's clock when it was read, to the millisecond below: what a `to` left out stands for. */
  readonly now: Date;
  /** The latest time no transaction still open can book a line before: `now`, or an open transaction's start. */
  readonly end: Date;
}

export async function readHorizon(db: Db): Promise<Horizon> {
  // Rounded down to the millisecond a Date keeps: rounded up, the bound would pass the transaction's start.
  const { rows } = await sql<Horizon>`
    select date_trunc('milliseconds', statement_timestamp()) as now,
           date_trunc('milliseconds', least(statement_timestamp(), (
             select min(xact_start) from pg_stat_activity
             where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'
               and xact_start is not null))) as end`.execute(db);
  return rows[0] as Horizon;
}

/**
 * `range` ended at the horizon when it reaches past it (at `from`, an empty range, when `from` is past it too), with
 * the `to` asked for; `asked` is null when the range stands as asked.
 */
export function cutRange(range: TimeRange, horizon: Horizon): { range: TimeRange; asked: Date | null } {
  if (range.to.getTime() <= horizon.end.getTime()) return { range, asked: null };
  const to = horizon.end.getTime() < range.from.getTime() ? range.from : horizon.end;
  return { range: { from: range.from, to }, asked: range.to };
}
