/**
 * The payout stage's recovery paths on real parts (PostgreSQL, anvil, the ChangeNow simulator over HTTP): resolve as
 * the way out of review once funds left, retry as resume of an in-flight payout whose job is gone, a refund hash
 * returning funds once, the threshold check after a completed batch, legacy payout_batch jobs, the approval alert,
 * and a held payout woken early keeping its job. Each ends in its documented state, with its alerts, audit rows and
 * ledger balances, and no money created, lost or paid twice.
 */
import { describe, expect } from 'vitest';
import { formatUnits } from '../../src/money/index.ts';
import { claimRefund } from '../../src/pipeline/refunds.ts';
import { rpc } from '../../src/simulators/index.ts';
import { worldFirst } from '../support/fixtures.ts';
import { eventually } from '../support/outside.ts';
import { actOn, distinct, getPayoutOn, untilStatus, type PayoutRow } from '../support/payout-state.ts';
import {
  acceptedOn,
  ETH_RESERVED,
  ETH_SETTLED,
  ethBalances,
  NET_WEI,
  payoutStepsTest,
  USDT_SETTLED,
  usdtBalances,
} from '../support/payout-steps.ts';
import { freshWallet, TRON_WALLET, tronThreshold } from '../support/payouts.ts';

const ALICE = 'alice-admin-token-0123456789';
const BOB = 'bob-admin-token-0123456789ab';
const REVIEW_REASON_FAILED = 'exchange failed; the funds sent have not come back';

/** The answer to an action refused as unsafe now: 409, saying why and nothing more. */
function conflict(error: string) {
  return { status: 409, body: { error } };
}

interface JobRow {
  id: string;
  task: string;
  key: string | null;
  run_at: Date;
  attempts: number;
  max_attempts: number;
}

// Each test below lists the fixtures it uses (vitest sets up only those) and ends on its channel's balances and the
// ledger check, so those lists and endings repeat from test to test.
const it = worldFirst(
  payoutStepsTest({
    env: { CONVERSION_MIN_USD: '1', ADMIN_TOKENS: `alice:${ALICE},bob:${BOB}` },
    firstPaymentId: 9_400_000_000,
    firstChannel: 1_003_400_000_001,
  })
    /** The test's first payrail's log lines. */
    .extend('sink', ({ logs }) => logs)
    .extend('payoutRow', ({ db, payoutsOf }) => async (payoutId: string): Promise<PayoutRow> => {
      const { rows } = await db.pool.query<{ channel_id: string }>(
        'select channel_id from payouts where payout_id = $1',
        [payoutId],
      );
      const all = await payoutsOf(rows[0]!.channel_id);
      return all.find((p) => p.payout_id === payoutId) as PayoutRow;
    })
    /** Waits for the payout to reach `status`; says where it ended up instead when it does not. */
    .extend(
      'reaches',
      ({ payoutRow }) =>
        (payoutId: string, status: string, timeoutMs?: number) =>
          untilStatus(payoutId, () => payoutRow(payoutId), status, timeoutMs),
    )
    .extend('getPayout', ({ app }) => getPayoutOn({ app }))
    .extend('act', ({ app }) => actOn({ app }))
    .extend('accepted', ({ act }) => acceptedOn({ act }))
    /** The failed exchange's payout left once (one exchange, one transfer), and alice resolving it is all it audited. */
    .extend(
      'expectResolvedByAlice',
      ({ exchangesFor, transfersFor, expectOnlyAction }) =>
        async (payoutId: string, to: string, resolution: Record<string, unknown>): Promise<void> => {
          expect(exchangesFor(payoutId)).toHaveLength(1);
          expect(await transfersFor(payoutId)).toHaveLength(1);
          await expectOnlyAction(payoutId, 'alice', 'payout.resolve', {
            from: 'needs_review',
            to,
            reason: REVIEW_REASON_FAILED,
            resolution,
          });
        },
    )
    /** The payout's audit trail is one retry by `actor` that resumed it where it stood, in `status`. */
    .extend(
      'expectOnlyResume',
      ({ expectOnlyAction }) =>
        (payoutId: string, actor: string, status: string): Promise<void> =>
          expectOnlyAction(payoutId, actor, 'payout.retry', { from: status, to: status, reason: null }),
    )
    /** One account's balance (0 when it has none yet). */
    .extend('balanceOf', ({ db }) => async (code: string, asset: string): Promise<bigint> => {
      const { rows } = await db.pool.query<{ balance: string }>(
        'select balance::text from ledger_accounts where code = $1 and asset = $2',
        [code, asset],
      );
      return BigInt(rows[0]?.balance ?? '0');
    })
    /** The entries of one journal, as `[account code, asset, amount]`. */
    .extend(
      'journalEntries',
      ({ db }) =>
        async (kind: string, ref: string): Promise<Array<[string, string, string]>> => {
          const { rows } = await db.pool.query<{ code: string; asset: string; amount: string }>(
            `select a.code, a.asset, e.amount::text from ledger_journals j join ledger_entries e on e.journal_id = j.id join ledger_accounts a on a.id = e.account_id
         where j.kind = $1 and j.ref = $2 order by e.id`,
            [kind, ref],
          );
          return rows.map((r) => [r.code, r.asset, r.amount]);
        },
    )
    /** Every queued job (runnable, waiting or given up) that moves this payout or its transfer on. */
    .extend('jobsFor', ({ db }) => async (payoutId: string, transferId: string | null = null): Promise<JobRow[]> => {
      const { rows } = await db.pool.query<JobRow>(
        `select j.id::text, t.identifier as task, j.key, j.run_at, j.attempts, j.max_attempts
           from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
          where j.payload->>'payoutId' = $1 or j.payload->>'batchId' = $1 or ($2::text is not null and j.payload->>'transferId' = $2)
          order by j.id`,
        [payoutId, transferId],
      );
      return rows;
    })
    /** The one job that moves the payout or its transfer on, expecting it to be keyed `key`. */
    .extend(
      'onlyJobOf',
      ({ jobsFor }) =>
        async (payout: Pick<PayoutRow, 'payout_id' | 'transfer_id'>, key: string): Promise<JobRow> => {
          const jobs = await jobsFor(payout.payout_id, payout.transfer_id);
          expect(jobs.map((j) => j.key)).toEqual([key]);
          return jobs[0]!;
        },
    )
    /** Deletes a queued job: it is lost, as a job can be. */
    .extend('loseJob', ({ db }) => async (job: JobRow): Promise<void> => {
      await db.pool.query('delete from graphile_worker._private_jobs where id = $1::bigint', [job.id]);
    })
    .extend('jobExists', ({ db }) => async (id: string): Promise<boolean> => {
      const { rows } = await db.pool.query('select 1 from graphile_worker._private_jobs where id = $1::bigint', [id]);
      return rows.length > 0;
    })
    /** Waits until the channel's payout has a transfer broadcast (and, with blocks held, not yet mined). */
    .extend('untilBroadcast', ({ payoutsOf, transfersFor }) => async (what: string, channelId: string) => {
      await eventually(what, async () => {
        const [payout] = await payoutsOf(channelId);
        return payout !== undefined && (await transfersFor(payout.payout_id)).some((t) => t.status === 'broadcast');
      });
    })
    /** The hash of the last transaction mined (anvil mines each at once). */
    .extend('lastMinedHash', ({ outside }) => async (): Promise<string> => {
      return (
        (await rpc(outside.chain.rpcUrl, 'eth_getBlockByNumber', ['latest', false])) as { transactions: string[] }
      ).transactions[0] as string;
    }),
);

describe('resolve: the way out of review once the funds left', () => {
  it('"paid": an instant payout whose exchange failed after the deposit completes, booked to ChangeNow, kept in the audit log', async ({
    start,
    sink,
    transfersFor,
    balances,
    journalKinds,
    expectLedgerClean,
    expectOnlyAlert,
    getPayout,
    act,
    accepted,
    balanceOf,
    journalEntries,
    auditOf,
    failedExchangeInReview,
    expectResolvedByAlice,
  }) => {
    await start();
    const { id, review } = await failedExchangeInReview();
    expect(review).toMatchObject({ status: 'needs_review', reason: REVIEW_REASON_FAILED, amount: NET_WEI.toString() });
    expect(await transfersFor(review.payout_id)).toMatchObject([{ status: 'confirmed', amount: NET_WEI.toString() }]);
    expect(await balances(id)).toEqual(ETH_RESERVED);
    const changenowBefore = await balanceOf('world:changenow', 'eth');

    const resolved = await accepted(
      review.payout_id,
      'resolve',
      ALICE,
      {
        payoutId: review.payout_id,
        status: 'completed',
        reason: 'resolved as paid by alice: owner confirmed',
        amountOut: null,
        payoutHash: null,
      },
      { outcome: 'paid', note: 'owner confirmed' },
    );
    expect(resolved.completedAt).toEqual(expect.any(String));

    expect(await balances(id)).toEqual(ETH_SETTLED);
    expect((await balanceOf('world:changenow', 'eth')) - changenowBefore).toBe(NET_WEI);
    expect(await journalKinds(review.payout_id)).toEqual(['payout_reserved', 'payout_completed']);
    expect(await journalEntries('payout_completed', review.payout_id)).toEqual([
      [`channel:${id}:payout`, 'eth', (-NET_WEI).toString()],
      ['world:changenow', 'eth', NET_WEI.toString()],
    ]);
    await expectResolvedByAlice(review.payout_id, 'completed', { outcome: 'paid', note: 'owner confirmed' });
    expect(
      sink.lines
        .filter((l) => l.event === 'payout_action' && l.payoutId === review.payout_id)
        .map((l) => [l.action, l.actor, l.from, l.to]),
    ).toEqual([['resolve', 'alice', 'needs_review', 'completed']]);

    // Resolved is final: resolving again, retrying or cancelling is refused and changes nothing.
    const before = await getPayout(review.payout_id);
    const again = await act(review.payout_id, 'resolve', BOB, { outcome: 'returned', amount: '0' });
    expect(again).toEqual(
      conflict(`cannot resolve payout ${review.payout_id}: a payout in state completed is not in review`),
    );
    expect((await act(review.payout_id, 'retry', BOB)).status).toBe(409);
    expect((await act(review.payout_id, 'cancel', BOB)).status).toBe(409);
    expect(await getPayout(review.payout_id)).toEqual(before);
    expect(await auditOf(review.payout_id)).toHaveLength(1);
    expectOnlyAlert(review.payout_id, 'payout_exchange_failed');
    await expectLedgerClean();
  });

  it('"returned" with a part: a threshold batch fails, the part goes back to the channel, the rest to ChangeNow, its payments are unlinked', async ({
    outside,
    db,
    start,
    sink,
    payoutsOf,
    onlyPayout,
    payoutIn,
    transfersFor,
    balances,
    journalKinds,
    expectLedgerClean,
    payoutLinks,
    act,
    accepted,
    balanceOf,
    journalEntries,
    auditOf,
    lastMinedHash,
    convertedThresholdChannel,
    lowerThreshold,
    expectResolvedByAlice,
  }) => {
    await start();
    const { id, paymentIds, available } = await convertedThresholdChannel(2);
    outside.sim.failNextExchange('failed');
    await lowerThreshold(id);
    const review = await payoutIn(id, 'needs_review');
    expect(review).toMatchObject({
      kind: 'threshold',
      asset: 'usdt',
      amount: available.toString(),
      reason: REVIEW_REASON_FAILED,
    });
    expect(await transfersFor(review.payout_id)).toMatchObject([{ status: 'confirmed', amount: available.toString() }]);
    expect(await payoutLinks(paymentIds)).toEqual([{ payout_id: review.payout_id }, { payout_id: review.payout_id }]);
    expect(await balances(id)).toEqual(usdtBalances({ reserved: available }));

    // Believe the chain: an amount is booked only as the transaction that brought it shows it, and that transaction
    // backs one thing. Each refusal changes nothing.
    const unbacked = await act(review.payout_id, 'resolve', ALICE, { outcome: 'returned', amount: '10' });
    expect(unbacked).toEqual({
      status: 400,
      body: {
        error:
          'txHash: required when amount is above 0: the transaction that brought the funds back to the host wallet (read on chain)',
      },
    });
    const {
      rows: [conversion],
    } = await db.pool.query(
      'select c.payout_hash, c.usdt_received::text as usdt from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1',
      [paymentIds[0]],
    );
    const taken = await act(review.payout_id, 'resolve', ALICE, {
      outcome: 'returned',
      amount: formatUnits(BigInt(conversion.usdt), 6),
      txHash: conversion.payout_hash,
    });
    expect(taken).toEqual(
      conflict(
        `cannot resolve payout ${review.payout_id}: ${conversion.payout_hash} already backs something else (another refund, a conversion's payout or an operator deposit)`,
      ),
    );
    const part = 10_000_000n;
    await outside.changenowReturn(outside.hostAddress, part);
    const refundHash = await lastMinedHash();
    const wrong = await act(review.payout_id, 'resolve', ALICE, {
      outcome: 'returned',
      amount: '10.5',
      txHash: refundHash,
    });
    expect(wrong).toEqual(
      conflict(`cannot resolve payout ${review.payout_id}: ${refundHash} brought 10 USDT to the host wallet, not 10.5`),
    );
    expect(await onlyPayout(id)).toEqual(review);
    expect(await auditOf(review.payout_id)).toEqual([]);

    const changenowBefore = await balanceOf('world:changenow', 'usdt');
    await accepted(
      review.payout_id,
      'resolve',
      ALICE,
      {
        status: 'failed',
        reason: `resolved by alice: 10 USDT came back (refund ${refundHash}): partial refund seen on chain`,
      },
      { outcome: 'returned', amount: '10', txHash: refundHash, note: 'partial refund seen on chain' },
    );

    expect(await balances(id)).toEqual(usdtBalances({ available: part }));
    expect((await balanceOf('world:changenow', 'usdt')) - changenowBefore).toBe(available - part);
    expect(await journalKinds(review.payout_id)).toEqual(['payout_reserved', 'payout_returned']);
    expect(await journalEntries('payout_returned', review.payout_id)).toEqual([
      [`channel:${id}:payout`, 'usdt', (-available).toString()],
      [`channel:${id}`, 'usdt', part.toString()],
      ['world:changenow', 'usdt', (available - part).toString()],
    ]);
    expect(await payoutLinks(paymentIds)).toEqual([{ payout_id: null }, { payout_id: null }]);
    await expectResolvedByAlice(review.payout_id, 'failed', {
      outcome: 'returned',
      amount: '10',
      txHash: refundHash,
      note: 'partial refund seen on chain',
    });
    // Failed is final.
    const again = await act(review.payout_id, 'resolve', ALICE, { outcome: 'paid' });
    expect(again).toEqual(
      conflict(`cannot resolve payout ${review.payout_id}: a payout in state failed is not in review`),
    );
    expect(await auditOf(review.payout_id)).toHaveLength(1);
    // 10 USDT is below the channel's threshold: no new batch.
    expect(await payoutsOf(id)).toHaveLength(1);
    expect(distinct(sink.alerts())).toEqual(['payout_exchange_failed']);
    await expectLedgerClean();
  });

  it('is refused (409) while the funds never left or the payout is not in review, and a bad body is a 400; nothing changes', async ({
    app,
    start,
    transfersFor,
    balances,
    expectLedgerClean,
    getPayout,
    act,
    auditOf,
    inactivePairInReview,
    awaitingApproval,
  }) => {
    await start();
    // In review before any transfer: the pair is inactive at ChangeNow.
    const { id: inactive, review } = await inactivePairInReview('eth');
    expect(await transfersFor(review.payout_id)).toEqual([]);
    // Awaiting approval: not in review.
    await app.stop();
    await start({ PAYOUT_APPROVAL_ABOVE_USD: '1' });
    const { id: big, waiting } = await awaitingApproval();
    const before = {
      review: await getPayout(review.payout_id),
      waiting: await getPayout(waiting.payout_id),
      inactive: await balances(inactive),
      big: await balances(big),
    };

    for (const body of [{ outcome: 'paid' }, { outcome: 'returned', amount: '0' }]) {
      const refused = await act(review.payout_id, 'resolve', ALICE, body);
      expect(refused, JSON.stringify(body)).toEqual(
        conflict(
          `cannot resolve payout ${review.payout_id}: its funds never left (no confirmed transfer): retry or cancel it instead`,
        ),
      );
    }
    const notInReview = await act(waiting.payout_id, 'resolve', ALICE, { outcome: 'paid' });
    expect(notInReview).toEqual(
      conflict(`cannot resolve payout ${waiting.payout_id}: a payout in state awaiting_approval is not in review`),
    );

    // Each refused by the route before anything is read, naming the field at fault.
    const badBodies: Array<[unknown, string]> = [
      [undefined, 'outcome'],
      [{}, 'outcome'],
      [{ outcome: 'returned', amount: 1 }, 'amount'],
      [{ outcome: 'returned', amount: '1e3' }, 'amount'],
      [{ outcome: 'returned', amount: '-1' }, 'amount'],
      [{ outcome: 'returned', amount: '0.0010000000000000001' }, 'amount'],
      [{ outcome: 'returned' }, 'amount'],
      [{ outcome: 'returned', amount: '0.001' }, 'txHash'],
      [{ outcome: 'returned', amount: '0.001', txHash: '0x12' }, 'txHash'],
      [{ outcome: 'lost' }, 'outcome'],
      [{ outcome: 'paid', extra: true }, 'body'],
      [{ outcome: 'paid', amount: '1' }, 'body'],
      [{ outcome: 'paid', note: '   ' }, 'note'],
      [{ outcome: 'paid', note: 'x'.repeat(501) }, 'note'],
      [[{ outcome: 'paid' }], 'body'],
      ['paid', 'body'],
    ];
    for (const [body, field] of badBodies) {
      const res = await act(review.payout_id, 'resolve', ALICE, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error, JSON.stringify(body)).toMatch(new RegExp(`^${field}: `));
    }

    expect(await getPayout(review.payout_id)).toEqual(before.review);
    expect(await getPayout(waiting.payout_id)).toEqual(before.waiting);
    expect(await balances(inactive)).toEqual(before.inactive);
    expect(await balances(big)).toEqual(before.big);
    expect(await auditOf(review.payout_id)).toEqual([]);
    expect(await auditOf(waiting.payout_id)).toEqual([]);
    await expectLedgerClean();
  });
});

describe('retry as resume: an in-flight payout whose job is gone gets it back', () => {
  // Three jobs a payout can lose, each stranded its own way; the tests end alike as a resume leaves the same trace
  // whichever job it puts back.
  it('exchange_created, its transfer waiting to be signed and its send job lost: retry queues the send and the payout completes once', async ({
    app,
    outside,
    start,
    instant,
    payWithHostDrained,
    onlyPayout,
    transfersFor,
    reaches,
    accepted,
    jobsFor,
    startLogged,
    expectExchangedOnce,
    onlyJobOf,
    loseJob,
    expectOnlyResume,
    expectEndedQuietly,
  }) => {
    await start();
    const id = await instant('usdt', 'trx', TRON_WALLET);
    await payWithHostDrained(id, 'exchange_created');
    await app.stop();
    const stuck = await onlyPayout(id);
    expect(await transfersFor(stuck.payout_id)).toMatchObject([
      { transfer_id: stuck.transfer_id, status: 'intent', tx_hash: null },
    ]);
    // The job is lost: the payout would wait for ever.
    await loseJob(await onlyJobOf(stuck, `transfer_send:${stuck.transfer_id}`));
    await app.refillHost();

    const logs = await startLogged();
    expect(await jobsFor(stuck.payout_id, stuck.transfer_id)).toEqual([]);
    expect((await onlyPayout(id)).status).toBe('exchange_created');

    await accepted(stuck.payout_id, 'retry', ALICE, { status: 'exchange_created', exchangeId: stuck.exchange_id });
    const done = await reaches(stuck.payout_id, 'completed');
    expect(done).toMatchObject({
      exchange_id: stuck.exchange_id,
      transfer_id: stuck.transfer_id,
      amount_out: '13.1717',
    });
    await expectExchangedOnce(done.payout_id, { transfer_id: stuck.transfer_id });
    expect(await outside.balanceOf(stuck.payin_address!)).toBe(NET_WEI);
    await expectOnlyResume(stuck.payout_id, 'alice', 'exchange_created');
    await expectEndedQuietly(id, ETH_SETTLED, logs);
  });

  it('sent, its exchange followed and its poll job given up: retry polls again with a fresh deadline and the payout completes', async ({
    app,
    outside,
    db,
    start,
    paidInstant,
    onlyPayout,
    untilBroadcast,
    holdBlocks,
    mineHeld,
    reaches,
    accepted,
    jobsFor,
    startLogged,
    untilPollsFail,
    expectExchangedOnce,
    onlyJobOf,
    expectOnlyResume,
    expectEndedQuietly,
  }) => {
    await start();
    await holdBlocks();
    const id = await paidInstant('usdt', 'trx', TRON_WALLET);
    await untilBroadcast('the payout transfer broadcast', id);
    // ChangeNow unreachable from the first poll on.
    await outside.sim.setFault('5xx');
    await mineHeld();
    await untilPollsFail('polls failing', id);
    await app.stop();
    const stuck = await onlyPayout(id);
    expect(stuck.status).toBe('sent');
    // Its poll job used up its attempts: nobody looks at ChangeNow for it any more.
    const poll = await onlyJobOf(stuck, `payout_poll:${stuck.payout_id}`);
    await db.pool.query(
      "update graphile_worker._private_jobs set attempts = max_attempts, last_error = 'gave up (test)' where id = $1::bigint",
      [poll.id],
    );
    await outside.sim.setFault('none');

    const logs = await startLogged();
    expect(
      (await jobsFor(stuck.payout_id, stuck.transfer_id)).map((j) => [j.key, j.attempts === j.max_attempts]),
    ).toEqual([[`payout_poll:${stuck.payout_id}`, true]]);
    expect((await onlyPayout(id)).status).toBe('sent');

    await accepted(stuck.payout_id, 'retry', BOB, { status: 'sent', exchangeId: stuck.exchange_id });
    const done = await reaches(stuck.payout_id, 'completed');
    expect(done).toMatchObject({ exchange_id: stuck.exchange_id, amount_out: '13.1717' });
    expect(done.poll_deadline_at!.getTime()).toBeGreaterThan(stuck.poll_deadline_at!.getTime());
    await expectExchangedOnce(done.payout_id);
    await expectOnlyResume(stuck.payout_id, 'bob', 'sent');
    await expectEndedQuietly(id, ETH_SETTLED, logs);
  });

  it('a direct payout sent, its transfer broadcast and its confirm job lost: retry queues the confirmation and it completes', async ({
    app,
    outside,
    start,
    paidInstant,
    onlyPayout,
    untilBroadcast,
    holdBlocks,
    mineHeld,
    transfersFor,
    reaches,
    accepted,
    journalEntries,
    jobsFor,
    startLogged,
    onlyJobOf,
    loseJob,
    expectOnlyResume,
    expectEndedQuietly,
  }) => {
    await start();
    await holdBlocks();
    const wallet = freshWallet();
    const id = await paidInstant('eth', 'eth', wallet);
    await untilBroadcast('the direct transfer broadcast', id);
    // Stopping waits for the running confirmation (it waits a bounded time for a receipt that cannot come).
    await app.stop();
    const stuck = await onlyPayout(id);
    expect(stuck).toMatchObject({ status: 'sent', exchange_id: null });
    await loseJob(await onlyJobOf(stuck, `transfer_confirm:${stuck.transfer_id}`));
    await mineHeld();
    expect(await outside.balanceOf(wallet)).toBe(NET_WEI);

    const logs = await startLogged();
    expect(await jobsFor(stuck.payout_id, stuck.transfer_id)).toEqual([]);
    expect(await transfersFor(stuck.payout_id)).toMatchObject([{ status: 'broadcast' }]);

    await accepted(stuck.payout_id, 'retry', ALICE, { status: 'sent' });
    const done = await reaches(stuck.payout_id, 'completed');
    expect(done).toMatchObject({ exchange_id: null, amount_out: '0.0047239' });
    expect(await transfersFor(done.payout_id)).toMatchObject([
      { transfer_id: stuck.transfer_id, status: 'confirmed', to_address: wallet },
    ]);
    expect(await outside.balanceOf(wallet)).toBe(NET_WEI);
    expect(await journalEntries('payout_completed', stuck.payout_id)).toEqual([
      [`channel:${id}:payout`, 'eth', (-NET_WEI).toString()],
      ['world:payees', 'eth', NET_WEI.toString()],
    ]);
    await expectOnlyResume(stuck.payout_id, 'alice', 'sent');
    await expectEndedQuietly(id, ETH_SETTLED, logs);
  });

  it('a payout awaiting approval is not retried (409): approval is the way on', async ({
    start,
    balances,
    expectLedgerClean,
    getPayout,
    act,
    auditOf,
    jobsFor,
    awaitingApproval,
  }) => {
    await start({ PAYOUT_APPROVAL_ABOVE_USD: '1' });
    const { id, waiting } = await awaitingApproval();
    const before = await getPayout(waiting.payout_id);
    const refused = await act(waiting.payout_id, 'retry', ALICE);
    expect(refused).toEqual(
      conflict(`cannot retry payout ${waiting.payout_id}: a payout in state awaiting_approval cannot be retried`),
    );
    expect(await getPayout(waiting.payout_id)).toEqual(before);
    expect(await jobsFor(waiting.payout_id)).toEqual([]);
    expect(await auditOf(waiting.payout_id)).toEqual([]);
    expect(await balances(id)).toEqual(ETH_RESERVED);
    await expectLedgerClean();
  });
});

describe('a refund hash returns funds once', () => {
  it('claimRefund: the same hash for the same ref is true again, for another ref or purpose false; concurrent claims, one wins', async ({
    db,
  }) => {
    const hash = `0x${'ab'.repeat(32)}`;
    const claim = (ref: string, purpose: 'payout' | 'conversion' = 'payout', txHash = hash) =>
      db.db.transaction().execute((trx) => claimRefund(trx, { txHash, purpose, ref, asset: 'eth', amount: 5n }));
    expect(await claim('po_claim_a')).toBe(true);
    expect(await claim('po_claim_a')).toBe(true);
    // Hashes are compared without regard to case.
    expect(await claim('po_claim_a', 'payout', hash.toUpperCase().replace('0X', '0x'))).toBe(true);
    expect(await claim('po_claim_b')).toBe(false);
    expect(await claim('po_claim_a', 'conversion')).toBe(false);
    const { rows } = await db.pool.query(
      'select tx_hash, purpose, ref, asset, amount::text from chain_refunds where tx_hash = $1',
      [hash],
    );
    expect(rows).toEqual([{ tx_hash: hash, purpose: 'payout', ref: 'po_claim_a', asset: 'eth', amount: '5' }]);

    // Two claims of one new hash in flight at once: the second waits for the first and loses.
    const raced = `0x${'cd'.repeat(32)}`;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let claimedFirst!: () => void;
    const firstIn = new Promise<void>((resolve) => (claimedFirst = resolve));
    const first = db.db.transaction().execute(async (trx) => {
      const ok = await claimRefund(trx, {
        txHash: raced,
        purpose: 'conversion',
        ref: 'cv_claim_x',
        asset: 'eth',
        amount: 7n,
      });
      claimedFirst();
      await held;
      return ok;
    });
    await firstIn;
    const second = db.db
      .transaction()
      .execute((trx) =>
        claimRefund(trx, { txHash: raced, purpose: 'payout', ref: 'po_claim_y', asset: 'eth', amount: 7n }),
      );
    await eventually('the second claim waiting on the first', async () => {
      const { rows: waiting } = await db.pool.query<{ n: number }>(
        // On the hash's lock (one inbound transaction, one use: src/treasury/inbound.ts), taken before the row is looked at.
        "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query ilike '%pg_advisory_xact_lock%'",
      );
      return waiting[0]!.n === 1;
    });
    release();
    expect(await first).toBe(true);
    expect(await second).toBe(false);
    const { rows: racedRows } = await db.pool.query('select purpose, ref from chain_refunds where tx_hash = $1', [
      raced,
    ]);
    expect(racedRows).toEqual([{ purpose: 'conversion', ref: 'cv_claim_x' }]);
  });

  it('a refunded payout and a refunded conversion record their hash; a payout and a conversion reporting a used hash go to review', async ({
    outside,
    db,
    start,
    channel,
    pay,
    sink,
    paidInstant,
    onlyPayout,
    untilBroadcast,
    holdBlocks,
    mineHeld,
    exchangesFor,
    balances,
    journalKinds,
    expectLedgerClean,
    alertsFor,
    reaches,
    exchangeEnded,
  }) => {
    await start();
    // 1. A normal refunded payout: its hash is recorded for it.
    const { id: first, payout: refundedPayout, exchange: refundedExchange } = await exchangeEnded('refunded', 'failed');
    const hash = refundedExchange!.refundHash!;
    expect(refundedPayout.reason).toBe(
      `exchange refunded (refund ${hash}); 0.0047239 ETH back on the channel's balance`,
    );
    expect(await balances(first)).toEqual(ethBalances({ available: NET_WEI }));
    const refundsOf = (txHash: string) =>
      db.pool
        .query('select tx_hash, purpose, ref, asset, amount::text from chain_refunds where tx_hash = $1', [
          txHash.toLowerCase(),
        ])
        .then((r) => r.rows);
    const recordedForFirst = [
      {
        tx_hash: hash.toLowerCase(),
        purpose: 'payout',
        ref: refundedPayout.payout_id,
        asset: 'eth',
        amount: NET_WEI.toString(),
      },
    ];
    expect(await refundsOf(hash)).toEqual(recordedForFirst);

    // 2. Another payout whose exchange reports that same refund (same amount, to the host wallet): the simulator's
    // exchange is made to answer so before the payout's deposit is mined, as a misbehaving ChangeNow could.
    await holdBlocks();
    const second = await paidInstant('usdt', 'trx', TRON_WALLET);
    await untilBroadcast('the second payout transfer broadcast', second);
    const reusing = await onlyPayout(second);
    const reportsTheSameRefund = () => ({
      status: 'refunded',
      refundHash: hash,
      forcedEnd: null,
      amountFrom: '0.0047239',
      depositReceivedAt: Date.now(),
    });
    Object.assign(exchangesFor(reusing.payout_id)[0]!, reportsTheSameRefund());
    await mineHeld();
    const reviewed = await reaches(reusing.payout_id, 'needs_review');
    expect(reviewed.reason).toBe(`refund ${hash} already returned funds for something else`);
    expect(alertsFor(reusing.payout_id)).toEqual(['payout_refund_reused']);
    // Nothing came back for it: its funds stay reserved, the hash stays with the first payout.
    expect(await balances(second)).toEqual(ETH_RESERVED);
    expect(await journalKinds(reusing.payout_id)).toEqual(['payout_reserved']);
    expect(await refundsOf(hash)).toEqual(recordedForFirst);

    // 3. A conversion (one payment: the same amount of ETH) whose exchange reports that hash too.
    await holdBlocks();
    const thresholdChannel = await channel(tronThreshold('1000'));
    const reusingPayment = await pay(thresholdChannel);
    const conversionOf = async (paymentId: string) => {
      const { rows } = await db.pool.query<{
        conversion_id: string;
        status: string;
        reason: string | null;
        amount_wei: string;
        transfer_status: string | null;
      }>(
        `select c.conversion_id, c.status, c.reason, c.amount_wei::text, t.status as transfer_status
           from conversions c join conversion_payments p using (conversion_id)
           left join chain_transfers t on t.purpose = 'conversion' and t.ref = c.conversion_id
          where p.payment_id = $1 order by c.created_at desc limit 1`,
        [paymentId],
      );
      return rows[0];
    };
    await eventually(
      'the conversion transfer broadcast',
      async () => (await conversionOf(reusingPayment))?.transfer_status === 'broadcast',
    );
    const conversion = (await conversionOf(reusingPayment))!;
    expect(conversion.amount_wei).toBe(NET_WEI.toString());
    Object.assign(exchangesFor(conversion.conversion_id)[0]!, reportsTheSameRefund());
    await mineHeld();
    await eventually(
      'the conversion in review',
      async () => (await conversionOf(reusingPayment))?.status === 'needs_review',
    );
    expect((await conversionOf(reusingPayment))!.reason).toBe(
      `refund ${hash} already returned funds for something else`,
    );
    expect(alertsFor(conversion.conversion_id)).toEqual(['conversion_refund_reused']);
    expect(await balances(thresholdChannel)).toEqual({ 'channel/eth': NET_WEI.toString() });
    expect(await refundsOf(hash)).toHaveLength(1);

    // 4. A normal refunded conversion: its hash is recorded for it.
    const otherChannel = await channel(tronThreshold('1000'));
    outside.sim.failNextExchange('refunded');
    const refundedPayment = await pay(otherChannel);
    // Released, its payment is taken by the next batch at once: the refunded conversion is its first one.
    const firstConversionOf = async (paymentId: string) =>
      (
        await db.pool.query<{ conversion_id: string; status: string; reason: string | null }>(
          'select c.conversion_id, c.status, c.reason from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1 order by c.created_at limit 1',
          [paymentId],
        )
      ).rows[0];
    await eventually(
      'the refunded conversion released',
      async () => (await firstConversionOf(refundedPayment))?.status === 'failed',
    );
    const refundedConversion = (await firstConversionOf(refundedPayment))!;
    const conversionHash = exchangesFor(refundedConversion.conversion_id)[0]!.refundHash!;
    expect(refundedConversion.reason).toBe(`exchange refunded (refund ${conversionHash})`);
    expect(await refundsOf(conversionHash)).toEqual([
      {
        tx_hash: conversionHash.toLowerCase(),
        purpose: 'conversion',
        ref: refundedConversion.conversion_id,
        asset: 'eth',
        amount: NET_WEI.toString(),
      },
    ]);
    expect(distinct(sink.alerts())).toEqual([
      'conversion_refund_reused',
      'conversion_refunded',
      'payout_refund_reused',
      'payout_refunded',
    ]);
    await expectLedgerClean();
  });
});

describe('a completed threshold batch runs its channel threshold check', () => {
  it('USDT settled past the threshold while a batch is in flight is batched when that batch completes, with no new payment or channel update', async ({
    db,
    start,
    channel,
    pay,
    sink,
    payoutsOf,
    onlyPayout,
    exchangesFor,
    transfersFor,
    balances,
    journalKinds,
    payoutLinks,
    conversionsDone,
    expectEndedQuietly,
  }) => {
    // The first batch's completion is held back (its poll fails just before recording it) until the test lets go.
    let holdCompletion = true;
    let held = 0;
    await start(
      {},
      {
        crashPoint: (name) => {
          if (name === 'payout_before_complete' && holdCompletion) {
            held++;
            throw new Error('completion held back by the test');
          }
        },
      },
    );
    const id = await channel(tronThreshold('20'));
    const firstPayments = [await pay(id), await pay(id)];
    await eventually('the first batch finished at ChangeNow, its completion held back', async () => held > 0);
    const inFlight = await onlyPayout(id);
    expect(inFlight).toMatchObject({ kind: 'threshold', status: 'sent' });
    const firstAmount = BigInt(inFlight.amount);

    const laterPayments = [await pay(id), await pay(id)];
    await eventually('the later payments converted', () => conversionsDone(laterPayments));
    // Past the threshold, but the channel has a batch open: no second batch yet.
    const waitingUsdt = BigInt((await balances(id))['channel/usdt'] as string);
    expect(waitingUsdt).toBeGreaterThanOrEqual(20_000_000n);
    expect(await payoutsOf(id)).toHaveLength(1);
    expect(await payoutLinks(laterPayments)).toEqual([{ payout_id: null }, { payout_id: null }]);
    const { rows: channelBefore } = await db.pool.query('select updated_at from channels where channel_id = $1', [id]);
    const { rows: paymentCount } = await db.pool.query<{ n: number }>(
      'select count(*)::int as n from payments where channel_id = $1',
      [id],
    );
    expect(paymentCount[0]!.n).toBe(4);

    holdCompletion = false;
    await db.pool.query('update graphile_worker._private_jobs set run_at = now() where key = $1', [
      `payout_poll:${inFlight.payout_id}`,
    ]);
    await eventually('both batches completed', async () => {
      const rows = await payoutsOf(id);
      return rows.length === 2 && rows.every((p) => p.status === 'completed');
    });

    const [first, second] = (await payoutsOf(id)) as [PayoutRow, PayoutRow];
    expect(first).toMatchObject({ payout_id: inFlight.payout_id, status: 'completed', amount: firstAmount.toString() });
    expect(second).toMatchObject({
      kind: 'threshold',
      status: 'completed',
      amount: waitingUsdt.toString(),
      top_ups: 0,
    });
    expect(second.created_at.getTime()).toBeGreaterThanOrEqual(first.completed_at!.getTime());
    const { rows: links } = await db.pool.query<{ payment_id: string; payout_id: string }>(
      'select payment_id::text, payout_id from payments where channel_id = $1 order by payment_id',
      [id],
    );
    expect(links).toEqual([
      ...firstPayments.map((p) => ({ payment_id: p, payout_id: first.payout_id })),
      ...laterPayments.map((p) => ({ payment_id: p, payout_id: second.payout_id })),
    ]);
    for (const batch of [first, second]) {
      expect(exchangesFor(batch.payout_id)).toHaveLength(1);
      expect(await transfersFor(batch.payout_id)).toMatchObject([{ status: 'confirmed', amount: batch.amount }]);
      expect(await journalKinds(batch.payout_id)).toEqual(['payout_reserved', 'payout_completed']);
    }
    // Nothing else happened to the channel: no new payment, no update.
    expect((await db.pool.query('select updated_at from channels where channel_id = $1', [id])).rows).toEqual(
      channelBefore,
    );
    expect(
      (await db.pool.query<{ n: number }>('select count(*)::int as n from payments where channel_id = $1', [id]))
        .rows[0]!.n,
    ).toBe(4);
    await expectEndedQuietly(id, USDT_SETTLED, sink);
  });
});

describe('legacy payout_batch jobs', () => {
  it('a pending batch queued as payout_batch by an earlier version is run as a payout and completes', async ({
    app,
    db,
    start,
    onlyPayout,
    exchangesFor,
    journalKinds,
    payoutLinks,
    reaches,
    jobsFor,
    jobExists,
    convertedThresholdChannel,
    startLogged,
    expectExchangedOnce,
    loseJob,
    expectEndedQuietly,
  }) => {
    await start();
    const { id, paymentIds, available } = await convertedThresholdChannel(2);
    await app.stop();
    // The batch is created with no worker running, and its job is swapped for the old task's.
    const web = await start({}, { roles: { web: true, worker: false } });
    expect((await web.request('PUT', `/api/channels/${id}`, { body: tronThreshold('20') })).status).toBe(200);
    const pending = await onlyPayout(id);
    expect(pending).toMatchObject({
      kind: 'threshold',
      status: 'pending',
      amount: available.toString(),
      exchange_id: null,
      transfer_id: null,
    });
    const jobs = await jobsFor(pending.payout_id);
    expect(jobs.map((j) => [j.task, j.key])).toEqual([['payout_run', `payout_run:${pending.payout_id}`]]);
    await loseJob(jobs[0]!);
    const { rows: legacy } = await db.pool.query<{ id: string }>(
      "select (graphile_worker.add_job('payout_batch', json_build_object('batchId', $1::text), job_key => 'payout_batch:' || $1::text, max_attempts => 10)).id::text as id",
      [pending.payout_id],
    );
    expect((await jobsFor(pending.payout_id)).map((j) => [j.task, j.key])).toEqual([
      ['payout_batch', `payout_batch:${pending.payout_id}`],
    ]);
    await app.stop();

    const logs = await startLogged();
    const done = await reaches(pending.payout_id, 'completed');
    expect(done).toMatchObject({ amount: available.toString(), attempts: 0 });
    expect(await jobExists(legacy[0]!.id)).toBe(false);
    await expectExchangedOnce(done.payout_id, { amount: available.toString() });
    expect(exchangesFor(done.payout_id)[0]).toMatchObject({
      status: 'finished',
      expectedAmountFrom: formatUnits(available, 6),
      payoutAddress: TRON_WALLET,
    });
    expect(await payoutLinks(paymentIds)).toEqual([{ payout_id: done.payout_id }, { payout_id: done.payout_id }]);
    expect(await journalKinds(done.payout_id)).toEqual(['payout_reserved', 'payout_completed']);
    await expectEndedQuietly(id, USDT_SETTLED, logs);
  });
});

describe('approval wait alert', () => {
  it('a payout above PAYOUT_APPROVAL_ABOVE_USD raises payout_awaiting_approval once, even when its run is delivered again', async ({
    start,
    sink,
    onlyPayout,
    transfersFor,
    balances,
    expectLedgerClean,
    jobExists,
    awaitingApproval,
    runAgain,
  }) => {
    await start({ PAYOUT_APPROVAL_ABOVE_USD: '1' });
    const { id, waiting } = await awaitingApproval();
    const alerts = () => sink.lines.filter((l) => l.event === 'alert' && l.payoutId === waiting.payout_id);
    expect(alerts()).toEqual([
      expect.objectContaining({
        event: 'alert',
        alert: 'payout_awaiting_approval',
        payoutId: waiting.payout_id,
        channelId: id,
        amount: '0.0047239',
        asset: 'eth',
      }),
    ]);

    // The same run again (a duplicate delivery): the payout does not change, so no second alert.
    const duplicate = await runAgain(waiting.payout_id);
    await eventually('the duplicate run done', async () => !(await jobExists(duplicate)));
    expect((await onlyPayout(id)).status).toBe('awaiting_approval');
    expect(alerts().map((l) => l.alert)).toEqual(['payout_awaiting_approval']);
    expect(distinct(sink.alerts())).toEqual(['payout_awaiting_approval']);
    expect(await transfersFor(waiting.payout_id)).toEqual([]);
    expect(await balances(id)).toEqual(ETH_RESERVED);
    await expectLedgerClean();
  });
});

describe('a held payout woken early', () => {
  it('keeps its job at its hold end and stays held', async ({
    db,
    start,
    sink,
    onlyPayout,
    exchangesFor,
    jobExists,
    heldBelowMinimum,
    expectEndedQuietly,
  }) => {
    await start();
    const { id, held } = await heldBelowMinimum();
    expect(held.hold_until!.getTime()).toBeGreaterThan(Date.now());
    const atHoldEnd = async () => {
      const { rows } = await db.pool.query<{ key: string; task: string; at_hold_end: boolean; attempts: number }>(
        `select j.key, t.identifier as task, j.run_at = p.hold_until as at_hold_end, j.attempts
           from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
           join payouts p on p.payout_id = j.payload->>'payoutId'
          where p.payout_id = $1 order by j.id`,
        [held.payout_id],
      );
      return rows;
    };
    expect(await atHoldEnd()).toEqual([
      { key: `payout_run:${held.payout_id}`, task: 'payout_run', at_hold_end: true, attempts: 0 },
    ]);

    // Its run is woken now, long before the hold ends.
    const { rows: woken } = await db.pool.query<{ id: string }>(
      "select (graphile_worker.add_job('payout_run', json_build_object('payoutId', $1::text), run_at => now(), max_attempts => 25, job_key => 'payout_run:' || $1::text, job_key_mode => 'replace')).id::text as id",
      [held.payout_id],
    );
    await eventually('the early run done', async () => !(await jobExists(woken[0]!.id)));

    expect(await atHoldEnd()).toEqual([
      { key: `payout_run:${held.payout_id}`, task: 'payout_run', at_hold_end: true, attempts: 0 },
    ]);
    const after = await onlyPayout(id);
    expect(after).toMatchObject({ status: 'held', reason: held.reason, exchange_id: null, transfer_id: null });
    expect(after.hold_until!.getTime()).toBe(held.hold_until!.getTime());
    expect(exchangesFor(held.payout_id)).toEqual([]);
    expect(sink.lines.filter((l) => l.event === 'payout_held' && l.payoutId === held.payout_id)).toHaveLength(1);
    await expectEndedQuietly(id, ETH_RESERVED, sink);
  });
});
