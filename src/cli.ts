/**
 * payrail start | web | worker | migrate | check-ledger
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { openDatabase, prepareDatabase, startPayrail, type Roles } from './app.ts';
import { ConfigError, loadConfig, secretValues, type Config, type SecretName } from './config.ts';
import { checkLedger } from './ledger/index.ts';
import { createLogger, type Logger } from './log.ts';
import { startChangeNowSimulator } from './simulators/index.ts';

const USAGE = `usage: payrail <command>

  start         web + worker in one process (embedded PostgreSQL unless DATABASE_URL is set)
  web           HTTP only: webhooks, admin API, health
  worker        jobs only
  migrate       apply database migrations and exit
  check-ledger  recompute balances from entries and check the ledger invariants; exit 1 on any violation
  sim changenow [--port N] [--api-key KEY] [--rpc-url URL] [--step-ms MS]
                run the ChangeNow v2 simulator on its own
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
  if (!(command in ROLES) && command !== 'migrate' && command !== 'check-ledger') {
    process.stderr.write(`unknown command: ${command}\n\n${USAGE}`);
    return 64;
  }

  let config: Config;
  try {
    config = loadConfig(process.env, { devSecrets: (missing) => localDevSecrets(process.env.PAYRAIL_DATA_DIR?.trim() || '.data', missing) });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return 78; // EX_CONFIG
    }
    throw error;
  }
  const logger = createLogger({ level: config.LOG_LEVEL, secrets: secretValues(config) });

  const roles = ROLES[command];
  if (roles) return serve(config, roles, logger);

  const database = await openDatabase(config, logger, `payrail-${command}`);
  try {
    await prepareDatabase(database, logger);
    if (command === 'migrate') {
      process.stdout.write('migrations applied\n');
      return 0;
    }
    const report = await checkLedger(database.db);
    process.stdout.write(`ledger: ${report.accounts} accounts, ${report.journals} journals, ${report.entries} entries\n`);
    for (const p of report.problems) process.stdout.write(`VIOLATION ${p.rule}: ${p.subject}: ${p.detail}\n`);
    process.stdout.write(report.ok ? 'ledger OK\n' : `ledger BROKEN: ${report.problems.length} violation(s)\n`);
    return report.ok ? 0 : 1;
  } finally {
    await database.shutdown();
  }
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

/** payrail sim changenow: the simulator as a standalone server, until SIGINT/SIGTERM. */
async function simulate(args: string[]): Promise<number> {
  const [what, ...rest] = args;
  const flags = new Map<string, string>();
  for (let i = 0; i < rest.length; i += 2) flags.set(rest[i] ?? '', rest[i + 1] ?? '');
  const port = Number.parseInt(flags.get('--port') ?? '0', 10);
  const stepMs = Number.parseInt(flags.get('--step-ms') ?? '2000', 10);
  const apiKey = flags.get('--api-key') ?? process.env.CHANGENOW_API_KEY?.trim();
  if (what !== 'changenow' || !Number.isInteger(port) || port < 0 || !Number.isInteger(stepMs) || stepMs < 0 || !apiKey) {
    process.stderr.write(`usage: payrail sim changenow --port N --api-key KEY [--rpc-url URL] [--step-ms MS]\n(the key may come from CHANGENOW_API_KEY)\n`);
    return 64;
  }
  const rpcUrl = flags.get('--rpc-url');
  const sim = await startChangeNowSimulator({ port, apiKey, stepMs, ...(rpcUrl && { rpcUrl }) });
  process.stderr.write(`ChangeNow simulator listening on ${sim.url}${rpcUrl ? ` (reading ${rpcUrl})` : ' (no chain: deposits are never seen)'}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await sim.stop();
  return 0;
}

/**
 * A local run without secrets gets generated ones, kept in the data dir so they survive restarts, and printed so
 * the operator can use them. loadConfig only asks for them when no DATABASE_URL is set.
 */
function localDevSecrets(dataDir: string, missing: SecretName[]): Partial<Record<SecretName, string>> {
  const file = path.resolve(dataDir, 'dev-secrets.json');
  let stored: Partial<Record<SecretName, string>> = {};
  if (fs.existsSync(file)) stored = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Record<SecretName, string>>;
  let changed = false;
  for (const name of missing) {
    if (!stored[name]) {
      stored[name] = name === 'HOST_WALLET_PRIVATE_KEY' ? `0x${randomBytes(32).toString('hex')}` : randomBytes(24).toString('base64url');
      changed = true;
    }
  }
  if (changed) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
    fs.writeFileSync(file, JSON.stringify(stored, null, 2) + '\n', { mode: 0o600 });
  }
  process.stderr.write(`\nLOCAL RUN: no ${missing.join(' / ')} given, using generated development values (kept in ${file}):\n`);
  // The wallet key is not printed: it lives in the file, and only ever holds local test ETH.
  for (const name of missing) process.stderr.write(`  ${name}=${name === 'HOST_WALLET_PRIVATE_KEY' ? '(generated, see the file)' : stored[name]}\n`);
  process.stderr.write('Set them in the environment for any real deployment.\n\n');
  return stored;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`payrail: ${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
