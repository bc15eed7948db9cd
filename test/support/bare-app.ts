/**
 * payrail's HTTP app built by hand, with no payrail around it, for what a started payrail cannot show: a database
 * nothing answers at, or a health check told it handles a task no worker has a handler for.
 */
import type { FastifyInstance } from 'fastify';
import { openPool, type DatabaseHandle, type Db } from '../../src/db/index.ts';
import { buildHttpApp } from '../../src/http/index.ts';
import { createLogger } from '../../src/log.ts';
import type { Metrics } from '../../src/metrics/index.ts';
import { parsePercent } from '../../src/money/index.ts';
import { freePort } from './ports.ts';

const silent = () => createLogger({ level: 'silent' });

/** A pool pointed at a free port: every query fails as a database that cannot be reached fails. */
export async function unreachableDatabase(): Promise<DatabaseHandle> {
  return openPool(`postgres://postgres:x@127.0.0.1:${await freePort()}/none`, {
    max: 1,
    applicationName: 'dead',
    logger: silent(),
  });
}

/**
 * The web routes over `db`, with no admin token. `handledTasks` are the tasks the health check expects a worker for;
 * with `metrics`, GET /metrics is served and every IPN answer counted in them.
 */
export function bareHttpApp(
  db: Db,
  options: { handledTasks?: string[]; metrics?: Metrics } = {},
): Promise<FastifyInstance> {
  const { metrics } = options;
  const intake = { feePercent: parsePercent('3') };
  return buildHttpApp({
    logger: silent(),
    adminTokens: [],
    webhook: {
      db,
      ipnSecret: 'x'.repeat(16),
      intake,
      bodyLimitBytes: 1024,
      ...(metrics && { onAnswered: (answer) => metrics.ipnAnswered(answer) }),
    },
    health: {
      db,
      handledTasks: options.handledTasks ?? [],
      workerStaleSeconds: 30,
      queueMaxAgeSeconds: 300,
      alertIntervalMs: 60_000,
    },
    admin: { db, intake, pollDeadlineMs: 60_000 },
    ...(metrics && { metrics: { metrics, db } }),
  });
}
