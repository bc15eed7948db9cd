/**
 * The events_dispatch job: one at a time (its own named queue, one job key), re-queued by each run while an endpoint
 * exists, and started every minute by cron in case a run was lost with its worker.
 */
import type { Transaction } from 'kysely';
import type { Database } from '../db/index.ts';
import { enqueue } from '../jobs/index.ts';

export const DISPATCH_QUEUE = 'events_dispatch';
export const DISPATCH_JOB_KEY = 'events_dispatch';

export function enqueueDispatch(trx: Transaction<Database>, runAt?: Date): Promise<void> {
  return enqueue(
    trx,
    'events_dispatch',
    {},
    {
      jobKey: DISPATCH_JOB_KEY,
      queueName: DISPATCH_QUEUE,
      maxAttempts: 1,
      ...(runAt !== undefined && { runAt }),
    },
  );
}
