/**
 * payrail start | web | worker | migrate | check-ledger [--chain] | deposit | withdrawal | status | demo
 */
import { openDatabase, prepareDatabase, startPayrail, transferPolicy, type Database, type Roles } from './app.ts';
import { ConfigError, loadConfig, secretValues, type Config } from './config.ts';
import { EmbeddedUnavailable, pendingMigrations } from './db/index.ts';
import { runDemo } from './demo/index.ts';
import { localDevSecrets } from './dev-secrets.ts';
import type { ChainWallet } from './integrations/wallet/index.ts';
import { checkLedger, LEDGER_CHECKS, type CheckLedgerOptions } from './ledger/index.ts';
import { createLogger, type Logger } from './log.ts';
import { formatStatus, readOverview, WINDOW_HOURS_DEFAULT, WINDOW_HOURS_MAX } from './overview/index.ts';
import { startChangeNowSimulator, startNowPaymentsSimulator } from './simulators/index.ts';
import { checkLedgerAgainstChain } from './treasury/index.ts';
import { bookingOptions, formatChainReport, readOnlyWallet, runBooking, type Booking } from './treasury/commands.ts';

const USAGE = `usage: payrail <command>

  start         web + worker in one process (embedded PostgreSQL unless DATABASE_URL is set)
  web           HTTP only: webhooks, admin API, health
  worker        jobs only
  migrate       apply database migrations and exit
  check-ledger [--chain]
                recompute balances from entries and check the ledger invariants; with --chain also compare the host
                wallet's ETH and USDT on chain with the ledger, every term printed; exit 1 on any violation or difference
  deposit <txHash> [--asset eth|usdt]
                book a deposit of the operator's to the host wallet (gas money, a float) as platform capital, once the
                chain shows it mined CHAIN_CONFIRMATIONS deep
  withdrawal <txHash> [--from capital|fees|refunds]
                book a transaction sent from the host key outside payrail (fees or capital taken out, a reversed
                payment's ETH sent back, a wallet app's transaction): its gas as a network cost, the ETH and USDT it
                sent away from capital (default), fees, or the refunds owed
  status [--json] [--hours N]
                what the dashboard shows (totals, pipeline, queues, alerts, host wallet, review queue), as text or JSON
  demo [--payments N] [--channels N] [--outage] [--seed N] [--exit] [--data-dir PATH]
                the whole pipeline on a fresh local payrail of its own, with progress and a summary (--help)
  sim changenow [--port N] [--api-key KEY] [--rpc-url URL] [--step-ms MS]
                run the ChangeNow v2 simulator on its own
  sim nowpayments [--port N] [--api-key KEY]
                run the NOWPayments API simulator on its own (GET /v1/payment/{id} for the payments POSTed to
                /sim/payments)
`;

const SHUTDOWN_TIMEOUT_MS = 30_000;

/** A command's run on the arguments after its name; the exit code it resolves to is the process's. */
type Command = (args: string[]) => Promise<number>;

const COMMANDS = new Map<string, Command>([
  ['start', serveCommand({ web: true, worker: true })],
  ['web', serveCommand({ web: true, worker: false })],
  ['worker', serveCommand({ web: false, worker: true })],
  ['migrate', migrateCommand],
  ['check-ledger', checkLedgerCommand],
  ['status', statusCommand],
  ['deposit', bookingCommand('deposit')],
  ['withdrawal', bookingCommand('withdrawal')],
  ['sim', simulate],
  // The demo builds its own configuration (own data dir, free ports), never the environment's.
  ['demo', runDemo],
]);

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(USAGE);
    return name === undefined ? 64 : 0;
  }
  const command = COMMANDS.get(name);
  if (!command) {
    process.stderr.write(`unknown command: ${name}\n\n${USAGE}`);
    return 64;
  }
  return command(args);
}

/** start, web, worker: payrail running until SIGINT or SIGTERM. Arguments after the command are not read. */
function serveCommand(roles: Roles): Command {
  return () => withConfig({ service: true }, (config) => serve(config, roles, commandLogger(config, true)));
}

async function migrateCommand(): Promise<number> {
  return oneShot('migrate', { schemaCurrent: false }, async (database, _config, logger) => {
    await prepareDatabase(database, logger);
    process.stdout.write('migrations applied\n');
    return 0;
  });
}

async function statusCommand(args: string[]): Promise<number> {
  const status = statusOptions(args);
  if (typeof status === 'string') {
    process.stderr.write(
      `${status}\nusage: payrail status [--json] [--hours N]   (N from 1 to ${WINDOW_HOURS_MAX}, default ${WINDOW_HOURS_DEFAULT})\n`,
    );
    return 64;
  }
  return oneShot('status', { schemaCurrent: true }, async (database) => {
    const overview = await readOverview(database.db, { windowHours: status.hours });
    process.stdout.write(status.json ? `${JSON.stringify(overview, null, 2)}\n` : formatStatus(overview));
    return 0;
  });
}

function bookingCommand(kind: Booking['command']): Command {
  return async (args) => {
    const booking = bookingOptions(kind, args);
    if (typeof booking === 'string') {
      process.stderr.write(`${booking}\n${USAGE}`);
      return 64;
    }
    return oneShot(kind, { schemaCurrent: true }, async (database, config) => {
      const wallet = chainWallet(config);
      if (!wallet) return 78;
      const chain = {
        wallet,
        usdtContract: config.USDT_CONTRACT as `0x${string}`,
        confirmations: transferPolicy(config, config.CHAIN_ID).confirmations,
      };
      return runBooking(database.db, chain, booking);
    });
  };
}

async function checkLedgerCommand(args: string[]): Promise<number> {
  const extra = args.filter((a) => a !== '--chain');
  if (extra.length > 0) {
    process.stderr.write(`payrail check-ledger: unexpected argument ${extra[0]}\n${USAGE}`);
    return 64;
  }
  const againstChain = args.includes('--chain');
  return oneShot('check-ledger', { schemaCurrent: true }, async (database, config) => {
    const wallet = againstChain ? chainWallet(config) : undefined;
    if (againstChain && !wallet) return 78;
    const ledgerOk = await reportLedger(database);
    if (!wallet) return ledgerOk ? 0 : 1;
    const chain = await checkLedgerAgainstChain(database.db, {
      wallet,
      usdtContract: config.USDT_CONTRACT as `0x${string}`,
    });
    process.stdout.write(formatChainReport(chain));
    return ledgerOk && chain.ok ? 0 : 1;
  });
}

/** The ledger's own checks, printed line by line; true when it holds. */
async function reportLedger(database: Database): Promise<boolean> {
  const report = await checkLedger(database.db, ledgerProgress());
  process.stdout.write(`ledger: ${report.accounts} accounts, ${report.journals} journals, ${report.entries} entries\n`);
  for (const p of report.problems) process.stdout.write(`VIOLATION ${p.rule}: ${p.subject}: ${p.detail}\n`);
  process.stdout.write(report.ok ? 'ledger OK\n' : `ledger BROKEN: ${report.problems.length} violation(s)\n`);
  return report.ok;
}

/** The host wallet, read only; undefined once the configuration's fault is printed. */
function chainWallet(config: Config): ChainWallet | undefined {
  const wallet = readOnlyWallet(config);
  if (typeof wallet !== 'string') return wallet;
  process.stderr.write(`Invalid configuration:\n  - ${wallet}\n`);
  return undefined;
}

/** The configuration for `run`, or exit 78 (EX_CONFIG) with what is wrong with it. */
async function withConfig(
  { service }: { service: boolean },
  run: (config: Config) => Promise<number>,
): Promise<number> {
  let config: Config;
  try {
    // Only a service needs the outside world's settings. status, check-ledger and the bookings only read the chain:
    // DATABASE_URL is all they need from a deployment. migrate, the release step, needs the database alone: not the
    // secrets of the processes it prepares for.
    config = loadConfig(process.env, {
      requireOutside: service,
      devSecrets: (missing) => localDevSecrets(process.env.PAYRAIL_DATA_DIR?.trim() || '.data', missing),
    });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return 78; // EX_CONFIG
    }
    throw error;
  }
  return run(config);
}

function commandLogger(config: Config, service: boolean): Logger {
  // A service logs to stdout, where its supervisor collects it. A one-shot command's stdout is its answer (piped to
  // jq, say): its log goes to stderr.
  const logStream = service ? process.stdout : process.stderr;
  return createLogger({
    level: config.LOG_LEVEL,
    secrets: secretValues(config),
    ...(!service && { destination: process.stderr }),
    format: config.LOG_FORMAT === 'auto' ? (logStream.isTTY ? 'pretty' : 'json') : config.LOG_FORMAT,
  });
}

/**
 * A one-shot command: the configuration, a logger on stderr, and the database for `run`, closed after. Unless it is
 * migrate, the schema must be this version's first.
 */
async function oneShot(
  name: string,
  { schemaCurrent }: { schemaCurrent: boolean },
  run: (database: Database, config: Config, logger: Logger) => Promise<number>,
): Promise<number> {
  return withConfig({ service: false }, async (config) => {
    const logger = commandLogger(config, false);
    const database = await openDatabase(config, logger, `payrail-${name}`);
    try {
      if (schemaCurrent && !(await isSchemaCurrent(database))) return 1;
      return await run(database, config, logger);
    } finally {
      await database.shutdown();
    }
  });
}

/** A newer CLI pointed at production must not migrate it ahead of the release step, and a read-only role cannot. */
async function isSchemaCurrent(database: Database): Promise<boolean> {
  const pending = await pendingMigrations(database.pool);
  if (pending.length === 0) return true;
  process.stderr.write(
    `the database schema is behind this version of payrail (not applied: ${pending.join(', ')}); run payrail migrate first\n`,
  );
  return false;
}

function statusOptions(args: string[]): { json: boolean; hours: number } | string {
  let json = false;
  let hours = WINDOW_HOURS_DEFAULT;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--json') json = true;
    else if (
      arg === '--hours' &&
      /^[1-9][0-9]{0,2}$/.test(args[i + 1] ?? '') &&
      Number(args[i + 1]) <= WINDOW_HOURS_MAX
    )
      hours = Number(args[++i]);
    else return `payrail status: unexpected ${arg === '--hours' ? `--hours ${args[i + 1] ?? ''}` : `argument ${arg}`}`;
  }
  return { json, hours };
}

/**
 * check-ledger reads every entry once per check: tens of seconds on millions of entries. At a terminal it says
 * which check runs and for how long; in a pipe or a log it stays quiet (stdout carries the report either way).
 */
function ledgerProgress(): CheckLedgerOptions {
  if (!process.stderr.isTTY) return {};
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  return {
    onCheck(name, index) {
      clearInterval(timer);
      const show = () =>
        process.stderr.write(
          `\r\x1b[Kcheck-ledger [${index + 1}/${LEDGER_CHECKS.length}] ${name} · ${((Date.now() - started) / 1000).toFixed(1)} s`,
        );
      show();
      timer = setInterval(show, 500);
      timer.unref();
      // The last check is a quick count: clear the line once it is under way, before the report is printed.
      if (index === LEDGER_CHECKS.length - 1) {
        clearInterval(timer);
        process.stderr.write('\r\x1b[K');
      }
    },
  };
}

async function serve(config: Config, roles: Roles, logger: Logger): Promise<number> {
  // A worker whose job runner stopped on its own (database lost) shuts down and exits 1, so a supervisor restarts it,
  // instead of idling (or exiting 0) with no jobs running.
  let onWorkerFailure: (error: Error) => void = () => undefined;
  const payrail = await startPayrail(config, roles, logger, { onWorkerFailure: (error) => onWorkerFailure(error) });
  if (payrail.url) process.stderr.write(`payrail listening on ${payrail.url}\n`);
  return new Promise<number>((resolve) => {
    let stopping = false;
    let exitCode = 0;
    onWorkerFailure = () => {
      exitCode = 1;
      shutdown('worker_failure');
    };
    const shutdown = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ event: 'shutdown', signal }, 'shutting down');
      const timer = setTimeout(() => {
        logger.error({ event: 'shutdown_timeout' }, 'shutdown took too long; exiting');
        resolve(1);
      }, SHUTDOWN_TIMEOUT_MS);
      timer.unref();
      payrail.stop().then(
        () => resolve(exitCode),
        (error: Error) => {
          logger.error({ event: 'shutdown_failed', err: error }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.once('SIGINT', () => shutdown('SIGINT'));
    process.once('SIGTERM', () => shutdown('SIGTERM'));
  });
}

/** payrail sim changenow | nowpayments: a simulator as a standalone server, until SIGINT/SIGTERM. */
async function simulate(args: string[]): Promise<number> {
  const [what, ...rest] = args;
  const flags = new Map<string, string>();
  for (let i = 0; i < rest.length; i += 2) flags.set(rest[i] ?? '', rest[i + 1] ?? '');
  if (what === 'nowpayments') return simulateNowPayments(flags);
  const port = Number.parseInt(flags.get('--port') ?? '0', 10);
  const stepMs = Number.parseInt(flags.get('--step-ms') ?? '2000', 10);
  const apiKey = flags.get('--api-key') ?? process.env.CHANGENOW_API_KEY?.trim();
  if (
    what !== 'changenow' ||
    !Number.isInteger(port) ||
    port < 0 ||
    !Number.isInteger(stepMs) ||
    stepMs < 0 ||
    !apiKey
  ) {
    process.stderr.write(
      `usage: payrail sim changenow --port N --api-key KEY [--rpc-url URL] [--step-ms MS]\n(the key may come from CHANGENOW_API_KEY)\n`,
    );
    return 64;
  }
  const rpcUrl = flags.get('--rpc-url');
  const sim = await startChangeNowSimulator({ port, apiKey, stepMs, ...(rpcUrl && { rpcUrl }) });
  process.stderr.write(
    `ChangeNow simulator listening on ${sim.url}${rpcUrl ? ` (reading ${rpcUrl})` : ' (no chain: deposits are never seen)'}\n`,
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await sim.stop();
  return 0;
}

async function simulateNowPayments(flags: Map<string, string>): Promise<number> {
  const port = Number.parseInt(flags.get('--port') ?? '0', 10);
  const apiKey = flags.get('--api-key') ?? process.env.NOWPAYMENTS_API_KEY?.trim();
  const unknown = [...flags.keys()].filter((flag) => flag !== '--port' && flag !== '--api-key');
  if (!Number.isInteger(port) || port < 0 || port > 65535 || !apiKey || unknown.length > 0) {
    process.stderr.write(
      `usage: payrail sim nowpayments --port N --api-key KEY\n(the key may come from NOWPAYMENTS_API_KEY)\n`,
    );
    return 64;
  }
  const sim = await startNowPaymentsSimulator({ port, apiKey });
  process.stderr.write(
    `NOWPayments API simulator listening on ${sim.url}: GET /v1/payment/{id} (x-api-key), POST /sim/payments to register a payment, POST /sim/fault\n`,
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await sim.stop();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: Error) => {
    if (error instanceof EmbeddedUnavailable) {
      process.stderr.write(`payrail: ${error.message}\n`);
      process.exit(78); // EX_CONFIG, as for any other configuration error
    }
    process.stderr.write(`payrail: ${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
