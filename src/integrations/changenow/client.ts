/**
 * The ChangeNow v2 client: four calls, one HTTP request each, no retries (the calling job owns retry and backoff,
 * using the error's `kind`). Requests carry the partner key in `x-changenow-api-key`; responses are parsed with
 * lossless-json and validated with zod, so every amount is an exact decimal string taken from the number's source
 * text, and the one amount we send (create's fromAmount) is written as a JSON number with exactly the caller's text.
 */
import { LosslessNumber, parse, stringify } from 'lossless-json';
import type { z } from 'zod';
import { isPlainDecimal } from '../../money/index.ts';
import {
  ChangeNowError,
  errorFromHttpStatus,
  type ChangeNowEndpoint,
  type ChangeNowErrorInit,
  type ErrorBody,
} from './errors.ts';
import {
  createdExchangeSchema,
  describeIssues,
  errorBodySchema,
  estimateSchema,
  exchangeListSchema,
  exchangeStatusSchema,
} from './responses.ts';
import { fetchTransport, nodeTransport, TransportError, type Transport } from './transport.ts';
import { observeClient, type ChangeNowObserver } from './observe.ts';
import type { ChangeNowClient, CreateExchangeRequest, EstimateRequest, ExchangeListFilter } from './types.ts';

export const API_KEY_HEADER = 'x-changenow-api-key';

export interface ChangeNowClientOptions {
  /** e.g. https://api.changenow.io (no trailing /v2). */
  baseUrl: string;
  apiKey: string;
  /** DNS lookup + TCP connect (+ TLS handshake). Not applicable with an injected `fetch`. */
  connectTimeoutMs: number;
  /** Whole request, from start to the last byte of the response body. */
  responseTimeoutMs: number;
  /** Replaces the built-in undici transport (tests, instrumentation). */
  fetch?: typeof fetch;
  /** Told of every call: endpoint, duration and how it ended (metrics). */
  observer?: ChangeNowObserver;
}

/** Currency tickers and network names as ChangeNow spells them (`usdt`, `eth`, `bsc`, `arbitrum`). */
const TICKER_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;
/** Exchange ids are short hex strings; be a little wider, never allow separators. */
const EXCHANGE_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const MAX_TEXT = 200;

export function createChangeNowClient(options: ChangeNowClientOptions): ChangeNowClient {
  const base = checkBaseUrl(options.baseUrl);
  const apiKey = options.apiKey;
  if (typeof apiKey !== 'string' || apiKey.trim() === '' || /[\r\n]/.test(apiKey)) {
    throw new TypeError('ChangeNow client: apiKey must be a non-empty single-line string');
  }
  for (const name of ['connectTimeoutMs', 'responseTimeoutMs'] as const) {
    const value = options[name];
    if (!Number.isInteger(value) || value <= 0)
      throw new RangeError(`ChangeNow client: ${name} must be a positive whole number of milliseconds`);
  }
  const transport: Transport = options.fetch
    ? fetchTransport(options.fetch, { responseTimeoutMs: options.responseTimeoutMs })
    : nodeTransport({ connectTimeoutMs: options.connectTimeoutMs, responseTimeoutMs: options.responseTimeoutMs });

  /** Builds our own errors with the key scrubbed from the text (HTTP error bodies are scrubbed in readErrorBody). */
  const failure = (init: ChangeNowErrorInit): ChangeNowError =>
    new ChangeNowError({ ...init, detail: redact(init.detail, apiKey) });
  const invalid = (endpoint: ChangeNowEndpoint, detail: string): ChangeNowError =>
    failure({
      kind: 'permanent',
      code: 'invalid_request',
      httpStatus: null,
      endpoint,
      detail: `request not sent: ${detail}`,
    });

  function url(path: string, query: Record<string, string | undefined> = {}): URL {
    const target = new URL(base.href);
    target.pathname = `${base.pathname.replace(/\/+$/, '')}${path}`;
    for (const [key, value] of Object.entries(query)) if (value !== undefined) target.searchParams.set(key, value);
    return target;
  }

  async function call<S extends z.ZodType>(
    endpoint: ChangeNowEndpoint,
    method: 'GET' | 'POST',
    target: URL,
    body: string | null,
    schema: S,
  ): Promise<z.output<S>> {
    const headers: Record<string, string> = { accept: 'application/json', [API_KEY_HEADER]: apiKey };
    if (body !== null) headers['content-type'] = 'application/json';
    let status: number;
    let bytes: Uint8Array;
    try {
      ({ status, bytes } = await transport({ method, url: target, headers, body }));
    } catch (error) {
      if (!(error instanceof TransportError)) throw error;
      if (error.reason === 'timeout')
        throw failure({
          kind: 'transient',
          code: 'timeout',
          httpStatus: null,
          endpoint,
          detail: `timeout: ${error.detail}`,
        });
      if (error.reason === 'too_large')
        throw failure({
          kind: 'transient',
          code: 'malformed_response',
          httpStatus: null,
          endpoint,
          detail: error.detail,
        });
      throw failure({
        kind: 'transient',
        code: 'network',
        httpStatus: null,
        endpoint,
        detail: error.detail,
        cause: error.cause,
      });
    }

    const json = parseJson(bytes);
    if (status < 200 || status > 299) {
      throw errorFromHttpStatus(endpoint, status, json.ok ? readErrorBody(json.value, apiKey) : null);
    }
    const malformed = (why: string) =>
      failure({
        kind: 'transient',
        code: 'malformed_response',
        httpStatus: status,
        endpoint,
        detail: `HTTP ${status} with a malformed body: ${why}`,
      });
    if (!json.ok) throw malformed(json.error);
    const result = schema.safeParse(json.value);
    if (!result.success) throw malformed(describeIssues(result.error));
    return result.data;
  }

  const client: ChangeNowClient = {
    async estimate(request) {
      const problem = checkPair(request) ?? checkEstimateAmounts(request);
      if (problem) throw invalid('estimate', problem);
      const flow = request.flow ?? 'standard';
      const target = url('/v2/exchange/estimated-amount', {
        fromCurrency: request.fromCurrency,
        toCurrency: request.toCurrency,
        fromAmount: request.fromAmount,
        toAmount: request.toAmount,
        fromNetwork: request.fromNetwork,
        toNetwork: request.toNetwork,
        flow,
        type: request.type ?? 'direct',
        // A fixed-rate estimate only returns a rateId (needed to create at that rate) when asked for one.
        useRateId: flow === 'fixed-rate' ? 'true' : undefined,
      });
      return call('estimate', 'GET', target, null, estimateSchema);
    },

    async createExchange(request) {
      const problem = checkPair(request) ?? checkCreate(request);
      if (problem) throw invalid('create', problem);
      const body: Record<string, unknown> = {
        fromCurrency: request.fromCurrency,
        toCurrency: request.toCurrency,
        fromNetwork: request.fromNetwork,
        toNetwork: request.toNetwork,
        // A JSON number whose text is exactly the caller's decimal: never through a float.
        fromAmount: new LosslessNumber(request.fromAmount),
        address: request.address,
        refundAddress: request.refundAddress,
        userId: request.userId,
        payload: { ...request.payload },
        flow: request.flow ?? 'standard',
        type: request.type ?? 'direct',
        rateId: request.rateId,
      };
      const text = stringify(body);
      if (text === undefined) throw invalid('create', 'body could not be serialised');
      return call('create', 'POST', url('/v2/exchange'), text, createdExchangeSchema);
    },

    async getExchange(id) {
      if (typeof id !== 'string' || !EXCHANGE_ID_RE.test(id))
        throw invalid('by-id', 'id must be a ChangeNow exchange id');
      const status = await call('by-id', 'GET', url('/v2/exchange/by-id', { id }), null, exchangeStatusSchema);
      if (status.id !== id) {
        throw failure({
          kind: 'transient',
          code: 'malformed_response',
          httpStatus: 200,
          endpoint: 'by-id',
          detail: `asked for exchange ${id}, got ${JSON.stringify(status.id.slice(0, 64))}`,
        });
      }
      return status;
    },

    async listExchanges(filter) {
      const userId = (filter as ExchangeListFilter | null | undefined)?.userId;
      if (!isShortText(userId)) throw invalid('list', 'userId must be a non-empty string');
      const list = await call('list', 'GET', url('/v2/exchanges', { userId }), null, exchangeListSchema);
      const stranger = list.exchanges.find((exchange) => exchange.userId !== userId);
      if (stranger) {
        throw failure({
          kind: 'transient',
          code: 'malformed_response',
          httpStatus: 200,
          endpoint: 'list',
          detail: `asked for the exchanges of userId ${JSON.stringify(userId.slice(0, 64))}, got exchange ${JSON.stringify(stranger.id.slice(0, 64))} of userId ${JSON.stringify(stranger.userId?.slice(0, 64) ?? null)}`,
        });
      }
      return list.exchanges;
    },
  };
  return options.observer ? observeClient(client, options.observer) : client;
}

function checkBaseUrl(baseUrl: string): URL {
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

function checkPair(request: {
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

function checkEstimateAmounts(request: EstimateRequest): string | null {
  const [needed, refused] =
    request.type === 'reverse' ? (['toAmount', 'fromAmount'] as const) : (['fromAmount', 'toAmount'] as const);
  if (request[refused] !== undefined) return `${refused} must not be given for a ${request.type ?? 'direct'} estimate`;
  const value = request[needed];
  if (value === undefined) return `${needed} is required for a ${request.type ?? 'direct'} estimate`;
  return isPlainDecimal(value) ? null : `${needed} must be a plain decimal such as "0.1455"`;
}

function checkCreate(request: CreateExchangeRequest): string | null {
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

function isShortText(value: unknown): value is string {
  return typeof value === 'string' && value.trim() !== '' && value.length <= MAX_TEXT;
}

type JsonReading = { ok: true; value: unknown } | { ok: false; error: string };

const utf8 = new TextDecoder('utf-8', { fatal: true });

function parseJson(bytes: Uint8Array): JsonReading {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { ok: false, error: 'body is not UTF-8' };
  }
  if (text.trim() === '') return { ok: false, error: 'empty body' };
  try {
    return { ok: true, value: parse(text) };
  } catch (error) {
    return { ok: false, error: `not JSON (${(error as Error).message.slice(0, 120)})` };
  }
}

/** The `{ error, message }` of a non-2xx body, cleaned and with the key scrubbed (a server may echo it back). */
function readErrorBody(value: unknown, apiKey: string): ErrorBody | null {
  const result = errorBodySchema.safeParse(value);
  if (!result.success) return null;
  return { error: cleanText(result.data.error, apiKey), message: cleanText(result.data.message, apiKey) };
}

/** ChangeNow's words go into our messages and logs: one line, bounded, never the key. */
function cleanText(value: string | null, apiKey: string): string | null {
  if (value === null) return null;
  const oneLine = redact(value, apiKey)
    // eslint-disable-next-line no-control-regex -- control characters are what this replaces: the text is kept on one line
    .replace(/[\u0000-\u001f\u007f]+/g, ' ')
    .trim();
  return oneLine.length > MAX_TEXT ? `${oneLine.slice(0, MAX_TEXT)}…` : oneLine;
}

function redact(text: string, secret: string): string {
  return text.split(secret).join('[redacted]');
}
