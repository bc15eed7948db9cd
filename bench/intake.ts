/**
 * npm run bench:intake [-- --duration 10 --connections 50 --rate 500 --rate-connections 50 --rate-duration 10 --warmup 2]
 *                        [-- --channels 64 --spread uniform|power]
 *                        [-- --history 1000000 --history-channels 1000 --probe 2000]
 *
 * Drives signed NOWPayments IPNs (each a NEW payment, status `finished`, so every request records AND credits a
 * payment) over loopback with autocannon against a running payrail, then the same load against a baseline route
 * doing one plain INSERT per request on the same database, then intake again at a fixed rate, sent open loop and
 * evenly spaced (bench/paced.ts: autocannon's rate limit sends each second's share as a burst). Prints throughput,
 * the intake/baseline ratio, p50/p99 latencies and the machine, how payrail grouped the IPNs into database calls
 * during each intake run (its payrail_intake_calls_total and payrail_intake_call_ipns_total, scraped before and after the run); then reconciles
 * the database with the responses and runs checkLedger.
 *
 * Payments go to --channels channels, in turn (--spread uniform) or drawn with a power law (--spread power: channel k
 * of N gets a share proportional to 1/k), which puts most of the load on a few balance rows, as real traffic may.
 *
 * payrail runs in a child process (bench/server.ts) so autocannon does not share its event loop. Without
 * DATABASE_URL an embedded PostgreSQL is started in a temp dir and removed afterwards. With DATABASE_URL the bench
 * WRITES into that database (a bench channel, payments, ledger entries, table bench_baseline): use a disposable one.
 * The worker role gets the outside world of a local run (anvil and the ChangeNow simulator, started here), so the
 * conversion stage batches the credited ETH while intake runs, as it would in `payrail start`.
 *
 * --history N first fills the (empty) database with N stored payments and everything the pipeline keeps for them
 * (bench/history.ts: set-based SQL, minutes for a million), so intake can be compared on an empty and a full
 * database. --probe N times N recordIpn calls in this process, one at a time on one connection, before the server
 * starts: the database's own cost per payment, without HTTP, the client or concurrency.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { privateKeyToAccount } from 'viem/accounts';
import { readOptionValues, UsageError, wholeNumberOption as int } from '../src/cli-options.ts';
import type { DatabaseHandle } from '../src/db/index.ts';
import { channelInputSchema, upsertChannel } from '../src/channels/index.ts';
import { checkLedger, type LedgerReport } from '../src/ledger/index.ts';
import { parsePercent } from '../src/money/index.ts';
import { startLocalOutside, type LocalOutside } from '../src/simulators/index.ts';
import { mintLocalUsdt } from '../src/simulators/usdt/index.ts';
import {
  assertLoopback,
  BenchPostgres,
  beginRun,
  childReady,
  type BenchSecrets,
  type BenchStart,
  type PgSettings,
  Interruption,
  ledgerLines,
  OutputTail,
  payrailConfig,
  putChannel,
  readPgSettings,
  reportHeader,
  runBench,
  sessionWaitsSql,
  stopChild,
  WaitSampler,
} from './harness.ts';
import { HistoryInterrupted, seedHistory, type HistorySummary } from './history.ts';
import { probeIntake, probeLines, type ProbeResult } from './probe.ts';
import { runPaced, stopPaced } from './paced.ts';
import {
  busyShare,
  CHANNEL_SPREADS,
  cpuUsageCores,
  eachLimited,
  fmt,
  freePort,
  IpnFactory,
  machineTicks,
  percentile,
  postgresTicks,
  presign,
  procTicks,
  SPREAD_SEED,
  sleep,
  table,
  ticksToCores,
  topShares,
  type BenchIpn,
  type ChannelSpread,
} from './shared.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SERVER_ENTRY = fileURLToPath(new URL('./server.ts', import.meta.url));

/** A channel id reserved for the bench (threshold strategy: a credit queues no payout job). */
const BENCH_CHANNEL_ID = '-1009000000001';
/**
 * By default payments are spread over this many channels (ids BENCH_CHANNEL_ID, BENCH_CHANNEL_ID - 1, ...): a credit
 * locks its channel's balance row, so one channel for every payment measures the hot spot, which --channels 1 asks
 * for on purpose.
 */
const DEFAULT_CHANNELS = 64;
const MAX_CHANNELS = 100_000;
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
  /** Seconds of the fixed-rate run. */
  rateDurationS: number;
  /** At most this many seconds of waiting, before the fixed-rate run, for the worker to end the earlier runs' work. */
  rateDrainS: number;
  warmupS: number;
  /** Directory for a V8 CPU profile of the server child (node --cpu-prof), if asked for. */
  cpuProfDir?: string;
  /** Stored payments to load before anything runs (0: none, an empty database as before). */
  history: number;
  historyChannels: number;
  /** recordIpn calls timed in-process before the server starts (0: none). */
  probe: number;
  /** Channels the payments go to (the first `channels` of the bench's ids). */
  channels: number;
  spread: ChannelSpread;
  /** `one`: payrail's web and worker in one process (`payrail start`); `apart`: each in its own process. */
  layout: Layout;
}

const LAYOUTS = ['one', 'apart'] as const;
type Layout = (typeof LAYOUTS)[number];

const USAGE = `usage: npm run bench:intake -- [options]

  --duration S          seconds per measured run (default 10)
  --connections N       concurrent connections for the max-throughput runs (default 50)
  --rate R              requests/s for the fixed-rate intake run (default 500)
  --rate-connections N  connections for the fixed-rate run (default: --connections)
  --rate-duration S     seconds of the fixed-rate run (default: --duration); at least the conversion poll interval
                        (15 s) to see the worker settle and pay out what that run credited
  --rate-drain S        before the fixed-rate run, wait at most S seconds for the worker to convert, settle and pay
                        out what the full-speed run credited, so that the run measures 500 req/s and the worker's
                        work for them, not the recovery from an overload (default 60; 0 = start at once)
  --warmup S            seconds of unmeasured warm-up before each run (the fixed-rate one at its rate) (default 2;
                        0 = none)
  --channels N          channels the payments go to, 1..${MAX_CHANNELS} (default ${DEFAULT_CHANNELS})
  --spread S            uniform: the channels in turn; power: channel k of N gets a share proportional to 1/k
                        (Zipf, exponent 1, drawn from a fixed seed) (default uniform)
  --cpu-prof DIR        write a V8 CPU profile of the server process (payrail + baseline) into DIR
  --layout L            one: payrail's web and worker in one process, as \`payrail start\` (default); apart: the web
                        role (with the baseline) and the worker role in two processes, as \`payrail web\` and
                        \`payrail worker\` in a production deployment
  --history N           first load N stored payments (credited, converted, paid out, with their ledger) into the
                        empty database with set-based SQL, then VACUUM ANALYZE (default 0: none)
  --history-channels N  channels the history is spread over, at least --channels: the bench's come first
                        (default 1000, or --channels if more)
  --probe N             time N recordIpn calls in-process, one at a time, before the server starts (default 0: none)

  DATABASE_URL=...      use this (disposable!) database instead of a temporary embedded PostgreSQL
`;

function readOptions(argv: string[]): Options | undefined {
  const values = readOptionValues(argv, {
    values: [
      'duration',
      'connections',
      'rate',
      'rate-connections',
      'rate-duration',
      'rate-drain',
      'warmup',
      'cpu-prof',
      'history',
      'history-channels',
      'probe',
      'channels',
      'spread',
      'layout',
    ],
  });
  if (!values) return undefined;
  const connections = int('connections', values.connections, 50, 1, 1000);
  const channels = int('channels', values.channels, DEFAULT_CHANNELS, 1, MAX_CHANNELS);
  const spread = values.spread ?? 'uniform';
  if (!(CHANNEL_SPREADS as readonly string[]).includes(spread))
    throw new UsageError(`--spread must be one of ${CHANNEL_SPREADS.join(', ')} (got "${spread}")`);
  const durationS = int('duration', values.duration, 10, 1, 3600);
  const layout = values.layout ?? 'one';
  if (!(LAYOUTS as readonly string[]).includes(layout))
    throw new UsageError(`--layout must be one of ${LAYOUTS.join(', ')} (got "${layout}")`);
  return {
    durationS,
    connections,
    rate: int('rate', values.rate, 500, 1, 100_000),
    rateConnections: int('rate-connections', values['rate-connections'], connections, 1, 1000),
    rateDurationS: int('rate-duration', values['rate-duration'], durationS, 1, 3600),
    rateDrainS: int('rate-drain', values['rate-drain'], 60, 0, 3600),
    warmupS: int('warmup', values.warmup, 2, 0, 600),
    ...(values['cpu-prof'] !== undefined && { cpuProfDir: path.resolve(values['cpu-prof']) }),
    history: int('history', values.history, 0, 0, 9_000_000),
    // The history gives every bench channel a past, so it needs at least as many channels as the bench uses.
    historyChannels: int('history-channels', values['history-channels'], Math.max(1000, channels), channels, 1_000_000),
    probe: int('probe', values.probe, 0, 0, 1_000_000),
    channels,
    spread: spread as ChannelSpread,
    layout: layout as Layout,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Signed IPN bodies

/** Where a run's request bodies come from. */
interface BodySource {
  next(): BenchIpn;
}

/** Pre-signed bodies, each used once; signs on the fly (and counts it) if the pool runs dry. */
class FreshBodies implements BodySource {
  private index = 0;
  liveSigned = 0;
  constructor(
    private readonly pool: BenchIpn[],
    private readonly factory: IpnFactory,
  ) {}
  next(): BenchIpn {
    const body = this.pool[this.index];
    if (body !== undefined) {
      this.pool[this.index++] = undefined as unknown as BenchIpn; // let the sent body be collected
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
  constructor(private readonly pool: BenchIpn[]) {
    if (pool.length === 0) throw new Error('empty body pool');
  }
  next(): BenchIpn {
    const body = this.pool[this.index] as BenchIpn;
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
  /** Payments sent per channel index (intake runs), for the spread the report shows. */
  perChannel?: Float64Array;
}

/** What a run's client counted, whichever client ran it. */
interface RunResult {
  /** Answers per second: autocannon's mean of 1-s samples, or the paced client's answers over its run. */
  perSecond: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** autocannon's own p50/p99 (whole ms); none for the paced client. */
  reported?: { p50: number; p99: number };
}

interface RunOutcome {
  spec: RunSpec;
  result: RunResult;
  /** Latency of every 2xx response, ms, as the client measured it (not rounded). */
  latencies: Float64Array;
  non2xx: Map<number, number>;
  errorSamples: string[];
  cpu?: CpuUsage;
  /** What the server's database sessions were doing, sampled every WAIT_SAMPLE_MS: "state wait_event" -> samples. */
  waits: WaitSampler;
  /** A paced run's 2xx latencies by the moment they were sent: the run's start and its steady part told apart. */
  byWindow?: LatencyWindow[];
}

interface LatencyWindow {
  fromS: number;
  toS: number;
  p50: number;
  p99: number;
}

/** About ten windows a run, whole seconds each. */
function latencyWindows(latencies: ReadonlyArray<{ ms: number; at: number }>, durationS: number): LatencyWindow[] {
  const widthS = Math.max(1, Math.ceil(durationS / 10));
  const windows: LatencyWindow[] = [];
  for (let fromS = 0; fromS < durationS; fromS += widthS) {
    const toS = Math.min(durationS, fromS + widthS);
    const inside = latencies.filter((l) => l.at >= fromS * 1000 && l.at < toS * 1000).map((l) => l.ms);
    if (inside.length === 0) continue;
    const sorted = Float64Array.from(inside).sort();
    windows.push({ fromS, toS, p50: percentile(sorted, 50), p99: percentile(sorted, 99) });
  }
  return windows;
}

const WAIT_SAMPLE_MS = 100;

/**
 * pg_stat_activity of payrail's and the baseline's sessions while a run goes. "idle in transaction" is a session
 * inside a transaction waiting for its client (payrail) to send the next statement.
 */
const WAITS_SQL = sessionWaitsSql(['payrail-bench-webworker', 'payrail-bench-baseline'], 60);

const PAYMENT_ID_RE = /"paymentId":"([0-9]+)"/;

let current: autocannon.Instance | undefined;

interface Observed {
  /** payrail's processes: one, or its web and its worker (--layout apart). */
  serverPids: number[];
  postmasterPid?: number;
  /** The driver's own pool, used to sample what the server's backends wait on. */
  database: DatabaseHandle;
}

async function runLoad(spec: RunSpec, processes: Observed): Promise<RunOutcome> {
  const latencies: number[] = [];
  const non2xx = new Map<number, number>();
  const errorSamples: string[] = [];
  const { source, sent, accepted, perChannel } = spec;
  const request: autocannon.Request = {
    method: 'POST',
    path: new URL(spec.url).pathname,
    headers: { 'content-type': 'application/json' },
    setupRequest(req) {
      const body = source.next();
      sent?.add(body.paymentId);
      if (perChannel) perChannel[body.channel] = (perChannel[body.channel] ?? 0) + 1;
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
  const waits = new WaitSampler(processes.database, WAITS_SQL, WAIT_SAMPLE_MS);
  const cpuBefore = sampleCpu(processes.serverPids, processes.postmasterPid);
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
  const answered = await instance;
  current = undefined;
  const result: RunResult = {
    perSecond: answered.requests.average,
    ok: answered['2xx'],
    non2xx: answered.non2xx,
    errors: answered.errors,
    timeouts: answered.timeouts,
    reported: { p50: answered.latency.p50, p99: answered.latency.p99 },
  };
  const cpuAfter = sampleCpu(processes.serverPids, processes.postmasterPid);
  await waits.stop();
  return {
    waits,
    spec,
    result,
    latencies: Float64Array.from(latencies).sort(),
    non2xx,
    errorSamples,
    ...(cpuBefore && cpuAfter && { cpu: cpuDelta(cpuBefore, cpuAfter) }),
  };
}

/** A run at `spec.overallRate` sent open loop and evenly spaced (bench/paced.ts), observed as runLoad observes one. */
async function runPacedLoad(spec: RunSpec & { overallRate: number }, processes: Observed): Promise<RunOutcome> {
  const non2xx = new Map<number, number>();
  const { source, sent, accepted, perChannel } = spec;
  const waits = new WaitSampler(processes.database, WAITS_SQL, WAIT_SAMPLE_MS);
  const cpuBefore = sampleCpu(processes.serverPids, processes.postmasterPid);
  const paced = await runPaced({
    url: spec.url,
    rate: spec.overallRate,
    durationS: spec.durationS,
    connections: spec.connections,
    timeoutMs: 10_000,
    next() {
      const body = source.next();
      sent?.add(body.paymentId);
      if (perChannel) perChannel[body.channel] = (perChannel[body.channel] ?? 0) + 1;
      return { body: body.raw, headers: { 'content-type': 'application/json', 'x-nowpayments-sig': body.signature } };
    },
    onAnswer(status, body) {
      if (status >= 200 && status < 300) {
        const match = PAYMENT_ID_RE.exec(body);
        if (accepted && match?.[1] !== undefined) accepted.add(match[1]);
      } else non2xx.set(status, (non2xx.get(status) ?? 0) + 1);
    },
  });
  const cpuAfter = sampleCpu(processes.serverPids, processes.postmasterPid);
  await waits.stop();
  const ok = paced.latencies.filter((l) => l.status >= 200 && l.status < 300);
  return {
    waits,
    spec,
    result: {
      perSecond: paced.latencies.length / paced.seconds,
      ok: ok.length,
      non2xx: paced.latencies.length - ok.length,
      errors: paced.errors,
      timeouts: paced.timeouts,
    },
    latencies: Float64Array.from(ok.map((l) => l.ms)).sort(),
    byWindow: latencyWindows(ok, spec.durationS),
    non2xx,
    errorSamples: paced.errorSamples,
    ...(cpuBefore && cpuAfter && { cpu: cpuDelta(cpuBefore, cpuAfter) }),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// CPU accounting (Linux /proc; absent elsewhere)

interface CpuSample {
  at: bigint;
  machine: { busy: number; all: number };
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

function sampleCpu(serverPids: readonly number[], postmasterPid: number | undefined): CpuSample | undefined {
  const machine = machineTicks();
  if (!machine) return undefined;
  // payrail's CPU is its processes' together: one, or its web and its worker.
  const ticks = serverPids.map(procTicks);
  const server = ticks.every((t) => t !== undefined) ? ticks.reduce<number>((sum, t) => sum + t, 0) : undefined;
  const postgres = postgresTicks(postmasterPid);
  return {
    at: process.hrtime.bigint(),
    machine,
    parent: process.cpuUsage(),
    ...(server !== undefined && { server }),
    ...(postgres !== undefined && { postgres }),
  };
}

function cpuDelta(a: CpuSample, b: CpuSample): CpuUsage {
  const seconds = Number(b.at - a.at) / 1e9;
  const machineBusy = busyShare(a.machine, b.machine);
  const client = cpuUsageCores(a.parent, b.parent, seconds);
  const server = ticksToCores(a.server, b.server, seconds);
  const postgres = ticksToCores(a.postgres, b.postgres, seconds);
  const other =
    server !== undefined && postgres !== undefined
      ? Math.max(0, machineBusy * os.cpus().length - client - server - postgres)
      : undefined;
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
  /** Its log lines (warn and above), the last ones. */
  stderr: OutputTail;
  /** payrail's worker role in a process of its own (--layout apart). */
  worker?: WorkerChild;
}

interface WorkerChild {
  child: ChildProcess;
  stderr: OutputTail;
}

/** bench/server.ts in a child process, in the role asked for (bench/server.ts, BENCH_SERVER_ROLE). */
function spawnServer(env: NodeJS.ProcessEnv, cpuProfDir: string | undefined, role: 'both' | 'web' | 'worker') {
  const profiling = cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`];
  const child = spawn(process.execPath, [...profiling, '--import', 'tsx', SERVER_ENTRY], {
    cwd: ROOT,
    env: role === 'both' ? env : { ...env, BENCH_SERVER_ROLE: role },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const stderr = new OutputTail(20);
  // The child's logs (warn and above) are kept, not streamed: printing them during a run would cost client CPU.
  readline.createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', stderr.keep);
  return { child, stderr };
}

/** Until payrail's worker role alone (spawnServer's `worker`) says it started. */
async function workerStarted({ child, stderr }: WorkerChild): Promise<void> {
  await childReady(
    child,
    readline.createInterface({ input: child.stdout as NodeJS.ReadableStream }),
    (line) => line === JSON.stringify({ worker: 'started' }) || undefined,
    SERVER_READY_TIMEOUT_MS,
    {
      timedOut: () => new Error(`bench worker not started after ${SERVER_READY_TIMEOUT_MS} ms`),
      exited: (code, signal) =>
        new Error(`bench worker exited before it started (code ${code}, signal ${signal}):\n${stderr.tail.join('\n')}`),
    },
  );
}

async function startServerChild(
  env: NodeJS.ProcessEnv,
  cpuProfDir: string | undefined,
  layout: Layout,
): Promise<ServerChild> {
  const { child, stderr } = spawnServer(env, cpuProfDir, layout === 'one' ? 'both' : 'web');
  // bench/server.ts prints its two URLs as one JSON line once both listen.
  const ready = await childReady(
    child,
    readline.createInterface({ input: child.stdout as NodeJS.ReadableStream }),
    (line) => {
      try {
        return JSON.parse(line) as { payrail: string; baseline: string };
      } catch {
        throw new Error(`bench server printed an unexpected line: ${line}`);
      }
    },
    SERVER_READY_TIMEOUT_MS,
    {
      timedOut: () => new Error(`bench server not ready after ${SERVER_READY_TIMEOUT_MS} ms`),
      exited: (code, signal) =>
        new Error(
          `bench server exited before it was ready (code ${code}, signal ${signal}):\n${stderr.tail.join('\n')}`,
        ),
    },
  );
  for (const url of [ready.payrail, ready.baseline]) assertLoopback('bench server', url);
  return { child, payrailUrl: ready.payrail, baselineUrl: ready.baseline, stderr };
}

/**
 * The first channel through payrail's API (PUT /api/channels, its checks and audit row), the others copied from its
 * stored row in one statement: a PUT is a transaction and a commit of its own, and a thousand of them took tens of
 * seconds on a busy 2-core machine. The copies are the rows the PUT would write (as bench/history.ts writes its
 * channels), without an audit row each.
 */
async function registerChannels(
  database: DatabaseHandle,
  payrailUrl: string,
  adminToken: string,
  channelIds: readonly string[],
): Promise<void> {
  const [first, ...others] = channelIds;
  if (first === undefined) return;
  await putChannel(payrailUrl, adminToken, first, CHANNEL_BODY);
  if (others.length === 0) return;
  const { rowCount } = await database.pool.query(
    `insert into channels (channel_id, payout_strategy, threshold_usd_cents, payout_currency, payout_network, wallet_address,
                           platform_fee_percent)
     select id, c.payout_strategy, c.threshold_usd_cents, c.payout_currency, c.payout_network, c.wallet_address,
            c.platform_fee_percent
     from channels c cross join unnest($2::text[]) as id where c.channel_id = $1
     on conflict (channel_id) do update set payout_strategy = excluded.payout_strategy,
       threshold_usd_cents = excluded.threshold_usd_cents, payout_currency = excluded.payout_currency,
       payout_network = excluded.payout_network, wallet_address = excluded.wallet_address,
       platform_fee_percent = excluded.platform_fee_percent, updated_at = now()`,
    [first, others],
  );
  if (rowCount !== others.length)
    throw new Error(`registering the bench channels wrote ${rowCount} rows for ${others.length} channels`);
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
// How payrail grouped the IPNs: its payrail_intake_calls_total and payrail_intake_call_ipns_total, from its /metrics

/**
 * One scrape: the intake's database calls so far, and the IPNs in them; and the event loop's delay (p99 and max, in
 * seconds) since the scrape before, which reset it: how long an IPN's socket could wait for the process, web and worker
 * together, to get to it.
 */
interface GroupScrape {
  calls: number;
  ipns: number;
  loopP99: number;
  loopMax: number;
}

const GROUP_LINE_RE = /^payrail_intake_(calls|call_ipns)_total (\S+)$/;
const LOOP_LINE_RE = /^payrail_process_nodejs_eventloop_lag_(p99|max)_seconds (\S+)$/;
const METRICS_TIMEOUT_MS = 60_000;

async function scrapeGroups(payrailUrl: string, token: string): Promise<GroupScrape> {
  const response = await fetch(`${payrailUrl}/metrics`, {
    headers: { authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(METRICS_TIMEOUT_MS),
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`GET /metrics answered ${response.status}: ${text.slice(0, 200)}`);
  const scrape: GroupScrape = { calls: Number.NaN, ipns: Number.NaN, loopP99: Number.NaN, loopMax: Number.NaN };
  for (const line of text.split('\n')) {
    const loop = LOOP_LINE_RE.exec(line);
    if (loop) {
      if (loop[1] === 'p99') scrape.loopP99 = Number(loop[2]);
      else scrape.loopMax = Number(loop[2]);
      continue;
    }
    const match = GROUP_LINE_RE.exec(line);
    if (!match) continue;
    if (match[1] === 'calls') scrape.calls = Number(match[2]);
    else scrape.ipns = Number(match[2]);
  }
  if (!Number.isFinite(scrape.calls) || !Number.isFinite(scrape.ipns))
    throw new Error('/metrics has no payrail_intake_calls_total and payrail_intake_call_ipns_total');
  return scrape;
}

/** A scrape, or why there is none (the report says so; the run goes on). */
function tryScrapeGroups(payrailUrl: string, token: string): Promise<GroupScrape | string> {
  return scrapeGroups(payrailUrl, token).catch((error: Error) => error.message);
}

type GroupFigures = GroupScrape;

/** What happened between two scrapes (the event loop's delay is the later scrape's: the earlier one reset it). */
function groupFigures(before: GroupScrape, after: GroupScrape): GroupFigures {
  return { ...after, calls: after.calls - before.calls, ipns: after.ipns - before.ipns };
}

function describeGroups(label: string, figures: GroupFigures | string): string[] {
  if (typeof figures === 'string') return [label, '-', '-', '-', '-', '-'];
  const loop = [fmt(figures.loopP99 * 1000, 1), fmt(figures.loopMax * 1000, 1)];
  if (figures.calls === 0) return [label, '0', String(figures.ipns), '-', ...loop];
  return [label, String(figures.calls), String(figures.ipns), fmt(figures.ipns / figures.calls, 2), ...loop];
}

// ---------------------------------------------------------------------------------------------------------------
// Output

function describeRun(run: RunOutcome): string[] {
  const r = run.result;
  return [
    run.spec.label,
    String(run.spec.connections),
    run.spec.overallRate === undefined ? 'max' : String(run.spec.overallRate),
    fmt(r.perSecond, 1),
    String(r.ok),
    String(r.non2xx),
    String(r.errors),
    fmt(percentile(run.latencies, 50), 2),
    fmt(percentile(run.latencies, 99), 2),
    fmt(run.latencies.length > 0 ? (run.latencies[run.latencies.length - 1] as number) : Number.NaN, 1),
    r.reported === undefined ? 'paced' : `${r.reported.p50}/${r.reported.p99}`,
  ];
}

function describeCpu(run: RunOutcome): string[] {
  const c = run.cpu;
  if (!c) return [run.spec.label, '-', '-', '-', '-', '-'];
  const cores = (n: number | undefined) => (n === undefined ? '-' : fmt(n, 2));
  return [
    run.spec.label,
    `${fmt(c.machineBusy * 100, 0)}%`,
    cores(c.client),
    cores(c.server),
    cores(c.postgres),
    cores(c.other),
  ];
}

function reportProblems(run: RunOutcome): void {
  if (run.result.non2xx === 0 && run.result.errors === 0) return;
  process.stdout.write(
    `\n!! ${run.spec.label}: ${run.result.non2xx} non-2xx responses, ${run.result.errors} errors (${run.result.timeouts} timeouts)\n`,
  );
  for (const [status, n] of run.non2xx) process.stdout.write(`   status ${status}: ${n}\n`);
  for (const sample of run.errorSamples) process.stdout.write(`   e.g. ${sample}\n`);
}

// ---------------------------------------------------------------------------------------------------------------
// Main

class Interrupted extends Error {
  override name = 'Interrupted';
}

/** What main starts and stops: kept in one place so the cleanup sees whatever got started before a failure. */
interface Started {
  pg: BenchPostgres;
  server?: ServerChild;
  outside?: LocalOutside;
}

async function main(): Promise<number> {
  const start = beginRun(readOptions, USAGE);
  if ('exitCode' in start) return start.exitCode;
  const { options: opts, logger, secrets } = start;

  const started: Started = { pg: new BenchPostgres(logger) };
  const interruption = new Interruption('stopping the current run and cleaning up', () => {
    current?.stop();
    stopPaced();
  });
  const checkInterrupted = () => {
    if (interruption.interrupted) throw new Interrupted();
  };

  try {
    return await runIntakeBench(started, { opts, logger, secrets, interruption, checkInterrupted });
  } finally {
    interruption.release();
    await stopStarted(started);
  }
}

/** What beginRun read, and how a run learns it was interrupted. */
interface BenchRun {
  opts: Options;
  logger: BenchStart<Options>['logger'];
  secrets: BenchSecrets;
  interruption: Interruption;
  checkInterrupted: () => void;
}

/** Everything up to the server and its channels, then the three runs, the reconciliation and the report. */
async function runIntakeBench(started: Started, run: BenchRun): Promise<number> {
  const { opts, secrets, checkInterrupted } = run;
  const { pg } = started;
  const { connectionString, database, pgInfo } = await openDatabase(pg);
  checkInterrupted();
  const feePercent = parsePercent(process.env.PLATFORM_FEE_PERCENT?.trim() || '3');
  const channelIds = Array.from({ length: opts.channels }, (_, index) => benchChannelId(index));

  const history = await loadHistory(run, connectionString, feePercent);
  checkInterrupted();

  const runStartedAt = (await database.pool.query<{ now: Date }>('select now()')).rows[0]?.now ?? new Date(0);

  const dbProbe = await probeDatabase(run, pg, { connectionString, database, channelIds, feePercent });
  checkInterrupted();

  const outside = await startOutside(run, started, database, history !== undefined);
  checkInterrupted();

  const { server, metricsToken } = await startServer(run, started, connectionString, outside);
  checkInterrupted();

  await registerBenchChannels(database, server.payrailUrl, secrets.adminToken, channelIds);
  checkInterrupted();

  const load = prepareLoad(run, { database, server, metricsToken, channelIds, postmasterPid: pg.postmasterPid() });
  const max = await runIntakeMax(load);
  const baseline = await runBaseline(load, max.baselinePool);
  const rate = await runIntakeRate(load);
  const groups: Array<[RunOutcome, GroupFigures | string]> = [
    [max.run, groupsBetween(max.groupsBefore, max.groupsAfter)],
    [rate.run, groupsBetween(rate.groupsBefore, rate.groupsAfter)],
  ];
  const check = await reconcile(load, runStartedAt);

  const lines = [
    ...reportHeader('intake', pgInfo, pg.embedded ? 'embedded, temp dir' : 'DATABASE_URL'),
    ...setupLines(load, max.source.liveSigned + rate.source.liveSigned, history, dbProbe),
    ...resultLines(load, { max: max.run, baseline: baseline.run, rate: rate.run, rateBacklog: rate.backlog }, groups),
    ...cpuAndWaitLines(load.runs),
    ...databaseCheckLines(load, check, baseline.rows, server.baselineUrl),
    ...ledgerLines(check.ledger),
    ...server.stderr.report('server log lines at warn or above'),
    ...(server.worker?.stderr.report('worker process log lines at warn or above') ?? []),
  ];
  process.stdout.write(lines.join('\n') + '\n');
  for (const outcome of [...load.warmups, ...load.runs]) reportProblems(outcome);
  return isHealthy(load, check) ? 0 : 1;
}

/** Stops what was started; one that fails to stop is reported, and the others are still stopped. */
async function stopStarted({ pg, server, outside }: Started): Promise<void> {
  if (server?.worker)
    await stopChild(server.worker.child, 'bench worker', SERVER_STOP_TIMEOUT_MS).catch((error: Error) =>
      process.stderr.write(`stopping the bench worker: ${error.message}\n`),
    );
  if (server)
    await stopChild(server.child, 'bench server', SERVER_STOP_TIMEOUT_MS).catch((error: Error) =>
      process.stderr.write(`stopping the bench server: ${error.message}\n`),
    );
  await outside
    ?.stop()
    .catch((error: Error) => process.stderr.write(`stopping the local outside world: ${error.message}\n`));
  await pg.close();
}

// ---------------------------------------------------------------------------------------------------------------
// Setup, before the server

async function openDatabase(
  pg: BenchPostgres,
): Promise<{ connectionString: string; database: DatabaseHandle; pgInfo: PgSettings | undefined }> {
  let connectionString = process.env.DATABASE_URL?.trim() || undefined;
  if (connectionString === undefined) {
    connectionString = await pg.startEmbedded('payrail-bench-');
  } else {
    process.stderr.write('using DATABASE_URL (the bench writes into it)\n');
  }
  const database = await pg.open(connectionString, 4);
  await database.pool.query(`create table if not exists bench_baseline (
      id bigint generated always as identity primary key,
      payload jsonb not null,
      created_at timestamptz not null default now())`);
  const pgInfo = await readPgSettings(database);
  return { connectionString, database, pgInfo };
}

/** A stored history, if asked for: before anything else touches the database. */
async function loadHistory(
  { opts, interruption }: BenchRun,
  connectionString: string,
  feePercent: ReturnType<typeof parsePercent>,
): Promise<HistorySummary | undefined> {
  if (opts.history <= 0) return undefined;
  process.stderr.write(`loading a history of ${opts.history} payments over ${opts.historyChannels} channels\n`);
  return seedHistory(connectionString, {
    payments: opts.history,
    channels: opts.historyChannels,
    benchChannels: opts.channels,
    benchChannel: {
      thresholdCents: Math.round(Number(CHANNEL_BODY.thresholdUsd) * 100),
      payoutCurrency: CHANNEL_BODY.payoutCurrency,
      payoutNetwork: CHANNEL_BODY.payoutNetwork,
      walletAddress: CHANNEL_BODY.walletAddress,
    },
    firstChannelId: BigInt(BENCH_CHANNEL_ID),
    fee: feePercent,
    progress: (line) => process.stderr.write(`${line}\n`),
    interrupted: () => interruption.interrupted,
  });
}

/** The database's own cost per payment: recordIpn in this process, one call at a time, nothing else running. */
async function probeDatabase(
  { opts, secrets, logger }: BenchRun,
  pg: BenchPostgres,
  target: {
    connectionString: string;
    database: DatabaseHandle;
    channelIds: string[];
    feePercent: ReturnType<typeof parsePercent>;
  },
): Promise<ProbeResult | undefined> {
  if (opts.probe <= 0) return undefined;
  const { connectionString, database, channelIds, feePercent } = target;
  const input = channelInputSchema.parse(CHANNEL_BODY);
  // As wide as the driver's pool.
  await eachLimited(channelIds, 4, (channelId) => upsertChannel(database.db, channelId, input, 'bench'));
  process.stderr.write(`probe: ${opts.probe} recordIpn calls in-process, one at a time\n`);
  return probeIntake({
    connectionString,
    database,
    count: opts.probe,
    ipnSecret: secrets.ipnSecret,
    channelIds,
    spread: opts.spread,
    fee: feePercent,
    logger,
    postgresTicks: () => postgresTicks(pg.postmasterPid()),
  });
}

/** The worker's outside world: anvil (host wallet funded) and the ChangeNow simulator, as on a local run. */
async function startOutside(
  { secrets, logger }: BenchRun,
  started: Started,
  database: DatabaseHandle,
  withHistory: boolean,
): Promise<LocalOutside> {
  const outside = await startLocalOutside({
    chainId: 31337,
    chainPort: await freePort(),
    changenowPort: await freePort(),
    changenowApiKey: secrets.changenowApiKey,
    hostPrivateKey: secrets.hostPrivateKey,
    logger,
  });
  started.outside = outside;
  // The history's ledger owes its channels USDT (balances below their thresholds): the host wallet holds it, as it
  // would after those conversions, so the payouts the run's credits complete are paid, not refused for funds.
  if (withHistory && outside.usdtContract) {
    const { rows } = await database.pool.query<{ owed: string }>(
      `select coalesce(sum(balance), 0)::text as owed from ledger_accounts where asset = 'usdt' and code like 'channel:%'`,
    );
    const owed = BigInt(rows[0]?.owed ?? '0');
    if (owed > 0n)
      await mintLocalUsdt(
        outside.rpcUrl,
        outside.usdtContract,
        secrets.hostPrivateKey,
        privateKeyToAccount(secrets.hostPrivateKey).address,
        owed,
      );
  }
  return outside;
}

/** payrail + baseline, in a child process. */
async function startServer(
  { opts, secrets }: BenchRun,
  started: Started,
  connectionString: string,
  outside: LocalOutside,
): Promise<{ server: ServerChild; metricsToken: string }> {
  // A token of the bench's own for /metrics, so the scrapes neither depend on nor break with a METRICS_TOKEN the
  // shell may have exported.
  const metricsToken = randomBytes(24).toString('hex');
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    ...payrailConfig(connectionString, secrets, outside),
    METRICS_TOKEN: metricsToken,
  };
  const server = await startServerChild(childEnv, opts.cpuProfDir, opts.layout);
  started.server = server;
  const serverPid = server.child.pid;
  process.stderr.write(`payrail at ${server.payrailUrl} (pid ${serverPid}), baseline at ${server.baselineUrl}\n`);
  if (opts.layout === 'apart') {
    // Kept before it is waited for, so that a worker that never starts is stopped with the rest.
    server.worker = spawnServer(childEnv, opts.cpuProfDir, 'worker');
    await workerStarted(server.worker);
    process.stderr.write(`payrail's worker in its own process (pid ${server.worker.child.pid})\n`);
  }
  return { server, metricsToken };
}

/** The channels the bench payments credit. */
async function registerBenchChannels(
  database: DatabaseHandle,
  payrailUrl: string,
  adminToken: string,
  channelIds: readonly string[],
): Promise<void> {
  const registerStarted = Date.now();
  await registerChannels(database, payrailUrl, adminToken, channelIds);
  process.stderr.write(
    `registered ${channelIds.length} channel${channelIds.length === 1 ? '' : 's'} in ${fmt((Date.now() - registerStarted) / 1000, 1)} s\n`,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// The three runs: intake at full speed, the baseline, intake at a fixed rate

/** What the runs share: where they send, where bodies come from, and what the reconciliation counts. */
interface Load {
  opts: Options;
  checkInterrupted: () => void;
  database: DatabaseHandle;
  processes: Observed;
  intakeUrl: string;
  payrailUrl: string;
  baselineUrl: string;
  metricsToken: string;
  factory: IpnFactory;
  /** Counts the bench's own payments, for quiesce. */
  ownPaymentsSql: string;
  ownPaymentsParams: string[];
  /** The first bodies, signed to time signing; the intake warm-up (or the full-speed run) uses them. */
  probePool: BenchIpn[];
  signUs: number;
  sent: Set<string>;
  accepted: Set<string>;
  perChannel: Float64Array;
  runs: RunOutcome[];
  warmups: RunOutcome[];
  /** Upper bound of requests cut off in flight at the end of the intake runs. */
  intakeConnectionsUsed: number;
}

/** Bodies: measure what signing costs the client, then pre-sign. */
function prepareLoad(
  { opts, secrets, checkInterrupted }: BenchRun,
  target: {
    database: DatabaseHandle;
    server: ServerChild;
    metricsToken: string;
    channelIds: string[];
    postmasterPid: number | undefined;
  },
): Load {
  const { database, server, metricsToken, channelIds, postmasterPid } = target;
  const serverPids = [server.child.pid, server.worker?.child.pid].filter((pid) => pid !== undefined);
  const userId = String(Date.now());
  const factory = new IpnFactory(userId, secrets.ipnSecret, channelIds, opts.spread);
  // Every id the factory issues is >= its base: the range keeps these counts off a full scan of a large history.
  const ownPaymentsSql = 'select count(*)::text as n from payments where user_id = $1 and payment_id >= $2';
  const ownPaymentsParams = [userId, factory.base.toString()];
  const probe = presign(factory, 2_000);
  return {
    opts,
    checkInterrupted,
    database,
    processes: {
      database,
      serverPids,
      ...(postmasterPid !== undefined && { postmasterPid }),
    },
    intakeUrl: `${server.payrailUrl}/webhooks/nowpayments`,
    payrailUrl: server.payrailUrl,
    baselineUrl: server.baselineUrl,
    metricsToken,
    factory,
    ownPaymentsSql,
    ownPaymentsParams,
    probePool: probe.pool,
    signUs: (probe.ms * 1000) / probe.pool.length,
    sent: new Set<string>(),
    accepted: new Set<string>(),
    perChannel: new Float64Array(opts.channels),
    runs: [],
    warmups: [],
    intakeConnectionsUsed: 0,
  };
}

/** The intake fields of a run spec: bodies to reconcile and count per channel. */
function intakeSpec(load: Load, label: string, connections: number, durationS: number, source: BodySource): RunSpec {
  const { intakeUrl: url, sent, accepted, perChannel } = load;
  return { label, url, connections, durationS, source, sent, accepted, perChannel };
}

/** The intake warm-up, if any: its rate sizes the pool of pre-signed bodies for the full-speed run. */
async function warmUpIntake(load: Load): Promise<number> {
  const { opts } = load;
  let estimate = 3_000; // req/s, before anything was measured
  if (opts.warmupS > 0) {
    process.stderr.write(`warm-up: intake ${opts.warmupS} s\n`);
    const source = new FreshBodies(load.probePool, load.factory);
    const warm = await runLoad(
      intakeSpec(load, 'warm-up intake', opts.connections, opts.warmupS, source),
      load.processes,
    );
    load.warmups.push(warm);
    load.intakeConnectionsUsed += opts.connections;
    estimate = Math.max(200, warm.result.perSecond);
    await quiesce(load.database, load.ownPaymentsSql, load.ownPaymentsParams);
  }
  return estimate;
}

/** 1. intake at full speed */
async function runIntakeMax(load: Load) {
  const { opts, factory } = load;
  const estimate = await warmUpIntake(load);
  load.checkInterrupted();
  const maxPoolSize = Math.ceil(estimate * 2 * (opts.durationS + 1)) + opts.connections;
  process.stderr.write(`pre-signing ${maxPoolSize} bodies (${fmt(load.signUs, 1)} µs each)\n`);
  const maxPool = presign(factory, maxPoolSize).pool;
  const baselinePool = maxPool.slice(0, Math.min(maxPool.length, 20_000)); // kept for the baseline, which may repeat them
  const source = new FreshBodies(maxPool, factory);
  const groupsBefore = await tryScrapeGroups(load.payrailUrl, load.metricsToken);
  process.stderr.write(`run: intake, ${opts.connections} connections, ${opts.durationS} s\n`);
  const run = await runLoad(intakeSpec(load, 'intake (max)', opts.connections, opts.durationS, source), load.processes);
  load.runs.push(run);
  load.intakeConnectionsUsed += opts.connections;
  await quiesce(load.database, load.ownPaymentsSql, load.ownPaymentsParams);
  // After quiesce: the IPNs still in flight when autocannon stopped are in the counters too.
  const groupsAfter = await tryScrapeGroups(load.payrailUrl, load.metricsToken);
  load.checkInterrupted();
  return { run, source, baselinePool, groupsBefore, groupsAfter };
}

/** 2. baseline: one plain INSERT per request, same connections and duration */
async function runBaseline(load: Load, baselinePool: BenchIpn[]): Promise<{ run: RunOutcome; rows: number }> {
  const { opts, database } = load;
  const baselineBefore = Number(
    (await database.pool.query<{ n: string }>('select coalesce(max(id), 0)::text as n from bench_baseline')).rows[0]
      ?.n ?? '0',
  );
  const baselineSpec = (label: string, durationS: number): RunSpec => ({
    label,
    url: load.baselineUrl,
    connections: opts.connections,
    durationS,
    source: new CyclingBodies(baselinePool),
  });
  if (opts.warmupS > 0) {
    process.stderr.write(`warm-up: baseline ${opts.warmupS} s\n`);
    load.warmups.push(await runLoad(baselineSpec('warm-up baseline', opts.warmupS), load.processes));
  }
  load.checkInterrupted();
  process.stderr.write(`run: baseline, ${opts.connections} connections, ${opts.durationS} s\n`);
  const run = await runLoad(baselineSpec('baseline (1 INSERT)', opts.durationS), load.processes);
  load.runs.push(run);
  const rows = await quiesce(database, 'select count(*)::text as n from bench_baseline where id > $1', [
    baselineBefore,
  ]);
  load.checkInterrupted();
  return { run, rows };
}

/** 3. intake at a fixed rate */
async function runIntakeRate(load: Load) {
  const { opts, factory } = load;
  const ratePoolSize = Math.ceil(opts.rate * (opts.rateDurationS + opts.warmupS + 2) * 1.2) + opts.rateConnections;
  const source = new FreshBodies(presign(factory, ratePoolSize).pool, factory);
  const drain = await drainBacklog(load, opts.rateDrainS);
  if (opts.warmupS > 0) {
    // At the same rate, unmeasured: the client's connections and code paths warm, and the worker already converting
    // what arrives, as in the steady state the run measures.
    process.stderr.write(`warm-up: intake at ${opts.rate} req/s ${opts.warmupS} s\n`);
    const warmSpec = intakeSpec(load, `warm-up intake @${opts.rate} req/s`, opts.rateConnections, opts.warmupS, source);
    load.warmups.push(await runPacedLoad({ ...warmSpec, overallRate: opts.rate }, load.processes));
    load.intakeConnectionsUsed += Math.min(opts.rateConnections, opts.rate);
  }
  const groupsBefore = await tryScrapeGroups(load.payrailUrl, load.metricsToken);
  const backlog = describeBacklog(await workerBacklog(load));
  process.stderr.write(
    `run: intake at ${opts.rate} req/s, ${opts.rateConnections} connections, ${opts.rateDurationS} s\n`,
  );
  const run = await runPacedLoad(
    {
      ...intakeSpec(load, `intake @${opts.rate} req/s`, opts.rateConnections, opts.rateDurationS, source),
      overallRate: opts.rate,
    },
    load.processes,
  );
  load.runs.push(run);
  load.intakeConnectionsUsed += Math.min(opts.rateConnections, opts.rate);
  const backlogAfter = describeBacklog(await workerBacklog(load));
  await quiesce(load.database, load.ownPaymentsSql, load.ownPaymentsParams);
  const groupsAfter = await tryScrapeGroups(load.payrailUrl, load.metricsToken);
  return { run, source, groupsBefore, groupsAfter, backlog: { drain, before: backlog, after: backlogAfter } };
}

/**
 * What the worker still has to do for the bench's payments: the fixed-rate run shares the machine with it. A
 * conversion settles once a poll finds its exchange finished (CONVERSION_POLL_INTERVAL), and a threshold channel's
 * payout follows its settlement. Counts of rows, not amounts.
 */
interface Backlog {
  unconverted: number;
  conversions: number;
  payouts: number;
}

async function workerBacklog(load: Load): Promise<Backlog> {
  const own = 'select payment_id from payments where user_id = $1 and payment_id >= $2';
  const { rows } = await load.database.pool.query<{ unconverted: string; conversions: string; payouts: string }>(
    `select (select count(*) from payments where user_id = $1 and payment_id >= $2
                and conversion_status in ('pending', 'converting'))::text as unconverted,
            (select count(distinct c.conversion_id) from conversions c join conversion_payments cp using (conversion_id)
              where cp.payment_id in (${own}) and c.status not in ('completed', 'failed'))::text as conversions,
            (select count(*) from payouts where status not in ('completed', 'failed', 'cancelled')
                and created_at >= (select min(created_at) from payments where payment_id in (${own})))::text as payouts`,
    load.ownPaymentsParams,
  );
  const row = rows[0];
  if (!row) throw new Error('the worker backlog query returned no row');
  return { unconverted: Number(row.unconverted), conversions: Number(row.conversions), payouts: Number(row.payouts) };
}

const describeBacklog = (b: Backlog) =>
  `${b.unconverted} payments not yet converted, ${b.conversions} conversions and ${b.payouts} payouts not yet ended`;

const DRAIN_POLL_MS = 500;

/**
 * Waits, at most `limitS` seconds, until the worker has converted, settled and paid out everything the runs before
 * credited. The full-speed run leaves the worker thousands of payments behind (it measures an overload); a fixed-rate
 * run started on top of that measures the recovery from it, which the aim at 500 req/s is not about.
 */
async function drainBacklog(load: Load, limitS: number): Promise<{ waitedS: number; limitS: number }> {
  const started = performance.now();
  const deadline = started + limitS * 1000;
  let backlog = await workerBacklog(load);
  const idle = (b: Backlog) => b.unconverted === 0 && b.conversions === 0 && b.payouts === 0;
  if (limitS > 0 && !idle(backlog)) {
    process.stderr.write(`waiting up to ${limitS} s for the worker: ${describeBacklog(backlog)}\n`);
    while (!idle(backlog) && performance.now() < deadline) {
      load.checkInterrupted();
      await sleep(DRAIN_POLL_MS);
      backlog = await workerBacklog(load);
    }
  }
  return { waitedS: (performance.now() - started) / 1000, limitS };
}

// ---------------------------------------------------------------------------------------------------------------
// Reconcile the database with what the clients saw

interface PaymentRow {
  payment_id: string;
  credited: boolean;
  review_reason: string | null;
}

interface Reconciliation {
  paymentRows: PaymentRow[];
  missing: string[];
  unsent: number;
  uncredited: number;
  inReview: number;
  unanswered: number;
  intake2xx: number;
  ledger: LedgerReport;
  conversions: string;
}

async function reconcile(load: Load, runStartedAt: Date): Promise<Reconciliation> {
  const { database, sent, accepted } = load;
  const { rows: paymentRows } = await database.pool.query<PaymentRow>(
    'select payment_id::text as payment_id, credited_at is not null as credited, review_reason from payments where user_id = $1 and payment_id >= $2',
    load.ownPaymentsParams,
  );
  const stored = new Map(paymentRows.map((r) => [r.payment_id, r]));
  const allWarmupAndRuns = [...load.warmups, ...load.runs];
  const ledger = await checkLedger(database.db);
  const conversions = await database.pool
    .query<{ status: string; n: string; payments: string }>(
      // Only the run's own: a loaded history holds thousands.
      'select status, count(*)::text as n, coalesce(sum(payment_count), 0)::text as payments from conversions where created_at >= $1 group by status order by status',
      [runStartedAt],
    )
    .then(({ rows }) => rows.map((r) => `${r.status} ${r.n} (${r.payments} payments)`).join(', ') || 'none')
    .catch((error: Error) => `unavailable (${error.message})`);
  return {
    paymentRows,
    missing: [...accepted].filter((id) => !stored.has(id)),
    unsent: paymentRows.filter((r) => !sent.has(r.payment_id)).length,
    uncredited: paymentRows.filter((r) => !r.credited).length,
    inReview: paymentRows.filter((r) => r.review_reason !== null).length,
    unanswered: paymentRows.length - accepted.size,
    intake2xx: allWarmupAndRuns.filter((r) => r.spec.accepted).reduce((sum, r) => sum + r.result.ok, 0),
    ledger,
    conversions,
  };
}

function isHealthy(load: Load, check: Reconciliation): boolean {
  const { missing, unsent, intake2xx, paymentRows, uncredited, unanswered, ledger } = check;
  return (
    load.runs.every((r) => r.result.non2xx === 0 && r.result.errors === 0) &&
    missing.length === 0 &&
    unsent === 0 &&
    load.accepted.size === intake2xx &&
    load.sent.size === paymentRows.length &&
    uncredited === 0 &&
    unanswered >= 0 &&
    unanswered <= load.intakeConnectionsUsed &&
    ledger.ok
  );
}

// ---------------------------------------------------------------------------------------------------------------
// The report

/** The client, the channels, the history and the probe: what the runs below ran against. */
function setupLines(
  load: Load,
  liveSigned: number,
  history: HistorySummary | undefined,
  dbProbe: ProbeResult | undefined,
): string[] {
  const { opts } = load;
  const cpu = os.cpus();
  return [
    `client:   autocannon 8, pipelining 1, ${opts.durationS} s per run after ${opts.warmupS} s warm-up${opts.rateDurationS === opts.durationS ? '' : ` (the fixed-rate run ${opts.rateDurationS} s)`}; every intake request is a new payment (status finished)`,
    `          signing costs ${fmt(load.signUs, 1)} µs/body on this machine: bodies pre-signed before each run (signed live during runs: ${liveSigned})`,
    `          client, payrail, and PostgreSQL share the same ${cpu.length} cores`,
    opts.layout === 'one'
      ? 'payrail:  web and worker in one process (`payrail start`), the baseline route beside them (bench/server.ts)'
      : 'payrail:  web (with the baseline route) and worker in two processes (`payrail web`, `payrail worker`; --layout apart)',
    channelsLine(opts, load.perChannel),
    historyLine(history),
    ...(dbProbe ? probeLines(dbProbe) : []),
    '',
  ];
}

/** The runs' table, the two aims, and how payrail grouped the IPNs. */
function resultLines(
  load: Load,
  runs: {
    max: RunOutcome;
    baseline: RunOutcome;
    rate: RunOutcome;
    rateBacklog: { drain: { waitedS: number; limitS: number }; before: string; after: string };
  },
  groups: Array<[RunOutcome, GroupFigures | string]>,
): string[] {
  const { opts } = load;
  const ratio = runs.max.result.perSecond / runs.baseline.result.perSecond;
  const p99AtRate = percentile(runs.rate.latencies, 99);
  const achievedRate = runs.rate.result.perSecond;
  return [
    table(
      ['run', 'conns', 'rate', 'req/s', '2xx', 'non-2xx', 'errors', 'p50 ms', 'p99 ms', 'max ms', 'ac p50/p99'],
      load.runs.map(describeRun),
    ),
    '  req/s = autocannon mean of 1-s samples (fixed rate: answers over the run); p50/p99/max over every 2xx latency;',
    '  "ac" = autocannon histogram (whole ms); "paced" = sent open loop, one request every 1/rate s, latency from its scheduled moment',
    '',
    `ratio intake/baseline:  ${fmt(ratio, 3)}   (aim >= 0.5: ${ratio >= 0.5 ? 'met' : 'NOT met'})`,
    `p99 at ${opts.rate} req/s:       ${fmt(p99AtRate, 2)} ms   (aim < 50 ms: ${p99AtRate < 50 ? 'met' : 'NOT met'}; achieved ${fmt(achievedRate, 1)} req/s)`,
    runs.rateBacklog.drain.limitS > 0
      ? `  before it, ${fmt(runs.rateBacklog.drain.waitedS, 1)} s waited (at most ${runs.rateBacklog.drain.limitS}, --rate-drain) for the worker to end the runs before's work`
      : '  started at once after the runs before (--rate-drain 0)',
    `  the worker's work left as that run began (from the runs before): ${runs.rateBacklog.before}`,
    `  and as it ended (a backlog growing with the run's length means the worker does not keep up): ${runs.rateBacklog.after}`,
    `  p50/p99 ms by when the requests were sent: ${(runs.rate.byWindow ?? []).map((w) => `${w.fromS}-${w.toS} s ${fmt(w.p50, 1)}/${fmt(w.p99, 1)}`).join(' · ')}`,
    '',
    `intake groups: IPNs per database call (payrail_intake_calls_total and payrail_intake_call_ipns_total from payrail's /metrics, before and after each run):`,
    table(
      ['run', 'db calls', 'IPNs', 'IPNs/call', 'loop p99 ms', 'loop max ms'],
      groups.map(([run, figures]) => describeGroups(run.spec.label, figures)),
    ),
    ...groups
      .filter(([, figures]) => typeof figures === 'string')
      .map(([run, figures]) => `  ${run.spec.label}: no figures (${figures as string})`),
    `  IPNs include those still in flight when a run ended; loop = payrail's event-loop delay during the run (payrail_process_nodejs_eventloop_lag_*)`,
    '',
  ];
}

function cpuAndWaitLines(runs: RunOutcome[]): string[] {
  const lines = [
    'CPU during each run (machine busy %, and cores used by each party):',
    table(['run', 'busy', 'client', 'payrail', 'postgres', 'other'], runs.map(describeCpu)),
    '',
    `database sessions of payrail / the baseline, average count by state and wait (sampled every ${WAIT_SAMPLE_MS} ms):`,
  ];
  for (const run of runs) {
    const top = run.waits.top(6);
    lines.push(`  ${run.spec.label}:${top.length === 0 ? ' (none)' : ''}`);
    for (const line of top) lines.push(`    ${line}`);
  }
  lines.push('');
  return lines;
}

function databaseCheckLines(load: Load, check: Reconciliation, baselineRows: number, baselineUrl: string): string[] {
  const { sent, accepted, intakeConnectionsUsed } = load;
  const { paymentRows, missing, unsent, intake2xx, unanswered } = check;
  const baseline2xx = [...load.warmups, ...load.runs]
    .filter((r) => r.spec.url === baselineUrl)
    .reduce((s, r) => s + r.result.ok, 0);
  return [
    'database check:',
    `  intake requests sent (incl. warm-up):   ${sent.size}`,
    `  intake 2xx responses (incl. warm-up):   ${intake2xx} (distinct payment ids: ${accepted.size})`,
    `  payments recorded by the bench:         ${paymentRows.length}`,
    `  every 2xx payment id in the database:   ${missing.length === 0 ? 'yes' : `NO, ${missing.length} missing (e.g. ${missing.slice(0, 3).join(', ')})`}`,
    `  payments never sent by the bench:       ${unsent}`,
    `  sent but not recorded:                  ${sent.size - (paymentRows.length - unsent)}`,
    `  payments count == 2xx:                  ${paymentRows.length === intake2xx ? 'yes' : `no: ${unanswered} more, the requests in flight when autocannon closed its sockets at the end of each run (committed, answer dropped; at most ${intakeConnectionsUsed})`}`,
    `  payments not credited / in review:      ${check.uncredited} / ${check.inReview}`,
    `  baseline rows inserted:                 ${baselineRows} for ${baseline2xx} 2xx`,
    `  conversions by the worker meanwhile:    ${check.conversions}`,
  ];
}

/** Both scrapes' figures, or why there are none. */
function groupsBetween(before: GroupScrape | string, after: GroupScrape | string): GroupFigures | string {
  if (typeof before === 'string') return `before the run: ${before}`;
  if (typeof after === 'string') return `after the run: ${after}`;
  return groupFigures(before, after);
}

/** The channels and spread, with the shares the busiest channels got of what was actually sent. */
function channelsLine(opts: Options, perChannel: Float64Array): string {
  const spread =
    opts.spread === 'power' ? `power (Zipf, exponent 1, seed ${SPREAD_SEED})` : 'uniform (the channels in turn)';
  const shares = topShares(perChannel);
  const pct = (share: number) => `${fmt(share * 100, 1)} %`;
  if (opts.channels === 1) return `channels: 1 (all ${shares.total} intake payments sent, incl. warm-up, credit it)`;
  return [
    `channels: ${opts.channels}, spread ${spread}; of the ${shares.total} intake payments sent (incl. warm-up)`,
    `the busiest channel got ${pct(shares.top1)}, the busiest ${Math.min(10, opts.channels)} ${pct(shares.top10)}`,
  ].join(' ');
}

function historyLine(history: HistorySummary | undefined): string {
  if (!history) return 'history:  none (an empty database: only what the bench itself writes)';
  const c = history.counts;
  const n = (key: string) => (c[key] ?? 0).toLocaleString('en-US');
  return [
    `history:  ${n('payments')} stored payments loaded first over ${n('channels')} channels (bench/history.ts) in ${fmt(history.seconds, 0)} s`,
    `(load ${fmt(history.loadSeconds, 0)} s, vacuum analyze + checkpoint + sync ${fmt(history.vacuumSeconds, 0)} s): ${n('conversions')} conversions, ${n('payouts')} payouts,`,
    `${n('chain_transfers')} transfers, ${n('ledger_journals')} journals, ${n('ledger_entries')} entries, ${n('ledger_accounts')} accounts; database ${fmt(history.databaseBytes / 1024 ** 3, 2)} GiB`,
  ].join('\n          ');
}

runBench(main, (error) => {
  if (error instanceof HistoryInterrupted) {
    process.stderr.write('bench interrupted while loading the history; cleaned up\n');
    return 130;
  }
  if (!(error instanceof Interrupted)) return undefined;
  process.stderr.write('bench interrupted; cleaned up\n');
  return 130;
});
