/**
 * payrail start | web | worker | migrate | check-ledger [--chain] | deposit | withdrawal | status | demo
 */
import { openDatabase, prepareDatabase, startPayrail, type Roles } from './app.ts';
import { ConfigError, loadConfig, secretValues, type Config } from './config.ts';
import { EmbeddedUnavailable, pendingMigrations } from './db/index.ts';
import { runDemo } from './demo/index.ts';
import { localDevSecrets } from './dev-secrets.ts';
import { checkLedger, LEDGER_CHECKS, type CheckLedgerOptions } from './ledger/index.ts';
import { createLogger, type Logger } from './log.ts';
import { formatStatus, readOverview, WINDOW_HOURS_DEFAULT, WINDOW_HOURS_MAX } from './overview/index.ts';
import { startChangeNowSimulator, startNowPaymentsSimulator } from './simulators/index.ts';
import { checkLedgerAgainstChain } from './treasury/index.ts';
import { bookingOptions, formatChainReport, readOnlyWallet, runBooking } from './treasury/commands.ts';
import { transferPolicy } from './app.ts';

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

const ROLES: Record<string, Roles> = {
  start: { web: true, worker: true },
  web: { web: true, worker: false },
  worker: { web: false, worker: true },
};

const SHUTDOWN_TIMEOUT_MS = 30_000;

async function main(argv: string[]): Promise<number> {
  const command = argv[0];
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return command === undefined ? 64 : 0;
  }
  if (command === 'sim') return simulate(argv.slice(1));
  // The demo builds its own configuration (own data dir, free ports), never the environment's.
  if (command === 'demo') return runDemo(argv.slice(1));
  if (!(command in ROLES) && !['migrate', 'check-ledger', 'status', 'deposit', 'withdrawal'].includes(command)) {
    process.stderr.write(`unknown command: ${command}\n\n${USAGE}`);
    return 64;
  }
  const status = command === 'status' ? statusOptions(argv.slice(1)) : undefined;
  const chainCheck = command === 'check-ledger' && argv.includes('--chain');
  const booking =
    command === 'deposit' || command === 'withdrawal' ? bookingOptions(command, argv.slice(1)) : undefined;
  const extra = command === 'check-ledger' ? argv.slice(1).filter((a) => a !== '--chain') : [];
  if (typeof booking === 'string' || extra.length > 0) {
    process.stderr.write(
      `${typeof booking === 'string' ? booking : `payrail check-ledger: unexpected argument ${extra[0]}`}\n${USAGE}`,
    );
    return 64;
  }
  if (typeof status === 'string') {
    process.stderr.write(
      `${status}\nusage: payrail status [--json] [--hours N]   (N from 1 to ${WINDOW_HOURS_MAX}, default ${WINDOW_HOURS_DEFAULT})\n`,
    );
    return 64;
  }

  let config: Config;
  try {
    // status, check-ledger and the bookings only read the chain: DATABASE_URL is all they need from a deployment.
    // migrate, the release step, needs the database alone: not the secrets of the processes it prepares for.
    const readOnly =
      command === 'status' || command === 'check-ledger' || command === 'migrate' || booking !== undefined;
    config = loadConfig(process.env, {
      requireOutside: !readOnly,
      devSecrets: (missing) => localDevSecrets(process.env.PAYRAIL_DATA_DIR?.trim() || '.data', missing),
    });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return 78; // EX_CONFIG
    }
    throw error;
  }
  const roles = ROLES[command];
  // A service logs to stdout, where its supervisor collects it. A one-shot command's stdout is its answer (piped to
  // jq, say): its log goes to stderr.
  const logStream = roles ? process.stdout : process.stderr;
  const logger = createLogger({
    level: config.LOG_LEVEL,
    secrets: secretValues(config),
    ...(!roles && { destination: process.stderr }),
    format: config.LOG_FORMAT === 'auto' ? (logStream.isTTY ? 'pretty' : 'json') : config.LOG_FORMAT,
  });
  if (roles) return serve(config, roles, logger);

  const database = await openDatabase(config, logger, `payrail-${command}`);
  try {
    if (command === 'migrate') {
      await prepareDatabase(database, logger);
      process.stdout.write('migrations applied\n');
      return 0;
    }
    // A newer CLI pointed at production must not migrate it ahead of the release step, and a read-only role cannot.
    const pending = await pendingMigrations(database.pool);
    if (pending.length > 0) {
      process.stderr.write(
        `the database schema is behind this version of payrail (not applied: ${pending.join(', ')}); run payrail migrate first\n`,
      );
      return 1;
    }
    if (status) {
      const overview = await readOverview(database.db, { windowHours: status.hours });
      process.stdout.write(status.json ? `${JSON.stringify(overview, null, 2)}\n` : formatStatus(overview));
      return 0;
    }
    const wallet = chainCheck || booking ? readOnlyWallet(config) : undefined;
    if (typeof wallet === 'string') {
      process.stderr.write(`Invalid configuration:\n  - ${wallet}\n`);
      return 78;
    }
    const usdtContract = config.USDT_CONTRACT as `0x${string}`;
    if (booking && wallet)
      return await runBooking(
        database.db,
        { wallet, usdtContract, confirmations: transferPolicy(config, config.CHAIN_ID).confirmations },
        booking,
      );
    const report = await checkLedger(database.db, ledgerProgress());
    process.stdout.write(
      `ledger: ${report.accounts} accounts, ${report.journals} journals, ${report.entries} entries\n`,
    );
    for (const p of report.problems) process.stdout.write(`VIOLATION ${p.rule}: ${p.subject}: ${p.detail}\n`);
    process.stdout.write(report.ok ? 'ledger OK\n' : `ledger BROKEN: ${report.problems.length} violation(s)\n`);
    if (!wallet) return report.ok ? 0 : 1;
    const chain = await checkLedgerAgainstChain(database.db, { wallet, usdtContract });
    process.stdout.write(formatChainReport(chain));
    return report.ok && chain.ok ? 0 : 1;
  } finally {
    await database.shutdown();
  }
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
