/**
 * npm run bench:intake [-- --duration 10 --connections 50 --rate 500 --rate-connections 50 --warmup 2]
 *
 * Drives signed NOWPayments IPNs (each a NEW payment, status `finished`, so every request records AND credits a
 * payment) over loopback with autocannon against a running payrail, then the same load against a baseline route
 * doing one plain INSERT per request on the same database, then intake again at a fixed rate. Prints throughput,
 * the intake/baseline ratio, p50/p99 latencies and the machine; then reconciles the database with the responses
 * and runs checkLedger.
 *
 * payrail runs in a child process (bench/server.ts) so autocannon does not share its event loop. Without
 * DATABASE_URL an embedded PostgreSQL is started in a temp dir and removed afterwards. With DATABASE_URL the bench
 * WRITES into that database (a bench channel, payments, ledger entries, table bench_baseline): use a disposable one.
 * The worker role gets the outside world of a local run (anvil and the ChangeNow simulator, started here), so the
 * conversion stage batches the credited ETH while intake runs, as it would in `payrail start`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { prepareDatabase } from '../src/app.ts';
import { openPool, startEmbeddedPostgres, type DatabaseHandle, type EmbeddedPostgres } from '../src/db/index.ts';
import { checkLedger } from '../src/ledger/index.ts';
import { createLogger } from '../src/log.ts';
import { startLocalOutside, type LocalOutside } from '../src/simulators/index.ts';
import { CLK_TCK, fmt, freePort, IpnFactory, machineLine, postgresTicks, presign, procTicks, readPostmasterPid, sleep, table, type SignedIpn } from './shared.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SERVER_ENTRY = fileURLToPath(new URL('./server.ts', import.meta.url));

/** A channel id reserved for the bench (threshold strategy: a credit queues no payout job). */
const BENCH_CHANNEL_ID = '-1009000000001';
/**
 * Payments are spread over this many channels (ids BENCH_CHANNEL_ID, BENCH_CHANNEL_ID - 1, ...), as real traffic is:
 * a credit locks its channel's balance row, so one channel for every payment would measure an artificial hot spot.
 */
const BENCH_CHANNELS = 64;
const benchChannelId = (index: number) => (BigInt(BENCH_CHANNEL_ID) - BigInt(index)).toString();
const CHANNEL_BODY = {
  payoutStrategy: 'threshold',
  thresholdUsd: '100.00',
  payoutCurrency: 'usdt',
  payoutNetwork: 'eth',
  walletAddress: '0x8ba1f109551bD432803012645Ac136ddd64DBA72',
};

const SERVER_READY_TIMEOUT_MS = 120_000;
const SERVER_STOP_TIMEOUT_MS = 25_000;
const QUIESCE_TIMEOUT_MS = 30_000;

// ---------------------------------------------------------------------------------------------------------------
// Options

interface Options {
  durationS: number;
  connections: number;
  rate: number;
  rateConnections: number;
  warmupS: number;
  /** Directory for a V8 CPU profile of the server child (node --cpu-prof), if asked for. */
  cpuProfDir?: string;
}

const USAGE = `usage: npm run bench:intake -- [options]

  --duration S          seconds per measured run (default 10)
  --connections N       concurrent connections for the max-throughput runs (default 50)
  --rate R              requests/s for the fixed-rate intake run (default 500)
  --rate-connections N  connections for the fixed-rate run (default: --connections)
  --warmup S            seconds of unmeasured warm-up before the intake and baseline runs (default 2; 0 = none)
  --cpu-prof DIR        write a V8 CPU profile of the server process (payrail + baseline) into DIR

  DATABASE_URL=...      use this (disposable!) database instead of a temporary embedded PostgreSQL
`;

function readOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string' },
      connections: { type: 'string' },
      rate: { type: 'string' },
      'rate-connections': { type: 'string' },
      warmup: { type: 'string' },
      'cpu-prof': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return undefined;
  const int = (name: string, text: string | undefined, fallback: number, min: number, max: number): number => {
    if (text === undefined) return fallback;
    if (!/^[0-9]+$/.test(text)) throw new Error(`--${name} must be a whole number (got "${text}")`);
    const n = Number.parseInt(text, 10);
    if (n < min || n > max) throw new Error(`--${name} must be between ${min} and ${max} (got ${n})`);
    return n;
  };
  const connections = int('connections', values.connections, 50, 1, 1000);
  return {
    durationS: int('duration', values.duration, 10, 1, 3600),
    connections,
    rate: int('rate', values.rate, 500, 1, 100_000),
    rateConnections: int('rate-connections', values['rate-connections'], connections, 1, 1000),
    warmupS: int('warmup', values.warmup, 2, 0, 600),
    ...(values['cpu-prof'] !== undefined && { cpuProfDir: path.resolve(values['cpu-prof']) }),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Signed IPN bodies

/** Where a run's request bodies come from. */
interface BodySource {
  next(): SignedIpn;
}

/** Pre-signed bodies, each used once; signs on the fly (and counts it) if the pool runs dry. */
class FreshBodies implements BodySource {
  private index = 0;
  liveSigned = 0;
  constructor(
    private readonly pool: SignedIpn[],
    private readonly factory: IpnFactory,
  ) {}
  next(): SignedIpn {
    const body = this.pool[this.index];
    if (body !== undefined) {
      this.pool[this.index++] = undefined as unknown as SignedIpn; // let the sent body be collected
      return body;
    }
    this.liveSigned++;
    return this.factory.next();
  }
  get unused(): number {
    return this.pool.length - this.index;
  }
}

/** The same bodies over and over (the baseline does not care about uniqueness, only about equal client work). */
class CyclingBodies implements BodySource {
  private index = 0;
  constructor(private readonly pool: SignedIpn[]) {
    if (pool.length === 0) throw new Error('empty body pool');
  }
  next(): SignedIpn {
    const body = this.pool[this.index] as SignedIpn;
    this.index = (this.index + 1) % this.pool.length;
    return body;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// One autocannon run

interface RunSpec {
  label: string;
  url: string;
  connections: number;
  durationS: number;
  overallRate?: number;
  source: BodySource;
  /** Payment ids sent (intake runs), to reconcile with the database afterwards. */
  sent?: Set<string>;
  /** Payment ids answered with 2xx (intake runs). */
  accepted?: Set<string>;
}

interface RunOutcome {
  spec: RunSpec;
  result: autocannon.Result;
  /** Latency of every 2xx response, ms, as autocannon measured it (not rounded). */
  latencies: Float64Array;
  non2xx: Map<number, number>;
  errorSamples: string[];
  cpu?: CpuUsage;
  /** What the server's database sessions were doing, sampled every WAIT_SAMPLE_MS: "state wait_event" -> samples. */
  waits: Map<string, number>;
  waitSamples: number;
}

const WAIT_SAMPLE_MS = 100;

/**
 * Samples pg_stat_activity for payrail's and the baseline's sessions while a run goes. "idle in transaction" is a
 * session inside a transaction waiting for its client (payrail) to send the next statement.
 */
function startWaitSampler(database: DatabaseHandle): { stop(): Promise<{ waits: Map<string, number>; samples: number }> } {
  const waits = new Map<string, number>();
  let samples = 0;
  let busy: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (busy) return;
    busy = database.pool
      .query<{ key: string; n: number }>(
        // A session waiting on a lock is shown with the statement it waits in (which row lock it queues for).
        `select state || coalesce(' ' || wait_event_type || ':' || wait_event, ' (on CPU)')
                  || case when wait_event_type = 'Lock' then ' in "' || left(regexp_replace(query, '[[:space:]]+', ' ', 'g'), 60) || '..."' else '' end as key,
                count(*)::int as n
         from pg_stat_activity where application_name in ('payrail-bench-webworker', 'payrail-bench-baseline')
           and state <> 'idle' and query not like '%LISTEN%' group by 1`,
      )
      .then(({ rows }) => {
        samples++;
        for (const row of rows) waits.set(row.key, (waits.get(row.key) ?? 0) + row.n);
      })
      .catch(() => undefined)
      .finally(() => {
        busy = undefined;
      });
  }, WAIT_SAMPLE_MS);
  return {
    async stop() {
      clearInterval(timer);
      await busy;
      return { waits, samples };
    },
  };
}

const PAYMENT_ID_RE = /"paymentId":"([0-9]+)"/;

let current: autocannon.Instance | undefined;

interface Observed {
  serverPid?: number;
  postmasterPid?: number;
  /** The driver's own pool, used to sample what the server's backends wait on. */
  database: DatabaseHandle;
}

async function runLoad(spec: RunSpec, processes: Observed): Promise<RunOutcome> {
  const latencies: number[] = [];
  const non2xx = new Map<number, number>();
  const errorSamples: string[] = [];
  const { source, sent, accepted } = spec;
  const request: autocannon.Request = {
    method: 'POST',
    path: new URL(spec.url).pathname,
    headers: { 'content-type': 'application/json' },
    setupRequest(req) {
      const body = source.next();
      sent?.add(body.paymentId);
      req.body = body.raw;
      req.headers = { ...req.headers, 'x-nowpayments-sig': body.signature };
      return req;
    },
    onResponse(status, body) {
      if (status >= 200 && status < 300) {
        if (accepted) {
          const match = PAYMENT_ID_RE.exec(body);
          if (match?.[1] !== undefined) accepted.add(match[1]);
        }
      } else {
        non2xx.set(status, (non2xx.get(status) ?? 0) + 1);
        if (errorSamples.length < 5) errorSamples.push(`${status} ${body.slice(0, 300)}`);
      }
    },
  };
  const sampler = startWaitSampler(processes.database);
  const cpuBefore = sampleCpu(processes.serverPid, processes.postmasterPid);
  const instance = autocannon({
    url: spec.url,
    connections: spec.connections,
    duration: spec.durationS,
    pipelining: 1,
    timeout: 10,
    requests: [request],
    ...(spec.overallRate !== undefined && {
      overallRate: spec.overallRate,
      // autocannon's correction would use an expected interval of ceil(1/per-connection-rate) = 1 ms and invent
      // samples at 1 ms steps below every real latency; we report the measured latencies as they are.
      ignoreCoordinatedOmission: true,
    }),
  });
  current = instance;
  instance.on('response', (_client, statusCode, _bytes, responseTime) => {
    if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
  });
  const result = await instance;
  current = undefined;
  const cpuAfter = sampleCpu(processes.serverPid, processes.postmasterPid);
  const { waits, samples: waitSamples } = await sampler.stop();
  return {
    waits,
    waitSamples,
    spec,
    result,
    latencies: Float64Array.from(latencies).sort(),
    non2xx,
    errorSamples,
    ...(cpuBefore && cpuAfter && { cpu: cpuDelta(cpuBefore, cpuAfter) }),
  };
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] as number;
}

// ---------------------------------------------------------------------------------------------------------------
// CPU accounting (Linux /proc; absent elsewhere)

interface CpuSample {
  at: bigint;
  totalBusy: number;
  totalAll: number;
  parent: NodeJS.CpuUsage;
  server?: number;
  postgres?: number;
}

interface CpuUsage {
  /** Share of all cores busy during the run, 0..1. */
  machineBusy: number;
  /** Core-seconds per second for each party (1.0 = one full core). */
  client: number;
  server?: number;
  postgres?: number;
  /** Everything else on the machine (other processes, kernel threads), in cores. */
  other?: number;
}

function sampleCpu(serverPid: number | undefined, postmasterPid: number | undefined): CpuSample | undefined {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const nums = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (nums[3] ?? 0) + (nums[4] ?? 0);
    const all = nums.reduce((a, b) => a + b, 0);
    const server = serverPid === undefined ? undefined : procTicks(serverPid);
    const postgres = postgresTicks(postmasterPid);
    return { at: process.hrtime.bigint(), totalBusy: all - idle, totalAll: all, parent: process.cpuUsage(), ...(server !== undefined && { server }), ...(postgres !== undefined && { postgres }) };
  } catch {
    return undefined;
  }
}

function cpuDelta(a: CpuSample, b: CpuSample): CpuUsage {
  const seconds = Number(b.at - a.at) / 1e9;
  const parentUs = b.parent.user - a.parent.user + (b.parent.system - a.parent.system);
  const machineBusy = (b.totalBusy - a.totalBusy) / Math.max(1, b.totalAll - a.totalAll);
  const client = parentUs / 1e6 / seconds;
  const server = a.server !== undefined && b.server !== undefined ? (b.server - a.server) / CLK_TCK / seconds : undefined;
  const postgres = a.postgres !== undefined && b.postgres !== undefined ? (b.postgres - a.postgres) / CLK_TCK / seconds : undefined;
  const other = server !== undefined && postgres !== undefined ? Math.max(0, machineBusy * os.cpus().length - client - server - postgres) : undefined;
  return {
    machineBusy,
    client,
    ...(server !== undefined && { server }),
    ...(postgres !== undefined && { postgres }),
    ...(other !== undefined && { other }),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Database and server child

interface ServerChild {
  child: ChildProcess;
  payrailUrl: string;
  baselineUrl: string;
  stderrTail: string[];
  stderrLines: number;
}

async function startServerChild(env: NodeJS.ProcessEnv, cpuProfDir: string | undefined): Promise<ServerChild> {
  const profiling = cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`];
  const child = spawn(process.execPath, [...profiling, '--import', 'tsx', SERVER_ENTRY], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
  const state: ServerChild = { child, payrailUrl: '', baselineUrl: '', stderrTail: [], stderrLines: 0 };
  // The child's logs (warn and above) are kept, not streamed: printing them during a run would cost client CPU.
  readline.createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
    state.stderrLines++;
    state.stderrTail.push(line);
    if (state.stderrTail.length > 20) state.stderrTail.shift();
  });
  const ready = await new Promise<{ payrail: string; baseline: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`bench server not ready after ${SERVER_READY_TIMEOUT_MS} ms`)), SERVER_READY_TIMEOUT_MS);
    const lines = readline.createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(line) as { payrail: string; baseline: string });
      } catch {
        reject(new Error(`bench server printed an unexpected line: ${line}`));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`bench server exited before it was ready (code ${code}, signal ${signal}):\n${state.stderrTail.join('\n')}`));
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
  for (const url of [ready.payrail, ready.baseline]) {
    if (new URL(url).hostname !== '127.0.0.1') throw new Error(`bench server listens on ${url}, not on 127.0.0.1`);
  }
  state.payrailUrl = ready.payrail;
  state.baselineUrl = ready.baseline;
  return state;
}

async function stopServerChild(server: ServerChild): Promise<void> {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timedOut = await Promise.race([exited.then(() => false), sleep(SERVER_STOP_TIMEOUT_MS).then(() => true)]);
  if (timedOut) {
    process.stderr.write('bench server did not stop in time; killing it\n');
    child.kill('SIGKILL');
    await Promise.race([exited, sleep(5_000)]);
  }
}

/** Waits until a count stops moving (requests still in flight when autocannon closed its sockets finish). */
async function quiesce(database: DatabaseHandle, countSql: string, params: unknown[]): Promise<number> {
  const deadline = Date.now() + QUIESCE_TIMEOUT_MS;
  let last = -1;
  let stable = 0;
  while (Date.now() < deadline) {
    const { rows } = await database.pool.query<{ n: string }>(countSql, params);
    const n = Number(rows[0]?.n ?? '0');
    stable = n === last ? stable + 1 : 0;
    last = n;
    if (stable >= 3) return n;
    await sleep(250);
  }
  return last;
}

// ---------------------------------------------------------------------------------------------------------------
// Output

function describeRun(run: RunOutcome): string[] {
  const r = run.result;
  return [
    run.spec.label,
    String(run.spec.connections),
    run.spec.overallRate === undefined ? 'max' : String(run.spec.overallRate),
    fmt(r.requests.average, 1),
    String(r['2xx']),
    String(r.non2xx),
    String(r.errors),
    fmt(percentile(run.latencies, 50), 2),
    fmt(percentile(run.latencies, 99), 2),
    fmt(run.latencies.length > 0 ? (run.latencies[run.latencies.length - 1] as number) : Number.NaN, 1),
    `${r.latency.p50}/${r.latency.p99}`,
  ];
}

function describeCpu(run: RunOutcome): string[] {
  const c = run.cpu;
  if (!c) return [run.spec.label, '-', '-', '-', '-', '-'];
  const cores = (n: number | undefined) => (n === undefined ? '-' : fmt(n, 2));
  return [run.spec.label, `${fmt(c.machineBusy * 100, 0)}%`, cores(c.client), cores(c.server), cores(c.postgres), cores(c.other)];
}

function reportProblems(run: RunOutcome): void {
  if (run.result.non2xx === 0 && run.result.errors === 0) return;
  process.stdout.write(`\n!! ${run.spec.label}: ${run.result.non2xx} non-2xx responses, ${run.result.errors} errors (${run.result.timeouts} timeouts)\n`);
  for (const [status, n] of run.non2xx) process.stdout.write(`   status ${status}: ${n}\n`);
  for (const sample of run.errorSamples) process.stdout.write(`   e.g. ${sample}\n`);
}

// ---------------------------------------------------------------------------------------------------------------
// Main

class Interrupted extends Error {
  override name = 'Interrupted';
}

async function main(): Promise<number> {
  let options: Options | undefined;
  try {
    options = readOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
    return 64;
  }
  if (!options) {
    process.stdout.write(USAGE);
    return 0;
  }
  const opts = options;
  const logger = createLogger({ level: 'error', destination: process.stderr });
  const adminToken = randomBytes(24).toString('hex');
  const ipnSecret = randomBytes(24).toString('hex');
  const changenowApiKey = randomBytes(24).toString('hex');
  const hostPrivateKey: `0x${string}` = `0x${randomBytes(32).toString('hex')}`;

  let tempDir: string | undefined;
  let embedded: EmbeddedPostgres | undefined;
  let database: DatabaseHandle | undefined;
  let server: ServerChild | undefined;
  let outside: LocalOutside | undefined;
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    process.stderr.write('\ninterrupted: stopping the current run and cleaning up\n');
    current?.stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const checkInterrupted = () => {
    if (interrupted) throw new Interrupted();
  };

  try {
    // -- database
    let connectionString = process.env.DATABASE_URL?.trim() || undefined;
    if (connectionString === undefined) {
      tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'payrail-bench-'));
      // As root, PostgreSQL runs as the postgres system user, which must be able to enter this dir.
      fs.chmodSync(tempDir, 0o755);
      process.stderr.write(`starting embedded PostgreSQL in ${tempDir}\n`);
      embedded = await startEmbeddedPostgres({ dataDir: tempDir, port: await freePort(), logger, database: 'payrail_bench' });
      connectionString = embedded.connectionString;
    } else {
      process.stderr.write('using DATABASE_URL (the bench writes into it)\n');
    }
    database = openPool(connectionString, { max: 4, applicationName: 'payrail-bench-driver', logger });
    await prepareDatabase(database, logger);
    await database.pool.query(`create table if not exists bench_baseline (
      id bigint generated always as identity primary key,
      payload jsonb not null,
      created_at timestamptz not null default now())`);
    const pgInfo = (
      await database.pool.query<{ version: string; fsync: string; sc: string; sb: string }>(
        `select current_setting('server_version') as version, current_setting('fsync') as fsync,
                current_setting('synchronous_commit') as sc, current_setting('shared_buffers') as sb`,
      )
    ).rows[0];
    checkInterrupted();

    // -- the worker's outside world: anvil (host wallet funded) and the ChangeNow simulator, as on a local run
    outside = await startLocalOutside({
      chainId: 31337,
      chainPort: await freePort(),
      changenowPort: await freePort(),
      changenowApiKey,
      hostPrivateKey,
      logger,
    });
    checkInterrupted();

    // -- payrail + baseline, in a child process
    const childEnv: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: connectionString,
      PORT: '0',
      HOST: '127.0.0.1',
      ADMIN_TOKEN: adminToken,
      NOWPAYMENTS_IPN_SECRET: ipnSecret,
      CHANGENOW_API_URL: outside.changenowUrl,
      CHANGENOW_API_KEY: changenowApiKey,
      ETH_RPC_URL: outside.rpcUrl,
      CHAIN_ID: String(outside.chainId),
      HOST_WALLET_PRIVATE_KEY: hostPrivateKey,
      LOG_LEVEL: 'warn',
    };
    server = await startServerChild(childEnv, opts.cpuProfDir);
    const serverPid = server.child.pid;
    const intakeUrl = `${server.payrailUrl}/webhooks/nowpayments`;
    process.stderr.write(`payrail at ${server.payrailUrl} (pid ${serverPid}), baseline at ${server.baselineUrl}\n`);
    checkInterrupted();

    // -- the channels the bench payments credit
    for (let index = 0; index < BENCH_CHANNELS; index++) {
      const channelId = benchChannelId(index);
      const put = await fetch(`${server.payrailUrl}/api/channels/${channelId}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(CHANNEL_BODY),
      });
      if (put.status !== 200 && put.status !== 201) throw new Error(`PUT /api/channels/${channelId} answered ${put.status}: ${await put.text()}`);
    }

    // -- bodies: measure what signing costs the client, then pre-sign
    const userId = String(Date.now());
    const factory = new IpnFactory(userId, ipnSecret, Array.from({ length: BENCH_CHANNELS }, (_, index) => benchChannelId(index)));
    const probe = presign(factory, 2_000);
    const signUs = (probe.ms * 1000) / probe.pool.length;
    const sent = new Set<string>();
    const accepted = new Set<string>();
    const postmasterPid = tempDir ? readPostmasterPid(path.join(tempDir, 'pg')) : undefined;
    const processes: Observed = { database, ...(serverPid !== undefined && { serverPid }), ...(postmasterPid !== undefined && { postmasterPid }) };
    const runs: RunOutcome[] = [];
    const warmups: RunOutcome[] = [];
    let intakeConnectionsUsed = 0;

    // -- 1. intake at full speed
    let estimate = 3_000; // req/s, before anything was measured
    if (opts.warmupS > 0) {
      process.stderr.write(`warm-up: intake ${opts.warmupS} s\n`);
      const warm = await runLoad(
        { label: 'warm-up intake', url: intakeUrl, connections: opts.connections, durationS: opts.warmupS, source: new FreshBodies(probe.pool, factory), sent, accepted },
        processes,
      );
      warmups.push(warm);
      intakeConnectionsUsed += opts.connections;
      estimate = Math.max(200, warm.result.requests.average);
      await quiesce(database, 'select count(*)::text as n from payments where user_id = $1', [userId]);
    }
    checkInterrupted();
    const maxPoolSize = Math.ceil(estimate * 2 * (opts.durationS + 1)) + opts.connections;
    process.stderr.write(`pre-signing ${maxPoolSize} bodies (${fmt(signUs, 1)} µs each)\n`);
    const maxPool = presign(factory, maxPoolSize).pool;
    const baselinePool = maxPool.slice(0, Math.min(maxPool.length, 20_000)); // kept for the baseline, which may repeat them
    const maxSource = new FreshBodies(maxPool, factory);
    process.stderr.write(`run: intake, ${opts.connections} connections, ${opts.durationS} s\n`);
    const intakeMax = await runLoad({ label: 'intake (max)', url: intakeUrl, connections: opts.connections, durationS: opts.durationS, source: maxSource, sent, accepted }, processes);
    runs.push(intakeMax);
    intakeConnectionsUsed += opts.connections;
    await quiesce(database, 'select count(*)::text as n from payments where user_id = $1', [userId]);
    checkInterrupted();

    // -- 2. baseline: one plain INSERT per request, same connections and duration
    const baselineBefore = Number((await database.pool.query<{ n: string }>('select coalesce(max(id), 0)::text as n from bench_baseline')).rows[0]?.n ?? '0');
    if (opts.warmupS > 0) {
      process.stderr.write(`warm-up: baseline ${opts.warmupS} s\n`);
      warmups.push(await runLoad({ label: 'warm-up baseline', url: server.baselineUrl, connections: opts.connections, durationS: opts.warmupS, source: new CyclingBodies(baselinePool) }, processes));
    }
    checkInterrupted();
    process.stderr.write(`run: baseline, ${opts.connections} connections, ${opts.durationS} s\n`);
    const baselineRun = await runLoad({ label: 'baseline (1 INSERT)', url: server.baselineUrl, connections: opts.connections, durationS: opts.durationS, source: new CyclingBodies(baselinePool) }, processes);
    runs.push(baselineRun);
    const baselineRows = await quiesce(database, 'select count(*)::text as n from bench_baseline where id > $1', [baselineBefore]);
    checkInterrupted();

    // -- 3. intake at a fixed rate
    const ratePoolSize = Math.ceil(opts.rate * (opts.durationS + 2) * 1.2) + opts.rateConnections;
    const rateSource = new FreshBodies(presign(factory, ratePoolSize).pool, factory);
    process.stderr.write(`run: intake at ${opts.rate} req/s, ${opts.rateConnections} connections, ${opts.durationS} s\n`);
    const intakeRate = await runLoad(
      { label: `intake @${opts.rate} req/s`, url: intakeUrl, connections: opts.rateConnections, durationS: opts.durationS, overallRate: opts.rate, source: rateSource, sent, accepted },
      processes,
    );
    runs.push(intakeRate);
    intakeConnectionsUsed += Math.min(opts.rateConnections, opts.rate);
    await quiesce(database, 'select count(*)::text as n from payments where user_id = $1', [userId]);

    // -- reconcile the database with what the clients saw
    const { rows: paymentRows } = await database.pool.query<{ payment_id: string; credited: boolean; review_reason: string | null }>(
      'select payment_id::text as payment_id, credited_at is not null as credited, review_reason from payments where user_id = $1',
      [userId],
    );
    const stored = new Map(paymentRows.map((r) => [r.payment_id, r]));
    const missing = [...accepted].filter((id) => !stored.has(id));
    const unsent = paymentRows.filter((r) => !sent.has(r.payment_id)).length;
    const uncredited = paymentRows.filter((r) => !r.credited).length;
    const inReview = paymentRows.filter((r) => r.review_reason !== null).length;
    const unanswered = paymentRows.length - accepted.size;
    const allWarmupAndRuns = [...warmups, ...runs];
    const intake2xx = allWarmupAndRuns.filter((r) => r.spec.accepted).reduce((sum, r) => sum + r.result['2xx'], 0);
    const ledger = await checkLedger(database.db);
    const conversions = await database.pool
      .query<{ status: string; n: string; payments: string }>('select status, count(*)::text as n, coalesce(sum(payment_count), 0)::text as payments from conversions group by status order by status')
      .then(({ rows }) => rows.map((r) => `${r.status} ${r.n} (${r.payments} payments)`).join(', ') || 'none')
      .catch((error: Error) => `unavailable (${error.message})`);

    // -- print
    const cpu = os.cpus();
    const lines: string[] = [];
    const out = (text = '') => lines.push(text);
    out();
    out(`payrail intake benchmark, ${new Date().toISOString()}`);
    out(`machine:  ${machineLine()}`);
    out(`database: PostgreSQL ${pgInfo?.version ?? '?'} (${embedded ? 'embedded, temp dir' : 'DATABASE_URL'}), fsync=${pgInfo?.fsync}, synchronous_commit=${pgInfo?.sc}, shared_buffers=${pgInfo?.sb}`);
    out(`client:   autocannon 8, pipelining 1, ${opts.durationS} s per run after ${opts.warmupS} s warm-up; every intake request is a new payment (status finished)`);
    out(`          signing costs ${fmt(signUs, 1)} µs/body on this machine: bodies pre-signed before each run (signed live during runs: ${maxSource.liveSigned + rateSource.liveSigned})`);
    out(`          client, payrail, and PostgreSQL share the same ${cpu.length} cores`);
    out();
    out(
      table(
        ['run', 'conns', 'rate', 'req/s', '2xx', 'non-2xx', 'errors', 'p50 ms', 'p99 ms', 'max ms', 'ac p50/p99'],
        runs.map(describeRun),
      ),
    );
    out('  req/s = autocannon mean of 1-s samples; p50/p99/max over every 2xx latency; "ac" = autocannon histogram (whole ms)');
    out();
    const ratio = intakeMax.result.requests.average / baselineRun.result.requests.average;
    const p99AtRate = percentile(intakeRate.latencies, 99);
    const achievedRate = intakeRate.result.requests.average;
    out(`ratio intake/baseline:  ${fmt(ratio, 3)}   (aim >= 0.5: ${ratio >= 0.5 ? 'met' : 'NOT met'})`);
    out(`p99 at ${opts.rate} req/s:       ${fmt(p99AtRate, 2)} ms   (aim < 50 ms: ${p99AtRate < 50 ? 'met' : 'NOT met'}; achieved ${fmt(achievedRate, 1)} req/s)`);
    out();
    out('CPU during each run (machine busy %, and cores used by each party):');
    out(table(['run', 'busy', 'client', 'payrail', 'postgres', 'other'], runs.map(describeCpu)));
    out();
    out(`database sessions of payrail / the baseline, average count by state and wait (sampled every ${WAIT_SAMPLE_MS} ms):`);
    for (const run of runs) {
      const top = [...run.waits.entries()].sort((a, b) => b[1] - a[1]).slice(0, 6);
      out(`  ${run.spec.label}:${top.length === 0 ? ' (none)' : ''}`);
      for (const [key, n] of top) out(`    ${fmt(n / Math.max(1, run.waitSamples), 2).padStart(6)}  ${key}`);
    }
    out();
    out('database check:');
    out(`  intake requests sent (incl. warm-up):   ${sent.size}`);
    out(`  intake 2xx responses (incl. warm-up):   ${intake2xx} (distinct payment ids: ${accepted.size})`);
    out(`  payments recorded by the bench:         ${paymentRows.length}`);
    out(`  every 2xx payment id in the database:   ${missing.length === 0 ? 'yes' : `NO, ${missing.length} missing (e.g. ${missing.slice(0, 3).join(', ')})`}`);
    out(`  payments never sent by the bench:       ${unsent}`);
    out(`  sent but not recorded:                  ${sent.size - (paymentRows.length - unsent)}`);
    out(
      `  payments count == 2xx:                  ${paymentRows.length === intake2xx ? 'yes' : `no: ${unanswered} more, the requests in flight when autocannon closed its sockets at the end of each run (committed, answer dropped; at most ${intakeConnectionsUsed})`}`,
    );
    out(`  payments not credited / in review:      ${uncredited} / ${inReview}`);
    out(`  baseline rows inserted:                 ${baselineRows} for ${allWarmupAndRuns.filter((r) => r.spec.url === server?.baselineUrl).reduce((s, r) => s + r.result['2xx'], 0)} 2xx`);
    out(`  conversions by the worker meanwhile:    ${conversions}`);
    out(`  checkLedger: ok=${ledger.ok} (${ledger.accounts} accounts, ${ledger.journals} journals, ${ledger.entries} entries${ledger.ok ? '' : `; ${ledger.problems.length} problems`})`);
    for (const p of ledger.problems.slice(0, 5)) out(`    ${p.rule}: ${p.subject}: ${p.detail}`);
    if (server.stderrLines > 0) {
      out();
      out(`server log lines at warn or above: ${server.stderrLines}; last ones:`);
      for (const l of server.stderrTail.slice(-5)) out(`  ${l.slice(0, 400)}`);
    }
    process.stdout.write(lines.join('\n') + '\n');
    for (const run of [...warmups, ...runs]) reportProblems(run);

    const healthy =
      runs.every((r) => r.result.non2xx === 0 && r.result.errors === 0) &&
      missing.length === 0 &&
      unsent === 0 &&
      accepted.size === intake2xx &&
      sent.size === paymentRows.length &&
      uncredited === 0 &&
      unanswered >= 0 &&
      unanswered <= intakeConnectionsUsed &&
      ledger.ok;
    return healthy ? 0 : 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (server) await stopServerChild(server).catch((error: Error) => process.stderr.write(`stopping the bench server: ${error.message}\n`));
    await outside?.stop().catch((error: Error) => process.stderr.write(`stopping the local outside world: ${error.message}\n`));
    await database?.close().catch(() => undefined);
    await embedded?.stop().catch((error: Error) => process.stderr.write(`stopping embedded PostgreSQL: ${error.message}\n`));
    if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof Interrupted) {
      process.stderr.write('bench interrupted; cleaned up\n');
      process.exit(130);
    }
    process.stderr.write(`bench failed: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
