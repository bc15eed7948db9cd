export { enqueue, enqueueEach, type EnqueueOptions } from './enqueue.ts';
export { TASK_NAMES, tasksRunBy, type TaskName, type TaskPayloads } from './tasks.ts';
export { startWorker, migrateQueue, type RunningWorker } from './runner.ts';
export { liveWorkers } from './queue-stats.ts';
export {
  addJobUnlessTaskLive,
  bringForward,
  failedJobs,
  jobErrorsByTask,
  jobsOverview,
  jobWithKeyExists,
  liveJobCountSql,
  liveJobKeys,
  liveJobs,
  noLiveJobWithKey,
  queuedJobWithKey,
  holdDueJobs,
  queuedKeysOf,
  queueStats,
  releaseHeldJobs,
  removeJobs,
  taskRunning,
  type FailedJob,
  type HeldJobs,
  type LiveJob,
  type TaskErrors,
  type TaskQueueStats,
} from './queue-state.ts';
export { type JobObserver, type JobResult } from './job-events.ts';
export { periodic, PERIODIC } from './periodic.ts';
