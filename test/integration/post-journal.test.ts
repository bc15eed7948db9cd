/**
 * payrail_post_journal, the one writer of journals, called as the database function it is: accounts created where
 * missing and found by id from there on, entries in the journal's order, each balance moved by the sum of its entries,
 * and a journal that names an account with another allow_negative refused with nothing written.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkLedger } from '../../src/ledger/index.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => db?.close());

interface Line {
  code: string;
  asset: string;
  allowNegative: boolean;
  amount: bigint;
}

async function post(ref: string, lines: Line[]): Promise<string | null> {
  const codes = lines.map((l) => l.code);
  const assets = lines.map((l) => l.asset);
  const allowNegative = lines.map((l) => l.allowNegative);
  const amounts = lines.map((l) => l.amount.toString());
  const { rows } = await sql<{ id: string | null }>`
    select payrail_post_journal('test', ${ref}, ${codes}::text[], ${assets}::text[], ${allowNegative}::boolean[],
      ${amounts}::numeric[])::text as id`.execute(db.db);
  return rows[0]?.id ?? null;
}

async function entriesOf(journalId: string) {
  const { rows } = await sql<{ code: string; asset: string; amount: string }>`
    select a.code, a.asset, e.amount::text from ledger_entries e join ledger_accounts a on a.id = e.account_id
    where e.journal_id = ${journalId} order by e.id`.execute(db.db);
  return rows;
}

async function balance(code: string, asset: string): Promise<string | undefined> {
  const { rows } = await sql<{ balance: string }>`
    select balance::text from ledger_accounts where code = ${code} and asset = ${asset}`.execute(db.db);
  return rows[0]?.balance;
}

async function journalCount(): Promise<number | undefined> {
  return (await sql<{ n: number }>`select count(*)::int as n from ledger_journals`.execute(db.db)).rows[0]?.n;
}

const world = (amount: bigint): Line => ({ code: 'world:test', asset: 'eth', allowNegative: true, amount });
const owner = (id: string, amount: bigint): Line => ({
  code: `channel:${id}`,
  asset: 'eth',
  allowNegative: false,
  amount,
});

describe('payrail_post_journal', () => {
  it('creates the missing accounts, writes the entries in order and moves each balance by the sum of its entries', async () => {
    expect(await post('first', [world(-10n), owner('-1001', 4n), owner('-1002', 6n)])).not.toBeNull();
    // Existing and new accounts mixed, one account named twice.
    const second = await post('second', [owner('-1003', 5n), world(-8n), owner('-1001', 1n), owner('-1001', 2n)]);
    expect(await entriesOf(second as string)).toEqual([
      { code: 'channel:-1003', asset: 'eth', amount: '5' },
      { code: 'world:test', asset: 'eth', amount: '-8' },
      { code: 'channel:-1001', asset: 'eth', amount: '1' },
      { code: 'channel:-1001', asset: 'eth', amount: '2' },
    ]);
    expect(await balance('world:test', 'eth')).toBe('-18');
    expect(await balance('channel:-1001', 'eth')).toBe('7');
    expect(await balance('channel:-1002', 'eth')).toBe('6');
    expect(await balance('channel:-1003', 'eth')).toBe('5');
    // Once per (kind, ref): a second posting of a ref writes nothing.
    expect(await post('second', [owner('-1003', 5n), world(-5n)])).toBeNull();
    expect(await balance('channel:-1003', 'eth')).toBe('5');
    expect((await checkLedger(db.db)).ok).toBe(true);
  });

  it('refuses a journal naming an account with another allow_negative, and writes nothing of it', async () => {
    await post('before', [world(-3n), owner('-1004', 3n)]);
    const before = await journalCount();
    const lying = { ...owner('-1004', 1n), allowNegative: true };
    await expect(post('lying', [world(-1n), lying])).rejects.toThrow(
      'journal test:lying names an account with a different allow_negative',
    );
    // With a new account beside it: the refusal undoes the whole call, the new account included.
    await expect(post('lying-new', [world(-2n), owner('-1005', 1n), lying])).rejects.toThrow(
      'journal test:lying-new names an account with a different allow_negative',
    );
    expect(await journalCount()).toBe(before);
    expect(await balance('channel:-1004', 'eth')).toBe('3');
    expect(await balance('channel:-1005', 'eth')).toBeUndefined();
    expect((await checkLedger(db.db)).ok).toBe(true);
  });
});
