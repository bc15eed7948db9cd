import pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
import type { Logger } from '../log.ts';
import type { Database } from './schema.ts';

// NUMERIC and BIGINT arrive as strings (pg's default); keep it that way so no amount is ever a JS number.
// Only INT4 and smaller become numbers, and those are counters, never money.

export type Db = Kysely<Database>;

export interface DatabaseHandle {
  readonly db: Db;
  readonly pool: pg.Pool;
  readonly connectionString: string;
  close(): Promise<void>;
}

export function openPool(
  connectionString: string,
  options: { max: number; applicationName: string; logger: Logger },
): DatabaseHandle {
  const pool = new pg.Pool({
    connectionString,
    max: options.max,
    application_name: options.applicationName,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    // A statement that hangs must not hold a webhook or a job forever.
    statement_timeout: 30_000,
  });
  // An idle client losing its server (a PostgreSQL restart) emits here; without a listener it would crash the
  // process. The pool replaces the client; the next query reports any lasting outage.
  const onClientError = (error: Error) =>
    options.logger.warn({ event: 'db_client_error', err: error.message }, 'database client lost');
  pool.on('error', onClientError);
  pool.on('connect', (client) => client.on('error', onClientError));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return {
    db,
    pool,
    connectionString,
    async close() {
      // Kysely only ends a pool it has used; end it ourselves when only raw queries ran on it.
      await db.destroy();
      if (!pool.ended) await pool.end();
    },
  };
}
