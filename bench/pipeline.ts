/**
 * npm run bench:pipeline [-- --payments 10000 --channels 200 --concurrency 32 --deadline 600 ...]
 *
 * End to end over loopback: N signed NOWPayments IPNs (each a new `finished` payment of a threshold channel) through
 * intake, conversion (ChangeNow exchange + one ETH transfer per conversion) and settlement (USDT shared out, threshold
 * check, payout batches), until every payment's conversion_status is `completed`. Prints payments/s from the first
 * IPN sent to the last payment settled, the intake phase, how many ChangeNow exchanges and on-chain sends that took
 * (against one exchange per payment in the replaced system), payout batches, and peak memory of payrail and of this
 * process; then checks the ledger and that the USDT shared out equals the USDT received.
 *
 * Parts: an embedded PostgreSQL in a temp dir, anvil (host wallet funded) and the ChangeNow simulator with stepMs 0
 * (an exchange finishes as soon as its deposit is seen), both in this process, and payrail itself as a child process
 * started exactly as in production: `node bin/payrail.js start` with DATABASE_URL and the outside world's URLs.
 * Everything listens on 127.0.0.1 and is removed at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import type { DatabaseHandle } from '../src/db/index.ts';
import { checkLedger } from '../src/ledger/index.ts';
import { rpc, startChangeNowSimulator, startLocalChain, type ChangeNowSimulator, type LocalChain } from '../src/simulators/index.ts';
import { deployLocalUsdt, mintLocalUsdt } from '../src/simulators/usdt/index.ts';
import { assertLoopback, BenchPostgres, beginRun, childReady, Interruption, ledgerLines, OutputTail, payrailConfig, putChannel, readPgSettings, reportHeader, runBench, stopChild, WaitSampler, wholeNumberOption as int } from './harness.ts';
import { busyShare, childrenTicks, cpuUsageCores, fmt, freePort, IpnFactory, machineTicks, percentile, postgresTicks, presign, procStatusKib, procTicks, sleep, table, ticksToCores, type SignedIpn } from './shared.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PAYRAIL_BIN = fileURLToPath(new URL('../bin/payrail.js', import.meta.url));

/** Channel ids of the bench: FIRST_CHANNEL_ID, FIRST_CHANNEL_ID - 1, ... */
const FIRST_CHANNEL_ID = -1009100000001n;
const WALLET = '0x8ba1f109551bD432803012645Ac136ddd64DBA72';
/** Channel i has a threshold of (i + 1) × this many USD: a ladder, so the lower channels cross and get a batch. */
const THRESHOLD_STEP_USD = 10n;

const READY_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 30_000;
const PROGRESS_EVERY_MS = 5_000;
const DRAIN_EVERY_MS = 1_000;
const MEMORY_SAMPLE_MS = 250;

const USAGE = `usage: npm run bench:pipeline -- [options]

  --payments N             payments to push through (default 10000)
  --channels N             threshold channels the payments are spread over, round-robin (default 200)
  --concurrency N          IPN requests in flight (default 32)
  --deadline S             seconds from the first IPN until every payment must be settled (default 600)
  --min-usd USD            CONVERSION_MIN_USD (default 500)
  --max-payments N         CONVERSION_MAX_PAYMENTS (default 500)
  --max-wait D             CONVERSION_MAX_WAIT (default 5s: flushes the tail below the minimum, see bench/README.md)
  --poll-interval D        CONVERSION_POLL_INTERVAL (default 200ms)
  --worker-poll-ms N       WORKER_POLL_INTERVAL_MS (default 100)
  --worker-concurrency N   WORKER_CONCURRENCY (default 4)
`;

interface Options {
  payments: number;
  channels: number;
  concurrency: number;
  deadlineS: number;
  /** Passed to the payrail child as they are (it validates them; a bad value stops its start with a message). */
  env: {
    CONVERSION_MIN_USD: string;
    CONVERSION_MAX_PAYMENTS: string;
    CONVERSION_MAX_WAIT: string;
    CONVERSION_POLL_INTERVAL: string;
    WORKER_POLL_INTERVAL_MS: string;
    WORKER_CONCURRENCY: string;
  };
}

function readOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      payments: { type: 'string' },
      channels: { type: 'string' },
      concurrency: { type: 'string' },
      deadline: { type: 'string' },
      'min-usd': { type: 'string' },
      'max-payments': { type: 'string' },
      'max-wait': { type: 'string' },
      'poll-interval': { type: 'string' },
      'worker-poll-ms': { type: 'string' },
      'worker-concurrency': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return undefined;
  const duration = (name: string, text: string | undefined, fallback: string): string => {
    if (text === undefined) return fallback;
    if (!/^[1-9][0-9]{0,8}(ms|s|m|h)$/.test(text)) throw new Error(`--${name} must be a duration such as 500ms, 5s, 1m (got "${text}")`);
    return text;
  };
  const minUsd = values['min-usd'] ?? '500';
  if (!/^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$/.test(minUsd)) throw new Error(`--min-usd must be a USD amount such as 500 or 12.50 (got "${minUsd}")`);
  return {
    payments: int('payments', values.payments, 10_000, 1, 1_000_000),
    channels: int('channels', values.channels, 200, 1, 10_000),
    concurrency: int('concurrency', values.concurrency, 32, 1, 1_000),
    deadlineS: int('deadline', values.deadline, 600, 1, 24 * 3600),
    env: {
      CONVERSION_MIN_USD: minUsd,
      CONVERSION_MAX_PAYMENTS: String(int('max-payments', values['max-payments'], 500, 1, 5_000)),
      CONVERSION_MAX_WAIT: duration('max-wait', values['max-wait'], '5s'),
      CONVERSION_POLL_INTERVAL: duration('poll-interval', values['poll-interval'], '200ms'),
      WORKER_POLL_INTERVAL_MS: String(int('worker-poll-ms', values['worker-poll-ms'], 100, 1, 60_000)),
      WORKER_CONCURRENCY: String(int('worker-concurrency', values['worker-concurrency'], 4, 1, 64)),
    },
  };
}

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** "500ms", "5s", "1m", "2h" (already validated) -> milliseconds. */
function durationMs(text: string): number {
  const match = /^([0-9]+)(ms|s|m|h)$/.exec(text);
  if (!match) throw new Error(`not a duration: ${text}`);
  return Number(match[1]) * (DURATION_UNITS_MS[match[2] as string] as number);
}

// ---------------------------------------------------------------------------------------------------------------
// The payrail child: `node bin/payrail.js start`, as deployed

interface PayrailChild {
  child: ChildProcess;
  url: string;
  /** Its log lines (warn and above) and stderr, the last ones. */
  output: OutputTail;
}

/** Variables with one of payrail's prefixes are not inherited: the child gets exactly the configuration printed. */
const PAYRAIL_PREFIXES = ['PAYRAIL_', 'NOWPAYMENTS_', 'CHANGENOW_', 'PLATFORM_', 'PAYOUT_', 'CONVERSION_', 'HOST_WALLET_', 'HEALTH_', 'WORKER_', 'EMBEDDED_PG_', 'ADMIN_', 'LOCAL_', 'TRANSFER_'];
const PAYRAIL_PLAIN = ['PORT', 'HOST', 'DATABASE_URL', 'DATABASE_POOL_MAX', 'CHAIN_ID', 'ETH_RPC_URL', 'LOG_LEVEL'];

function childEnvironment(config: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (PAYRAIL_PLAIN.includes(name) || PAYRAIL_PREFIXES.some((prefix) => name.startsWith(prefix))) continue;
    env[name] = value;
  }
  return { ...env, ...config };
}

async function startPayrailChild(env: NodeJS.ProcessEnv): Promise<PayrailChild> {
  const child = spawn(process.execPath, [PAYRAIL_BIN, 'start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = new OutputTail(30);
  readline.createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', output.keep);
  const stderr = readline.createInterface({ input: child.stderr as NodeJS.ReadableStream });
  stderr.on('line', output.keep);
  const url = await childReady(
    child,
    stderr,
    // cli.ts prints this once the HTTP server listens (whatever LOG_LEVEL is).
    (line) => /^payrail listening on (http:\/\/\S+)$/.exec(line)?.[1],
    READY_TIMEOUT_MS,
    {
      timedOut: () => new Error(`payrail did not start within ${READY_TIMEOUT_MS} ms:\n${output.tail.join('\n')}`),
      exited: (code, signal) => new Error(`payrail exited before it listened (code ${code}, signal ${signal}):\n${output.tail.join('\n')}`),
    },
  );
  assertLoopback('payrail', url);
  return { child, url, output };
}

// ---------------------------------------------------------------------------------------------------------------
// Memory: peak RSS of the payrail child (VmRSS sampled, and the kernel's VmHWM) and of this process

class MemorySampler {
  peakChildKib = 0;
  peakSelfKib = 0;
  private readonly timer: NodeJS.Timeout;
  constructor(private readonly childPid: number | undefined) {
    this.sample();
    this.timer = setInterval(() => this.sample(), MEMORY_SAMPLE_MS);
    this.timer.unref();
  }
  sample(): void {
    if (this.childPid !== undefined) this.peakChildKib = Math.max(this.peakChildKib, procStatusKib(this.childPid, 'VmRSS') ?? 0);
    this.peakSelfKib = Math.max(this.peakSelfKib, Math.round(process.memoryUsage.rss() / 1024));
  }
  stop(): void {
    this.sample();
    clearInterval(this.timer);
  }
}

const mib = (kib: number | undefined) => (kib === undefined || kib === 0 ? '-' : `${fmt(kib / 1024, 1)} MiB`);

// ---------------------------------------------------------------------------------------------------------------
// CPU: who used the machine's cores during the run (others may share the machine: "other" says how much)

interface CpuSample {
  at: number;
  machine?: { busy: number; all: number };
  payrail?: number;
  postgres?: number;
  anvil?: number;
  bench: NodeJS.CpuUsage;
}

function sampleCpu(payrailPid: number | undefined, postmasterPid: number | undefined): CpuSample {
  const exclude = [payrailPid, postmasterPid].filter((pid): pid is number => pid !== undefined);
  const machine = machineTicks();
  const payrail = payrailPid === undefined ? undefined : procTicks(payrailPid);
  const postgres = postgresTicks(postmasterPid);
  const anvil = childrenTicks(process.pid, exclude);
  return {
    at: Date.now(),
    bench: process.cpuUsage(),
    ...(machine && { machine }),
    ...(payrail !== undefined && { payrail }),
    ...(postgres !== undefined && { postgres }),
    ...(anvil !== undefined && { anvil }),
  };
}

/** Cores used on average between two samples, per party; "busy" is the machine's busy share. */
function cpuLine(a: CpuSample, b: CpuSample): string {
  const seconds = (b.at - a.at) / 1000;
  const bench = cpuUsageCores(a.bench, b.bench, seconds);
  const payrail = ticksToCores(a.payrail, b.payrail, seconds);
  const postgres = ticksToCores(a.postgres, b.postgres, seconds);
  const anvil = ticksToCores(a.anvil, b.anvil, seconds);
  const n = os.cpus().length;
  const busy = a.machine && b.machine ? busyShare(a.machine, b.machine) : undefined;
  const other = busy === undefined ? undefined : Math.max(0, busy * n - bench - (payrail ?? 0) - (postgres ?? 0) - (anvil ?? 0));
  const c = (x: number | undefined) => (x === undefined ? '-' : fmt(x, 2));
  return `machine ${busy === undefined ? '-' : `${fmt(busy * 100, 0)}%`} busy of ${n} cores; cores used: payrail ${c(payrail)}, postgres ${c(postgres)}, bench+simulator ${fmt(bench, 2)}, anvil ${c(anvil)}, other processes ${c(other)}`;
}

// ---------------------------------------------------------------------------------------------------------------
// What payrail's database sessions wait on (pg_stat_activity), sampled over the whole run

const WAIT_SAMPLE_MS = 200;

const WAITS_SQL =
  // A session waiting on a lock is shown with the statement it waits in, and the last statement of the session
  // holding that lock (for a transaction between statements, the one it ran last).
  `select a.state || coalesce(' ' || a.wait_event_type || ':' || a.wait_event, ' (on CPU)')
                  || case when a.wait_event_type = 'Lock' then ' in "' || left(regexp_replace(a.query, '[[:space:]]+', ' ', 'g'), 50) || '..."'
                       || coalesce(', held by a session that last ran "' || (select left(regexp_replace(b.query, '[[:space:]]+', ' ', 'g'), 60) from pg_stat_activity b
                            where b.pid = (pg_blocking_pids(a.pid))[1]) || '..."', '') else '' end as key,
                count(*)::int as n
         from pg_stat_activity a where a.application_name = 'payrail-webworker' and a.state <> 'idle' and a.query not like '%LISTEN%' group by 1`;

// ---------------------------------------------------------------------------------------------------------------
// Sending the IPNs

class Aborted extends Error {
  override name = 'Aborted';
}

interface IntakeOutcome {
  firstSentAt: number;
  lastAnsweredAt: number;
  /** Latency of every request, ms. */
  latencies: Float64Array;
}

/**
 * Sends every body once, `concurrency` at a time, each on its own keep-alive connection (fetch's pool). Anything but
 * a 200 stops the sending: the bench aborts with the status and the body.
 */
async function sendAll(url: string, bodies: SignedIpn[], concurrency: number, stopped: () => string | undefined): Promise<IntakeOutcome> {
  const latencies = new Float64Array(bodies.length);
  let nextIndex = 0;
  let failure: string | undefined;
  const firstSentAt = Date.now();
  const worker = async () => {
    for (;;) {
      failure ??= stopped();
      if (failure !== undefined) return;
      const index = nextIndex++;
      const body = bodies[index];
      if (body === undefined) return;
      bodies[index] = undefined as unknown as SignedIpn; // let a sent body be collected
      const started = performance.now();
      let status: number;
      let text: string;
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-nowpayments-sig': body.signature },
          body: body.raw,
          signal: AbortSignal.timeout(30_000),
        });
        status = res.status;
        text = await res.text();
      } catch (error) {
        failure ??= `IPN for payment ${body.paymentId} failed: ${(error as Error).message}${(error as Error).cause ? ` (${String((error as Error).cause)})` : ''}`;
        return;
      }
      latencies[index] = performance.now() - started;
      if (status !== 200) {
        failure ??= `IPN for payment ${body.paymentId} answered ${status}, not 200: ${text.slice(0, 300)}`;
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  if (failure !== undefined) throw new Aborted(failure);
  return { firstSentAt, lastAnsweredAt: Date.now(), latencies: latencies.sort() };
}

// ---------------------------------------------------------------------------------------------------------------
// Watching the pipeline

interface Counts {
  received: number;
  pending: number;
  converting: number;
  completed: number;
  failed: number;
  conversions: number;
  conversionsOpen: number;
  review: number;
}

async function counts(database: DatabaseHandle, userId: string): Promise<Counts> {
  const { rows } = await database.pool.query<Counts>(
    `select
       (select count(*)::int from payments where user_id = $1) as received,
       (select count(*)::int from payments where user_id = $1 and conversion_status = 'pending') as pending,
       (select count(*)::int from payments where user_id = $1 and conversion_status = 'converting') as converting,
       (select count(*)::int from payments where user_id = $1 and conversion_status = 'completed') as completed,
       (select count(*)::int from payments where user_id = $1 and conversion_status = 'failed') as failed,
       (select count(*)::int from conversions) as conversions,
       (select count(*)::int from conversions where status not in ('completed', 'failed', 'needs_review')) as "conversionsOpen",
       (select count(*)::int from conversions where status = 'needs_review') as review`,
    [userId],
  );
  return rows[0] as Counts;
}

function progressLine(startedAt: number, c: Counts): string {
  const s = ((Date.now() - startedAt) / 1000).toFixed(1).padStart(6);
  return `[${s} s] received ${c.received}  pending ${c.pending}  converting ${c.converting}  completed ${c.completed}  failed ${c.failed}  conversions ${c.conversions} (open ${c.conversionsOpen})\n`;
}

// ---------------------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const start = beginRun(readOptions, USAGE);
  if ('exitCode' in start) return start.exitCode;
  const { options: opts, logger, secrets } = start;

  const pg = new BenchPostgres(logger);
  let chain: LocalChain | undefined;
  let sim: ChangeNowSimulator | undefined;
  let payrail: PayrailChild | undefined;
  let memory: MemorySampler | undefined;
  let waits: WaitSampler | undefined;
  const interruption = new Interruption('stopping and cleaning up');
  const checkInterrupted = () => {
    if (interruption.interrupted) throw new Aborted('interrupted');
  };

  try {
    // -- database: a new embedded PostgreSQL in a temp dir
    const databaseUrl = await pg.startEmbedded('payrail-bench-pipeline-');
    const database = await pg.open(databaseUrl, 3);
    const pgInfo = await readPgSettings(database);
    checkInterrupted();

    // -- the outside world: anvil with the host wallet funded, and the ChangeNow simulator at zero latency
    chain = await startLocalChain({ port: await freePort() });
    const hostAddress = privateKeyToAccount(secrets.hostPrivateKey).address;
    // 0.00487 ETH per payment at most leaves the host wallet, plus gas: 1,000 ETH or twice the need.
    const fundingWei = [10n ** 21n, BigInt(opts.payments) * 10n ** 16n].reduce((a, b) => (a > b ? a : b));
    await rpc(chain.rpcUrl, 'anvil_setBalance', [hostAddress, `0x${fundingWei.toString(16)}`]);
    // The simulator pays conversions out in LocalUSDT from its treasury, on chain, as ChangeNow would: settlement
    // books only the USDT the chain shows arrived. The treasury gets ETH for gas and 10^9 USDT.
    const treasuryKey = generatePrivateKey();
    const treasury = privateKeyToAccount(treasuryKey).address;
    await rpc(chain.rpcUrl, 'anvil_setBalance', [treasury, `0x${(10n ** 21n).toString(16)}`]);
    const usdtContract = await deployLocalUsdt(chain.rpcUrl, treasuryKey);
    await mintLocalUsdt(chain.rpcUrl, usdtContract, treasuryKey, treasury, 10n ** 15n);
    sim = await startChangeNowSimulator({ port: 0, apiKey: secrets.changenowApiKey, rpcUrl: chain.rpcUrl, stepMs: 0, tokens: { usdt: usdtContract }, treasuryKey });
    checkInterrupted();

    // -- payrail, as `payrail start` with the configuration below
    const config: Record<string, string> = {
      ...payrailConfig(databaseUrl, secrets, { changenowUrl: sim.url, rpcUrl: chain.rpcUrl, chainId: chain.chainId, usdtContract }),
      ...opts.env,
    };
    payrail = await startPayrailChild(childEnvironment(config));
    const childPid = payrail.child.pid;
    process.stderr.write(`payrail at ${payrail.url} (pid ${childPid})\n`);
    checkInterrupted();

    // -- channels: threshold strategy, USDT on Ethereum, thresholds 10, 20, ... USD
    const channelIds = Array.from({ length: opts.channels }, (_, i) => (FIRST_CHANNEL_ID - BigInt(i)).toString());
    for (const [i, channelId] of channelIds.entries()) {
      await putChannel(payrail.url, secrets.adminToken, channelId, { payoutStrategy: 'threshold', thresholdUsd: `${THRESHOLD_STEP_USD * BigInt(i + 1)}.00`, payoutCurrency: 'usdt', payoutNetwork: 'eth', walletAddress: WALLET });
    }
    checkInterrupted();

    // -- every body signed before the clock starts
    const userId = String(Date.now());
    const factory = new IpnFactory(userId, secrets.ipnSecret, channelIds);
    process.stderr.write(`signing ${opts.payments} IPN bodies\n`);
    const signedBodies = presign(factory, opts.payments);
    process.stderr.write(`signed in ${fmt(signedBodies.ms / 1000, 1)} s; sending with ${opts.concurrency} in flight\n`);
    checkInterrupted();

    // -- intake, with progress lines while it runs
    memory = new MemorySampler(childPid);
    waits = new WaitSampler(database, WAITS_SQL, WAIT_SAMPLE_MS);
    const postmasterPid = pg.postmasterPid();
    const cpuStart = sampleCpu(childPid, postmasterPid);
    const startedAt = Date.now();
    const deadline = startedAt + opts.deadlineS * 1000;
    let progressBusy = false;
    const progress = setInterval(() => {
      if (progressBusy) return;
      progressBusy = true;
      counts(database, userId)
        .then((c) => process.stderr.write(progressLine(startedAt, c)))
        .catch(() => undefined)
        .finally(() => (progressBusy = false));
    }, PROGRESS_EVERY_MS);
    let intake: IntakeOutcome;
    try {
      intake = await sendAll(`${payrail.url}/webhooks/nowpayments`, signedBodies.pool, opts.concurrency, () =>
        interruption.interrupted ? 'interrupted during intake' : Date.now() > deadline ? `deadline of ${opts.deadlineS} s passed during intake` : undefined,
      );
    } finally {
      clearInterval(progress);
    }
    process.stderr.write(`intake done: ${opts.payments} IPNs answered 200 in ${fmt((intake.lastAnsweredAt - intake.firstSentAt) / 1000, 2)} s\n`);

    // -- drain: the cron runs only every minute, so queue a conversion check every second while payments are pending
    let drainJobs = 0;
    let lastProgress = 0;
    let last: Counts;
    for (;;) {
      checkInterrupted();
      last = await counts(database, userId);
      if (Date.now() - lastProgress >= PROGRESS_EVERY_MS) {
        process.stderr.write(progressLine(startedAt, last));
        lastProgress = Date.now();
      }
      if (last.completed === opts.payments) break;
      if (last.failed > 0 || last.review > 0) throw new Aborted(`${last.failed} payments failed conversion, ${last.review} conversions need review: the pipeline cannot complete`);
      if (Date.now() > deadline) throw new Aborted(`deadline of ${opts.deadlineS} s passed with ${opts.payments - last.completed} payments not settled (pending ${last.pending}, converting ${last.converting})`);
      if (last.pending > 0) {
        // Only when no conversion_batch job is queued or running, and under the key of intake's nudge (replace, as the
        // nudger queues it): the bench never adds a second concurrent check of its own.
        const { rowCount } = await database.pool.query(
          `select graphile_worker.add_job('conversion_batch', '{}'::json, max_attempts => 1, job_key => 'conversion_batch:nudge', job_key_mode => 'replace')
           where not exists (select 1 from graphile_worker.jobs where task_identifier = 'conversion_batch' and (attempts < max_attempts or locked_at is not null))`,
        );
        drainJobs += rowCount ?? 0;
      }
      await sleep(DRAIN_EVERY_MS);
    }
    process.stderr.write(progressLine(startedAt, last));

    // -- measure: the last settlement as the database recorded it
    const cpuEnd = sampleCpu(childPid, postmasterPid);
    memory.stop();
    void waits.stop();
    const childHwmKib = childPid === undefined ? undefined : procStatusKib(childPid, 'VmHWM');
    const selfHwmKib = procStatusKib('self', 'VmHWM');
    const timing = (
      await database.pool.query<{ last_settled_ms: string; first_credit_ms: string; last_credit_ms: string }>(
        `select (extract(epoch from (select max(completed_at) from conversions where status = 'completed')) * 1000)::bigint::text as last_settled_ms,
                (extract(epoch from min(credited_at)) * 1000)::bigint::text as first_credit_ms,
                (extract(epoch from max(credited_at)) * 1000)::bigint::text as last_credit_ms
         from payments where user_id = $1`,
        [userId],
      )
    ).rows[0];
    const lastSettledAt = Number(timing?.last_settled_ms);
    const conv = (
      await database.pool.query<{ total: number; with_exchange: number; completed: number; under_min: number; under_min_early: number; min_p: number; avg_p: string; max_p: number; avg_ms: string; max_ms: string }>(
        `select count(*)::int as total, count(exchange_id)::int as with_exchange, count(*) filter (where status = 'completed')::int as completed,
                count(*) filter (where usdt_received < $1::numeric * 1000000)::int as under_min,
                count(*) filter (where usdt_received < $1::numeric * 1000000 and created_at - (
                  select min(p.credited_at) from conversion_payments cp join payments p using (payment_id) where cp.conversion_id = conversions.conversion_id
                ) < $2::numeric * interval '1 millisecond')::int as under_min_early,
                min(payment_count)::int as min_p, round(avg(payment_count), 1)::text as avg_p, max(payment_count)::int as max_p,
                round(avg(extract(epoch from completed_at - created_at)) * 1000)::text as avg_ms,
                round(max(extract(epoch from completed_at - created_at)) * 1000)::text as max_ms
         from conversions`,
        [opts.env.CONVERSION_MIN_USD, String(durationMs(opts.env.CONVERSION_MAX_WAIT))],
      )
    ).rows[0];
    const underMin = (
      await database.pool.query<{ at_ms: string; payments: number; usdt: string; waited_ms: string }>(
        `select (extract(epoch from c.created_at) * 1000)::bigint::text as at_ms, c.payment_count::int as payments, c.usdt_received::text as usdt,
                round(extract(epoch from c.created_at - min(p.credited_at)) * 1000)::text as waited_ms
         from conversions c join conversion_payments cp using (conversion_id) join payments p using (payment_id)
         where c.usdt_received < $1::numeric * 1000000 group by c.conversion_id order by c.created_at limit 5`,
        [opts.env.CONVERSION_MIN_USD],
      )
    ).rows;
    const transfers = (
      await database.pool.query<{ confirmed: number; other: number }>(
        "select count(*) filter (where status = 'confirmed')::int as confirmed, count(*) filter (where status <> 'confirmed')::int as other from chain_transfers",
      )
    ).rows[0];
    const batches = (
      await database.pool.query<{ n: number; channels: number; usdt: string; payments: number }>(
        `select count(*)::int as n, count(distinct channel_id)::int as channels, coalesce(sum(amount), 0)::text as usdt,
                (select count(*)::int from payments where payout_id is not null and user_id = $1) as payments
         from payouts`,
        [userId],
      )
    ).rows[0];
    const sums = (
      await database.pool.query<{ shared: string; received: string; eth_in: string; eth_net: string; eth_sent: string }>(
        `select (select coalesce(sum(usdt_amount), 0)::text from payments where user_id = $1) as shared,
                (select coalesce(sum(usdt_received), 0)::text from conversions where status = 'completed') as received,
                (select coalesce(sum(gross_amount), 0)::text from payments where user_id = $1) as eth_in,
                (select coalesce(sum(net_amount), 0)::text from payments where user_id = $1) as eth_net,
                (select coalesce(sum(amount_wei), 0)::text from conversions where status = 'completed') as eth_sent`,
        [userId],
      )
    ).rows[0];
    const ledger = await checkLedger(database.db);
    const simExchanges = sim.exchanges.size;
    const selfMaxRssKib = process.resourceUsage().maxRSS;

    // -- print
    const n = opts.payments;
    const intakeS = (intake.lastAnsweredAt - intake.firstSentAt) / 1000;
    const totalS = (lastSettledAt - intake.firstSentAt) / 1000;
    const tailS = (lastSettledAt - intake.lastAnsweredAt) / 1000;
    const per1000 = (count: number) => fmt((count * 1000) / n, 2);
    const usdtShared = BigInt(sums?.shared ?? '0');
    const usdtReceived = BigInt(sums?.received ?? '-1');
    const moneyOk = usdtShared === usdtReceived && BigInt(sums?.eth_net ?? '0') === BigInt(sums?.eth_sent ?? '-1');
    const usdt = (units: bigint) => `${units / 10n ** 6n}.${(units % 10n ** 6n).toString().padStart(6, '0')}`;
    const lines: string[] = [];
    const out = (text = '') => lines.push(text);
    lines.push(...reportHeader('pipeline', pgInfo, 'embedded, temp dir'));
    out(`outside:  anvil (one block per transaction), ChangeNow simulator stepMs 0 (in the bench process), all on 127.0.0.1`);
    out(`payrail:  node bin/payrail.js start (web + worker, one process), DATABASE_POOL_MAX=10 (default), CONVERSION_INTERVAL=1m (default)`);
    out(`          ${Object.entries(opts.env).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    out(`load:     ${n} payments (new, status finished, 0.00487 ETH each) over ${opts.channels} threshold channels (thresholds ${THRESHOLD_STEP_USD}..${THRESHOLD_STEP_USD * BigInt(opts.channels)} USD),`);
    out(`          ${opts.concurrency} IPNs in flight (fetch, keep-alive), bodies pre-signed; after the last IPN, every ${DRAIN_EVERY_MS / 1000} s while payments`);
    out(`          are pending and no conversion_batch job is queued or running, the bench queues one (${drainJobs} queued)`);
    out();
    out(
      table(
        ['measure', 'value'],
        [
          ['payments/s, first IPN sent -> last payment settled', `${fmt(n / totalS, 1)}  (${n} in ${fmt(totalS, 2)} s)`],
          ['intake phase (first IPN sent -> last 200)', `${fmt(intakeS, 2)} s  (${fmt(n / intakeS, 1)} IPN/s)`],
          ['  IPN latency p50 / p99 / max', `${fmt(percentile(intake.latencies, 50), 1)} / ${fmt(percentile(intake.latencies, 99), 1)} / ${fmt(percentile(intake.latencies, 100), 1)} ms`],
          ['after intake: last 200 -> last payment settled', `${fmt(tailS, 2)} s`],
          ['ChangeNow exchanges (conversions with exchange_id)', `${conv?.with_exchange}  = ${per1000(conv?.with_exchange ?? 0)} per 1,000 payments`],
          ['  the simulator counted', `${simExchanges}`],
          ['  replaced system (one exchange per payment)', `${n}  = 1000.00 per 1,000 payments`],
          ['on-chain sends (chain_transfers confirmed)', `${transfers?.confirmed}  = ${per1000(transfers?.confirmed ?? 0)} per 1,000 payments (not confirmed: ${transfers?.other})`],
          ['payments per conversion min / avg / max', `${conv?.min_p} / ${conv?.avg_p} / ${conv?.max_p}`],
          ['conversions that received < CONVERSION_MIN_USD', `${conv?.under_min} (${conv?.under_min_early} before their oldest payment waited CONVERSION_MAX_WAIT)`],
          ['conversion created -> settled, avg / max', `${conv?.avg_ms} / ${conv?.max_ms} ms`],
          ['payout batches created', `${batches?.n} (${batches?.channels} channels, ${usdt(BigInt(batches?.usdt ?? '0'))} USDT, ${batches?.payments} payments)`],
          ['peak RSS payrail (VmHWM / sampled VmRSS max)', `${mib(childHwmKib)} / ${mib(memory.peakChildKib)}`],
          ['peak RSS bench process (VmHWM / maxRSS)', `${mib(selfHwmKib)} / ${mib(selfMaxRssKib)}  (holds the signed bodies, the simulator)`],
        ],
      ),
    );
    out(`CPU, first IPN -> completion: ${cpuLine(cpuStart, cpuEnd)}`);
    out();
    out('checks:');
    out(`  every payment completed:                 ${last.completed === n ? 'yes' : 'NO'} (${last.completed}/${n}; conversions ${conv?.completed}/${conv?.total} completed)`);
    out(`  sum payments.usdt_amount == sum conversions.usdt_received: ${usdtShared === usdtReceived ? 'yes' : 'NO'} (${usdt(usdtShared)} vs ${usdt(usdtReceived)} USDT)`);
    out(`  sum payments.net_amount == sum conversions.amount_wei:     ${sums?.eth_net === sums?.eth_sent ? 'yes' : 'NO'} (${sums?.eth_net} vs ${sums?.eth_sent} wei)`);
    for (const u of underMin) {
      const at = (Number(u.at_ms) - intake.firstSentAt) / 1000;
      out(`  note: a conversion of ${u.payments} payments (${usdt(BigInt(u.usdt))} USDT, under CONVERSION_MIN_USD) was created at ${fmt(at, 2)} s (${at * 1000 <= intake.lastAnsweredAt - intake.firstSentAt ? 'during intake' : 'after intake'}), its oldest payment had waited ${u.waited_ms} ms`);
    }
    out(`  exchanges == simulator's count == confirmed sends:         ${conv?.with_exchange === simExchanges && simExchanges === transfers?.confirmed ? 'yes' : 'NO'}`);
    lines.push(...ledgerLines(ledger));
    out();
    out(`payrail's database sessions, average count by state and wait (sampled every ${WAIT_SAMPLE_MS} ms, ${waits.samples} samples):`);
    for (const line of waits.top(8)) out(`  ${line}`);
    lines.push(...payrail.output.report('payrail output lines (warn and above, plus its start banner)'));
    process.stdout.write(lines.join('\n') + '\n');
    const healthy = last.completed === n && moneyOk && ledger.ok && conv?.with_exchange === simExchanges && simExchanges === transfers?.confirmed;
    return healthy ? 0 : 1;
  } finally {
    interruption.release();
    memory?.stop();
    void waits?.stop();
    if (payrail) {
      await stopChild(payrail.child, 'payrail', STOP_TIMEOUT_MS).catch((error: Error) => process.stderr.write(`stopping payrail: ${error.message}\n`));
      if (payrail.child.exitCode !== 0 && payrail.child.exitCode !== null) {
        process.stderr.write(`payrail exited with ${payrail.child.exitCode}; its last lines:\n${payrail.output.tail.slice(-10).join('\n')}\n`);
      }
    }
    await sim?.stop().catch((error: Error) => process.stderr.write(`stopping the ChangeNow simulator: ${error.message}\n`));
    await chain?.stop().catch((error: Error) => process.stderr.write(`stopping anvil: ${error.message}\n`));
    await pg.close();
  }
}

runBench(main, (error) => {
  if (!(error instanceof Aborted)) return undefined;
  process.stderr.write(`bench aborted: ${error.message}\n(everything it started was stopped and removed)\n`);
  return 1;
});
