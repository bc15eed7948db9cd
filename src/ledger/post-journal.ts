import { sql, type Transaction } from 'kysely';
import type { Database } from '../db/index.ts';
import { accountKey, type AccountRef } from './accounts.ts';

export interface EntryInput {
  readonly account: AccountRef;
  /** Smallest units; positive adds to the account's balance, negative takes from it. */
  readonly amount: bigint;
}

export interface JournalInput {
  readonly kind: string;
  /** Business key: (kind, ref) is unique, so the same movement can never be booked twice. */
  readonly ref: string;
  readonly entries: readonly EntryInput[];
}

export type PostResult = { posted: true; journalId: string } | { posted: false; journalId: string };

export class UnbalancedJournalError extends Error {
  override name = 'UnbalancedJournalError';
}

/** Checks a journal before it is written: non-zero entries, and every asset sums to zero. */
export function assertBalanced(journal: JournalInput): void {
  if (journal.entries.length < 2)
    throw new UnbalancedJournalError(`journal ${journal.kind}:${journal.ref} needs at least two entries`);
  const sums = new Map<string, bigint>();
  for (const entry of journal.entries) {
    if (entry.amount === 0n)
      throw new UnbalancedJournalError(
        `journal ${journal.kind}:${journal.ref} has a zero entry on ${accountKey(entry.account)}`,
      );
    sums.set(entry.account.asset, (sums.get(entry.account.asset) ?? 0n) + entry.amount);
  }
  for (const [asset, sum] of sums) {
    if (sum !== 0n)
      throw new UnbalancedJournalError(
        `journal ${journal.kind}:${journal.ref} does not balance in ${asset}: off by ${sum}`,
      );
  }
}

/**
 * Books a journal inside the caller's transaction: the journal, its immutable entries, and each account's balance,
 * in one round trip (payrail_post_journal, migration 003). A journal that already exists for (kind, ref) is not
 * booked again. Callers post last in their transaction: balance rows stay locked until the commit.
 */
export async function postJournal(trx: Transaction<Database>, journal: JournalInput): Promise<PostResult> {
  assertBalanced(journal);
  const e = journal.entries;
  const result = await sql<{ id: string | null }>`select payrail_post_journal(
      ${journal.kind}, ${journal.ref},
      ${e.map((x) => x.account.code)}::text[], ${e.map((x) => x.account.asset)}::text[],
      ${e.map((x) => x.account.allowNegative)}::boolean[], ${e.map((x) => x.amount.toString())}::numeric[]) as id`.execute(
    trx,
  );
  const id = result.rows[0]?.id ?? null;
  if (id !== null) return { posted: true, journalId: id };
  const existing = await trx
    .selectFrom('ledger_journals')
    .select('id')
    .where('kind', '=', journal.kind)
    .where('ref', '=', journal.ref)
    .executeTakeFirstOrThrow();
  return { posted: false, journalId: existing.id };
}

/**
 * postJournal for several journals in one statement, for a ledger group (src/ledger/group.ts): each is booked as it
 * would be alone, in the order given, and its balances are left to the group's end. Outside a group the journals would
 * lock their balance rows one after the other, in no order a single journal shares: it books nothing and throws.
 * Returns, for each journal in order, its id when booked now and null when (kind, ref) was booked before.
 */
export async function postJournals(
  trx: Transaction<Database>,
  journals: readonly JournalInput[],
): Promise<(string | null)[]> {
  if (journals.length === 0) return [];
  for (const journal of journals) assertBalanced(journal);
  const entries = journals.flatMap((journal, i) => journal.entries.map((entry) => ({ i, entry })));
  const result = await sql<{ id: string | null; in_group: boolean }>`
    select case when g.in_group then payrail_post_journal(j.kind, j.ref, e.codes, e.assets, e.negatives, e.amounts)
      end as id, g.in_group
    from (select payrail_in_ledger_group() as in_group) g
    cross join unnest(${journals.map((j) => j.kind)}::text[], ${journals.map((j) => j.ref)}::text[])
      with ordinality as j(kind, ref, i)
    join (
      select x.i, array_agg(x.code order by x.n) as codes, array_agg(x.asset order by x.n) as assets,
        array_agg(x.negative order by x.n) as negatives, array_agg(x.amount order by x.n) as amounts
      from unnest(${entries.map((x) => x.i + 1)}::int[], ${entries.map((x) => x.entry.account.code)}::text[],
        ${entries.map((x) => x.entry.account.asset)}::text[], ${entries.map((x) => x.entry.account.allowNegative)}::boolean[],
        ${entries.map((x) => x.entry.amount.toString())}::numeric[]) with ordinality as x(i, code, asset, negative, amount, n)
      group by x.i
    ) e on e.i = j.i
    order by j.i`.execute(trx);
  if (result.rows.some((r) => !r.in_group)) throw new Error('postJournals books inside a ledger group only');
  if (result.rows.length !== journals.length)
    throw new Error(`booked ${result.rows.length} of ${journals.length} journals in one statement`);
  return result.rows.map((r) => r.id);
}
