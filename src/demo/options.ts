/** `payrail demo` command line: every value checked, a bad one is a usage error (exit 64), never a silent default. */
import { readOptionValues, UsageError, wholeNumberOption } from '../cli-options.ts';

/**
 * Long enough for jobs to fail and back off twice; short enough that their next retry (graphile-worker waits e^n s
 * after the n-th failure: 2.7 s, 7.4 s, 20 s, ...) comes soon after ChangeNow is back, not a minute later.
 */
export const OUTAGE_SECONDS = 8;
/** A steady stream of purchases, fast enough to be over in seconds, slow enough to watch the stages overlap. */
export const PURCHASES_PER_SECOND = 20;

export const DEMO_USAGE = `usage: payrail demo [options]      (npm run demo -- [options])

Starts payrail on its embedded defaults (PostgreSQL, anvil, ChangeNow and NOWPayments simulators) in a fresh data
directory on free ports, registers channels, and has a stream of subscribers buy as on the platform: payrail's checkout
creates each invoice (POST /api/invoices with an Idempotency-Key), the subscriber pays it in the NOWPayments simulator,
which sends payrail's webhook the signed IPNs (waiting, confirming, finished; some resent, some out of order), and
payrail credits each payment once NOWPayments' API confirms it. Shows each stage's progress until every payment is
paid out (or converted and waiting below its channel's threshold, as the threshold strategy does), prints a summary
with the ledger check and keeps payrail running for its dashboard until Ctrl-C.

  --payments N      payments (invoices bought and paid; default 200; at least one per threshold channel)
  --channels N      channels, threshold and instant in turn (default 8, at least 2)
  --outage          take ChangeNow down for ${OUTAGE_SECONDS} s in the middle of the stream
  --seed N          seed of the plan: channels, wallets, payments, IPN orders (default: random, printed)
  --exit            exit after the summary instead of waiting for Ctrl-C
  --data-dir PATH   new or empty directory to run in, kept afterwards (default: a temp dir, removed at exit)
  --time-limit S    seconds from the first purchase until done, else exit 1 with what is still open (default
                    600 plus the stream's own time, N / ${PURCHASES_PER_SECOND} s); a run with nothing left that
                    moves on by itself ends at once with the same diagnosis

Exit codes: 0 done and every check passed, 1 not done in time, stuck or a check failed, 64 bad options,
130 interrupted.
`;

export interface DemoOptions {
  payments: number;
  channels: number;
  outage: boolean;
  seed: number;
  /** False when the seed was drawn at random (it is printed so the run can be repeated). */
  seedGiven: boolean;
  exit: boolean;
  dataDir?: string;
  /** Unset: the default, which depends on the stream's length (see the usage). */
  timeLimitS?: number;
}

/** The options, or undefined after --help. Throws UsageError. */
export function readDemoOptions(argv: string[], randomSeed: () => number): DemoOptions | undefined {
  const values = readOptionValues(argv, {
    values: ['payments', 'channels', 'seed', 'data-dir', 'time-limit'],
    switches: ['outage', 'exit'],
  });
  if (!values) return undefined;
  const channels = wholeNumberOption('channels', values.channels, 8, 2, 100);
  // Channels alternate threshold, instant: every threshold channel needs its closing payment.
  const thresholdChannels = Math.ceil(channels / 2);
  const payments = wholeNumberOption('payments', values.payments, 200, 1, 100_000);
  if (payments < thresholdChannels)
    throw new UsageError(
      `--payments must be at least ${thresholdChannels} with ${channels} channels (one closing payment per threshold channel; got ${payments})`,
    );
  const dataDir = values['data-dir'];
  if (dataDir !== undefined && dataDir.trim() === '') throw new UsageError('--data-dir must not be empty');
  const seedText = values.seed;
  return {
    payments,
    channels,
    outage: values.outage === true,
    seed: seedText === undefined ? randomSeed() : wholeNumberOption('seed', seedText, 0, 0, 2 ** 32 - 1),
    seedGiven: seedText !== undefined,
    exit: values.exit === true,
    ...(dataDir !== undefined && { dataDir }),
    ...(values['time-limit'] !== undefined && {
      timeLimitS: wholeNumberOption('time-limit', values['time-limit'], 0, 1, 24 * 3600),
    }),
  };
}
