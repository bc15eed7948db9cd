/**
 * The one place environment variables are read. Every value is trimmed (a trailing newline in a secret once broke
 * the old system silently), typed, and validated; a bad or missing value stops the start with one message naming
 * every bad variable. Variables that look like ours but are unknown are refused too: a misspelt name must not
 * silently fall back to a default.
 */
import { z } from 'zod';
import { parseRangeList, type AddressRange } from './http/net.ts';
import { parsePercent, type Percent } from './money/index.ts';
import { CRASH_POINTS } from './pipeline/interfaces.ts';

/** True when this module runs as TypeScript (tests, `npm start`), false in the compiled build under dist/. */
const RUNS_FROM_SOURCE = import.meta.url.endsWith('.ts');

export interface AdminTokenEntry {
  readonly name: string;
  readonly token: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

const OUR_PREFIXES = [
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
  'WEBHOOK_',
  'TRUSTED_',
  'WALLET_',
  'ALERT_',
  'RECONCILE_',
  'METRICS_',
  'PARTIAL_',
];

const port = z.coerce.number({ error: 'must be a port number' }).int().min(0).max(65535);
const positiveInt = z.coerce.number({ error: 'must be a whole number' }).int().positive();
const secret = z.string().min(16, 'must be at least 16 characters');
const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
/** "500ms", "90s", "1m", "2h" → milliseconds. */
const duration = z.string().transform((text, ctx): number => {
  const match = /^([1-9][0-9]{0,8})(ms|s|m|h)$/.exec(text);
  if (!match) {
    ctx.addIssue({ code: 'custom', message: 'must be a duration such as 500ms, 90s, 1m or 2h' });
    return z.NEVER;
  }
  return Number(match[1]) * (DURATION_UNITS_MS[match[2] as string] as number);
});
/** Longest WALLET_CHANGE_HOLD: beyond a month a hold is a stop, and a typo (240h for 24h) should not pass unnoticed. */
const MAX_WALLET_CHANGE_HOLD_MS = 720 * 3_600_000;
/** "0" (off) or a duration up to 720h. */
const walletChangeHold = z.string().transform((text, ctx): number => {
  if (text === '0') return 0;
  const parsed = duration.safeParse(text);
  if (!parsed.success || parsed.data > MAX_WALLET_CHANGE_HOLD_MS) {
    ctx.addIssue({ code: 'custom', message: 'must be 0 (no hold) or a duration such as 30m or 24h, at most 720h' });
    return z.NEVER;
  }
  return parsed.data;
});
/** Comma-separated IPv4/IPv6 addresses and CIDR ranges; each bad entry is its own problem. Unset: an empty list. */
const addressList = z
  .string()
  .optional()
  .transform((text, ctx): AddressRange[] => {
    if (text === undefined) return [];
    const { ranges, problems } = parseRangeList(text);
    for (const message of problems) ctx.addIssue({ code: 'custom', message });
    return problems.length > 0 ? z.NEVER : ranges;
  });
/** A cron schedule: whole minutes from 1 to 59. */
const cronMinutes = duration.refine(
  (ms) => ms % 60_000 === 0 && ms >= 60_000 && ms <= 59 * 60_000,
  'must be whole minutes from 1m to 59m (it is a cron schedule)',
);
/** A decimal amount of a token, such as 0.5 or 250: a floor, compared in smallest units (never as a float). */
const tokenAmount = z
  .string()
  .regex(/^(0|[1-9][0-9]{0,11})(\.[0-9]{1,18})?$/, 'must be a decimal amount such as 0.5 or 250');
/**
 * How far short of what was asked ChangeNow may fall with no person involved, in percent. At most 10: a typo of 90
 * would write off nearly every refund, or book nearly any exchange result, without anyone looking.
 */
const changenowAllowance = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((text, ctx): Percent => {
      try {
        const percent = parsePercent(text);
        if (percent.numerator > 10n * percent.denominator) throw new Error(`must be at most 10 (percent), got ${text}`);
        return percent;
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    });
const usdAmount = z.string().regex(/^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$/, 'must be a USD amount such as 50 or 50.00');

const schema = z
  .object({
    PORT: port.default(3000).describe('HTTP port (`0`: any free port)'),
    HOST: z.string().min(1).default('127.0.0.1').describe('HTTP bind address; `0.0.0.0` in a container'),
    DATABASE_URL: z
      .url({ protocol: /^postgres(ql)?$/, error: 'must be a postgres:// or postgresql:// URL' })
      .optional()
      .describe('`postgres://…`. Unset: embedded PostgreSQL (local run)'),
    DATABASE_POOL_MAX: positiveInt
      .max(200)
      .default(10)
      .describe(
        'connections per process for its work; a worker also opens up to WORKER_CONCURRENCY + 1 more of its own for the locks its steps hold across outside calls',
      ),
    PAYRAIL_DATA_DIR: z.string().min(1).default('.data').describe('embedded PostgreSQL cluster, its log, dev secrets'),
    EMBEDDED_PG_PORT: port.default(54329).describe('port of the embedded PostgreSQL (127.0.0.1 only)'),
    ADMIN_TOKEN: secret
      .optional()
      .describe('bearer token of the admin API (16+ characters), recorded as actor `admin`'),
    /** More admin tokens, each with the name its actions are recorded under: "alice:<token>,bob:<token>". */
    ADMIN_TOKENS: z
      .string()
      .optional()
      .transform((text, ctx): AdminTokenEntry[] => {
        if (text === undefined) return [];
        const entries: AdminTokenEntry[] = [];
        for (const item of text.split(',').map((part) => part.trim())) {
          const match = /^([a-z][a-z0-9_.-]{0,31}):(.+)$/.exec(item);
          if (!match) {
            ctx.addIssue({
              code: 'custom',
              message: 'must be name:token pairs separated by commas (names: lowercase letters, digits, _ . -)',
            });
            return z.NEVER;
          }
          const [, name, token] = match as unknown as [string, string, string];
          // Entries are named by position, never by their name: in a pair written the wrong way round ("token:name")
          // the "name" is the secret, and the message must not print it.
          const entry = entries.length + 1;
          if (token.length < 16) {
            ctx.addIssue({
              code: 'custom',
              message: `the token of entry ${entry} must be at least 16 characters (entries are name:token)`,
            });
            return z.NEVER;
          }
          if (name === 'admin') {
            ctx.addIssue({ code: 'custom', message: 'the name "admin" is ADMIN_TOKEN\'s: choose another' });
            return z.NEVER;
          }
          const same = entries.findIndex((e) => e.name === name);
          if (same >= 0) {
            ctx.addIssue({
              code: 'custom',
              message: `entry ${entry} uses the name of entry ${same + 1}: each token needs its own name`,
            });
            return z.NEVER;
          }
          entries.push({ name, token });
        }
        return entries;
      })
      .describe(
        'more admin tokens, each with the name its actions are recorded under: `alice:<token>,bob:<token>` (tokens 16+ characters)',
      ),
    NOWPAYMENTS_IPN_SECRET: secret.optional().describe('NOWPayments IPN secret (16+ characters)'),
    /**
     * Set: a crediting IPN is credited only once NOWPayments' API (GET /v1/payment/{id}) agrees with it. Unset: the
     * signed IPN alone is credited, as before (a leaked IPN secret can then mint credits).
     */
    NOWPAYMENTS_API_KEY: secret
      .optional()
      .describe(
        'set: every crediting IPN (`finished`, or `partially_paid` under `PARTIAL_PAYMENTS=credit`) is credited only once `GET /v1/payment/{id}` (header `x-api-key`) agrees on status, outcome amount and currency (and order); see `payment_confirm` in [the flow](architecture.md#the-flow). Unset: credited on the signed IPN alone, as before, and a warning (`ipn_credits_unconfirmed`) is logged at start when `CHAIN_ID` is 1. A secret: redacted from logs',
      ),
    /** The API's base. Unset: https://api.nowpayments.io, or on a local run the simulator payrail starts. */
    NOWPAYMENTS_API_URL: httpUrl
      .optional()
      .describe("the API's base. Local run: the NOWPayments simulator (when unset)"),
    /** How long an unreachable NOWPayments is asked again before the payment goes to review instead. */
    NOWPAYMENTS_CONFIRM_DEADLINE: duration
      .refine((ms) => ms <= 86_400_000, 'must be at most 24h (the job retrying the check gives up later than that)')
      .default(3_600_000)
      .describe(
        "how long an unreachable NOWPayments API is asked again (the queue's backoff) before the payment goes to review (`payment_unconfirmed`); at most `24h`",
      ),
    NOWPAYMENTS_TIMEOUT: duration
      .refine((ms) => ms <= 120_000, 'must be at most 120s')
      .default(15_000)
      .describe('whole-response limit of one API call (connect: at most 5 s); at most `120s`'),
    PLATFORM_FEE_PERCENT: z
      .string()
      .default('3')
      .transform((text, ctx): Percent => {
        try {
          return parsePercent(text);
        } catch (error) {
          ctx.addIssue({ code: 'custom', message: (error as Error).message });
          return z.NEVER;
        }
      })
      .describe(
        "platform fee, decimal, 0 ≤ p < 100, at most 6 decimals; a channel's own `platformFeePercent` (PUT /api/channels/:id) overrides it for that channel. A payment keeps the fee it was credited at (`fee_percent`)",
      ),
    // ChangeNow refunds arrive less network fees: a refund at most this many percent short of what was sent settles by
    // itself, the shortfall booked as ChangeNow's cost; a shorter one goes to a person.
    CHANGENOW_REFUND_TOLERANCE: changenowAllowance('2').describe(
      "percent, at most 10: a conversion refund at most this short of the ETH sent (ChangeNow refunds less network fees) settles by itself, the shortfall booked as ChangeNow's cost (journal `conversion_shortfall`, shared among the payments by their ETH, largest remainder) and the payments back to pending worth that much less (`exchange_cost_wei`); a shorter refund goes to review. The same for a payout's refund: what came back is on the channel again, the rest booked as ChangeNow's cost (in its `payout_returned` journal)",
    ),
    // A floating rate moves between the estimate and the swap: a finished exchange at most this many percent below the
    // estimate recorded at its creation is booked; further below, a person decides.
    CHANGENOW_MAX_SLIPPAGE: changenowAllowance('3').describe(
      'percent, at most 10: a finished exchange (conversion or payout) whose `amountTo` is more than this below the estimate ChangeNow gave at its creation (`expectedUsdt`, `expectedAmountOut`) is not booked: it goes to `needs_review` naming both values and the limit (see conversion_poll and payout_poll in [the flow](architecture.md#the-flow)). Compared exactly, never rounded: `amountTo` ≥ estimate × (100 − p) / 100 is booked, so an amount equal to the limit passes and one smallest unit below it does not (a conversion compares the USDT it would book, `amountTo` rounded down to 6 decimals). An exchange with no recorded estimate is not checked. `0`: any amount below the estimate goes to review',
    ),
    /**
     * A partially_paid payment (less arrived than was asked): credited with its outcome_amount (credit), or kept for a
     * person's credit or ignore (review).
     */
    PARTIAL_PAYMENTS: z
      .enum(['credit', 'review'], { error: 'must be credit or review' })
      .default('review')
      .describe(
        "a `partially_paid` payment (less arrived than was asked): `review` keeps it for a person's credit or ignore (`partially_paid`, alerted); `credit` credits its IPN's `outcome_amount` at once, as a `finished` one. Any other value stops the start",
      ),
    WORKER_CONCURRENCY: positiveInt.max(64).default(4).describe('jobs run at once per worker process'),
    WORKER_POLL_INTERVAL_MS: positiveInt
      .max(60_000)
      .default(1000)
      .describe('queue poll interval (LISTEN/NOTIFY wakes workers sooner)'),
    // Below the queue's own limit of 25 attempts per job, so a payout always reaches review before its job gives up.
    PAYOUT_MAX_ATTEMPTS: positiveInt
      .max(20)
      .default(10)
      .describe(
        'failed runs of a payout (ChangeNow unreachable or refusing, say) before it goes to `needs_review`; at most 20',
      ),
    /** Payouts worth more than this wait in awaiting_approval for POST /api/payouts/:id/approve. Unset: none wait. */
    PAYOUT_APPROVAL_ABOVE_USD: usdAmount
      .optional()
      .describe(
        "payouts worth more wait in `awaiting_approval` for `POST /api/payouts/:id/approve` (USDT at 1 USD; an instant payout's ETH valued through a ChangeNow estimate)",
      ),
    /**
     * A payout whose channel changed its payout wallet (address, currency or network) less than this ago is held until
     * this long after the change. Unset or 0: no hold.
     */
    WALLET_CHANGE_HOLD: walletChangeHold
      .default(0)
      .describe(
        "after a channel's payout wallet (address, currency or network) changes, its payouts wait in `held` this long from the change before anything is sent (`24h`, say; at most `720h`). Unset or `0`: no hold. The change is alerted either way (`channel_wallet_changed`)",
      ),
    WEBHOOK_BODY_LIMIT_BYTES: positiveInt.max(1_048_576).default(65_536).describe('larger IPN bodies get 413'),
    /** IPN requests per minute per source address (an IPv6 source by its /64), per web process. 0: no limit. */
    WEBHOOK_RATE_LIMIT: z.coerce
      .number({ error: 'must be a whole number (0: no limit)' })
      .int()
      .min(0)
      .max(1_000_000)
      .default(600)
      .describe(
        "IPN requests per minute per source address (an IPv6 source counts by its /64), as a token bucket (a burst of a minute's allowance at once); over it: 429 with `Retry-After`, nothing read or written. Kept in each web process's memory: N web processes accept up to N × this. `0`: no limit",
      ),
    /** Unset: IPNs are taken from any address (the signature still decides). Set: from these addresses only, else 403. */
    NOWPAYMENTS_ALLOWED_IPS: addressList.describe(
      'comma-separated IPv4/IPv6 addresses or CIDR ranges IPNs are taken from; any other source gets 403 and nothing is written. A bad entry stops the start. Unset: any source (the signature still decides)',
    ),
    /** The reverse proxies whose X-Forwarded-For is believed. Unset: the socket's address is the source. */
    TRUSTED_PROXY: addressList.describe(
      "comma-separated addresses or CIDR ranges of the reverse proxies in front of payrail: from them, `X-Forwarded-For` names the source (walked from the right past every trusted hop). Unset: the socket's address is the source and `X-Forwarded-For` is ignored. Behind a proxy, set it, or every IPN shares the proxy's rate limit and no allowlist entry but the proxy's can match",
    ),
    HEALTH_WORKER_STALE_SECONDS: positiveInt
      .default(30)
      .describe(
        "a worker process unseen for longer is dead: `/health` stops counting it, and the next heartbeat of a live worker releases the jobs and queues it had locked (instead of the queue's own 4-hour lock expiry)",
      ),
    WORKER_HEARTBEAT_INTERVAL: duration
      .default(5_000)
      .describe(
        'how often a worker process records that it is alive; `HEALTH_WORKER_STALE_SECONDS` must be at least three of these',
      ),
    HEALTH_QUEUE_MAX_AGE_SECONDS: positiveInt
      .default(300)
      .describe('oldest runnable job age that makes `/health` fail'),
    CHANGENOW_API_URL: httpUrl
      .optional()
      .describe('ChangeNow API base, e.g. `https://api.changenow.io`. Local run: the simulator'),
    CHANGENOW_API_KEY: secret.optional().describe('sent as `x-changenow-api-key`'),
    CHANGENOW_CONNECT_TIMEOUT: duration.default(5_000).describe('connect limit of one call'),
    CHANGENOW_TIMEOUT: duration.default(15_000).describe('whole-response limit of one call'),
    ETH_RPC_URL: httpUrl.optional().describe('Ethereum JSON-RPC. Local run: anvil'),
    CHAIN_ID: positiveInt.default(1).describe('checked against the RPC at start: a mismatch stops the start'),
    /** The USDT token on the host wallet's chain (Tether's contract on Ethereum mainnet by default). */
    USDT_CONTRACT: z
      .string()
      .regex(/^0x[0-9a-fA-F]{40}$/, 'must be a 0x-prefixed contract address')
      .default('0xdAC17F958D2ee523a2206206994597C13D831ec7')
      .describe(
        'the USDT token the host wallet holds and sends (default: Tether on mainnet). Local run: the LocalUSDT payrail deploys',
      ),
    HOST_WALLET_PRIVATE_KEY: z
      .string()
      .regex(/^0x[0-9a-fA-F]{64}$/, 'must be 0x followed by 64 hex digits')
      .optional()
      .describe("the platform's host wallet (`0x` + 64 hex)"),
    /** The host wallet's address, for commands that only read the chain (check-ledger --chain, deposit) without the key. */
    HOST_WALLET_ADDRESS: z
      .string()
      .regex(/^0x[0-9a-fA-F]{40}$/, 'must be a 0x-prefixed address')
      .optional()
      .describe(
        "the host wallet's address, for `check-ledger --chain`, `deposit` and `withdrawal` run without the key (with the key too, they must match)",
      ),
    CONVERSION_INTERVAL: cronMinutes
      .default(60_000)
      .describe(
        'how often pending payments are looked at (a cron: whole minutes, 1m to 59m; intake also asks for a check within a second)',
      ),
    CONVERSION_MIN_USD: usdAmount.default('50').describe('smallest batch worth an exchange'),
    CONVERSION_MAX_WAIT: duration
      .default(3_600_000)
      .describe('a payment older than this is converted whatever the batch size'),
    CONVERSION_MAX_PAYMENTS: positiveInt
      .max(5_000)
      .default(500)
      .describe('payments per conversion at most; a run makes another at once only after a full one'),
    CONVERSION_POLL_INTERVAL: duration.default(15_000).describe('between two looks at an exchange'),
    CONVERSION_POLL_DEADLINE: duration
      .default(7_200_000)
      .describe(
        "an exchange (conversion or payout) not finished by then goes to review (one still `verifying` in ChangeNow's AML check too: its funds stay at ChangeNow, and a retry once the check clears looks again with a fresh deadline)",
      ),
    TRANSFER_CONFIRM_DEADLINE: duration
      .default(1_800_000)
      .describe('a transfer still unmined by then raises an alert (and is still followed)'),
    /** A transfer not mined this long after its latest version was signed gets a replacement with higher fees. Default: 3m on chain 1, 30s elsewhere. */
    TRANSFER_BUMP_AFTER: duration
      .optional()
      .describe(
        'a transfer whose latest version is unmined this long after it was signed gets a replacement at the same nonce with both fees at least 10 % higher (what nodes require), or what the network asks now if that is more',
      ),
    /** The most payrail ever offers per gas, in gwei (a decimal): at this ceiling a waiting transfer is alerted, not bumped. */
    TRANSFER_MAX_FEE_GWEI: z
      .string()
      .regex(/^(0|[1-9][0-9]{0,5})(\.[0-9]{1,9})?$/, 'must be a decimal amount of gwei such as 300 or 2.5')
      .default('300')
      .refine((text) => /[1-9]/.test(text), 'must be more than 0')
      .describe(
        "the most payrail ever offers per gas (decimal gwei); a first version is priced at most this, and a transfer whose next bump would pass it waits with a `transfer_fee_ceiling` alert. Raise it (or bump by hand) when the network's fees stay above it",
      ),
    /**
     * When a mined transfer counts: a number of blocks (its own included), or the chain's 'safe' or 'finalized' tag.
     * Default: 12 on chain 1, 1 elsewhere.
     */
    CHAIN_CONFIRMATIONS: z
      .union([z.enum(['safe', 'finalized']), positiveInt.max(1_000)], {
        error: 'must be a number of blocks (1 to 1000), safe or finalized',
      })
      .optional()
      .describe(
        "when a mined transfer counts: a number of blocks (its own included, 1 to 1000), or `safe` / `finalized` (the chain's block tags). Nothing is booked before; a reorganisation before then sends the same bytes again",
      ),
    /** How often the reconciler looks for conversions, payouts and transfers past their deadline. */
    RECONCILE_INTERVAL: cronMinutes
      .default(60_000)
      .describe('how often the reconciler looks for stuck conversions, payouts and transfers (a cron: whole minutes)'),
    /** How often the alert rules are evaluated (and the host wallet, chain RPC and ChangeNow observed). */
    ALERT_INTERVAL: cronMinutes
      .default(60_000)
      .describe(
        'how often the alert rules are evaluated and the host wallet, chain RPC and ChangeNow observed (whole minutes)',
      ),
    /** Alerts are POSTed here as JSON when they fire and when they resolve, signed with ALERT_WEBHOOK_SECRET. */
    ALERT_WEBHOOK_URL: httpUrl
      .optional()
      .describe(
        'alerts are POSTed here as JSON when they open and when they resolve (see [Alerts](operations.md#alerts))',
      ),
    ALERT_WEBHOOK_SECRET: secret
      .optional()
      .describe('HMAC-SHA256 key of the `x-payrail-signature` header (16+ characters)'),
    /** A conversion not completed this long after it was created is an alert. */
    ALERT_CONVERSION_PENDING_AFTER: duration
      .default(3_600_000)
      .describe('a conversion not completed this long after its creation is an alert'),
    /** A task with more runnable jobs than this is an alert. */
    ALERT_QUEUE_DEPTH: positiveInt.default(100).describe('a task with more runnable jobs is an alert'),
    /** A task whose oldest runnable job has waited longer than this is an alert. */
    ALERT_QUEUE_AGE: duration.default(300_000).describe('a task whose oldest runnable job waited longer is an alert'),
    /** Host wallet floors, in ETH and USDT: below them is an alert (before a transfer fails for lack of funds). */
    ALERT_HOST_ETH_MIN: tokenAmount.default('0.05').describe('host wallet floor (decimal ETH, compared in wei)'),
    ALERT_HOST_USDT_MIN: tokenAmount
      .default('100')
      .describe('host wallet floor (decimal USDT, compared in smallest units)'),
    /** A threshold channel whose available balance reached its threshold with no open batch for this long. */
    ALERT_THRESHOLD_NO_BATCH_AFTER: duration
      .default(3_600_000)
      .describe('a threshold channel at or over its threshold with no open batch for this long is an alert'),
    /**
     * An alert raised by an event (a refusal, a failed check) rather than a lasting state resolves on its own once it
     * has not recurred for this long; a person can resolve it sooner.
     */
    ALERT_EVENT_RESOLVE_AFTER: duration
      .default(86_400_000)
      .describe('an event alert (a refusal, a failed check) resolves on its own after this long without recurring'),
    PUBLIC_URL: httpUrl
      .optional()
      .describe(
        "payrail's public base URL (`https://pay.example.com`): checkout gives NOWPayments `PUBLIC_URL/webhooks/nowpayments` as an invoice's IPN address (required for `POST /api/invoices` outside a local run), and a webhook endpoint may not point at it",
      ),
    EVENTS_RETRY_MIN_DELAY: duration
      .default(10_000)
      .describe(
        'wait before the second attempt at an event delivery; later waits are 3, 6, 30, 90, 180, 360, 720, then 1440 times it',
      ),
    EVENTS_RETRY_WINDOW: duration
      .default(86_400_000)
      .describe(
        'an event delivery still failing this long after its first attempt is given up (failed, alerted, retryable)',
      ),
    EVENTS_DELIVERY_TIMEOUT: duration
      .default(10_000)
      .describe("one event delivery attempt: connect, send and the receiver's whole answer"),
    EVENTS_POLL_INTERVAL: duration
      .default(1_000)
      .describe('how often new events are looked for while a webhook endpoint is registered'),
    /**
     * Set: GET /metrics asks for this bearer token. Unset: /metrics is open (bind it to a private network). Set but
     * empty: an error, never "no token".
     */
    METRICS_TOKEN: secret
      .optional()
      .describe(
        'set: `GET /metrics` asks for `Authorization: Bearer <token>` (401 otherwise). Unset: open, so keep it on a private network. Set but empty: a configuration error (never "no token")',
      ),
    /** A worker-only process (payrail worker) serves its own /metrics on this port when set. */
    WORKER_METRICS_PORT: port
      .optional()
      .describe('a `payrail worker` process serves its own `/metrics` (its job and ChangeNow figures) on this port'),
    LOCAL_CHAIN_PORT: port.default(54330).describe('port of the local chain (local run)'),
    LOCAL_CHANGENOW_PORT: port.default(54331).describe('port of the ChangeNow simulator (local run)'),
    LOCAL_NOWPAYMENTS_PORT: port.default(54332).describe('port of the NOWPayments simulator (local run)'),
    /** Fault injection for crash tests: the worker SIGKILLs itself on reaching this point. Never set in production. */
    PAYRAIL_CRASH_AT: z
      .enum(CRASH_POINTS)
      .optional()
      .describe(
        'crash tests only: the worker SIGKILLs itself at `after_exchange_created`, `after_broadcast`, `before_settle` (conversions) or `payout_after_exchange_created`, `payout_after_broadcast`, `payout_before_complete` (logged loudly at start; a production build refuses to start with it set)',
      ),
    LOG_FORMAT: z
      .enum(['auto', 'json', 'pretty'])
      .default('auto')
      .describe(
        '`json`: one JSON object per line (for a log collector); `pretty`: readable lines; `auto`: pretty when the log goes to a terminal, JSON otherwise',
      ),
    LOG_LEVEL: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info')
      .describe('pino level'),
  })
  .describe(
    'The environment variables payrail reads; docs/configuration.md and .env.example are generated from this schema (npm run docs:config).',
  );

type Parsed = z.infer<typeof schema>;

export interface Config extends Omit<Parsed, SecretName> {
  ADMIN_TOKEN: string;
  NOWPAYMENTS_IPN_SECRET: string;
  CHANGENOW_API_KEY: string;
  HOST_WALLET_PRIVATE_KEY: `0x${string}`;
  /** True when payrail runs its own PostgreSQL (no DATABASE_URL): a local run. */
  embedded: boolean;
}

/** The public NOWPayments API, when NOWPAYMENTS_API_URL is unset outside a local run. */
export const NOWPAYMENTS_DEFAULT_API_URL = 'https://api.nowpayments.io';

/**
 * Secrets a local run generates when missing, besides the required ones: the NOWPayments API key, so that the local
 * default checks every credit with the simulator it starts (unless NOWPAYMENTS_API_URL points elsewhere).
 */
export type DevSecretName = SecretName | 'NOWPAYMENTS_API_KEY';

const SECRETS = ['ADMIN_TOKEN', 'NOWPAYMENTS_IPN_SECRET', 'CHANGENOW_API_KEY', 'HOST_WALLET_PRIVATE_KEY'] as const;
export type SecretName = (typeof SECRETS)[number];
/**
 * Values a config error never repeats: ADMIN_TOKENS holds tokens, the URLs may hold a password or an API key, and the
 * address lists' messages name the bad entry themselves.
 */
const NOT_ECHOED = [
  'ADMIN_TOKENS',
  'NOWPAYMENTS_API_KEY',
  'NOWPAYMENTS_API_URL',
  'CHANGENOW_API_URL',
  'DATABASE_URL',
  'ETH_RPC_URL',
  'ALERT_WEBHOOK_URL',
  'ALERT_WEBHOOK_SECRET',
  'METRICS_TOKEN',
  'NOWPAYMENTS_ALLOWED_IPS',
  'TRUSTED_PROXY',
];

export interface LoadOptions {
  /**
   * Supplies missing secrets for a local run (the caller prints that it did). Only honoured when no DATABASE_URL is
   * set: a deployment against a real database must be given its secrets.
   */
  devSecrets?: (missing: DevSecretName[]) => Partial<Record<DevSecretName, string>>;
  /**
   * False for commands that only read the database (status, check-ledger): an operator runs them with DATABASE_URL
   * alone, without the deployment's secrets or ChangeNow and RPC URLs. Missing secrets are then empty strings, which
   * those commands never use.
   */
  requireOutside?: boolean;
}

export function loadConfig(env: NodeJS.ProcessEnv, options: LoadOptions = {}): Config {
  const { input, problems } = readEnv(env);
  problems.push(...setButEmpty(env));
  const result = schema.safeParse(input);
  if (!result.success) problems.push(...schemaProblems(result.error.issues, input));
  const embedded = input.DATABASE_URL === undefined;
  const requireOutside = options.requireOutside ?? true;
  const missing = SECRETS.filter((name) => input[name] === undefined);
  const supplied = standInSecrets(input, missing, options, embedded && problems.length === 0);
  problems.push(...missingSecrets(missing, supplied, embedded));
  if (result.success) problems.push(...valueProblems(result.data, input, embedded));
  problems.push(...presenceProblems(input, embedded, requireOutside));
  if (!result.success || problems.length > 0) throw new ConfigError(problems);
  return withSecrets(result.data, supplied, embedded);
}

type Input = Record<string, string>;
type StandIns = Partial<Record<DevSecretName, string>>;

/** The schema's variables, trimmed, and a problem for each unknown variable that looks like one of payrail's. */
function readEnv(env: NodeJS.ProcessEnv): { input: Input; problems: string[] } {
  const known = new Set(Object.keys(schema.shape));
  const input: Input = {};
  const problems: string[] = [];
  for (const [name, raw] of Object.entries(env)) {
    if (raw === undefined) continue;
    if (known.has(name)) {
      const value = raw.trim();
      // An empty value is a missing value, never an empty secret or a zero.
      if (value !== '') input[name] = value;
    } else if (OUR_PREFIXES.some((prefix) => name.startsWith(prefix))) {
      problems.push(unknownVariable(name, known));
    }
  }
  return { input, problems };
}

function unknownVariable(name: string, known: Set<string>): string {
  const alike = [...known].filter((k) => k.startsWith(name.split('_')[0] ?? '')).join(', ');
  return `${name}: unknown variable (known: ${alike || 'see docs/configuration.md'})`;
}

/** Variables whose empty value must not be read as unset. */
function setButEmpty(env: NodeJS.ProcessEnv): string[] {
  const problems: string[] = [];
  // A deployment template's empty DATABASE_URL must not quietly become a local run with its own throwaway database.
  if (env.DATABASE_URL !== undefined && env.DATABASE_URL.trim() === '')
    problems.push('DATABASE_URL: set but empty (unset it for a local run with the embedded database)');
  // A secret store that delivered nothing must not quietly open /metrics to anyone who can reach the port.
  if (env.METRICS_TOKEN !== undefined && env.METRICS_TOKEN.trim() === '')
    problems.push('METRICS_TOKEN: set but empty (unset it to serve /metrics without a token)');
  return problems;
}

function schemaProblems(issues: z.core.$ZodIssue[], input: Input): string[] {
  return issues.map((issue) => {
    const name = String(issue.path[0] ?? '');
    const shown =
      (SECRETS as readonly string[]).includes(name) || NOT_ECHOED.includes(name) || input[name] === undefined
        ? ''
        : ` (got "${input[name]}")`;
    return `${issue.path.join('.')}: ${issue.message}${shown}`;
  });
}

/**
 * What stands in for missing secrets: empty strings for commands that only read the database (they never use them),
 * generated ones for a local run once nothing else is wrong, and nothing otherwise.
 */
function standInSecrets(input: Input, missing: SecretName[], options: LoadOptions, localAndClean: boolean): StandIns {
  if (!(options.requireOutside ?? true)) return Object.fromEntries(missing.map((name) => [name, '']));
  const devMissing: DevSecretName[] = [
    ...missing,
    ...(input.NOWPAYMENTS_API_KEY === undefined && input.NOWPAYMENTS_API_URL === undefined
      ? (['NOWPAYMENTS_API_KEY'] as const)
      : []),
  ];
  // Generated secrets are for a local run only: with a real database, a missing secret is an error.
  return localAndClean && devMissing.length > 0 && options.devSecrets ? options.devSecrets(devMissing) : {};
}

function missingSecrets(missing: SecretName[], supplied: StandIns, embedded: boolean): string[] {
  const where = embedded ? '' : ' when DATABASE_URL is set (no generated secrets outside a local run)';
  return missing.filter((name) => supplied[name] === undefined).map((name) => `${name}: required${where}`);
}

/** Parsed values that are wrong together. */
function valueProblems(data: Parsed, input: Input, embedded: boolean): string[] {
  const problems: string[] = [];
  // A live worker must never look dead: its queue locks would be released while it still runs the jobs.
  if (data.HEALTH_WORKER_STALE_SECONDS * 1_000 < 3 * data.WORKER_HEARTBEAT_INTERVAL) {
    problems.push(
      `HEALTH_WORKER_STALE_SECONDS: must be at least three heartbeat intervals (${(3 * data.WORKER_HEARTBEAT_INTERVAL) / 1_000}s with WORKER_HEARTBEAT_INTERVAL ${data.WORKER_HEARTBEAT_INTERVAL}ms)`,
    );
  }
  // Outside a local run, payrail talks to the real ChangeNow and chain: their addresses must be given.
  if (!embedded && data.CHAIN_ID !== 1 && input.USDT_CONTRACT === undefined) {
    problems.push(`USDT_CONTRACT: required when CHAIN_ID is not 1 (the default is Tether's mainnet contract)`);
  }
  return problems;
}

/** Variables another one, or the kind of run, requires or rules out. */
function presenceProblems(input: Input, embedded: boolean, requireOutside: boolean): string[] {
  const problems: string[] = [];
  // An unsigned alert could be forged by anyone who can reach the receiver: no URL without its secret.
  if (input.ALERT_WEBHOOK_URL !== undefined && input.ALERT_WEBHOOK_SECRET === undefined) {
    problems.push('ALERT_WEBHOOK_SECRET: required when ALERT_WEBHOOK_URL is set (alerts are signed with it)');
  }
  if (!embedded && requireOutside) {
    for (const name of ['CHANGENOW_API_URL', 'ETH_RPC_URL'] as const) {
      if (input[name] === undefined)
        problems.push(`${name}: required when DATABASE_URL is set (a local run starts a simulator instead)`);
    }
  }
  // A production build must not be crashable by one stray variable: only a run from source reads it.
  if (input.PAYRAIL_CRASH_AT !== undefined && !RUNS_FROM_SOURCE) {
    problems.push('PAYRAIL_CRASH_AT: crash tests only; a production build (dist/) does not read it, unset it');
  }
  return problems;
}

function withSecrets(data: Parsed, supplied: StandIns, embedded: boolean): Config {
  const secrets = {} as Record<SecretName, string>;
  for (const name of SECRETS) secrets[name] = (data[name] ?? supplied[name]) as string;
  const apiKey = data.NOWPAYMENTS_API_KEY ?? supplied.NOWPAYMENTS_API_KEY;
  return {
    ...data,
    ...(secrets as Pick<Config, SecretName>),
    ...(apiKey !== undefined && { NOWPAYMENTS_API_KEY: apiKey }),
    embedded,
  };
}

/**
 * Values that must never appear in logs or API output: the secrets, ADMIN_TOKENS' tokens, the wallet key's hex
 * without its 0x, and the credentials a URL may carry (DATABASE_URL's password; ETH_RPC_URL's user and password and
 * any path segment or query value of 16+ characters, where providers put API keys: /v3/<key>, ?apikey=<key>).
 */
export function secretValues(config: Config): string[] {
  return [
    ...SECRETS.map((name) => config[name]),
    config.HOST_WALLET_PRIVATE_KEY.slice(2),
    ...config.ADMIN_TOKENS.map((t) => t.token),
    ...(config.ALERT_WEBHOOK_SECRET === undefined ? [] : [config.ALERT_WEBHOOK_SECRET]),
    ...(config.METRICS_TOKEN === undefined ? [] : [config.METRICS_TOKEN]),
    ...(config.NOWPAYMENTS_API_KEY === undefined ? [] : [config.NOWPAYMENTS_API_KEY]),
    ...urlCredentials(config.ALERT_WEBHOOK_URL, { pathKeys: true }),
    ...urlCredentials(config.DATABASE_URL, { pathKeys: false }),
    ...urlCredentials(config.ETH_RPC_URL, { pathKeys: true }),
    // The services' API keys travel in headers, but a proxy in front of them may put credentials in the URL.
    ...urlCredentials(config.NOWPAYMENTS_API_URL, { pathKeys: true }),
    ...urlCredentials(config.CHANGENOW_API_URL, { pathKeys: true }),
  ];
}

const API_KEY_MIN_LENGTH = 16;

function urlCredentials(text: string | undefined, options: { pathKeys: boolean }): string[] {
  if (text === undefined) return [];
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return [];
  }
  const found: string[] = [];
  const both = (value: string) => {
    found.push(value);
    try {
      found.push(decodeURIComponent(value));
    } catch {
      // not percent-encoded text: the raw form is enough
    }
  };
  if (url.password) both(url.password);
  if (options.pathKeys) {
    if (url.username.length >= API_KEY_MIN_LENGTH) both(url.username);
    for (const segment of url.pathname.split('/')) if (segment.length >= API_KEY_MIN_LENGTH) both(segment);
    for (const [, value] of url.searchParams) if (value.length >= API_KEY_MIN_LENGTH) found.push(value);
  }
  return [...new Set(found)];
}
