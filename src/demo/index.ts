/**
 * `payrail demo`: payrail as `payrail start` runs it on a fresh machine (embedded PostgreSQL, anvil, the ChangeNow
 * and NOWPayments simulators, web and worker in one process), but in a data directory of its own and on free ports, so
 * it never meets a running `npm start`. It registers channels, has a stream of subscribers buy (an invoice from
 * payrail's checkout, paid in the NOWPayments simulator, which sends payrail the signed IPNs), follows each stage until
 * it is done (every payment in a completed payout, or converted and waiting on its channel's balance below the
 * threshold with nothing open for the channel, as the threshold strategy does), prints what happened with the ledger
 * check, and keeps payrail up for its dashboard.
 *
 * Results go to stdout, progress to stderr. Exit codes: 0 done (and checks passed), 1 not done within the time limit,
 * stuck (nothing left that moves on by itself) or a check failed, 64 bad options, 130 interrupted.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { privateKeyToAccount } from 'viem/accounts';
import { startPayrail, type Payrail } from '../app.ts';
import { loadConfig, secretValues, type Config } from '../config.ts';
import { localDevSecrets } from '../dev-secrets.ts';
import { optionsOrExit, UsageError } from '../cli-options.ts';
import { createLogger } from '../log.ts';
import { createChainWallet } from '../integrations/wallet/index.ts';
import {
  DEFAULT_PAIRS,
  freePorts,
  randomSeed,
  Rng,
  type ChangeNowSimulator,
  type NowPaymentsSimulator,
} from '../simulators/index.ts';
import { channelBody, demoChannels, putChannel, type DemoChannel } from './channels.ts';
import { queueConversionCheck } from './ipns.ts';
import { DEMO_USAGE, PURCHASES_PER_SECOND, OUTAGE_SECONDS, readDemoOptions, type DemoOptions } from './options.ts';
import { ProgressDisplay, readCounts, type StageCounts } from './progress.ts';
import {
  buyAll,
  emptyTally,
  planPayments,
  PurchaseError,
  tallyPurchase,
  type BuyOutcome,
  type DeliveryTally,
  type PlannedPayment,
  type Shop,
} from './purchases.ts';
import { explainPending, summarize } from './summary.ts';

/**
 * Purchases under way at once: each is two calls to payrail's checkout at most, the outcome forwarded on the chain and
 * a handful of IPNs, so this many keep up with the pace.
 */
const PURCHASE_CONCURRENCY = 16;
const TICK_MS = 500;
/** On top of the stream's own duration: a default run completes in well under a minute after its last purchase. */
const DEFAULT_TIME_LIMIT_S = 600;
/**
 * How long the run must show nothing pending, converting, in flight or open, yet not be done, before the demo calls it
 * stuck: every state change commits with its job, so one such reading already means it; a few more ticks guard the
 * demo's own reading against a surprise.
 */
const STUCK_AFTER_MS = 3_000;

/**
 * The configuration the demo runs payrail with: its own directory and ports, and the settings it changes from the
 * defaults, each with the reason printed at the start. Nothing is read from the environment: a demo must not pick up
 * a DATABASE_URL or a real ChangeNow key meant for something else.
 */
const DEMO_SETTINGS: ReadonlyArray<[name: string, value: string, why: string]> = [
  ['CONVERSION_MIN_USD', '20', 'default 50: a conversion as soon as ~20 USD of payments wait'],
  ['CONVERSION_MAX_WAIT', '5s', 'default 1h: a remainder below that minimum waits 5 s, not an hour'],
  ['CONVERSION_POLL_INTERVAL', '1s', 'default 15s: exchanges and payouts are looked at every second'],
  ['WORKER_POLL_INTERVAL_MS', '200', 'default 1000: a job scheduled for later starts within 0.2 s'],
  ['WEBHOOK_RATE_LIMIT', '0', 'default 600 per minute per source: every demo IPN comes from one address'],
];

/**
 * Done: every payment credited and either in a completed payout or converted and waiting on its channel's balance
 * below the threshold with nothing pending, converting or open for that channel (a balance below its threshold
 * rightly waits for more money); no payout open.
 */
function isDone(c: StageCounts, payments: number): boolean {
  return c.credited === payments && c.paidOut + c.waiting === payments && c.payoutsOpen === 0;
}

/** Nothing that moves on by itself: no payment pending or converting, no conversion, payout or transfer open, no job queued. */
function isIdle(c: StageCounts): boolean {
  return (
    c.pendingConversion === 0 &&
    c.converting === 0 &&
    c.conversionsOpen === 0 &&
    c.payoutsOpen === 0 &&
    c.transfersOpen === 0 &&
    c.jobsQueued === 0
  );
}

/** What the buyers have done so far, for the progress note. */
interface StreamState {
  /** Every payment but the closing ones was bought. */
  streamDone: boolean;
  /** Purchases begun, closing ones included. */
  started: number;
  /** Closing payments not bought yet. */
  closingLeft: number;
}

interface StreamOutcome extends BuyOutcome {
  /** When the last payment of the stream proper (not a closing one) was paid. */
  streamDoneAt: number;
}

/**
 * The purchases: the stream, paced, then each threshold channel's closing payment once every earlier payment of that
 * channel is converted. Conversions can settle out of order (one created before an outage ends may settle after a
 * later one), so a closing payment converted before an earlier payment would leave that payment's USDT on the channel
 * below its threshold after the closing batch: correct, but not the demo's point. Bought once the channel's payments
 * are converted, its USDT is the channel's last. A payment still waiting for NOWPayments' confirmation has no
 * conversion status yet, so the channel's converted payments are counted, not its unconverted ones.
 */
async function buyStream(
  shop: Shop,
  pool: pg.Pool,
  payments: readonly PlannedPayment[],
  state: StreamState,
  tally: DeliveryTally,
  onStarted: () => void,
  stopped: () => string | undefined,
): Promise<StreamOutcome> {
  const onPurchase = (purchase: Parameters<typeof tallyPurchase>[1]) => tallyPurchase(tally, purchase);
  const onStart = () => {
    state.started += 1;
    onStarted();
  };
  const stream = payments.filter((p) => !p.closing);
  let closing = payments.filter((p) => p.closing);
  const earlier = new Map<string, number>();
  for (const p of stream)
    if (p.channel.strategy === 'threshold') earlier.set(p.channel.id, (earlier.get(p.channel.id) ?? 0) + 1);
  state.closingLeft = closing.length;
  const first = await buyAll(shop, stream, {
    concurrency: PURCHASE_CONCURRENCY,
    perSecond: PURCHASES_PER_SECOND,
    stopped,
    onStart,
    onPurchase,
  });
  state.streamDone = true;
  let lastDoneAt = first.lastDoneAt;
  while (closing.length > 0) {
    const reason = stopped();
    if (reason !== undefined) throw new PurchaseError(`${closing.length} closing purchases were not made: ${reason}`);
    const { rows } = await pool.query<{ channel_id: string; converted: number }>(
      `select channel_id, count(*)::int as converted from payments where conversion_status = 'completed' group by 1`,
    );
    const converted = new Map(rows.map((r) => [r.channel_id, r.converted]));
    const ready = closing.filter((c) => (converted.get(c.channel.id) ?? 0) >= (earlier.get(c.channel.id) ?? 0));
    if (ready.length === 0) {
      await new Promise((resolve) => setTimeout(resolve, TICK_MS));
      continue;
    }
    const outcome = await buyAll(shop, ready, { concurrency: PURCHASE_CONCURRENCY, stopped, onStart, onPurchase });
    lastDoneAt = outcome.lastDoneAt;
    closing = closing.filter((c) => !ready.includes(c));
    state.closingLeft = closing.length;
  }
  return { firstStartedAt: first.firstStartedAt, streamDoneAt: first.lastDoneAt, lastDoneAt };
}

/** What the demo drives: payrail's URL and database, and the simulators and chain of its local run. */
interface DemoWorld {
  readonly url: string;
  readonly pool: pg.Pool;
  readonly simulator: ChangeNowSimulator;
  readonly nowpayments: NowPaymentsSimulator;
  readonly rpcUrl: string;
  readonly host: `0x${string}`;
}

function demoWorld(payrail: Payrail, config: Config): DemoWorld {
  const simulator = payrail.outside?.simulator;
  if (!simulator) throw new Error('the local run has no ChangeNow simulator');
  const nowpayments = payrail.outside?.nowpayments;
  if (!nowpayments) throw new Error('the local run has no NOWPayments simulator (NOWPAYMENTS_API_KEY unset?)');
  const rpcUrl = payrail.outside?.rpcUrl;
  if (!rpcUrl) throw new Error('the local run has no chain');
  return {
    url: payrail.url as string,
    pool: payrail.database.pool,
    simulator,
    nowpayments,
    rpcUrl,
    host: privateKeyToAccount(config.HOST_WALLET_PRIVATE_KEY).address,
  };
}

interface Outage {
  startedAt: number;
  /** 0 while ChangeNow is down. */
  endedAt: number;
}

/** One run of purchases as the demo follows it: what the buyers did, the outage, and when it must end. */
interface DemoRun {
  readonly payments: readonly PlannedPayment[];
  readonly totals: { payments: number; thresholdPayments: number };
  readonly tally: DeliveryTally;
  readonly stream: StreamState;
  readonly progress: ProgressDisplay;
  readonly startedAt: number;
  readonly timeLimitS: number;
  readonly deadline: number;
  /** Purchases started before ChangeNow goes down (with --outage). */
  readonly outageAfter: number;
  sent?: StreamOutcome;
  sendError?: Error;
  /** Set when the run ends early (time limit, a blocked payout): the rest of the purchases are not made. */
  halted: boolean;
  outage?: Outage;
  /** Ends the current tick's sleep at once (an interrupt, the outage's moment). */
  wake: () => void;
}

function outageEnd(outage: Outage): number {
  return outage.startedAt + OUTAGE_SECONDS * 1000;
}

async function endOutage(world: DemoWorld, outage: Outage): Promise<void> {
  await world.simulator.setFault('none');
  outage.endedAt = Date.now();
}

class DemoFailure extends Error {
  override name = 'DemoFailure';
}

export async function runDemo(argv: string[]): Promise<number> {
  const start = optionsOrExit(() => readDemoOptions(argv, randomSeed), DEMO_USAGE, 'payrail demo: ');
  if ('exitCode' in start) return start.exitCode;
  const { options } = start;
  let dataDir: { dir: string; temporary: boolean };
  try {
    dataDir = prepareDataDir(options.dataDir);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`payrail demo: ${error.message}\n`);
    return 64;
  }
  return new Demo(options, dataDir.dir, dataDir.temporary).run();
}

/** A new temp dir, or the one given if it is new or empty: the demo's figures are about its own run only. */
function prepareDataDir(given: string | undefined): { dir: string; temporary: boolean } {
  if (given === undefined) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'payrail-demo-'));
    // As root the embedded PostgreSQL runs as its own user, which must reach the cluster inside.
    fs.chmodSync(dir, 0o755);
    return { dir, temporary: true };
  }
  const dir = path.resolve(given);
  if (fs.existsSync(dir)) {
    if (!fs.statSync(dir).isDirectory()) throw new UsageError(`--data-dir ${dir} is not a directory`);
    if (fs.readdirSync(dir).length > 0)
      throw new UsageError(
        `--data-dir ${dir} is not empty: the demo starts from a fresh database (give a new or empty directory)`,
      );
  }
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  return { dir, temporary: false };
}

interface DemoPorts {
  web: number;
  postgres: number;
  chain: number;
  changenow: number;
  nowpayments: number;
}

async function demoPorts(): Promise<DemoPorts> {
  const [web, postgres, chain, changenow, nowpayments] = (await freePorts(5)) as [
    number,
    number,
    number,
    number,
    number,
  ];
  return { web, postgres, chain, changenow, nowpayments };
}

class Demo {
  private interrupted = false;
  private onInterrupt: () => void = () => undefined;
  private readonly out = (text = '') => process.stdout.write(`${text}\n`);

  constructor(
    private readonly options: DemoOptions,
    private readonly dataDir: string,
    private readonly temporary: boolean,
  ) {}

  async run(): Promise<number> {
    const ports = await demoPorts();
    const config = this.loadDemoConfig(ports);
    const logFile = path.join(this.dataDir, 'payrail.log');
    const logStream = fs.createWriteStream(logFile, { flags: 'a' });
    const logger = createLogger({ level: config.LOG_LEVEL, secrets: secretValues(config), destination: logStream });
    const stopListening = this.listenForSignals();
    this.header(ports, logFile);
    let payrail: Payrail | undefined;
    let code = 1;
    try {
      payrail = await this.startPayrail(config, logger);
      code = await this.drive(payrail, config);
      if (code === 0 && !this.options.exit) code = await this.keepRunning(payrail, config);
    } catch (error) {
      code = this.failureCode(error);
    } finally {
      await this.shutDown(payrail, logStream, stopListening, code);
    }
    return code;
  }

  private loadDemoConfig(ports: DemoPorts): Config {
    const env: Record<string, string> = {
      PAYRAIL_DATA_DIR: this.dataDir,
      HOST: '127.0.0.1',
      PORT: String(ports.web),
      EMBEDDED_PG_PORT: String(ports.postgres),
      LOCAL_CHAIN_PORT: String(ports.chain),
      LOCAL_CHANGENOW_PORT: String(ports.changenow),
      LOCAL_NOWPAYMENTS_PORT: String(ports.nowpayments),
      LOG_LEVEL: 'info',
      ...Object.fromEntries(DEMO_SETTINGS.map(([name, value]) => [name, value])),
    };
    return loadConfig(env, {
      devSecrets: (missing) => localDevSecrets(this.dataDir, missing, { announce: false }),
    });
  }

  /** The first Ctrl-C (or SIGTERM) ends the run in order; a second exits at once. Returns how to stop listening. */
  private listenForSignals(): () => void {
    const signals = () => {
      if (this.interrupted) {
        process.stderr.write('\ninterrupted twice: exiting at once (the embedded PostgreSQL may be left running)\n');
        process.exit(130);
      }
      this.interrupted = true;
      this.onInterrupt();
    };
    process.on('SIGINT', signals);
    process.on('SIGTERM', signals);
    return () => {
      process.off('SIGINT', signals);
      process.off('SIGTERM', signals);
    };
  }

  private async startPayrail(config: Config, logger: ReturnType<typeof createLogger>): Promise<Payrail> {
    process.stderr.write('starting payrail (embedded PostgreSQL, anvil, ChangeNow and NOWPayments simulators) ...\n');
    const startingAt = Date.now();
    const payrail = await startPayrail(config, { web: true, worker: true }, logger);
    process.stderr.write(`payrail started in ${((Date.now() - startingAt) / 1000).toFixed(1)} s at ${payrail.url}\n`);
    return payrail;
  }

  /** Says why the run ended early; returns its exit code. */
  private failureCode(error: unknown): number {
    if (error instanceof DemoFailure) {
      process.stderr.write(`\npayrail demo: ${error.message}\n`);
      return this.interrupted ? 130 : 1;
    }
    process.stderr.write(`\npayrail demo failed: ${(error as Error).stack ?? String(error)}\n`);
    return 1;
  }

  /** Stops payrail and the log; keeps the data of a run that failed (or was given its directory), else removes it. */
  private async shutDown(
    payrail: Payrail | undefined,
    logStream: fs.WriteStream,
    stopListening: () => void,
    code: number,
  ): Promise<void> {
    if (payrail) {
      process.stderr.write('stopping payrail ...\n');
      await payrail.stop().catch((error: Error) => process.stderr.write(`stopping payrail: ${error.message}\n`));
    }
    await new Promise<void>((resolve) => logStream.end(resolve));
    stopListening();
    const keep = !this.temporary || (code !== 0 && code !== 130);
    if (keep) {
      process.stderr.write(
        `data kept in ${this.dataDir} (payrail.log, the database)${this.temporary ? '; remove it when done' : ''}\n`,
      );
    } else {
      fs.rmSync(this.dataDir, { recursive: true, force: true });
    }
  }

  private header(ports: DemoPorts, logFile: string): void {
    const o = this.options;
    this.out(
      `payrail demo: ${o.payments} payments over ${o.channels} channels, seed ${o.seed}${o.seedGiven ? '' : ` (repeat this run with --seed ${o.seed})`}${o.outage ? `, a ${OUTAGE_SECONDS} s ChangeNow outage in the middle` : ''}`,
    );
    this.out(
      `  data      ${this.dataDir} (${this.temporary ? 'temporary: removed at exit' : 'kept'}); payrail's log: ${logFile}`,
    );
    this.out(
      `  ports     web ${ports.web}, PostgreSQL ${ports.postgres}, anvil ${ports.chain}, ChangeNow simulator ${ports.changenow}, NOWPayments simulator ${ports.nowpayments} (free ports: a running npm start is not touched)`,
    );
    this.out(
      "  NOWPayments  the simulator, with the run's generated NOWPAYMENTS_API_KEY and NOWPAYMENTS_IPN_SECRET, as `payrail start` has it:",
    );
    this.out(
      '            payrail creates invoices there and confirms every credit with it; it signs the IPNs and sends them to the address checkout',
    );
    this.out("            gave it, payrail's own (PUBLIC_URL is unset: payrail and the simulator share this machine)");
    this.out(
      '  settings  changed from the defaults so that payouts happen within seconds (payrail is otherwise as `payrail start` runs it):',
    );
    for (const [name, value, why] of DEMO_SETTINGS) this.out(`              ${`${name}=${value}`.padEnd(30)} ${why}`);
    this.out(
      "            and while payments wait, the demo queues a conversion check every second, as intake's nudge does (payrail's own",
    );
    this.out('            cron looks every CONVERSION_INTERVAL, 1 minute at least)');
  }

  /** Channels, the purchases, the outage, progress until every payout has completed, then the summary. */
  private async drive(payrail: Payrail, config: Config): Promise<number> {
    const world = demoWorld(payrail, config);
    const rng = new Rng(this.options.seed);
    const channels = demoChannels(rng, this.options.channels);
    for (const channel of channels) await putChannel(world.url, config.ADMIN_TOKEN, channel.id, channelBody(channel));
    this.printChannels(channels);
    const payments = planPayments(rng, channels, this.options.payments);
    this.printPurchasePlan(payments.length);
    const run = this.beginRun(payments);
    await this.buyAndFollow(world, config, run);
    return this.report(payrail, config, world, run);
  }

  private printPurchasePlan(payments: number): void {
    const ethUsd = (DEFAULT_PAIRS['eth/eth->usdt/eth'] as { rate: string }).rate;
    this.out();
    this.out(
      `${payments} subscribers buy, ${PURCHASES_PER_SECOND} a second, as on the platform: payrail's checkout creates each invoice (POST /api/invoices`,
    );
    this.out(
      `with an Idempotency-Key), the subscriber pays it in the NOWPayments simulator (${ethUsd} USD/ETH, the ChangeNow simulator's rate),`,
    );
    this.out(
      `which forwards the outcome to the host wallet and sends the signed IPNs (waiting, confirming, finished; some resent, some late)`,
    );
    this.out(
      `to payrail's webhook; payrail credits each payment once NOWPayments' API (GET /v1/payment/{id}) confirms it.`,
    );
    this.out(
      `The last payment of each threshold channel is an annual plan above its threshold, bought once the channel's earlier payments`,
    );
    this.out(
      `are converted, so every payment ends paid out; a payment converted after it would wait below the threshold, as the strategy does.`,
    );
  }

  private beginRun(payments: readonly PlannedPayment[]): DemoRun {
    const totals = {
      payments: payments.length,
      thresholdPayments: payments.filter((p) => p.channel.strategy === 'threshold').length,
    };
    const startedAt = Date.now();
    const timeLimitS =
      this.options.timeLimitS ?? DEFAULT_TIME_LIMIT_S + Math.ceil(payments.length / PURCHASES_PER_SECOND);
    const stream: StreamState = {
      streamDone: false,
      started: 0,
      closingLeft: payments.filter((p) => p.closing).length,
    };
    return {
      payments,
      totals,
      tally: emptyTally(),
      stream,
      progress: new ProgressDisplay(process.stderr, totals, process.stderr.isTTY === true),
      startedAt,
      timeLimitS,
      deadline: startedAt + timeLimitS * 1000,
      // Halfway through the stream proper (the closing payments come after it), counted in purchases started, not in
      // time: a busy machine may buy slower than the pace, and the second half must still meet the outage.
      outageAfter: Math.ceil((payments.length - stream.closingLeft) / 2),
      halted: false,
      wake: () => undefined,
    };
  }

  /** The purchases run in the background while the demo follows payrail's stages until done, or fails the run. */
  private async buyAndFollow(world: DemoWorld, config: Config, run: DemoRun): Promise<void> {
    const shop: Shop = {
      payrailUrl: world.url,
      adminToken: config.ADMIN_TOKEN,
      nowpaymentsUrl: world.nowpayments.url,
      seed: this.options.seed,
    };
    this.onInterrupt = () => run.wake();
    const onStarted = () => {
      if (this.options.outage && run.outage === undefined && run.stream.started === run.outageAfter) run.wake();
    };
    const sending = buyStream(shop, world.pool, run.payments, run.stream, run.tally, onStarted, () =>
      this.interrupted ? 'interrupted' : run.halted ? 'the demo stopped' : undefined,
    ).then(
      (outcome) => void (run.sent = outcome),
      (error: Error) => void (run.sendError = error),
    );
    try {
      const counts = await this.followUntilDone(world, run);
      const final =
        counts.waiting === 0
          ? 'done: every payment paid out, every payout completed'
          : `done: ${counts.paidOut} paid out, ${counts.waiting} converted and waiting below their channel's threshold; every payout completed`;
      run.progress.update(counts, Date.now() - run.startedAt, final, true);
    } finally {
      run.halted = true;
      await sending;
      if (run.outage && run.outage.endedAt === 0) await endOutage(world, run.outage);
    }
  }

  /** One tick at a time: moves the outage on, shows progress, and returns the counts once done; throws what ends it. */
  private async followUntilDone(world: DemoWorld, run: DemoRun): Promise<StageCounts> {
    let stuckSince: number | undefined;
    for (;;) {
      if (this.outageDue(run)) {
        await world.simulator.setFault('down');
        run.outage = { startedAt: Date.now(), endedAt: 0 };
      }
      if (run.outage && run.outage.endedAt === 0 && Date.now() >= outageEnd(run.outage))
        await endOutage(world, run.outage);
      const counts = await readCounts(world.pool);
      const note = this.note(counts, run.sent !== undefined, run.stream, run.outage);
      run.progress.update(counts, Date.now() - run.startedAt, note);
      if (this.interrupted) throw new DemoFailure('interrupted');
      if (run.sendError)
        throw new DemoFailure(
          run.sendError instanceof PurchaseError
            ? run.sendError.message
            : `the purchases failed: ${run.sendError.message}`,
        );
      const outageOver = !run.outage || run.outage.endedAt > 0;
      if (run.sent !== undefined && outageOver && isDone(counts, run.totals.payments)) return counts;
      // Idle (nothing that moves on by itself) while every purchase is made and ChangeNow is up, yet not done: stuck.
      stuckSince = run.sent !== undefined && outageOver && isIdle(counts) ? (stuckSince ?? Date.now()) : undefined;
      await this.failIfCannotFinish(world, run, counts, stuckSince === undefined ? 0 : Date.now() - stuckSince);
      if (counts.pendingConversion > 0) await queueConversionCheck(world.pool);
      await this.sleepTick(run);
    }
  }

  /** The outage starts once half the stream has begun (and only with --outage, and once). */
  private outageDue(run: DemoRun): boolean {
    return this.options.outage && run.outage === undefined && run.stream.started >= run.outageAfter;
  }

  private async failIfCannotFinish(world: DemoWorld, run: DemoRun, counts: StageCounts, idleMs: number): Promise<void> {
    const stillOpen = async () =>
      (await explainPending(world.pool, run.totals.payments, run.stream.closingLeft)).join('\n');
    const blocked = this.blocked(counts, run.sent !== undefined, run.totals.payments, idleMs);
    if (blocked) throw new DemoFailure(`${blocked}. Still open, from the tables:\n${await stillOpen()}`);
    if (Date.now() > run.deadline) {
      throw new DemoFailure(
        `the time limit of ${run.timeLimitS} s passed before every payout completed. Still open, from the tables:\n${await stillOpen()}`,
      );
    }
  }

  /** The next tick, or the outage's start (at once: half the stream has begun) or end if sooner; an interrupt wakes it. */
  private sleepTick(run: DemoRun): Promise<void> {
    const outageDue = this.outageDue(run)
      ? 0
      : run.outage && run.outage.endedAt === 0
        ? outageEnd(run.outage)
        : Infinity;
    return new Promise<void>((resolve) => {
      run.wake = resolve;
      setTimeout(resolve, Math.max(0, Math.min(TICK_MS, outageDue - Date.now())));
    });
  }

  private async report(payrail: Payrail, config: Config, world: DemoWorld, run: DemoRun): Promise<number> {
    const { sent, outage } = run;
    const elapsedS = ((Date.now() - run.startedAt) / 1000).toFixed(1);
    const intake = sent
      ? `the stream took ${((sent.streamDoneAt - sent.firstStartedAt) / 1000).toFixed(1)} s, the last closing payment was paid at ${((sent.lastDoneAt - sent.firstStartedAt) / 1000).toFixed(1)} s`
      : 'the purchases were not all made';
    const summary = await summarize(payrail.database.db, world.pool, {
      plannedPayments: run.payments.length,
      purchases: run.tally,
      nowpaymentsApiCalls: world.nowpayments.calls(),
      simulatorExchanges: world.simulator.exchanges.size,
      chain: {
        wallet: createChainWallet({
          rpcUrl: world.rpcUrl,
          address: world.host,
          chainId: payrail.outside?.chainId ?? config.CHAIN_ID,
          timeoutMs: 15_000,
        }),
        usdtContract: payrail.outside?.usdtContract,
      },
      ...(outage && { outage }),
    });
    this.out();
    const outcome =
      summary.waiting === 0
        ? `every payment paid out (${summary.paidOut})`
        : `paid out ${summary.paidOut}; ${summary.waiting} converted and waiting below their channel's threshold, as the threshold strategy does`;
    this.out(
      `== summary: done ${elapsedS} s after the first purchase (${intake}): ${outcome}; every payout completed ==`,
    );
    this.out();
    for (const line of summary.lines) this.out(line);
    this.out();
    this.out(`dashboard  ${world.url}/  (web role of this payrail; admin token: ${config.ADMIN_TOKEN})`);
    this.out(`API        curl -H 'authorization: Bearer ${config.ADMIN_TOKEN}' ${world.url}/api/payouts`);
    if (!summary.ok) {
      process.stderr.write('\npayrail demo: a check above failed (NO or ledger BROKEN)\n');
      return 1;
    }
    return 0;
  }

  private printChannels(channels: readonly DemoChannel[]): void {
    this.out();
    this.out(
      `registered ${channels.length} channels (PUT /api/channels/:id with the admin token), each owner with a fresh wallet:`,
    );
    for (const c of channels) {
      const threshold = c.thresholdCents === undefined ? 'instant' : `threshold ${c.thresholdCents / 100n} USD`;
      this.out(`  ${c.id}  ${threshold.padEnd(18)} ${c.route.padEnd(52)} ${c.walletAddress}`);
    }
  }

  private note(
    c: StageCounts,
    streamDone: boolean,
    stream: StreamState,
    outage: { startedAt: number; endedAt: number } | undefined,
  ): string {
    if (outage && outage.endedAt === 0) {
      const left = Math.max(0, Math.ceil((outage.startedAt + OUTAGE_SECONDS * 1000 - Date.now()) / 1000));
      return `ChangeNow DOWN (--outage, back in ${left} s): invoices are still created and paid, IPNs answered and recorded; exchanges wait and retry`;
    }
    if (outage)
      return `ChangeNow back up after ${((outage.endedAt - outage.startedAt) / 1000).toFixed(0)} s down: the waiting jobs retry and catch up`;
    if (this.options.outage) return 'subscribers buying; ChangeNow goes down once half of them have begun';
    if (stream.streamDone && stream.closingLeft > 0)
      return `stream bought; ${stream.closingLeft} closing payments wait until their channel's earlier payments are converted`;
    if (!streamDone) return 'subscribers buying: invoice from checkout, paid in the NOWPayments simulator';
    if (c.credited < this.options.payments)
      return 'every invoice paid; crediting as NOWPayments confirms, converting and paying out';
    if (c.pendingConversion > 0 || c.converting > 0) return 'every payment credited; converting and paying out';
    return 'every payment credited; paying out';
  }

  /**
   * Why the run cannot complete without a person, or undefined while it still can. `idleMs`: how long the run has
   * shown nothing pending, converting, in flight or open (no job queued either) with every purchase made and ChangeNow
   * up, yet not done: nothing moves it on any more, and waiting for the time limit would only delay the same diagnosis.
   */
  private blocked(c: StageCounts, streamDone: boolean, payments: number, idleMs: number): string | undefined {
    if (c.payoutsBlocked > 0)
      return `${c.payoutsBlocked} payouts failed, need review, approval, or were cancelled: they do not complete on their own`;
    if (c.conversionsBlocked > 0) return `${c.conversionsBlocked} conversions need review`;
    if (c.paymentsInReview > 0) return `${c.paymentsInReview} payments are in review`;
    // A payout below ChangeNow's minimum waits an hour for more money; with nothing left to convert, none comes.
    if (c.payoutsHeld > 0 && streamDone && c.pendingConversion === 0 && c.converting === 0)
      return `${c.payoutsHeld} payouts are held (below ChangeNow's minimum, or a wallet change hold)`;
    if (idleMs >= STUCK_AFTER_MS) {
      const rest = payments - c.paidOut - c.waiting;
      return `stuck: nothing pending, converting, in flight or open for ${(idleMs / 1000).toFixed(1)} s, yet ${rest} of ${payments} payments are neither paid out nor waiting below their channel's threshold (${c.credited} credited, ${c.paidOut} paid out, ${c.waiting} waiting): nothing moves them on`;
    }
    return undefined;
  }

  /** The dashboard stays up until Ctrl-C (or SIGTERM). */
  private async keepRunning(payrail: Payrail, config: Config): Promise<number> {
    this.out();
    this.out(
      `payrail keeps running for the dashboard: open ${payrail.url}/ and paste the admin token ${config.ADMIN_TOKEN}`,
    );
    this.out('Ctrl-C to stop (add --exit to end after the summary)');
    if (!this.interrupted) await new Promise<void>((resolve) => (this.onInterrupt = resolve));
    return 0;
  }
}
