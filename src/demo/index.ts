/**
 * `payrail demo`: payrail as `payrail start` runs it on a fresh machine (embedded PostgreSQL, anvil, the ChangeNow
 * simulator, web and worker in one process), but in a data directory of its own and on free ports, so it never meets
 * a running `npm start`. It registers channels, sends a stream of signed IPNs, follows each stage until it is done
 * (every payment in a completed payout, or converted and waiting on its channel's balance below the threshold with
 * nothing open for the channel, as the threshold strategy does), prints what happened with the ledger check, and keeps
 * payrail up for its dashboard.
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
import { createLogger } from '../log.ts';
import { createChainWallet } from '../integrations/wallet/index.ts';
import { DEFAULT_PAIRS, freePorts, randomSeed, Rng, startChainSender } from '../simulators/index.ts';
import { channelBody, demoChannels, putChannel, type DemoChannel } from './channels.ts';
import {
  ethAmounts,
  finishedIpnBody,
  IpnSendError,
  planPayments,
  queueConversionCheck,
  sendIpns,
  signIpnBody,
  type PlannedPayment,
  type SendOutcome,
  type SignedIpn,
} from './ipns.ts';
import {
  DEMO_USAGE,
  DemoUsageError,
  IPNS_PER_SECOND,
  OUTAGE_SECONDS,
  readDemoOptions,
  type DemoOptions,
} from './options.ts';
import { ProgressDisplay, readCounts, type StageCounts } from './progress.ts';
import { explainPending, summarize } from './summary.ts';

const IPN_CONCURRENCY = 4;
const TICK_MS = 500;
/** On top of the stream's own duration: a default run completes in well under a minute after its last IPN. */
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
 * Done: every payment received and either in a completed payout or converted and waiting on its channel's balance
 * below the threshold with nothing pending, converting or open for that channel (a balance below its threshold
 * rightly waits for more money); no payout open.
 */
function isDone(c: StageCounts, payments: number): boolean {
  return c.received === payments && c.paidOut + c.waiting === payments && c.payoutsOpen === 0;
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

/** What the sender has done so far, for the progress note. */
interface StreamState {
  /** Every payment but the closing ones was sent and answered. */
  streamSent: boolean;
  /** Closing payments not sent yet. */
  closingLeft: number;
}

interface StreamOutcome extends SendOutcome {
  /** When the last payment of the stream proper (not a closing one) was answered. */
  streamAnsweredAt: number;
}

/**
 * The IPNs: the stream, paced, then each threshold channel's closing payment once none of that channel's payments is
 * pending or converting. Conversions can settle out of order (one created before an outage ends may settle after a
 * later one), so a closing payment converted before an earlier payment would leave that payment's USDT on the channel
 * below its threshold after the closing batch: correct, but not the demo's point. Sent once the channel's payments are
 * converted, its USDT is the channel's last.
 */
async function sendStream(
  url: string,
  pool: pg.Pool,
  payments: readonly PlannedPayment[],
  bodies: readonly SignedIpn[],
  state: StreamState,
  stopped: () => string | undefined,
): Promise<StreamOutcome> {
  const streamBodies = bodies.filter((_, i) => !payments[i]?.closing);
  let closing = payments.flatMap((p, i) =>
    p.closing ? [{ channelId: p.channel.id, body: bodies[i] as SignedIpn }] : [],
  );
  state.closingLeft = closing.length;
  const first = await sendIpns(url, streamBodies, {
    concurrency: IPN_CONCURRENCY,
    perSecond: IPNS_PER_SECOND,
    stopped,
  });
  state.streamSent = true;
  const latencies = [...first.latencies];
  let lastAnsweredAt = first.lastAnsweredAt;
  while (closing.length > 0) {
    const reason = stopped();
    if (reason !== undefined) throw new IpnSendError(`${closing.length} closing IPNs were not sent: ${reason}`);
    const { rows } = await pool.query<{ channel_id: string }>(
      `select distinct channel_id from payments where conversion_status in ('pending', 'converting')`,
    );
    const unconverted = new Set(rows.map((r) => r.channel_id));
    const ready = closing.filter((c) => !unconverted.has(c.channelId));
    if (ready.length === 0) {
      await new Promise((resolve) => setTimeout(resolve, TICK_MS));
      continue;
    }
    const outcome = await sendIpns(
      url,
      ready.map((c) => c.body),
      { concurrency: IPN_CONCURRENCY, stopped },
    );
    latencies.push(...outcome.latencies);
    lastAnsweredAt = outcome.lastAnsweredAt;
    closing = closing.filter((c) => !ready.includes(c));
    state.closingLeft = closing.length;
  }
  return {
    firstSentAt: first.firstSentAt,
    streamAnsweredAt: first.lastAnsweredAt,
    lastAnsweredAt,
    latencies: Float64Array.from(latencies).sort(),
  };
}

class DemoFailure extends Error {
  override name = 'DemoFailure';
}

export async function runDemo(argv: string[]): Promise<number> {
  let options: DemoOptions | undefined;
  try {
    options = readDemoOptions(argv, randomSeed);
  } catch (error) {
    if (!(error instanceof DemoUsageError)) throw error;
    process.stderr.write(`payrail demo: ${error.message}\n\n${DEMO_USAGE}`);
    return 64;
  }
  if (!options) {
    process.stdout.write(DEMO_USAGE);
    return 0;
  }
  let dataDir: { dir: string; temporary: boolean };
  try {
    dataDir = prepareDataDir(options.dataDir);
  } catch (error) {
    if (!(error instanceof DemoUsageError)) throw error;
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
    if (!fs.statSync(dir).isDirectory()) throw new DemoUsageError(`--data-dir ${dir} is not a directory`);
    if (fs.readdirSync(dir).length > 0)
      throw new DemoUsageError(
        `--data-dir ${dir} is not empty: the demo starts from a fresh database (give a new or empty directory)`,
      );
  }
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  return { dir, temporary: false };
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
    const [web, postgres, chain, changenow, nowpayments] = (await freePorts(5)) as [
      number,
      number,
      number,
      number,
      number,
    ];
    const ports = { web, postgres, chain, changenow, nowpayments };
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
    const config = loadConfig(env, {
      devSecrets: (missing) => localDevSecrets(this.dataDir, missing, { announce: false }),
    });
    const logFile = path.join(this.dataDir, 'payrail.log');
    const logStream = fs.createWriteStream(logFile, { flags: 'a' });
    const logger = createLogger({ level: config.LOG_LEVEL, secrets: secretValues(config), destination: logStream });

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

    this.header(ports, logFile);
    let payrail: Payrail | undefined;
    let code = 1;
    let keep = !this.temporary;
    try {
      process.stderr.write('starting payrail (embedded PostgreSQL, anvil, ChangeNow simulator) ...\n');
      const startingAt = Date.now();
      payrail = await startPayrail(config, { web: true, worker: true }, logger);
      process.stderr.write(`payrail started in ${((Date.now() - startingAt) / 1000).toFixed(1)} s at ${payrail.url}\n`);
      code = await this.drive(payrail, config);
      if (code === 0 && !this.options.exit) code = await this.keepRunning(payrail, config);
    } catch (error) {
      if (error instanceof DemoFailure) {
        process.stderr.write(`\npayrail demo: ${error.message}\n`);
        code = this.interrupted ? 130 : 1;
      } else {
        process.stderr.write(`\npayrail demo failed: ${(error as Error).stack ?? String(error)}\n`);
        code = 1;
      }
    } finally {
      if (payrail) {
        process.stderr.write('stopping payrail ...\n');
        await payrail.stop().catch((error: Error) => process.stderr.write(`stopping payrail: ${error.message}\n`));
      }
      await new Promise<void>((resolve) => logStream.end(resolve));
      process.off('SIGINT', signals);
      process.off('SIGTERM', signals);
      if (code !== 0 && code !== 130) keep = true;
      if (keep) {
        process.stderr.write(
          `data kept in ${this.dataDir} (payrail.log, the database)${this.temporary ? '; remove it when done' : ''}\n`,
        );
      } else {
        fs.rmSync(this.dataDir, { recursive: true, force: true });
      }
    }
    return code;
  }

  private header(ports: Record<string, number>, logFile: string): void {
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
      '  settings  changed from the defaults so that payouts happen within seconds (payrail is otherwise as `payrail start` runs it):',
    );
    for (const [name, value, why] of DEMO_SETTINGS) this.out(`              ${`${name}=${value}`.padEnd(30)} ${why}`);
    this.out(
      "            and while payments wait, the demo queues a conversion check every second, as intake's nudge does (payrail's own",
    );
    this.out('            cron looks every CONVERSION_INTERVAL, 1 minute at least)');
  }

  /** Channels, the IPN stream, the outage, progress until every payout has completed, then the summary. */
  private async drive(payrail: Payrail, config: Config): Promise<number> {
    const url = payrail.url as string;
    const pool = payrail.database.pool;
    const simulator = payrail.outside?.simulator;
    if (!simulator) throw new Error('the local run has no ChangeNow simulator');
    const rng = new Rng(this.options.seed);

    const channels = demoChannels(rng, this.options.channels);
    for (const channel of channels) await putChannel(url, config.ADMIN_TOKEN, channel.id, channelBody(channel));
    this.printChannels(channels);

    const payments = planPayments(rng, channels, this.options.payments);
    const ethUsd = (DEFAULT_PAIRS['eth/eth->usdt/eth'] as { rate: string }).rate;
    const now = new Date();
    const bodies = payments.map((p) =>
      signIpnBody(p.paymentId, finishedIpnBody(p, ethUsd, now), config.NOWPAYMENTS_IPN_SECRET),
    );
    // NOWPayments knows every payment it sends an IPN for: the local run credits each once its simulator confirms it.
    const nowpaymentsSim = payrail.outside?.nowpayments;
    if (nowpaymentsSim) for (const b of bodies) nowpaymentsSim.addPayment(b.raw);
    // NOWPayments forwards each payment's outcome to the host wallet before it sends `finished`: on the local chain too,
    // so the host wallet holds what the ledger credits and the summary can compare ledger and chain.
    const rpcUrl = payrail.outside?.rpcUrl;
    if (!rpcUrl) throw new Error('the local run has no chain');
    const host = privateKeyToAccount(config.HOST_WALLET_PRIVATE_KEY).address;
    const nowpayments = await startChainSender(rpcUrl);
    for (const p of payments) await nowpayments.send(host, ethAmounts(p.priceCents, ethUsd).outcomeWei);
    const totals = {
      payments: payments.length,
      thresholdPayments: payments.filter((p) => p.channel.strategy === 'threshold').length,
    };
    this.out();
    this.out(
      `sending ${payments.length} signed finished IPNs to ${url}/webhooks/nowpayments, ${IPNS_PER_SECOND} a second (priced at ${ethUsd} USD/ETH, the simulator's rate;`,
    );
    this.out(
      `the last payment of each threshold channel is an annual plan above its threshold, sent once the channel's earlier payments`,
    );
    this.out(
      `are converted, so every payment ends paid out; a payment converted after it would wait below the threshold, as the strategy does)`,
    );

    const progress = new ProgressDisplay(process.stderr, totals, process.stderr.isTTY === true);
    const startedAt = Date.now();
    const timeLimitS = this.options.timeLimitS ?? DEFAULT_TIME_LIMIT_S + Math.ceil(payments.length / IPNS_PER_SECOND);
    const deadline = startedAt + timeLimitS * 1000;
    let sent: StreamOutcome | undefined;
    let sendError: Error | undefined;
    // Set when the run ends early (time limit, a blocked payout): the rest of the stream is not sent.
    let halted = false;
    const stream: StreamState = { streamSent: false, closingLeft: payments.filter((p) => p.closing).length };
    const sending = sendStream(`${url}/webhooks/nowpayments`, pool, payments, bodies, stream, () =>
      this.interrupted ? 'interrupted' : halted ? 'the demo stopped' : undefined,
    ).then(
      (outcome) => void (sent = outcome),
      (error: Error) => void (sendError = error),
    );

    // Halfway through the stream proper (the closing payments come after it).
    const outageAt = startedAt + (((payments.length - stream.closingLeft) / 2) * 1000) / IPNS_PER_SECOND;
    let outage: { startedAt: number; endedAt: number } | undefined;
    let wake: () => void = () => undefined;
    this.onInterrupt = () => wake();
    let counts: StageCounts;
    let stuckSince: number | undefined;
    try {
      for (;;) {
        if (this.options.outage && outage === undefined && Date.now() >= outageAt) {
          await simulator.setFault('down');
          outage = { startedAt: Date.now(), endedAt: 0 };
        }
        if (outage && outage.endedAt === 0 && Date.now() >= outage.startedAt + OUTAGE_SECONDS * 1000) {
          await simulator.setFault('none');
          outage.endedAt = Date.now();
        }
        counts = await readCounts(pool);
        const note = this.note(counts, sent !== undefined, stream, outage);
        progress.update(counts, Date.now() - startedAt, note);
        if (this.interrupted) throw new DemoFailure('interrupted');
        if (sendError)
          throw new DemoFailure(
            sendError instanceof IpnSendError ? sendError.message : `sending IPNs failed: ${sendError.message}`,
          );
        const outageOver = !outage || outage.endedAt > 0;
        if (sent !== undefined && outageOver && isDone(counts, totals.payments)) break;
        // Idle (nothing that moves on by itself) while every IPN is sent and ChangeNow is up, yet not done: stuck.
        stuckSince = sent !== undefined && outageOver && isIdle(counts) ? (stuckSince ?? Date.now()) : undefined;
        const blocked = this.blocked(
          counts,
          sent !== undefined,
          totals.payments,
          stuckSince === undefined ? 0 : Date.now() - stuckSince,
        );
        if (blocked)
          throw new DemoFailure(
            `${blocked}. Still open, from the tables:\n${(await explainPending(pool, totals.payments, stream.closingLeft)).join('\n')}`,
          );
        if (Date.now() > deadline) {
          throw new DemoFailure(
            `the time limit of ${timeLimitS} s passed before every payout completed. Still open, from the tables:\n${(await explainPending(pool, totals.payments, stream.closingLeft)).join('\n')}`,
          );
        }
        if (counts.pendingConversion > 0) await queueConversionCheck(pool);
        // The next tick, or the outage's start or end if sooner, so the outage begins halfway through the stream.
        const outageDue = !this.options.outage
          ? Infinity
          : outage === undefined
            ? outageAt
            : outage.endedAt === 0
              ? outage.startedAt + OUTAGE_SECONDS * 1000
              : Infinity;
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, Math.max(0, Math.min(TICK_MS, outageDue - Date.now())));
        });
      }
      const final =
        counts.waiting === 0
          ? 'done: every payment paid out, every payout completed'
          : `done: ${counts.paidOut} paid out, ${counts.waiting} converted and waiting below their channel's threshold; every payout completed`;
      progress.update(counts, Date.now() - startedAt, final, true);
    } finally {
      halted = true;
      await sending;
      if (outage && outage.endedAt === 0) {
        await simulator.setFault('none');
        outage.endedAt = Date.now();
      }
    }

    const elapsedS = ((Date.now() - startedAt) / 1000).toFixed(1);
    const intake = sent
      ? `the stream took ${((sent.streamAnsweredAt - sent.firstSentAt) / 1000).toFixed(1)} s, the last closing payment was answered at ${((sent.lastAnsweredAt - sent.firstSentAt) / 1000).toFixed(1)} s`
      : 'the IPNs were not all sent';
    const summary = await summarize(payrail.database.db, pool, {
      plannedPayments: payments.length,
      simulatorExchanges: simulator.exchanges.size,
      chain: {
        wallet: createChainWallet({
          rpcUrl,
          address: host,
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
    this.out(`== summary: done ${elapsedS} s after the first IPN (${intake}): ${outcome}; every payout completed ==`);
    this.out();
    for (const line of summary.lines) this.out(line);
    this.out();
    this.out(`dashboard  ${url}/  (web role of this payrail; admin token: ${config.ADMIN_TOKEN})`);
    this.out(`API        curl -H 'authorization: Bearer ${config.ADMIN_TOKEN}' ${url}/api/payouts`);
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
      return `ChangeNow DOWN (--outage, back in ${left} s): IPNs are still answered and recorded; exchanges wait and retry`;
    }
    if (outage)
      return `ChangeNow back up after ${((outage.endedAt - outage.startedAt) / 1000).toFixed(0)} s down: the waiting jobs retry and catch up`;
    if (this.options.outage) return 'sending IPNs; ChangeNow goes down when half are sent';
    if (stream.streamSent && stream.closingLeft > 0)
      return `stream sent; ${stream.closingLeft} closing payments wait until their channel's earlier payments are converted`;
    if (!streamDone) return 'sending IPNs';
    if (c.pendingConversion > 0 || c.converting > 0) return 'all IPNs answered; converting and paying out';
    return 'all IPNs answered; paying out';
  }

  /**
   * Why the run cannot complete without a person, or undefined while it still can. `idleMs`: how long the run has
   * shown nothing pending, converting, in flight or open (no job queued either) with every IPN sent and ChangeNow up,
   * yet not done: nothing moves it on any more, and waiting for the time limit would only delay the same diagnosis.
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
      return `stuck: nothing pending, converting, in flight or open for ${(idleMs / 1000).toFixed(1)} s, yet ${rest} of ${payments} payments are neither paid out nor waiting below their channel's threshold (${c.received} received, ${c.paidOut} paid out, ${c.waiting} waiting): nothing moves them on`;
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
