// Its own world, not the shared fixtures': a web payrail takes the IPNs and runs no jobs; the batch run is called here.
/**
 * A conversion_batch run (src/pipeline/conversion/run.ts, convertPendingPayments) on real parts (PostgreSQL, anvil,
 * the ChangeNow simulator over HTTP): a backlog larger than one conversion is taken in full conversions, within the
 * run's bound; a run that took fewer payments than a conversion may take ends there, so what intake credits meanwhile
 * waits for the next nudge instead of making one small conversion after another while intake lasts.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { StageDeps } from '../../src/pipeline/index.ts';
import { convertPendingPayments } from '../../src/pipeline/conversion/run.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { startOutside, type Outside } from '../support/outside.ts';
import { startTestPayrail, workerStageDeps, type TestPayrail } from '../support/payrail.ts';
import { saveChannel, sendFinished, TRON_WALLET } from '../support/payouts.ts';

let outside: Outside;
let db: TestDatabase;
let web: TestPayrail;
let channelId: string;
let nextPaymentId = 9_830_000_000;

/** The stages as a worker has them, converting from 1 USD on, at most `maxPayments` payments per conversion. */
function depsTaking(maxPayments: number): StageDeps {
  return workerStageDeps(db, outside, {
    env: { CONVERSION_MIN_USD: '1', CONVERSION_MAX_PAYMENTS: String(maxPayments) },
  });
}

async function pay(count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push(await sendFinished(web, nextPaymentId++, channelId));
  return ids;
}

/** The conversions holding any of `ids`, oldest first, each with its payments. */
async function conversionsOf(ids: string[]): Promise<string[][]> {
  const { rows } = await db.pool.query<{ payments: string[] }>(
    `select array_agg(cp.payment_id::text order by cp.payment_id) as payments
       from conversion_payments cp join conversions c using (conversion_id)
      where cp.conversion_id in (select conversion_id from conversion_payments where payment_id = any($1::numeric[]))
      group by c.conversion_id, c.created_at order by c.created_at`,
    [ids],
  );
  return rows.map((r) => r.payments);
}

async function pendingOf(ids: string[]): Promise<string[]> {
  const { rows } = await db.pool.query<{ payment_id: string }>(
    "select payment_id::text from payments where payment_id = any($1::numeric[]) and conversion_status = 'pending' order by payment_id",
    [ids],
  );
  return rows.map((r) => r.payment_id);
}

beforeAll(async () => {
  outside = await startOutside();
  db = await createTestDatabase();
  web = await startTestPayrail(db, { outside, roles: { web: true, worker: false }, env: outside.env });
  channelId = await saveChannel(web, '-1008300000001', {
    payoutStrategy: 'threshold',
    thresholdUsd: '100000',
    payoutCurrency: 'usdt',
    payoutNetwork: 'trx',
    walletAddress: TRON_WALLET,
  });
});
afterEach(async () => {
  // Each test starts with nothing pending.
  await convertPendingPayments(depsTaking(5_000), 1);
});
afterAll(async () => {
  await web?.stop();
  await db?.close();
  await outside?.stop();
});

describe('conversion batch run', () => {
  it('takes a backlog larger than one conversion in full conversions, within its bound', async () => {
    const ids = await pay(7);
    await convertPendingPayments(depsTaking(2), 3);
    expect(await conversionsOf(ids)).toEqual([ids.slice(0, 2), ids.slice(2, 4), ids.slice(4, 6)]);
    expect(await pendingOf(ids)).toEqual(ids.slice(6));

    // The next run takes what is left: fewer than a conversion may take, and it stops there.
    await convertPendingPayments(depsTaking(2), 3);
    expect(await conversionsOf(ids)).toEqual([ids.slice(0, 2), ids.slice(2, 4), ids.slice(4, 6), ids.slice(6)]);
  });

  it('leaves what intake credits while it runs to the next nudge, once a conversion took less than it may', async () => {
    const first = await pay(1);
    const meanwhile: string[] = [];
    const deps = depsTaking(2);
    // Intake goes on while the run asks ChangeNow what the batch is worth: a payment is credited before every answer.
    const exchange = deps.exchange;
    const withIntake: StageDeps = {
      ...deps,
      exchange: Object.assign(Object.create(exchange) as typeof exchange, {
        estimate: async (...args: Parameters<typeof exchange.estimate>) => {
          meanwhile.push(...(await pay(1)));
          return exchange.estimate(...args);
        },
      }),
    };
    await convertPendingPayments(withIntake, 20);

    expect(await conversionsOf([...first, ...meanwhile])).toEqual([first]);
    expect(meanwhile).toHaveLength(1);
    expect(await pendingOf(meanwhile)).toEqual(meanwhile);
  });

  it("queues a conversion's steps ahead of the jobs due before them: the nudge and the exchange at priority -1", async () => {
    const ids = await pay(1);
    const priorityOf = async (key: string) =>
      (await db.pool.query<{ priority: number }>('select priority from graphile_worker.jobs where key = $1', [key]))
        .rows[0]?.priority;
    expect(await priorityOf('conversion_batch:nudge')).toBe(-1);
    await convertPendingPayments(depsTaking(5), 1);
    const { rows } = await db.pool.query<{ conversion_id: string }>(
      'select conversion_id from conversion_payments where payment_id = $1',
      [ids[0]],
    );
    expect(await priorityOf(`conversion_exchange:${rows[0]!.conversion_id}`)).toBe(-1);
  });
});
