/**
 * A worker process SIGKILLed at each step of a conversion, then a fresh worker: one exchange, one transfer, and the
 * same end state as without the crash. The killed process's queue locks are released by the survivor's heartbeat.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bookHostFunding, expectLedgerEqualsChain } from '../support/ledger-chain.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { ipnBody, signed } from '../support/ipn.ts';
import { eventually, startOutside, type Outside } from '../support/outside.ts';
import { ADMIN_TOKEN, IPN_SECRET, startTestPayrail, type TestPayrail } from '../support/payrail.ts';
import { runPayrail, type PayrailProcess } from '../support/process.ts';

let outside: Outside;
let db: TestDatabase;
let web: TestPayrail;
const children: PayrailProcess[] = [];

function worker(extra: Record<string, string> = {}): PayrailProcess {
  const proc = runPayrail(['worker'], {
    ...outside.env,
    DATABASE_URL: db.url,
    ADMIN_TOKEN,
    NOWPAYMENTS_IPN_SECRET: IPN_SECRET,
    CONVERSION_MIN_USD: '1',
    HEALTH_WORKER_STALE_SECONDS: '2',
    WORKER_HEARTBEAT_INTERVAL: '500ms',
    LOG_LEVEL: 'warn',
    ...extra,
  });
  children.push(proc);
  return proc;
}

beforeAll(async () => {
  outside = await startOutside();
  db = await createTestDatabase();
  await bookHostFunding(db, outside);
  web = await startTestPayrail(db, {
    outside,
    roles: { web: true, worker: false },
    env: { ...outside.env, CONVERSION_MIN_USD: '1' },
  });
});
afterAll(async () => {
  for (const child of children)
    if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL');
  await web?.stop();
  try {
    if (db && outside) await expectLedgerEqualsChain(db, outside);
  } finally {
    await db?.close();
    await outside?.stop();
  }
});

describe('SIGKILL of a worker during a conversion', () => {
  it.each(['after_exchange_created', 'after_broadcast', 'before_settle'] as const)(
    'killed %s: restart finishes it with one exchange and one transfer',
    async (point) => {
      const channelId = `-10050000000${['after_exchange_created', 'after_broadcast', 'before_settle'].indexOf(point)}`;
      expect(
        (
          await web.request('PUT', `/api/channels/${channelId}`, {
            body: {
              payoutStrategy: 'threshold',
              thresholdUsd: '1000',
              payoutCurrency: 'usdt',
              payoutNetwork: 'eth',
              walletAddress: '0x8ba1f109551bD432803012645Ac136ddd64DBA72',
            },
          })
        ).status,
      ).toBe(201);

      const doomed = worker({ PAYRAIL_CRASH_AT: point });
      const body = ipnBody({ payment_id: 9_100_000_000 + children.length, order_id: `PGP-1|${channelId}` });
      const { raw, headers } = signed(body, IPN_SECRET);
      await web.forwardOutcome(raw);
      expect((await web.request('POST', '/webhooks/nowpayments', { raw, headers, token: null })).status).toBe(200);
      await Promise.race([doomed.exited, new Promise((r) => setTimeout(r, 20_000))]);
      if (doomed.child.signalCode === null) throw new Error(`worker did not crash:\n${doomed.output()}`);
      expect(doomed.child.signalCode).toBe('SIGKILL');

      const survivor = worker();
      await eventually(
        `payment converted after a SIGKILL ${point}`,
        async () => {
          const { rows } = await db.pool.query('select conversion_status from payments where payment_id = $1', [
            body.payment_id,
          ]);
          return rows[0]?.conversion_status === 'completed';
        },
        30_000,
      ).catch(async (error: Error) => {
        const jobs = await db.pool.query(
          'select task_identifier, attempts, max_attempts, locked_by, run_at, last_error, queue_name from graphile_worker.jobs',
        );
        const conv = await db.pool.query('select status, last_error from conversions');
        throw new Error(
          `${error.message}\njobs: ${JSON.stringify(jobs.rows)}\nconversions: ${JSON.stringify(conv.rows)}\nkilled worker:\n${doomed.output()}\nsurvivor:\n${survivor.output()}`,
        );
      });
      survivor.child.kill('SIGTERM');
      expect(await survivor.exited).toBe(0);

      const { rows } = await db.pool.query(
        'select c.conversion_id, c.payin_address, c.amount_wei::text from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1',
        [body.payment_id],
      );
      expect(rows).toHaveLength(1);
      const exchanges = [...outside.sim.exchanges.values()].filter((e) => e.userId === rows[0].conversion_id);
      expect(exchanges).toHaveLength(1);
      const { rows: transfers } = await db.pool.query(
        "select status from chain_transfers where purpose = 'conversion' and ref = $1",
        [rows[0].conversion_id],
      );
      expect(transfers).toEqual([{ status: 'confirmed' }]);
      expect(await outside.balanceOf(rows[0].payin_address)).toBe(BigInt(rows[0].amount_wei));
      const { rows: balance } = await db.pool.query(
        "select balance::text from ledger_accounts where code = $1 and asset = 'usdt'",
        [`channel:${channelId}`],
      );
      expect(balance).toEqual([{ balance: '13171700' }]);
    },
  );
});
