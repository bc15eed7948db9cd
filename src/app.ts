/**
 * The composition root: one program, three shapes. `start` runs web and worker in one process; `web` and `worker`
 * run one half each against the same database (any number of each).
 */
import { eventCron, eventTasks, EVENT_TASKS, type DispatchDeps } from './events/index.ts';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { TaskList } from 'graphile-worker';
import { NOWPAYMENTS_DEFAULT_API_URL, secretValues, type Config } from './config.ts';
import { createChangeNowClient, type ChangeNowObserver } from './integrations/changenow/index.ts';
import { createNowPaymentsApi } from './integrations/nowpayments/index.ts';
import { createChainWallet } from './integrations/wallet/index.ts';
import { parseUnits } from './money/index.ts';
import {
  confirmTasks,
  createConversionNudger,
  HANDLED_TASKS,
  pipelineCron,
  pipelineTasks,
  type ConfirmDeps,
  type ConversionChain,
  type ConversionSettings,
  type CrashPoint,
  type IntakeSettings,
  type StageDeps,
  type TransferPolicy,
} from './pipeline/index.ts';
import { rpc, startLocalOutside, type LocalOutside } from './simulators/index.ts';
import { recordDeposit } from './treasury/index.ts';
import { readOnlyWallet } from './treasury/commands.ts';
import { migrate, openPool, startEmbeddedPostgres, type DatabaseHandle, type EmbeddedPostgres } from './db/index.ts';
import { buildHttpApp, startMetricsServer, type HttpDeps, type MetricsServer } from './http/index.ts';
import type { CheckoutDeps } from './http/routes/admin/invoices.ts';
import { createMetrics, type Metrics } from './metrics/index.ts';
import { migrateQueue, startWorker, type RunningWorker } from './jobs/index.ts';
import { createScrubber, type Logger } from './log.ts';
import {
  ALERT_TASKS,
  alertCron,
  alertSettings,
  alertTasks,
  alertWebhook,
  storeEventAlert,
  type AlertDeps,
} from './alerts/index.ts';

export interface Roles {
  web: boolean;
  worker: boolean;
}

export interface Database extends DatabaseHandle {
  /** Closes the pool, then stops the embedded server when this process owns it. */
  shutdown(): Promise<void>;
}

export async function openDatabase(config: Config, logger: Logger, applicationName: string): Promise<Database> {
  let embedded: EmbeddedPostgres | undefined;
  let connectionString = config.DATABASE_URL;
  if (connectionString === undefined) {
    embedded = await startEmbeddedPostgres({ dataDir: config.PAYRAIL_DATA_DIR, port: config.EMBEDDED_PG_PORT, logger });
    connectionString = embedded.connectionString;
  }
  const handle = openPool(connectionString, {
    max: config.DATABASE_POOL_MAX,
    applicationName,
    logger,
    // Each running job holds at most one run lock; one more for the slack of a job finishing as the next starts.
    runLockMax: config.WORKER_CONCURRENCY + 1,
  });
  return {
    ...handle,
    async shutdown() {
      await handle.close();
      await embedded?.stop();
    },
  };
}

/** payrail's migrations, then the queue's own schema. Both idempotent. */
export async function prepareDatabase(database: DatabaseHandle, logger: Logger): Promise<string[]> {
  const applied = await migrate(database.pool);
  await migrateQueue(database.pool, logger);
  if (applied.length > 0) logger.info({ event: 'migrations_applied', applied }, 'database migrated');
  return applied;
}

/** Every task this version runs: health and the queue alerts look at these queues only. */
export const ALL_HANDLED_TASKS: readonly string[] = [...HANDLED_TASKS, ...ALERT_TASKS, ...EVENT_TASKS];

/** Handlers by task. A task without a handler here keeps its jobs queued and visible until a version has one. */
export function taskHandlers(
  deps: StageDeps,
  alerts?: AlertDeps,
  confirm?: ConfirmDeps,
  events?: DispatchDeps,
): TaskList {
  return {
    ...pipelineTasks(deps),
    ...(confirm && confirmTasks(confirm)),
    ...(alerts && alertTasks(alerts)),
    ...(events && eventTasks(events)),
  };
}

/** The events_dispatch job's needs: the database and the delivery settings. */
export function dispatchDeps(config: Config, stage: StageDeps): DispatchDeps {
  return {
    db: stage.db,
    logger: stage.logger,
    scrub: createScrubber(secretValues(config)),
    settings: {
      retryMinDelayMs: config.EVENTS_RETRY_MIN_DELAY,
      retryWindowMs: config.EVENTS_RETRY_WINDOW,
      timeoutMs: config.EVENTS_DELIVERY_TIMEOUT,
      pollIntervalMs: config.EVENTS_POLL_INTERVAL,
    },
  };
}

/**
 * How intake credits: with NOWPAYMENTS_API_KEY set, only once NOWPayments' API agrees (the payment_confirm job). The
 * web and worker processes must read the same configuration, or one credits what the other would check.
 */
export function intakeSettings(config: Config): IntakeSettings {
  return {
    feePercent: config.PLATFORM_FEE_PERCENT,
    partialPayments: config.PARTIAL_PAYMENTS,
    ...(config.NOWPAYMENTS_API_KEY !== undefined && { confirm: { deadlineMs: config.NOWPAYMENTS_CONFIRM_DEADLINE } }),
  };
}

/** The payment_confirm job's needs: the API client (none without NOWPAYMENTS_API_KEY) and intake's credit settings. */
export function confirmDeps(
  config: Config,
  stage: StageDeps,
  outside: LocalOutside,
  onThresholdCredit?: () => void,
): ConfirmDeps {
  const apiKey = config.NOWPAYMENTS_API_KEY;
  const baseUrl = outside.nowpaymentsUrl ?? config.NOWPAYMENTS_API_URL ?? NOWPAYMENTS_DEFAULT_API_URL;
  return {
    db: stage.db,
    logger: stage.logger,
    notifyAlerts: config.ALERT_WEBHOOK_URL !== undefined,
    api:
      apiKey === undefined
        ? undefined
        : createNowPaymentsApi({ baseUrl, apiKey, timeoutMs: config.NOWPAYMENTS_TIMEOUT }),
    intake: intakeSettings(config),
    ...(onThresholdCredit && { onThresholdCredit }),
  };
}

/** POST /api/invoices' NOWPayments: the API payment_confirm asks (the local run's simulator included). */
function checkoutDeps(config: Config, outside: LocalOutside | undefined): CheckoutDeps {
  const apiKey = config.NOWPAYMENTS_API_KEY;
  const apiUrl = outside?.nowpaymentsUrl ?? config.NOWPAYMENTS_API_URL ?? NOWPAYMENTS_DEFAULT_API_URL;
  return {
    api:
      apiKey === undefined
        ? undefined
        : createNowPaymentsApi({ baseUrl: apiUrl, apiKey, timeoutMs: config.NOWPAYMENTS_TIMEOUT }),
    apiUrl,
    publicUrl: config.PUBLIC_URL,
  };
}

/** The alert jobs' needs: the stages' database, wallet and ChangeNow client, and the alert configuration. */
export function alertDeps(config: Config, stage: StageDeps): AlertDeps {
  return {
    db: stage.db,
    logger: stage.logger,
    wallet: stage.wallet,
    exchange: stage.exchange,
    usdtContract: stage.usdtContract,
    chain: { wallet: stage.wallet, usdtContract: stage.usdtContract },
    settings: alertSettings(config, ALL_HANDLED_TASKS),
    notify: config.ALERT_WEBHOOK_URL !== undefined,
    webhook: alertWebhook(config),
    scrub: createScrubber(secretValues(config)),
  };
}

/** ChangeNow and the chain: the configured ones, or (local run) the simulator and anvil started here. */
async function openOutside(config: Config, logger: Logger): Promise<LocalOutside> {
  if (config.embedded) return startLocal(config, logger);
  return configuredOutside(config, logger);
}

/** A local run's simulators and chain, on the ports and keys configured. */
function startLocal(config: Config, logger: Logger): Promise<LocalOutside> {
  return startLocalOutside({
    ...(config.ETH_RPC_URL && { rpcUrl: config.ETH_RPC_URL }),
    ...(config.CHANGENOW_API_URL && { changenowUrl: config.CHANGENOW_API_URL }),
    chainId: config.CHAIN_ID,
    chainPort: config.LOCAL_CHAIN_PORT,
    changenowPort: config.LOCAL_CHANGENOW_PORT,
    changenowApiKey: config.CHANGENOW_API_KEY,
    hostPrivateKey: config.HOST_WALLET_PRIVATE_KEY,
    // With a key and no URL, the local run confirms credits with its own NOWPayments simulator.
    ...(config.NOWPAYMENTS_API_KEY !== undefined && {
      nowpayments: {
        ...(config.NOWPAYMENTS_API_URL && { url: config.NOWPAYMENTS_API_URL }),
        port: config.LOCAL_NOWPAYMENTS_PORT,
        apiKey: config.NOWPAYMENTS_API_KEY,
        ipnSecret: config.NOWPAYMENTS_IPN_SECRET,
      },
    }),
    // The local chain keeps its state next to the database, so balances and nonces agree across restarts.
    stateDir: path.resolve(config.PAYRAIL_DATA_DIR),
    logger,
  });
}

/** The configured ChangeNow, chain and NOWPayments API, once ETH_RPC_URL is not found serving another chain. */
async function configuredOutside(config: Config, logger: Logger): Promise<LocalOutside> {
  const rpcUrl = config.ETH_RPC_URL as string;
  await refuseOtherChain(rpcUrl, config, logger);
  return {
    rpcUrl,
    chainId: config.CHAIN_ID,
    changenowUrl: config.CHANGENOW_API_URL as string,
    ...(config.NOWPAYMENTS_API_KEY !== undefined && {
      nowpaymentsUrl: config.NOWPAYMENTS_API_URL ?? NOWPAYMENTS_DEFAULT_API_URL,
    }),
    stop: () => Promise.resolve(),
  };
}

/** Stops the start when ETH_RPC_URL answers for another chain than CHAIN_ID; an unanswered ask is only logged. */
async function refuseOtherChain(rpcUrl: string, config: Config, logger: Logger): Promise<void> {
  let served: number | undefined;
  try {
    served = Number.parseInt(String(await rpc(rpcUrl, 'eth_chainId', [])), 16);
  } catch (error) {
    // An RPC outage must not keep the worker from everything else; transfers wait and retry until it is back.
    logger.error(
      { event: 'alert', alert: 'rpc_unreachable', err: (error as Error).message },
      'ETH_RPC_URL unreachable at start',
    );
  }
  // A key pointed at the wrong chain must stop the start, not sign transactions for another network.
  if (served !== undefined && served !== config.CHAIN_ID)
    throw new Error(`ETH_RPC_URL serves chain ${served}, but CHAIN_ID is ${config.CHAIN_ID}`);
}

/**
 * What the web process reads the chain with for a person's conversion resolve: the local chain on a local run, else
 * ETH_RPC_URL with the host wallet's address, read only (the key is the worker's). Undefined when neither is set.
 */
function conversionChain(config: Config, outside: LocalOutside | undefined): ConversionChain | undefined {
  const wallet = readOnlyWallet(
    outside ? { ...config, ETH_RPC_URL: outside.rpcUrl, CHAIN_ID: outside.chainId } : config,
  );
  if (typeof wallet === 'string') return undefined;
  return {
    wallet,
    hostAddress: wallet.address,
    usdtContract: outside?.usdtContract ?? config.USDT_CONTRACT,
    confirmations: transferPolicy(config, outside?.chainId ?? config.CHAIN_ID).confirmations,
  };
}

export function stageDeps(
  config: Config,
  database: Database,
  outside: LocalOutside,
  logger: Logger,
  crashPoint?: (name: CrashPoint) => void,
  changenowObserver?: ChangeNowObserver,
): StageDeps {
  const wallet = createChainWallet({
    rpcUrl: outside.rpcUrl,
    privateKey: config.HOST_WALLET_PRIVATE_KEY,
    chainId: outside.chainId,
    timeoutMs: 15_000,
  });
  return {
    db: database.db,
    runLocks: database.runLocks,
    exchange: createChangeNowClient({
      baseUrl: outside.changenowUrl,
      apiKey: config.CHANGENOW_API_KEY,
      connectTimeoutMs: config.CHANGENOW_CONNECT_TIMEOUT,
      responseTimeoutMs: config.CHANGENOW_TIMEOUT,
      ...(changenowObserver && { observer: changenowObserver }),
    }),
    wallet,
    hostAddress: wallet.address,
    usdtContract: (outside.usdtContract ?? config.USDT_CONTRACT) as `0x${string}`,
    settings: conversionSettings(config, outside.chainId),
    logger,
    notifyAlerts: config.ALERT_WEBHOOK_URL !== undefined,
    ...(crashPoint && { crashPoint }),
  };
}

/** The stages' limits, deadlines and policies, from the configuration and the chain the wallet signs for. */
function conversionSettings(config: Config, chainId: number): ConversionSettings {
  return {
    minUsdCents: parseUnits(config.CONVERSION_MIN_USD, 2),
    maxWaitMs: config.CONVERSION_MAX_WAIT,
    maxPayments: config.CONVERSION_MAX_PAYMENTS,
    pollIntervalMs: config.CONVERSION_POLL_INTERVAL,
    pollDeadlineMs: config.CONVERSION_POLL_DEADLINE,
    transferConfirmDeadlineMs: config.TRANSFER_CONFIRM_DEADLINE,
    transfer: transferPolicy(config, chainId),
    payoutMaxAttempts: config.PAYOUT_MAX_ATTEMPTS,
    payoutApprovalAboveUsdCents:
      config.PAYOUT_APPROVAL_ABOVE_USD === undefined ? null : parseUnits(config.PAYOUT_APPROVAL_ABOVE_USD, 2),
    walletChangeHoldMs: config.WALLET_CHANGE_HOLD,
    refundTolerance: config.CHANGENOW_REFUND_TOLERANCE,
    maxSlippage: config.CHANGENOW_MAX_SLIPPAGE,
  };
}

/** A local run's host wallet was funded by a transfer just now: the ledger books it as the operator's capital. */
async function bookLocalFunding(
  stage: StageDeps,
  txHash: `0x${string}`,
  config: Config,
  logger: Logger,
): Promise<void> {
  const result = await recordDeposit(
    stage.db,
    {
      wallet: stage.wallet,
      usdtContract: stage.usdtContract,
      confirmations: transferPolicy(config, stage.wallet.chainId).confirmations,
    },
    { txHash, asset: 'eth', actor: 'local-run' },
  );
  logger.info(
    { event: 'local_funding_booked', txHash, wei: result.amount.toString(), booked: result.booked },
    "LOCAL RUN: the host wallet's funding booked as platform capital",
  );
}

/** Mainnet's defaults are for a chain that reprices and reorganises; a local chain mines at once and never does. */
export function transferPolicy(config: Config, chainId: number): TransferPolicy {
  const mainnet = chainId === 1;
  return {
    bumpAfterMs: config.TRANSFER_BUMP_AFTER ?? (mainnet ? 180_000 : 30_000),
    maxFeePerGasWei: parseUnits(config.TRANSFER_MAX_FEE_GWEI, 9),
    confirmations: config.CHAIN_CONFIRMATIONS ?? (mainnet ? 12 : 1),
    receiptWaitMs: 15_000,
  };
}

/**
 * Both are legal configurations, so neither stops the start; each is a choice an operator should have made knowingly.
 * A local run (no DATABASE_URL) listens on 127.0.0.1 and holds nothing worth reading, so its open /metrics is not worth
 * a line.
 */
function warnAboutMetricsExposure(config: Config, roles: Roles, logger: Logger): void {
  if (!config.embedded && config.METRICS_TOKEN === undefined) {
    if (roles.web) {
      logger.warn(
        { event: 'metrics_open', port: config.PORT },
        'METRICS_TOKEN is unset: /metrics (payment counts, amounts paid out, host wallet balances) is served without a token on the same port as the public NOWPayments webhook; set METRICS_TOKEN or block /metrics at the proxy',
      );
    } else if (roles.worker && config.WORKER_METRICS_PORT !== undefined) {
      logger.warn(
        { event: 'metrics_open', port: config.WORKER_METRICS_PORT },
        'METRICS_TOKEN is unset: /metrics is served without a token on WORKER_METRICS_PORT; set METRICS_TOKEN or keep that port private',
      );
    }
  }
  if (roles.worker && !roles.web && config.WORKER_METRICS_PORT === undefined) {
    logger.warn(
      { event: 'worker_metrics_off' },
      'WORKER_METRICS_PORT is unset: this worker-only process serves no /metrics, so its job attempts and ChangeNow calls are not exposed anywhere',
    );
  }
}

export interface Payrail {
  readonly database: Database;
  readonly http?: FastifyInstance;
  /** Base URL when the web role runs, e.g. http://127.0.0.1:3000 */
  readonly url?: string;
  /** ChangeNow and chain endpoints in use (the local ones on a local run). */
  readonly outside?: LocalOutside;
  /** This process's metrics (also served at /metrics). */
  readonly metrics: Metrics;
  /** Base URL of a worker-only process's own /metrics server (WORKER_METRICS_PORT). */
  readonly metricsUrl?: string;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** An already open database (tests); the caller closes it. */
  database?: Database;
  /** Test seam: simulate a crash at a named point of a stage. */
  crashPoint?: (name: CrashPoint) => void;
  /** The worker's job runner stopped on its own (database lost): the process should exit non-zero to be restarted. */
  onWorkerFailure?: (error: Error) => void;
}

export async function startPayrail(
  config: Config,
  roles: Roles,
  logger: Logger,
  options: StartOptions = {},
): Promise<Payrail> {
  const existing = options.database;
  const crashPoint = armedCrashPoint(config, logger, options);
  warnAboutMetricsExposure(config, roles, logger);
  warnAboutUnconfirmedCredits(config, logger);
  const database =
    existing ??
    (await openDatabase(config, logger, `payrail-${roles.web ? 'web' : ''}${roles.worker ? 'worker' : ''}`));
  // A database the caller opened is the caller's to close.
  const owned = existing ? undefined : database;
  const parts: StartedParts = {};
  const start: StartContext = {
    config,
    roles,
    logger,
    database,
    metrics: createMetrics({ alertIntervalMs: config.ALERT_INTERVAL }),
  };
  try {
    await prepareDatabase(database, logger);
    if (roles.worker) await startWorkerRole(start, parts, crashPoint, options.onWorkerFailure);
    if (roles.web) await startWebRole(start, parts);
  } catch (error) {
    await releaseQuietly(parts, owned);
    throw error;
  }
  return startedPayrail(start, parts, owned);
}

/** What every part of a start reads. */
interface StartContext {
  readonly config: Config;
  readonly roles: Roles;
  readonly logger: Logger;
  readonly database: Database;
  readonly metrics: Metrics;
}

/** What a start has started so far, each set the moment it runs: a failed start stops exactly these. */
interface StartedParts {
  outside?: LocalOutside;
  worker?: RunningWorker;
  metricsServer?: MetricsServer;
  http?: FastifyInstance;
}

/** The test seam if given, else PAYRAIL_CRASH_AT's point, where the worker kills itself as a crash would. */
function armedCrashPoint(
  config: Config,
  logger: Logger,
  options: StartOptions,
): ((name: CrashPoint) => void) | undefined {
  const crashAt = config.PAYRAIL_CRASH_AT;
  if (crashAt)
    logger.warn(
      { event: 'crash_injection_armed', point: crashAt },
      'PAYRAIL_CRASH_AT is set: this worker will SIGKILL itself',
    );
  return (
    options.crashPoint ??
    (crashAt ? (name: CrashPoint) => void (name === crashAt && process.kill(process.pid, 'SIGKILL')) : undefined)
  );
}

/** A legal configuration, so it does not stop the start; on mainnet it should be a choice made knowingly. */
function warnAboutUnconfirmedCredits(config: Config, logger: Logger): void {
  if (config.NOWPAYMENTS_API_KEY === undefined && config.CHAIN_ID === 1) {
    logger.warn(
      { event: 'ipn_credits_unconfirmed' },
      'NOWPAYMENTS_API_KEY is unset on mainnet: a signed IPN is credited on its signature alone, so anyone holding the IPN secret can mint credits; set NOWPAYMENTS_API_KEY to have every credit confirmed with NOWPayments first',
    );
  }
}

/** The outside world, the job runner, and a worker-only process's own /metrics, in that order. */
async function startWorkerRole(
  start: StartContext,
  parts: StartedParts,
  crashPoint: ((name: CrashPoint) => void) | undefined,
  onWorkerFailure: ((error: Error) => void) | undefined,
): Promise<void> {
  const { config, roles, logger, database, metrics } = start;
  const outside = (parts.outside = await openOutside(config, logger));
  const stage = stageDeps(config, database, outside, logger, crashPoint, (call) => metrics.changenowCall(call));
  if (outside.fundingTxHash) await bookLocalFunding(stage, outside.fundingTxHash, config, logger);
  parts.worker = await startWorker(workerOptions(start, stage, outside, onWorkerFailure));
  // A worker-only process's job and ChangeNow metrics exist only in its memory: it serves them itself.
  if (!roles.web && config.WORKER_METRICS_PORT !== undefined) {
    parts.metricsServer = await startMetricsServer({
      metrics,
      port: config.WORKER_METRICS_PORT,
      host: config.HOST,
      logger,
      ...(config.METRICS_TOKEN !== undefined && { token: config.METRICS_TOKEN }),
    });
  }
}

/** The job runner's tasks, schedules and settings. */
function workerOptions(
  start: StartContext,
  stage: StageDeps,
  outside: LocalOutside,
  onWorkerFailure: ((error: Error) => void) | undefined,
): Parameters<typeof startWorker>[0] {
  const { config, logger, database, metrics } = start;
  return {
    pool: database.pool,
    db: database.db,
    logger,
    taskList: taskHandlers(
      stage,
      alertDeps(config, stage),
      confirmDeps(config, stage, outside, createConversionNudger(database.db, logger)),
      dispatchDeps(config, stage),
    ),
    cron: [
      ...pipelineCron({
        conversionIntervalMs: config.CONVERSION_INTERVAL,
        reconcileIntervalMs: config.RECONCILE_INTERVAL,
      }),
      ...alertCron({ intervalMs: config.ALERT_INTERVAL }),
      ...eventCron(),
    ],
    storeAlert: (alert) => storeEventAlert(database.db, alert, { notify: config.ALERT_WEBHOOK_URL !== undefined }),
    concurrency: config.WORKER_CONCURRENCY,
    pollIntervalMs: config.WORKER_POLL_INTERVAL_MS,
    staleWorkerSeconds: config.HEALTH_WORKER_STALE_SECONDS,
    heartbeatIntervalMs: config.WORKER_HEARTBEAT_INTERVAL,
    ...(onWorkerFailure && { onUnexpectedStop: onWorkerFailure }),
    jobObserver: metrics.jobs,
  };
}

/** The HTTP app, listening. It is in `parts` before it listens, so a port already taken still closes it. */
async function startWebRole(start: StartContext, parts: StartedParts): Promise<void> {
  const http = (parts.http = await buildHttpApp(httpDeps(start, parts.outside)));
  await http.listen({ port: start.config.PORT, host: start.config.HOST });
}

/** The web process's routes and what they need; `outside` is the worker's on a process running both. */
function httpDeps(start: StartContext, outside: LocalOutside | undefined): HttpDeps {
  const { config, logger, database, metrics } = start;
  const nudge = createConversionNudger(database.db, logger);
  return {
    logger,
    adminTokens: [{ name: 'admin', token: config.ADMIN_TOKEN }, ...config.ADMIN_TOKENS],
    webhook: webhookDeps(start, nudge),
    trustedProxies: config.TRUSTED_PROXY,
    secrets: secretValues(config),
    health: {
      db: database.db,
      handledTasks: ALL_HANDLED_TASKS,
      workerStaleSeconds: config.HEALTH_WORKER_STALE_SECONDS,
      queueMaxAgeSeconds: config.HEALTH_QUEUE_MAX_AGE_SECONDS,
      alertIntervalMs: config.ALERT_INTERVAL,
    },
    admin: {
      db: database.db,
      chain: conversionChain(config, outside),
      intake: intakeSettings(config),
      pollDeadlineMs: config.CONVERSION_POLL_DEADLINE,
      onThresholdCredit: nudge,
      checkout: checkoutDeps(config, outside),
    },
    alerts: { db: database.db, notify: config.ALERT_WEBHOOK_URL !== undefined },
    events: { db: database.db, self: { port: config.PORT, publicUrl: config.PUBLIC_URL } },
    metrics: {
      metrics,
      db: database.db,
      ...(config.METRICS_TOKEN !== undefined && { token: config.METRICS_TOKEN }),
    },
  };
}

/** The NOWPayments IPN route: how it checks, credits and counts what it answers. */
function webhookDeps(start: StartContext, nudge: () => void): HttpDeps['webhook'] {
  const { config, database, metrics } = start;
  return {
    db: database.db,
    ipnSecret: config.NOWPAYMENTS_IPN_SECRET,
    intake: intakeSettings(config),
    notifyAlerts: config.ALERT_WEBHOOK_URL !== undefined,
    bodyLimitBytes: config.WEBHOOK_BODY_LIMIT_BYTES,
    onThresholdCredit: nudge,
    rateLimitPerMinute: config.WEBHOOK_RATE_LIMIT,
    allowedSources: config.NOWPAYMENTS_ALLOWED_IPS,
    onAnswered: (answer) => metrics.ipnAnswered(answer),
  };
}

/** A started payrail: logged, with its addresses, and a stop for all it started. */
function startedPayrail(start: StartContext, parts: StartedParts, owned: Database | undefined): Payrail {
  const { roles, logger, database, metrics } = start;
  const { http, metricsServer, outside } = parts;
  const url = listeningUrl(http);
  logger.info(
    { event: 'payrail_started', roles, url, ...(metricsServer && { metricsUrl: metricsServer.url }) },
    'payrail started',
  );
  return {
    database,
    metrics,
    ...(metricsServer && { metricsUrl: metricsServer.url }),
    ...(http && { http }),
    ...(url && { url }),
    ...(outside && { outside }),
    stop: () => release(parts, owned),
  };
}

function listeningUrl(http: FastifyInstance | undefined): string | undefined {
  const address = http?.server.address();
  return address && typeof address === 'object'
    ? `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
    : undefined;
}

/** Stop taking requests, let running jobs finish, then release the outside world and the database. */
async function release(parts: StartedParts, owned: Database | undefined): Promise<void> {
  await parts.http?.close();
  await parts.metricsServer?.close();
  await parts.worker?.stop();
  await parts.outside?.stop();
  await owned?.shutdown();
}

/**
 * A failed start's clean-up, in release's order. A step that fails does not keep the ones after it from running, and
 * the start's own error is the one reported.
 */
async function releaseQuietly(parts: StartedParts, owned: Database | undefined): Promise<void> {
  await parts.http?.close().catch(() => undefined);
  await parts.metricsServer?.close().catch(() => undefined);
  await parts.worker?.stop().catch(() => undefined);
  await parts.outside?.stop().catch(() => undefined);
  await owned?.shutdown().catch(() => undefined);
}
