/**
 * One call to ChangeNow as the client makes it: the URL, the headers with the key, the transport, and every way the
 * answer can fail turned into a ChangeNowError that never carries the key.
 */
import { parse } from 'lossless-json';
import type { z } from 'zod';
import {
  ChangeNowError,
  errorFromHttpStatus,
  type ChangeNowEndpoint,
  type ChangeNowErrorInit,
  type ErrorBody,
} from './errors.ts';
import { MAX_TEXT } from './checks.ts';
import { describeIssues, errorBodySchema } from './responses.ts';
import { TransportError, type Transport } from './transport.ts';

export const API_KEY_HEADER = 'x-changenow-api-key';

export interface ClientContext {
  /** The checked base URL (no query, fragment or credentials). */
  readonly base: URL;
  readonly apiKey: string;
  readonly transport: Transport;
}

/** Builds our own errors with the key scrubbed from the text (HTTP error bodies are scrubbed in readErrorBody). */
export function failure(ctx: ClientContext, init: ChangeNowErrorInit): ChangeNowError {
  return new ChangeNowError({ ...init, detail: redact(init.detail, ctx.apiKey) });
}

export function invalid(ctx: ClientContext, endpoint: ChangeNowEndpoint, detail: string): ChangeNowError {
  return failure(ctx, {
    kind: 'permanent',
    code: 'invalid_request',
    httpStatus: null,
    endpoint,
    detail: `request not sent: ${detail}`,
  });
}

/** An answer we cannot use: transient, since the next one may be whole. */
export function malformed(
  ctx: ClientContext,
  endpoint: ChangeNowEndpoint,
  httpStatus: number | null,
  detail: string,
): ChangeNowError {
  return failure(ctx, { kind: 'transient', code: 'malformed_response', httpStatus, endpoint, detail });
}

export function urlFor(ctx: ClientContext, path: string, query: Record<string, string | undefined> = {}): URL {
  const target = new URL(ctx.base.href);
  target.pathname = `${ctx.base.pathname.replace(/\/+$/, '')}${path}`;
  for (const [key, value] of Object.entries(query)) if (value !== undefined) target.searchParams.set(key, value);
  return target;
}

export async function call<S extends z.ZodType>(
  ctx: ClientContext,
  endpoint: ChangeNowEndpoint,
  method: 'GET' | 'POST',
  target: URL,
  body: string | null,
  schema: S,
): Promise<z.output<S>> {
  const headers: Record<string, string> = { accept: 'application/json', [API_KEY_HEADER]: ctx.apiKey };
  if (body !== null) headers['content-type'] = 'application/json';
  let status: number;
  let bytes: Uint8Array;
  try {
    ({ status, bytes } = await ctx.transport({ method, url: target, headers, body }));
  } catch (error) {
    throw transportFailure(ctx, endpoint, error);
  }

  const json = parseJson(bytes);
  if (status < 200 || status > 299) {
    throw errorFromHttpStatus(endpoint, status, json.ok ? readErrorBody(json.value, ctx.apiKey) : null);
  }
  if (!json.ok) throw malformed(ctx, endpoint, status, `HTTP ${status} with a malformed body: ${json.error}`);
  const result = schema.safeParse(json.value);
  if (!result.success)
    throw malformed(ctx, endpoint, status, `HTTP ${status} with a malformed body: ${describeIssues(result.error)}`);
  return result.data;
}

/** No answer at all: transient whatever the reason; anything not from the transport is a bug and passes through. */
function transportFailure(ctx: ClientContext, endpoint: ChangeNowEndpoint, error: unknown): unknown {
  if (!(error instanceof TransportError)) return error;
  if (error.reason === 'timeout')
    return failure(ctx, {
      kind: 'transient',
      code: 'timeout',
      httpStatus: null,
      endpoint,
      detail: `timeout: ${error.detail}`,
    });
  if (error.reason === 'too_large') return malformed(ctx, endpoint, null, error.detail);
  return failure(ctx, {
    kind: 'transient',
    code: 'network',
    httpStatus: null,
    endpoint,
    detail: error.detail,
    cause: error.cause,
  });
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
