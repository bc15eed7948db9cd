/**
 * Turns graphile-worker's job events into the few facts metrics need, so nothing outside src/jobs knows the queue's
 * event names or job rows.
 */
import type { Job, WorkerEvents } from 'graphile-worker';

export type JobResult = 'success' | 'error';

export interface JobObserver {
  /** A job was picked up; `waitedSeconds` since it was due (how far the queue is behind). */
  started(task: string, waitedSeconds: number): void;
  /** One attempt ended; an error means a retry later unless `exhausted` follows. */
  finished(task: string, seconds: number, result: JobResult): void;
  /** The job used up its attempts: nobody will run it again on their own. */
  exhausted(task: string): void;
}

export function watchJobs(events: WorkerEvents, observer: JobObserver): void {
  // graphile-worker hands the same job object to a job's start and end events.
  const startedAt = new WeakMap<Job, number>();
  const safely = (report: () => void): void => {
    try {
      report();
    } catch {
      // A metrics bug must not become a job failure.
    }
  };
  const finish = (job: Job, result: JobResult): void => {
    const started = startedAt.get(job);
    startedAt.delete(job);
    if (started !== undefined)
      safely(() => observer.finished(job.task_identifier, (performance.now() - started) / 1_000, result));
  };
  events.on('job:start', ({ job }) => {
    startedAt.set(job, performance.now());
    // run_at is the database's clock: a small skew against ours must not show as a negative wait.
    safely(() => observer.started(job.task_identifier, Math.max(0, (Date.now() - job.run_at.getTime()) / 1_000)));
  });
  events.on('job:success', ({ job }) => finish(job, 'success'));
  events.on('job:error', ({ job }) => finish(job, 'error'));
  events.on('job:failed', ({ job }) => safely(() => observer.exhausted(job.task_identifier)));
}
