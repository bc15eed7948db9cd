/**
 * The queue's public surface payrail relies on (src/jobs/queue-state.ts, enqueue.ts, heartbeat.ts): the columns of
 * the graphile_worker.jobs view and the signatures of the SQL functions it calls, on a real migrated database. An
 * upgrade of graphile-worker that changes any of them fails here, not in production; and each reader does what its
 * callers count on, through that surface only.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// Every reader src/jobs exports, by name: the list mirrors its index on purpose, since each one is pinned here.
import {
  addJobUnlessTaskLive,
  enqueue,
  failedJobs,
  jobErrorsByTask,
  jobsOverview,
  jobWithKeyExists,
  liveJobCountSql,
  liveJobKeys,
  liveJobs,
  noLiveJobWithKey,
  queueStats,
  removeJobs,
  taskRunning,
} from '../../src/jobs/index.ts';
import { removeFailedRuns } from '../../src/jobs/queue-state.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.close();
});

/** The job with this key, as the view shows it. */
async function jobId(key: string): Promise<string> {
  const { rows } = await db.pool.query<{ id: string }>(
    'select id::text as id from graphile_worker.jobs where key = $1',
    [key],
  );
  return rows[0]!.id;
}

describe('the queue surface payrail uses', () => {
  it('graphile_worker.jobs has every column payrail reads', async () => {
    const { rows } = await db.pool.query<{ column_name: string }>(
      "select column_name from information_schema.columns where table_schema = 'graphile_worker' and table_name = 'jobs'",
    );
    expect(rows.map((r) => r.column_name)).toEqual(
      expect.arrayContaining([
        'id',
        'task_identifier',
        'key',
        'run_at',
        'attempts',
        'max_attempts',
        'locked_at',
        'last_error',
        'updated_at',
        'queue_name',
        'locked_by',
        'priority',
      ]),
    );
  });

  it('the SQL functions payrail calls exist with the arguments it passes', async () => {
    const { rows } = await db.pool.query<{ name: string; args: string }>(
      `select p.proname as name, pg_get_function_identity_arguments(p.oid) as args
         from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'graphile_worker' and p.proname in ('add_job', 'complete_jobs', 'force_unlock_workers', 'permanently_fail_jobs', 'remove_job', 'reschedule_jobs')`,
    );
    const byName = new Map(rows.map((r) => [r.name, r.args]));
    // add_job is called with named arguments (enqueue.ts): each name, with its type.
    for (const arg of [
      'identifier text',
      'payload json',
      'queue_name text',
      'run_at timestamp with time zone',
      'max_attempts integer',
      'job_key text',
      'job_key_mode text',
    ]) {
      expect(byName.get('add_job')).toContain(arg);
    }
    expect(byName.get('complete_jobs')).toBe('job_ids bigint[]');
    expect(byName.get('force_unlock_workers')).toBe('worker_ids text[]');
    expect(byName.get('remove_job')).toBe('job_key text');
    // reschedule_jobs is called with run_at named (queue-state.ts holdDueJobs, releaseHeldJobs).
    expect(byName.get('reschedule_jobs')).toMatch(/^job_ids bigint\[\], run_at timestamp with time zone/);
  });
});

describe('readers of the queue state', () => {
  it('a queued job is live under its key; out of attempts it is failed, no longer live, and removable once a later run succeeded', async () => {
    const key = 'conversion_batch:surface-test';
    await db.db.transaction().execute((trx) => enqueue(trx, 'conversion_batch', {}, { jobKey: key, maxAttempts: 3 }));
    const noLive = async () =>
      (await sql<{ none: boolean }>`select ${noLiveJobWithKey([sql`${key}::text`])} as none`.execute(db.db)).rows[0]
        ?.none;

    expect(await liveJobKeys(db.db, [key, 'conversion_batch:other'])).toEqual(new Set([key]));
    expect(await jobWithKeyExists(db.db, key)).toBe(true);
    expect(await noLive()).toBe(false);
    const stats = (await queueStats(db.db)).find((s) => s.task === 'conversion_batch');
    expect(stats).toMatchObject({ runnable: 1, running: 0, failed: 0 });

    const id = await jobId(key);
    await db.pool.query("select graphile_worker.permanently_fail_jobs(array[$1::bigint], 'failed on purpose')", [id]);
    expect(await liveJobKeys(db.db, [key])).toEqual(new Set());
    expect(await noLive()).toBe(true);
    expect(await jobWithKeyExists(db.db, key)).toBe(true);
    expect(await failedJobs(db.db)).toEqual([
      expect.objectContaining({ id, task: 'conversion_batch', key, last_error: 'failed on purpose' }),
    ]);
    expect((await queueStats(db.db)).find((s) => s.task === 'conversion_batch')).toMatchObject({
      runnable: 0,
      failed: 1,
    });

    // Only runs before the successful one are removed.
    const client = await db.pool.connect();
    try {
      expect(await removeFailedRuns(client, 'conversion_batch', id)).toBe(0);
      expect(await removeFailedRuns(client, 'conversion_batch', String(BigInt(id) + 1n))).toBe(1);
    } finally {
      client.release();
    }
    expect(await jobWithKeyExists(db.db, key)).toBe(false);
    expect(await failedJobs(db.db)).toEqual([]);
  });

  it("removeJobs deletes queued jobs by key in the caller's transaction, and leaves the others", async () => {
    const keys = ['transfer_send:surface-a', 'transfer_send:surface-b', 'transfer_send:surface-kept'];
    await db.db.transaction().execute(async (trx) => {
      for (const jobKey of keys)
        await enqueue(trx, 'transfer_send', { transferId: jobKey }, { jobKey, maxAttempts: 3 });
    });
    // Rolled back with its transaction: nothing removed.
    await db.db
      .transaction()
      .execute(async (trx) => {
        await removeJobs(trx, keys.slice(0, 2));
        throw new Error('rolled back');
      })
      .catch(() => undefined);
    expect(await liveJobKeys(db.db, keys)).toEqual(new Set(keys));
    await db.db.transaction().execute((trx) => removeJobs(trx, keys.slice(0, 2)));
    expect(await liveJobKeys(db.db, keys)).toEqual(new Set(['transfer_send:surface-kept']));
    expect(await jobWithKeyExists(db.db, 'transfer_send:surface-a')).toBe(false);
  });
});

describe("the demo's and the chaos run's readers", () => {
  const task = 'reconcile';
  const nudge = { task, queue: 'surface-test', key: 'reconcile:surface-nudge', maxAttempts: 1 };
  const liveOthers = async () =>
    (await db.pool.query<{ n: number }>(`select ${liveJobCountSql('$1')} as n`, [['transfer_send']])).rows[0]?.n;

  it('a job is queued only while none of its task will still run, and counted, listed and reported as such', async () => {
    const before = await liveOthers();
    expect(await taskRunning(db.pool, task)).toBe(false);
    expect(await addJobUnlessTaskLive(db.pool, nudge)).toBe(true);
    expect(await addJobUnlessTaskLive(db.pool, nudge)).toBe(false);
    expect(await liveOthers()).toBe((before ?? 0) + 1);
    expect(await liveJobs(db.pool)).toContainEqual({ key: nudge.key, task });
    expect(await jobsOverview(db.pool)).toContainEqual(
      expect.objectContaining({ task_identifier: task, queue_name: nudge.queue, locked: false, n: 1 }),
    );
    expect(await taskRunning(db.pool, task)).toBe(false);

    await db.pool.query("select graphile_worker.permanently_fail_jobs(array[$1::bigint], 'failed on purpose')", [
      await jobId(nudge.key),
    ]);
    expect(await liveOthers()).toBe(before);
    expect((await liveJobs(db.pool)).map((j) => j.key)).not.toContain(nudge.key);
    expect(await jobErrorsByTask(db.pool)).toContainEqual(
      expect.objectContaining({ task, jobs: 1, lastError: 'failed on purpose' }),
    );
    // Out of attempts, it no longer holds the next one back.
    expect(await addJobUnlessTaskLive(db.pool, nudge)).toBe(true);
    expect(await liveJobs(db.pool)).toContainEqual({ key: nudge.key, task });
  });
});
