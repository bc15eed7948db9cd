import { Writable } from 'node:stream';
import { stageDeps, startPayrail, type Database, type Payrail, type Roles } from '../../src/app.ts';
import type { CrashPoint, StageDeps } from '../../src/pipeline/index.ts';
import { loadConfig } from '../../src/config.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import type { DatabaseHandle } from '../../src/db/index.ts';
import type { TestDatabase } from './db.ts';
import { privateKeyToAccount } from 'viem/accounts';
import { outcomeWei } from './ipn.ts';
import { forwardOnChain, type Outside } from './outside.ts';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';
export const IPN_SECRET = 'test-ipn-secret-0123456789abcdef';

/** A well-formed key for processes that never send (tests that do use their own funded key). */
export const UNUSED_WALLET_KEY = `0x${'11'.repeat(32)}`;

export interface TestPayrail extends Payrail {
  readonly url: string;
  request(
    method: string,
    path: string,
    options?: { body?: unknown; token?: string | null; headers?: Record<string, string>; raw?: string },
  ): Promise<{ status: number; body: any }>;
  /**
   * NOWPayments forwarding a finished IPN's outcome (exact wei of its outcome_amount) to this payrail's host wallet
   * before the IPN is sent, so the chain holds what the ledger credits. Nothing when started without a chain.
   */
  forwardOutcome(raw: string): Promise<void>;
}

/** Collects payrail's log lines, parsed, for tests that check what was logged (alerts, say). */
export interface LogSink {
  readonly stream: NodeJS.WritableStream;
  readonly lines: Array<Record<string, unknown>>;
  /** The `alert` names logged so far (events with "event":"alert"). */
  alerts(): string[];
}

export function logSink(): LogSink {
  const lines: Array<Record<string, unknown>> = [];
  let partial = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const text = partial + chunk.toString('utf8');
      const parts = text.split('\n');
      partial = parts.pop() ?? '';
      for (const part of parts) if (part.trim() !== '') lines.push(JSON.parse(part) as Record<string, unknown>);
      done();
    },
  });
  return { stream, lines, alerts: () => lines.filter((l) => l.event === 'alert').map((l) => String(l.alert)) };
}

/** payrail on a test database, over real HTTP on an ephemeral port. */
export async function startTestPayrail(
  db: TestDatabase,
  options: {
    roles?: Roles;
    env?: Record<string, string>;
    crashPoint?: (name: CrashPoint) => void;
    logs?: LogSink;
    outside?: Outside;
  } = {},
): Promise<TestPayrail> {
  const config = loadConfig({
    DATABASE_URL: db.url,
    PORT: '0',
    ADMIN_TOKEN,
    NOWPAYMENTS_IPN_SECRET: IPN_SECRET,
    LOG_LEVEL: 'silent',
    WORKER_POLL_INTERVAL_MS: '200',
    // Tests that do not convert point at addresses where nothing listens; conversion tests pass real ones.
    CHANGENOW_API_URL: 'http://127.0.0.1:9',
    CHANGENOW_API_KEY: 'test-changenow-key-0123456789',
    ETH_RPC_URL: 'http://127.0.0.1:9',
    HOST_WALLET_PRIVATE_KEY: UNUSED_WALLET_KEY,
    // Tests send many IPNs from 127.0.0.1 within a minute; the limit is tested on its own (env WEBHOOK_RATE_LIMIT).
    WEBHOOK_RATE_LIMIT: '0',
    ...options.env,
  });
  const logger = options.logs
    ? createLogger({ level: 'info', destination: options.logs.stream })
    : createLogger({ level: config.LOG_LEVEL });
  const payrail = await startPayrail(
    config,
    options.roles ?? { web: true, worker: true },
    logger,
    options.crashPoint ? { crashPoint: options.crashPoint } : {},
  );
  const url = payrail.url as string;
  const host = config.HOST_WALLET_ADDRESS ?? privateKeyToAccount(config.HOST_WALLET_PRIVATE_KEY).address;
  const outside = options.outside;
  return {
    ...payrail,
    url,
    async forwardOutcome(raw) {
      if (outside) await forwardOnChain(outside, host as `0x${string}`, outcomeWei(raw));
    },
    async request(method, path, opts = {}) {
      const headers: Record<string, string> = { ...opts.headers };
      const token = opts.token === undefined ? ADMIN_TOKEN : opts.token;
      if (token !== null) headers.authorization = `Bearer ${token}`;
      let body: string | undefined = opts.raw;
      if (opts.body !== undefined) {
        body = JSON.stringify(opts.body);
        headers['content-type'] = 'application/json';
      }
      const response = await fetch(url + path, { method, headers, ...(body !== undefined && { body }) });
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      return { status: response.status, body: parsed };
    },
  };
}

/**
 * The stages' dependencies as a worker builds them (its configuration, ChangeNow client and wallet), on `db`'s pool: for
 * a test that runs a job's function by hand, or several copies of it at once.
 */
export function workerStageDeps(
  db: TestDatabase,
  outside: Outside,
  options: {
    env?: Record<string, string>;
    logger?: Logger;
    crashPoint?: (name: CrashPoint) => void;
    /** Another pool on the same database, for stages that must not share `db`'s connections. */
    handle?: DatabaseHandle;
  } = {},
): StageDeps {
  const config = loadConfig({
    DATABASE_URL: db.url,
    ADMIN_TOKEN,
    NOWPAYMENTS_IPN_SECRET: IPN_SECRET,
    LOG_LEVEL: 'silent',
    ...outside.env,
    ...options.env,
  });
  const database: Database = { ...(options.handle ?? db), shutdown: async () => undefined };
  const local = {
    rpcUrl: outside.chain.rpcUrl,
    chainId: outside.chain.chainId,
    changenowUrl: outside.sim.url,
    usdtContract: outside.usdt,
    stop: async () => undefined,
  };
  return stageDeps(config, database, local, options.logger ?? createLogger({ level: 'silent' }), options.crashPoint);
}

/** Runs a stage step as a worker runs its job: the job (queued under `key`) leaves the queue, then the step runs. */
export async function runJobByHand<T>(db: TestDatabase, key: string, step: () => Promise<T>): Promise<T> {
  const { rowCount } = await db.pool.query('delete from graphile_worker._private_jobs where key = $1', [key]);
  if (rowCount !== 1) throw new Error(`no job ${key} queued`);
  return step();
}
