/**
 * Settlement cannot run twice for one conversion, whatever the order of its jobs and of a person's actions. For a
 * conversion whose exchange finished at ChangeNow (the simulator, paying out on anvil), four things start at once, in
 * an order and with start offsets fast-check picks: the conversion_poll job as a worker runs it, a second copy of it
 * (the queue's reaper running again the job of a worker that is still alive), and a person's retry and resolve
 * (received, with the payout transaction the chain shows) over HTTP. The conversion starts either sent (the poll's
 * to settle) or in review after the exchange had said failed (a person's to act on) and ChangeNow then finished it.
 *
 * Every way it goes: the USDT is credited to the channel once (one settlement journal, the channel's balance, the
 * payment's share), the conversion ends completed with that payout, a job the retry queued changes nothing more, and
 * the ledger checks out (and equals the chain at the end).
 */
import fc from 'fast-check';
import type { JobHelpers } from 'graphile-worker';
import { expect } from 'vitest';
import { checkLedger } from '../../src/ledger/index.ts';
import { formatUnits, parseUnitsFloor } from '../../src/money/index.ts';
import { pipelineTasks, type StageDeps } from '../../src/pipeline/index.ts';
import {
  batchPendingPayments,
  conversionTransferHooks,
  createConversionExchange,
} from '../../src/pipeline/conversion/run.ts';
import { payoutTransferHooks } from '../../src/pipeline/payout/run.ts';
import { confirmTransfer, sendTransfer } from '../../src/pipeline/transfer/index.ts';
import { worldFirst, worldTest } from '../support/fixtures.ts';
import { eventually, resetFaults } from '../support/outside.ts';
import { runJobByHand, workerStageDeps } from '../support/payrail.ts';
import { freshWallet } from '../support/payouts.ts';

/** Rounds, each a fresh conversion (FUZZ_RUNS overrides; a failure prints fast-check's seed and path to replay). */
const ROUNDS = Number(process.env.FUZZ_RUNS ?? '') || 30;

const it = worldFirst(
  worldTest({
    // The admin API; no worker: every job here is run by hand.
    filePayrail: { roles: { web: true, worker: false } },
    firstPaymentId: 9_880_000_000,
    firstChannel: 1_009_880_000_001,
  })
    .extend('stages', { scope: 'file' }, ({ world }) => {
      const deps = workerStageDeps(world.db, world.outside, { env: { CONVERSION_MIN_USD: '1' } });
      const task = pipelineTasks(deps).conversion_poll as (payload: unknown, helpers: JobHelpers) => Promise<unknown>;
      return {
        deps,
        hooks: { conversion: conversionTransferHooks(deps), payout: payoutTransferHooks(deps) },
        // The handler reads its payload only; the job's helpers are graphile-worker's, not the stage's.
        conversionPoll: (conversionId: string) => task({ conversionId }, {} as JobHelpers),
      };
    })
    .extend('conversion', ({ db }) => async (id: string) => {
      return db.db.selectFrom('conversions').selectAll().where('conversion_id', '=', id).executeTakeFirstOrThrow();
    })
    /**
     * One threshold payment (its threshold out of reach) converted by hand up to its exchange's end: sent, or in review
     * after ChangeNow said failed and then finished it after all. Returns the conversion, its channel and payment, and
     * the exchange's payout as ChangeNow reports it and the chain shows it.
     */
    .extend(
      'finishedConversion',
      ({ outside, db, channel, pay, stages, conversion }) =>
        async (start: 'sent' | 'needs_review') => {
          const { deps, hooks, conversionPoll } = stages;
          const channelId = await channel({
            payoutStrategy: 'threshold',
            thresholdUsd: '1000000',
            payoutCurrency: 'usdt',
            payoutNetwork: 'eth',
            walletAddress: freshWallet(),
          });
          const paymentId = await pay(channelId);
          const id = (await batchPendingPayments(deps)) as string;
          expect(id).not.toBeNull();
          if (start === 'needs_review') outside.sim.failNextExchange('failed');
          await runJobByHand(db, `conversion_exchange:${id}`, () => createConversionExchange(deps, id));
          const transferId = (await conversion(id)).transfer_id as string;
          await runJobByHand(db, `transfer_send:${transferId}`, () => sendTransfer(deps, hooks, transferId));
          await runJobByHand(db, `transfer_confirm:${transferId}`, () => confirmTransfer(deps, hooks, transferId));
          expect((await conversion(id)).status).toBe('sent');
          const exchangeId = (await conversion(id)).exchange_id as string;
          if (start === 'needs_review') {
            await runJobByHand(db, `conversion_poll:${id}`, () => conversionPoll(id));
            expect(await conversion(id)).toMatchObject({
              status: 'needs_review',
              reason: 'exchange failed; the ETH sent has not come back',
            });
            // ChangeNow's support finishes the swap after all.
            Object.assign(outside.sim.exchanges.get(exchangeId) as object, { status: 'sending', forcedEnd: null });
          }
          let finished: Awaited<ReturnType<StageDeps['exchange']['getExchange']>> | undefined;
          await eventually('the exchange finished and paid out on chain', async () => {
            finished = await deps.exchange.getExchange(exchangeId);
            return (
              finished.status === 'finished' &&
              finished.payoutHash !== null &&
              (await deps.wallet.receipt(finished.payoutHash as `0x${string}`)) !== null
            );
          });
          const units = parseUnitsFloor(finished!.amountTo as string, 6).units;
          return { id, channelId, paymentId, payoutHash: (finished!.payoutHash as string).toLowerCase(), units };
        },
    ),
);

type Actor = 'poll' | 'reaped poll' | 'retry' | 'resolve';
const ACTORS: readonly Actor[] = ['poll', 'reaped poll', 'retry', 'resolve'];

const rounds = fc.record({
  start: fc.constantFrom('sent' as const, 'needs_review' as const),
  order: fc.shuffledSubarray([...ACTORS], { minLength: ACTORS.length }),
  // Start offsets: apart enough to change who takes the row lock first, close enough to overlap.
  offsets: fc.array(fc.integer({ min: 0, max: 25 }), { minLength: ACTORS.length, maxLength: ACTORS.length }),
});

it('the poll, a reaped copy of it, retry and resolve at once: the USDT is credited once, the conversion ends completed', async ({
  outside,
  db,
  payrail,
  stages,
  conversion,
  finishedConversion,
}) => {
  const { conversionPoll } = stages;
  const seed =
    process.env.FUZZ_SEED === undefined
      ? {}
      : { seed: Number(process.env.FUZZ_SEED), ...(process.env.FUZZ_PATH && { path: process.env.FUZZ_PATH }) };
  await fc.assert(
    fc.asyncProperty(rounds, async ({ start, order, offsets }) => {
      await resetFaults(outside);
      const { id, channelId, paymentId, payoutHash, units } = await finishedConversion(start);
      const context = `${start}, ${order.map((a, i) => `${a} +${offsets[i]}ms`).join(', ')}`;

      const act: Record<Actor, () => Promise<unknown>> = {
        poll: () => conversionPoll(id),
        'reaped poll': () => conversionPoll(id),
        retry: () => payrail.request('POST', `/api/conversions/${id}/retry`),
        resolve: () =>
          payrail.request('POST', `/api/conversions/${id}/resolve`, {
            body: {
              outcome: 'received',
              amount: formatUnits(units, 6),
              txHash: payoutHash,
              note: 'ChangeNow paid it after all',
            },
          }),
      };
      const results = await Promise.allSettled(
        order.map(async (actor, i) => {
          await new Promise((r) => setTimeout(r, offsets[i]));
          return [actor, await act[actor]()] as const;
        }),
      );
      const answers = new Map<Actor, unknown>();
      for (const result of results) {
        expect(result.status, `${context}: ${result.status === 'rejected' ? String(result.reason) : ''}`).toBe(
          'fulfilled',
        );
        if (result.status === 'fulfilled') answers.set(result.value[0], result.value[1]);
      }
      const retried = answers.get('retry') as { status: number; body: any };
      const resolved = answers.get('resolve') as { status: number; body: any };
      expect([200, 409], `${context}: retry ${JSON.stringify(retried.body)}`).toContain(retried.status);
      expect([200, 409], `${context}: resolve ${JSON.stringify(resolved.body)}`).toContain(resolved.status);
      // A person acts once on a conversion in review: whichever came first took it out, the other found it out.
      const acted = [retried.status, resolved.status].filter((s) => s === 200).length;
      expect(acted, context).toBe(start === 'needs_review' ? 1 : 0);

      // A poll job the retry queued runs later, as a worker would run it.
      const { rows: queued } = await db.pool.query('select 1 from graphile_worker._private_jobs where key = $1', [
        `conversion_poll:${id}`,
      ]);
      if (queued.length > 0) await runJobByHand(db, `conversion_poll:${id}`, () => conversionPoll(id));

      expect(await conversion(id), context).toMatchObject({
        status: 'completed',
        payout_hash: payoutHash,
        usdt_received: units.toString(),
      });
      const { rows: settled } = await db.pool.query(
        "select count(*)::int as n from ledger_journals where kind = 'conversion_settled' and ref = $1",
        [id],
      );
      expect(settled[0].n, `${context}: settlement journals`).toBe(1);
      const { rows: balance } = await db.pool.query(
        "select balance::text from ledger_accounts where code = $1 and asset = 'usdt'",
        [`channel:${channelId}`],
      );
      expect(balance[0]?.balance, `${context}: the channel's USDT`).toBe(units.toString());
      const { rows: payment } = await db.pool.query(
        'select conversion_status, conversion_id, usdt_amount::text from payments where payment_id = $1',
        [paymentId],
      );
      expect(payment[0], context).toEqual({
        conversion_status: 'completed',
        conversion_id: id,
        usdt_amount: units.toString(),
      });
      expect((await checkLedger(db.db)).problems, context).toEqual([]);
    }),
    { numRuns: ROUNDS, ...seed },
  );
}, 300_000);
