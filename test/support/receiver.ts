/** A platform's webhook receiver on 127.0.0.1: records what arrives, answers what the test says. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  readonly event: { id: string; type: string; subject: string; data: Record<string, unknown>; createdAt: string };
}

export interface Receiver {
  readonly url: string;
  /** Every request that arrived, in arrival order, whatever it was answered. */
  readonly received: Received[];
  /** Requests answered 2xx: what the receiver acknowledged. */
  readonly acknowledged: Received[];
  /** The status the next requests get (200 by default). */
  answer(status: number): void;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const received: Received[] = [];
  const acknowledged: Received[] = [];
  let status = 200;
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const entry = { headers: request.headers, body, event: JSON.parse(body) as Received['event'] };
      received.push(entry);
      if (status >= 200 && status < 300) acknowledged.push(entry);
      response.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'down');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks/payrail`,
    received,
    acknowledged,
    answer: (next) => void (status = next),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
