/**
 * The real program as separate processes: configuration errors stop the start, the embedded PostgreSQL survives a
 * SIGKILL of payrail (and of itself), and every acknowledged payment is still there afterwards.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ipnBody, signed } from '../support/ipn.ts';
import { freePort } from '../support/ports.ts';
import { alive, runPayrail, waitForHealthy, type PayrailProcess } from '../support/process.ts';

const ADMIN_TOKEN = 'e2e-admin-token-0123456789';
const IPN_SECRET = 'e2e-ipn-secret-0123456789abcdef';
const CHANNEL = '-1002000000001';

let dataDir: string;
let env: Record<string, string>;
let url: string;
/** The local run's NOWPayments simulator: a local run credits a payment once it confirms it. */
let nowpaymentsUrl: string;
const running: PayrailProcess[] = [];

function start(): PayrailProcess {
  const proc = runPayrail(['start'], env);
  running.push(proc);
  return proc;
}

async function api(method: string, route: string, body?: unknown) {
  const res = await fetch(url + route, {
    method,
    headers: {
      authorization: `Bearer ${ADMIN_TOKEN}`,
      ...(body !== undefined && { 'content-type': 'application/json' }),
    },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as any };
}

function postmasterPid(): number {
  return Number.parseInt(fs.readFileSync(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0] ?? '', 10);
}

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'payrail-e2e-'));
  fs.chmodSync(dataDir, 0o755);
  const port = await freePort();
  env = {
    PAYRAIL_DATA_DIR: dataDir,
    PORT: String(port),
    EMBEDDED_PG_PORT: String(await freePort()),
    ADMIN_TOKEN,
    NOWPAYMENTS_IPN_SECRET: IPN_SECRET,
    LOCAL_CHAIN_PORT: String(await freePort()),
    LOCAL_CHANGENOW_PORT: String(await freePort()),
    LOCAL_NOWPAYMENTS_PORT: String(await freePort()),
    // Payments here must stay pending: this file is about intake surviving crashes, not conversion.
    CONVERSION_MIN_USD: '1000000',
    CONVERSION_MAX_WAIT: '2h',
    LOG_LEVEL: 'warn',
  };
  url = `http://127.0.0.1:${port}`;
  nowpaymentsUrl = `http://127.0.0.1:${env.LOCAL_NOWPAYMENTS_PORT}`;
});

afterAll(async () => {
  for (const proc of running) if (proc.child.exitCode === null) proc.child.kill('SIGKILL');
  // Whatever a failed test left: stop the embedded server before removing its files.
  const pidFile = path.join(dataDir, 'pg', 'postmaster.pid');
  if (fs.existsSync(pidFile)) {
    const pid = postmasterPid();
    if (alive(pid)) process.kill(pid, 'SIGQUIT');
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe('configuration errors stop the start', () => {
  it('exits 78 with one message naming every bad variable, and starts nothing', async () => {
    const proc = runPayrail(['start'], {
      DATABASE_URL: 'mysql://nope',
      PORT: 'http',
      PLATFORM_FEE_PERCENT: '3,5',
      NOWPAYMENTS_IPN_SECERT: 'typo',
    });
    expect(await proc.exited).toBe(78);
    const out = proc.output();
    for (const name of [
      'DATABASE_URL',
      'PORT',
      'PLATFORM_FEE_PERCENT',
      'NOWPAYMENTS_IPN_SECERT',
      'ADMIN_TOKEN',
      'NOWPAYMENTS_IPN_SECRET',
    ]) {
      expect(out).toContain(`${name}:`);
    }
  });
});

describe('crash safety of the embedded default', () => {
  const acknowledged: string[] = [];

  it('starts on a fresh data dir, takes payments, and keeps them through a SIGKILL of payrail', async () => {
    const first = start();
    await waitForHealthy(url, first);
    expect(
      (
        await api('PUT', `/api/channels/${CHANNEL}`, {
          payoutStrategy: 'threshold',
          thresholdUsd: '50',
          payoutCurrency: 'usdt',
          payoutNetwork: 'eth',
          walletAddress: '0x8ba1f109551bD432803012645Ac136ddd64DBA72',
        })
      ).status,
    ).toBe(201);
    for (let i = 0; i < 20; i++) {
      const body = ipnBody({ payment_id: 7_000_000_000 + i, order_id: `PGP-42|${CHANNEL}` });
      const { raw, headers } = signed(body, IPN_SECRET);
      // NOWPayments knows the payment it sends an IPN for.
      expect((await fetch(`${nowpaymentsUrl}/sim/payments`, { method: 'POST', body: raw })).status).toBe(200);
      const res = await fetch(`${url}/webhooks/nowpayments`, { method: 'POST', body: raw, headers });
      if (res.status === 200) acknowledged.push(String(body.payment_id));
    }
    expect(acknowledged).toHaveLength(20);
    const pgPid = postmasterPid();

    first.child.kill('SIGKILL');
    await first.exited;
    // The detached server outlives payrail; the next start adopts it.
    expect(alive(pgPid)).toBe(true);

    const second = start();
    await waitForHealthy(url, second);
    expect(postmasterPid()).toBe(pgPid);
    for (const id of acknowledged) {
      // A payment acknowledged but not yet confirmed when payrail was killed is confirmed (and credited) after the restart.
      let res = await api('GET', `/api/payments/${id}`);
      for (let wait = 0; res.body.creditedAt === null && wait < 300; wait++) {
        await new Promise((r) => setTimeout(r, 100));
        res = await api('GET', `/api/payments/${id}`);
      }
      expect(res.body).toMatchObject({ status: 'finished', netAmount: '0.0047239', conversion: { status: 'pending' } });
    }
    expect((await api('GET', `/api/channels/${CHANNEL}`)).body.balances).toEqual([
      { account: 'available', asset: 'eth', amount: '0.094478', units: '94478000000000000' },
    ]);
    second.child.kill('SIGKILL');
    await second.exited;
  });

  it('starts cleanly after PostgreSQL itself was killed too (stale postmaster.pid)', async () => {
    const pgPid = postmasterPid();
    process.kill(pgPid, 'SIGKILL');
    while (alive(pgPid)) await new Promise((r) => setTimeout(r, 50));
    expect(fs.existsSync(path.join(dataDir, 'pg', 'postmaster.pid'))).toBe(true);

    const third = start();
    await waitForHealthy(url, third);
    expect(postmasterPid()).not.toBe(pgPid);
    for (const id of acknowledged) expect((await api('GET', `/api/payments/${id}`)).body.status).toBe('finished');

    // A graceful stop takes the embedded server down with it.
    const serverPid = postmasterPid();
    third.child.kill('SIGTERM');
    expect(await third.exited).toBe(0);
    expect(alive(serverPid)).toBe(false);
  });

  it('payrail check-ledger passes on what the crashes left, and payrail migrate is a no-op the second time', async () => {
    const migrate1 = runPayrail(['migrate'], env);
    expect(await migrate1.exited).toBe(0);
    const check = runPayrail(['check-ledger'], env);
    expect(await check.exited).toBe(0);
    // 20 payments of three entries each, and the host wallet's funding on the fresh local chain, booked once as capital
    // across the three starts (the chain kept its state, so it was funded once).
    expect(check.output()).toMatch(/ledger: \d+ accounts, 21 journals, 62 entries/);
    expect(check.output()).toContain('ledger OK');
  });
});
