/**
 * Reading events in a stable order. Sequence numbers are handed out when rows are written, not when their
 * transactions commit, so "every event after seq 41" read now can miss seq 40 committing a moment later. Readers
 * therefore order by (txid, seq) and only see events of transactions older than the oldest one still running
 * (pg_snapshot_xmin): nothing can ever appear behind a position once it has been read past. The price is latency
 * while a long transaction runs anywhere in the database: events wait for it to end.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database } from '../db/index.ts';
import type { EventBody, EventType } from './types.ts';

/** A position in the event stream: after every event up to (txid, seq). */
export interface Position {
  readonly txid: string;
  readonly seq: string;
}

export const START: Position = { txid: '0', seq: '0' };

const CURSOR_RE = /^([0-9]{1,20})\.([0-9]{1,19})$/;

/** Cursors are opaque to callers; inside they are "txid.seq". */
export function encodeCursor(position: Position): string {
  return `${position.txid}.${position.seq}`;
}

/** The position a cursor names, or null for text that is not a cursor. */
export function decodeCursor(text: string): Position | null {
  const match = CURSOR_RE.exec(text);
  if (!match) return null;
  const [txid, seq] = [match[1] as string, match[2] as string];
  // Beyond xid8 and bigint: no event is there, and the database would refuse the cast.
  if (BigInt(txid) > 2n ** 64n - 1n || BigInt(seq) > 2n ** 63n - 1n) return null;
  return { txid, seq };
}

export interface EventRow {
  seq: string;
  id: string;
  txid: string;
  type: string;
  subject: string;
  data: Record<string, unknown>;
  created_at: Date;
}

export function toBody(row: Pick<EventRow, 'seq' | 'id' | 'type' | 'subject' | 'data' | 'created_at'>): EventBody {
  return {
    id: row.id,
    sequence: row.seq,
    type: row.type as EventType,
    createdAt: row.created_at.toISOString(),
    subject: row.subject,
    data: row.data,
  };
}

/** Events after `after` that every later read will also see, in their stable order; `types` filters. */
export async function readEvents(
  db: Kysely<Database> | Transaction<Database>,
  options: { after: Position; types?: readonly string[] | undefined; limit: number },
): Promise<EventRow[]> {
  const types = options.types && options.types.length > 0 ? options.types : null;
  const result = await sql<EventRow>`
    select seq::text as seq, id::text as id, txid::text as txid, type, subject, data, created_at
    from events
    where txid < pg_snapshot_xmin(pg_current_snapshot())
      and (txid, seq) > (${options.after.txid}::xid8, ${options.after.seq}::bigint)
      and (${types}::text[] is null or type = any(${types}::text[]))
    order by txid, seq
    limit ${options.limit}`.execute(db);
  return result.rows;
}

/** The position every event of a transaction still running will come after: where a new reader starts "now". */
export async function currentHorizon(db: Kysely<Database> | Transaction<Database>): Promise<Position> {
  const result = await sql<{ txid: string }>`select pg_snapshot_xmin(pg_current_snapshot())::text as txid`.execute(db);
  return { txid: result.rows[0]?.txid ?? '0', seq: '0' };
}
