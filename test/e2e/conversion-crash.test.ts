/**
 * A worker process SIGKILLed at each step of a conversion, then a fresh worker: one exchange, one transfer, and the
 * same end state as without the crash. The killed process's queue locks are released by the survivor's heartbeat.
 */
import { describe, expect } from 'vitest';
import { worldFirst } from '../support/fixtures.ts';
import { eventually } from '../support/outside.ts';
import { workerProcessTest } from '../support/worker-processes.ts';

const it = worldFirst(
  workerProcessTest({
    env: { CONVERSION_MIN_USD: '1' },
    firstPaymentId: 9_100_000_000,
    firstChannel: 1_005_000_000_000,
  }),
);

describe('SIGKILL of a worker during a conversion', () => {
  it.for(['after_exchange_created', 'after_broadcast', 'before_settle'] as const)(
    'killed %s: restart finishes it with one exchange and one transfer',
    async (point, { outside, db, pay, workers, newChannel }) => {
      const channelId = await newChannel({
        payoutStrategy: 'threshold',
        thresholdUsd: '1000',
        payoutCurrency: 'usdt',
        payoutNetwork: 'eth',
        walletAddress: '0x8ba1f109551bD432803012645Ac136ddd64DBA72',
      });

      const doomed = workers.start({ PAYRAIL_CRASH_AT: point });
      const paymentId = await pay(channelId);
      await Promise.race([doomed.exited, new Promise((r) => setTimeout(r, 20_000))]);
      if (doomed.child.signalCode === null) throw new Error(`worker did not crash:\n${doomed.output()}`);
      expect(doomed.child.signalCode).toBe('SIGKILL');

      const survivor = workers.start();
      await eventually(
        `payment converted after a SIGKILL ${point}`,
        async () => {
          const { rows } = await db.pool.query('select conversion_status from payments where payment_id = $1', [
            paymentId,
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
        [paymentId],
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
