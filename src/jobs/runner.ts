import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type pg from 'pg';
import {
  parseCronItems,
  run,
  runMigrations,
  Logger as WorkerLogger,
  type CronItem,
  type Runner,
  type TaskList,
} from 'graphile-worker';
import type { Db } from '../db/index.ts';
import type { Logger } from '../log.ts';
import { startHeartbeat } from './heartbeat.ts';
import { watchJobs, type JobObserver } from './job-events.ts';

export interface WorkerOptions {
  pool: pg.Pool;
  db: Db;
  logger: Logger;
  taskList: TaskList;
  cron: CronItem[];
  concurrency: number;
  pollIntervalMs: number;
  /** Seconds without a heartbeat after which another process's queue locks are released. */
  staleWorkerSeconds: number;
  heartbeatIntervalMs: number;
  /**
   * Called when the queue runner stops on its own (graphile-worker stops its runner when its pool of workers fails,
   * e.g. while PostgreSQL restarts). Without this the process kept nothing alive and exited with status 0, silently,
   * leaving no worker (found by the chaos run, fault restart_postgres).
   */
  onUnexpectedStop?: (error: Error) => void;
  /** Told of every job attempt (metrics). */
  jobObserver?: JobObserver;
  /**
   * Stores an alert this runner logged (src/alerts' store, handed in by the composition root). Best effort: the
   * database is often what just failed, and the log line stays the record then.
   */
  storeAlert?: (alert: {
    rule: string;
    subject: string;
    severity: 'warning' | 'critical';
    message: string;
    details: Record<string, unknown>;
  }) => Promise<void>;
}

export interface RunningWorker {
  readonly workerId: string;
  stop(): Promise<void>;
}

function workerLogger(logger: Logger): WorkerLogger {
  return new WorkerLogger((scope) => (level, message, meta) => {
    const fields = { component: 'graphile-worker', ...scope, ...meta };
    // graphile-worker's LogLevel is an ambient const enum, which isolatedModules cannot read: compare its text.
    const name: string = level;
    if (name === 'error') logger.error(fields, message);
    else if (name === 'warning') logger.warn(fields, message);
    else if (name === 'info') logger.info(fields, message);
    else logger.debug(fields, message);
  });
}

/** Creates or updates graphile-worker's own schema (idempotent). */
export async function migrateQueue(pool: pg.Pool, logger: Logger): Promise<void> {
  await runMigrations({ pgPool: pool, logger: workerLogger(logger) });
}

type WorkerEvents = NonNullable<Parameters<typeof run>[0]['events']>;

export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const workerId = `payrail-${process.pid}-${randomUUID().slice(0, 8)}`;
  const queueWorkerIds = new Set<string>();
  const events = workerEvents(options, queueWorkerIds);
  const runner = await startRunner(options, events);
  let stopping = false;
  let failed = false;
  // eslint-disable-next-line prefer-const -- assigned once below, but `unexpected` can run before then: it must read undefined, not a const in its temporal dead zone
  let heartbeat: Awaited<ReturnType<typeof startHeartbeat>> | undefined;
  // The queue runner can give up while this process lives on: it stops when its pool of workers fails (database
  // unreachable), and it aborts ("queue is in an inconsistent state") when it cannot record a job's completion or
  // failure, leaving those jobs locked. Either way this process runs no more jobs, yet its heartbeat would keep
  // saying it is alive, so nobody would release its locks (found by the chaos run, fault restart_postgres: the host
  // wallet's transfer queue stayed locked and every transfer waited). So: say so, stop beating (the row goes stale and
  // a live worker's reaper releases the locks), and let the process exit non-zero to be restarted.
  const unexpected = (error: Error) => {
    if (failed || stopping) return;
    failed = true;
    reportRunnerStopped(options, workerId, error);
    void heartbeat?.stop({ keepRow: true });
    options.onUnexpectedStop?.(error);
  };
  onRunnerStop(events, runner, unexpected);
  heartbeat = await startWorkerHeartbeat(options, workerId, queueWorkerIds);
  options.logger.info({ event: 'worker_started', workerId, concurrency: options.concurrency }, 'worker started');
  return {
    workerId,
    async stop() {
      stopping = true;
      // A runner that failed left its locks: keep our heartbeat row so the survivors' reaper releases them.
      await heartbeat?.stop({ keepRow: failed });
      await runner.stop();
      options.logger.info({ event: 'worker_stopped', workerId }, 'worker stopped');
    },
  };
}

/** The queue's events, recording the ids its jobs are locked under and telling the job observer. */
function workerEvents(options: WorkerOptions, queueWorkerIds: Set<string>): WorkerEvents {
  const events = new EventEmitter() as WorkerEvents;
  // Jobs are locked under the pool's id (workers' ids on older queue versions): record both.
  events.on('pool:create', ({ workerPool }) => queueWorkerIds.add(workerPool.id));
  events.on('worker:create', ({ worker }) => queueWorkerIds.add(worker.workerId));
  if (options.jobObserver) watchJobs(events, options.jobObserver);
  alertOnJobsOutOfAttempts(events, options.logger);
  return events;
}

// A job out of attempts is work nobody will do again on their own: say so loudly.
function alertOnJobsOutOfAttempts(events: WorkerEvents, logger: Logger): void {
  events.on('job:failed', ({ job, error }) => {
    logger.error(
      {
        event: 'alert',
        alert: 'job_failed_permanently',
        task: job.task_identifier,
        jobId: job.id,
        jobKey: job.key,
        attempts: job.attempts,
        err: (error as Error)?.message,
      },
      'a job used up its attempts',
    );
  });
}

async function startRunner(options: WorkerOptions, events: WorkerEvents): Promise<Runner> {
  return run({
    events,
    pgPool: options.pool,
    taskList: options.taskList,
    // Periodic jobs are declared in code, never read from a crontab file in the working directory.
    parsedCronItems: parseCronItems(options.cron),
    concurrency: options.concurrency,
    pollInterval: options.pollIntervalMs,
    // payrail's own signal handling stops the worker in order (web first, then jobs, then the database).
    noHandleSignals: true,
    logger: workerLogger(options.logger),
    preset: {
      worker: {
        // Complete and fail jobs without batching delay: a completion still buffered at a crash would leave the job
        // locked, and run again, hours later.
        completeJobBatchDelay: 0,
        failJobBatchDelay: 0,
      },
    },
  });
}

/** Calls `unexpected` when the runner's pool fails or its run ends, whether it resolves or rejects. */
function onRunnerStop(events: WorkerEvents, runner: Runner, unexpected: (error: Error) => void): void {
  events.on('pool:fatalError', ({ error }) => unexpected(error instanceof Error ? error : new Error(String(error))));
  runner.promise.then(
    () => unexpected(new Error('queue runner stopped')),
    (error: unknown) => unexpected(error instanceof Error ? error : new Error(String(error))),
  );
}

function reportRunnerStopped(options: WorkerOptions, workerId: string, error: Error): void {
  options.logger.error(
    { event: 'alert', alert: 'worker_runner_stopped', err: error.message },
    'the job queue runner stopped on its own; this worker runs no more jobs',
  );
  options
    .storeAlert?.({
      rule: 'worker_runner_stopped',
      subject: workerId,
      severity: 'critical',
      message: 'the job queue runner stopped on its own; this worker runs no more jobs',
      details: { workerId, err: error.message },
    })
    .catch(() => undefined);
}

function startWorkerHeartbeat(options: WorkerOptions, workerId: string, queueWorkerIds: Set<string>) {
  return startHeartbeat(options.db, {
    workerId,
    intervalMs: options.heartbeatIntervalMs,
    staleSeconds: options.staleWorkerSeconds,
    queueWorkerIds: () => [...queueWorkerIds],
    logger: options.logger,
  });
}
