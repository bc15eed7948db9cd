/**
 * One HTTP exchange with ChangeNow: a request goes out once and comes back as a status and the raw body bytes, or
 * fails with a TransportError. No retries, no redirects, no parsing here.
 *
 * Why undici's dispatcher (one Agent per transport): it gives the connect phase a deadline of its own
 * (`connect.timeout`: DNS lookup + TCP connect, + TLS handshake for https), which the global fetch does not expose,
 * and it brings keep-alive pooling and the socket bookkeeping we used to write over node:http. Its request API never
 * follows a redirect and never retries. A connect timeout comes back as its own error (UND_ERR_CONNECT_TIMEOUT), so
 * "no connection within N ms" (the request never left) stays apart from "no complete response within N ms" (it may
 * have reached ChangeNow), as before.
 *
 * What stays ours:
 * - The total deadline (responseTimeoutMs, from the call to the last byte of the body): an AbortSignal.timeout given
 *   to undici and also raced here, because undici acts on an abort only once a connection is up, so a stalled
 *   connect would otherwise outlive it. headersTimeout and bodyTimeout get the same budget as a backstop, since no
 *   phase may outlast the whole; undici's timers are coarse (they fire up to about a second late, its connect timeout
 *   included), so ours is the one that normally fires.
 * - The size cap: the body is read as a stream and destroyed (with its connection) once past MAX_RESPONSE_BYTES.
 * - The bytes: returned as they came, since the client's lossless JSON parsing needs the source text.
 * - The classification into TransportError reasons, which the client turns into ChangeNowError codes.
 *
 * An injected `fetch` (tests, instrumentation) is still supported: it gets the total deadline as its signal, raced
 * by us so a fetch that ignores its signal cannot hang the caller. The connect deadline cannot apply there.
 */
import { Agent, type Dispatcher } from 'undici';

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

/** The default transport, with a way to let go of its pooled connections (idle ones never hold the process open). */
export type DispatcherTransport = Transport & { close(): Promise<void> };

const UNDICI_PHASE_TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** The built-in transport: an Agent of its own, so the connect and phase timeouts are this transport's alone. */
export function nodeTransport(timeouts: TransportTimeouts): DispatcherTransport {
  const { connectTimeoutMs, responseTimeoutMs } = timeouts;
  const agent = new Agent({
    connect: { timeout: connectTimeoutMs },
    headersTimeout: responseTimeoutMs,
    bodyTimeout: responseTimeoutMs,
  });
  const transport: Transport = async (request) => {
    const deadline = AbortSignal.timeout(responseTimeoutMs);
    const timedOut = () => new TransportError('timeout', `no complete response within ${responseTimeoutMs} ms`);
    try {
      return await raceDeadline(deadline, timedOut, async () => {
        const response = await agent.request({
          origin: request.url.origin,
          path: `${request.url.pathname}${request.url.search}`,
          method: request.method,
          headers: request.headers,
          body: request.body,
          signal: deadline,
        });
        return { status: response.statusCode, bytes: await readCappedStream(response.body) };
      });
    } catch (error) {
      if (error instanceof TransportError) throw error;
      const code = systemCode(error);
      if (code === 'UND_ERR_CONNECT_TIMEOUT')
        throw new TransportError('timeout', `no connection within ${connectTimeoutMs} ms`, { cause: error });
      if (deadline.aborted || (code !== null && UNDICI_PHASE_TIMEOUTS.has(code))) throw timedOut();
      throw networkError(error);
    }
  };
  return Object.assign(transport, { close: () => agent.close() });
}

/** undici's body is a node Readable: destroying it past the cap aborts the request and drops its connection. */
async function readCappedStream(body: Dispatcher.ResponseData['body']): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_RESPONSE_BYTES) {
      body.destroy();
      throw new TransportError('too_large', `response body larger than ${MAX_RESPONSE_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
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
