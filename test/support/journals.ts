/** The ledger as tests read it back: what a journal booked, line by line. */
import type { TestDatabase } from './db.ts';

export interface JournalLine {
  kind: string;
  code: string;
  /** In the asset's smallest unit, as text: exact. */
  amount: string;
}

/** Every line of the journals booked under `ref` (a payment id, say), in booking order, accounts sorted within. */
export async function journalLines(db: TestDatabase, ref: unknown): Promise<JournalLine[]> {
  const { rows } = await db.pool.query(
    `select j.kind, a.code, e.amount::text as amount from ledger_journals j join ledger_entries e on e.journal_id = j.id
     join ledger_accounts a on a.id = e.account_id where j.ref = $1 order by j.id, a.code`,
    [String(ref)],
  );
  return rows as JournalLine[];
}
