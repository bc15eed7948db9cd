/**
 * `payrail status` as its own process against a seeded database: the text report names the figures, `--json` is the
 * overview GET /api/overview serves, and bad arguments are refused before anything is opened.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Overview } from '../../src/overview/index.ts';
import { instantEthChannel, sendIpn } from '../support/api-seed.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { insertAlert, observe, seedInstantPayout, seedNetworkFee, seedTransfer } from '../support/overview-seed.ts';
import { startTestPayrail, type TestPayrail } from '../support/payrail.ts';
import { fixtures } from '../support/ipn.ts';
import { saveChannel, sendFinished } from '../support/payouts.ts';
import { offlineProcessEnv } from '../support/process-env.ts';
import { runPayrail } from '../support/process.ts';

const INSTANT = '-1008000000001';

let db: TestDatabase;
let payrail: TestPayrail;
let env: Record<string, string>;
let reviewId: string;
let transferId: string;
/** A partial payment kept for review (PARTIAL_PAYMENTS=review, the default). */
const PARTIAL_ID = '9800000003';

async function status(args: string[]): Promise<{ code: number | null; stdout: string; output: string }> {
  const proc = runPayrail(['status', ...args], env);
  let stdout = '';
  proc.child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const code = await proc.exited;
  return { code, stdout, output: proc.output() };
}

beforeAll(async () => {
  db = await createTestDatabase();
  payrail = await startTestPayrail(db, { roles: { web: true, worker: false } });
  await saveChannel(payrail, INSTANT, instantEthChannel());
  await sendFinished(payrail, 9_800_000_001, INSTANT);
  const second = await sendFinished(payrail, 9_800_000_002, INSTANT);
  reviewId = await seedInstantPayout(db.db, second, 'needs_review');
  // A transfer whose nonce another transaction took, and an earlier one, confirmed, whose gas was booked.
  transferId = await seedTransfer(db.db, {
    purpose: 'conversion',
    ref: 'conv_00000000000000f1',
    asset: 'eth',
    amount: 4_723_900_000_000_000n,
    status: 'needs_review',
    nonce: 5,
    changedAgo: '3 hours',
    reason: 'nonce 5 was taken by a transaction payrail did not sign',
  });
  const confirmed = await seedTransfer(db.db, {
    purpose: 'conversion',
    ref: 'conv_00000000000000f0',
    asset: 'eth',
    amount: 4_723_900_000_000_000n,
    status: 'confirmed',
    nonce: 4,
    blockNumber: 90,
  });
  await seedNetworkFee(db.db, confirmed, 21_000n * 10_000_000_000n);
  const partial = {
    ...structuredClone(fixtures.partially_paid),
    payment_id: Number(PARTIAL_ID),
    order_id: `PGP-1|${INSTANT}`,
  };
  expect(await sendIpn(payrail, partial)).toBe(202);
  await insertAlert(db.db, {
    rule: 'host_wallet_low',
    subject: 'eth',
    severity: 'critical',
    message: 'host wallet ETH below 0.05',
  });
  await observe(db.db, 'host_wallet.eth', false, '10000000000000000', 'below the floor');
  env = offlineProcessEnv(db.url);
});

afterAll(async () => {
  await payrail?.stop();
  await db?.close();
});

describe('payrail status', () => {
  it('prints the pipeline, queues, alerts, host wallet and review queue as aligned text', async () => {
    const { code, stdout, output } = await status([]);
    expect(code, output).toBe(0);
    expect(stdout).toMatch(/^payrail status · \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC · window 24 h\n/);
    expect(stdout).toMatch(/received\s+0\.00974 ETH/);
    expect(stdout).toMatch(/platform fees\s+0\.0002922 ETH/);
    expect(stdout).toMatch(/network costs paid\s+0\.00021 ETH/);
    expect(stdout).toMatch(/fees less network costs\s+0\.0000822 ETH/);
    expect(stdout).toContain('payouts      pending 0 · held 0');
    expect(stdout).toContain('needs review 1');
    expect(stdout).toContain('transfers    intent 0 · signed 0 · broadcast 0 · needs review 1');
    expect(stdout).toMatch(/payout_instant\s+2\s+0\s+0\s+\d+s/);
    // The partial payment raised its warning when intake kept it; the critical alert comes first.
    expect(stdout).toMatch(
      new RegExp(
        `ALERTS \\(2 open\\)\\n\\s+CRITICAL\\s+host_wallet_low\\s+eth\\s+host wallet ETH below 0\\.05.*\\n\\s+warning\\s+payment_review\\s+${PARTIAL_ID}\\s`,
      ),
    );
    expect(stdout).toMatch(/host wallet ETH\s+0\.01 ETH/);
    expect(stdout).toMatch(
      new RegExp(
        `REVIEW QUEUE \\(1 payouts, 1 transfers, 1 payments\\)\\n\\s+${reviewId}\\s+needs_review\\s+0\\.0047239 ETH\\s+${INSTANT}`,
      ),
    );
    expect(stdout).toMatch(
      new RegExp(
        `\\n  ${transferId}  needs_review  0\\.0047239 ETH  conversion conv_00000000000000f1  nonce 5  3h00m  nonce 5 was taken by a transaction payrail did not sign\\n`,
      ),
    );
    // The partial payment: NOWPayments' figures, the channel, and what a person may do (credit or ignore).
    expect(stdout).toMatch(
      new RegExp(
        `\\n  payment ${PARTIAL_ID}\\s+partially_paid\\s+0\\.00294 ETH\\s+paid 0\\.003 of 0\\.00495 ETH\\s+${INSTANT}\\s+\\S+\\s+credit/ignore\\s+partially_paid\\n`,
      ),
    );
    expect(stdout).toMatch(new RegExp(`${INSTANT}\\s+instant\\s+0 USDT.*payout ${reviewId} in review\\n`));
    // Every table's rows start in the same column.
    const queueRows = stdout.split('\n').filter((line) => /^\s+(payout_|conversion_|transfer_)/.test(line));
    expect(new Set(queueRows.map((line) => line.search(/\d/))).size).toBe(1);
  });

  it('--json prints the overview the API serves', async () => {
    const { code, stdout, output } = await status(['--json', '--hours', '48']);
    expect(code, output).toBe(0);
    const fromCli = JSON.parse(stdout) as Overview;
    const fromApi = (await payrail.request('GET', '/api/overview?hours=48')).body as Overview;
    expect(fromCli.windowHours).toBe(48);
    expect(fromCli.totals).toEqual(fromApi.totals);
    expect(fromCli.pipeline).toEqual(fromApi.pipeline);
    expect(fromCli.review.payouts.map((p) => p.payoutId)).toEqual([reviewId]);
    expect(fromCli.review.payments.map((p) => [p.paymentId, p.channelId, p.reason, p.actions])).toEqual([
      [PARTIAL_ID, INSTANT, 'partially_paid', ['credit', 'ignore']],
    ]);
    expect(fromCli.review.payments).toEqual(
      fromApi.review.payments.map((p) => ({ ...p, waitingSeconds: expect.any(Number) })),
    );
    expect(fromCli.review.transfers.map((t) => [t.transferId, t.amount, t.nonce, t.reason])).toEqual([
      [transferId, '0.0047239', '5', 'nonce 5 was taken by a transaction payrail did not sign'],
    ]);
    expect(fromCli.pipeline.transfers).toEqual({ intent: 0, signed: 0, broadcast: 0, needs_review: 1 });
    expect(fromCli.totals.feesVsNetworkCosts).toEqual({
      asset: 'eth',
      fees: '0.0002922',
      networkCosts: '0.00021',
      net: '0.0000822',
    });
    expect(fromCli.channels.items.find((c) => c.channelId === INSTANT)?.payoutInReview).toEqual({
      payoutId: reviewId,
      transferId: null,
      count: 1,
    });
    expect(fromCli.volume.buckets.map((b) => b.received)).toEqual(fromApi.volume.buckets.map((b) => b.received));
    expect(fromCli.totals.received).toEqual({ eth: '0.00974' });
  });

  it('refuses unknown arguments with the usage, exit 64', async () => {
    for (const args of [['--yaml'], ['--hours', '1000']]) {
      const { code, output } = await status(args);
      expect(code, args.join(' ')).toBe(64);
      expect(output).toContain('usage: payrail status [--json] [--hours N]');
    }
  });
});

describe('payrail status on the embedded default', () => {
  it(
    '--json prints the JSON alone on stdout (piped to jq as a new user would), the log on stderr',
    { timeout: 120_000 },
    async () => {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'payrail-status-embedded-'));
      // Run as root, embedded PostgreSQL's initdb runs as another user, who must be able to enter the directory.
      fs.chmodSync(dataDir, 0o755);
      try {
        // No DATABASE_URL: each command starts the embedded PostgreSQL in the data directory, and logs that it did.
        const local = { PAYRAIL_DATA_DIR: dataDir, LOG_LEVEL: 'info' };
        const migrate = runPayrail(['migrate'], local);
        expect(await migrate.exited, migrate.output()).toBe(0);
        const proc = runPayrail(['status', '--json'], local);
        let stdout = '';
        let stderr = '';
        proc.child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        proc.child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        expect(await proc.exited, proc.output()).toBe(0);
        expect(() => JSON.parse(stdout), stdout.slice(0, 300)).not.toThrow();
        expect(JSON.parse(stdout)).toMatchObject({
          windowHours: 24,
          pipeline: expect.any(Object),
          totals: expect.any(Object),
        });
        expect(stderr).toContain('embedded_pg_started');
      } finally {
        fs.rmSync(dataDir, { recursive: true, force: true });
      }
    },
  );
});

describe('payrail check-ledger', () => {
  it('needs nothing but DATABASE_URL from a deployment: no secrets, no ChangeNow or RPC URL', async () => {
    const proc = runPayrail(['status'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' });
    expect(await proc.exited).toBe(0);
    expect(proc.output()).toMatch(/^payrail status · /);
  });

  it('refuses a database whose schema is behind this version, and does not migrate it', async () => {
    const { rows } = await db.pool.query<{ id: number; name: string }>(
      'select id, name from payrail_migrations order by id desc limit 1',
    );
    const last = rows[0] as { id: number; name: string };
    await db.pool.query('delete from payrail_migrations where id = $1', [last.id]);
    try {
      for (const command of ['status', 'check-ledger']) {
        const proc = runPayrail([command], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' });
        expect(await proc.exited).toBe(1);
        expect(proc.output()).toContain(
          `the database schema is behind this version of payrail (not applied: ${last.name}); run payrail migrate first`,
        );
      }
      expect((await db.pool.query('select 1 from payrail_migrations where id = $1', [last.id])).rowCount).toBe(0);
    } finally {
      await db.pool.query('insert into payrail_migrations (id, name) values ($1, $2)', [last.id, last.name]);
    }
  });

  it('keeps progress off a stderr that is not a terminal', async () => {
    const proc = runPayrail(['check-ledger'], env);
    expect(await proc.exited).toBe(0);
    expect(proc.output()).toContain('ledger OK');
    expect(proc.output()).not.toContain('check-ledger [');
  });
});
