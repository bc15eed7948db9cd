/**
 * A ledger group: several journals booked in one transaction, their balances applied together at its end (migration
 * 033). Each journal locks its balance rows as it books; a transaction booking several owners' journals one after
 * the other would lock them in an order no single journal shares, and hold the shared rows (world:payees, the gas
 * accounts) through the rest of its work. In a group the rows are locked once, in id order, at the end.
 *
 * Inside the group the balances it touches are not yet updated: what runs in it must not read them. A group that
 * would leave an account that may not go negative below zero fails at its end, with everything in its transaction.
 */
import { sql, type Transaction } from 'kysely';
import type { Database } from '../db/index.ts';

/** Runs `book` with every journal it posts left to the group's end; returns its result once the balances are applied. */
export async function inLedgerGroup<T>(trx: Transaction<Database>, book: () => Promise<T>): Promise<T> {
  await sql`select payrail_ledger_group_begin()`.execute(trx);
  const result = await book();
  await sql`select payrail_ledger_group_end()`.execute(trx);
  return result;
}
