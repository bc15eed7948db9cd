/**
 * Benchmark server: a child process started by bench/intake.ts (`tsx bench/server.ts`).
 *
 * Runs payrail (web + worker, exactly as `payrail start` composes it) and, on a SEPARATE small fastify instance on
 * its own port, a baseline route `POST /baseline` that does one plain INSERT per request on the same database
 * through its own pg.Pool. Nothing here is part of payrail: src/ is untouched.
 *
 * BENCH_SERVER_ROLE (bench:intake's --layout apart): `web` runs payrail's web role only, with the baseline; `worker`
 * runs its worker role only, with no baseline and no URL (`payrail web` and `payrail worker`, as a production
 * deployment runs them). Unset: both roles in this one process.
 *
 * Environment (set by the parent): DATABASE_URL, PORT (0 = ephemeral), ADMIN_TOKEN, NOWPAYMENTS_IPN_SECRET,
 * METRICS_TOKEN (the parent scrapes payrail's /metrics between runs), LOG_LEVEL, and for the worker role the outside world (CHANGENOW_API_URL, CHANGENOW_API_KEY, ETH_RPC_URL, CHAIN_ID,
 * HOST_WALLET_PRIVATE_KEY: the parent's anvil and ChangeNow simulator). Logs go to stderr; stdout carries exactly
 * one JSON line once both servers listen:
 *   {"payrail":"http://127.0.0.1:PORT","baseline":"http://127.0.0.1:PORT2/baseline"}
 * or, for the worker role, once its worker runs: {"worker":"started"}
 *
 * Stops on SIGTERM/SIGINT or when its stdin closes (the parent went away), within a bounded time.
 */
import Fastify from 'fastify';
import pg from 'pg';
import { openDatabase, startPayrail, type Payrail } from '../src/app.ts';
import { loadConfig, secretValues } from '../src/config.ts';
import { createLogger } from '../src/log.ts';

const SHUTDOWN_TIMEOUT_MS = 20_000;

const ROLES = {
  both: { web: true, worker: true },
  web: { web: true, worker: false },
  worker: { web: false, worker: true },
} as const;

const BASELINE_TABLE_SQL = `create table if not exists bench_baseline (
  id bigint generated always as identity primary key,
  payload jsonb not null,
  created_at timestamptz not null default now())`;

async function main(): Promise<void> {
  const roleName = process.env.BENCH_SERVER_ROLE ?? 'both';
  if (!Object.hasOwn(ROLES, roleName))
    throw new Error(`BENCH_SERVER_ROLE must be web or worker, or unset (got "${roleName}")`);
  const roles = ROLES[roleName as keyof typeof ROLES];
  const config = loadConfig(process.env);
  if (config.DATABASE_URL === undefined) throw new Error('bench/server.ts needs DATABASE_URL (the parent passes it)');
  const logger = createLogger({ level: config.LOG_LEVEL, secrets: secretValues(config), destination: process.stderr });

  // One application name for payrail's sessions whichever process holds them: the bench samples their waits by it.
  const database = await openDatabase(config, logger, 'payrail-bench-webworker');
  let payrail: Payrail | undefined;
  const baselinePool = new pg.Pool({
    connectionString: config.DATABASE_URL,
    // Same size as payrail's pool, so the baseline gets no more database connections than payrail does.
    max: config.DATABASE_POOL_MAX,
    application_name: 'payrail-bench-baseline',
    connectionTimeoutMillis: 10_000,
    statement_timeout: 30_000,
  });
  baselinePool.on('error', (error) =>
    logger.warn({ event: 'baseline_client_error', err: error.message }, 'baseline client lost'),
  );
  const baseline = Fastify({ logger: false, bodyLimit: 64 * 1024 });

  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    const timer = setTimeout(() => {
      process.stderr.write('bench server: shutdown timed out\n');
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    try {
      await baseline.close();
      await baselinePool.end();
      await payrail?.stop();
      await database.shutdown();
    } catch (error) {
      process.stderr.write(`bench server: shutdown error: ${(error as Error).message}\n`);
      code = 1;
    }
    clearTimeout(timer);
    process.exit(code);
  };
  process.once('SIGTERM', () => void stop(0));
  process.once('SIGINT', () => void stop(0));
  process.stdin.on('end', () => void stop(0));
  process.stdin.on('error', () => void stop(0));
  process.stdin.resume();

  try {
    payrail = await startPayrail(config, roles, logger, { database });
    if (!roles.web) {
      process.stdout.write(JSON.stringify({ worker: 'started' }) + '\n');
      return;
    }
    if (payrail.url === undefined) throw new Error('payrail did not report a URL');

    await baselinePool.query(BASELINE_TABLE_SQL);
    // The body stays text: PostgreSQL parses it into jsonb, the route does nothing else.
    baseline.removeAllContentTypeParsers();
    baseline.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => done(null, body));
    baseline.post('/baseline', async (request, reply) => {
      const payload = typeof request.body === 'string' ? request.body : '{}';
      await baselinePool.query('insert into bench_baseline (payload) values ($1)', [payload]);
      return reply.code(200).send({ ok: true });
    });
    const baselineUrl = await baseline.listen({ port: 0, host: '127.0.0.1' });

    process.stdout.write(JSON.stringify({ payrail: payrail.url, baseline: `${baselineUrl}/baseline` }) + '\n');
  } catch (error) {
    process.stderr.write(`bench server: start failed: ${(error as Error).stack ?? String(error)}\n`);
    await stop(1);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench server: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
