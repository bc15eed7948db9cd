import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../src/db/index.ts';
import { accounts, checkLedger, UnbalancedJournalError } from '../../src/ledger/index.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { bookJournal, movement } from '../support/ledger-posts.ts';

let db: TestDatabase;

beforeAll(async () => {
  // This file breaks the ledger on purpose: its database is left out of the end-of-suite check.
  db = await createTestDatabase({ prefix: 'tamper' });
});
afterAll(async () => db?.close());

describe('postJournal', () => {
  it('refuses an unbalanced journal before writing anything', async () => {
    await expect(
      bookJournal(db, {
        kind: 'test',
        ref: 'unbalanced',
        entries: [
          { account: accounts.changenow('eth'), amount: -10n },
          { account: accounts.channel('-1001', 'eth'), amount: 9n },
        ],
      }),
    ).rejects.toThrow(UnbalancedJournalError);
    expect((await sql<{ n: number }>`select count(*)::int as n from ledger_journals`.execute(db.db)).rows[0]?.n).toBe(
      0,
    );
  });

  it('books a journal once per (kind, ref)', async () => {
    const journal = movement('test', 'once', accounts.changenow('eth'), accounts.channel('-1001', 'eth'), 10n);
    const first = await bookJournal(db, journal);
    const second = await bookJournal(db, journal);
    expect(first.posted).toBe(true);
    expect(second).toEqual({ posted: false, journalId: first.journalId });
    const balance = await db.db
      .selectFrom('ledger_accounts')
      .select('balance')
      .where('code', '=', 'channel:-1001')
      .executeTakeFirstOrThrow();
    expect(balance.balance).toBe('10');
  });

  it('never lets a channel balance go below zero (the database refuses it)', async () => {
    await expect(
      bookJournal(db, movement('test', 'overdraw', accounts.channel('-1001', 'eth'), accounts.changenow('eth'), 11n)),
    ).rejects.toThrow(/ledger_accounts_check|violates check constraint/);
  });

  it('keeps journals and entries append-only', async () => {
    await expect(sql`update ledger_entries set amount = amount + 1`.execute(db.db)).rejects.toThrow(/append-only/);
    await expect(sql`delete from ledger_journals`.execute(db.db)).rejects.toThrow(/append-only/);
    await expect(sql`truncate ledger_entries`.execute(db.db)).rejects.toThrow(/append-only/);
  });
});

describe('checkLedger', () => {
  it('passes on a consistent ledger', async () => {
    const report = await checkLedger(db.db);
    expect(report).toMatchObject({ ok: true, problems: [] });
  });

  it('names the account whose balance drifted from its entries', async () => {
    await sql`update ledger_accounts set balance = balance + 1 where code = 'channel:-1001'`.execute(db.db);
    const report = await checkLedger(db.db);
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual([
      {
        rule: 'balance_matches_entries',
        subject: 'account channel:-1001/eth',
        detail: 'balance 11 but entries sum to 10',
      },
    ]);
    await sql`update ledger_accounts set balance = balance - 1 where code = 'channel:-1001'`.execute(db.db);
  });

  it('finds an unbalanced journal written around the posting code', async () => {
    await sql`alter table ledger_entries disable trigger ledger_entries_append_only`.execute(db.db);
    await sql`update ledger_entries set amount = amount + 5 where amount = 10`.execute(db.db);
    await sql`alter table ledger_entries enable trigger ledger_entries_append_only`.execute(db.db);
    const report = await checkLedger(db.db);
    expect(report.problems.map((p) => p.rule).sort()).toEqual(['balance_matches_entries', 'journal_balances']);
    expect(report.problems.find((p) => p.rule === 'journal_balances')?.detail).toBe('eth entries sum to 5, not 0');
  });
});

describe('migrations', () => {
  it('are safe to run twice (the second run applies nothing)', async () => {
    expect(await migrate(db.pool)).toEqual([]);
    expect(await migrate(db.pool)).toEqual([]);
  });
});
