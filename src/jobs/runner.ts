import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type pg from 'pg';
import { parseCronItems, run, runMigrations, Logger as WorkerLogger, type CronItem, type Runner, type TaskList } from 'graphile-worker';
import type { Db } from '../db/index.ts';
import type { Logger } from '../log.ts';
import { startHeartbeat } from './heartbeat.ts';

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
}

export interface RunningWorker {
  readonly workerId: string;
  stop(): Promise<void>;
}

function workerLogger(logger: Logger): WorkerLogger {
  return new WorkerLogger((scope) => (level, message, meta) => {
    const fields = { component: 'graphile-worker', ...scope, ...meta };
    if (level === 'error') logger.error(fields, message);
    else if (level === 'warning') logger.warn(fields, message);
    else if (level === 'info') logger.info(fields, message);
    else logger.debug(fields, message);
  });
}

/** Creates or updates graphile-worker's own schema (idempotent). */
export async function migrateQueue(pool: pg.Pool, logger: Logger): Promise<void> {
  await runMigrations({ pgPool: pool, logger: workerLogger(logger) });
}

export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const workerId = `payrail-${process.pid}-${randomUUID().slice(0, 8)}`;
  const queueWorkerIds = new Set<string>();
  const events = new EventEmitter() as NonNullable<Parameters<typeof run>[0]['events']>;
  // Jobs are locked under the pool's id (workers' ids on older queue versions): record both.
  events.on('pool:create', ({ workerPool }) => queueWorkerIds.add(workerPool.id));
  events.on('worker:create', ({ worker }) => queueWorkerIds.add(worker.workerId));
  // A job out of attempts is work nobody will do again on their own: say so loudly.
  events.on('job:failed', ({ job, error }) => {
    options.logger.error(
      { event: 'alert', alert: 'job_failed_permanently', task: job.task_identifier, jobId: job.id, jobKey: job.key, attempts: job.attempts, err: (error as Error)?.message },
      'a job used up its attempts',
    );
  });
  const runner: Runner = await run({
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
  const heartbeat = await startHeartbeat(options.db, {
    workerId,
    intervalMs: options.heartbeatIntervalMs,
    staleSeconds: options.staleWorkerSeconds,
    queueWorkerIds: () => [...queueWorkerIds],
    logger: options.logger,
  });
  options.logger.info({ event: 'worker_started', workerId, concurrency: options.concurrency }, 'worker started');
  return {
    workerId,
    async stop() {
      await heartbeat.stop();
      await runner.stop();
      options.logger.info({ event: 'worker_stopped', workerId }, 'worker stopped');
    },
  };
}
