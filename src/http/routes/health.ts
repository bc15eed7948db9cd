import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { z } from 'zod';
import type { Db } from '../../db/index.ts';
import { liveWorkers, queueStats } from '../../jobs/index.ts';
import { OBSERVATION } from '../../alerts/index.ts';
import { observationStaleAfterSeconds } from '../../metrics/index.ts';
import type { ObservationRow } from '../../overview/index.ts';
import { described, route } from '../openapi/index.ts';

export interface HealthDeps {
  db: Db;
  /** Tasks this version has handlers for: only their backlog can make payrail unhealthy. */
  handledTasks: readonly string[];
  workerStaleSeconds: number;
  queueMaxAgeSeconds: number;
  /** ALERT_INTERVAL, in milliseconds: the workers refresh the chain and ChangeNow observations this often. */
  alertIntervalMs: number;
}

interface Check {
  /** Null: not known (never observed, or the database that holds the observation is unavailable). */
  ok: boolean | null;
  /** Whether this check can make /health answer 503. */
  affectsStatus: boolean;
  [detail: string]: unknown;
}

/** Reported outside-world checks: name in the response → observation written by the workers' alerts cron. */
const REPORTED = { chain: OBSERVATION.chainRpc, changenow: OBSERVATION.changenow } as const;
const MAX_DETAIL = 300;

const liveOk = z.object({ status: z.literal('ok') });
const liveFail = z.object({ status: z.literal('fail'), error: z.string() });
// A check's details depend on the component (latency, workers and tasks, an observation's age): open beyond these.
const check = z.looseObject({
  ok: described('null: not known (never observed, or its database unavailable).', z.boolean().nullable()),
  affectsStatus: described('Whether this check can make /health answer 503.', z.boolean()),
});
const report = z.object({
  status: z.enum(['ok', 'fail']),
  failing: described('The checks that made it 503.', z.array(z.string())),
  warnings: described('The checks that are down without affecting the status (chain, changenow).', z.array(z.string())),
  checks: z.object({ database: check, queue: check, chain: check, changenow: check }),
});

// eslint-disable-next-line @typescript-eslint/require-await -- a Fastify plugin: registration waits for the promise it returns
export async function healthRoutes(app: FastifyInstance, deps: HealthDeps): Promise<void> {
  liveRoute(app, deps);
  // Declared like /health/live, not through one helper: the two ask different questions and answer in other shapes.
  wholeRoute(app, deps);
}

/**
 * GET /health/live: whether this web process can take an IPN (its database answers), and nothing else. For the load
 * balancer: a web process with a healthy database must stay in rotation while the workers are down or behind, or
 * the IPNs it would have recorded are refused; /health is for monitoring the whole.
 */
function liveRoute(app: FastifyInstance, deps: HealthDeps): void {
  route(app, {
    method: 'GET',
    path: '/health/live',
    tag: 'operations',
    auth: 'none',
    summary: "Whether this web process can take an IPN (its database answers): the load balancer's check",
    responses: {
      200: { description: 'The database answers.', schema: liveOk },
      503: { description: "This process's database does not answer.", schema: liveFail },
    },
    handler: async (_input, _request, reply) => {
      try {
        await sql`select 1`.execute(deps.db);
        return reply.code(200).send({ status: 'ok' });
      } catch (error) {
        return reply.code(503).send({ status: 'fail', error: (error as Error).message });
      }
    },
  });
}

/**
 * GET /health: a real check. The database answers a query, at least one worker process has beaten recently, and no
 * handled task's oldest runnable job is older than the limit. 503 names the failing component.
 *
 * The chain RPC and ChangeNow are reported from the workers' last observation, and never make it 503: payrail keeps
 * taking IPNs while either is down (the jobs that need them wait and retry), and a load balancer that took the web
 * processes out of rotation for it would lose payments instead. An observation older than three alert intervals is
 * reported as not ok (stale): nobody is looking any more, and its last answer says nothing about now.
 */
function wholeRoute(app: FastifyInstance, deps: HealthDeps): void {
  route(app, {
    method: 'GET',
    path: '/health',
    tag: 'operations',
    auth: 'none',
    summary: 'The whole: database, workers and queue backlog; chain RPC and ChangeNow reported, never failing it',
    responses: {
      200: { description: 'Every check that affects the status is ok.', schema: report },
      503: { description: 'A check that affects the status failed: `failing` names it.', schema: report },
    },
    handler: async (_input, _request, reply) => {
      const checks: Record<string, Check> = {};
      checks.database = await databaseCheck(deps.db);
      checks.queue = checks.database.ok
        ? await queueCheck(deps)
        : { ok: false, affectsStatus: true, error: 'database unavailable' };
      Object.assign(
        checks,
        await reportedChecks(deps.db, checks.database.ok === true, observationStaleAfterSeconds(deps.alertIntervalMs)),
      );
      const { failing, warnings } = verdict(checks);
      return reply
        .code(failing.length === 0 ? 200 : 503)
        .send({ status: failing.length === 0 ? 'ok' : 'fail', failing, warnings, checks });
    },
  });
}

async function databaseCheck(db: Db): Promise<Check> {
  const started = process.hrtime.bigint();
  try {
    await sql`select 1`.execute(db);
    return { ok: true, affectsStatus: true, latencyMs: Number((process.hrtime.bigint() - started) / 1_000_000n) };
  } catch (error) {
    return { ok: false, affectsStatus: true, error: (error as Error).message };
  }
}

/** At least one worker beat recently, and no handled task's oldest runnable job is older than the limit. */
async function queueCheck(deps: HealthDeps): Promise<Check> {
  try {
    const [workers, stats] = await Promise.all([liveWorkers(deps.db, deps.workerStaleSeconds), queueStats(deps.db)]);
    const stale = stats.filter(
      (s) => deps.handledTasks.includes(s.task) && (s.oldestRunnableAgeSeconds ?? 0) > deps.queueMaxAgeSeconds,
    );
    const problems = [
      ...(workers === 0 ? [`no worker seen in the last ${deps.workerStaleSeconds}s`] : []),
      ...stale.map(
        (s) =>
          `${s.task}: oldest runnable job waited ${s.oldestRunnableAgeSeconds}s (limit ${deps.queueMaxAgeSeconds}s)`,
      ),
    ];
    return {
      ok: problems.length === 0,
      affectsStatus: true,
      workersAlive: workers,
      tasks: stats,
      ...(problems.length > 0 && { problems }),
    };
  } catch (error) {
    return { ok: false, affectsStatus: true, error: (error as Error).message };
  }
}

/** failing: the checks that make it 503; warnings: those down that do not. */
function verdict(checks: Record<string, Check>): { failing: string[]; warnings: string[] } {
  const failing = Object.entries(checks)
    .filter(([, c]) => c.affectsStatus && c.ok !== true)
    .map(([name]) => name);
  const warnings = Object.entries(checks)
    .filter(([, c]) => !c.affectsStatus && c.ok === false)
    .map(([name]) => name);
  return { failing, warnings };
}

async function reportedChecks(db: Db, databaseOk: boolean, staleAfterSeconds: number): Promise<Record<string, Check>> {
  const unknown = (detail: string): Check => ({ ok: null, affectsStatus: false, detail });
  const names = Object.values(REPORTED);
  let rows: ObservationRow[] = [];
  if (databaseOk) {
    try {
      rows = (
        await sql<ObservationRow>`
          select name, ok, value, detail, observed_at, greatest(0, floor(extract(epoch from now() - observed_at)))::text as age
          from observations where name in (${sql.join(names)})`.execute(db)
      ).rows;
    } catch (error) {
      return Object.fromEntries(
        Object.keys(REPORTED).map((key) => [key, unknown(`observations unavailable: ${(error as Error).message}`)]),
      );
    }
  }
  const checks: Record<string, Check> = {};
  for (const [key, name] of Object.entries(REPORTED)) {
    const row = rows.find((r) => r.name === name);
    if (!databaseOk) checks[key] = unknown('database unavailable');
    else if (!row) checks[key] = unknown('not observed yet');
    else if (Number(row.age) > staleAfterSeconds) {
      checks[key] = {
        ok: false,
        affectsStatus: false,
        stale: true,
        observedAt: row.observed_at.toISOString(),
        ageSeconds: Number(row.age),
        detail: `last observed ${row.age}s ago (stale)`,
      };
    } else {
      checks[key] = {
        ok: row.ok,
        affectsStatus: false,
        observedAt: row.observed_at.toISOString(),
        ageSeconds: Number(row.age),
        ...(key === 'chain' && row.ok && row.value !== null && { blockNumber: row.value }),
        ...(row.detail !== null && {
          detail: row.detail.length > MAX_DETAIL ? `${row.detail.slice(0, MAX_DETAIL)}…` : row.detail,
        }),
      };
    }
  }
  return checks;
}
