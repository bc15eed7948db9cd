import type { Task } from 'graphile-worker';
import { removeFailedRuns } from './queue-state.ts';

/** A periodic run is tried once: the next tick is its retry, and a missed tick is not made up. */
export const PERIODIC = { backfillPeriod: 0, maxAttempts: 1 } as const;

/**
 * Wraps a periodic task so that a run that succeeds removes the earlier runs of the same task that failed for good.
 * A failed tick (its worker died, the database restarted) is alerted as job_failed_permanently while it stands; once
 * a later tick has done the same work, the failure is history and the alert resolves, instead of staying open until
 * someone deletes the job by hand (the queue never retries or clears a job out of attempts on its own).
 */
export function periodic(task: string, handler: Task): Task {
  return async (payload, helpers) => {
    await handler(payload, helpers);
    const removed = await helpers.withPgClient((client) => removeFailedRuns(client, task, helpers.job.id));
    if (removed > 0) helpers.logger.info(`${task}: removed ${removed} earlier failed run(s) after a successful one`);
  };
}
