/**
 * A transaction that brought money to the host wallet is booked for one thing only: a conversion's USDT payout, a
 * refund, or an operator's deposit. Each of those paths takes this lock on the hash in its transaction before it
 * looks for another use, so two of them cannot book the same hash at once.
 */
import { sql, type Transaction } from 'kysely';
import type { Database } from '../db/index.ts';

export async function lockInboundHash(trx: Transaction<Database>, hash: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtextextended(${`inbound:${hash.toLowerCase()}`}, 0))`.execute(trx);
}

/** True when the hash is booked as an operator's deposit. */
export async function isBookedDeposit(trx: Transaction<Database>, hash: string): Promise<boolean> {
  const row = await trx
    .selectFrom('ledger_journals')
    .select('id')
    .where('kind', '=', 'wallet_deposit')
    .where('ref', '=', hash.toLowerCase())
    .executeTakeFirst();
  return row !== undefined;
}
