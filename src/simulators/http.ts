/**
 * The node:http plumbing the simulators share: a server on 127.0.0.1 that can go down and come back on the same port,
 * bodies read with a cap, JSON answers, and the request loop of a JSON API (route, answer, or answer its error).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { stringify } from 'lossless-json';

/** An answer the API gives on purpose: its status, and the code and message its error body carries. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** A server on 127.0.0.1. Closing it closes the open connections too, as a process that went away would. */
export class LocalServer {
  private server: http.Server | undefined;
  private handler: http.RequestListener | undefined;
  private port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Port 0 takes a free one; `reopen` comes back on whichever port this bound. */
  async listen(handler: http.RequestListener, port: number): Promise<void> {
    this.server = await listen(handler, port);
    this.handler = handler;
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** Listens again where it listened before it was closed: clients configured with its url find it back. */
  async reopen(): Promise<void> {
    if (!this.handler) throw new Error('reopen before listen');
    this.server = await listen(this.handler, this.port);
  }

  close(): Promise<void> {
    const server = this.server;
    if (!server) return Promise.resolve();
    return new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
}

function listen(handler: http.RequestListener, port: number): Promise<http.Server> {
  return new Promise((resolve, reject) => {
    const server = http.createServer(handler);
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/** The request body, or undefined when it is larger than `maxBytes` (then the rest is left unread). */
export function readBody(req: http.IncomingMessage, maxBytes: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        req.removeAllListeners('data');
        req.pause();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Writes a JSON answer, unless the client is gone or already has one (a late answer after a timeout). */
export function sendJson(
  res: http.ServerResponse,
  status: number,
  text: string,
  headers: http.OutgoingHttpHeaders = {},
): void {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(text);
}

/** Waits `ms`, or less if the connection closes first (the client gave up, the simulator stops): no timer outlives it. */
export function sleepUnlessGone(ms: number, res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      res.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    res.once('close', done);
  });
}

/** A status and the payload to send with it, written as JSON with lossless-json (numbers keep their exact text). */
export type Answer = [status: number, payload: unknown];

export interface JsonApi {
  route(req: http.IncomingMessage, res: http.ServerResponse, body: string): Promise<Answer>;
  /** An error answer's body, in the shape the simulated API uses. */
  errorBody(status: number, code: string, message: string): unknown;
  /** The code of a failure nobody meant (a 500). */
  internalCode: string;
}

/** A simulated API's bodies are small JSON documents; anything past this is not a client of it. */
const MAX_API_BODY_BYTES = 1_000_000;

/** The request loop of a JSON API: reads the body, routes it, answers the route's answer or its error. */
export function jsonApi(api: JsonApi): http.RequestListener {
  const answer = (res: http.ServerResponse, [status, payload]: Answer) =>
    sendJson(res, status, stringify(payload) ?? 'null');
  const fail = (res: http.ServerResponse, error: unknown) => {
    if (error instanceof HttpError) answer(res, [error.status, api.errorBody(error.status, error.code, error.message)]);
    else answer(res, [500, api.errorBody(500, api.internalCode, (error as Error).message)]);
  };
  return (req, res) => {
    readBody(req, MAX_API_BODY_BYTES).then(
      (body) => {
        // Too large to be a request of the API: the connection is dropped unanswered.
        if (body === undefined) return void req.destroy();
        api.route(req, res, body).then(
          (result) => answer(res, result),
          (error: unknown) => fail(res, error),
        );
      },
      // The client went away mid-body: nobody is left to answer.
      () => undefined,
    );
  };
}

/**
 * The part of a POST /sim/fault body every API simulator reads alike: a JSON object, its `fault` one of `faults`, its
 * `slowMs` a whole number of ms. Absent fields leave their setting as it is; other fields are the caller's to check.
 */
export function readFaultBody<F extends string>(
  body: string,
  faults: readonly F[],
): Record<string, unknown> & { fault?: F; slowMs?: number } {
  let input: Record<string, unknown>;
  try {
    input = JSON.parse(body || '{}') as typeof input;
  } catch {
    throw new HttpError(400, 'bad_request', 'body must be JSON');
  }
  if (input === null || typeof input !== 'object')
    throw new HttpError(400, 'bad_request', 'body must be a JSON object');
  if (input.fault !== undefined && !faults.includes(input.fault as F))
    throw new HttpError(400, 'bad_request', `fault must be one of ${faults.join(', ')}`);
  if (input.slowMs !== undefined && !isWholeMs(input.slowMs))
    throw new HttpError(400, 'bad_request', 'slowMs must be a whole number of ms');
  return input;
}

export function isWholeMs(value: unknown): boolean {
  return Number.isInteger(value) && (value as number) >= 0;
}
