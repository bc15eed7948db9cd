/**
 * What payrail reads of the queue's state, in one place, through graphile-worker's public surface: the
 * `graphile_worker.jobs` view and its SQL functions (add_job in enqueue.ts, force_unlock_workers in heartbeat.ts,
 * complete_jobs and remove_job here). Its `_private_*` tables are its own and change between releases without notice; the view and
 * the functions are what it keeps. test/integration/queue-surface.test.ts pins every column and function used here
 * and in those two modules, so an upgrade that changes them fails there first.
 */
import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { Database } from '../db/index.ts';

/** The pool or a transaction: a read inside a transaction sees what it wrote. */
type Reader = Kysely<Database>;

/** A job that will still run: queued with attempts left, or running now (a running job may be on its last attempt). */
const LIVE_TEXT = '(j.locked_at is not null or j.attempts < j.max_attempts)';
const LIVE = sql.raw(LIVE_TEXT);

/**
 * An SQL condition, for use inside a query over payrail's own tables: no live job exists under any of these keys.
 * The view passes the key down to the queue's unique index on it: one lookup per key.
 */
export function noLiveJobWithKey(keys: readonly RawBuilder<unknown>[]): RawBuilder<unknown> {
  return sql`not exists (select 1 from graphile_worker.jobs j where j.key in (${sql.join(keys)}) and ${LIVE})`;
}

/** Of these job keys, the ones with a job that will still run. */
export async function liveJobKeys(db: Reader, keys: readonly string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const { rows } = await sql<{ key: string }>`
    select j.key from graphile_worker.jobs j where j.key = any(${[...keys]}::text[]) and ${LIVE}`.execute(db);
  return new Set(rows.map((r) => r.key));
}

/**
 * An SQL condition, for use inside a query over payrail's own tables: a job under this key waits in the queue (not
 * running, attempts left), work another run may take over, removing the job in the same commit.
 */
export function queuedJobWithKey(key: RawBuilder<unknown>): RawBuilder<boolean> {
  return sql<boolean>`exists (select 1 from graphile_worker.jobs j where j.key = ${key}
    and j.locked_at is null and j.attempts < j.max_attempts)`;
}

/**
 * Moves the jobs under these keys to now if they wait to run more than `laterThanMs` from now, not running and never
 * failed (one in its retry backoff keeps its schedule): graphile_worker.reschedule_jobs, which keeps their attempts and
 * priority and leaves a job a worker has locked alone, in one statement. It sends no notification (add_job does): a
 * moved job is taken at the workers' next poll (WORKER_POLL_INTERVAL_MS). Answers how many it moved.
 */
export async function bringForward(db: Reader, keys: readonly string[], laterThanMs: number): Promise<number> {
  if (keys.length === 0) return 0;
  const { rows } = await sql<{ id: string }>`
    select id from graphile_worker.reschedule_jobs(array(
      select j.id from graphile_worker.jobs j
      where j.key = any(${[...keys]}::text[]) and j.locked_at is null and j.attempts = 0
        and j.run_at > now() + make_interval(secs => ${laterThanMs / 1000})), run_at => now())`.execute(db);
  return rows.length;
}

/**
 * The keys of this task's jobs that wait to start, due now and never tried, oldest first: work another run may take
 * over, removing each job in the same commit. One that failed before is left to its own retry, which reports it.
 */
export async function queuedKeysOf(db: Reader, task: string, limit: number): Promise<string[]> {
  const { rows } = await sql<{ key: string }>`
    select j.key from graphile_worker.jobs j
    where j.task_identifier = ${task} and j.key is not null and j.locked_at is null and j.attempts = 0
      and j.run_at <= now()
    order by j.priority, j.run_at, j.id
    limit ${limit}`.execute(db);
  return rows.map((r) => r.key);
}

/**
 * Removes the jobs under these keys in the caller's transaction (graphile_worker.remove_job): a queued one is deleted,
 * a running one loses its key and its retries, so a job whose work another did in this transaction never runs again.
 */
export async function removeJobs(trx: Reader, keys: readonly string[]): Promise<void> {
  if (keys.length === 0) return;
  await sql`select graphile_worker.remove_job(k) from unnest(${[...keys]}::text[]) as k`.execute(trx);
}

/** Whether any job exists under this key, whatever its state (queued, running, or out of attempts). */
export async function jobWithKeyExists(db: Reader, key: string): Promise<boolean> {
  const { rows } = await sql<{
    found: boolean;
  }>`select exists (select 1 from graphile_worker.jobs where key = ${key}) as found`.execute(db);
  return rows[0]?.found === true;
}

export interface FailedJob {
  id: string;
  task: string;
  key: string | null;
  attempts: number;
  max_attempts: number;
  last_error: string | null;
  updated_at: Date;
}

/**
 * Jobs out of attempts and not running (a running job is on its last attempt, not failed). The queue keeps them until
 * someone removes or reschedules them. This also covers jobs whose worker died on their last attempt: the queue's
 * job:failed event never fired for them.
 */
export async function failedJobs(db: Reader): Promise<FailedJob[]> {
  const { rows } = await sql<FailedJob>`
    select j.id::text as id, j.task_identifier as task, j.key, j.attempts, j.max_attempts, j.last_error, j.updated_at
      from graphile_worker.jobs j
     where j.attempts >= j.max_attempts and j.locked_at is null
     order by j.id`.execute(db);
  return rows;
}

export interface TaskQueueStats {
  readonly task: string;
  /** Due now and not locked: waiting for a worker. */
  readonly runnable: number;
  readonly running: number;
  /** Out of attempts: needs a human. */
  readonly failed: number;
  readonly oldestRunnableAgeSeconds: number | null;
}

export async function queueStats(db: Reader): Promise<TaskQueueStats[]> {
  // Available: not locked and attempts left (the queue's own definition, which the view leaves out as a column).
  const available = sql`(j.locked_at is null and j.attempts < j.max_attempts)`;
  const result = await sql<{
    task: string;
    runnable: number;
    running: number;
    failed: number;
    oldest_age: string | null;
  }>`
    select j.task_identifier as task,
           count(*) filter (where ${available} and j.run_at <= now())::int as runnable,
           count(*) filter (where j.locked_at is not null)::int as running,
           count(*) filter (where j.attempts >= j.max_attempts)::int as failed,
           extract(epoch from now() - min(j.run_at) filter (where ${available} and j.run_at <= now()))::bigint::text as oldest_age
      from graphile_worker.jobs j
     group by j.task_identifier order by j.task_identifier`.execute(db);
  return result.rows.map((r) => ({
    task: r.task,
    runnable: r.runnable,
    running: r.running,
    failed: r.failed,
    oldestRunnableAgeSeconds: r.oldest_age === null ? null : Number(r.oldest_age),
  }));
}

/** The piece of a pg client or pool used here: what a task's helpers.withPgClient, the demo and the chaos run hold. */
interface PgClient {
  query(text: string, values?: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
}

/**
 * Removes the runs of `task` older than job `beforeJobId` that are out of attempts and not running, through the
 * queue's complete_jobs (which leaves a locked job alone). Returns how many it removed.
 */
export async function removeFailedRuns(client: PgClient, task: string, beforeJobId: string): Promise<number> {
  const { rows } = await client.query(
    `select count(*)::int as removed from graphile_worker.complete_jobs(array(
       select j.id from graphile_worker.jobs j
        where j.task_identifier = $1 and j.attempts >= j.max_attempts and j.locked_at is null and j.id < $2::bigint))`,
    [task, beforeJobId],
  );
  return Number(rows[0]?.removed ?? 0);
}

/**
 * An SQL expression for a query of the pg driver over payrail's own tables: how many jobs will still run, of every
 * task but those in the text[] parameter `param` (e.g. `$1`). The demo reads it with its stage counts, in one snapshot.
 */
export function liveJobCountSql(param: string): string {
  return `(select count(*)::int from graphile_worker.jobs j where j.task_identifier <> all (${param}::text[]) and ${LIVE_TEXT})`;
}

/** Whether a job of this task is running now. */
export async function taskRunning(client: PgClient, task: string): Promise<boolean> {
  const { rows } = await client.query(
    'select exists (select 1 from graphile_worker.jobs j where j.task_identifier = $1 and j.locked_at is not null) as running',
    [task],
  );
  return rows[0]?.running === true;
}

/** A job that will still run, by its key (null for an unkeyed one) and task. */
export interface LiveJob {
  key: string | null;
  task: string;
}

export async function liveJobs(client: PgClient): Promise<LiveJob[]> {
  const { rows } = await client.query(
    `select j.key, j.task_identifier as task from graphile_worker.jobs j where ${LIVE_TEXT} order by j.id`,
  );
  return rows as unknown as LiveJob[];
}

/**
 * Queues a job unless one of the same task will still run; returns whether it queued one. Two callers at once may
 * both find none: the job key is what keeps them to one job (add_job replaces a job under the same key, keeping its
 * run time).
 */
export async function addJobUnlessTaskLive(
  client: PgClient,
  job: { task: string; queue: string; key: string; maxAttempts: number; priority?: number },
): Promise<boolean> {
  const { rows } = await client.query(
    `select graphile_worker.add_job($1, '{}'::json, queue_name => $2, max_attempts => $3::int, job_key => $4,
                                    job_key_mode => 'preserve_run_at', priority => $5::int)
      where not exists (select 1 from graphile_worker.jobs j where j.task_identifier = $1 and ${LIVE_TEXT})`,
    [job.task, job.queue, job.maxAttempts, job.key, job.priority ?? 0],
  );
  return rows.length > 0;
}

/** Per task, the jobs whose last run failed (retrying or out of attempts): how many, and one of their errors. */
export interface TaskErrors {
  task: string;
  jobs: number;
  mostAttempts: number;
  lastError: string | null;
  /** The earliest next run among them (text, as PostgreSQL prints it). */
  nextRun: string;
}

export async function jobErrorsByTask(client: PgClient): Promise<TaskErrors[]> {
  const { rows } = await client.query(
    `select j.task_identifier as task, count(*)::int as jobs, max(j.attempts)::int as "mostAttempts",
            max(j.last_error) as "lastError", min(j.run_at)::text as "nextRun"
       from graphile_worker.jobs j where j.last_error is not null group by 1 order by 1`,
  );
  return rows as unknown as TaskErrors[];
}

/** For a person reading a run's end: the jobs per task, queue and whether running, with their oldest run and lock. */
export async function jobsOverview(client: PgClient): Promise<Array<Record<string, unknown>>> {
  const { rows } = await client.query(
    `select j.task_identifier, j.queue_name, j.locked_by is not null as locked, count(*)::int as n,
            min(j.run_at) as first_run_at, max(j.attempts) as max_attempts_used, min(j.locked_at) as oldest_lock,
            max(j.last_error) as an_error
       from graphile_worker.jobs j group by 1, 2, 3 order by 1`,
  );
  return rows;
}

/** Jobs pushed back by holdDueJobs: their ids, keys and the run_at they were given. */
export interface HeldJobs {
  readonly ids: readonly string[];
  readonly keys: readonly string[];
  /** Exact (text, to the microsecond): what releaseHeldJobs compares each job's run_at with. */
  readonly until: string | null;
}

/**
 * A task's jobs that wait to start under these keys, due now and never tried, pushed back by `ms` in one statement
 * (graphile_worker.reschedule_jobs, which leaves a job a worker holds alone): no worker takes them meanwhile. The
 * caller takes over those returned, and gives back what it does not finish with releaseHeldJobs.
 */
export async function holdDueJobs(db: Reader, keys: readonly string[], ms: number): Promise<HeldJobs> {
  if (keys.length === 0) return { ids: [], keys: [], until: null };
  const { rows } = await sql<{ id: string; key: string; run_at: string }>`
    select r.id::text as id, r.key, r.run_at::text as run_at
    from graphile_worker.reschedule_jobs(
      array(select j.id from graphile_worker.jobs j
            where j.key = any(${[...keys]}::text[]) and j.locked_at is null and j.attempts = 0 and j.run_at <= now()),
      run_at => now() + ${`${ms} milliseconds`}::interval) r`.execute(db);
  return { ids: rows.map((r) => r.id), keys: rows.map((r) => r.key), until: rows[0]?.run_at ?? null };
}

/**
 * The held jobs under these keys due now again, those still as holdDueJobs left them (not taken, run or queued again
 * by anyone since): one another step moved meanwhile keeps its own time.
 */
export async function releaseHeldJobs(db: Reader, held: HeldJobs, keys: readonly string[]): Promise<void> {
  if (held.until === null || keys.length === 0) return;
  await sql`
    select 1 from graphile_worker.reschedule_jobs(
      array(select j.id from graphile_worker.jobs j
            where j.id = any(${[...held.ids]}::bigint[]) and j.key = any(${[...keys]}::text[])
              and j.locked_at is null and j.attempts = 0 and j.run_at = ${held.until}::timestamptz),
      run_at => now())`.execute(db);
}
