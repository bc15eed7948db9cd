/**
 * npm run chaos [-- --seed N --payments 2000 --channels 16 --workers 2 --faults 12 --database-url postgres://…]
 * Exit 0: every check held; 1: violations (printed, with the seed); 64: bad option; 2: the run itself broke.
 */
import { optionsOrExit, readOptionValues, UsageError, wholeNumberOption } from '../src/cli-options.ts';
import { randomSeed } from './rng.ts';
import { runChaos, type ChaosOptions } from './run.ts';

const USAGE = `usage: npm run chaos -- [options]

  --seed N            replay a run's plan (default: a new random seed, printed)
  --payments N        payments to send (default 2000)
  --channels N        channels, the four kinds in turn (default 16)
  --workers N         worker processes (default 2)
  --faults N          faults to inject (default 12)
  --concurrency N     IPN requests in flight (default 8)
  --settle S          seconds to wait for the system to settle after the faults (default 240)
  --database-url URL  use a fresh database on this server (no PostgreSQL restarts); default: own embedded PostgreSQL
`;

function readOptions(argv: string[]): ChaosOptions | undefined {
  const values = readOptionValues(argv, {
    values: ['seed', 'payments', 'channels', 'workers', 'faults', 'concurrency', 'settle', 'database-url'],
  });
  if (!values) return undefined;
  // One message for both ways a number can be wrong, naming its range.
  const int = (name: string, text: string | undefined, fallback: number, min: number, max: number) => {
    try {
      return wholeNumberOption(name, text, fallback, min, max);
    } catch {
      throw new UsageError(`--${name} must be a whole number from ${min} to ${max}`);
    }
  };
  return {
    seed: int('seed', values.seed, randomSeed(), 0, 2 ** 32 - 1),
    payments: int('payments', values.payments, 2000, 1, 1_000_000),
    channels: int('channels', values.channels, 16, 1, 10_000),
    workers: int('workers', values.workers, 2, 1, 32),
    faults: int('faults', values.faults, 12, 0, 1_000),
    concurrency: int('concurrency', values.concurrency, 8, 1, 256),
    settleTimeoutMs: int('settle', values.settle, 240, 1, 24 * 3600) * 1000,
    ...(values['database-url'] && { databaseUrl: values['database-url'] }),
  };
}

const start = optionsOrExit(() => readOptions(process.argv.slice(2)), USAGE);
if ('exitCode' in start) process.exit(start.exitCode);
const chosen = start.options;
runChaos(chosen).then(
  (result) => process.exit(result.violations.length === 0 ? 0 : 1),
  (error: Error) => {
    process.stderr.write(`chaos run broke (seed ${chosen.seed}): ${error.stack ?? error.message}\n`);
    process.exit(2);
  },
);
