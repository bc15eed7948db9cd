import os from 'node:os';
import { sql } from 'kysely';
import type { Db } from '../db/index.ts';
import type { Logger } from '../log.ts';

export interface HeartbeatOptions {
  workerId: string;
  intervalMs: number;
  /** A process unseen for this long is dead: its queue locks are released for the living. */
  staleSeconds: number;
  /** The queue's worker ids inside this process (they name the locks it holds). */
  queueWorkerIds: () => string[];
  logger: Logger;
}

/**
 * A worker process announces itself every `intervalMs`; /health counts the recent ones. Each beat also releases the
 * jobs and queues locked by processes that stopped beating (a SIGKILL leaves its locks behind; the queue alone would
 * keep them for four hours). Steps are idempotent, so a job released from a frozen-but-alive process and run again
 * elsewhere repeats no outside effect.
 */
export async function startHeartbeat(
  db: Db,
  options: HeartbeatOptions,
): Promise<{ stop(options?: { keepRow?: boolean }): Promise<void> }> {
  const { workerId, logger } = options;
  let lastOwnBeatAt = 0;
  const beat = async () => {
    try {
      // After our own beats failed (a database outage), everyone looks stale: reap nobody until we beat again.
      const reapAllowed = Date.now() - lastOwnBeatAt <= 2 * options.intervalMs;
      const ids = options.queueWorkerIds();
      await db
        .insertInto('worker_heartbeats')
        .values({ worker_id: workerId, hostname: os.hostname(), pid: process.pid, queue_worker_ids: ids })
        .onConflict((oc) => oc.column('worker_id').doUpdateSet({ last_seen_at: sql`now()`, queue_worker_ids: ids }))
        .execute();
      lastOwnBeatAt = Date.now();
      if (!reapAllowed) return;
      const reaped = await sql<{ worker_id: string; queue_worker_ids: string[] }>`
        with dead as (
          delete from worker_heartbeats where last_seen_at < now() - make_interval(secs => ${options.staleSeconds})
          returning worker_id, queue_worker_ids),
        unlocked as (
          select graphile_worker.force_unlock_workers(coalesce((select array_agg(id) from dead, unnest(dead.queue_worker_ids) as id), '{}')))
        select dead.worker_id, dead.queue_worker_ids from dead, unlocked`.execute(db);
      for (const row of reaped.rows) {
        logger.warn(
          { event: 'worker_reaped', deadWorkerId: row.worker_id, queueWorkerIds: row.queue_worker_ids },
          'released the queue locks of a worker that stopped beating',
        );
      }
    } catch (error) {
      logger.warn({ event: 'heartbeat_failed', workerId, err: (error as Error).message }, 'worker heartbeat failed');
    }
  };
  // The first beat is written before the worker reports itself started.
  let pending = beat();
  await pending;
  const timer = setInterval(() => {
    pending = beat();
  }, options.intervalMs);
  timer.unref();
  return {
    /**
     * keepRow: leave our row to go stale, so a live worker reaps (force-unlocks) the jobs and queues we may still hold
     * (after our queue runner failed, its locks were never released; deleting the row would hide them for 4 hours).
     */
    async stop(stopOptions: { keepRow?: boolean } = {}) {
      clearInterval(timer);
      await pending;
      if (stopOptions.keepRow) return;
      await db
        .deleteFrom('worker_heartbeats')
        .where('worker_id', '=', workerId)
        .execute()
        .catch(() => undefined);
    },
  };
}
