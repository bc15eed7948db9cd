/** What the client refuses to send: bad options when it is made, bad requests before they leave. */
import { isPlainDecimal } from '../../money/index.ts';
import type { CreateExchangeRequest, EstimateRequest } from './types.ts';

/** Currency tickers and network names as ChangeNow spells them (`usdt`, `eth`, `bsc`, `arbitrum`). */
const TICKER_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;
/** Exchange ids are short hex strings; be a little wider, never allow separators. */
export const EXCHANGE_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
export const MAX_TEXT = 200;

export function checkBaseUrl(baseUrl: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(baseUrl);
  } catch {
    throw new TypeError('ChangeNow client: baseUrl must be an absolute http(s) URL');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    throw new TypeError('ChangeNow client: baseUrl must use http or https');
  if (parsed.search !== '' || parsed.hash !== '' || parsed.username !== '' || parsed.password !== '') {
    throw new TypeError('ChangeNow client: baseUrl must not carry a query, fragment or credentials');
  }
  return parsed;
}

export function checkApiKey(apiKey: string): string {
  if (typeof apiKey !== 'string' || apiKey.trim() === '' || /[\r\n]/.test(apiKey)) {
    throw new TypeError('ChangeNow client: apiKey must be a non-empty single-line string');
  }
  return apiKey;
}

export function checkTimeouts(options: { connectTimeoutMs: number; responseTimeoutMs: number }): void {
  for (const name of ['connectTimeoutMs', 'responseTimeoutMs'] as const) {
    const value = options[name];
    if (!Number.isInteger(value) || value <= 0)
      throw new RangeError(`ChangeNow client: ${name} must be a positive whole number of milliseconds`);
  }
}

export function checkPair(request: {
  fromCurrency: string;
  toCurrency: string;
  fromNetwork: string;
  toNetwork: string;
}): string | null {
  for (const field of ['fromCurrency', 'toCurrency', 'fromNetwork', 'toNetwork'] as const) {
    const value = request[field];
    if (typeof value !== 'string' || !TICKER_RE.test(value)) return `${field} must be a ticker such as "usdt" or "eth"`;
  }
  return null;
}

export function checkEstimateAmounts(request: EstimateRequest): string | null {
  const [needed, refused] =
    request.type === 'reverse' ? (['toAmount', 'fromAmount'] as const) : (['fromAmount', 'toAmount'] as const);
  if (request[refused] !== undefined) return `${refused} must not be given for a ${request.type ?? 'direct'} estimate`;
  const value = request[needed];
  if (value === undefined) return `${needed} is required for a ${request.type ?? 'direct'} estimate`;
  return isPlainDecimal(value) ? null : `${needed} must be a plain decimal such as "0.1455"`;
}

export function checkCreate(request: CreateExchangeRequest): string | null {
  if (typeof request.fromAmount !== 'string' || !isPlainDecimal(request.fromAmount))
    return 'fromAmount must be a plain decimal such as "0.1455"';
  if (!isShortText(request.address)) return 'address must be a non-empty string';
  if (request.refundAddress !== undefined && !isShortText(request.refundAddress))
    return 'refundAddress must be a non-empty string when given';
  if (!isShortText(request.userId)) return 'userId must be a non-empty string';
  if (request.rateId !== undefined && !isShortText(request.rateId))
    return 'rateId must be a non-empty string when given';
  if (request.payload === null || typeof request.payload !== 'object' || Array.isArray(request.payload))
    return 'payload must be an object of strings';
  for (const [key, value] of Object.entries(request.payload)) {
    if (typeof value !== 'string') return `payload.${key} must be a string`;
  }
  return null;
}

export function isShortText(value: unknown): value is string {
  return typeof value === 'string' && value.trim() !== '' && value.length <= MAX_TEXT;
}
