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
import { parseArgs } from 'node:util';
import { createPublicClient, erc20Abi, http, type Address } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import type { DatabaseHandle } from '../src/db/index.ts';
import { checkLedger } from '../src/ledger/index.ts';
import { IpnSendError, queueConversionCheck, sendIpns, type SendOutcome } from '../src/demo/ipns.ts';
import { formatUnits } from '../src/money/index.ts';
import { formatCosts, readCosts } from '../src/overview/index.ts';
import {
  rpc,
  startChangeNowSimulator,
  startLocalChain,
  type ChangeNowSimulator,
  type LocalChain,
} from '../src/simulators/index.ts';
import { deployLocalUsdt, mintLocalUsdt } from '../src/simulators/usdt/index.ts';
import {
  assertLoopback,
  BenchPostgres,
  beginRun,
  childReady,
  Interruption,
  ledgerLines,
  OutputTail,
  payrailConfig,
  putChannel,
  readPgSettings,
  reportHeader,
  runBench,
  stopChild,
  WaitSampler,
  wholeNumberOption as int,
} from './harness.ts';
import {
  busyShare,
  childrenTicks,
  cpuUsageCores,
  fmt,
  freePort,
  IpnFactory,
  machineTicks,
  percentile,
  postgresTicks,
  presign,
  procStatusKib,
  procTicks,
  sleep,
  table,
  ticksToCores,
} from './shared.ts';

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
`;

interface Options {
  payments: number;
  channels: number;
  instantChannels: number;
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
    DATABASE_POOL_MAX: string;
  };
}

function readOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      payments: { type: 'string' },
      channels: { type: 'string' },
      'instant-channels': { type: 'string' },
      concurrency: { type: 'string' },
      deadline: { type: 'string' },
      'min-usd': { type: 'string' },
      'max-payments': { type: 'string' },
      'max-wait': { type: 'string' },
      'poll-interval': { type: 'string' },
      'worker-poll-ms': { type: 'string' },
      'worker-concurrency': { type: 'string' },
      'pool-max': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return undefined;
  const duration = (name: string, text: string | undefined, fallback: string): string => {
    if (text === undefined) return fallback;
    if (!/^[1-9][0-9]{0,8}(ms|s|m|h)$/.test(text))
      throw new Error(`--${name} must be a duration such as 500ms, 5s, 1m (got "${text}")`);
    return text;
  };
  const minUsd = values['min-usd'] ?? '500';
  if (!/^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$/.test(minUsd))
    throw new Error(`--min-usd must be a USD amount such as 500 or 12.50 (got "${minUsd}")`);
  return {
    payments: int('payments', values.payments, 10_000, 1, 1_000_000),
    channels: int('channels', values.channels, 200, 1, 10_000),
    instantChannels: int('instant-channels', values['instant-channels'], 20, 0, 10_000),
    concurrency: int('concurrency', values.concurrency, 32, 1, 1_000),
    deadlineS: int('deadline', values.deadline, 600, 1, 24 * 3600),
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
}

/** Variables with one of payrail's prefixes are not inherited: the child gets exactly the configuration printed. */
const PAYRAIL_PREFIXES = [
  'PAYRAIL_',
  'NOWPAYMENTS_',
  'CHANGENOW_',
  'PLATFORM_',
  'PAYOUT_',
  'CONVERSION_',
  'HOST_WALLET_',
  'HEALTH_',
  'WORKER_',
  'EMBEDDED_PG_',
  'ADMIN_',
  'LOCAL_',
  'TRANSFER_',
];
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
      exited: (code, signal) =>
        new Error(`payrail exited before it listened (code ${code}, signal ${signal}):\n${output.tail.join('\n')}`),
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
    if (this.childPid !== undefined)
      this.peakChildKib = Math.max(this.peakChildKib, procStatusKib(this.childPid, 'VmRSS') ?? 0);
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
  const other =
    busy === undefined ? undefined : Math.max(0, busy * n - bench - (payrail ?? 0) - (postgres ?? 0) - (anvil ?? 0));
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
// What the chain shows the payouts paid

interface OnChainCheck {
  directWallets: number;
  directOk: boolean;
  directProblems: string[];
  payins: number;
  payinOk: boolean;
  payinProblems: string[];
}

/**
 * Reads balances on anvil: every owner wallet paid directly (fresh per channel, paid by nobody else) holds exactly the
 * sum of its completed payouts, and every payout exchange's payin address (new per exchange) holds exactly what its
 * payout sent: nobody was paid twice, nothing went missing.
 */
async function checkPaidOnChain(database: DatabaseHandle, rpcUrl: string, usdt: Address): Promise<OnChainCheck> {
  const client = createPublicClient({ transport: http(rpcUrl) });
  const balance = (asset: string, address: string) =>
    asset === 'eth'
      ? client.getBalance({ address: address as Address })
      : client.readContract({ address: usdt, abi: erc20Abi, functionName: 'balanceOf', args: [address as Address] });
  const direct = (
    await database.pool.query<{ address: string; asset: string; amount: string }>(
      "select wallet_address as address, asset, sum(amount)::text as amount from payouts where exchange_id is null and status = 'completed' group by wallet_address, asset",
    )
  ).rows;
  const payins = (
    await database.pool.query<{ address: string; asset: string; amount: string }>(
      "select payin_address as address, asset, amount::text as amount from payouts where exchange_id is not null and status = 'completed'",
    )
  ).rows;
  const mismatches = async (rows: Array<{ address: string; asset: string; amount: string }>): Promise<string[]> => {
    const problems: string[] = [];
    let next = 0;
    const reader = async () => {
      for (let row = rows[next++]; row !== undefined; row = rows[next++]) {
        const held = await balance(row.asset, row.address);
        if (held !== BigInt(row.amount))
          problems.push(`${row.address} holds ${held} ${row.asset}, payouts say ${row.amount}`);
      }
    };
    await Promise.all(Array.from({ length: 16 }, reader));
    return problems;
  };
  const directProblems = await mismatches(direct);
  const payinProblems = await mismatches(payins);
  return {
    directWallets: direct.length,
    directOk: directProblems.length === 0,
    directProblems,
    payins: payins.length,
    payinOk: payinProblems.length === 0,
    payinProblems,
  };
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
    sim = await startChangeNowSimulator({
      port: 0,
      apiKey: secrets.changenowApiKey,
      rpcUrl: chain.rpcUrl,
      stepMs: 0,
      tokens: { usdt: usdtContract },
      treasuryKey,
    });
    checkInterrupted();

    // -- payrail, as `payrail start` with the configuration below
    const config: Record<string, string> = {
      ...payrailConfig(databaseUrl, secrets, {
        changenowUrl: sim.url,
        rpcUrl: chain.rpcUrl,
        chainId: chain.chainId,
        usdtContract,
      }),
      ...opts.env,
    };
    payrail = await startPayrailChild(childEnvironment(config));
    const childPid = payrail.child.pid;
    process.stderr.write(`payrail at ${payrail.url} (pid ${childPid})\n`);
    checkInterrupted();

    // -- channels: threshold (thresholds 10, 20, ... USD), then instant; payout currencies as in the header
    const channels = benchChannels(opts.channels, opts.instantChannels);
    const channelIds = channels.map((c) => c.id);
    for (const [i, c] of channels.entries()) {
      const body = { payoutCurrency: c.payoutCurrency, payoutNetwork: c.payoutNetwork, walletAddress: c.wallet };
      if (c.strategy === 'threshold')
        await putChannel(payrail.url, secrets.adminToken, c.id, {
          payoutStrategy: 'threshold',
          thresholdUsd: `${THRESHOLD_STEP_USD * BigInt(i + 1)}.00`,
          ...body,
        });
      else await putChannel(payrail.url, secrets.adminToken, c.id, { payoutStrategy: 'instant', ...body });
    }
    // Payment i goes to channel i mod C (IpnFactory's round-robin).
    let instantPayments = 0;
    for (let i = 0; i < opts.payments; i++)
      if ((channels[i % channels.length] as BenchChannel).strategy === 'instant') instantPayments++;
    const thresholdPayments = opts.payments - instantPayments;
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
    let intake: SendOutcome;
    try {
      intake = await sendIpns(`${payrail.url}/webhooks/nowpayments`, signedBodies.pool, {
        concurrency: opts.concurrency,
        stopped: () =>
          interruption.interrupted
            ? 'interrupted during intake'
            : Date.now() > deadline
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
      // Settlement creates a channel's batch in the transaction that converts its payments, so once every threshold
      // payment is converted no further batch can appear: done when every payout there is (and one per instant
      // payment) is completed.
      const payoutsAll = last.thresholdPayouts + last.instantPayouts;
      if (
        last.completed === thresholdPayments &&
        last.instantPayouts === instantPayments &&
        last.payoutsCompleted === payoutsAll
      )
        break;
      if (last.failed > 0 || last.review > 0)
        throw new Aborted(
          `${last.failed} payments failed conversion, ${last.review} conversions need review: the pipeline cannot complete`,
        );
      if (last.payoutsStuck > 0) {
        const stuck = await database.pool.query<{
          payout_id: string;
          kind: string;
          status: string;
          reason: string | null;
          last_error: string | null;
        }>(
          `select payout_id, kind, status, reason, last_error from payouts where status in ${STUCK_PAYOUT_STATUSES} order by created_at limit 5`,
        );
        throw new Aborted(
          `${last.payoutsStuck} payouts cannot complete on their own: ${stuck.rows.map((r) => `${r.payout_id} (${r.kind}) ${r.status}: ${r.reason ?? r.last_error ?? ''}`).join('; ')}`,
        );
      }
      if (Date.now() > deadline) {
        throw new Aborted(
          `deadline of ${opts.deadlineS} s passed with ${thresholdPayments - last.completed} threshold payments not settled (pending ${last.pending}, converting ${last.converting}), ${instantPayments - last.instantPayouts} instant payments without a payout, ${payoutsAll - last.payoutsCompleted} payouts not completed`,
        );
      }
      if (last.pending > 0) {
        // Only when no conversion_batch job is queued or running (the demo's drain too): never a second concurrent check.
        if (await queueConversionCheck(database.pool)) drainJobs++;
      }
      await sleep(DRAIN_EVERY_MS);
    }
    process.stderr.write(progressLine(startedAt, last));

    // -- measure: the last settlement and the last payout as the database recorded them
    const cpuEnd = sampleCpu(childPid, postmasterPid);
    memory.stop();
    void waits.stop();
    const childHwmKib = childPid === undefined ? undefined : procStatusKib(childPid, 'VmHWM');
    const selfHwmKib = procStatusKib('self', 'VmHWM');
    const epochMs = (column: string) => `(extract(epoch from ${column}) * 1000)::bigint::text`;
    const timing = (
      await database.pool.query<{
        last_converted_ms: string | null;
        last_instant_ms: string | null;
        last_payout_ms: string | null;
      }>(
        `select ${epochMs(`(select max(completed_at) from conversions where status = 'completed')`)} as last_converted_ms,
                ${epochMs(`(select max(completed_at) from payouts where kind = 'instant' and status = 'completed')`)} as last_instant_ms,
                ${epochMs(`(select max(completed_at) from payouts where status = 'completed')`)} as last_payout_ms`,
      )
    ).rows[0];
    const lastConvertedAt = timing?.last_converted_ms == null ? undefined : Number(timing.last_converted_ms);
    const lastInstantAt = timing?.last_instant_ms == null ? undefined : Number(timing.last_instant_ms);
    const lastPayoutAt = timing?.last_payout_ms == null ? undefined : Number(timing.last_payout_ms);
    // A payment is settled when its channel holds its value in the payout asset: converted (threshold) or paid out (instant).
    const lastSettledAt = Math.max(lastConvertedAt ?? 0, lastInstantAt ?? 0);
    const conv = (
      await database.pool.query<{
        total: number;
        with_exchange: number;
        completed: number;
        under_min: number;
        under_min_early: number;
        min_p: number;
        avg_p: string;
        max_p: number;
        avg_ms: string;
        max_ms: string;
      }>(
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
    // Host wallet transfers, by what they paid for: a conversion, a threshold batch, an instant payout.
    const transfers = (
      await database.pool.query<{
        conversion: number;
        threshold: number;
        instant: number;
        other: number;
        payout_rows: number;
        payout_refs: number;
        avg_ms: string | null;
        p50_ms: string | null;
        max_ms: string | null;
        span_ms: string | null;
      }>(
        `select count(*) filter (where t.status = 'confirmed' and t.purpose = 'conversion')::int as conversion,
                count(*) filter (where t.status = 'confirmed' and t.purpose = 'payout' and p.kind = 'threshold')::int as threshold,
                count(*) filter (where t.status = 'confirmed' and t.purpose = 'payout' and p.kind = 'instant')::int as instant,
                count(*) filter (where t.status <> 'confirmed')::int as other,
                count(*) filter (where t.purpose = 'payout')::int as payout_rows,
                count(distinct t.ref) filter (where t.purpose = 'payout')::int as payout_refs,
                round(avg(w.ms))::text as avg_ms, round(percentile_cont(0.5) within group (order by w.ms))::text as p50_ms, round(max(w.ms))::text as max_ms,
                round(extract(epoch from max(t.updated_at) filter (where t.status = 'confirmed') - min(t.created_at)) * 1000)::text as span_ms
         from chain_transfers t
              -- a confirmed transfer is not touched after its confirmation: updated_at is when it was recorded mined
              cross join lateral (select case when t.status = 'confirmed' then extract(epoch from t.updated_at - t.created_at) * 1000 end as ms) w left join payouts p on t.purpose = 'payout' and p.payout_id = t.ref`,
      )
    ).rows[0];
    // A send signs the wallet's queued intents in one commit (src/pipeline/transfer/sign-batch.ts): the transfers of
    // one commit share its now() as broadcast_at.
    const signing = (
      await database.pool.query<{ commits: number; signed: number; largest: number | null }>(
        `select count(*)::int as commits, coalesce(sum(n), 0)::int as signed, max(n)::int as largest
           from (select count(*) as n from chain_transfers where nonce is not null group by broadcast_at) c`,
      )
    ).rows[0];
    interface PayoutKindRow {
      n: number;
      completed: number;
      with_exchange: number;
      direct: number;
      channels: number;
      amount: string;
      avg_ms: string | null;
      p50_ms: string | null;
      max_ms: string | null;
    }
    // Threshold: batch created -> completed. Instant: payment credited -> payout completed (the owner's wait).
    const payoutKinds = (
      await database.pool.query<PayoutKindRow & { kind: 'threshold' | 'instant' }>(
        `select po.kind, count(*)::int as n, count(*) filter (where po.status = 'completed')::int as completed,
                count(po.exchange_id)::int as with_exchange, count(*) filter (where po.exchange_id is null)::int as direct,
                count(distinct po.channel_id)::int as channels, coalesce(sum(po.amount), 0)::text as amount,
                round(avg(w.ms))::text as avg_ms, round(percentile_cont(0.5) within group (order by w.ms))::text as p50_ms, round(max(w.ms))::text as max_ms
         from payouts po left join payments p on p.payment_id = po.payment_id,
              lateral (select extract(epoch from po.completed_at - coalesce(p.credited_at, po.created_at)) * 1000 as ms) w
         group by po.kind`,
      )
    ).rows;
    const noPayouts: PayoutKindRow = {
      n: 0,
      completed: 0,
      with_exchange: 0,
      direct: 0,
      channels: 0,
      amount: '0',
      avg_ms: null,
      p50_ms: null,
      max_ms: null,
    };
    const thresholdPo = payoutKinds.find((r) => r.kind === 'threshold') ?? noPayouts;
    const instantPo = payoutKinds.find((r) => r.kind === 'instant') ?? noPayouts;
    const sums = (
      await database.pool.query<{
        shared: string;
        received: string;
        eth_net: string;
        eth_sent: string;
        instant_net: string;
        instant_paid: string;
        batched_usdt: string;
        batched_payments: number;
        reserved_left: string;
      }>(
        `select (select coalesce(sum(usdt_amount), 0)::text from payments where user_id = $1 and payout_strategy = 'threshold') as shared,
                (select coalesce(sum(usdt_received), 0)::text from conversions where status = 'completed') as received,
                (select coalesce(sum(net_amount), 0)::text from payments where user_id = $1 and payout_strategy = 'threshold') as eth_net,
                (select coalesce(sum(amount_wei), 0)::text from conversions where status = 'completed') as eth_sent,
                (select coalesce(sum(net_amount), 0)::text from payments where user_id = $1 and payout_strategy = 'instant') as instant_net,
                (select coalesce(sum(amount), 0)::text from payouts where kind = 'instant' and status = 'completed') as instant_paid,
                (select coalesce(sum(p.usdt_amount), 0)::text from payments p join payouts po on po.payout_id = p.payout_id where po.kind = 'threshold') as batched_usdt,
                (select count(*)::int from payments p join payouts po on po.payout_id = p.payout_id where po.kind = 'threshold' and p.user_id = $1) as batched_payments,
                (select coalesce(sum(balance), 0)::text from ledger_accounts where code like 'channel:%:payout') as reserved_left`,
        [userId],
      )
    ).rows[0];
    const onChain = await checkPaidOnChain(database, chain.rpcUrl, usdtContract);
    const ledger = await checkLedger(database.db);
    const costs = await readCosts(database.db);
    const simExchanges = sim.exchanges.size;
    const selfMaxRssKib = process.resourceUsage().maxRSS;

    // -- print
    const n = opts.payments;
    const intakeS = (intake.lastAnsweredAt - intake.firstSentAt) / 1000;
    const totalS = (lastSettledAt - intake.firstSentAt) / 1000;
    const tailS = (lastSettledAt - intake.lastAnsweredAt) / 1000;
    const payoutsS = lastPayoutAt === undefined ? undefined : (lastPayoutAt - intake.firstSentAt) / 1000;
    const perThousand = (count: number, of: number) => (of === 0 ? '-' : fmt((count * 1000) / of, 2));
    const per1000 = (count: number) => perThousand(count, n);
    const usdtShared = BigInt(sums?.shared ?? '0');
    const usdtReceived = BigInt(sums?.received ?? '-1');
    const moneyOk = usdtShared === usdtReceived && BigInt(sums?.eth_net ?? '0') === BigInt(sums?.eth_sent ?? '-1');
    const instantOk = BigInt(sums?.instant_net ?? '0') === BigInt(sums?.instant_paid ?? '-1');
    const batchesOk =
      BigInt(sums?.batched_usdt ?? '0') === BigInt(thresholdPo.amount) && BigInt(sums?.reserved_left ?? '-1') === 0n;
    const usdt = (units: bigint) => `${units / 10n ** 6n}.${(units % 10n ** 6n).toString().padStart(6, '0')}`;
    const payoutCount = thresholdPo.n + instantPo.n;
    const payoutsCompleted = thresholdPo.completed + instantPo.completed;
    const payoutExchanges = thresholdPo.with_exchange + instantPo.with_exchange;
    const allExchanges = (conv?.with_exchange ?? 0) + payoutExchanges;
    const confirmed = (transfers?.conversion ?? 0) + (transfers?.threshold ?? 0) + (transfers?.instant ?? 0);
    const thresholdExchanges = (conv?.with_exchange ?? 0) + thresholdPo.with_exchange;
    const thresholdTransfers = (transfers?.conversion ?? 0) + (transfers?.threshold ?? 0);
    const everyPayoutDone =
      last.completed === thresholdPayments && instantPo.n === instantPayments && payoutsCompleted === payoutCount;
    const exchangesOk = allExchanges === simExchanges;
    // One confirmed transfer per conversion and per payout, and no payout with two transfer rows.
    const transfersOk =
      confirmed === (conv?.total ?? 0) + payoutCount &&
      transfers?.other === 0 &&
      transfers?.payout_rows === payoutCount &&
      transfers?.payout_refs === payoutCount;
    // The cost lines count from the ledger and the rows linked to its journals: they must agree with the counts above.
    const [costsThreshold, costsInstant, ...costsShared] = costs.lines;
    const costCountsOk =
      costsShared.length === 0 &&
      costsThreshold?.payments === thresholdPayments &&
      costsInstant?.payments === instantPayments &&
      costsThreshold.exchanges === thresholdExchanges &&
      costsInstant.exchanges === instantPo.with_exchange &&
      costsThreshold.transfers === thresholdTransfers &&
      costsInstant.transfers === (transfers?.instant ?? 0);
    const instantShare = fmt((instantPayments * 100) / n, 1);
    const lines: string[] = [];
    const out = (text = '') => lines.push(text);
    lines.push(...reportHeader('pipeline', pgInfo, 'embedded, temp dir'));
    out(
      `outside:  anvil (one block per transaction), ChangeNow simulator stepMs 0 (in the bench process), all on 127.0.0.1`,
    );
    out(`payrail:  node bin/payrail.js start (web + worker, one process), CONVERSION_INTERVAL=1m (default)`);
    out(
      `          ${Object.entries(opts.env)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}`,
    );
    out(
      `load:     ${n} payments (new, status finished, 0.00487 ETH each), round-robin over ${opts.channels} threshold channels (thresholds ${THRESHOLD_STEP_USD}..${THRESHOLD_STEP_USD * BigInt(opts.channels)} USD)`,
    );
    out(
      `          and ${opts.instantChannels} instant channels: ${thresholdPayments} threshold payments, ${instantPayments} instant (${instantShare} %);`,
    );
    out(
      `          ${opts.concurrency} IPNs in flight (fetch, keep-alive), bodies pre-signed; after the last IPN, every ${DRAIN_EVERY_MS / 1000} s while payments`,
    );
    out(
      `          are pending and no conversion_batch job is queued or running, the bench queues one (${drainJobs} queued)`,
    );
    out(
      `payouts:  threshold channels alternate USDT on Tron (batch through a USDT -> USDT/TRC-20 exchange) and USDT on Ethereum`,
    );
    out(
      `          (direct ERC-20 transfer); instant channels alternate ETH on Ethereum (direct ETH transfer, no exchange) and USDT on`,
    );
    out(
      `          Tron (ETH -> USDT/TRC-20 exchange). On-chain transfers = the host wallet's (chain_transfers), not ChangeNow's own payouts.`,
    );
    out();
    const ms = (text: string | null) => (text === null ? '-' : fmt(Number(text) / 1000, 2));
    out(
      table(
        ['measure', 'value'],
        [
          [
            'payments/s, first IPN sent -> last payment settled',
            `${fmt(n / totalS, 1)}  (${n} in ${fmt(totalS, 2)} s; settled: converted, or paid out if instant)`,
          ],
          ['intake phase (first IPN sent -> last 200)', `${fmt(intakeS, 2)} s  (${fmt(n / intakeS, 1)} IPN/s)`],
          [
            '  IPN latency p50 / p99 / max',
            `${fmt(percentile(intake.latencies, 50), 1)} / ${fmt(percentile(intake.latencies, 99), 1)} / ${fmt(percentile(intake.latencies, 100), 1)} ms`,
          ],
          ['after intake: last 200 -> last payment settled', `${fmt(tailS, 2)} s`],
          [
            'payouts/s, first IPN sent -> last payout completed',
            payoutsS === undefined
              ? '- (no payout)'
              : `${fmt(payoutCount / payoutsS, 1)}  (${payoutCount} in ${fmt(payoutsS, 2)} s: ${thresholdPo.n} threshold, ${instantPo.n} instant)`,
          ],
          [
            '  after intake: last 200 -> last payout completed',
            lastPayoutAt === undefined ? '-' : `${fmt((lastPayoutAt - intake.lastAnsweredAt) / 1000, 2)} s`,
          ],
          [
            '  instant: payment credited -> paid, avg / p50 / max',
            `${ms(instantPo.avg_ms)} / ${ms(instantPo.p50_ms)} / ${ms(instantPo.max_ms)} s`,
          ],
          [
            '  threshold batch created -> paid, avg / p50 / max',
            `${ms(thresholdPo.avg_ms)} / ${ms(thresholdPo.p50_ms)} / ${ms(thresholdPo.max_ms)} s`,
          ],
          [
            'ChangeNow exchanges, all (simulator counted)',
            `${allExchanges} (${simExchanges})  = ${per1000(allExchanges)} per 1,000 payments`,
          ],
          [
            '  threshold channels (conversions + batches)',
            `${conv?.with_exchange} + ${thresholdPo.with_exchange} = ${thresholdExchanges}  = ${perThousand(thresholdExchanges, thresholdPayments)} per 1,000 threshold payments`,
          ],
          [
            '  instant channels (one per non-direct payout)',
            `${instantPo.with_exchange}  = ${perThousand(instantPo.with_exchange, instantPayments)} per 1,000 instant payments`,
          ],
          ['  replaced system (one exchange per payment)', `${n}  = 1000.00 per 1,000 payments`],
          [
            'on-chain transfers, all (host wallet, confirmed)',
            `${confirmed}  = ${per1000(confirmed)} per 1,000 payments (not confirmed: ${transfers?.other})`,
          ],
          [
            '  threshold channels (conversions + batches)',
            `${transfers?.conversion} + ${transfers?.threshold} = ${thresholdTransfers}  = ${perThousand(thresholdTransfers, thresholdPayments)} per 1,000 threshold payments`,
          ],
          [
            '  instant channels (one per payout)',
            `${transfers?.instant}  = ${perThousand(transfers?.instant ?? 0, instantPayments)} per 1,000 instant payments`,
          ],
          [
            '  one wallet, one signing at a time: intent -> mined',
            `avg ${ms(transfers?.avg_ms ?? null)} / p50 ${ms(transfers?.p50_ms ?? null)} / max ${ms(transfers?.max_ms ?? null)} s; ${transfers?.span_ms ? fmt(confirmed / (Number(transfers.span_ms) / 1000), 1) : '-'} confirmed/s from the first intent to the last`,
          ],
          [
            '  signing commits (a send signs the queued intents)',
            `${signing?.commits} for ${signing?.signed} transfers: ${signing?.commits ? fmt((signing.signed ?? 0) / signing.commits, 1) : '-'} per commit on average, ${signing?.largest ?? '-'} at most`,
          ],
          ['payments per conversion min / avg / max', `${conv?.min_p} / ${conv?.avg_p} / ${conv?.max_p}`],
          [
            'conversions that received < CONVERSION_MIN_USD',
            `${conv?.under_min} (${conv?.under_min_early} before their oldest payment waited CONVERSION_MAX_WAIT)`,
          ],
          ['conversion created -> settled, avg / max', `${conv?.avg_ms} / ${conv?.max_ms} ms`],
          [
            'payout batches (threshold)',
            `${thresholdPo.n} (${thresholdPo.channels} channels, ${usdt(BigInt(thresholdPo.amount))} USDT, ${sums?.batched_payments} payments; ${thresholdPo.with_exchange} via exchange, ${thresholdPo.direct} direct)`,
          ],
          [
            'instant payouts',
            `${instantPo.n} (${instantPo.channels} channels, ${formatUnits(BigInt(instantPo.amount), 18)} ETH; ${instantPo.with_exchange} via exchange, ${instantPo.direct} direct)`,
          ],
          ['peak RSS payrail (VmHWM / sampled VmRSS max)', `${mib(childHwmKib)} / ${mib(memory.peakChildKib)}`],
          [
            'peak RSS bench process (VmHWM / maxRSS)',
            `${mib(selfHwmKib)} / ${mib(selfMaxRssKib)}  (holds the signed bodies, the simulator)`,
          ],
        ],
      ),
    );
    out(`CPU, first IPN -> completion: ${cpuLine(cpuStart, cpuEnd)}`);
    out();
    lines.push(...formatCosts(costs));
    out();
    out('checks:');
    out(
      `  every payment settled, every payout completed:                       ${everyPayoutDone ? 'yes' : 'NO'} (threshold ${last.completed}/${thresholdPayments} converted, conversions ${conv?.completed}/${conv?.total}; instant payouts ${instantPo.n}/${instantPayments}; payouts ${payoutsCompleted}/${payoutCount} completed)`,
    );
    out(
      `  sum threshold payments.usdt_amount == sum conversions.usdt_received: ${usdtShared === usdtReceived ? 'yes' : 'NO'} (${usdt(usdtShared)} vs ${usdt(usdtReceived)} USDT)`,
    );
    out(
      `  sum threshold payments.net_amount == sum conversions.amount_wei:     ${sums?.eth_net === sums?.eth_sent ? 'yes' : 'NO'} (${sums?.eth_net} vs ${sums?.eth_sent} wei)`,
    );
    out(
      `  sum instant payments.net_amount == sum instant payouts paid:         ${instantOk ? 'yes' : 'NO'} (${sums?.instant_net} vs ${sums?.instant_paid} wei)`,
    );
    out(
      `  batches == their payments' USDT, nothing left reserved:              ${batchesOk ? 'yes' : 'NO'} (${usdt(BigInt(sums?.batched_usdt ?? '0'))} vs ${usdt(BigInt(thresholdPo.amount))} USDT; reserved left ${sums?.reserved_left})`,
    );
    for (const u of underMin) {
      const at = (Number(u.at_ms) - intake.firstSentAt) / 1000;
      out(
        `  note: a conversion of ${u.payments} payments (${usdt(BigInt(u.usdt))} USDT, under CONVERSION_MIN_USD) was created at ${fmt(at, 2)} s (${at * 1000 <= intake.lastAnsweredAt - intake.firstSentAt ? 'during intake' : 'after intake'}), its oldest payment had waited ${u.waited_ms} ms`,
      );
    }
    out(
      `  exchanges (conversions + payouts) == simulator's count:              ${exchangesOk ? 'yes' : 'NO'} (${conv?.with_exchange} + ${payoutExchanges} vs ${simExchanges})`,
    );
    out(
      `  one confirmed transfer per conversion and per payout, none other:    ${transfersOk ? 'yes' : 'NO'} (${confirmed} confirmed for ${conv?.total} conversions + ${payoutCount} payouts; payout rows ${transfers?.payout_rows}, payouts with one ${transfers?.payout_refs})`,
    );
    out(
      `  on chain: owners paid directly hold exactly their payouts:           ${onChain.directOk ? 'yes' : 'NO'} (${onChain.directWallets} wallets${onChain.directProblems.length ? `; ${onChain.directProblems.slice(0, 3).join('; ')}` : ''})`,
    );
    out(
      `  on chain: each payout exchange's payin holds exactly its payout:     ${onChain.payinOk ? 'yes' : 'NO'} (${onChain.payins} addresses${onChain.payinProblems.length ? `; ${onChain.payinProblems.slice(0, 3).join('; ')}` : ''})`,
    );
    out(
      `  cost lines (ledger) count the payments, exchanges, transfers above:  ${costCountsOk ? 'yes' : 'NO'} (threshold ${costsThreshold?.payments}/${costsThreshold?.exchanges}/${costsThreshold?.transfers}, instant ${costsInstant?.payments}/${costsInstant?.exchanges}/${costsInstant?.transfers}${costsShared.length ? ', shared costs present' : ''})`,
    );
    lines.push(...ledgerLines(ledger));
    out();
    out(
      `payrail's database sessions, average count by state and wait (sampled every ${WAIT_SAMPLE_MS} ms, ${waits.samples} samples):`,
    );
    for (const line of waits.top(8)) out(`  ${line}`);
    lines.push(...payrail.output.report('payrail output lines (warn and above, plus its start banner)'));
    process.stdout.write(lines.join('\n') + '\n');
    const healthy =
      everyPayoutDone &&
      moneyOk &&
      instantOk &&
      batchesOk &&
      ledger.ok &&
      exchangesOk &&
      transfersOk &&
      costCountsOk &&
      onChain.directOk &&
      onChain.payinOk;
    return healthy ? 0 : 1;
  } finally {
    interruption.release();
    memory?.stop();
    void waits?.stop();
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
    await sim
      ?.stop()
      .catch((error: Error) => process.stderr.write(`stopping the ChangeNow simulator: ${error.message}\n`));
    await chain?.stop().catch((error: Error) => process.stderr.write(`stopping anvil: ${error.message}\n`));
    await pg.close();
  }
}

runBench(main, (error) => {
  if (!(error instanceof Aborted)) return undefined;
  process.stderr.write(`bench aborted: ${error.message}\n(everything it started was stopped and removed)\n`);
  return 1;
});
