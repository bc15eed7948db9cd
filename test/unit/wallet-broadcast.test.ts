/**
 * How a node's answer to a broadcast is read (src/integrations/wallet/broadcast.ts), through viem's real HTTP
 * transport against a local server answering as nodes and providers do.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { broadcast } from '../../src/integrations/wallet/broadcast.ts';
import { walletContext } from '../../src/integrations/wallet/context.ts';
import { ChainUnavailableError } from '../../src/integrations/wallet/types.ts';

/** The next answer: a JSON-RPC error message, or an HTTP status with no JSON-RPC body. */
let next: { error: { code: number; message: string } } | { status: number } = { status: 500 };
let server: http.Server;
let url = '';

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const { id } = JSON.parse(body) as { id: number };
      if ('status' in next) {
        res.writeHead(next.status, { 'content-type': 'text/plain' }).end('no');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id, ...next }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

const RAW = '0x02f86b';

async function answerTo(answer: typeof next) {
  next = answer;
  const ctx = walletContext({ rpcUrl: url, chainId: 1, timeoutMs: 2_000, address: `0x${'11'.repeat(20)}` });
  return broadcast(ctx, RAW);
}

describe('a broadcast refused for a nonce gap, not alerted', () => {
  it.each([
    "Nonce too high. Expected nonce to be 3 but got 5. Note that transactions can't be queued when automining.",
    'future transaction tries to replace pending',
    'nonce too high',
  ])('%s', async (message) => {
    expect(await answerTo({ error: { code: -32000, message } })).toMatchObject({ ok: false, reason: 'nonce_gap' });
  });
});

describe('a provider that limits the rate answered nothing about the transaction', () => {
  it.each([
    ['JSON-RPC -32005', { error: { code: -32005, message: 'limit exceeded' } }],
    ['JSON-RPC rate limit text', { error: { code: -32000, message: 'Your app has exceeded its rate limit' } }],
    ['HTTP 429', { status: 429 }],
  ] as const)('%s', async (_, answer) => {
    await expect(answerTo(answer)).rejects.toBeInstanceOf(ChainUnavailableError);
  });
});

describe('the other answers keep their meaning', () => {
  it.each([
    ['already known', { ok: true }],
    ['nonce too low: next nonce 7, tx nonce 5', { ok: false, reason: 'nonce_too_low' }],
    ['replacement transaction underpriced', { ok: false, reason: 'underpriced' }],
    ['insufficient funds for gas * price + value', { ok: false, reason: 'insufficient_funds' }],
    ['invalid sender', { ok: false, reason: 'rejected' }],
  ] as const)('%s', async (message, result) => {
    expect(await answerTo({ error: { code: -32000, message } })).toMatchObject(result);
  });
});
