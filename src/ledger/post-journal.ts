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
  if (journal.entries.length < 2) throw new UnbalancedJournalError(`journal ${journal.kind}:${journal.ref} needs at least two entries`);
  const sums = new Map<string, bigint>();
  for (const entry of journal.entries) {
    if (entry.amount === 0n) throw new UnbalancedJournalError(`journal ${journal.kind}:${journal.ref} has a zero entry on ${accountKey(entry.account)}`);
    sums.set(entry.account.asset, (sums.get(entry.account.asset) ?? 0n) + entry.amount);
  }
  for (const [asset, sum] of sums) {
    if (sum !== 0n) throw new UnbalancedJournalError(`journal ${journal.kind}:${journal.ref} does not balance in ${asset}: off by ${sum}`);
  }
}

/**
 * Books a journal inside the caller's transaction: the journal, its immutable entries, and each account's balance.
 * Balances are locked in account-id order so concurrent journals over the same accounts cannot deadlock. A journal
 * that already exists for (kind, ref) is not booked again.
 */
export async function postJournal(trx: Transaction<Database>, journal: JournalInput): Promise<PostResult> {
  assertBalanced(journal);
  const inserted = await trx
    .insertInto('ledger_journals')
    .values({ kind: journal.kind, ref: journal.ref })
    .onConflict((oc) => oc.columns(['kind', 'ref']).doNothing())
    .returning('id')
    .executeTakeFirst();
  if (!inserted) {
    const existing = await trx.selectFrom('ledger_journals').select('id').where('kind', '=', journal.kind).where('ref', '=', journal.ref).executeTakeFirstOrThrow();
    return { posted: false, journalId: existing.id };
  }

  const ids = await resolveAccounts(trx, journal.entries.map((e) => e.account));
  const deltas = new Map<string, bigint>();
  for (const entry of journal.entries) {
    const id = ids.get(accountKey(entry.account)) as string;
    deltas.set(id, (deltas.get(id) ?? 0n) + entry.amount);
  }
  const accountIds = [...deltas.keys()].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1));
  await sql`select id from ledger_accounts where id = any(${accountIds}::bigint[]) order by id for update`.execute(trx);
  for (const id of accountIds) {
    await trx
      .updateTable('ledger_accounts')
      .set({ balance: sql`balance + ${(deltas.get(id) as bigint).toString()}::numeric`, updated_at: sql`now()` })
      .where('id', '=', id)
      .execute();
  }
  await trx
    .insertInto('ledger_entries')
    .values(journal.entries.map((e) => ({ journal_id: inserted.id, account_id: ids.get(accountKey(e.account)) as string, amount: e.amount.toString() })))
    .execute();
  return { posted: true, journalId: inserted.id };
}

/** Returns account ids by key, creating missing accounts. */
async function resolveAccounts(trx: Transaction<Database>, refs: readonly AccountRef[]): Promise<Map<string, string>> {
  const unique = [...new Map(refs.map((r) => [accountKey(r), r])).values()];
  await trx
    .insertInto('ledger_accounts')
    .values(unique.map((r) => ({ code: r.code, asset: r.asset, allow_negative: r.allowNegative })))
    .onConflict((oc) => oc.columns(['code', 'asset']).doNothing())
    .execute();
  // A separate statement, so rows another transaction committed while we waited on the conflict are visible.
  const rows = await trx
    .selectFrom('ledger_accounts')
    .select(['id', 'code', 'asset', 'allow_negative'])
    .where((eb) => eb.or(unique.map((r) => eb.and([eb('code', '=', r.code), eb('asset', '=', r.asset)]))))
    .execute();
  const ids = new Map(rows.map((r) => [accountKey(r), r.id]));
  for (const r of unique) {
    const row = rows.find((x) => accountKey(x) === accountKey(r));
    if (!row) throw new Error(`ledger account ${accountKey(r)} could not be resolved`);
    if (row.allow_negative !== r.allowNegative) throw new Error(`ledger account ${accountKey(r)} exists with a different allow_negative`);
  }
  return ids;
}
