/**
 * The webhook's source checks: the per-source rate limit (429 with Retry-After), the NOWPayments allowlist (403),
 * the trusted proxy (X-Forwarded-For believed only from it), and the body limit (413). Every refusal writes nothing.
 * Real HTTP from 127.0.0.1; "clients" behind the proxy are simulated by X-Forwarded-For with 127.0.0.1 as the proxy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, rowCounts, type TestDatabase } from '../support/db.ts';
import { ipnBody, signed } from '../support/ipn.ts';
import { IPN_SECRET, logSink, startTestPayrail, type LogSink, type TestPayrail } from '../support/payrail.ts';

const CHANNEL = '-1001000000077';
let db: TestDatabase;
const started: TestPayrail[] = [];
let nextPaymentId = 8_100_000_000;

async function start(env: Record<string, string>, logs?: LogSink): Promise<TestPayrail> {
  const payrail = await startTestPayrail(db, { roles: { web: true, worker: false }, env, ...(logs && { logs }) });
  started.push(payrail);
  return payrail;
}

function freshIpn(): { id: string; raw: string; headers: Record<string, string> } {
  const id = nextPaymentId++;
  return { id: String(id), ...signed(ipnBody({ payment_id: id, order_id: `PGP-1|${CHANNEL}` }), IPN_SECRET) };
}

/** POSTs a correctly signed, new IPN; `forwardedFor` sets X-Forwarded-For as a proxy (or a liar) would. */
async function postIpn(
  payrail: TestPayrail,
  options: { forwardedFor?: string; raw?: string; signature?: string } = {},
) {
  const ipn = freshIpn();
  const headers: Record<string, string> = { ...ipn.headers };
  if (options.forwardedFor !== undefined) headers['x-forwarded-for'] = options.forwardedFor;
  if (options.signature !== undefined) headers['x-nowpayments-sig'] = options.signature;
  const response = await fetch(`${payrail.url}/webhooks/nowpayments`, {
    method: 'POST',
    headers,
    body: options.raw ?? ipn.raw,
  });
  const text = await response.text();
  return { id: ipn.id, status: response.status, retryAfter: response.headers.get('retry-after'), body: text };
}

async function paymentExists(id: string): Promise<boolean> {
  const { rows } = await db.pool.query('select 1 from payments where payment_id = $1', [id]);
  return rows.length > 0;
}

beforeAll(async () => {
  db = await createTestDatabase();
  // A threshold channel: a credit queues no payout job, and an IPN for it is answered 200 (not kept for review).
  const admin = await start({});
  const channel = {
    payoutStrategy: 'threshold',
    thresholdUsd: '100000.00',
    payoutCurrency: 'usdt',
    payoutNetwork: 'eth',
    walletAddress: '0x8ba1f109551bD432803012645Ac136ddd64DBA72',
  };
  expect((await admin.request('PUT', `/api/channels/${CHANNEL}`, { body: channel })).status).toBe(201);
});

afterAll(async () => {
  for (const payrail of started) await payrail.stop();
  await db?.close();
});

describe('rate limit per source (WEBHOOK_RATE_LIMIT)', () => {
  it('answers 429 with Retry-After once a source is over its limit, and writes nothing', async () => {
    const payrail = await start({ WEBHOOK_RATE_LIMIT: '5' });
    // Five requests are allowed whatever they are: four with a bad signature, one good.
    for (let i = 0; i < 4; i++) expect((await postIpn(payrail, { signature: 'f'.repeat(128) })).status).toBe(401);
    const accepted = await postIpn(payrail);
    expect(accepted.status).toBe(200);
    expect(await paymentExists(accepted.id)).toBe(true);

    const before = await rowCounts(db);
    const refused = await Promise.all(Array.from({ length: 10 }, () => postIpn(payrail)));
    for (const r of refused) {
      expect(r.status).toBe(429);
      // 5 a minute: one more every 12 s.
      expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(Number(r.retryAfter)).toBeLessThanOrEqual(12);
      expect(JSON.parse(r.body)).toEqual({ error: 'too many requests: at most 5 per minute per source' });
      expect(await paymentExists(r.id)).toBe(false);
    }
    expect(await rowCounts(db)).toEqual(before);
    // Only the webhook is limited: the admin API and /health still answer.
    expect((await payrail.request('GET', '/api/supported-pairs')).status).toBe(200);
    expect((await fetch(`${payrail.url}/health`)).status).not.toBe(429);
  });

  it("counts each client behind the trusted proxy on its own, and ignores a client's own X-Forwarded-For entries", async () => {
    const payrail = await start({ WEBHOOK_RATE_LIMIT: '3', TRUSTED_PROXY: '127.0.0.1' });
    for (let i = 0; i < 3; i++) expect((await postIpn(payrail, { forwardedFor: '198.51.100.1' })).status).toBe(200);
    expect((await postIpn(payrail, { forwardedFor: '198.51.100.1' })).status).toBe(429);
    // A spoofed entry in front of the one the proxy appended changes nothing: the proxy's entry is the client.
    expect((await postIpn(payrail, { forwardedFor: '203.0.113.50, 198.51.100.1' })).status).toBe(429);
    // Another client has its own allowance.
    expect((await postIpn(payrail, { forwardedFor: '198.51.100.2' })).status).toBe(200);
    // IPv6 clients are counted by /64: a fresh address in the same /64 does not get a fresh allowance.
    for (let i = 1; i <= 3; i++)
      expect((await postIpn(payrail, { forwardedFor: `2001:db8:0:1::${i}` })).status).toBe(200);
    expect((await postIpn(payrail, { forwardedFor: '2001:db8:0:1:ffff::9' })).status).toBe(429);
    expect((await postIpn(payrail, { forwardedFor: '2001:db8:0:2::1' })).status).toBe(200);
  });

  it('WEBHOOK_RATE_LIMIT=0 turns the limit off', async () => {
    const payrail = await start({ WEBHOOK_RATE_LIMIT: '0' });
    const results = await Promise.all(Array.from({ length: 30 }, () => postIpn(payrail)));
    expect(results.map((r) => r.status)).toEqual(Array(30).fill(200));
  });
});

describe('allowlist (NOWPAYMENTS_ALLOWED_IPS)', () => {
  it('refuses a correctly signed IPN from elsewhere with 403 and writes nothing; a spoofed X-Forwarded-For does not help', async () => {
    const logs = logSink();
    const payrail = await start({ NOWPAYMENTS_ALLOWED_IPS: '203.0.113.0/24,2001:db8::/32' }, logs);
    const before = await rowCounts(db);
    const direct = await postIpn(payrail);
    expect(direct.status).toBe(403);
    expect(JSON.parse(direct.body)).toEqual({ error: 'source address not allowed' });
    // No TRUSTED_PROXY: the header is the client's say-so and is ignored.
    const spoofed = await postIpn(payrail, { forwardedFor: '203.0.113.9' });
    expect(spoofed.status).toBe(403);
    expect(await rowCounts(db)).toEqual(before);
    expect(await paymentExists(direct.id)).toBe(false);
    expect(await paymentExists(spoofed.id)).toBe(false);
    // Logged once per source and minute, with the source, and whether a forwarded-for header was ignored.
    const refusals = logs.lines.filter((l) => l.event === 'ipn_source_refused');
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatchObject({ source: '127.0.0.1', forwardedIgnored: false });
  });

  it('takes IPNs from an allowed source', async () => {
    const payrail = await start({ NOWPAYMENTS_ALLOWED_IPS: '10.0.0.0/8, 127.0.0.1' });
    const ok = await postIpn(payrail);
    expect(ok.status).toBe(200);
    expect(await paymentExists(ok.id)).toBe(true);
  });
});

describe('trusted proxy (TRUSTED_PROXY)', () => {
  it('behind the configured proxy, the client it names is the source', async () => {
    const payrail = await start({ TRUSTED_PROXY: '127.0.0.0/8', NOWPAYMENTS_ALLOWED_IPS: '203.0.113.0/24' });
    const before = await rowCounts(db);
    // The proxy appended the real client: allowed.
    const allowed = await postIpn(payrail, { forwardedFor: '203.0.113.5' });
    expect(allowed.status).toBe(200);
    // The client wrote an allowed address itself, the proxy appended the real one: refused.
    const spoofed = await postIpn(payrail, { forwardedFor: '203.0.113.5, 198.51.100.77' });
    expect(spoofed.status).toBe(403);
    // Chains of trusted proxies are walked: client → 127.0.0.2 (ours) → 127.0.0.1 (ours, the socket).
    expect((await postIpn(payrail, { forwardedFor: '203.0.113.6, 127.0.0.2' })).status).toBe(200);
    // No header: the proxy itself is the source, and it is not NOWPayments.
    expect((await postIpn(payrail)).status).toBe(403);
    expect(await paymentExists(spoofed.id)).toBe(false);
    expect((await rowCounts(db)).payments - before.payments).toBe(2);
  });

  it('from an address that is not the proxy, X-Forwarded-For is ignored', async () => {
    const logs = logSink();
    const payrail = await start({ TRUSTED_PROXY: '10.9.9.9', NOWPAYMENTS_ALLOWED_IPS: '203.0.113.0/24' }, logs);
    const before = await rowCounts(db);
    const spoofed = await postIpn(payrail, { forwardedFor: '203.0.113.5' });
    expect(spoofed.status).toBe(403);
    expect(await rowCounts(db)).toEqual(before);
    expect(logs.lines.find((l) => l.event === 'ipn_source_refused')).toMatchObject({
      source: '127.0.0.1',
      forwardedIgnored: true,
    });
  });
});

describe('body limit (WEBHOOK_BODY_LIMIT_BYTES)', () => {
  it('still answers 413 to a larger body, correctly signed or not, and writes nothing', async () => {
    const payrail = await start({ WEBHOOK_BODY_LIMIT_BYTES: '2048' });
    const before = await rowCounts(db);
    const id = nextPaymentId++;
    const big = signed(
      ipnBody({ payment_id: id, order_id: `PGP-1|${CHANNEL}`, order_description: 'x'.repeat(4096) }),
      IPN_SECRET,
    );
    const response = await fetch(`${payrail.url}/webhooks/nowpayments`, {
      method: 'POST',
      headers: big.headers,
      body: big.raw,
    });
    expect(response.status).toBe(413);
    expect(await rowCounts(db)).toEqual(before);
    expect(await paymentExists(String(id))).toBe(false);
    // Just under the limit goes through.
    const small = freshIpn();
    expect(small.raw.length).toBeLessThan(2048);
    expect(
      (await fetch(`${payrail.url}/webhooks/nowpayments`, { method: 'POST', headers: small.headers, body: small.raw }))
        .status,
    ).toBe(200);
  });
});
