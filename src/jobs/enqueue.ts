import { sql, type Transaction } from 'kysely';
import type { Database } from '../db/index.ts';
import type { TaskName, TaskPayloads } from './tasks.ts';

export interface EnqueueOptions {
  /** Dedupe key: while a job with this key is pending, no second one is created. */
  jobKey?: string;
  /**
   * 'preserve_run_at' (default here) updates a pending job with the same key without delaying it;
   * 'unsafe_dedupe' leaves an existing job (even a running one) untouched.
   */
  jobKeyMode?: 'replace' | 'preserve_run_at' | 'unsafe_dedupe';
  /** Jobs sharing a queue name run one at a time, in order. */
  queueName?: string;
  runAt?: Date;
  /** Taken before ready jobs of a larger number (graphile-worker's order: priority, then run_at). Default 0. */
  priority?: number;
  maxAttempts: number;
}

/**
 * The one way to queue work: inside the caller's transaction, so the job exists if and only if the state change
 * that calls for it committed.
 */
export async function enqueue<T extends TaskName>(
  trx: Transaction<Database>,
  task: T,
  payload: TaskPayloads[T],
  options: EnqueueOptions,
): Promise<void> {
  await sql`select graphile_worker.add_job(
      identifier => ${task},
      payload => ${JSON.stringify(payload)}::json,
      queue_name => ${options.queueName ?? null}::text,
      run_at => ${options.runAt?.toISOString() ?? null}::timestamptz,
      max_attempts => ${options.maxAttempts}::int,
      job_key => ${options.jobKey ?? null}::text,
      priority => ${options.priority ?? 0}::int,
      job_key_mode => ${options.jobKeyMode ?? 'preserve_run_at'}::text)`.execute(trx);
}

/** `enqueue` for several jobs of one task in one statement: each its payload and key, the same options otherwise. */
export async function enqueueEach<T extends TaskName>(
  trx: Transaction<Database>,
  task: T,
  jobs: readonly { readonly payload: TaskPayloads[T]; readonly jobKey?: string }[],
  options: Omit<EnqueueOptions, 'jobKey'>,
): Promise<void> {
  if (jobs.length === 0) return;
  await sql`select graphile_worker.add_job(
      identifier => ${task},
      payload => j.payload::json,
      queue_name => ${options.queueName ?? null}::text,
      run_at => ${options.runAt?.toISOString() ?? null}::timestamptz,
      max_attempts => ${options.maxAttempts}::int,
      job_key => j.key,
      priority => ${options.priority ?? 0}::int,
      job_key_mode => ${options.jobKeyMode ?? 'preserve_run_at'}::text)
    from unnest(${jobs.map((j) => JSON.stringify(j.payload))}::text[],
      ${jobs.map((j) => j.jobKey ?? null)}::text[]) as j(payload, key)`.execute(trx);
}
