import os from 'node:os';
import { sql } from 'kysely';
import type { Db } from '../db/index.ts';
import type { Logger } from '../log.ts';

/** A worker process announces itself every `intervalMs`; /health counts the recent ones. */
export async function startHeartbeat(db: Db, workerId: string, intervalMs: number, logger: Logger): Promise<{ stop(): Promise<void> }> {
  const beat = () =>
    db
      .insertInto('worker_heartbeats')
      .values({ worker_id: workerId, hostname: os.hostname(), pid: process.pid })
      .onConflict((oc) => oc.column('worker_id').doUpdateSet({ last_seen_at: sql`now()` }))
      .execute()
      .catch((error: Error) => logger.warn({ event: 'heartbeat_failed', workerId, err: error.message }, 'worker heartbeat failed'));
  // The first beat is written before the worker reports itself started.
  let pending = beat();
  await pending;
  const timer = setInterval(() => {
    pending = beat();
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await pending;
      await db.deleteFrom('worker_heartbeats').where('worker_id', '=', workerId).execute().catch(() => undefined);
    },
  };
}
