import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { openPool } from '../../src/db/index.ts';
import { buildHttpApp } from '../../src/http/index.ts';
import { parsePercent } from '../../src/money/index.ts';
import { createLogger } from '../../src/log.ts';
import type { TaskName } from '../../src/jobs/index.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { freePort } from '../support/ports.ts';
import { startTestPayrail } from '../support/payrail.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => db?.close());

describe('GET /health', () => {
  it('is ok with a database and a live worker', async () => {
    const payrail = await startTestPayrail(db);
    try {
      const res = await payrail.request('GET', '/health', { token: null });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ status: 'ok', failing: [], checks: { database: { ok: true }, queue: { ok: true, workersAlive: 1 } } });
    } finally {
      await payrail.stop();
    }
  });

  it('answers 503 naming the queue when no worker process is alive', async () => {
    const web = await startTestPayrail(db, { roles: { web: true, worker: false } });
    try {
      const res = await web.request('GET', '/health', { token: null });
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({ status: 'fail', failing: ['queue'], checks: { database: { ok: true }, queue: { ok: false, workersAlive: 0 } } });
      expect(res.body.checks.queue.problems).toEqual(['no worker seen in the last 30s']);
    } finally {
      await web.stop();
    }
  });

  it('a worker in another process counts: web and worker run as separate halves', async () => {
    const worker = await startTestPayrail(db, { roles: { web: false, worker: true } });
    const web = await startTestPayrail(db, { roles: { web: true, worker: false } }).catch(async (e) => {
      await worker.stop();
      throw e;
    });
    try {
      const res = await web.request('GET', '/health', { token: null });
      expect(res.status).toBe(200);
      expect(res.body.checks.queue.workersAlive).toBe(1);
    } finally {
      await web.stop();
      await worker.stop();
    }
  });

  it('answers 503 naming the queue when a handled task has an old runnable job', async () => {
    // A health check told it handles a task this worker has no handler for, whose job has waited ten minutes.
    const web = await startTestPayrail(db, { roles: { web: false, worker: true } });
    const app = await buildHttpApp({
      logger: createLogger({ level: 'silent' }),
      adminTokens: [],
      webhook: { db: db.db, ipnSecret: 'x'.repeat(16), intake: { feePercent: parsePercent('3') }, bodyLimitBytes: 1024 },
      health: { db: db.db, handledTasks: ['health_probe' as TaskName], workerStaleSeconds: 30, queueMaxAgeSeconds: 300 },
      admin: { db: db.db, intake: { feePercent: parsePercent('3') }, pollDeadlineMs: 60_000 },
    });
    try {
      await sql`select graphile_worker.add_job('health_probe', '{}'::json, run_at => now() - interval '10 minutes', job_key => 'health-test')`.execute(db.db);
      const res = await app.inject({ method: 'GET', url: '/health' });
      expect(res.statusCode).toBe(503);
      const body = res.json();
      expect(body.failing).toEqual(['queue']);
      expect(body.checks.queue.problems[0]).toMatch(/^health_probe: oldest runnable job waited 60\d{1}s \(limit 300s\)$/);
    } finally {
      await sql`select graphile_worker.remove_job('health-test')`.execute(db.db);
      await app.close();
      await web.stop();
    }
  });

  it('answers 503 naming the database when it cannot be reached', async () => {
    const dead = openPool(`postgres://postgres:x@127.0.0.1:${await freePort()}/none`, { max: 1, applicationName: 'dead', logger: createLogger({ level: 'silent' }) });
    const app = await buildHttpApp({
      logger: createLogger({ level: 'silent' }),
      adminTokens: [],
      webhook: { db: dead.db, ipnSecret: 'x'.repeat(16), intake: { feePercent: parsePercent('3') }, bodyLimitBytes: 1024 },
      health: { db: dead.db, handledTasks: [], workerStaleSeconds: 30, queueMaxAgeSeconds: 300 },
      admin: { db: dead.db, intake: { feePercent: parsePercent('3') }, pollDeadlineMs: 60_000 },
    });
    try {
      const res = await app.inject({ method: 'GET', url: '/health' });
      expect(res.statusCode).toBe(503);
      expect(res.json()).toMatchObject({ status: 'fail', failing: ['database', 'queue'], checks: { database: { ok: false }, queue: { ok: false, error: 'database unavailable' } } });
    } finally {
      await app.close();
      await dead.close();
    }
  });
});
