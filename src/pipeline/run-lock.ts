/**
 * One run of a step per subject at a time, even when its job is delivered twice at once. A session advisory lock on
 * a dedicated connection is held across the outside call: the step's intent row must commit before that call, so a
 * row lock inside one transaction cannot cover it. That connection comes from the run-lock pool, never from the
 * pool the step works on: holding one of those while asking for another stopped every job and webhook of a process
 * whose running jobs outnumbered its connections.
 */
import { sql } from 'kysely';
import type { Db } from '../db/index.ts';

export class RunLocked extends Error {
  override name = 'RunLocked';
}

/** @param locks the run-lock pool (DatabaseHandle.runLocks, StageDeps.runLocks). */
export async function withRunLock<T>(locks: Db, key: string, run: () => Promise<T>): Promise<T> {
  return locks.connection().execute(async (conn) => {
    const locked = await sql<{ ok: boolean }>`select pg_try_advisory_lock(hashtext(${key})) as ok`.execute(conn);
    if (!locked.rows[0]?.ok) throw new RunLocked(`${key} is being handled by another run`);
    try {
      return await run();
    } finally {
      await sql`select pg_advisory_unlock(hashtext(${key}))`.execute(conn);
    }
  });
}

/**
 * withRunLock for several subjects on one connection: `run` gets the keys this call holds (another run holds the
 * rest, which the caller leaves alone). All of them are released when `run` ends.
 */
export async function withRunLocks<T>(
  locks: Db,
  keys: readonly string[],
  run: (held: ReadonlySet<string>) => Promise<T>,
): Promise<T> {
  return locks.connection().execute(async (conn) => {
    const { rows } = await sql<{ key: string }>`
      select k as key from unnest(${[...keys]}::text[]) as k where pg_try_advisory_lock(hashtext(k))`.execute(conn);
    const held = new Set(rows.map((r) => r.key));
    try {
      return await run(held);
    } finally {
      if (held.size > 0)
        await sql`select pg_advisory_unlock(hashtext(k)) from unnest(${[...held]}::text[]) as k`.execute(conn);
    }
  });
}
