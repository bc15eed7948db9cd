/**
 * The world of a file whose jobs run in worker processes of the real CLI, so that a test can SIGKILL one at a crash
 * point (PAYRAIL_CRASH_AT) and start a survivor: the file's payrail takes intake only, every job runs in `worker`s.
 */
import { expect } from 'vitest';
import { worldTest, type WorldOptions } from './fixtures.ts';
import { ADMIN_TOKEN, IPN_SECRET } from './payrail.ts';
import { runPayrail, type PayrailProcess } from './process.ts';

export interface Workers {
  /** Starts a worker process on the world with the file's env, `extra` on top. */
  start(extra?: Record<string, string>): PayrailProcess;
}

export function workerProcessTest(options: Omit<WorldOptions, 'filePayrail'> = {}) {
  return (
    worldTest({ ...options, filePayrail: { roles: { web: true, worker: false } } })
      // The survivor's heartbeat frees the killed worker's queue locks within seconds, not the default minutes.
      .extend('workers', { scope: 'file' }, ({ world }, { onCleanup }): Workers => {
        const children: PayrailProcess[] = [];
        onCleanup(() => {
          for (const { child } of children)
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        });
        return {
          start(extra = {}) {
            const proc = runPayrail(['worker'], {
              ...world.outside.env,
              DATABASE_URL: world.db.url,
              ADMIN_TOKEN,
              NOWPAYMENTS_IPN_SECRET: IPN_SECRET,
              ...options.env,
              HEALTH_WORKER_STALE_SECONDS: '2',
              WORKER_HEARTBEAT_INTERVAL: '500ms',
              LOG_LEVEL: 'warn',
              ...extra,
            });
            children.push(proc);
            return proc;
          },
        };
      })
      /** Saves a new channel under the file's next id, expecting it created (201). */
      .extend('newChannel', ({ app }) => async (body: Record<string, unknown>): Promise<string> => {
        const id = app.nextChannelId();
        expect((await app.payrail.request('PUT', `/api/channels/${id}`, { body })).status).toBe(201);
        return id;
      })
  );
}
