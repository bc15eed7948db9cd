import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import type { Db } from '../../db/index.ts';
import { liveWorkers, queueStats } from '../../jobs/index.ts';

export interface HealthDeps {
  db: Db;
  /** Tasks this version has handlers for: only their backlog can make payrail unhealthy. */
  handledTasks: readonly string[];
  workerStaleSeconds: number;
  queueMaxAgeSeconds: number;
}

interface Check {
  ok: boolean;
  [detail: string]: unknown;
}

/**
 * GET /health: a real check. The database answers a query, at least one worker process has beaten recently, and no
 * handled task's oldest runnable job is older than the limit. 503 names the failing component.
 */
export async function healthRoutes(app: FastifyInstance, deps: HealthDeps): Promise<void> {
  app.get('/health', async (_request, reply) => {
    const checks: Record<string, Check> = {};
    const started = process.hrtime.bigint();
    try {
      await sql`select 1`.execute(deps.db);
      checks.database = { ok: true, latencyMs: Number((process.hrtime.bigint() - started) / 1_000_000n) };
    } catch (error) {
      checks.database = { ok: false, error: (error as Error).message };
    }
    if (checks.database.ok) {
      try {
        const [workers, stats] = await Promise.all([liveWorkers(deps.db, deps.workerStaleSeconds), queueStats(deps.db)]);
        const stale = stats.filter((s) => deps.handledTasks.includes(s.task) && (s.oldestRunnableAgeSeconds ?? 0) > deps.queueMaxAgeSeconds);
        const problems = [
          ...(workers === 0 ? [`no worker seen in the last ${deps.workerStaleSeconds}s`] : []),
          ...stale.map((s) => `${s.task}: oldest runnable job waited ${s.oldestRunnableAgeSeconds}s (limit ${deps.queueMaxAgeSeconds}s)`),
        ];
        checks.queue = { ok: problems.length === 0, workersAlive: workers, tasks: stats, ...(problems.length > 0 && { problems }) };
      } catch (error) {
        checks.queue = { ok: false, error: (error as Error).message };
      }
    } else {
      checks.queue = { ok: false, error: 'database unavailable' };
    }
    const failing = Object.entries(checks).filter(([, c]) => !c.ok).map(([name]) => name);
    return reply.code(failing.length === 0 ? 200 : 503).send({ status: failing.length === 0 ? 'ok' : 'fail', failing, checks });
  });
}
