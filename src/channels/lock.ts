/**
 * The channel's credit lock: a transaction-scoped advisory lock keyed by the channel id, so that a channel save and
 * the credits booked from that channel never interleave. Every path that credits a payment from a channel it reads
 * takes it SHARED before that read; a save takes it EXCLUSIVE before it writes the channel, and holds it through
 * moving the channel's payments to its new strategy (rehomeChannelPayments) until its commit.
 *
 * - A save waits for the credits of its channel already under way: when it moves the channel's payments, every credit
 *   that read the version before it has committed and is moved too.
 * - A credit arriving during a save waits for its commit, then reads the version it wrote (READ COMMITTED: the read
 *   after the lock statement takes a new snapshot, in a PL/pgSQL function as well).
 * - Credits never wait for one another on it: shared advisory locks live in the lock manager only, with no tuple
 *   written, and the channel row itself is never locked by intake.
 *
 * Lock order, so that no wait can close a cycle: a crediting transaction takes this lock as its first lock, before
 * any payment row or ledger balance lock; a save takes it first as well, before the channel's row lock and before the
 * payment rows its strategy switch updates. A credit therefore never holds what a save waits for while itself waiting
 * for the save (and a credit queued behind a waiting save holds nothing yet).
 */
import { sql, type RawBuilder, type Transaction } from 'kysely';
import type { Database } from '../db/index.ts';

/**
 * The lock's key. Migration 026's payrail_channel_lock_key computes the same expression for the one-call intake; a
 * test holds the two equal.
 */
export function channelLockKey(channelId: string): RawBuilder<string> {
  return sql<string>`hashtextextended(${`channel:${channelId}`}::text, 0)`;
}

/** Before a credit reads the channel: waits only for a save of that channel, never for another credit. */
export async function lockChannelForCredit(trx: Transaction<Database>, channelId: string): Promise<void> {
  await sql`select pg_advisory_xact_lock_shared(${channelLockKey(channelId)})`.execute(trx);
}

/** Before a save writes the channel: waits for the credits of that channel under way, and holds off new ones. */
export async function lockChannelForSave(trx: Transaction<Database>, channelId: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(${channelLockKey(channelId)})`.execute(trx);
}
