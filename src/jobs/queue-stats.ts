import { sql } from 'kysely';
import type { Db } from '../db/index.ts';

export interface TaskQueueStats {
  readonly task: string;
  /** Due now and not locked: waiting for a worker. */
  readonly runnable: number;
  readonly running: number;
  /** Out of attempts: needs a human. */
  readonly failed: number;
  readonly oldestRunnableAgeSeconds: number | null;
}

export async function queueStats(db: Db): Promise<TaskQueueStats[]> {
  const result = await sql<{ task: string; runnable: number; running: number; failed: number; oldest_age: string | null }>`
    select t.identifier as task,
           count(*) filter (where j.is_available and j.run_at <= now())::int as runnable,
           count(*) filter (where j.locked_at is not null)::int as running,
           count(*) filter (where j.attempts >= j.max_attempts)::int as failed,
           extract(epoch from now() - min(j.run_at) filter (where j.is_available and j.run_at <= now()))::bigint::text as oldest_age
    from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
    group by t.identifier order by t.identifier`.execute(db);
  return result.rows.map((r) => ({
    task: r.task,
    runnable: r.runnable,
    running: r.running,
    failed: r.failed,
    oldestRunnableAgeSeconds: r.oldest_age === null ? null : Number(r.oldest_age),
  }));
}

export async function liveWorkers(db: Db, staleSeconds: number): Promise<number> {
  const result = await sql<{ n: number }>`
    select count(*)::int as n from worker_heartbeats where last_seen_at > now() - make_interval(secs => ${staleSeconds})`.execute(db);
  return result.rows[0]?.n ?? 0;
}
