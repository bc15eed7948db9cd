/**
 * A ChangeNow v2 simulator over real HTTP: the subset payrail uses (estimate, create, by-id, list by userId), with
 * configurable rates and fees, exchanges that progress once the deposit reaches the payin address on the local chain
 * (it reads the chain), and fault injection (down, 5xx, 401, slow, a forced final status) through /sim routes.
 *
 * Amounts leave as JSON numbers, as ChangeNow sends them, written from exact decimals (never a float).
 */
import type http from 'node:http';
import { randomBytes } from 'node:crypto';
import { Decimal as BaseDecimal } from 'decimal.js';
import { isLosslessNumber, LosslessNumber, parse as parseLossless } from 'lossless-json';
import { createPublicClient, createWalletClient, erc20Abi, http as viemHttp, type Address } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { HttpError, jsonApi, LocalServer, sleepUnlessGone, type Answer } from '../http.ts';

// Enough significant digits for 18-decimal amounts times any rate; every rounding below is explicit.
const Decimal = BaseDecimal.clone({ precision: 80 });
type Decimal = BaseDecimal;

export interface PairConfig {
  /** Units of `to` per unit of `from`. */
  rate: string;
  /** Taken from the amount out, in `to` units. */
  withdrawalFee: string;
  /** Smallest `from` amount accepted. */
  minAmount: string;
}

export interface SimulatorOptions {
  port: number;
  apiKey: string;
  rpcUrl?: string;
  /** ERC-20 contracts by currency, for deposits in tokens (e.g. usdt). */
  tokens?: Record<string, Address>;
  /** Pairs by `from/fromNetwork->to/toNetwork`. */
  pairs?: Record<string, PairConfig>;
  /** Time an exchange spends in each of confirming, exchanging and sending once the deposit is seen. */
  stepMs?: number;
  /**
   * Pays finished exchanges out on the chain from this key (ETH, and the tokens in `tokens`), as ChangeNow would:
   * the payout hash is then a real transaction. It must hold ETH for gas and the tokens it pays.
   */
  treasuryKey?: `0x${string}`;
}

const FORCED_ENDS: readonly string[] = [
  'failed',
  'refunded',
  'refunded_short',
  'short_payout',
  'payout_elsewhere',
  'wrong_payout_address',
  'wrong_amount',
  'below_estimate',
  'verifying',
  'expired_funded',
  'no_amount_to',
];
/**
 * How the next exchange misbehaves: it ends failed or refunded (refunded_short: 1 % less, as network fees taken
 * from a real refund would), finishes paying one unit short or paying another
 * address, or is created unlike the request (another payout address, or expecting twice the amount), as a
 * compromised or buggy exchange could. below_estimate finishes paying (and reporting) a percentage less than its
 * estimate, as a floating rate that moved against us; verifying holds the deposit in ChangeNow's AML check for a while
 * before the exchange goes on; expired_funded ends `expired` although its deposit arrived, and returns nothing;
 * no_amount_to finishes and pays as usual but reports no amountTo, as an exchange whose answer lost a field could.
 */
export type ForcedEnd =
  | 'failed'
  | 'refunded'
  | 'refunded_short'
  | 'short_payout'
  | 'payout_elsewhere'
  | 'wrong_payout_address'
  | 'wrong_amount'
  | 'below_estimate'
  | 'verifying'
  | 'expired_funded'
  | 'no_amount_to'
  | null;

/** How far below its estimate a below_estimate exchange finishes: well past payrail's default 3 % allowance. */
export const DEFAULT_BELOW_ESTIMATE_PERCENT = '5';
/** How long a verifying exchange sits in the AML check once its deposit is seen. */
export const DEFAULT_VERIFYING_MS = 3_000;

/** The knobs of a forced end that has them; the defaults above otherwise. */
export interface ForcedEndOptions {
  /** below_estimate: percent below the estimate (a decimal, 0 to below 100), rounded down to the currency's units. */
  belowEstimatePercent?: string;
  /** verifying: how long the AML check lasts once the deposit is seen (releaseVerification ends it sooner). */
  verifyingMs?: number;
}

/** Another address of the same format: an EVM address at random, else the same text with its last character changed. */
function otherAddress(address: string): string {
  if (/^0x[0-9a-fA-F]{40}$/.test(address)) return privateKeyToAccount(generatePrivateKey()).address;
  return `${address.slice(0, -1)}${address.endsWith('z') ? 'y' : 'z'}`;
}

export type Fault = 'none' | 'down' | '5xx' | '401' | 'slow';
export type ExchangeState =
  'waiting' | 'verifying' | 'confirming' | 'exchanging' | 'sending' | 'finished' | 'failed' | 'refunded' | 'expired';

export interface SimExchange {
  id: string;
  status: ExchangeState;
  fromCurrency: string;
  fromNetwork: string;
  toCurrency: string;
  toNetwork: string;
  expectedAmountFrom: string;
  expectedAmountTo: string;
  amountFrom: string | null;
  amountTo: string | null;
  payinAddress: Address;
  payinPrivateKey: `0x${string}`;
  payoutAddress: string;
  refundAddress: string | null;
  userId: string | null;
  payload: Record<string, unknown> | null;
  payinHash: string | null;
  payoutHash: string | null;
  refundHash: string | null;
  createdAt: string;
  updatedAt: string;
  depositReceivedAt: number | null;
  /** A forced ending set by fault injection when the exchange was created (see ForcedEnd). */
  forcedEnd: ForcedEnd;
  /** below_estimate: the percent amountTo falls below the estimate. */
  belowEstimatePercent: string | null;
  /** verifying: how long the AML check lasts once the deposit is seen. */
  verifyingMs: number | null;
  /** verifying: when the AML check ends (set when the deposit is seen); the later steps are timed from it. */
  verifyingUntil: number | null;
  /** How many looks (by-id or list) found it verifying: a test sees its client kept asking through the check. */
  verifyingLooks: number;
}

export const DEFAULT_PAIRS: Record<string, PairConfig> = {
  'eth/eth->usdt/eth': { rate: '3000', withdrawalFee: '1', minAmount: '0.001' },
  'usdt/eth->eth/eth': { rate: '0.00033', withdrawalFee: '0.0005', minAmount: '10' },
  'usdt/eth->usdt/trx': { rate: '1', withdrawalFee: '1', minAmount: '10' },
  'usdt/eth->usdt/bsc': { rate: '1', withdrawalFee: '0.3', minAmount: '10' },
  'usdt/eth->btc/btc': { rate: '0.0000105', withdrawalFee: '0.00002', minAmount: '10' },
  'usdt/eth->sol/sol': { rate: '0.0066', withdrawalFee: '0.001', minAmount: '10' },
  // Instant payouts: one payment's ETH straight to the owner's currency.
  'eth/eth->usdt/trx': { rate: '3000', withdrawalFee: '1', minAmount: '0.001' },
  'eth/eth->btc/btc': { rate: '0.0315', withdrawalFee: '0.00002', minAmount: '0.001' },
  'eth/eth->sol/sol': { rate: '19.8', withdrawalFee: '0.001', minAmount: '0.001' },
};

const DECIMALS: Record<string, number> = {
  eth: 18,
  usdt: 6,
  usdc: 6,
  btc: 8,
  ltc: 8,
  sol: 9,
  ton: 9,
  trx: 6,
  xmr: 12,
  bnb: 18,
};
const STATUS_STEPS: ExchangeState[] = ['confirming', 'exchanging', 'sending'];
const FAULTS: readonly Fault[] = ['none', 'down', '5xx', '401', 'slow'];

export interface ChangeNowSimulator {
  readonly url: string;
  readonly exchanges: Map<string, SimExchange>;
  setFault(fault: Fault, options?: { slowMs?: number }): Promise<void>;
  /** The next created exchange ends this way instead of finishing normally. */
  failNextExchange(status: ForcedEnd, options?: ForcedEndOptions): void;
  /** A verifying exchange leaves the AML check at its next look, whatever its verifyingMs. */
  releaseVerification(exchangeId: string): void;
  setPair(key: string, pair: PairConfig): void;
  stop(): Promise<void>;
}

export async function startChangeNowSimulator(options: SimulatorOptions): Promise<ChangeNowSimulator> {
  const pairs = new Map(Object.entries({ ...DEFAULT_PAIRS, ...options.pairs }));
  const exchanges = new Map<string, SimExchange>();
  const stepMs = options.stepMs ?? 0;
  const chain = options.rpcUrl
    ? createPublicClient({ transport: viemHttp(options.rpcUrl, { timeout: 5_000, retryCount: 0 }) })
    : undefined;
  let fault: Fault = 'none';
  let slowMs = 2_000;
  let nextEnd: ForcedEnd = null;
  let nextEndOptions: ForcedEndOptions = {};
  const payouts = new Map<string, Promise<string>>();
  const treasury =
    options.treasuryKey && options.rpcUrl
      ? createTreasury(options.rpcUrl, options.treasuryKey, options.tokens ?? {})
      : undefined;

  const pairOf = (from: string, fromNetwork: string, to: string, toNetwork: string): PairConfig => {
    const pair = pairs.get(`${from}/${fromNetwork}->${to}/${toNetwork}`);
    if (!pair) throw new HttpError(400, 'pair_is_inactive', 'Pair is inactive');
    return pair;
  };

  const quote = (pair: PairConfig, fromAmount: Decimal, to: string): Decimal => {
    const out = fromAmount.mul(pair.rate).minus(pair.withdrawalFee);
    return Decimal.max(out, 0).toDecimalPlaces(DECIMALS[to] ?? 8, Decimal.ROUND_DOWN);
  };

  const amountParam = (value: string | null, name: string): Decimal => {
    if (value === null || !/^\d+(\.\d+)?$/.test(value))
      throw new HttpError(400, 'bad_request', `${name} is required and must be a positive number`);
    const amount = new Decimal(value);
    if (amount.lte(0)) throw new HttpError(400, 'bad_request', `${name} must be positive`);
    return amount;
  };

  /** Moves an exchange on: deposit seen on chain → confirming → exchanging → sending → finished (or forced end). */
  const advance = async (ex: SimExchange): Promise<void> => {
    if (ex.status === 'waiting') {
      const received = await depositOf(ex);
      // Another poll of the same exchange (by-id and list, two workers) may have seen the deposit while we read the
      // chain: only the first sighting moves the exchange on, or a finished exchange would go back to confirming.
      if (ex.status !== 'waiting' || received === null || received.lte(0)) return;
      ex.amountFrom = received.toFixed();
      ex.depositReceivedAt = Date.now();
      if (ex.forcedEnd === 'verifying') {
        ex.verifyingUntil = ex.depositReceivedAt + (ex.verifyingMs ?? DEFAULT_VERIFYING_MS);
        ex.status = 'verifying';
      } else {
        ex.status = 'confirming';
      }
      ex.updatedAt = new Date().toISOString();
    }
    if (ex.status === 'verifying') {
      if (Date.now() < (ex.verifyingUntil as number)) {
        ex.verifyingLooks++;
        return;
      }
      // Cleared: it goes on as an exchange whose deposit has just arrived.
      ex.verifyingUntil = Date.now();
      ex.status = 'confirming';
      ex.updatedAt = new Date().toISOString();
    }
    if (ex.depositReceivedAt === null || !STATUS_STEPS.includes(ex.status)) return;
    const step =
      stepMs === 0
        ? STATUS_STEPS.length
        : Math.floor((Date.now() - (ex.verifyingUntil ?? ex.depositReceivedAt)) / stepMs);
    if (step < STATUS_STEPS.length) {
      const next = STATUS_STEPS[step] as ExchangeState;
      if (next !== ex.status) {
        ex.status = next;
        ex.updatedAt = new Date().toISOString();
      }
      return;
    }
    ex.updatedAt = new Date().toISOString();
    const refunding = ex.forcedEnd === 'refunded' || ex.forcedEnd === 'refunded_short';
    if (
      refunding &&
      treasury &&
      ex.refundAddress &&
      ex.fromNetwork === 'eth' &&
      (ex.fromCurrency === 'eth' || options.tokens?.[ex.fromCurrency])
    ) {
      // The deposit goes back to the refund address on chain, as ChangeNow would send it: once per exchange.
      let pending = payouts.get(ex.id);
      if (!pending) {
        const deposit = new Decimal(ex.amountFrom as string);
        const back =
          ex.forcedEnd === 'refunded_short'
            ? deposit.mul('0.99').toDecimalPlaces(DECIMALS[ex.fromCurrency] ?? 18, BaseDecimal.ROUND_DOWN)
            : deposit;
        pending = treasury.pay(ex.fromCurrency, ex.refundAddress as Address, back);
        payouts.set(ex.id, pending);
        pending.catch(() => payouts.delete(ex.id));
      }
      const refundHash = await pending;
      if (ex.status === 'refunded') return;
      ex.refundHash = refundHash;
      ex.status = 'refunded';
      return;
    }
    if (ex.forcedEnd === 'failed' || refunding) {
      ex.status = ex.forcedEnd === 'failed' ? 'failed' : 'refunded';
      return;
    }
    if (ex.forcedEnd === 'expired_funded') {
      ex.status = 'expired';
      return;
    }
    if (ex.forcedEnd === 'payout_elsewhere') {
      ex.payoutAddress = otherAddress(ex.payoutAddress);
      ex.forcedEnd = null;
    }
    const pair = pairOf(ex.fromCurrency, ex.fromNetwork, ex.toCurrency, ex.toNetwork);
    const quoted = quote(pair, new Decimal(ex.amountFrom as string), ex.toCurrency);
    const amountTo =
      ex.forcedEnd === 'below_estimate'
        ? belowBy(quoted, ex.belowEstimatePercent ?? DEFAULT_BELOW_ESTIMATE_PERCENT, ex.toCurrency)
        : quoted;
    let payoutHash = `0x${randomBytes(32).toString('hex')}`;
    if (
      treasury &&
      ex.toNetwork === 'eth' &&
      amountTo.gt(0) &&
      (ex.toCurrency === 'eth' || options.tokens?.[ex.toCurrency])
    ) {
      // One payout per exchange, however many polls arrive while it is being sent.
      let pending = payouts.get(ex.id);
      if (!pending) {
        // short_payout: report amountTo but pay one smallest unit less, as a misbehaving exchange could.
        const unit = new Decimal(10).pow(-(DECIMALS[ex.toCurrency] ?? 18));
        pending = treasury.pay(
          ex.toCurrency,
          ex.payoutAddress as Address,
          ex.forcedEnd === 'short_payout' ? amountTo.minus(unit) : amountTo,
        );
        payouts.set(ex.id, pending);
        pending.catch(() => payouts.delete(ex.id));
      }
      payoutHash = await pending;
    }
    if (ex.status === 'finished') return;
    ex.amountTo = ex.forcedEnd === 'no_amount_to' ? null : amountTo.toFixed();
    ex.payoutHash = payoutHash;
    ex.status = 'finished';
  };

  const depositOf = async (ex: SimExchange): Promise<Decimal | null> => {
    if (!chain) return null;
    const decimals = DECIMALS[ex.fromCurrency] ?? 18;
    const token = options.tokens?.[ex.fromCurrency];
    let units: bigint;
    if (ex.fromCurrency === 'eth') units = await chain.getBalance({ address: ex.payinAddress });
    else if (token)
      units = await chain.readContract({
        address: token,
        abi: erc20Abi,
        functionName: 'balanceOf',
        args: [ex.payinAddress],
      });
    else return null;
    return new Decimal(units.toString()).div(new Decimal(10).pow(decimals));
  };

  const view = (ex: SimExchange) => ({
    id: ex.id,
    status: ex.status,
    actionsAvailable: false,
    fromCurrency: ex.fromCurrency,
    fromNetwork: ex.fromNetwork,
    toCurrency: ex.toCurrency,
    toNetwork: ex.toNetwork,
    expectedAmountFrom: num(ex.expectedAmountFrom),
    expectedAmountTo: num(ex.expectedAmountTo),
    amountFrom: numOrNull(ex.amountFrom),
    amountTo: numOrNull(ex.amountTo),
    payinAddress: ex.payinAddress,
    payoutAddress: ex.payoutAddress,
    payinHash: ex.payinHash,
    payoutHash: ex.payoutHash,
    refundHash: ex.refundHash,
    refundAddress: ex.refundAddress,
    createdAt: ex.createdAt,
    updatedAt: ex.updatedAt,
    depositReceivedAt: ex.depositReceivedAt === null ? null : new Date(ex.depositReceivedAt).toISOString(),
    userId: ex.userId,
    payload: ex.payload,
  });

  const routes = async (req: http.IncomingMessage, res: http.ServerResponse, body: string): Promise<Answer> => {
    const url = new URL(req.url ?? '/', 'http://sim');
    if (url.pathname.startsWith('/sim/')) return simRoute(req.method ?? 'GET', url, body, res);
    if (fault === '401' || req.headers['x-changenow-api-key'] !== options.apiKey)
      throw new HttpError(401, 'unauthorized', 'Invalid api key');
    if (fault === '5xx') throw new HttpError(503, 'service_unavailable', 'Service temporarily unavailable');
    if (fault === 'slow') {
      await sleepUnlessGone(slowMs, res);
      // The client gave up (or the simulator stopped) while we slept: nobody is left to answer.
      if (res.destroyed) throw new HttpError(499, 'client_closed', 'client closed the request');
    }
    const q = url.searchParams;

    if (req.method === 'GET' && url.pathname === '/v2/exchange/estimated-amount') {
      const [from, to, fromNet, toNet] = ['fromCurrency', 'toCurrency', 'fromNetwork', 'toNetwork'].map((k) =>
        (q.get(k) ?? '').toLowerCase(),
      ) as [string, string, string, string];
      const fromNetwork = fromNet || from;
      const toNetwork = toNet || to;
      const pair = pairOf(from, fromNetwork, to, toNetwork);
      const fromAmount = amountParam(q.get('fromAmount'), 'fromAmount');
      if (fromAmount.lt(pair.minAmount))
        throw new HttpError(400, 'deposit_too_small', `Amount is less than minimal: ${pair.minAmount}`);
      return [
        200,
        {
          fromCurrency: from,
          fromNetwork,
          toCurrency: to,
          toNetwork,
          flow: q.get('flow') ?? 'standard',
          type: 'direct',
          rateId: null,
          validUntil: null,
          transactionSpeedForecast: '10-60',
          warningMessage: null,
          depositFee: num('0'),
          withdrawalFee: num(pair.withdrawalFee),
          userId: null,
          fromAmount: num(fromAmount.toFixed()),
          toAmount: num(quote(pair, fromAmount, to).toFixed()),
        },
      ];
    }
    if (req.method === 'POST' && url.pathname === '/v2/exchange') {
      // Lossless parsing: every JSON number keeps its source text, so no float ever touches an amount.
      let parsed: unknown;
      try {
        parsed = parseLossless(body);
      } catch {
        throw new HttpError(400, 'bad_request', 'body must be JSON');
      }
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
        throw new HttpError(400, 'bad_request', 'body must be a JSON object');
      const input = parsed as Record<string, unknown>;
      const text = (k: string) => (typeof input[k] === 'string' ? input[k].toLowerCase() : '');
      const pair = pairOf(text('fromCurrency'), text('fromNetwork'), text('toCurrency'), text('toNetwork'));
      const fromAmount = amountParam(amountText(input.fromAmount), 'fromAmount');
      if (fromAmount.lt(pair.minAmount))
        throw new HttpError(400, 'deposit_too_small', `Amount is less than minimal: ${pair.minAmount}`);
      if (typeof input.address !== 'string' || input.address.length < 10)
        throw new HttpError(400, 'not_valid_address', 'Invalid address');
      const key = generatePrivateKey();
      const now = new Date().toISOString();
      const ex: SimExchange = {
        id: randomBytes(7).toString('hex'),
        status: 'waiting',
        fromCurrency: text('fromCurrency'),
        fromNetwork: text('fromNetwork'),
        toCurrency: text('toCurrency'),
        toNetwork: text('toNetwork'),
        expectedAmountFrom: (nextEnd === 'wrong_amount' ? fromAmount.mul(2) : fromAmount).toFixed(),
        expectedAmountTo: quote(pair, fromAmount, text('toCurrency')).toFixed(),
        amountFrom: null,
        amountTo: null,
        payinAddress: privateKeyToAccount(key).address,
        payinPrivateKey: key,
        payoutAddress: nextEnd === 'wrong_payout_address' ? otherAddress(input.address) : input.address,
        refundAddress: typeof input.refundAddress === 'string' ? input.refundAddress : null,
        userId: typeof input.userId === 'string' ? input.userId : null,
        payload:
          input.payload !== null && typeof input.payload === 'object' && !Array.isArray(input.payload)
            ? (input.payload as Record<string, unknown>)
            : null,
        payinHash: null,
        payoutHash: null,
        refundHash: null,
        createdAt: now,
        updatedAt: now,
        depositReceivedAt: null,
        forcedEnd: nextEnd === 'wrong_payout_address' || nextEnd === 'wrong_amount' ? null : nextEnd,
        belowEstimatePercent:
          nextEnd === 'below_estimate' ? (nextEndOptions.belowEstimatePercent ?? DEFAULT_BELOW_ESTIMATE_PERCENT) : null,
        verifyingMs: nextEnd === 'verifying' ? (nextEndOptions.verifyingMs ?? DEFAULT_VERIFYING_MS) : null,
        verifyingUntil: null,
        verifyingLooks: 0,
      };
      nextEnd = null;
      nextEndOptions = {};
      exchanges.set(ex.id, ex);
      return [
        200,
        {
          id: ex.id,
          fromAmount: num(ex.expectedAmountFrom),
          toAmount: num(ex.expectedAmountTo),
          flow: 'standard',
          type: 'direct',
          payinAddress: ex.payinAddress,
          payoutAddress: ex.payoutAddress,
          payinExtraId: null,
          payoutExtraId: null,
          fromCurrency: ex.fromCurrency,
          toCurrency: ex.toCurrency,
          refundAddress: ex.refundAddress,
          refundExtraId: null,
          fromNetwork: ex.fromNetwork,
          toNetwork: ex.toNetwork,
        },
      ];
    }
    if (req.method === 'GET' && url.pathname === '/v2/exchange/by-id') {
      const ex = exchanges.get(q.get('id') ?? '');
      if (!ex) throw new HttpError(404, 'not_found', 'Exchange not found');
      await advance(ex);
      return [200, view(ex)];
    }
    if (req.method === 'GET' && url.pathname === '/v2/exchanges') {
      const userId = q.get('userId');
      const list = [...exchanges.values()].filter((ex) => userId === null || ex.userId === userId);
      for (const ex of list) await advance(ex);
      return [200, { count: list.length, exchanges: list.map(view) }];
    }
    throw new HttpError(404, 'not_found', `no route ${req.method} ${url.pathname}`);
  };

  const simRoute = async (method: string, url: URL, body: string, res: http.ServerResponse): Promise<Answer> => {
    if (method === 'POST' && url.pathname === '/sim/fault') {
      let input: {
        fault?: unknown;
        slowMs?: unknown;
        nextExchange?: unknown;
        belowEstimatePercent?: unknown;
        verifyingMs?: unknown;
      };
      try {
        input = JSON.parse(body || '{}') as typeof input;
      } catch {
        throw new HttpError(400, 'bad_request', 'body must be JSON');
      }
      if (input === null || typeof input !== 'object')
        throw new HttpError(400, 'bad_request', 'body must be a JSON object');
      if (input.fault !== undefined && !FAULTS.includes(input.fault as Fault))
        throw new HttpError(400, 'bad_request', `fault must be one of ${FAULTS.join(', ')}`);
      if (input.slowMs !== undefined && !(Number.isInteger(input.slowMs) && (input.slowMs as number) >= 0))
        throw new HttpError(400, 'bad_request', 'slowMs must be a whole number of ms');
      if (
        input.nextExchange !== undefined &&
        input.nextExchange !== null &&
        !FORCED_ENDS.includes(input.nextExchange as string)
      ) {
        throw new HttpError(400, 'bad_request', `nextExchange must be one of ${FORCED_ENDS.join(', ')} or null`);
      }
      if (
        input.belowEstimatePercent !== undefined &&
        !(typeof input.belowEstimatePercent === 'string' && isPercent(input.belowEstimatePercent))
      ) {
        throw new HttpError(400, 'bad_request', 'belowEstimatePercent must be a decimal string from 0 to below 100');
      }
      if (
        input.verifyingMs !== undefined &&
        !(Number.isInteger(input.verifyingMs) && (input.verifyingMs as number) >= 0)
      )
        throw new HttpError(400, 'bad_request', 'verifyingMs must be a whole number of ms');
      if (input.slowMs !== undefined) slowMs = input.slowMs as number;
      if (input.nextExchange !== undefined) {
        control.failNextExchange(input.nextExchange as ForcedEnd, {
          ...(input.belowEstimatePercent !== undefined && { belowEstimatePercent: input.belowEstimatePercent }),
          ...(input.verifyingMs !== undefined && { verifyingMs: input.verifyingMs as number }),
        });
      }
      const next = input.fault as Fault | undefined;
      if (next === 'down') {
        // Going down closes every connection, this one included: answer first, then close.
        res.once('finish', () => void control.setFault('down'));
        return [200, { fault: 'down', nextExchange: nextEnd }];
      }
      if (next !== undefined) await control.setFault(next);
      return [200, { fault, nextExchange: nextEnd }];
    }
    if (method === 'GET' && url.pathname === '/sim/exchanges')
      return [200, { exchanges: [...exchanges.values()].map(view) }];
    throw new HttpError(404, 'not_found', `no route ${method} ${url.pathname}`);
  };

  const server = new LocalServer();
  const api = jsonApi({
    route: routes,
    errorBody: (_status, code, message) => ({ error: code, message }),
    internalCode: 'internal_error',
  });
  await server.listen(api, options.port);

  const control: ChangeNowSimulator = {
    url: server.url,
    exchanges,
    async setFault(next, opts = {}) {
      if (opts.slowMs !== undefined) slowMs = opts.slowMs;
      if (next === 'down' && fault !== 'down') await server.close();
      if (next !== 'down' && fault === 'down') await server.reopen();
      fault = next;
    },
    failNextExchange(status, opts = {}) {
      if (opts.belowEstimatePercent !== undefined && !isPercent(opts.belowEstimatePercent))
        throw new Error(
          `belowEstimatePercent must be a decimal from 0 to below 100 (got ${opts.belowEstimatePercent})`,
        );
      nextEnd = status;
      nextEndOptions = opts;
    },
    releaseVerification(exchangeId) {
      const ex = exchanges.get(exchangeId);
      if (ex?.status === 'verifying') ex.verifyingUntil = Date.now();
    },
    setPair(key, pair) {
      pairs.set(key, pair);
    },
    async stop() {
      if (fault !== 'down') await server.close();
    },
  };
  return control;
}

/** The simulator's own wallet: sends payouts one at a time (one nonce sequence) and waits for each receipt. */
function createTreasury(rpcUrl: string, key: `0x${string}`, tokens: Record<string, Address>) {
  // A local chain mines at once: look for receipts every 100 ms, not viem's default 4 s.
  const client = createPublicClient({ pollingInterval: 100, transport: viemHttp(rpcUrl, { timeout: 15_000 }) });
  const account = privateKeyToAccount(key);
  let queue: Promise<unknown> = Promise.resolve();
  const send = async (currency: string, to: Address, amount: Decimal): Promise<string> => {
    const chainId = await client.getChainId();
    const wallet = createWalletClient({
      account,
      chain: {
        id: chainId,
        name: 'local',
        nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
        rpcUrls: { default: { http: [rpcUrl] } },
      },
      transport: viemHttp(rpcUrl, { timeout: 15_000 }),
    });
    const units = BigInt(amount.mul(new Decimal(10).pow(DECIMALS[currency] ?? 18)).toFixed(0, Decimal.ROUND_DOWN));
    const token = tokens[currency];
    const hash =
      currency === 'eth' || !token
        ? await wallet.sendTransaction({ to, value: units })
        : await wallet.writeContract({ address: token, abi: erc20Abi, functionName: 'transfer', args: [to, units] });
    const receipt = await client.waitForTransactionReceipt({ hash, timeout: 15_000 });
    if (receipt.status !== 'success') throw new Error(`simulator payout ${hash} reverted`);
    return hash;
  };
  return {
    pay(currency: string, to: Address, amount: Decimal): Promise<string> {
      const next = queue.then(() => send(currency, to, amount));
      queue = next.catch(() => undefined);
      return next;
    },
  };
}

function isPercent(text: string): boolean {
  return /^(0|[1-9][0-9]?)(\.[0-9]+)?$/.test(text);
}

/** `amount` less `percent` of it, rounded down to the currency's smallest unit: never less than `percent` below. */
function belowBy(amount: Decimal, percent: string, currency: string): Decimal {
  return amount
    .mul(new Decimal(100).minus(percent))
    .div(100)
    .toDecimalPlaces(DECIMALS[currency] ?? 8, Decimal.ROUND_DOWN);
}

/** The exact text of a JSON amount: a number's source text (exponent form made plain, exactly) or a numeric string. */
function amountText(value: unknown): string | null {
  const raw = isLosslessNumber(value) ? value.value : typeof value === 'string' ? value : null;
  if (raw === null || !/^(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]{1,3})?$/.test(raw)) return null;
  return new Decimal(raw).toFixed();
}

/** A JSON number written from exact decimal text. */
function num(text: string): LosslessNumber {
  return new LosslessNumber(text);
}

function numOrNull(text: string | null): LosslessNumber | null {
  return text === null ? null : num(text);
}
