import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { bareHttpApp, unreachableDatabase } from '../support/bare-app.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
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
      expect(res.body).toMatchObject({
        status: 'ok',
        failing: [],
        checks: { database: { ok: true }, queue: { ok: true, workersAlive: 1 } },
      });
    } finally {
      await payrail.stop();
    }
  });

  it('answers 503 naming the queue when no worker process is alive', async () => {
    const web = await startTestPayrail(db, { roles: { web: true, worker: false } });
    try {
      const res = await web.request('GET', '/health', { token: null });
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({
        status: 'fail',
        failing: ['queue'],
        checks: { database: { ok: true }, queue: { ok: false, workersAlive: 0 } },
      });
      expect(res.body.checks.queue.problems).toEqual(['no worker seen in the last 30s']);
      // The load balancer's check: this web process can still take IPNs, so it stays in rotation.
      expect(await web.request('GET', '/health/live', { token: null })).toMatchObject({
        status: 200,
        body: { status: 'ok' },
      });
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
    const app = await bareHttpApp(db.db, { handledTasks: ['health_probe'] });
    try {
      await sql`select graphile_worker.add_job('health_probe', '{}'::json, run_at => now() - interval '10 minutes', job_key => 'health-test')`.execute(
        db.db,
      );
      const res = await app.inject({ method: 'GET', url: '/health' });
      expect(res.statusCode).toBe(503);
      const body = res.json();
      expect(body.failing).toEqual(['queue']);
      expect(body.checks.queue.problems[0]).toMatch(
        /^health_probe: oldest runnable job waited 60\d{1}s \(limit 300s\)$/,
      );
    } finally {
      await sql`select graphile_worker.remove_job('health-test')`.execute(db.db);
      await app.close();
      await web.stop();
    }
  });

  it('answers 503 naming the database when it cannot be reached', async () => {
    const dead = await unreachableDatabase();
    const app = await bareHttpApp(dead.db);
    try {
      const res = await app.inject({ method: 'GET', url: '/health' });
      expect(res.statusCode).toBe(503);
      expect(res.json()).toMatchObject({
        status: 'fail',
        failing: ['database', 'queue'],
        checks: { database: { ok: false }, queue: { ok: false, error: 'database unavailable' } },
      });
      expect(res.json().checks.chain).toEqual({ ok: null, affectsStatus: false, detail: 'database unavailable' });
      const live = await app.inject({ method: 'GET', url: '/health/live' });
      expect(live.statusCode).toBe(503);
      expect(live.json()).toMatchObject({ status: 'fail', error: expect.any(String) });
    } finally {
      await app.close();
      await dead.close();
    }
  });

  it('says the chain and ChangeNow are not observed yet before a worker has looked', async () => {
    await db.pool.query("delete from observations where name in ('chain_rpc', 'changenow')");
    const web = await startTestPayrail(db, { roles: { web: true, worker: false } });
    try {
      const res = await web.request('GET', '/health', { token: null });
      // 503 for the missing worker only: the outside world never decides the status.
      expect(res.body.failing).toEqual(['queue']);
      expect(res.body.warnings).toEqual([]);
      expect(res.body.checks.chain).toEqual({ ok: null, affectsStatus: false, detail: 'not observed yet' });
      expect(res.body.checks.changenow).toEqual({ ok: null, affectsStatus: false, detail: 'not observed yet' });
      expect(res.body.checks.database.affectsStatus).toBe(true);
    } finally {
      await web.stop();
    }
  });

  it('reports the chain RPC and ChangeNow from the last observation, and stays 200 while both are down', async () => {
    const payrail = await startTestPayrail(db);
    try {
      await db.pool.query(`insert into observations (name, ok, value, detail, observed_at) values
          ('chain_rpc', false, null, 'fetch failed: connect ECONNREFUSED 127.0.0.1:9', now() - interval '42 seconds'),
          ('changenow', false, null, 'ChangeNow estimate: HTTP 503', now() - interval '7 seconds')
        on conflict (name) do update set ok = excluded.ok, value = excluded.value, detail = excluded.detail, observed_at = excluded.observed_at`);
      const res = await payrail.request('GET', '/health', { token: null });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ status: 'ok', failing: [], warnings: ['chain', 'changenow'] });
      // This worker's own alerts cron may observe meanwhile: it finds both down too (nothing listens on port 9).
      for (const check of [res.body.checks.chain, res.body.checks.changenow]) {
        expect(check).toMatchObject({ ok: false, affectsStatus: false });
        expect(typeof check.detail).toBe('string');
        expect(Date.parse(check.observedAt)).not.toBeNaN();
      }
    } finally {
      await payrail.stop();
    }
  });

  it('shows the block number, the age and the error of each observation', async () => {
    // Web only, so no worker's observation replaces the ones written here.
    const web = await startTestPayrail(db, { roles: { web: true, worker: false } });
    try {
      await db.pool.query(`insert into observations (name, ok, value, detail, observed_at) values
          ('chain_rpc', true, '19000001', null, now() - interval '42 seconds'),
          ('changenow', false, null, 'ChangeNow list: HTTP 503', now())
        on conflict (name) do update set ok = excluded.ok, value = excluded.value, detail = excluded.detail, observed_at = excluded.observed_at`);
      const res = await web.request('GET', '/health', { token: null });
      expect(res.body.failing).toEqual(['queue']);
      expect(res.body.warnings).toEqual(['changenow']);
      expect(res.body.checks.chain).toMatchObject({ ok: true, affectsStatus: false, blockNumber: '19000001' });
      expect(res.body.checks.chain.ageSeconds).toBeGreaterThanOrEqual(42);
      expect(res.body.checks.chain.detail).toBeUndefined();
      expect(res.body.checks.changenow).toMatchObject({
        ok: false,
        affectsStatus: false,
        detail: 'ChangeNow list: HTTP 503',
      });
      expect(res.body.checks.changenow.blockNumber).toBeUndefined();
    } finally {
      await web.stop();
    }
  });

  it('reports an observation older than three alert intervals as stale, not as its last answer', async () => {
    // Web only, so no worker refreshes the observations written here. ALERT_INTERVAL 1m: stale after 180 s.
    const web = await startTestPayrail(db, { roles: { web: true, worker: false } });
    const slow = await startTestPayrail(db, {
      roles: { web: true, worker: false },
      env: { ALERT_INTERVAL: '5m' },
    }).catch(async (e) => {
      await web.stop();
      throw e;
    });
    try {
      await db.pool.query(`insert into observations (name, ok, value, detail, observed_at) values
          ('chain_rpc', true, '19000003', null, now() - interval '1 hour'),
          ('changenow', true, null, null, now() - interval '200 seconds')
        on conflict (name) do update set ok = excluded.ok, value = excluded.value, detail = excluded.detail, observed_at = excluded.observed_at`);
      const res = await web.request('GET', '/health', { token: null });
      // Stale is a warning, never a 503: only the missing worker fails this web-only process.
      expect(res.body.failing).toEqual(['queue']);
      expect(res.body.warnings).toEqual(['chain', 'changenow']);
      expect(res.body.checks.chain).toMatchObject({
        ok: false,
        affectsStatus: false,
        stale: true,
        detail: expect.stringMatching(/^last observed 36\d\ds ago \(stale\)$/),
      });
      expect(res.body.checks.chain.blockNumber).toBeUndefined();
      expect(res.body.checks.chain.ageSeconds).toBeGreaterThanOrEqual(3_600);
      expect(res.body.checks.changenow).toMatchObject({
        ok: false,
        affectsStatus: false,
        stale: true,
        detail: expect.stringMatching(/^last observed 20\ds ago \(stale\)$/),
      });

      // The limit follows ALERT_INTERVAL: with 5m (stale after 900 s) the 200 s old answer still counts.
      const longer = await slow.request('GET', '/health', { token: null });
      expect(longer.body.warnings).toEqual(['chain']);
      expect(longer.body.checks.changenow).toMatchObject({ ok: true, affectsStatus: false });
      expect(longer.body.checks.changenow.stale).toBeUndefined();
    } finally {
      await slow.stop();
      await web.stop();
    }
  });
});
