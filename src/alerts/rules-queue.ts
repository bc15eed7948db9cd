/** Rules about the job queue: backlogs, and jobs nobody will run again. */
import { failedJobs, queueStats, type FailedJob } from '../jobs/index.ts';
import type { Firing, StateRule } from './rule-types.ts';
import { cleanText, formatAge } from './text.ts';

const queueDepth: StateRule = {
  name: 'queue_depth',
  severity: 'warning',
  async evaluate({ db, settings }) {
    const stats = (await queueStats(db)).filter(
      (s) => settings.handledTasks.includes(s.task) && s.runnable > settings.queueDepth,
    );
    return {
      firing: stats.map((s) => ({
        subject: s.task,
        message: `${s.runnable} runnable ${s.task} jobs wait (limit ${settings.queueDepth})`,
        details: { task: s.task, runnable: s.runnable, running: s.running, limit: settings.queueDepth },
      })),
    };
  },
};

const queueAge: StateRule = {
  name: 'queue_age',
  severity: 'critical',
  async evaluate({ db, settings }) {
    const stats = (await queueStats(db)).filter(
      (s) =>
        settings.handledTasks.includes(s.task) &&
        s.oldestRunnableAgeSeconds !== null &&
        s.oldestRunnableAgeSeconds * 1_000 > settings.queueAgeMs,
    );
    return {
      firing: stats.map((s) => ({
        subject: s.task,
        message: `the oldest runnable ${s.task} job has waited ${formatAge(s.oldestRunnableAgeSeconds ?? 0)} (limit ${formatAge(settings.queueAgeMs / 1_000)})`,
        details: {
          task: s.task,
          oldestRunnableAgeSeconds: s.oldestRunnableAgeSeconds,
          runnable: s.runnable,
          running: s.running,
          limitSeconds: settings.queueAgeMs / 1_000,
        },
      })),
    };
  },
};

function firstLine(text: string | null): string | null {
  return text === null ? null : cleanText(text.split('\n')[0] ?? '', 500);
}

const jobFailedPermanently: StateRule = {
  name: 'job_failed_permanently',
  severity: 'critical',
  async evaluate({ db }) {
    // Failed webhook deliveries have their own rule, which is not itself sent to the failing webhook.
    const jobs = (await failedJobs(db)).filter((j) => j.task !== 'alert_notify');
    return {
      firing: jobs.map((j): Firing => ({
        subject: j.id,
        message: `${j.task} job ${j.id}${j.key ? ` (${j.key})` : ''} used up its ${j.max_attempts} attempts: ${firstLine(j.last_error) ?? 'no error recorded'}`,
        details: {
          jobId: j.id,
          task: j.task,
          jobKey: j.key,
          attempts: j.attempts,
          maxAttempts: j.max_attempts,
          lastError: firstLine(j.last_error),
          failedAt: j.updated_at,
        },
      })),
    };
  },
};

const alertWebhookFailed: StateRule = {
  name: 'alert_webhook_failed',
  severity: 'critical',
  notify: false,
  async evaluate({ db }) {
    const jobs = (await failedJobs(db)).filter((j) => j.task === 'alert_notify');
    if (jobs.length === 0) return { firing: [] };
    const last = jobs[jobs.length - 1] as FailedJob;
    return {
      firing: [
        {
          subject: 'webhook',
          message: `${jobs.length} alert deliveries to ALERT_WEBHOOK_URL gave up: ${firstLine(last.last_error) ?? 'no error recorded'}`,
          details: {
            failedDeliveries: jobs.length,
            jobIds: jobs.slice(-20).map((j) => j.id),
            deliveries: jobs.slice(-20).map((j) => j.key),
            lastError: firstLine(last.last_error),
          },
        },
      ],
    };
  },
};

export const queueRules: readonly StateRule[] = [queueDepth, queueAge, jobFailedPermanently, alertWebhookFailed];
