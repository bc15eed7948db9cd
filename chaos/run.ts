/**
 * One chaos run: the world, payrail as processes, payments with faults injected, a bounded settle, the checks.
 * runChaos() is what `npm run chaos` (chaos/main.ts) and test/e2e/chaos.test.ts call.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { prepareDatabase } from '../src/app.ts';
import { openPool, type DatabaseHandle } from '../src/db/index.ts';
import { taskRunning } from '../src/jobs/index.ts';
import { createLogger, type Logger } from '../src/log.ts';
import { recordDeposit, recordWithdrawal, TreasuryRefused } from '../src/treasury/index.ts';
import type { AdminApi } from './admin.ts';
import { runChecks, classify, diagnostics, liveJobKeys } from './checks.ts';
import {
  clearFaults,
  inject,
  planFaults,
  TRANSFER_MAX_FEE_GWEI,
  type FaultContext,
  type PlannedFault,
} from './faults.ts';
import { sleep } from './net.ts';
import { Operator } from './operator.ts';
import { startChaosPostgres, type ChaosPostgres } from './postgres.ts';
import { Fleet, type LogLine } from './processes.ts';
import { Rng } from './rng.ts';
import {
  forwardOutcomes,
  makeChannels,
  planPayments,
  sendPayments,
  type ChaosChannel,
  type PlannedPayment,
  type SendStats,
} from './traffic.ts';
import { startWorld, type World } from './world.ts';

/** Booked 4 blocks deep (the reorg fault replaces at most 3). */
const CHAIN_CONFIRMATIONS = 4;
/** After the alert pass: long enough for conversions a 401 held to be converted and paid (a few batches). */
const AFTER_ALERT_SETTLE_MS = 60_000;
/**
 * After an operator's pass: a partial credited alone is below CONVERSION_MIN_USD, so it waits CONVERSION_MAX_WAIT and
 * then the conversion batch's next cron run (CONVERSION_INTERVAL, a minute): two of those, and the payout after.
 */
const AFTER_OPERATOR_SETTLE_MS = 150_000;
/** Review passes after the settle, at most (each followed by a settle when it changed something). */
const OPERATOR_FINAL_PASSES = 4;
/** An outside transaction reaches CHAIN_CONFIRMATIONS deep in about that many ticker blocks. */
const OUTSIDE_DEPTH_WAIT_MS = 15_000;

/** /health answers 200 once a worker's heartbeat is in: the workers are up before anything is sent. */
async function waitForWorkers(webUrl: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const res = await fetch(`${webUrl}/health`).catch(() => undefined);
    await res?.text();
    if (res?.status === 200) return;
    await sleep(200);
  }
  throw new Error(`no worker became healthy within ${timeoutMs} ms`);
}

/**
 * Waits until the workers' alerts_evaluate cron has run a whole pass that started after now (its observations are
 * newer, and no pass is running), so the checks see the alerts payrail raised for what the settle left.
 */
async function awaitAlertPass(db: DatabaseHandle, timeoutMs: number): Promise<boolean> {
  const since = new Date();
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const { rows } = await db.pool.query<{ observed: boolean }>(
        `select exists (select 1 from observations where name = 'chain_rpc' and observed_at > $1) as observed`,
        [since],
      );
      // Read after the observation: a pass that wrote it and is not running now has ended.
      if (rows[0]?.observed && !(await taskRunning(db.pool, 'alerts_evaluate'))) return true;
    } catch {
      // the database may still be coming back from a restart fault: try again
    }
    await sleep(1_000);
  }
  return false;
}

export interface ChaosOptions {
  seed: number;
  payments: number;
  channels: number;
  workers: number;
  faults: number;
  databaseUrl?: string;
  /** IPN requests in flight. */
  concurrency: number;
  /** Longest wait, after the last fault, for every payment to be paid out or visibly held. */
  settleTimeoutMs: number;
}

export interface ChaosResult {
  seed: number;
  figures: string[];
  violations: string[];
  logFile: string;
}

/** What a run has started so far, stopped whatever happens. */
interface Started {
  postgres?: ChaosPostgres;
  db?: DatabaseHandle;
  world?: World;
  fleet?: Fleet;
}

/** How far sending is: faults and operator steps wait for their share of the payments to be sent. */
interface Progress {
  sent: number;
  done: boolean;
  total: number;
}

/** What the faults did, and what could not be done. */
interface FaultLog {
  injected: string[];
  /** A fault that could not be carried out is the harness's failure, reported as a violation (the run goes on). */
  errors: string[];
  followUps: Array<Promise<void>>;
}

type Say = (line: string) => void;

export async function runChaos(
  options: ChaosOptions,
  print: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
): Promise<ChaosResult> {
  const startedAt = Date.now();
  const t = () => `[${((Date.now() - startedAt) / 1000).toFixed(1).padStart(6)} s]`;
  const say: Say = (line) => print(`${t()} ${line}`);
  say(
    `chaos seed ${options.seed} (replay: npm run chaos -- --seed ${options.seed} --payments ${options.payments} --channels ${options.channels} --workers ${options.workers} --faults ${options.faults})`,
  );
  const rng = new Rng(options.seed);
  const logger = createLogger({ level: 'error', destination: process.stderr });
  const logFile = path.join(os.tmpdir(), `payrail-chaos-${options.seed}-${process.pid}.log`);
  const logStream = fs.createWriteStream(logFile);

  const started: Started = {};
  try {
    const { postgres, db, world, fleet, channels, adminToken, ipnSecret } = await startRun(started, options, rng, {
      logger,
      logStream,
      say,
    });
    const { faults, payments } = planTraffic(rng, options, channels, postgres.restartable, ipnSecret, say);
    const forwardingLine = await forwardBeforeAnyIpn(world, payments, say);

    const admin: AdminApi = { url: () => fleet.webUrl(), token: adminToken };
    const operator = new Operator(admin, db.pool, world);
    const operatorPlan = planOperator(rng);
    say(`operator plan: ${operatorPlan.map((o) => `${o.what}@${Math.round(o.at * 100)}%`).join(', ')}`);

    const { stats, faultLog, operatorErrors } = await runTraffic(
      {
        rng,
        options,
        payments,
        faults,
        operatorPlan,
        operator,
        channels,
        faultContext: { world, fleet, postgres, admin },
      },
      say,
    );

    await settleAndReview(db, world, payments, operator, operatorErrors, options.settleTimeoutMs, say);
    const report = await runChecks(db, world, fleet, channels, payments);
    const figures = [...runFigures(world, fleet, operator, faultLog, stats, forwardingLine), ...report.figures];
    const violations = runViolations(report.violations, faultLog, operatorErrors, operator, stats);
    if (violations.length > 0) await writeDiagnostics(db, logStream);
    printResult(print, figures, violations, options.seed, startedAt, logFile);
    return { seed: options.seed, figures, violations, logFile };
  } finally {
    await stopAll(started);
    await new Promise<void>((resolve) => logStream.end(() => resolve()));
  }
}

/** The database, the world and payrail as processes, with the run's admin token and IPN secret. */
async function startRun(
  started: Started,
  options: ChaosOptions,
  rng: Rng,
  out: { logger: Logger; logStream: fs.WriteStream; say: Say },
): Promise<{
  postgres: ChaosPostgres;
  db: DatabaseHandle;
  world: World;
  fleet: Fleet;
  channels: ChaosChannel[];
  adminToken: string;
  ipnSecret: string;
}> {
  const { postgres, db, world } = await startDatabaseAndWorld(started, options, rng, out.logger, out.say);
  const adminToken = `chaos-admin-${rng.hex32().slice(2, 34)}`;
  const ipnSecret = `chaos-ipn-${rng.hex32().slice(2, 34)}`;
  const fleet = new Fleet(
    payrailEnv(postgres.url, world, adminToken, ipnSecret),
    options.workers,
    fleetLogLine(out.logStream, out.say),
  );
  started.fleet = fleet;
  const channels = await startPayrail(fleet, world, rng, options, adminToken, out.say);
  return { postgres, db, world, fleet, channels, adminToken, ipnSecret };
}

async function startDatabaseAndWorld(
  started: Started,
  options: ChaosOptions,
  rng: Rng,
  logger: Logger,
  say: Say,
): Promise<{ postgres: ChaosPostgres; db: DatabaseHandle; world: World }> {
  const postgres = await startChaosPostgres({
    ...(options.databaseUrl && { databaseUrl: options.databaseUrl }),
    logger,
  });
  started.postgres = postgres;
  say(`database: ${postgres.description}`);
  const db = openPool(postgres.url, {
    max: 4,
    applicationName: 'payrail-chaos',
    logger: createLogger({ level: 'silent' }),
  });
  started.db = db;
  await prepareDatabase(db, logger);
  const world = await startWorld(rng, { confirmations: CHAIN_CONFIRMATIONS });
  started.world = world;
  // The operator's funding of the host wallet is platform capital, booked as `payrail deposit` would: every wei the
  // host wallet holds is then on the books, and the ledger = chain check can ask for equality.
  const funding = await recordDeposit(
    db.db,
    { wallet: world.hostReader, usdtContract: world.usdt, confirmations: CHAIN_CONFIRMATIONS },
    { txHash: world.hostFundingTx, asset: 'eth', actor: 'chaos' },
  );
  say(
    `chain ${world.chain.rpcUrl} (a block every ~1 s; payrail uses the RPC proxy ${world.proxy.url}), ChangeNow simulator ${world.sim.url}, host wallet ${world.hostAddress} (funded by ${funding.txHash}: ${funding.amount} wei booked as capital)`,
  );
  return { postgres, db, world };
}

function payrailEnv(databaseUrl: string, world: World, adminToken: string, ipnSecret: string): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    DATABASE_POOL_MAX: '10',
    PORT: '0',
    HOST: '127.0.0.1',
    ADMIN_TOKEN: adminToken,
    NOWPAYMENTS_IPN_SECRET: ipnSecret,
    CHANGENOW_API_URL: world.sim.url,
    CHANGENOW_API_KEY: world.simApiKey,
    NOWPAYMENTS_API_URL: world.nowpaymentsApi.url,
    NOWPAYMENTS_API_KEY: world.nowpaymentsApiKey,
    NOWPAYMENTS_TIMEOUT: '2s',
    CHANGENOW_CONNECT_TIMEOUT: '1s',
    CHANGENOW_TIMEOUT: '2s',
    ETH_RPC_URL: world.proxy.url,
    CHAIN_ID: String(world.chain.chainId),
    // Replaced when unmined 2 s, at most 300 gwei.
    CHAIN_CONFIRMATIONS: String(CHAIN_CONFIRMATIONS),
    TRANSFER_BUMP_AFTER: '2s',
    TRANSFER_MAX_FEE_GWEI,
    USDT_CONTRACT: world.usdt,
    HOST_WALLET_PRIVATE_KEY: world.hostKey,
    WORKER_POLL_INTERVAL_MS: '100',
    WORKER_HEARTBEAT_INTERVAL: '500ms',
    HEALTH_WORKER_STALE_SECONDS: '3',
    CONVERSION_MIN_USD: '20',
    CONVERSION_MAX_WAIT: '2s',
    CONVERSION_POLL_INTERVAL: '200ms',
    WEBHOOK_RATE_LIMIT: '0',
    LOG_LEVEL: 'warn',
  };
}

/** Every payrail log line goes to the log file; the first 30 alerts are printed as well. */
function fleetLogLine(logStream: fs.WriteStream, say: Say): (line: LogLine) => void {
  let printedAlerts = 0;
  return (line) => {
    logStream.write(`${line.process} ${line.line}\n`);
    if (line.json?.event === 'alert' && printedAlerts++ < 30)
      say(
        `  ${line.process} alert ${String(line.json.alert)}: ${logText(line.json.msg)} ${logText(line.json.err ?? line.json.reason)}`.slice(
          0,
          300,
        ),
      );
  };
}

/** The web process, the channels and their owners, then the workers: everything up before anything is sent. */
async function startPayrail(
  fleet: Fleet,
  world: World,
  rng: Rng,
  options: ChaosOptions,
  adminToken: string,
  say: Say,
): Promise<ChaosChannel[]> {
  const webUrl = await fleet.startWeb();
  const channels = makeChannels(rng, options.channels);
  // Owners that misbehave on chain, before any payment: contract wallets (payouts need estimated gas) and a
  // blacklisted USDT receiver (its payouts would revert: payrail sends them to review without signing).
  for (const ch of channels) {
    if (ch.owner === 'contract_wallet') await world.makeContractWallet(ch.wallet);
    if (ch.owner === 'blacklisted') await world.blacklistUsdt(ch.wallet);
  }
  await putChannels(webUrl, adminToken, channels);
  fleet.startWorkers();
  await waitForWorkers(webUrl, 90_000);
  const owners = (owner: string) =>
    channels
      .filter((c) => c.owner === owner)
      .map((c) => c.id)
      .join(', ') || 'none';
  say(
    `payrail: web ${webUrl}, ${options.workers} worker(s); ${channels.length} channels (${[...new Set(channels.map((c) => c.kind))].join(', ')}); contract wallet owners: ${owners('contract_wallet')}; blacklisted USDT owner: ${owners('blacklisted')}`,
  );
  return channels;
}

async function putChannels(webUrl: string, adminToken: string, channels: ChaosChannel[]): Promise<void> {
  for (const ch of channels) {
    const res = await fetch(`${webUrl}/api/channels/${ch.id}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(ch.body),
    });
    if (res.status !== 201 && res.status !== 200)
      throw new Error(`PUT channel ${ch.id}: ${res.status} ${await res.text()}`);
  }
}

function planTraffic(
  rng: Rng,
  options: ChaosOptions,
  channels: ChaosChannel[],
  canRestartPostgres: boolean,
  ipnSecret: string,
  say: Say,
): { faults: PlannedFault[]; payments: PlannedPayment[] } {
  const faults = planFaults(rng, options.faults, canRestartPostgres);
  const payments = planPayments(rng, channels, options.payments, ipnSecret);
  say(
    `plan: ${payments.length} payments (${payments.reduce((n, p) => n + p.messages.length, 0)} IPNs), faults: ${faults.map((f) => `${f.kind}@${Math.round(f.atProgress * 100)}%`).join(', ') || 'none'}`,
  );
  return { faults, payments };
}

/** NOWPayments' side before any IPN: returns the line that says what was forwarded. */
async function forwardBeforeAnyIpn(world: World, payments: PlannedPayment[], say: Say): Promise<string> {
  // What NOWPayments' books say of each real payment (a forged one it never heard of), before any IPN.
  for (const p of payments) if (p.truth !== null) world.nowpaymentsApi.addPayment(p.truth);
  const forwardingStarted = Date.now();
  const forwarded = await forwardOutcomes(payments, world.forwardToHost.bind(world));
  const forwardingLine = `NOWPayments forwarded ${forwarded.count} outcomes (${forwarded.wei} wei) to the host wallet, mined before any IPN, in ${((Date.now() - forwardingStarted) / 1000).toFixed(1)} s`;
  say(forwardingLine);
  return forwardingLine;
}

type OperatorStep = { at: number; what: 'review' | 'pay_now' | 'switch_strategy' };

/**
 * The operator's work while payments flow: review passes, one pay-now, one strategy switch (planned after the
 * faults and payments, so a seed's earlier plans are unchanged by it).
 */
function planOperator(rng: Rng): OperatorStep[] {
  return [
    ...[0.25, 0.5, 0.75].map((at) => ({ at, what: 'review' as const })),
    { at: rng.next(), what: 'pay_now' as const },
    { at: rng.next(), what: 'switch_strategy' as const },
  ].sort((a, b) => a.at - b.at);
}

/** What the sending phase works with. */
interface Traffic {
  rng: Rng;
  options: ChaosOptions;
  payments: PlannedPayment[];
  faults: PlannedFault[];
  operatorPlan: OperatorStep[];
  operator: Operator;
  channels: ChaosChannel[];
  faultContext: Omit<FaultContext, 'followUp' | 'log'>;
}

/** The payments sent while the faults and the operator's steps fire at their share of the sending; then the faults end. */
async function runTraffic(
  traffic: Traffic,
  say: Say,
): Promise<{ stats: SendStats; faultLog: FaultLog; operatorErrors: string[] }> {
  const { rng, payments, operator, channels, faultContext } = traffic;
  const progress: Progress = { sent: 0, done: false, total: payments.length };
  const faultLog: FaultLog = { injected: [], errors: [], followUps: [] };
  const operatorErrors: string[] = [];
  const faultRunner = runFaults(traffic.faults, progress, faultContext, faultLog, say);
  const operatorRunner = runOperator(traffic.operatorPlan, progress, operator, rng, channels, operatorErrors, say);
  const stats = await sendAll(rng, payments, faultContext.fleet, traffic.options, progress, say);
  await faultRunner;
  await operatorRunner;
  await Promise.all(faultLog.followUps);
  await clearFaults(faultContext.world);
  say('faults over; settling');
  return { stats, faultLog, operatorErrors };
}

/** Until sending is done or this share of the payments has been sent. */
async function progressReached(progress: Progress, share: number): Promise<void> {
  while (!progress.done && progress.sent < share * progress.total) await sleep(50);
}

async function runFaults(
  faults: PlannedFault[],
  progress: Progress,
  ctx: Omit<FaultContext, 'followUp' | 'log'>,
  log: FaultLog,
  say: Say,
): Promise<void> {
  const followUp = (kind: string) => (work: Promise<string>) => {
    log.followUps.push(
      work.then(
        (line) => {
          say(`fault ${kind} follow-up: ${line}`);
        },
        (error: Error) => {
          log.errors.push(`${kind} follow-up: ${error.message}`);
          say(`fault ${kind} follow-up could not be carried out: ${error.message}`);
        },
      ),
    );
  };
  for (const fault of faults) {
    await progressReached(progress, fault.atProgress);
    await sleep(fault.pauseMs);
    try {
      const what = await inject(fault, { ...ctx, followUp: followUp(fault.kind), log: say });
      log.injected.push(fault.kind);
      say(`fault ${fault.kind}: ${what}`);
    } catch (error) {
      log.errors.push(`${fault.kind}: ${(error as Error).message}`);
      say(`fault ${fault.kind} could not be carried out: ${(error as Error).message}`);
      await clearFaults(ctx.world).catch(() => undefined);
    }
  }
}

async function runOperator(
  plan: OperatorStep[],
  progress: Progress,
  operator: Operator,
  rng: Rng,
  channels: ChaosChannel[],
  errors: string[],
  say: Say,
): Promise<void> {
  for (const step of plan) {
    await progressReached(progress, step.at);
    try {
      const line =
        step.what === 'review'
          ? `operator review pass: ${await operator.reviewPass()} action(s) took effect`
          : step.what === 'pay_now'
            ? `operator: ${await operator.payNow(rng, channels)}`
            : `operator: ${await operator.switchStrategy(rng, channels)}`;
      say(line);
    } catch (error) {
      errors.push(`${step.what}: ${(error as Error).message}`);
      say(`operator ${step.what} could not be carried out: ${(error as Error).message}`);
    }
  }
}

async function sendAll(
  rng: Rng,
  payments: PlannedPayment[],
  fleet: Fleet,
  options: ChaosOptions,
  progress: Progress,
  say: Say,
): Promise<SendStats> {
  let lastReport = Date.now();
  const sendingStarted = Date.now();
  const stats = await sendPayments(rng, payments, () => fleet.webUrl(), {
    concurrency: options.concurrency,
    retryForMs: 60_000,
    stopped: () => false,
    onProgress: (done) => {
      progress.sent = done;
      if (Date.now() - lastReport > 5_000) {
        lastReport = Date.now();
        say(`sent ${done}/${payments.length} payments`);
      }
    },
  });
  progress.done = true;
  say(
    `sending done in ${((Date.now() - sendingStarted) / 1000).toFixed(1)} s: ${stats.sent} IPNs, ${stats.retried} retries, ${stats.gaveUp.length} given up, ${stats.unexpected.length} unexpected answers`,
  );
  return stats;
}

/** The bounded settle, an alert pass, the operator's final review passes, the outside transactions booked. */
async function settleAndReview(
  db: DatabaseHandle,
  world: World,
  payments: PlannedPayment[],
  operator: Operator,
  operatorErrors: string[],
  settleTimeoutMs: number,
  say: Say,
): Promise<void> {
  const settled = await settle(db, payments, settleTimeoutMs, say);
  say(settled ? 'settled' : `not settled within ${settleTimeoutMs / 1000} s; checking as it stands`);
  say(
    `waiting for an alert evaluation pass after the settle (every ALERT_INTERVAL, 1m here): ${(await awaitAlertPass(db, 90_000)) ? 'done' : 'none within 90 s'}`,
  );
  // Work can start again during that wait (conversions held by a 401 are released): the checks see it settled too.
  if (settled && !(await settle(db, payments, AFTER_ALERT_SETTLE_MS, say)))
    say(`in flight again after the alert pass and not settled within ${AFTER_ALERT_SETTLE_MS / 1000} s`);
  await finalReviewPasses(db, payments, operator, operatorErrors, say);
  for (const line of await bookOutsideTransactions(db, world)) say(line);
}

/**
 * The operator works the review queues until a pass changes nothing (a retried conversion can come back to
 * review), the system settling after each pass that did something.
 */
async function finalReviewPasses(
  db: DatabaseHandle,
  payments: PlannedPayment[],
  operator: Operator,
  operatorErrors: string[],
  say: Say,
): Promise<void> {
  for (let pass = 1; pass <= OPERATOR_FINAL_PASSES; pass++) {
    const moved = await operator.reviewPass().catch((error: Error) => {
      operatorErrors.push(`final review pass ${pass}: ${error.message}`);
      return 0;
    });
    say(`operator final review pass ${pass}: ${moved} action(s) took effect`);
    if (moved === 0) break;
    if (!(await settle(db, payments, AFTER_OPERATOR_SETTLE_MS, say)))
      say(`not settled within ${AFTER_OPERATOR_SETTLE_MS / 1000} s after the operator's pass`);
  }
}

/** What the run itself did, printed before the checks' figures. */
function runFigures(
  world: World,
  fleet: Fleet,
  operator: Operator,
  faultLog: FaultLog,
  stats: SendStats,
  forwardingLine: string,
): string[] {
  const { injected, errors } = faultLog;
  return [
    `faults injected: ${injected.length}${injected.length ? ` (${injected.join(', ')})` : ''}${errors.length ? `; ${errors.length} not carried out` : ''}`,
    `chain: ${world.ticker.blocks} ticker blocks (${world.ticker.failures} failed ticks); ${world.outsideTxs.length} host transaction(s) sent from outside payrail`,
    `IPNs: ${stats.sent} sent, ${stats.retried} retries, ${stats.gaveUp.length} given up, ${stats.unexpected.length} unexpected answers`,
    forwardingLine,
    `operator: ${
      [...operator.log.taken.entries()]
        .sort()
        .map(([k, n]) => `${k} ×${n}`)
        .join(', ') || 'nothing to do'
    }`,
    `processes that exited on their own (restarted by the run's supervisor): ${fleet.unexpectedExits.length}${fleet.unexpectedExits.length ? ` (${fleet.unexpectedExits.slice(0, 5).join('; ')})` : ''}`,
  ];
}

function runViolations(
  checked: string[],
  faultLog: FaultLog,
  operatorErrors: string[],
  operator: Operator,
  stats: SendStats,
): string[] {
  const violations = [
    ...checked,
    ...faultLog.errors.map((e) => `fault not carried out (harness): ${e}`),
    ...operatorErrors.map((e) => `operator action not carried out (harness): ${e}`),
    ...operator.log.unexpected.map((e) => `admin API answered the operator unexpectedly: ${e}`),
  ];
  if (stats.unexpected.length > 0)
    violations.push(`IPN answered with an unexpected status: ${stats.unexpected.slice(0, 5).join('; ')}`);
  return violations;
}

function printResult(
  print: (line: string) => void,
  figures: string[],
  violations: string[],
  seed: number,
  startedAt: number,
  logFile: string,
): void {
  for (const f of figures) print(`  ${f}`);
  print('');
  for (const v of violations) print(`VIOLATION ${v}`);
  print(
    violations.length === 0
      ? `chaos OK (seed ${seed}), ${((Date.now() - startedAt) / 1000).toFixed(0)} s; payrail logs in ${logFile}`
      : `chaos FAILED: ${violations.length} violation(s), seed ${seed}; payrail logs in ${logFile}`,
  );
}

/** The queue's state, into the log file of a run that failed. */
async function writeDiagnostics(db: DatabaseHandle, logStream: fs.WriteStream): Promise<void> {
  const lines = await diagnostics(db.pool).catch((error: Error) => [`diagnostics failed: ${error.message}`]);
  logStream.write(`\n==== diagnostics\n${lines.join('\n')}\n`);
}

/** In the reverse order of starting; a part that fails to stop does not keep the others from stopping. */
async function stopAll(started: Started): Promise<void> {
  await started.fleet?.stop().catch(() => undefined);
  if (started.world) await clearFaults(started.world).catch(() => undefined);
  await started.world?.stop().catch(() => undefined);
  await started.db?.close().catch(() => undefined);
  await started.postgres?.stop().catch(() => undefined);
}

/** Until nothing is in flight (twice in a row), bounded. True when it settled. */
async function settle(
  db: DatabaseHandle,
  payments: PlannedPayment[],
  timeoutMs: number,
  say: (line: string) => void,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let calm = 0;
  let lastLine = 0;
  while (Date.now() < deadline) {
    try {
      const outcomes = await classify(db.pool, payments);
      const live = await liveJobKeys(db.pool);
      const inFlight = outcomes.filter((o) => o.state === 'in_flight');
      // A payout whose transfer waits in review waits for a person, not for the system: it is not in flight.
      const openPayouts = Number(
        (
          await db.pool.query<{ n: number }>(
            `select count(*)::int as n from payouts p left join chain_transfers t on t.transfer_id = p.transfer_id
         where p.status in ('pending','exchange_requested','exchange_created','sent') and t.status is distinct from 'needs_review'`,
          )
        ).rows[0]?.n ?? 0,
      );
      calm = inFlight.length === 0 && openPayouts === 0 ? calm + 1 : 0;
      if (calm >= 2) return true;
      if (Date.now() - lastLine > 5_000) {
        lastLine = Date.now();
        const jobless = inFlight.filter((o) => !o.jobKeys.some((k) => live.has(k)));
        say(
          `settling: ${inFlight.length} payments in flight (${jobless.length} without a job${jobless[0] ? `, e.g. ${jobless[0].paymentId}: ${jobless[0].detail}` : ''}), ${openPayouts} open payouts`,
        );
      }
    } catch (error) {
      say(`settling: query failed (${(error as Error).message}); retrying`);
    }
    await sleep(1_000);
  }
  return false;
}

/**
 * The operator's part after a nonce_taken: the wallet app's transaction spent gas from the host wallet outside
 * payrail, and is booked with `payrail withdrawal` (recordWithdrawal) once deep enough, so ledger = chain is exact.
 */
async function bookOutsideTransactions(db: DatabaseHandle, world: World): Promise<string[]> {
  const lines: string[] = [];
  for (const o of world.outsideTxs) {
    if (!(await world.hostReader.receipt(o.hash))) {
      lines.push(`outside transaction ${o.hash} (nonce ${o.nonce}) not mined: nothing to book`);
      continue;
    }
    const deadline = Date.now() + OUTSIDE_DEPTH_WAIT_MS;
    for (;;) {
      try {
        const r = await recordWithdrawal(
          db.db,
          { wallet: world.hostReader, usdtContract: world.usdt, confirmations: CHAIN_CONFIRMATIONS },
          { txHash: o.hash, from: 'capital', actor: 'chaos-operator' },
        );
        lines.push(
          `operator booked the outside transaction at nonce ${o.nonce} (payrail withdrawal): gas ${r.gasWei} wei, ${r.ethOut} wei sent away`,
        );
        break;
      } catch (error) {
        if (!(error instanceof TreasuryRefused)) throw error;
        if (!error.message.includes('not yet as deep') || Date.now() > deadline) {
          lines.push(`withdrawal of the outside transaction at nonce ${o.nonce} refused: ${error.message}`);
          break;
        }
        await sleep(1_000);
      }
    }
  }
  return lines;
}

/** A log line's field as text: a string as it is, an object (a pino err) as its JSON, nothing as nothing. */
function logText(value: unknown): string {
  if (value === undefined || value === null) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}
