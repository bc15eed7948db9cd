/** Journals booked straight into a test's ledger, through the same postJournal every stage books with. */
import type { DatabaseHandle } from '../../src/db/index.ts';
import { postJournal, type AccountRef, type JournalInput, type PostResult } from '../../src/ledger/index.ts';

/** Books one journal in a transaction of its own, as a stage books each movement. */
export function bookJournal(handle: DatabaseHandle, journal: JournalInput): Promise<PostResult> {
  return handle.db.transaction().execute((trx) => postJournal(trx, journal));
}

/** The journal of `units` taken from one account and given to another: balanced by construction. */
export function movement(kind: string, ref: string, from: AccountRef, to: AccountRef, units: bigint): JournalInput {
  return {
    kind,
    ref,
    entries: [
      { account: from, amount: -units },
      { account: to, amount: units },
    ],
  };
}
