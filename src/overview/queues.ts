/** Queue depth per task: every task payrail knows, idle ones at zero, and any other task that has jobs. */
import type { Db } from '../db/index.ts';
import { queueStats, TASK_NAMES, type TaskQueueStats } from '../jobs/index.ts';

export async function queueDepths(db: Db): Promise<TaskQueueStats[]> {
  const stats = await queueStats(db);
  const idle = TASK_NAMES.filter((task) => !stats.some((s) => s.task === task)).map((task) => ({
    task,
    runnable: 0,
    running: 0,
    failed: 0,
    oldestRunnableAgeSeconds: null,
  }));
  return [...stats, ...idle].sort((a, b) => a.task.localeCompare(b.task));
}
