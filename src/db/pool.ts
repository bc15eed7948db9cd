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
  /**
   * Connections of their own for the session locks a step holds across an outside call (src/pipeline/run-lock.ts).
   * A step holding one also takes connections of `db` for its work: on one pool, as many steps as connections would
   * each hold one and wait for another, and every job and webhook of the process would stop. Opened on first use.
   */
  readonly runLocks: Db;
  readonly connectionString: string;
  close(): Promise<void>;
}

export function openPool(
  connectionString: string,
  options: {
    max: number;
    applicationName: string;
    logger: Logger;
    /** The most run locks held at once: one per job running (WORKER_CONCURRENCY), none in a web-only process. */
    runLockMax?: number;
  },
): DatabaseHandle {
  const pool = newPool(connectionString, options.max, options.applicationName, options.logger);
  const lockPool = newPool(
    connectionString,
    options.runLockMax ?? 4,
    `${options.applicationName}-locks`,
    options.logger,
  );
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const runLocks = new Kysely<Database>({ dialect: new PostgresDialect({ pool: lockPool }) });
  return {
    db,
    pool,
    runLocks,
    connectionString,
    async close() {
      // Kysely only ends a pool it has used; end it ourselves when only raw queries ran on it.
      // Both pools end even when one fails to; the first failure is the one reported.
      const ended = await Promise.allSettled([
        db.destroy().then(() => (pool.ended ? undefined : pool.end())),
        runLocks.destroy().then(() => (lockPool.ended ? undefined : lockPool.end())),
      ]);
      const failed = ended.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    },
  };
}

function newPool(connectionString: string, max: number, applicationName: string, logger: Logger): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max,
    application_name: applicationName,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    // A statement that hangs must not hold a webhook or a job forever.
    statement_timeout: 30_000,
  });
  // An idle client losing its server (a PostgreSQL restart) emits here; without a listener it would crash the
  // process. The pool replaces the client; the next query reports any lasting outage.
  const onClientError = (error: Error) =>
    logger.warn({ event: 'db_client_error', err: error.message }, 'database client lost');
  pool.on('error', onClientError);
  pool.on('connect', (client) => client.on('error', onClientError));
  return pool;
}
