/**
 * "The last N hours" of the ledger without an index on time. Journal ids are handed out in insert order and a
 * journal's created_at is its transaction's start, so ids follow time closely: the newest journal older than the
 * window (found walking the primary key backwards from the newest, through the window's journals only) bounds the
 * window from below, and queries then read `id > bound` through the primary key and filter on created_at.
 *
 * Cost is the window's journals, not the history's. Only a transaction open longer than BOUND_SLACK, started before
 * the window and writing a journal after a journal of the window, could hide that journal; payrail's transactions
 * last milliseconds.
 */
import { sql } from 'kysely';
import type { Db } from '../db/index.ts';

const BOUND_SLACK = '10 minutes';

export interface LedgerWindow {
  /** Start of the window: the first whole hour of the series. */
  readonly since: Date;
  /** Journals with a larger id may lie in the window; none with a smaller one does. */
  readonly afterJournalId: string;
}

export async function ledgerWindow(db: Db, hours: number): Promise<LedgerWindow> {
  const start = await sql<{
    since: Date;
  }>`select date_trunc('hour', now()) - make_interval(hours => ${hours - 1}) as since`.execute(db);
  const since = (start.rows[0] as { since: Date }).since;
  // Its own statement, so the bound reaches the next queries as a value the planner sees (a sub-select would be
  // planned as "a third of the table" and read it all).
  const bound = await sql<{ id: string }>`
    select coalesce(max(id), 0)::text as id from ledger_journals where created_at < ${since}::timestamptz - ${BOUND_SLACK}::interval`.execute(
    db,
  );
  return { since, afterJournalId: (bound.rows[0] as { id: string }).id };
}
