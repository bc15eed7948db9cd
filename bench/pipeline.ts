/**
 * npm run bench:pipeline [-- --payments 10000 --channels 200 --instant-channels 20 --concurrency 32 --deadline 600 ...]
 *
 * End to end over loopback: N signed NOWPayments IPNs (each a new `finished` payment), spread round-robin over
 * threshold channels and instant channels, through intake, conversion (threshold payments: ChangeNow exchange + one
 * ETH transfer per conversion), settlement (USDT shared out, threshold check, payout batches) and payouts (threshold
 * batches and one payout per instant payment: one exchange and one host wallet transfer, or one direct transfer),
 * until every threshold payment is converted and every payout created is completed. Prints payments/s and payouts/s
 * from the first IPN sent, the intake phase, how many ChangeNow exchanges and on-chain transfers that took per 1,000
 * payments, separately for threshold and for instant channels (against one exchange per payment in the replaced
 * system), what the payments cost the platform per strategy (fees, gas, exchange costs and the margin, from the ledger
 * through the overview's cost read), and peak memory of payrail and of this process; then checks the ledger, the sums,
 * and what the chain shows the owners and ChangeNow's payin addresses received.
 *
 * The mix: threshold channels alternate USDT on Tron (a batch goes through a USDT → USDT/TRC-20 exchange) and USDT on
 * Ethereum (a direct ERC-20 transfer); instant channels alternate ETH on Ethereum (a direct ETH transfer, no exchange)
 * and USDT on Tron (an ETH → USDT/TRC-20 exchange). Every owner wallet on Ethereum is a fresh address.
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
import type { Address } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { readOptionValues, UsageError, wholeNumberOption as int } from '../src/cli-options.ts';
import type { DatabaseHandle } from '../src/db/index.ts';
import { IpnSendError, queueConversionCheck, sendIpns, type SendOutcome } from '../src/demo/ipns.ts';
import { formatCosts } from '../src/overview/index.ts';
import {
  rpc,
  startChangeNowSimulator,
  startLocalChain,
  type ChangeNowSimulator,
  type LocalChain,
} from '../src/simulators/index.ts';
import { deployLocalUsdt, mintLocalUsdt } from '../src/simulators/usdt/index.ts';
import {
  BenchPostgres,
  beginRun,
  type BenchSecrets,
  Interruption,
  ledgerLines,
  OutputTail,
  payrailChildEnvironment,
  payrailConfig,
  payrailListening,
  type PgSettings,
  putChannel,
  readPgSettings,
  reportHeader,
  runBench,
  sessionWaitsSql,
  stopChild,
  WaitSampler,
} from './harness.ts';
import {
  busyShare,
  childrenTicks,
  cpuUsageCores,
  fmt,
  freePort,
  IpnFactory,
  machineTicks,
  postgresTicks,
  presign,
  procStatusKib,
  procTicks,
  sleep,
  ticksToCores,
  type BenchIpn,
} from './shared.ts';
import { measuresTable, pipelineChecks, type PipelineRun } from './pipeline-report.ts';
import { readRowWrites, rowWritesLines, type RowWrites } from './row-writes.ts';
import { JobTimes } from './job-times.ts';
import { readResults, type PipelineResults } from './pipeline-reads.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PAYRAIL_BIN = fileURLToPath(new URL('../bin/payrail.js', import.meta.url));

/** Channel ids of the bench: FIRST_CHANNEL_ID, FIRST_CHANNEL_ID - 1, ... (threshold channels first, then instant). */
const FIRST_CHANNEL_ID = -1009100000001n;
/** Owners paid on Tron (through ChangeNow; the simulator pays nothing on chain there). */
const TRON_WALLET = 'TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7';
/** Channel i has a threshold of (i + 1) × this many USD: a ladder, so the lower channels cross and get a batch. */
const THRESHOLD_STEP_USD = 10n;

/** What a channel of the bench pays out in, and how: see the mix in the header. */
interface BenchChannel {
  id: string;
  strategy: 'threshold' | 'instant';
  payoutCurrency: 'usdt' | 'eth';
  payoutNetwork: 'eth' | 'trx';
  wallet: string;
}

function benchChannels(thresholdCount: number, instantCount: number): BenchChannel[] {
  const fresh = () => privateKeyToAccount(generatePrivateKey()).address;
  const channels: BenchChannel[] = [];
  for (let i = 0; i < thresholdCount + instantCount; i++) {
    const id = (FIRST_CHANNEL_ID - BigInt(i)).toString();
    if (i < thresholdCount) {
      const tron = i % 2 === 0;
      channels.push({
        id,
        strategy: 'threshold',
        payoutCurrency: 'usdt',
        payoutNetwork: tron ? 'trx' : 'eth',
        wallet: tron ? TRON_WALLET : fresh(),
      });
    } else {
      const direct = (i - thresholdCount) % 2 === 0;
      channels.push({
        id,
        strategy: 'instant',
        payoutCurrency: direct ? 'eth' : 'usdt',
        payoutNetwork: direct ? 'eth' : 'trx',
        wallet: direct ? fresh() : TRON_WALLET,
      });
    }
  }
  return channels;
}

const READY_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 30_000;
const PROGRESS_EVERY_MS = 5_000;
const DRAIN_EVERY_MS = 1_000;
const MEMORY_SAMPLE_MS = 250;

const USAGE = `usage: npm run bench:pipeline -- [options]

  --payments N             payments to push through (default 10000)
  --channels N             threshold channels the payments are spread over, round-robin (default 200)
  --instant-channels N     instant channels, in the same round-robin (default 20; half ETH direct, half USDT on Tron)
  --concurrency N          IPN requests in flight (default 32)
  --deadline S             seconds from the first IPN until every payment is settled and every payout completed (default 600)
  --min-usd USD            CONVERSION_MIN_USD (default 500)
  --max-payments N         CONVERSION_MAX_PAYMENTS (default 500)
  --max-wait D             CONVERSION_MAX_WAIT (default 5s: flushes the tail below the minimum, see bench/README.md)
  --poll-interval D        CONVERSION_POLL_INTERVAL (default 200ms)
  --worker-poll-ms N       WORKER_POLL_INTERVAL_MS (default 100)
  --worker-concurrency N   WORKER_CONCURRENCY (default 4)
  --pool-max N             DATABASE_POOL_MAX (default 10)
  --job-times              payrail logs at info level, and the report adds where the worker's time went: per task,
                           runs, time in a worker slot, and time queued after it was due (graphile-worker's lines)
`;

interface Options {
  payments: number;
  channels: number;
  instantChannels: number;
  concurrency: number;
  deadlineS: number;
  /** payrail at LOG_LEVEL=info, its job completions counted (bench/job-times.ts). */
  jobTimes: boolean;
  /** Passed to the payrail child as they are (it validates them; a bad value stops its start with a message). */
  env: {
    CONVERSION_MIN_USD: string;
    CONVERSION_MAX_PAYMENTS: string;
    CONVERSION_MAX_WAIT: string;
    CONVERSION_POLL_INTERVAL: string;
    WORKER_POLL_INTERVAL_MS: string;
    WORKER_CONCURRENCY: string;
    DATABASE_POOL_MAX: string;
  };
}

function readOptions(argv: string[]): Options | undefined {
  const values = readOptionValues(argv, {
    values: [
      'payments',
      'channels',
      'instant-channels',
      'concurrency',
      'deadline',
      'min-usd',
      'max-payments',
      'max-wait',
      'poll-interval',
      'worker-poll-ms',
      'worker-concurrency',
      'pool-max',
    ],
    switches: ['job-times'],
  });
  if (!values) return undefined;
  const duration = (name: string, text: string | undefined, fallback: string): string => {
    if (text === undefined) return fallback;
    if (!/^[1-9][0-9]{0,8}(ms|s|m|h)$/.test(text))
      throw new UsageError(`--${name} must be a duration such as 500ms, 5s, 1m (got "${text}")`);
    return text;
  };
  const minUsd = values['min-usd'] ?? '500';
  if (!/^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$/.test(minUsd))
    throw new UsageError(`--min-usd must be a USD amount such as 500 or 12.50 (got "${minUsd}")`);
  return {
    payments: int('payments', values.payments, 10_000, 1, 1_000_000),
    channels: int('channels', values.channels, 200, 1, 10_000),
    instantChannels: int('instant-channels', values['instant-channels'], 20, 0, 10_000),
    concurrency: int('concurrency', values.concurrency, 32, 1, 1_000),
    deadlineS: int('deadline', values.deadline, 600, 1, 24 * 3600),
    jobTimes: values['job-times'] === true,
    env: {
      CONVERSION_MIN_USD: minUsd,
      CONVERSION_MAX_PAYMENTS: String(int('max-payments', values['max-payments'], 500, 1, 5_000)),
      CONVERSION_MAX_WAIT: duration('max-wait', values['max-wait'], '5s'),
      CONVERSION_POLL_INTERVAL: duration('poll-interval', values['poll-interval'], '200ms'),
      WORKER_POLL_INTERVAL_MS: String(int('worker-poll-ms', values['worker-poll-ms'], 100, 1, 60_000)),
      WORKER_CONCURRENCY: String(int('worker-concurrency', values['worker-concurrency'], 4, 1, 64)),
      DATABASE_POOL_MAX: String(int('pool-max', values['pool-max'], 10, 1, 200)),
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
  /** With --job-times: its job completions. */
  jobTimes: JobTimes | undefined;
}

/** A JSON log line below warn (level 40): with --job-times payrail logs at info, and the report keeps warn and above. */
const BELOW_WARN = /^\{"level":[123]0,/;

async function startPayrailChild(env: NodeJS.ProcessEnv, withJobTimes: boolean): Promise<PayrailChild> {
  const child = spawn(process.execPath, [PAYRAIL_BIN, 'start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = new OutputTail(30);
  const jobTimes = withJobTimes ? new JobTimes() : undefined;
  const keep = jobTimes
    ? (line: string) => {
        if (!jobTimes.take(line) && !BELOW_WARN.test(line)) output.keep(line);
      }
    : output.keep;
  readline.createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', keep);
  const stderr = readline.createInterface({ input: child.stderr as NodeJS.ReadableStream });
  stderr.on('line', keep);
  const url = await payrailListening(child, stderr, output, READY_TIMEOUT_MS);
  return { child, url, output, jobTimes };
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
    if (this.childPid !== undefined)
      this.peakChildKib = Math.max(this.peakChildKib, procStatusKib(this.childPid, 'VmRSS') ?? 0);
    this.peakSelfKib = Math.max(this.peakSelfKib, Math.round(process.memoryUsage.rss() / 1024));
  }
  stop(): void {
    this.sample();
    clearInterval(this.timer);
  }
}

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
  const other =
    busy === undefined ? undefined : Math.max(0, busy * n - bench - (payrail ?? 0) - (postgres ?? 0) - (anvil ?? 0));
  const c = (x: number | undefined) => (x === undefined ? '-' : fmt(x, 2));
  return `machine ${busy === undefined ? '-' : `${fmt(busy * 100, 0)}%`} busy of ${n} cores; cores used: payrail ${c(payrail)}, postgres ${c(postgres)}, bench+simulator ${fmt(bench, 2)}, anvil ${c(anvil)}, other processes ${c(other)}`;
}

// ---------------------------------------------------------------------------------------------------------------
// What payrail's database sessions wait on (pg_stat_activity), sampled over the whole run

const WAIT_SAMPLE_MS = 200;

const WAITS_SQL = sessionWaitsSql(['payrail-webworker'], 50);

// ---------------------------------------------------------------------------------------------------------------
// Sending the IPNs: src/demo/ipns.ts (sendIpns); the demo's payments go through checkout instead

class Aborted extends Error {
  override name = 'Aborted';
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
  thresholdPayouts: number;
  instantPayouts: number;
  payoutsCompleted: number;
  /** Payouts in a state the bench cannot wait out: failed, needs_review, cancelled, held, awaiting_approval. */
  payoutsStuck: number;
}

const STUCK_PAYOUT_STATUSES = `('failed', 'needs_review', 'cancelled', 'held', 'awaiting_approval')`;

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
       (select count(*)::int from conversions where status = 'needs_review') as review,
       (select count(*)::int from payouts where kind = 'threshold') as "thresholdPayouts",
       (select count(*)::int from payouts where kind = 'instant') as "instantPayouts",
       (select count(*)::int from payouts where status = 'completed') as "payoutsCompleted",
       (select count(*)::int from payouts where status in ${STUCK_PAYOUT_STATUSES}) as "payoutsStuck"`,
    [userId],
  );
  return rows[0] as Counts;
}

function progressLine(startedAt: number, c: Counts): string {
  const s = ((Date.now() - startedAt) / 1000).toFixed(1).padStart(6);
  return `[${s} s] received ${c.received}  pending ${c.pending}  converting ${c.converting}  completed ${c.completed}  failed ${c.failed}  conversions ${c.conversions} (open ${c.conversionsOpen})  payouts ${c.payoutsCompleted}/${c.thresholdPayouts + c.instantPayouts} completed (threshold ${c.thresholdPayouts}, instant ${c.instantPayouts})\n`;
}

// ---------------------------------------------------------------------------------------------------------------
// Starting the parts; whatever has started is in RunParts, for stopEverything

/** What a run has started so far: stopEverything stops whichever of these exist, whenever the run ends. */
interface RunParts {
  pg: BenchPostgres;
  interruption: Interruption;
  chain?: LocalChain;
  sim?: ChangeNowSimulator;
  payrail?: PayrailChild;
  memory?: MemorySampler;
  waits?: WaitSampler;
}

function checkInterrupted(parts: RunParts): void {
  if (parts.interruption.interrupted) throw new Aborted('interrupted');
}

/** The outside world payrail talks to, as the bench started it. */
interface Outside {
  chain: LocalChain;
  sim: ChangeNowSimulator;
  usdtContract: Address;
}

/** Anvil with the host wallet funded, and the ChangeNow simulator at zero latency. */
async function startOutside(parts: RunParts, secrets: BenchSecrets, payments: number): Promise<Outside> {
  const chain = await startLocalChain({ port: await freePort() });
  parts.chain = chain;
  const hostAddress = privateKeyToAccount(secrets.hostPrivateKey).address;
  // 0.00487 ETH per payment at most leaves the host wallet, plus gas: 1,000 ETH or twice the need.
  const fundingWei = [10n ** 21n, BigInt(payments) * 10n ** 16n].reduce((a, b) => (a > b ? a : b));
  await rpc(chain.rpcUrl, 'anvil_setBalance', [hostAddress, `0x${fundingWei.toString(16)}`]);
  // The simulator pays conversions out in LocalUSDT from its treasury, on chain, as ChangeNow would: settlement
  // books only the USDT the chain shows arrived. The treasury gets ETH for gas and 10^9 USDT.
  const treasuryKey = generatePrivateKey();
  const treasury = privateKeyToAccount(treasuryKey).address;
  await rpc(chain.rpcUrl, 'anvil_setBalance', [treasury, `0x${(10n ** 21n).toString(16)}`]);
  const usdtContract = await deployLocalUsdt(chain.rpcUrl, treasuryKey);
  await mintLocalUsdt(chain.rpcUrl, usdtContract, treasuryKey, treasury, 10n ** 15n);
  const sim = await startChangeNowSimulator({
    port: 0,
    apiKey: secrets.changenowApiKey,
    rpcUrl: chain.rpcUrl,
    stepMs: 0,
    tokens: { usdt: usdtContract },
    treasuryKey,
  });
  parts.sim = sim;
  return { chain, sim, usdtContract };
}

/** payrail, as `payrail start` with the configuration below. */
async function startPayrail(
  parts: RunParts,
  databaseUrl: string,
  secrets: BenchSecrets,
  outside: Outside,
  opts: Pick<Options, 'env' | 'jobTimes'>,
): Promise<PayrailChild> {
  const config: Record<string, string> = {
    ...payrailConfig(databaseUrl, secrets, {
      changenowUrl: outside.sim.url,
      rpcUrl: outside.chain.rpcUrl,
      chainId: outside.chain.chainId,
      usdtContract: outside.usdtContract,
    }),
    ...opts.env,
    ...(opts.jobTimes && { LOG_LEVEL: 'info' }),
  };
  const payrail = await startPayrailChild(payrailChildEnvironment(config), opts.jobTimes);
  parts.payrail = payrail;
  process.stderr.write(`payrail at ${payrail.url} (pid ${payrail.child.pid})\n`);
  return payrail;
}

interface Started {
  database: DatabaseHandle;
  pgInfo: PgSettings | undefined;
  outside: Outside;
  payrail: PayrailChild;
}

/** A new embedded PostgreSQL in a temp dir, the outside world, then payrail; an interruption stops in between. */
async function startParts(parts: RunParts, opts: Options, secrets: BenchSecrets): Promise<Started> {
  const databaseUrl = await parts.pg.startEmbedded('payrail-bench-pipeline-');
  const database = await parts.pg.open(databaseUrl, 3);
  const pgInfo = await readPgSettings(database);
  checkInterrupted(parts);
  const outside = await startOutside(parts, secrets, opts.payments);
  checkInterrupted(parts);
  const payrail = await startPayrail(parts, databaseUrl, secrets, outside, opts);
  checkInterrupted(parts);
  return { database, pgInfo, outside, payrail };
}

// ---------------------------------------------------------------------------------------------------------------
// The load: channels and signed IPN bodies

/** Threshold channels (thresholds 10, 20, ... USD), then instant; payout currencies as in the header. */
async function registerChannels(payrailUrl: string, adminToken: string, opts: Options): Promise<BenchChannel[]> {
  const channels = benchChannels(opts.channels, opts.instantChannels);
  for (const [i, c] of channels.entries()) {
    const body = { payoutCurrency: c.payoutCurrency, payoutNetwork: c.payoutNetwork, walletAddress: c.wallet };
    if (c.strategy === 'threshold')
      await putChannel(payrailUrl, adminToken, c.id, {
        payoutStrategy: 'threshold',
        thresholdUsd: `${THRESHOLD_STEP_USD * BigInt(i + 1)}.00`,
        ...body,
      });
    else await putChannel(payrailUrl, adminToken, c.id, { payoutStrategy: 'instant', ...body });
  }
  return channels;
}

interface Load {
  thresholdPayments: number;
  instantPayments: number;
}

/** Payment i goes to channel i mod C (IpnFactory's round-robin). */
function paymentsByStrategy(channels: BenchChannel[], payments: number): Load {
  let instantPayments = 0;
  for (let i = 0; i < payments; i++)
    if ((channels[i % channels.length] as BenchChannel).strategy === 'instant') instantPayments++;
  return { thresholdPayments: payments - instantPayments, instantPayments };
}

/** Every body signed before the clock starts. */
function signBodies(userId: string, ipnSecret: string, channels: BenchChannel[], opts: Options): BenchIpn[] {
  const factory = new IpnFactory(
    userId,
    ipnSecret,
    channels.map((c) => c.id),
  );
  process.stderr.write(`signing ${opts.payments} IPN bodies\n`);
  const signedBodies = presign(factory, opts.payments);
  process.stderr.write(`signed in ${fmt(signedBodies.ms / 1000, 1)} s; sending with ${opts.concurrency} in flight\n`);
  return signedBodies.pool;
}

// ---------------------------------------------------------------------------------------------------------------
// The run: the clock and the samplers, intake, then waiting for every payment and payout

/** What watching the pipeline needs: where to count, since and until when, and the interruption to honour. */
interface Watch extends Load {
  parts: RunParts;
  database: DatabaseHandle;
  userId: string;
  startedAt: number;
  deadline: number;
  deadlineS: number;
  cpuStart: CpuSample;
  childPid: number | undefined;
  postmasterPid: number | undefined;
}

/** Memory, database waits and CPU are sampled from here, the first IPN, to completion; the deadline counts from here. */
function startClock(parts: RunParts, started: Started, userId: string, load: Load, opts: Options): Watch {
  const childPid = started.payrail.child.pid;
  parts.memory = new MemorySampler(childPid);
  parts.waits = new WaitSampler(started.database, WAITS_SQL, WAIT_SAMPLE_MS);
  const postmasterPid = parts.pg.postmasterPid();
  const cpuStart = sampleCpu(childPid, postmasterPid);
  const startedAt = Date.now();
  const deadline = startedAt + opts.deadlineS * 1000;
  const { database } = started;
  return {
    parts,
    database,
    userId,
    startedAt,
    deadline,
    deadlineS: opts.deadlineS,
    cpuStart,
    childPid,
    postmasterPid,
    ...load,
  };
}

/** A progress line every PROGRESS_EVERY_MS; none while the previous one is still being counted. */
function progressWhileSending(watch: Watch): NodeJS.Timeout {
  let progressBusy = false;
  return setInterval(() => {
    if (progressBusy) return;
    progressBusy = true;
    counts(watch.database, watch.userId)
      .then((c) => process.stderr.write(progressLine(watch.startedAt, c)))
      .catch(() => undefined)
      .finally(() => (progressBusy = false));
  }, PROGRESS_EVERY_MS);
}

/** Intake, with progress lines while it runs. */
async function sendAll(watch: Watch, payrailUrl: string, bodies: BenchIpn[], opts: Options): Promise<SendOutcome> {
  const progress = progressWhileSending(watch);
  let intake: SendOutcome;
  try {
    intake = await sendIpns(`${payrailUrl}/webhooks/nowpayments`, bodies, {
      concurrency: opts.concurrency,
      stopped: () =>
        watch.parts.interruption.interrupted
          ? 'interrupted during intake'
          : Date.now() > watch.deadline
            ? `deadline of ${opts.deadlineS} s passed during intake`
            : undefined,
    });
  } catch (error) {
    // Anything but a 200 stops the bench: the status and the body are in the message.
    if (error instanceof IpnSendError) throw new Aborted(error.message);
    throw error;
  } finally {
    clearInterval(progress);
  }
  process.stderr.write(
    `intake done: ${opts.payments} IPNs answered 200 in ${fmt((intake.lastAnsweredAt - intake.firstSentAt) / 1000, 2)} s\n`,
  );
  return intake;
}

/**
 * Settlement creates a channel's batch in the transaction that converts its payments, so once every threshold
 * payment is converted no further batch can appear: done when every payout there is (and one per instant payment) is
 * completed.
 */
function allDone(watch: Watch, last: Counts): boolean {
  return (
    last.completed === watch.thresholdPayments &&
    last.instantPayouts === watch.instantPayments &&
    last.payoutsCompleted === last.thresholdPayouts + last.instantPayouts
  );
}

/** Stops the bench when the pipeline cannot complete on its own, or not before the deadline. */
async function assertCanComplete(watch: Watch, last: Counts): Promise<void> {
  if (last.failed > 0 || last.review > 0)
    throw new Aborted(
      `${last.failed} payments failed conversion, ${last.review} conversions need review: the pipeline cannot complete`,
    );
  if (last.payoutsStuck > 0) throw await stuckPayouts(watch.database, last);
  if (Date.now() > watch.deadline) {
    const payoutsAll = last.thresholdPayouts + last.instantPayouts;
    throw new Aborted(
      `deadline of ${watch.deadlineS} s passed with ${watch.thresholdPayments - last.completed} threshold payments not settled (pending ${last.pending}, converting ${last.converting}), ${watch.instantPayments - last.instantPayouts} instant payments without a payout, ${payoutsAll - last.payoutsCompleted} payouts not completed`,
    );
  }
}

/** The error for payouts that cannot complete on their own, naming the first five. */
async function stuckPayouts(database: DatabaseHandle, last: Counts): Promise<Aborted> {
  const stuck = await database.pool.query<{
    payout_id: string;
    kind: string;
    status: string;
    reason: string | null;
    last_error: string | null;
  }>(
    `select payout_id, kind, status, reason, last_error from payouts where status in ${STUCK_PAYOUT_STATUSES} order by created_at limit 5`,
  );
  return new Aborted(
    `${last.payoutsStuck} payouts cannot complete on their own: ${stuck.rows.map((r) => `${r.payout_id} (${r.kind}) ${r.status}: ${r.reason ?? r.last_error ?? ''}`).join('; ')}`,
  );
}

/** The drain: the cron runs only every minute, so queue a conversion check every second while payments are pending. */
async function waitForCompletion(watch: Watch): Promise<{ last: Counts; drainJobs: number }> {
  let drainJobs = 0;
  let lastProgress = 0;
  for (;;) {
    checkInterrupted(watch.parts);
    const last = await counts(watch.database, watch.userId);
    if (Date.now() - lastProgress >= PROGRESS_EVERY_MS) {
      process.stderr.write(progressLine(watch.startedAt, last));
      lastProgress = Date.now();
    }
    if (allDone(watch, last)) {
      process.stderr.write(progressLine(watch.startedAt, last));
      return { last, drainJobs };
    }
    await assertCanComplete(watch, last);
    if (last.pending > 0) {
      // Only when no conversion_batch job is queued or running (the demo's drain too): never a second concurrent check.
      if (await queueConversionCheck(watch.database.pool)) drainJobs++;
    }
    await sleep(DRAIN_EVERY_MS);
  }
}

/** Stops the samplers once the pipeline has completed; the CPU line covers first IPN -> completion. */
function stopClock(watch: Watch): { cpuEnd: CpuSample; payrailHwmKib?: number; selfHwmKib?: number } {
  const cpuEnd = sampleCpu(watch.childPid, watch.postmasterPid);
  watch.parts.memory?.stop();
  void watch.parts.waits?.stop();
  const payrailHwmKib = watch.childPid === undefined ? undefined : procStatusKib(watch.childPid, 'VmHWM');
  const selfHwmKib = procStatusKib('self', 'VmHWM');
  return {
    cpuEnd,
    ...(payrailHwmKib !== undefined && { payrailHwmKib }),
    ...(selfHwmKib !== undefined && { selfHwmKib }),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The report: how the run was set up, the measures and the checks (bench/pipeline-report.ts), the costs, the waits

function setupLines(opts: Options, load: Load, drainJobs: number, pgInfo: PgSettings | undefined): string[] {
  const n = opts.payments;
  const instantShare = fmt((load.instantPayments * 100) / n, 1);
  return [
    ...reportHeader('pipeline', pgInfo, 'embedded, temp dir'),
    `outside:  anvil (one block per transaction), ChangeNow simulator stepMs 0 (in the bench process), all on 127.0.0.1`,
    `payrail:  node bin/payrail.js start (web + worker, one process), CONVERSION_INTERVAL=1m (default)`,
    `          ${Object.entries(opts.env)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}`,
    `load:     ${n} payments (new, status finished, 0.00487 ETH each), round-robin over ${opts.channels} threshold channels (thresholds ${THRESHOLD_STEP_USD}..${THRESHOLD_STEP_USD * BigInt(opts.channels)} USD)`,
    `          and ${opts.instantChannels} instant channels: ${load.thresholdPayments} threshold payments, ${load.instantPayments} instant (${instantShare} %);`,
    `          ${opts.concurrency} IPNs in flight (node:http, keep-alive), bodies pre-signed; after the last IPN, every ${DRAIN_EVERY_MS / 1000} s while payments`,
    `          are pending and no conversion_batch job is queued or running, the bench queues one (${drainJobs} queued)`,
    `payouts:  threshold channels alternate USDT on Tron (batch through a USDT -> USDT/TRC-20 exchange) and USDT on Ethereum`,
    `          (direct ERC-20 transfer); instant channels alternate ETH on Ethereum (direct ETH transfer, no exchange) and USDT on`,
    `          Tron (ETH -> USDT/TRC-20 exchange). On-chain transfers = the host wallet's (chain_transfers), not ChangeNow's own payouts.`,
    '',
  ];
}

function sessionLines(waits: WaitSampler): string[] {
  return [
    `payrail's database sessions, average count by state and wait (sampled every ${WAIT_SAMPLE_MS} ms, ${waits.samples} samples):`,
    ...waits.top(8).map((line) => `  ${line}`),
  ];
}

/** What the report prints besides the parts' own lines. */
interface Report {
  opts: Options;
  load: Load;
  drainJobs: number;
  cpu: string;
  run: PipelineRun;
  results: PipelineResults;
  writes: RowWrites;
  checkLines: string[];
}

function reportLines(started: Started, waits: WaitSampler | undefined, report: Report): string[] {
  const { run, results } = report;
  return [
    ...setupLines(report.opts, report.load, report.drainJobs, started.pgInfo),
    measuresTable(run, results),
    `CPU, first IPN -> completion: ${report.cpu}`,
    '',
    'Row versions written, per payment (the database since it started, the channels and the setup included):',
    ...rowWritesLines(report.writes, report.opts.payments),
    '',
    ...formatCosts(results.costs),
    '',
    ...report.checkLines,
    ...ledgerLines(results.ledger),
    '',
    ...(waits ? sessionLines(waits) : []),
    ...(started.payrail.jobTimes
      ? ['', ...started.payrail.jobTimes.lines(Number(report.opts.env.WORKER_CONCURRENCY))]
      : []),
    ...started.payrail.output.report('payrail output lines (warn and above, plus its start banner)'),
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// Main

async function runPipeline(parts: RunParts, opts: Options, secrets: BenchSecrets): Promise<number> {
  const started = await startParts(parts, opts, secrets);
  const { database, outside, payrail } = started;
  const channels = await registerChannels(payrail.url, secrets.adminToken, opts);
  const load = paymentsByStrategy(channels, opts.payments);
  checkInterrupted(parts);
  const userId = String(Date.now());
  const bodies = signBodies(userId, secrets.ipnSecret, channels, opts);
  checkInterrupted(parts);

  const watch = startClock(parts, started, userId, load, opts);
  const intake = await sendAll(watch, payrail.url, bodies, opts);
  const { last, drainJobs } = await waitForCompletion(watch);
  const { cpuEnd, ...hwm } = stopClock(watch);

  const results = await readResults(database, {
    userId,
    minUsd: opts.env.CONVERSION_MIN_USD,
    maxWaitMs: durationMs(opts.env.CONVERSION_MAX_WAIT),
    rpcUrl: outside.chain.rpcUrl,
    usdtContract: outside.usdtContract,
  });
  const run: PipelineRun = {
    payments: opts.payments,
    ...load,
    thresholdCompleted: last.completed,
    intake,
    simExchanges: outside.sim.exchanges.size,
    memory: { ...hwm, payrailPeakKib: parts.memory?.peakChildKib ?? 0, selfMaxRssKib: process.resourceUsage().maxRSS },
  };
  // Stopped before the table counters are read: a session reports the last of its counts as it ends.
  await stopChild(payrail.child, 'payrail', STOP_TIMEOUT_MS);
  const writes = await readRowWrites(database);
  const checks = pipelineChecks(run, results);
  const cpu = cpuLine(watch.cpuStart, cpuEnd);
  const report = { opts, load, drainJobs, cpu, run, results, writes, checkLines: checks.lines };
  process.stdout.write(reportLines(started, parts.waits, report).join('\n') + '\n');
  return checks.healthy ? 0 : 1;
}

/** Stops whatever the run started, in the reverse order; a part that fails to stop does not keep the others up. */
async function stopEverything(parts: RunParts): Promise<void> {
  parts.interruption.release();
  parts.memory?.stop();
  void parts.waits?.stop();
  const { payrail } = parts;
  if (payrail) {
    await stopChild(payrail.child, 'payrail', STOP_TIMEOUT_MS).catch((error: Error) =>
      process.stderr.write(`stopping payrail: ${error.message}\n`),
    );
    if (payrail.child.exitCode !== 0 && payrail.child.exitCode !== null) {
      process.stderr.write(
        `payrail exited with ${payrail.child.exitCode}; its last lines:\n${payrail.output.tail.slice(-10).join('\n')}\n`,
      );
    }
  }
  await parts.sim
    ?.stop()
    .catch((error: Error) => process.stderr.write(`stopping the ChangeNow simulator: ${error.message}\n`));
  await parts.chain?.stop().catch((error: Error) => process.stderr.write(`stopping anvil: ${error.message}\n`));
  await parts.pg.close();
}

async function main(): Promise<number> {
  const start = beginRun(readOptions, USAGE);
  if ('exitCode' in start) return start.exitCode;
  const { options: opts, logger, secrets } = start;
  const parts: RunParts = { pg: new BenchPostgres(logger), interruption: new Interruption('stopping and cleaning up') };
  try {
    return await runPipeline(parts, opts, secrets);
  } finally {
    await stopEverything(parts);
  }
}

runBench(main, (error) => {
  if (!(error instanceof Aborted)) return undefined;
  process.stderr.write(`bench aborted: ${error.message}\n(everything it started was stopped and removed)\n`);
  return 1;
});
