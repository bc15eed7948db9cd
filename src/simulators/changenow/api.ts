/**
 * The ChangeNow v2 API as the simulator answers it: the subset payrail uses (estimate, create, by-id, list by
 * userId), behind the API key and whatever fault the simulator was told to show.
 */
import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import { parse as parseLossless } from 'lossless-json';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { HttpError, sleepUnlessGone, type Answer } from '../http.ts';
import { otherAddress, type Faults } from './faults.ts';
import { amountText, createdView, exchangeView, num } from './json.ts';
import {
  DEFAULT_BELOW_ESTIMATE_PERCENT,
  DEFAULT_VERIFYING_MS,
  type ForcedEnd,
  type ForcedEndOptions,
  type PairConfig,
  type SimExchange,
} from './model.ts';
import type { ExchangeProgress } from './progress.ts';
import { Decimal, pairOf, quote } from './pricing.ts';

export interface ApiContext {
  readonly apiKey: string;
  readonly pairs: Map<string, PairConfig>;
  readonly exchanges: Map<string, SimExchange>;
  readonly faults: Faults;
  readonly progress: ExchangeProgress;
}

type Handler = (ctx: ApiContext, query: URLSearchParams, body: string) => Answer | Promise<Answer>;

const ROUTES = new Map<string, Handler>([
  ['GET /v2/exchange/estimated-amount', estimate],
  ['POST /v2/exchange', create],
  ['GET /v2/exchange/by-id', byId],
  ['GET /v2/exchanges', list],
]);

export async function apiRoute(
  ctx: ApiContext,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL,
  body: string,
): Promise<Answer> {
  // Key and faults come before the route: a wrong path meets the same 401, 5xx or delay as a right one.
  await admit(ctx, req, res);
  const handler = ROUTES.get(`${req.method} ${url.pathname}`);
  if (!handler) throw new HttpError(404, 'not_found', `no route ${req.method} ${url.pathname}`);
  return handler(ctx, url.searchParams, body);
}

/** Lets a call through to its route: refused on a wrong key or a 401/5xx fault, held first under the slow one. */
async function admit(ctx: ApiContext, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const { fault } = ctx.faults;
  if (fault === '401' || req.headers['x-changenow-api-key'] !== ctx.apiKey)
    throw new HttpError(401, 'unauthorized', 'Invalid api key');
  if (fault === '5xx') throw new HttpError(503, 'service_unavailable', 'Service temporarily unavailable');
  if (fault !== 'slow') return;
  await sleepUnlessGone(ctx.faults.slowMs, res);
  // The client gave up (or the simulator stopped) while we slept: nobody is left to answer.
  if (res.destroyed) throw new HttpError(499, 'client_closed', 'client closed the request');
}

function estimate(ctx: ApiContext, query: URLSearchParams): Answer {
  const [from, to, fromNet, toNet] = ['fromCurrency', 'toCurrency', 'fromNetwork', 'toNetwork'].map((k) =>
    (query.get(k) ?? '').toLowerCase(),
  ) as [string, string, string, string];
  const fromNetwork = fromNet || from;
  const toNetwork = toNet || to;
  const pair = pairOf(ctx.pairs, from, fromNetwork, to, toNetwork);
  const fromAmount = fromAmountFor(pair, query.get('fromAmount'));
  return [
    200,
    {
      fromCurrency: from,
      fromNetwork,
      toCurrency: to,
      toNetwork,
      flow: query.get('flow') ?? 'standard',
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

function create(ctx: ApiContext, _query: URLSearchParams, body: string): Answer {
  const request = exchangeRequest(ctx.pairs, jsonObject(body));
  const ex = newExchange(request, ctx.faults.takeNextEnd());
  ctx.exchanges.set(ex.id, ex);
  return [200, createdView(ex)];
}

async function byId(ctx: ApiContext, query: URLSearchParams): Promise<Answer> {
  const ex = ctx.exchanges.get(query.get('id') ?? '');
  if (!ex) throw new HttpError(404, 'not_found', 'Exchange not found');
  await ctx.progress.advance(ex);
  return [200, exchangeView(ex)];
}

async function list(ctx: ApiContext, query: URLSearchParams): Promise<Answer> {
  const userId = query.get('userId');
  const found = [...ctx.exchanges.values()].filter((ex) => userId === null || ex.userId === userId);
  for (const ex of found) await ctx.progress.advance(ex);
  return [200, { count: found.length, exchanges: found.map(exchangeView) }];
}

/** A create request, checked as ChangeNow checks it: a live pair, at least its minimum, a plausible address. */
interface ExchangeRequest {
  fromCurrency: string;
  fromNetwork: string;
  toCurrency: string;
  toNetwork: string;
  pair: PairConfig;
  fromAmount: Decimal;
  address: string;
  refundAddress: string | null;
  userId: string | null;
  payload: Record<string, unknown> | null;
}

function exchangeRequest(pairs: Map<string, PairConfig>, input: Record<string, unknown>): ExchangeRequest {
  const text = (k: string) => (typeof input[k] === 'string' ? input[k].toLowerCase() : '');
  const [fromCurrency, fromNetwork, toCurrency, toNetwork] = [
    text('fromCurrency'),
    text('fromNetwork'),
    text('toCurrency'),
    text('toNetwork'),
  ];
  const pair = pairOf(pairs, fromCurrency, fromNetwork, toCurrency, toNetwork);
  const fromAmount = fromAmountFor(pair, amountText(input.fromAmount));
  if (typeof input.address !== 'string' || input.address.length < 10)
    throw new HttpError(400, 'not_valid_address', 'Invalid address');
  return {
    fromCurrency,
    fromNetwork,
    toCurrency,
    toNetwork,
    pair,
    fromAmount,
    address: input.address,
    refundAddress: typeof input.refundAddress === 'string' ? input.refundAddress : null,
    userId: typeof input.userId === 'string' ? input.userId : null,
    payload:
      input.payload !== null && typeof input.payload === 'object' && !Array.isArray(input.payload)
        ? (input.payload as Record<string, unknown>)
        : null,
  };
}

/** A waiting exchange for `request`, with a fresh payin address, misbehaving as the armed forced end says. */
function newExchange(request: ExchangeRequest, armed: { end: ForcedEnd; options: ForcedEndOptions }): SimExchange {
  const { end, options } = armed;
  const { fromAmount } = request;
  const key = generatePrivateKey();
  const now = new Date().toISOString();
  return {
    id: randomBytes(7).toString('hex'),
    status: 'waiting',
    fromCurrency: request.fromCurrency,
    fromNetwork: request.fromNetwork,
    toCurrency: request.toCurrency,
    toNetwork: request.toNetwork,
    expectedAmountFrom: (end === 'wrong_amount' ? fromAmount.mul(2) : fromAmount).toFixed(),
    expectedAmountTo: quote(request.pair, fromAmount, request.toCurrency).toFixed(),
    amountFrom: null,
    amountTo: null,
    payinAddress: privateKeyToAccount(key).address,
    payinPrivateKey: key,
    payoutAddress: end === 'wrong_payout_address' ? otherAddress(request.address) : request.address,
    refundAddress: request.refundAddress,
    userId: request.userId,
    payload: request.payload,
    payinHash: null,
    payoutHash: null,
    refundHash: null,
    createdAt: now,
    updatedAt: now,
    depositReceivedAt: null,
    // The exchange was created unlike the request: that misbehaviour is done, it goes on as any other.
    forcedEnd: end === 'wrong_payout_address' || end === 'wrong_amount' ? null : end,
    belowEstimatePercent:
      end === 'below_estimate' ? (options.belowEstimatePercent ?? DEFAULT_BELOW_ESTIMATE_PERCENT) : null,
    verifyingMs: end === 'verifying' ? (options.verifyingMs ?? DEFAULT_VERIFYING_MS) : null,
    verifyingUntil: null,
    verifyingLooks: 0,
  };
}

/** A request body that is a JSON object, read losslessly: every JSON number keeps its source text, never a float. */
function jsonObject(body: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = parseLossless(body);
  } catch {
    throw new HttpError(400, 'bad_request', 'body must be JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new HttpError(400, 'bad_request', 'body must be a JSON object');
  return parsed as Record<string, unknown>;
}

/** The amount to exchange, refused unless it is a positive decimal of at least the pair's minimum. */
function fromAmountFor(pair: PairConfig, value: string | null): Decimal {
  if (value === null || !/^\d+(\.\d+)?$/.test(value))
    throw new HttpError(400, 'bad_request', 'fromAmount is required and must be a positive number');
  const amount = new Decimal(value);
  if (amount.lte(0)) throw new HttpError(400, 'bad_request', 'fromAmount must be positive');
  if (amount.lt(pair.minAmount))
    throw new HttpError(400, 'deposit_too_small', `Amount is less than minimal: ${pair.minAmount}`);
  return amount;
}
