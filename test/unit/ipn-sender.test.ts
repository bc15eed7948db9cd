import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { IpnSendError, sendIpns, type SignedIpn } from '../../src/demo/ipns.ts';

interface Received {
  paymentId: string;
  signature: string | undefined;
  contentType: string | undefined;
  socket: object;
}

let server: http.Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

/** A webhook on loopback answering `answer(paymentId)`, recording what it got. */
async function webhook(answer: (paymentId: string) => { status: number; body: string }): Promise<{
  url: string;
  received: Received[];
}> {
  const received: Received[] = [];
  server = http.createServer((request, response) => {
    let raw = '';
    request.on('data', (chunk: Buffer) => (raw += chunk.toString('utf8')));
    request.on('end', () => {
      const paymentId = (JSON.parse(raw) as { payment_id: string }).payment_id;
      received.push({
        paymentId,
        signature: request.headers['x-nowpayments-sig'] as string | undefined,
        contentType: request.headers['content-type'],
        socket: request.socket,
      });
      const { status, body } = answer(paymentId);
      response.writeHead(status, { 'content-type': 'text/plain' }).end(body);
    });
  });
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/webhooks/nowpayments`, received };
}

function ipns(count: number): SignedIpn[] {
  return Array.from({ length: count }, (_, i) => ({
    paymentId: String(1000 + i),
    raw: JSON.stringify({ payment_id: String(1000 + i), note: 'é' }),
    signature: `sig-${1000 + i}`,
  }));
}

describe('the IPN sender of bench:pipeline', () => {
  it('posts every body once with its signature, on at most `concurrency` kept-alive connections', async () => {
    const { url, received } = await webhook(() => ({ status: 200, body: 'ok' }));
    const outcome = await sendIpns(url, ipns(40), { concurrency: 4 });
    expect(received.map((r) => r.paymentId).sort()).toEqual(ipns(40).map((i) => i.paymentId));
    for (const r of received) {
      expect(r.signature).toBe(`sig-${r.paymentId}`);
      expect(r.contentType).toBe('application/json');
    }
    expect(new Set(received.map((r) => r.socket)).size).toBeLessThanOrEqual(4);
    expect(outcome.latencies).toHaveLength(40);
    expect([...outcome.latencies].every((ms) => ms > 0)).toBe(true);
  });

  it('stops at an answer other than 200, naming the payment, the status and the body', async () => {
    const { url, received } = await webhook((id) =>
      id === '1005' ? { status: 500, body: 'ledger refused' } : { status: 200, body: 'ok' },
    );
    const sent = sendIpns(url, ipns(50), { concurrency: 1 });
    await expect(sent).rejects.toThrow(IpnSendError);
    await expect(sent).rejects.toThrow('IPN for payment 1005 answered 500, not 200: ledger refused');
    // One at a time: nothing after the refused one was sent.
    expect(received.map((r) => r.paymentId)).toEqual(['1000', '1001', '1002', '1003', '1004', '1005']);
  });

  it('reports a connection that fails as a failed IPN', async () => {
    const { url } = await webhook(() => ({ status: 200, body: 'ok' }));
    server?.on('request', (request) => request.socket.destroy());
    await expect(sendIpns(url, ipns(1), { concurrency: 1 })).rejects.toThrow(/IPN for payment 1000 failed: /);
  });
});
