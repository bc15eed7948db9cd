/**
 * One HTTP exchange with ChangeNow: a request goes out once and comes back as a status and the raw body bytes, or
 * fails with a TransportError. No retries, no redirects, no parsing here.
 *
 * Why node:http/node:https rather than the global fetch: fetch (undici) in Node 20 exposes no connect phase, so a
 * separate connect timeout is impossible without importing undici's Agent, which is not a dependency of ours. With
 * node:http the socket is ours to watch: the connect deadline (DNS lookup + TCP connect, + TLS handshake for https)
 * ends when the socket reports 'connect'/'secureConnect' (or immediately for a reused keep-alive socket), and the
 * total deadline covers everything up to the last byte of the body. Both are AbortSignals (an AbortController fired
 * by the connect timer, and AbortSignal.timeout for the total) combined with AbortSignal.any; the first to fire
 * destroys the request. We also get the body as bytes, which lossless parsing needs anyway.
 *
 * An injected `fetch` (tests, instrumentation) is still supported: it gets the total deadline as its signal, raced
 * by us so a fetch that ignores its signal cannot hang the caller. The connect deadline cannot apply there.
 */
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';

/** A ChangeNow answer is a few hundred bytes; anything near this is not a ChangeNow answer. */
export const MAX_RESPONSE_BYTES = 1_048_576;

export interface TransportRequest {
  method: 'GET' | 'POST';
  url: URL;
  headers: Record<string, string>;
  body: string | null;
}

export interface TransportResponse {
  status: number;
  bytes: Uint8Array;
}

export type Transport = (request: TransportRequest) => Promise<TransportResponse>;

export interface TransportTimeouts {
  connectTimeoutMs: number;
  responseTimeoutMs: number;
}

export type TransportFailure = 'timeout' | 'network' | 'too_large';

/** Why no usable response arrived. `detail` never contains request headers. */
export class TransportError extends Error {
  override name = 'TransportError';
  constructor(
    readonly reason: TransportFailure,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(detail, options);
  }
}

export function nodeTransport(timeouts: TransportTimeouts): Transport {
  return (request) =>
    new Promise<TransportResponse>((resolve, reject) => {
      const { connectTimeoutMs, responseTimeoutMs } = timeouts;
      const connectDeadline = new AbortController();
      const totalDeadline = AbortSignal.timeout(responseTimeoutMs);
      const deadline = AbortSignal.any([connectDeadline.signal, totalDeadline]);
      const connectTimer = setTimeout(() => connectDeadline.abort(), connectTimeoutMs);
      let settled = false;

      const settle = (outcome: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(connectTimer);
        deadline.removeEventListener('abort', onDeadline);
        outcome();
      };

      const onDeadline = (): void => {
        const detail = connectDeadline.signal.aborted
          ? `no connection within ${connectTimeoutMs} ms`
          : `no complete response within ${responseTimeoutMs} ms`;
        settle(() => reject(new TransportError('timeout', detail)));
        outgoing.destroy();
      };

      const isHttps = request.url.protocol === 'https:';
      const headers: Record<string, string> = { ...request.headers };
      if (request.body !== null) headers['content-length'] = String(Buffer.byteLength(request.body, 'utf8'));
      const outgoing = (isHttps ? https : http).request(request.url, { method: request.method, headers });

      outgoing.on('socket', (socket: Socket) => {
        // A reused keep-alive socket is already connected (and, for https, past its handshake).
        if (!socket.connecting) {
          clearTimeout(connectTimer);
          return;
        }
        socket.once(isHttps ? 'secureConnect' : 'connect', () => clearTimeout(connectTimer));
      });

      outgoing.on('response', (incoming) => {
        const chunks: Buffer[] = [];
        let size = 0;
        incoming.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) {
            settle(() =>
              reject(new TransportError('too_large', `response body larger than ${MAX_RESPONSE_BYTES} bytes`)),
            );
            outgoing.destroy();
            return;
          }
          chunks.push(chunk);
        });
        incoming.on('end', () =>
          settle(() => resolve({ status: incoming.statusCode ?? 0, bytes: Buffer.concat(chunks) })),
        );
        incoming.on('error', (error) => settle(() => reject(networkError(error))));
        incoming.on('close', () => {
          if (!incoming.complete)
            settle(() => reject(new TransportError('network', 'connection closed before the response was complete')));
        });
      });

      // After settling (deadline, oversize) destroy() may still emit 'error': this listener absorbs it.
      outgoing.on('error', (error) => settle(() => reject(networkError(error))));

      if (deadline.aborted) {
        onDeadline();
        return;
      }
      deadline.addEventListener('abort', onDeadline, { once: true });
      outgoing.end(request.body ?? undefined);
    });
}

export function fetchTransport(
  fetchImpl: typeof fetch,
  timeouts: Pick<TransportTimeouts, 'responseTimeoutMs'>,
): Transport {
  return async (request) => {
    const { responseTimeoutMs } = timeouts;
    const deadline = AbortSignal.timeout(responseTimeoutMs);
    const timedOut = () => new TransportError('timeout', `no complete response within ${responseTimeoutMs} ms`);
    try {
      return await raceDeadline(deadline, timedOut, async () => {
        const init: RequestInit = {
          method: request.method,
          headers: request.headers,
          signal: deadline,
          redirect: 'manual',
        };
        if (request.body !== null) init.body = request.body;
        const response = await fetchImpl(request.url, init);
        return { status: response.status, bytes: await readCapped(response) };
      });
    } catch (error) {
      if (error instanceof TransportError) throw error;
      if (deadline.aborted) throw timedOut();
      throw networkError(error);
    }
  };
}

/** Runs `work`, rejecting with `onAbort()` as soon as `signal` fires even if `work` ignores the signal. */
function raceDeadline<T>(signal: AbortSignal, onAbort: () => Error, work: () => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(onAbort());
    if (signal.aborted) return abort();
    signal.addEventListener('abort', abort, { once: true });
    work().then(
      (value) => {
        signal.removeEventListener('abort', abort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', abort);
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- passes on work()'s own rejection, whatever it is
        reject(error);
      },
    );
  });
}

async function readCapped(response: Response): Promise<Uint8Array> {
  if (response.body === null) return new Uint8Array(0);
  const reader: ReadableStreamDefaultReader<Uint8Array> = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_RESPONSE_BYTES) {
      await reader.cancel().catch(() => undefined);
      throw new TransportError('too_large', `response body larger than ${MAX_RESPONSE_BYTES} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

/** ECONNREFUSED, ECONNRESET, ENOTFOUND, EAI_AGAIN, TLS failures…: the system code (also from fetch's `cause`). */
function networkError(error: unknown): TransportError {
  const code = systemCode(error) ?? systemCode((error as { cause?: unknown } | null)?.cause);
  const message = error instanceof Error ? error.message : String(error);
  return new TransportError('network', `network error${code ? ` ${code}` : ''} (${message})`, { cause: error });
}

function systemCode(error: unknown): string | null {
  if (error === null || typeof error !== 'object') return null;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && code !== '' ? code : null;
}
