/**
 * The alert webhook through a real worker: a local receiver that fails the first delivery (HTTP 500), then answers
 * with a redirect (which must not be followed), then accepts. The delivery is retried by the queue with the same
 * delivery id, every attempt is signed, and a person's resolution is sent too.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deliverAlert, raiseAlert, resolveAlertByHand, verifyAlertSignature } from '../../src/alerts/index.ts';
import { createLogger } from '../../src/log.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { eventually } from '../support/outside.ts';
import { ADMIN_TOKEN, startTestPayrail, type TestPayrail } from '../support/payrail.ts';

const SECRET = 'alert-webhook-secret-0123456789';

interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  status: number;
}

let db: TestDatabase;
let payrail: TestPayrail;
let receiver: http.Server;
let hookUrl: string;
const received: Received[] = [];
/** Answers per attempt for the scripted delivery; any other delivery (a cron pass's alerts) is accepted at once. */
const SCRIPT = [500, 302, 200];

function scripted(body: string): boolean {
  try {
    const parsed = JSON.parse(body) as { subject?: string; state?: string };
    return parsed.subject === 'tr_webhook' && parsed.state === 'firing';
  } catch {
    return false;
  }
}

beforeAll(async () => {
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const attempt = received.filter(
        (r) => r.path === '/hook' && r.headers['x-payrail-delivery'] === req.headers['x-payrail-delivery'],
      ).length;
      const status = req.url === '/hook' && scripted(body) ? (SCRIPT[attempt] ?? 200) : 200;
      received.push({ path: req.url ?? '', headers: req.headers, body, status });
      if (status === 302) res.writeHead(302, { location: '/stolen' });
      else res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(status === 200 ? 'ok' : 'no');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const { port } = receiver.address() as AddressInfo;
  hookUrl = `http://127.0.0.1:${port}/hook`;
  db = await createTestDatabase();
  payrail = await startTestPayrail(db, { env: { ALERT_WEBHOOK_URL: hookUrl, ALERT_WEBHOOK_SECRET: SECRET } });
});

afterAll(async () => {
  await payrail?.stop();
  await db?.close();
  await new Promise((resolve) => receiver?.close(resolve));
});

function deliveries(id: string): Received[] {
  return received.filter((r) => r.headers['x-payrail-delivery'] === id);
}

async function notifyJobsLeft(alertId: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `select count(*)::int as n from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
     where t.identifier = 'alert_notify' and j.payload->>'alertId' = $1`,
    [alertId],
  );
  return rows[0]?.n ?? 0;
}

describe('alert webhook', () => {
  it('retries a failed delivery with the same delivery id, signs every attempt, never follows a redirect', async () => {
    const logger = createLogger({ level: 'silent' });
    await raiseAlert(
      payrail.database.db,
      {
        rule: 'transfer_refused',
        subject: 'tr_webhook',
        severity: 'critical',
        message: 'the node refused a host wallet transfer',
        details: { transferId: 'tr_webhook', amount: 5n, note: `admin token ${ADMIN_TOKEN}` },
      },
      { logger, notify: true },
    );
    const { rows } = await db.pool.query<{ id: string }>(
      "select id::text from alerts where rule = 'transfer_refused' and subject = 'tr_webhook'",
    );
    const id = (rows[0] as { id: string }).id;
    const delivery = `${id}:firing`;

    await eventually('the delivery accepted', async () => deliveries(delivery).some((r) => r.status === 200));
    await eventually('its job done', async () => (await notifyJobsLeft(id)) === 0);
    const attempts = deliveries(delivery);
    expect(attempts.map((r) => [r.path, r.status])).toEqual([
      ['/hook', 500],
      ['/hook', 302],
      ['/hook', 200],
    ]);
    expect(received.filter((r) => r.path !== '/hook')).toEqual([]);

    for (const attempt of attempts) {
      expect(attempt.headers['content-type']).toBe('application/json');
      expect(attempt.headers['x-payrail-signature']).toMatch(/^sha256=[0-9a-f]{64}$/);
      const signed = {
        secret: SECRET,
        body: attempt.body,
        timestamp: attempt.headers['x-payrail-timestamp'] as string,
        signature: attempt.headers['x-payrail-signature'] as string,
      };
      expect(verifyAlertSignature(signed)).toBe(true);
      expect(verifyAlertSignature({ ...signed, secret: 'another-secret-0123456789' })).toBe(false);
      expect(verifyAlertSignature({ ...signed, body: attempt.body.replace('tr_webhook', 'tr_forged00') })).toBe(false);
      expect(verifyAlertSignature({ ...signed, nowSeconds: Number(signed.timestamp) + 3_600 })).toBe(false);
    }
    const body = JSON.parse((attempts[2] as Received).body);
    expect(body).toEqual({
      id,
      rule: 'transfer_refused',
      subject: 'tr_webhook',
      severity: 'critical',
      message: 'the node refused a host wallet transfer',
      details: { transferId: 'tr_webhook', amount: '5', note: 'admin token [redacted]' },
      state: 'firing',
      firstSeenAt: expect.any(String),
      lastSeenAt: expect.any(String),
      resolvedAt: null,
    });
  });

  it('a resolution by hand is delivered as resolved', async () => {
    const { rows } = await db.pool.query<{ id: string }>(
      "select id::text from alerts where rule = 'transfer_refused' and subject = 'tr_webhook'",
    );
    const id = (rows[0] as { id: string }).id;
    const res = await payrail.request('POST', `/api/alerts/${id}/resolve`);
    expect(res.status).toBe(200);
    await eventually('the resolution delivered', async () =>
      deliveries(`${id}:resolved`).some((r) => r.status === 200),
    );
    const [resolved] = deliveries(`${id}:resolved`);
    expect(JSON.parse((resolved as Received).body)).toMatchObject({
      id,
      state: 'resolved',
      resolvedAt: expect.any(String),
    });
    expect(
      verifyAlertSignature({
        secret: SECRET,
        body: (resolved as Received).body,
        timestamp: resolved?.headers['x-payrail-timestamp'] as string,
        signature: resolved?.headers['x-payrail-signature'] as string,
      }),
    ).toBe(true);
  });

  it('a firing delivery that goes out after its alert resolved is dropped; the resolution is sent', async () => {
    const logger = createLogger({ level: 'silent' });
    // As if its firing delivery were still waiting for a retry when a person resolved it.
    await raiseAlert(
      payrail.database.db,
      { rule: 'transfer_refused', subject: 'tr_late', severity: 'critical', message: 'refused' },
      { logger, notify: false },
    );
    const { rows } = await db.pool.query<{ id: string }>(
      "select id::text from alerts where rule = 'transfer_refused' and subject = 'tr_late'",
    );
    const id = (rows[0] as { id: string }).id;
    expect(await resolveAlertByHand(db.db, id, 'admin', { notify: false })).toMatchObject({ outcome: 'resolved' });
    const deps = { db: db.db, logger, webhook: { url: hookUrl, secret: SECRET, timeoutMs: 5_000 } };
    await deliverAlert(deps, id, 'firing');
    expect(deliveries(`${id}:firing`)).toEqual([]);
    await deliverAlert(deps, id, 'resolved');
    expect(deliveries(`${id}:resolved`).map((r) => [r.status, JSON.parse(r.body).state])).toEqual([[200, 'resolved']]);
  });
});
