/**
 * Writing an event: one INSERT in the caller's transaction, so the event exists if and only if the change it reports
 * committed. Nothing else happens here (no job, no lock): intake's transaction stays one short statement longer.
 */
import type { Transaction } from 'kysely';
import type { Database } from '../db/index.ts';
import type { NewEvent } from './types.ts';

export async function emitEvent(trx: Transaction<Database>, event: NewEvent): Promise<void> {
  await trx
    .insertInto('events')
    .values({ type: event.type, subject: event.subject, data: JSON.stringify(event.data) })
    .execute();
}

export async function emitEvents(trx: Transaction<Database>, events: readonly NewEvent[]): Promise<void> {
  if (events.length === 0) return;
  await trx
    .insertInto('events')
    .values(events.map((e) => ({ type: e.type, subject: e.subject, data: JSON.stringify(e.data) })))
    .execute();
}
