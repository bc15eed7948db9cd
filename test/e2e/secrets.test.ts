/**
 * Secrets never leave payrail: the real CLI runs a flow (IPNs signed wrongly and rightly, admin calls with good and
 * bad tokens, refused and failing requests) with every log line captured at trace level, and a second start fails on
 * bad secrets. Neither the output nor any response (body or headers) holds any secret value, in any case.
 */
import { createPublicClient, http } from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, secretValues } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { ipnBody, signed } from '../support/ipn.ts';
import { logSink } from '../support/payrail.ts';
import { freePort } from '../support/ports.ts';
import { runPayrail, type PayrailProcess } from '../support/process.ts';

const CHANNEL = '-1002000000099';
const ALICE = 'alice-token-Q7zX0123456789';
// A quote and a backslash: written escaped in a JSON log line, and must be found there too.
const CAROL = 'carol"tok\\en-0123456789';

let db: TestDatabase;
let env: Record<string, string>;
let secrets: string[];
let proc: PayrailProcess | undefined;

/** Every secret value, plus the forms it could be printed in. */
function leaksIn(text: string): string[] {
  const lower = text.toLowerCase();
  const found: string[] = [];
  for (const secret of secrets) {
    for (const form of new Set([secret, JSON.stringify(secret).slice(1, -1)])) {
      if (text.includes(form) || lower.includes(form.toLowerCase())) found.push(form);
    }
  }
  return found;
}

beforeAll(async () => {
  db = await createTestDatabase();
  env = {
    DATABASE_URL: db.url,
    HOST: '127.0.0.1',
    PORT: String(await freePort()),
    LOG_LEVEL: 'trace',
    ADMIN_TOKEN: 'admin-token-9f8e7d6c5b4a3210',
    ADMIN_TOKENS: `alice:${ALICE},carol:${CAROL}`,
    NOWPAYMENTS_IPN_SECRET: 'ipn-secret-AbCdEf0123456789xyz',
    CHANGENOW_API_URL: 'http://127.0.0.1:9',
    CHANGENOW_API_KEY: 'changenow-key-0123456789abcdef',
    // An API key in the path, the way Infura and Alchemy take it.
    ETH_RPC_URL: 'http://127.0.0.1:9/v3/RpcKey0123456789abcdefABCDEF',
    HOST_WALLET_PRIVATE_KEY: `0x${'5a'.repeat(32)}`,
  };
  secrets = secretValues(loadConfig(env));
  expect(secrets).toEqual(
    expect.arrayContaining([
      env.ADMIN_TOKEN,
      ALICE,
      CAROL,
      env.NOWPAYMENTS_IPN_SECRET,
      env.CHANGENOW_API_KEY,
      'RpcKey0123456789abcdefABCDEF',
      env.HOST_WALLET_PRIVATE_KEY,
    ]),
  );
  // The database password is one too (the test server's generated one).
  expect(secrets).toContain(decodeURIComponent(new URL(db.url).password));
});

afterAll(async () => {
  if (proc && proc.child.exitCode === null) {
    proc.child.kill('SIGKILL');
    await proc.exited;
  }
  await db?.close();
});

describe('secrets in logs, errors and API output', () => {
  it('a full flow through the real CLI: no secret in any log line or any response', async () => {
    proc = runPayrail(['web'], env);
    const url = `http://127.0.0.1:${env.PORT}`;
    const deadline = Date.now() + 90_000;
    for (;;) {
      if (proc.child.exitCode !== null) throw new Error(`payrail exited:\n${proc.output()}`);
      // The web role alone: /health answers 503 (no worker), which is enough to know it listens.
      if (
        await fetch(`${url}/health`).then(
          () => true,
          () => false,
        )
      )
        break;
      if (Date.now() > deadline) throw new Error(`payrail did not listen:\n${proc.output()}`);
      await new Promise((r) => setTimeout(r, 200));
    }

    const responses: Array<{ what: string; status: number; text: string }> = [];
    const call = async (
      what: string,
      method: string,
      route: string,
      options: { token?: string; body?: string; headers?: Record<string, string> } = {},
    ) => {
      const headers: Record<string, string> = { ...options.headers };
      if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
      if (options.body !== undefined && headers['content-type'] === undefined)
        headers['content-type'] = 'application/json';
      const res = await fetch(url + route, {
        method,
        headers,
        ...(options.body !== undefined && { body: options.body }),
      });
      const text = `${JSON.stringify([...res.headers.entries()])}\n${await res.text()}`;
      responses.push({ what, status: res.status, text });
      return res.status;
    };
    const channel = JSON.stringify({
      payoutStrategy: 'threshold',
      thresholdUsd: '100.00',
      payoutCurrency: 'usdt',
      payoutNetwork: 'eth',
      walletAddress: '0x8ba1f109551bD432803012645Ac136ddd64DBA72',
    });

    // Admin API: good tokens (each name), bad ones, a secret of another kind presented as the token.
    expect(
      await call('put channel (admin)', 'PUT', `/api/channels/${CHANNEL}`, { token: env.ADMIN_TOKEN, body: channel }),
    ).toBe(201);
    expect(await call('put channel (alice)', 'PUT', `/api/channels/${CHANNEL}`, { token: ALICE, body: channel })).toBe(
      200,
    );
    expect(await call('get channel (carol)', 'GET', `/api/channels/${CHANNEL}`, { token: CAROL })).toBe(200);
    expect(await call('bad token', 'GET', `/api/channels/${CHANNEL}`, { token: `${ALICE}x` })).toBe(401);
    expect(
      await call('IPN secret as token', 'GET', `/api/channels/${CHANNEL}`, { token: env.NOWPAYMENTS_IPN_SECRET }),
    ).toBe(401);
    expect(await call('no token', 'GET', '/api/payouts')).toBe(401);
    expect(
      await call('malformed header', 'GET', '/api/payouts', { headers: { authorization: `Basic ${env.ADMIN_TOKEN}` } }),
    ).toBe(401);
    expect(await call('payouts', 'GET', '/api/payouts', { token: env.ADMIN_TOKEN })).toBe(200);
    expect(
      await call('bad channel body', 'PUT', `/api/channels/${CHANNEL}`, {
        token: env.ADMIN_TOKEN,
        body: '{"payoutStrategy":',
      }),
    ).toBe(400);
    expect(
      await call('unknown payout', 'POST', '/api/payouts/po_0123456789abcdef/retry', { token: ALICE, body: '{}' }),
    ).toBe(404);
    expect(await call('no route', 'GET', `/api/${env.ADMIN_TOKEN}`, { token: env.ADMIN_TOKEN })).toBe(404);

    // IPNs: signed with a wrong secret, unsigned, malformed, then rightly signed.
    const body = ipnBody({ payment_id: 9_100_000_001, order_id: `PGP-1|${CHANNEL}` });
    const wrong = signed(body, 'not-the-ipn-secret-0123456789');
    expect(
      await call('IPN wrong signature', 'POST', '/webhooks/nowpayments', { body: wrong.raw, headers: wrong.headers }),
    ).toBe(401);
    expect(await call('IPN unsigned', 'POST', '/webhooks/nowpayments', { body: wrong.raw })).toBe(401);
    expect(
      await call('IPN malformed', 'POST', '/webhooks/nowpayments', { body: '{"payment_id":', headers: wrong.headers }),
    ).toBe(400);
    const right = signed(body, env.NOWPAYMENTS_IPN_SECRET as string);
    expect(
      await call('IPN right signature', 'POST', '/webhooks/nowpayments', { body: right.raw, headers: right.headers }),
    ).toBe(200);
    expect(await call('payment', 'GET', `/api/payments/${body.payment_id}`, { token: env.ADMIN_TOKEN })).toBe(200);

    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    const output = proc.output();
    // The run did log (at trace level): a check over empty output would prove nothing.
    expect(output).toContain('"event":"ipn_rejected"');
    expect(output).toContain('"event":"ipn_accepted"');
    expect(output).toContain('"event":"channel_created"');
    expect(leaksIn(output)).toEqual([]);
    for (const r of responses) expect(leaksIn(r.text), r.what).toEqual([]);
  });

  it('a start with bad secrets names the variables and prints none of the values', async () => {
    const bad = {
      ...env,
      ADMIN_TOKEN: 'short-admin-tok',
      ADMIN_TOKENS: `alice:${ALICE},${CAROL}`,
      NOWPAYMENTS_IPN_SECRET: 'short-ipn-sec',
      CHANGENOW_API_KEY: 'short-cn-key',
      HOST_WALLET_PRIVATE_KEY: `0x${'5a'.repeat(31)}5`,
      DATABASE_URL: 'postgres//payrail:DbPassw0rd-secret@db/payrail',
      ETH_RPC_URL: '127.0.0.1:9/v3/RpcKey0123456789abcdefABCDEF',
      NOWPAYMENTS_IPN_SECRETT: 'typo-secret-value-0123456789',
    };
    const run = runPayrail(['web'], bad);
    expect(await run.exited).toBe(78);
    const output = run.output();
    for (const name of [
      'ADMIN_TOKEN',
      'ADMIN_TOKENS',
      'NOWPAYMENTS_IPN_SECRET',
      'CHANGENOW_API_KEY',
      'HOST_WALLET_PRIVATE_KEY',
      'DATABASE_URL',
      'ETH_RPC_URL',
      'NOWPAYMENTS_IPN_SECRETT',
    ]) {
      expect(output).toContain(`${name}:`);
    }
    for (const value of [
      bad.ADMIN_TOKEN,
      ALICE,
      CAROL,
      bad.NOWPAYMENTS_IPN_SECRET,
      bad.CHANGENOW_API_KEY,
      bad.HOST_WALLET_PRIVATE_KEY,
      'DbPassw0rd-secret',
      'RpcKey0123456789abcdefABCDEF',
      bad.NOWPAYMENTS_IPN_SECRETT,
    ]) {
      expect(output.toLowerCase(), value).not.toContain(value.toLowerCase());
    }
  });

  it('an RPC error carrying the URL (viem puts it in the message, even lower-cased) is logged with the key scrubbed', async () => {
    const sink = logSink();
    const logger = createLogger({ level: 'info', secrets, destination: sink.stream });
    const client = createPublicClient({ transport: http(env.ETH_RPC_URL, { retryCount: 0 }) });
    const error = await client.getBlockNumber().then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toContain('RpcKey0123456789abcdefABCDEF');
    logger.error(
      { event: 'probe', err: error, lowered: error?.message.toLowerCase(), url: env.ETH_RPC_URL },
      'rpc failed',
    );
    logger.child({ component: 'child' }).warn(
      {
        event: 'probe_child',
        tokens: [env.ADMIN_TOKEN, CAROL],
        key: (env.HOST_WALLET_PRIVATE_KEY as string).slice(2).toUpperCase(),
      },
      'child',
    );
    await new Promise((r) => setImmediate(r));
    const written = JSON.stringify(sink.lines);
    expect(sink.lines.map((l) => l.event)).toEqual(['probe', 'probe_child']);
    expect(leaksIn(written)).toEqual([]);
    expect(written).toContain('http://127.0.0.1:9/v3/[redacted]');
  });
});
