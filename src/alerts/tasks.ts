/** The alert jobs: the evaluation cron and the webhook delivery. */
import type { CronItem, Task } from 'graphile-worker';
import { z } from 'zod';
import { periodic, PERIODIC, tasksRunBy, type TaskName } from '../jobs/index.ts';
import { evaluateAlerts, type EvaluateDeps } from './evaluate.ts';
import { deliverAlert, type NotifyDeps } from './notify.ts';

export type AlertDeps = EvaluateDeps & NotifyDeps;

/** Tasks this module runs (for the health check's list of handled tasks). */
export const ALERT_TASKS: readonly TaskName[] = tasksRunBy('alerts');

const notifyPayload = z.object({
  alertId: z.string().regex(/^[1-9][0-9]{0,18}$/),
  state: z.enum(['firing', 'resolved']),
});

export function alertTasks(deps: AlertDeps): Partial<Record<TaskName, Task>> {
  return {
    alerts_evaluate: periodic('alerts_evaluate', async () => {
      const summary = await evaluateAlerts(deps);
      if (summary.skipped)
        deps.logger.info({ event: 'alerts_evaluate_skipped' }, 'another alert evaluation is running');
    }),
    alert_notify: async (payload) => {
      const { alertId, state } = notifyPayload.parse(payload);
      await deliverAlert(deps, alertId, state);
    },
  };
}

/** Every ALERT_INTERVAL; a missed pass is not made up (the next one looks at everything again). */
export function alertCron(options: { intervalMs: number }): CronItem[] {
  const minutes = options.intervalMs / 60_000;
  if (!Number.isInteger(minutes) || minutes < 1 || minutes > 59)
    throw new Error('alert interval must be whole minutes from 1 to 59');
  return [{ task: 'alerts_evaluate', match: `*/${minutes} * * * *`, identifier: 'alerts_evaluate', options: PERIODIC }];
}
