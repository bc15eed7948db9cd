/**
 * What both benchmarks (bench/intake.ts, bench/pipeline.ts) do around the code they measure: the command line, the
 * run's secrets, a temporary embedded PostgreSQL, payrail's configuration and channels, starting and stopping a child
 * process, Ctrl-C, sampling what database sessions wait on, and the report lines they have in common. Nothing here is
 * part of payrail.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type readline from 'node:readline';
import { prepareDatabase } from '../src/app.ts';
import { optionsOrExit } from '../src/cli-options.ts';
import { openPool, startEmbeddedPostgres, type DatabaseHandle, type EmbeddedPostgres } from '../src/db/index.ts';
import type { LedgerReport } from '../src/ledger/index.ts';
import { createLogger, type Logger } from '../src/log.ts';
import { fmt, freePort, machineLine, readPostmasterPid, sleep } from './shared.ts';

// ---------------------------------------------------------------------------------------------------------------
// Command line and exit

/** What every run starts with: its options, a logger for the payrail code running in the bench process, new secrets. */
export interface BenchStart<T> {
  options: T;
  logger: Logger;
  secrets: BenchSecrets;
}

/**
 * Reads the command line. When there is nothing to run, returns the exit code instead: 0 after --help (usage on
 * stdout), 64 after a bad option (the message and usage on stderr).
 */
export function beginRun<T>(
  readOptions: (argv: string[]) => T | undefined,
  usage: string,
): BenchStart<T> | { exitCode: number } {
  const start = optionsOrExit(() => readOptions(process.argv.slice(2)), usage);
  if ('exitCode' in start) return start;
  return {
    options: start.options,
    logger: createLogger({ level: 'error', destination: process.stderr }),
    secrets: randomSecrets(),
  };
}

/**
 * Runs the bench and exits with its code. `expected` turns a failure the bench anticipates into its exit code (after
 * saying what happened), or returns undefined: anything else is reported with its stack and exits 1.
 */
export function runBench(main: () => Promise<number>, expected: (error: unknown) => number | undefined): void {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      const code = expected(error);
      if (code !== undefined) process.exit(code);
      process.stderr.write(`bench failed: ${(error as Error).stack ?? String(error)}\n`);
      process.exit(1);
    },
  );
}

/**
 * SIGINT and SIGTERM set `interrupted` (and call `onSignal`) instead of ending the process, so the bench stops at its
 * next check and its finally block stops and removes what it started.
 */
export class Interruption {
  interrupted = false;
  private readonly onSignal: () => void;
  constructor(what: string, onSignal?: () => void) {
    this.onSignal = () => {
      this.interrupted = true;
      process.stderr.write(`\ninterrupted: ${what}\n`);
      onSignal?.();
    };
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
  }
  release(): void {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// payrail's configuration and channels

/** New for every run. */
export interface BenchSecrets {
  adminToken: string;
  ipnSecret: string;
  changenowApiKey: string;
  hostPrivateKey: `0x${string}`;
}

function randomSecrets(): BenchSecrets {
  return {
    adminToken: randomBytes(24).toString('hex'),
    ipnSecret: randomBytes(24).toString('hex'),
    changenowApiKey: randomBytes(24).toString('hex'),
    hostPrivateKey: `0x${randomBytes(32).toString('hex')}`,
  };
}

/** The outside world payrail's worker talks to: the ChangeNow simulator and an anvil chain. */
export interface BenchOutside {
  changenowUrl: string;
  rpcUrl: string;
  chainId: number;
  /** LocalUSDT on that chain: settlement books only the USDT the chain shows arrived, and payrail requires it off mainnet. */
  usdtContract?: `0x${string}`;
}

/** payrail's environment for a bench run: the bench's database and outside world, loopback only, warn-level logs. */
export function payrailConfig(
  databaseUrl: string,
  secrets: BenchSecrets,
  outside: BenchOutside,
): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    PORT: '0',
    HOST: '127.0.0.1',
    ADMIN_TOKEN: secrets.adminToken,
    NOWPAYMENTS_IPN_SECRET: secrets.ipnSecret,
    CHANGENOW_API_URL: outside.changenowUrl,
    CHANGENOW_API_KEY: secrets.changenowApiKey,
    ETH_RPC_URL: outside.rpcUrl,
    CHAIN_ID: String(outside.chainId),
    ...(outside.usdtContract !== undefined && { USDT_CONTRACT: outside.usdtContract }),
    HOST_WALLET_PRIVATE_KEY: secrets.hostPrivateKey,
    LOG_LEVEL: 'warn',
    // The bench is one source sending thousands of IPNs a minute: the per-source limit would measure itself.
    WEBHOOK_RATE_LIMIT: '0',
  };
}

/** payrail's own variables: its prefixes, and the plain names it reads. */
const PAYRAIL_PREFIXED =
  /^(PAYRAIL_|NOWPAYMENTS_|CHANGENOW_|PLATFORM_|PAYOUT_|CONVERSION_|HOST_WALLET_|HEALTH_|WORKER_|EMBEDDED_PG_|ADMIN_|LOCAL_|TRANSFER_)/;
const PAYRAIL_PLAIN = ['PORT', 'HOST', 'DATABASE_URL', 'DATABASE_POOL_MAX', 'CHAIN_ID', 'ETH_RPC_URL', 'LOG_LEVEL'];

/**
 * This process's environment with `config` in place of payrail's own variables: a payrail child gets exactly the
 * configuration the bench gives it, never a DATABASE_URL or a key the shell had set for something else.
 */
export function payrailChildEnvironment(config: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env))
    if (!PAYRAIL_PREFIXED.test(name) && !PAYRAIL_PLAIN.includes(name)) env[name] = value;
  return { ...env, ...config };
}

/** PUT /api/channels/<id>: anything but 200 or 201 stops the bench (shared with the demo). */
export { putChannel } from '../src/demo/channels.ts';

// ---------------------------------------------------------------------------------------------------------------
// Child processes

/** The last lines a child printed, and how many it printed in all. */
export class OutputTail {
  lines = 0;
  readonly tail: string[] = [];
  constructor(private readonly max: number) {}
  readonly keep = (line: string): void => {
    this.lines++;
    this.tail.push(line);
    if (this.tail.length > this.max) this.tail.shift();
  };
  /** For the report: nothing if the child printed nothing, else an empty line, `title` with the count, the last five. */
  report(title: string): string[] {
    if (this.lines === 0) return [];
    return ['', `${title}: ${this.lines}; last ones:`, ...this.tail.slice(-5).map((l) => `  ${l.slice(0, 400)}`)];
  }
}

/**
 * Resolves with what `ready` makes of the first of `lines` that shows the child is ready (undefined: not this line;
 * a throw rejects). Rejects when the child exits or cannot be spawned first, or after timeoutMs.
 */
export function childReady<T>(
  child: ChildProcess,
  lines: readline.Interface,
  ready: (line: string) => T | undefined,
  timeoutMs: number,
  failure: { timedOut(): Error; exited(code: number | null, signal: NodeJS.Signals | null): Error },
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(failure.timedOut()), timeoutMs);
    lines.on('line', (line) => {
      let value: T | undefined;
      try {
        value = ready(line);
      } catch (error) {
        clearTimeout(timer);
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- passes on what ready() threw, whatever it is
        reject(error);
        return;
      }
      if (value !== undefined) {
        clearTimeout(timer);
        resolve(value);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(failure.exited(code, signal));
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** Everything the bench starts listens on loopback only. */
export function assertLoopback(name: string, url: string): void {
  if (new URL(url).hostname !== '127.0.0.1') throw new Error(`${name} listens on ${url}, not on 127.0.0.1`);
}

/**
 * The URL a payrail child listens on, once it says so on stderr (loopback only); rejects with its last output lines
 * when it exits first or does not start within timeoutMs.
 */
export async function payrailListening(
  child: ChildProcess,
  stderr: readline.Interface,
  output: OutputTail,
  timeoutMs: number,
): Promise<string> {
  const url = await childReady(
    child,
    stderr,
    // cli.ts prints this once the HTTP server listens (whatever LOG_LEVEL is).
    (line) => /^payrail listening on (http:\/\/\S+)$/.exec(line)?.[1],
    timeoutMs,
    {
      timedOut: () => new Error(`payrail did not start within ${timeoutMs} ms:\n${output.tail.join('\n')}`),
      exited: (code, signal) =>
        new Error(`payrail exited before it listened (code ${code}, signal ${signal}):\n${output.tail.join('\n')}`),
    },
  );
  assertLoopback('payrail', url);
  return url;
}

/** SIGTERM, then SIGKILL if the child has not exited within timeoutMs. */
export async function stopChild(child: ChildProcess, name: string, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timedOut = await Promise.race([exited.then(() => false), sleep(timeoutMs).then(() => true)]);
  if (timedOut) {
    process.stderr.write(`${name} did not stop in time; killing it\n`);
    child.kill('SIGKILL');
    await Promise.race([exited, sleep(5_000)]);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The database

/**
 * The bench's PostgreSQL side: an embedded cluster in a temp dir when the bench starts one, and the driver's own
 * pool. Fields are set as each part starts, so close() cleans up after a start that failed half-way.
 */
export class BenchPostgres {
  tempDir: string | undefined;
  embedded: EmbeddedPostgres | undefined;
  database: DatabaseHandle | undefined;
  constructor(private readonly logger: Logger) {}

  /** Starts a new embedded PostgreSQL in a temp dir named `tempPrefix` + random; returns its connection string. */
  async startEmbedded(tempPrefix: string): Promise<string> {
    this.tempDir = fs.mkdtempSync(path.join(os.tmpdir(), tempPrefix));
    // As root, PostgreSQL runs as the postgres system user, which must be able to enter this dir.
    fs.chmodSync(this.tempDir, 0o755);
    process.stderr.write(`starting embedded PostgreSQL in ${this.tempDir}\n`);
    this.embedded = await startEmbeddedPostgres({
      dataDir: this.tempDir,
      port: await freePort(),
      logger: this.logger,
      database: 'payrail_bench',
    });
    return this.embedded.connectionString;
  }

  /** Opens the driver's pool (application name payrail-bench-driver) and migrates the database. */
  async open(connectionString: string, poolMax: number): Promise<DatabaseHandle> {
    this.database = openPool(connectionString, {
      max: poolMax,
      applicationName: 'payrail-bench-driver',
      logger: this.logger,
    });
    await prepareDatabase(this.database, this.logger);
    return this.database;
  }

  /** The embedded cluster's postmaster, for CPU accounting; undefined for a database the bench did not start. */
  postmasterPid(): number | undefined {
    return this.tempDir ? readPostmasterPid(path.join(this.tempDir, 'pg')) : undefined;
  }

  async close(): Promise<void> {
    await this.database?.close().catch(() => undefined);
    await this.embedded
      ?.stop()
      .catch((error: Error) => process.stderr.write(`stopping embedded PostgreSQL: ${error.message}\n`));
    if (this.tempDir) fs.rmSync(this.tempDir, { recursive: true, force: true });
  }
}

export interface PgSettings {
  version: string;
  fsync: string;
  sc: string;
  sb: string;
}

/** The settings the report shows: they decide what a commit costs. */
export async function readPgSettings(database: DatabaseHandle): Promise<PgSettings | undefined> {
  return (
    await database.pool.query<PgSettings>(
      `select current_setting('server_version') as version, current_setting('fsync') as fsync,
              current_setting('synchronous_commit') as sc, current_setting('shared_buffers') as sb`,
    )
  ).rows[0];
}

/**
 * For WaitSampler: what the sessions of the `applications` named are doing, by state and wait, idle ones left out. A
 * session waiting on a lock is shown with the statement it waits in (which row lock it queues for: its first
 * `waitingChars` characters), and the last statement of the session holding that lock (for a transaction between
 * statements, the one it ran last).
 */
export function sessionWaitsSql(applications: string[], waitingChars: number): string {
  const names = applications.map((name) => `'${name}'`).join(', ');
  return `select a.state || coalesce(' ' || a.wait_event_type || ':' || a.wait_event, ' (on CPU)')
                  || case when a.wait_event_type = 'Lock' then ' in "' || left(regexp_replace(a.query, '[[:space:]]+', ' ', 'g'), ${waitingChars}) || '..."'
                       || coalesce(', held by a session that last ran "' || (select left(regexp_replace(b.query, '[[:space:]]+', ' ', 'g'), 60) from pg_stat_activity b
                            where b.pid = (pg_blocking_pids(a.pid))[1]) || '..."', '') else '' end as key,
                count(*)::int as n
         from pg_stat_activity a where a.application_name in (${names})
           and a.state <> 'idle' and a.query not like '%LISTEN%' group by 1`;
}

/**
 * Samples pg_stat_activity every intervalMs while the bench runs. `sql` selects a key (state and wait) and a count
 * per key; the counts are summed over the samples.
 */
export class WaitSampler {
  readonly waits = new Map<string, number>();
  samples = 0;
  private busy: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  constructor(
    private readonly database: DatabaseHandle,
    private readonly sql: string,
    intervalMs: number,
  ) {
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }
  private sample(): void {
    if (this.busy) return;
    this.busy = this.database.pool
      .query<{ key: string; n: number }>(this.sql)
      .then(({ rows }) => {
        this.samples++;
        for (const row of rows) this.waits.set(row.key, (this.waits.get(row.key) ?? 0) + row.n);
      })
      .catch(() => undefined)
      .finally(() => {
        this.busy = undefined;
      });
  }
  /** Stops sampling at once; the promise settles when a sample still in flight has been counted. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.busy;
  }
  /** The `limit` most frequent keys with their average session count: "  1.25  active IO:DataFileRead". */
  top(limit: number): string[] {
    return [...this.waits.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([key, n]) => `${fmt(n / Math.max(1, this.samples), 2).padStart(6)}  ${key}`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Report lines both benchmarks print

/** An empty line, the title with the time, the machine, and the database with `where` it runs. */
export function reportHeader(title: string, pg: PgSettings | undefined, where: string): string[] {
  return [
    '',
    `payrail ${title} benchmark, ${new Date().toISOString()}`,
    `machine:  ${machineLine()}`,
    `database: PostgreSQL ${pg?.version ?? '?'} (${where}), fsync=${pg?.fsync}, synchronous_commit=${pg?.sc}, shared_buffers=${pg?.sb}`,
  ];
}

/** checkLedger's verdict and its first five problems. */
export function ledgerLines(ledger: LedgerReport): string[] {
  return [
    `  checkLedger: ok=${ledger.ok} (${ledger.accounts} accounts, ${ledger.journals} journals, ${ledger.entries} entries${ledger.ok ? '' : `; ${ledger.problems.length} problems`})`,
    ...ledger.problems.slice(0, 5).map((p) => `    ${p.rule}: ${p.subject}: ${p.detail}`),
  ];
}
