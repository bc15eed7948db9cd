/**
 * payrail_post_journal, the one writer of journals, called as the database function it is: accounts created where
 * missing and found by id from there on, entries in the journal's order, each balance moved by the sum of its entries,
 * and a journal that names an account with another allow_negative refused with nothing written.
 */
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkLedger, inLedgerGroup, postJournals } from '../../src/ledger/index.ts';
import type { Database } from '../../src/db/index.ts';
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

async function post(ref: string, lines: Line[], on: Kysely<Database> = db.db): Promise<string | null> {
  const codes = lines.map((l) => l.code);
  const assets = lines.map((l) => l.asset);
  const allowNegative = lines.map((l) => l.allowNegative);
  const amounts = lines.map((l) => l.amount.toString());
  const { rows } = await sql<{ id: string | null }>`
    select payrail_post_journal('test', ${ref}, ${codes}::text[], ${assets}::text[], ${allowNegative}::boolean[],
      ${amounts}::numeric[])::text as id`.execute(on);
  return rows[0]?.id ?? null;
}

async function entriesOf(journalId: string) {
  const { rows } = await sql<{ code: string; asset: string; amount: string }>`
    select a.code, a.asset, e.amount::text from ledger_entries e join ledger_accounts a on a.id = e.account_id
    where e.journal_id = ${journalId} order by e.id`.execute(db.db);
  return rows;
}

async function balance(code: string, asset: string, on: Kysely<Database> = db.db): Promise<string | undefined> {
  const { rows } = await sql<{ balance: string }>`
    select balance::text from ledger_accounts where code = ${code} and asset = ${asset}`.execute(on);
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

/** A channel's per-day sums against its entries: what statements read must be what the entries say. */
async function daysMatchEntries(channelId: string): Promise<{ days: string; entries: string }> {
  const { rows } = await sql<{ days: string; entries: string }>`
    select (select coalesce(sum(available), 0)::text from ledger_channel_days where channel_id = ${channelId}) as days,
           (select coalesce(sum(e.amount), 0)::text from ledger_entries e join ledger_accounts a on a.id = e.account_id
            where a.code = ${`channel:${channelId}`}) as entries`.execute(db.db);
  return rows[0] as { days: string; entries: string };
}

describe('a ledger group (several journals, their balances applied at its end)', () => {
  it('books each journal with its entries, and moves the balances and per-day sums once, at its end', async () => {
    await post('group-before', [world(-10n), owner('-2001', 10n)]);
    const worldBefore = BigInt((await balance('world:test', 'eth')) as string);
    await db.db.transaction().execute(async (trx) => {
      const booked = await inLedgerGroup(trx, async () => {
        const ids = [
          await post('group-a', [owner('-2001', -4n), world(4n)], trx),
          await post('group-b', [owner('-2001', -6n), owner('-2002', 6n)], trx),
          // Once per (kind, ref), in a group too: nothing is added twice at its end.
          await post('group-a', [owner('-2001', -4n), world(4n)], trx),
        ];
        // Inside the group the balances are not moved yet: its owners read none.
        expect(await balance('channel:-2001', 'eth', trx)).toBe('10');
        expect(await balance('channel:-2002', 'eth', trx)).toBe('0');
        return ids;
      });
      expect(booked[2]).toBeNull();
      expect(await balance('channel:-2001', 'eth', trx)).toBe('0');
    });
    expect(await balance('channel:-2001', 'eth')).toBe('0');
    expect(await balance('channel:-2002', 'eth')).toBe('6');
    expect(await balance('world:test', 'eth')).toBe(String(worldBefore + 4n));
    for (const channel of ['-2001', '-2002']) {
      const { days, entries } = await daysMatchEntries(channel);
      expect(days).toBe(entries);
    }
    expect((await checkLedger(db.db)).ok).toBe(true);
  });

  it('that would leave an account that may not go negative below zero fails at its end, and nothing of it is kept', async () => {
    await post('short-before', [world(-5n), owner('-2003', 5n)]);
    const before = await journalCount();
    await expect(
      db.db.transaction().execute((trx) =>
        inLedgerGroup(trx, async () => {
          await post('short-a', [owner('-2003', -3n), world(3n)], trx);
          await post('short-b', [owner('-2003', -3n), world(3n)], trx);
        }),
      ),
    ).rejects.toThrow(/ledger_accounts_check|violates check constraint/);
    expect(await journalCount()).toBe(before);
    expect(await balance('channel:-2003', 'eth')).toBe('5');
    expect((await checkLedger(db.db)).ok).toBe(true);
  });

  it('postJournals books several journals in one statement as postJournal books each, and only inside a group', async () => {
    await post('many-before', [world(-20n), owner('-2005', 20n)]);
    const journal = (ref: string, from: string, to: string, amount: bigint) => ({
      kind: 'test',
      ref,
      entries: [
        { account: { code: `channel:${from}`, asset: 'eth', allowNegative: false }, amount: -amount },
        { account: { code: `channel:${to}`, asset: 'eth', allowNegative: false }, amount },
      ],
    });
    const ids = await db.db
      .transaction()
      .execute((trx) =>
        inLedgerGroup(trx, () =>
          postJournals(trx, [
            journal('many-a', '-2005', '-2006', 7n),
            journal('many-b', '-2005', '-2007', 5n),
            journal('many-before', '-2005', '-2007', 1n),
          ]),
        ),
      );
    // In the order given; one already booked under its (kind, ref) is not booked again.
    expect(ids[2]).toBeNull();
    expect(await entriesOf(ids[0] as string)).toEqual([
      { code: 'channel:-2005', asset: 'eth', amount: '-7' },
      { code: 'channel:-2006', asset: 'eth', amount: '7' },
    ]);
    expect(await entriesOf(ids[1] as string)).toEqual([
      { code: 'channel:-2005', asset: 'eth', amount: '-5' },
      { code: 'channel:-2007', asset: 'eth', amount: '5' },
    ]);
    expect(await balance('channel:-2005', 'eth')).toBe('8');
    expect(await balance('channel:-2006', 'eth')).toBe('7');
    expect(await balance('channel:-2007', 'eth')).toBe('5');

    const before = await journalCount();
    await expect(
      db.db.transaction().execute((trx) => postJournals(trx, [journal('many-outside', '-2005', '-2006', 1n)])),
    ).rejects.toThrow('postJournals books inside a ledger group only');
    expect(await journalCount()).toBe(before);
    expect(await balance('channel:-2005', 'eth')).toBe('8');
    expect((await checkLedger(db.db)).ok).toBe(true);
  });

  it('is opened once per transaction, never inside an intake group, and ended only where it was opened', async () => {
    await expect(
      db.db.transaction().execute(async (trx) => {
        await sql`select payrail_ledger_group_begin()`.execute(trx);
        await sql`select payrail_ledger_group_begin()`.execute(trx);
      }),
    ).rejects.toThrow('a ledger group is already open in this transaction');
    await expect(
      db.db.transaction().execute(async (trx) => {
        await sql`select set_config('payrail.intake_group', txid_current()::text, true)`.execute(trx);
        await sql`select payrail_ledger_group_begin()`.execute(trx);
      }),
    ).rejects.toThrow('a ledger group is already open in this transaction');
    await expect(
      db.db.transaction().execute((trx) => sql`select payrail_ledger_group_end()`.execute(trx)),
    ).rejects.toThrow('no ledger group is open in this transaction');
    // A mark left by another transaction (a session setting, a pooled connection) is no group: balances move at once.
    await sql`select set_config('payrail.ledger_group', '1', false)`.execute(db.db);
    try {
      await post('not-a-group', [world(-2n), owner('-2004', 2n)]);
      expect(await balance('channel:-2004', 'eth')).toBe('2');
    } finally {
      await sql`reset payrail.ledger_group`.execute(db.db);
    }
  });
});
