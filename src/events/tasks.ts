/** The events_dispatch job and its cron. */
import type { CronItem, Task } from 'graphile-worker';
import type { Kysely } from 'kysely';
import type { Database } from '../db/index.ts';
import { periodic, PERIODIC, tasksRunBy, type TaskName } from '../jobs/index.ts';
import { dispatchEvents, type DispatchDeps } from './dispatch.ts';
import { DISPATCH_JOB_KEY, DISPATCH_QUEUE, enqueueDispatch } from './dispatch-job.ts';

export const EVENT_TASKS: readonly TaskName[] = tasksRunBy('events');

export function eventTasks(deps: DispatchDeps): Partial<Record<TaskName, Task>> {
  return {
    events_dispatch: periodic('events_dispatch', async () => {
      const summary = await dispatchEvents(deps);
      const nextRunAt = summary.nextRunAt;
      if (nextRunAt !== null) await requeue(deps.db, nextRunAt);
    }),
  };
}

function requeue(db: Kysely<Database>, runAt: Date): Promise<void> {
  return db.transaction().execute((trx) => enqueueDispatch(trx, runAt));
}

/** Every minute: starts the dispatch loop again if its last run was lost with its worker. */
export function eventCron(): CronItem[] {
  return [
    {
      task: 'events_dispatch',
      match: '* * * * *',
      identifier: 'events_dispatch',
      options: { ...PERIODIC, queueName: DISPATCH_QUEUE, jobKey: DISPATCH_JOB_KEY, jobKeyMode: 'preserve_run_at' },
    },
  ];
}
