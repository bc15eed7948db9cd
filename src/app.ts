/**
 * The composition root: one program, three shapes. `start` runs web and worker in one process; `web` and `worker`
 * run one half each against the same database (any number of each).
 */
import type { FastifyInstance } from 'fastify';
import type { TaskList } from 'graphile-worker';
import type { Config } from './config.ts';
import { migrate, openPool, startEmbeddedPostgres, type DatabaseHandle, type EmbeddedPostgres } from './db/index.ts';
import { buildHttpApp } from './http/index.ts';
import { migrateQueue, startWorker, type RunningWorker } from './jobs/index.ts';
import type { Logger } from './log.ts';

export interface Roles {
  web: boolean;
  worker: boolean;
}

export interface Database extends DatabaseHandle {
  /** Closes the pool, then stops the embedded server when this process owns it. */
  shutdown(): Promise<void>;
}

export async function openDatabase(config: Config, logger: Logger, applicationName: string): Promise<Database> {
  let embedded: EmbeddedPostgres | undefined;
  let connectionString = config.DATABASE_URL;
  if (connectionString === undefined) {
    embedded = await startEmbeddedPostgres({ dataDir: config.PAYRAIL_DATA_DIR, port: config.EMBEDDED_PG_PORT, logger });
    connectionString = embedded.connectionString;
  }
  const handle = openPool(connectionString, { max: config.DATABASE_POOL_MAX, applicationName, logger });
  return {
    ...handle,
    async shutdown() {
      await handle.close();
      await embedded?.stop();
    },
  };
}

/** payrail's migrations, then the queue's own schema. Both idempotent. */
export async function prepareDatabase(database: DatabaseHandle, logger: Logger): Promise<string[]> {
  const applied = await migrate(database.pool);
  await migrateQueue(database.pool, logger);
  if (applied.length > 0) logger.info({ event: 'migrations_applied', applied }, 'database migrated');
  return applied;
}

/** Handlers by task. A task without a handler here keeps its jobs queued and visible until a version has one. */
export function taskHandlers(): TaskList {
  return {};
}

export interface Payrail {
  readonly database: Database;
  readonly http?: FastifyInstance;
  /** Base URL when the web role runs, e.g. http://127.0.0.1:3000 */
  readonly url?: string;
  stop(): Promise<void>;
}

export async function startPayrail(config: Config, roles: Roles, logger: Logger, existing?: Database): Promise<Payrail> {
  const database = existing ?? (await openDatabase(config, logger, `payrail-${roles.web ? 'web' : ''}${roles.worker ? 'worker' : ''}`));
  let worker: RunningWorker | undefined;
  let http: FastifyInstance | undefined;
  try {
    await prepareDatabase(database, logger);
    const tasks = taskHandlers();
    if (roles.worker) {
      worker = await startWorker({
        pool: database.pool,
        db: database.db,
        logger,
        taskList: tasks,
        concurrency: config.WORKER_CONCURRENCY,
        pollIntervalMs: config.WORKER_POLL_INTERVAL_MS,
      });
    }
    if (roles.web) {
      http = await buildHttpApp({
        logger,
        adminTokens: [{ name: 'admin', token: config.ADMIN_TOKEN }],
        webhook: {
          db: database.db,
          ipnSecret: config.NOWPAYMENTS_IPN_SECRET,
          intake: { feePercent: config.PLATFORM_FEE_PERCENT, payoutMaxAttempts: config.PAYOUT_MAX_ATTEMPTS },
          bodyLimitBytes: config.WEBHOOK_BODY_LIMIT_BYTES,
        },
        health: {
          db: database.db,
          handledTasks: Object.keys(tasks),
          workerStaleSeconds: config.HEALTH_WORKER_STALE_SECONDS,
          queueMaxAgeSeconds: config.HEALTH_QUEUE_MAX_AGE_SECONDS,
        },
        admin: { db: database.db },
      });
      await http.listen({ port: config.PORT, host: config.HOST });
    }
  } catch (error) {
    await http?.close().catch(() => undefined);
    await worker?.stop().catch(() => undefined);
    if (!existing) await database.shutdown().catch(() => undefined);
    throw error;
  }
  const address = http?.server.address();
  const url = address && typeof address === 'object' ? `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}` : undefined;
  logger.info({ event: 'payrail_started', roles, url }, 'payrail started');
  return {
    database,
    ...(http && { http }),
    ...(url && { url }),
    async stop() {
      // Stop taking requests, let running jobs finish, then release the database.
      await http?.close();
      await worker?.stop();
      if (!existing) await database.shutdown();
    },
  };
}
