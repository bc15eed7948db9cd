// Its own world, not the shared fixtures': a web payrail takes the IPNs and runs no jobs; the stages run by hand.
/**
 * A payout_poll run that completes its payout polls the other sent payouts whose polls wait in the queue
 * (src/pipeline/payout/poll-set.ts), on real parts (PostgreSQL, anvil, the ChangeNow simulator over HTTP): those whose
 * exchange finished as asked are completed in one commit, their jobs removed; any other answer is left to the
 * payout's own poll, which handles it as before.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobWithKeyExists } from '../../src/jobs/index.ts';
import { checkLedger } from '../../src/ledger/index.ts';
import type { StageDeps } from '../../src/pipeline/index.ts';
import { conversionTransferHooks } from '../../src/pipeline/conversion/run.ts';
import { openQueuedPayouts } from '../../src/pipeline/payout/open-set.ts';
import { pollPayout } from '../../src/pipeline/payout/poll.ts';
import { payoutTransferHooks } from '../../src/pipeline/payout/run.ts';
import { confirmTransfer, sendTransfer } from '../../src/pipeline/transfer/index.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { bookHostFunding } from '../support/ledger-chain.ts';
import { startOutside, type Outside } from '../support/outside.ts';
import { runJobByHand, startTestPayrail, workerStageDeps, type TestPayrail } from '../support/payrail.ts';
import { saveChannel, sendFinished, TRON_WALLET } from '../support/payouts.ts';

let outside: Outside;
let db: TestDatabase;
let web: TestPayrail;
let deps: StageDeps;

beforeAll(async () => {
  outside = await startOutside();
  db = await createTestDatabase();
  await bookHostFunding(db, outside);
  web = await startTestPayrail(db, { outside, roles: { web: true, worker: false }, env: outside.env });
  deps = workerStageDeps(db, outside);
});
afterAll(async () => {
  await web?.stop();
  await db?.close();
  await outside?.stop();
});

interface Row {
  payout_id: string;
  status: string;
  transfer_id: string;
  exchange_id: string;
  amount_out: string | null;
  payout_hash: string | null;
  reason: string | null;
}

async function payouts(channelId: string): Promise<Row[]> {
  const { rows } = await db.pool.query<Row>(
    `select payout_id, status, transfer_id, exchange_id, amount_out, payout_hash, reason from payouts
     where channel_id = $1 order by payout_id`,
    [channelId],
  );
  return rows;
}

/** `count` instant exchange payments of a new channel, opened in one set, signed in one send, confirmed together. */
async function sentPayouts(channelId: string, count: number, firstPayment: number, armed: () => void): Promise<Row[]> {
  await saveChannel(web, channelId, {
    payoutStrategy: 'instant',
    payoutCurrency: 'usdt',
    payoutNetwork: 'trx',
    walletAddress: TRON_WALLET,
  });
  for (let i = 0; i < count; i++) await sendFinished(web, firstPayment + i, channelId);
  armed();
  await openQueuedPayouts(deps);
  const opened = await payouts(channelId);
  expect(opened.map((p) => p.status)).toEqual(Array(count).fill('exchange_created'));
  const hooks = { conversion: conversionTransferHooks(deps), payout: payoutTransferHooks(deps) };
  const first = opened[0]!.transfer_id;
  await runJobByHand(db, `transfer_send:${first}`, () => sendTransfer(deps, hooks, first));
  await runJobByHand(db, `transfer_confirm:${first}`, () => confirmTransfer(deps, hooks, first));
  const sent = await payouts(channelId);
  expect(sent.map((p) => p.status)).toEqual(Array(count).fill('sent'));
  return sent;
}

async function pollJob(payoutId: string) {
  const { rows } = await db.pool.query(
    'select locked_at, attempts, run_at <= now() as due from graphile_worker.jobs where key = $1',
    [`payout_poll:${payoutId}`],
  );
  return rows[0] as { locked_at: Date | null; attempts: number; due: boolean } | undefined;
}

describe('payout polls in sets', () => {
  it('completes the sent payouts whose exchanges finished as asked; one finished below its estimate is left to its own poll', async () => {
    const channelId = '-1008700000001';
    const sent = await sentPayouts(channelId, 4, 9_870_000_000, () =>
      // Whichever exchange ChangeNow creates first will finish below its estimate.
      outside.sim.failNextExchange('below_estimate'),
    );
    for (const p of sent) expect(await pollJob(p.payout_id)).toMatchObject({ locked_at: null, due: true });

    const exchangeOf = (p: Row) => outside.sim.exchanges.get(p.exchange_id)!;
    const short = sent.find((p) => exchangeOf(p).forcedEnd === 'below_estimate')!;
    const plain = sent.filter((p) => p !== short);
    const own = plain[0]!;
    await runJobByHand(db, `payout_poll:${own.payout_id}`, () => pollPayout(deps, own.payout_id));

    const after = await payouts(channelId);
    for (const p of plain) {
      const row = after.find((r) => r.payout_id === p.payout_id)!;
      const exchange = exchangeOf(p);
      expect(exchange.status).toBe('finished');
      expect(row).toMatchObject({
        status: 'completed',
        amount_out: exchange.amountTo,
        payout_hash: exchange.payoutHash,
      });
      expect(await jobWithKeyExists(db.db, `payout_poll:${p.payout_id}`)).toBe(false);
      const { rowCount } = await db.pool.query(
        "select 1 from ledger_journals where kind = 'payout_completed' and ref = $1",
        [p.payout_id],
      );
      expect(rowCount).toBe(1);
    }
    // Finished below its estimate: not the plain case. Its own poll sends it to review, as before.
    expect(after.find((r) => r.payout_id === short.payout_id)).toMatchObject({ status: 'sent' });
    await runJobByHand(db, `payout_poll:${short.payout_id}`, () => pollPayout(deps, short.payout_id));
    const reviewed = (await payouts(channelId)).find((r) => r.payout_id === short.payout_id)!;
    expect(reviewed.status).toBe('needs_review');
    expect(reviewed.reason).toMatch(/finished below its estimate/);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('leaves a payout whose poll a worker holds to that worker, and one still under way due again at once', async () => {
    const channelId = '-1008700000002';
    const sent = await sentPayouts(channelId, 4, 9_871_000_000, () =>
      // Whichever exchange ChangeNow creates first waits in its AML check.
      outside.sim.failNextExchange('verifying', { verifyingMs: 600_000 }),
    );
    const exchangeOf = (p: Row) => outside.sim.exchanges.get(p.exchange_id)!;
    const waiting = sent.find((p) => exchangeOf(p).forcedEnd === 'verifying')!;
    const [own, held, other] = sent.filter((p) => p !== waiting) as [Row, Row, Row];
    // A worker has taken held's poll job.
    await db.pool.query(
      "update graphile_worker._private_jobs set locked_at = now(), locked_by = 'another-worker' where key = $1",
      [`payout_poll:${held.payout_id}`],
    );
    await runJobByHand(db, `payout_poll:${own.payout_id}`, () => pollPayout(deps, own.payout_id));

    const after = new Map((await payouts(channelId)).map((r) => [r.payout_id, r] as const));
    expect(after.get(own.payout_id)?.status).toBe('completed');
    expect(after.get(other.payout_id)?.status).toBe('completed');
    expect(await pollJob(other.payout_id)).toBeUndefined();
    // The worker's job is untouched: still its own, never tried, its payout still sent.
    expect(after.get(held.payout_id)?.status).toBe('sent');
    expect(await pollJob(held.payout_id)).toMatchObject({ locked_at: expect.any(Date), attempts: 0 });
    // Read by the set while in ChangeNow's AML check: its job is due again, as before the set.
    expect(after.get(waiting.payout_id)?.status).toBe('sent');
    expect(await pollJob(waiting.payout_id)).toMatchObject({ locked_at: null, attempts: 0, due: true });

    // The worker's run completes its payout once.
    await db.pool.query('update graphile_worker._private_jobs set locked_at = null, locked_by = null where key = $1', [
      `payout_poll:${held.payout_id}`,
    ]);
    await runJobByHand(db, `payout_poll:${held.payout_id}`, () => pollPayout(deps, held.payout_id));
    expect((await payouts(channelId)).find((r) => r.payout_id === held.payout_id)?.status).toBe('completed');
    const { rows } = await db.pool.query(
      "select ref, count(*)::int as n from ledger_journals where kind = 'payout_completed' and ref = any($1) group by ref",
      [[own.payout_id, held.payout_id, other.payout_id]],
    );
    expect(rows.map((r) => r.n)).toEqual([1, 1, 1]);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });
});
