/**
 * The ChangeNow transport on its own, against real local servers misbehaving at each phase: which deadline ends a
 * call (connect or total) and what it is called, the size cap, bytes returned untouched, no redirect, no retry.
 * The connect/total distinction matters: "no connection" means the request never left; "no complete response"
 * means ChangeNow may have received it.
 */
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  MAX_RESPONSE_BYTES,
  nodeTransport,
  TransportError,
  type DispatcherTransport,
  type TransportRequest,
} from '../../src/integrations/changenow/transport.ts';
import { freePort } from '../support/ports.ts';

const stopServers: (() => Promise<void>)[] = [];
const transports: DispatcherTransport[] = [];

afterEach(async () => {
  // Servers first: their sockets going away lets close() finish a connect still under way (it waits for requests).
  for (const stop of stopServers.splice(0)) await stop();
  for (const made of transports.splice(0)) await made.close();
});

function transport(connectTimeoutMs: number, responseTimeoutMs: number): DispatcherTransport {
  const made = nodeTransport({ connectTimeoutMs, responseTimeoutMs });
  transports.push(made);
  return made;
}

/** The TLS record types in `bytes` (22 handshake, 21 alert, 23 application data: an encrypted request). */
function tlsRecordTypes(bytes: Buffer): number[] {
  const types: number[] = [];
  for (let at = 0; at + 5 <= bytes.length; at += 5 + bytes.readUInt16BE(at + 3)) types.push(bytes[at] as number);
  return types;
}

/** A plain TCP server that reads whatever arrives and never writes a byte. */
async function silentServer(): Promise<{ port: number; received: () => Buffer }> {
  const sockets = new Set<net.Socket>();
  const chunks: Buffer[] = [];
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  stopServers.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as AddressInfo).port, received: () => Buffer.concat(chunks) };
}

async function httpServer(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  stopServers.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function get(base: string, path = '/v2/exchange/by-id?id=ff1441c86e178b'): TransportRequest {
  return { method: 'GET', url: new URL(path, base), headers: { accept: 'application/json' }, body: null };
}

async function failure(promise: Promise<unknown>): Promise<{ error: TransportError; elapsedMs: number }> {
  const started = performance.now();
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(TransportError);
    return { error: error as TransportError, elapsedMs: performance.now() - started };
  }
  throw new Error('expected the call to fail');
}

describe('ChangeNow transport: deadlines', () => {
  it('a TLS handshake that never completes → timeout "no connection", and no request bytes left', async () => {
    const silent = await silentServer();
    const { error, elapsedMs } = await failure(
      transport(200, 20_000)(get(`https://127.0.0.1:${silent.port}`, '/v2/exchange')),
    );
    expect(error.reason).toBe('timeout');
    expect(error.detail).toBe('no connection within 200 ms');
    // The connect deadline ended it, long before the total one.
    expect(elapsedMs).toBeLessThan(10_000);
    // Only the client's hello arrived: no application data record, so no request.
    const types = tlsRecordTypes(silent.received());
    expect(types[0]).toBe(22);
    expect(types).not.toContain(23);
  });

  it('the total deadline also bounds a connect that outlasts it', async () => {
    const silent = await silentServer();
    const { error, elapsedMs } = await failure(transport(30_000, 300)(get(`https://127.0.0.1:${silent.port}`)));
    expect(error.reason).toBe('timeout');
    expect(error.detail).toBe('no complete response within 300 ms');
    expect(elapsedMs).toBeLessThan(10_000);
  });

  it('a server that accepts TCP and never answers headers → timeout "no complete response"', async () => {
    const silent = await silentServer();
    const { error, elapsedMs } = await failure(transport(5_000, 300)(get(`http://127.0.0.1:${silent.port}`)));
    expect(error.reason).toBe('timeout');
    expect(error.detail).toBe('no complete response within 300 ms');
    expect(elapsedMs).toBeGreaterThanOrEqual(290);
    // The request was sent: this is the case where ChangeNow may have acted on it.
    expect(silent.received().toString('latin1')).toMatch(
      /^GET \/v2\/exchange\/by-id\?id=ff1441c86e178b HTTP\/1\.1\r\n/,
    );
  });

  it('a body that keeps trickling past the total deadline → timeout, though no gap between bytes is long', async () => {
    const base = await httpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"pad":"');
      const drip = setInterval(() => res.write('x'), 20);
      res.on('close', () => clearInterval(drip));
    });
    const { error, elapsedMs } = await failure(transport(5_000, 400)(get(base)));
    expect(error.reason).toBe('timeout');
    expect(error.detail).toBe('no complete response within 400 ms');
    expect(elapsedMs).toBeLessThan(5_000);
  });
});

describe('ChangeNow transport: the body', () => {
  it('a body above the cap → too_large, whether its length is announced or not', async () => {
    const oversized = Buffer.alloc(MAX_RESPONSE_BYTES + 1, 0x20);
    for (const announce of [true, false]) {
      const base = await httpServer((_req, res) => {
        res.writeHead(200, announce ? { 'content-length': String(oversized.length) } : {});
        res.end(oversized);
      });
      const { error } = await failure(transport(5_000, 10_000)(get(base)));
      expect(error.reason).toBe('too_large');
      expect(error.detail).toBe(`response body larger than ${MAX_RESPONSE_BYTES} bytes`);
    }
  });

  it('a body of exactly the cap is returned whole', async () => {
    const base = await httpServer((_req, res) => res.end(Buffer.alloc(MAX_RESPONSE_BYTES, 0x20)));
    const response = await transport(5_000, 10_000)(get(base));
    expect(response.status).toBe(200);
    expect(response.bytes.byteLength).toBe(MAX_RESPONSE_BYTES);
  });

  it('returns the bytes as sent: number text and invalid UTF-8 untouched', async () => {
    const sent = Buffer.concat([
      Buffer.from('{"toAmount":435.49999999999994,"x":"'),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('"}'),
    ]);
    const base = await httpServer((_req, res) => {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(sent);
    });
    const response = await transport(5_000, 10_000)(get(base));
    expect(response.status).toBe(503);
    expect(Buffer.from(response.bytes).equals(sent)).toBe(true);
  });

  it('sends a POST body with its content-length, not chunked', async () => {
    const seen: { headers: http.IncomingHttpHeaders; body: string }[] = [];
    const base = await httpServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        seen.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.end('{}');
      });
    });
    const body = '{"fromAmount":0.1455,"userId":"conv_é"}';
    await transport(
      5_000,
      10_000,
    )({
      method: 'POST',
      url: new URL('/v2/exchange', base),
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.body).toBe(body);
    expect(seen[0]?.headers['content-length']).toBe(String(Buffer.byteLength(body, 'utf8')));
    expect(seen[0]?.headers['transfer-encoding']).toBeUndefined();
  });
});

describe('ChangeNow transport: once, where it was sent', () => {
  it('does not follow a redirect', async () => {
    const paths: string[] = [];
    const base = await httpServer((req, res) => {
      paths.push(req.url ?? '');
      res.writeHead(302, { location: '/elsewhere' });
      res.end();
    });
    const response = await transport(5_000, 10_000)(get(base, '/v2/exchange'));
    expect(response.status).toBe(302);
    expect(paths).toEqual(['/v2/exchange']);
  });

  it('does not retry a request whose connection was reset', async () => {
    let requests = 0;
    const base = await httpServer((req) => {
      requests++;
      req.socket.destroy();
    });
    const { error } = await failure(
      transport(5_000, 10_000)({ method: 'POST', url: new URL('/v2/exchange', base), headers: {}, body: '{}' }),
    );
    expect(error.reason).toBe('network');
    expect(requests).toBe(1);
  });

  it('a closed port → network ECONNREFUSED', async () => {
    const port = await freePort();
    const { error } = await failure(transport(5_000, 10_000)(get(`http://127.0.0.1:${port}`)));
    expect(error.reason).toBe('network');
    expect(error.detail).toContain('ECONNREFUSED');
  });
});
