/**
 * The ChangeNow v2 client: four calls, one HTTP request each, no retries (the calling job owns retry and backoff,
 * using the error's `kind`). Requests carry the partner key in `x-changenow-api-key`; responses are parsed with
 * lossless-json and validated with zod, so every amount is an exact decimal string taken from the number's source
 * text, and the one amount we send (create's fromAmount) is written as a JSON number with exactly the caller's text.
 */
import { checkApiKey, checkBaseUrl, checkTimeouts } from './checks.ts';
import { createExchange, estimate, getExchange, listExchanges } from './endpoints.ts';
import { observeClient, type ChangeNowObserver } from './observe.ts';
import type { ClientContext } from './request.ts';
import { fetchTransport, nodeTransport } from './transport.ts';
import type { ChangeNowClient } from './types.ts';

export { API_KEY_HEADER } from './request.ts';

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

export function createChangeNowClient(options: ChangeNowClientOptions): ChangeNowClient {
  const base = checkBaseUrl(options.baseUrl);
  const apiKey = checkApiKey(options.apiKey);
  checkTimeouts(options);
  const transport = options.fetch
    ? fetchTransport(options.fetch, { responseTimeoutMs: options.responseTimeoutMs })
    : nodeTransport({ connectTimeoutMs: options.connectTimeoutMs, responseTimeoutMs: options.responseTimeoutMs });
  const ctx: ClientContext = { base, apiKey, transport };
  const client: ChangeNowClient = {
    estimate: (request) => estimate(ctx, request),
    createExchange: (request) => createExchange(ctx, request),
    getExchange: (id) => getExchange(ctx, id),
    listExchanges: (filter) => listExchanges(ctx, filter),
  };
  return options.observer ? observeClient(client, options.observer) : client;
}
