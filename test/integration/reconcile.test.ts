// Its own world, not the shared fixtures': a web payrail for the whole file, a worker payrail started beside it mid-test.
/**
 * The reconciler on real parts (PostgreSQL, anvil, the ChangeNow simulator over HTTP). Each stuck state is made on
 * purpose: the stages are run by hand up to it (each step's job taken off the queue as a worker would), then the job
 * that would move the item on is lost or given up. One pass (called directly) re-queues the stage's own job or, once
 * resuming has had its chance, gives up as the item's rule says (review; a conversion whose ETH never left released;
 * a transfer queued again, with an alert, never abandoned); a worker then runs the jobs. Every item ends completed,
 * with one exchange at ChangeNow and one transfer on chain, released, or in review with its reason. Items whose job is
 * alive are left alone (however many of them come first), an item that fails does not stop the pass, and two passes
 * at once, or a pass repeated, do nothing more than one.
 */
import type { QueryResultRow } from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openPool, type DatabaseHandle } from '../../src/db/index.ts';
import { checkLedger } from '../../src/ledger/index.ts';
import { createLogger } from '../../src/log.ts';
import {
  applyPayoutAction,
  HANDLED_TASKS,
  pipelineCron,
  reconcile,
  type CrashPoint,
  type ReconcileSummary,
  type StageDeps,
} from '../../src/pipeline/index.ts';
import {
  batchPendingPayments,
  conversionTransferHooks,
  createConversionExchange,
} from '../../src/pipeline/conversion/run.ts';
import { openInstantPayout, payoutTransferHooks } from '../../src/pipeline/payout/run.ts';
import { confirmTransfer, sendTransfer } from '../../src/pipeline/transfer/index.ts';
import { bookHostFunding, expectLedgerEqualsChain } from '../support/ledger-chain.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { eventually, startOutside, type Outside } from '../support/outside.ts';
import { ipnBody, signed } from '../support/ipn.ts';
import {
  IPN_SECRET,
  logSink,
  startTestPayrail,
  workerStageDeps,
  type LogSink,
  type TestPayrail,
} from '../support/payrail.ts';
import { freshWallet, saveChannel, sendFinished, TRON_WALLET } from '../support/payouts.ts';

/** One fixture payment's net: 0.00487 ETH less the 3 % platform fee. */
const NET_WEI = 4_723_900_000_000_000n;
/** What the simulator pays for it as USDT (3000 USDT/ETH less 1 USDT), in units. */
const CONVERTED_USDT = '13171700';
/** Deadlines counted from now: every job-less item is stuck at once. */
const NOW = { stepMs: 0, pollIntervalMs: 0 };

let outside: Outside;
let db: TestDatabase;
/** Takes IPNs; runs no jobs, so states built by hand stay put until a worker starts. */
let web: TestPayrail;
let worker: TestPayrail | undefined;
let sink: LogSink;
let deps: StageDeps;
let extraPool: DatabaseHandle | undefined;
let nextPaymentId = 9_770_000_000;
let nextChannel = 1_007_700_000_001;

/** The stages' dependencies as a worker has them, on `handle`'s pool; `crashAt` makes that point throw. */
function depsWith(options: { crashAt?: CrashPoint; handle?: DatabaseHandle } = {}): StageDeps {
  const crashPoint = options.crashAt
    ? (name: CrashPoint) => {
        if (name === options.crashAt) throw new Error(`crashed at ${name} (test)`);
      }
    : undefined;
  return workerStageDeps(db, outside, {
    env: { CONVERSION_MIN_USD: '1' },
    logger: createLogger({ level: 'info', destination: sink.stream }),
    ...(crashPoint && { crashPoint }),
    ...(options.handle && { handle: options.handle }),
  });
}

async function startWorker(logs?: LogSink): Promise<void> {
  worker = await startTestPayrail(db, {
    outside,
    roles: { web: false, worker: true },
    env: { ...outside.env, CONVERSION_MIN_USD: '1' },
    ...(logs && { logs }),
  });
}

// --- the pipeline by hand ---------------------------------------------------------------------------------------

/** Runs a stage step as the worker would run its job: the job leaves the queue, the step runs. */
async function byHand(key: string, step: () => Promise<unknown>): Promise<void> {
  const { rowCount } = await db.pool.query('delete from graphile_worker._private_jobs where key = $1', [key]);
  expect(rowCount, `a job ${key}`).toBe(1);
  await step();
}

const hooks = () => ({ conversion: conversionTransferHooks(deps), payout: payoutTransferHooks(deps) });

async function pay(channelId: string): Promise<string> {
  return sendFinished(web, nextPaymentId++, channelId);
}

/** A threshold payment (the threshold out of reach) batched into a conversion; its exchange job is queued. */
async function newConversion(): Promise<string> {
  const channelId = await saveChannel(web, `-${nextChannel++}`, {
    payoutStrategy: 'threshold',
    thresholdUsd: '1000',
    payoutCurrency: 'usdt',
    payoutNetwork: 'trx',
    walletAddress: TRON_WALLET,
  });
  await pay(channelId);
  const id = await batchPendingPayments(deps);
  expect(id).not.toBeNull();
  return id as string;
}

/** A new conversion whose exchange was made by hand: its transfer recorded, the transfer's send job queued. */
async function conversionWithTransfer(): Promise<{ id: string; transferId: string }> {
  const id = await newConversion();
  await byHand(`conversion_exchange:${id}`, () => createConversionExchange(deps, id));
  return { id, transferId: (await conversionRow(id)).transfer_id as string };
}

/** A new conversion whose transfer was sent by hand: broadcast, its confirm job queued. */
async function conversionBroadcast(): Promise<{ id: string; transferId: string }> {
  const conversion = await conversionWithTransfer();
  const { transferId } = conversion;
  await byHand(`transfer_send:${transferId}`, () => sendTransfer(deps, hooks(), transferId));
  return conversion;
}

/** A conversion whose ETH reached ChangeNow: sent, its poll job queued. */
async function conversionSent(): Promise<string> {
  const { id, transferId } = await conversionBroadcast();
  await byHand(`transfer_confirm:${transferId}`, () => confirmTransfer(deps, hooks(), transferId));
  expect(await conversionRow(id)).toMatchObject({ status: 'sent' });
  return id;
}

async function instantPayment(currency = 'usdt', network = 'trx', wallet = TRON_WALLET): Promise<string> {
  const channelId = await saveChannel(web, `-${nextChannel++}`, {
    payoutStrategy: 'instant',
    payoutCurrency: currency,
    payoutNetwork: network,
    walletAddress: wallet,
  });
  return pay(channelId);
}

/** An instant payout left in exchange_requested with its exchange made at ChangeNow and never recorded, no job. */
async function payoutWithUnrecordedExchange(): Promise<string> {
  const paymentId = await instantPayment();
  const crashing = depsWith({ crashAt: 'payout_after_exchange_created' });
  await byHand(`payout_instant:${paymentId}`, () =>
    expect(openInstantPayout(crashing, paymentId)).rejects.toThrow('crashed at payout_after_exchange_created'),
  );
  const payout = await payoutOfPayment(paymentId);
  expect(payout).toMatchObject({ status: 'exchange_requested', exchange_id: null, transfer_id: null, attempts: 1 });
  expect(exchangesFor(payout.payout_id)).toHaveLength(1);
  return payout.payout_id;
}

/** A conversion left in exchange_requested with its exchange made at ChangeNow and never recorded, no job. */
async function conversionWithUnrecordedExchange(): Promise<string> {
  const id = await newConversion();
  const crashing = depsWith({ crashAt: 'after_exchange_created' });
  await expect(createConversionExchange(crashing, id)).rejects.toThrow('crashed at after_exchange_created');
  expect(await conversionRow(id)).toMatchObject({ status: 'exchange_requested', exchange_id: null, transfer_id: null });
  expect(exchangesFor(id)).toHaveLength(1);
  await loseJob(`conversion_exchange:${id}`);
  return id;
}

/** An instant payout whose funds reached ChangeNow: sent, its poll job queued. */
async function payoutSent(): Promise<string> {
  const paymentId = await instantPayment();
  await byHand(`payout_instant:${paymentId}`, () => openInstantPayout(deps, paymentId));
  const { payout_id: payoutId, transfer_id: transferId } = await payoutOfPayment(paymentId);
  await byHand(`transfer_send:${transferId}`, () => sendTransfer(deps, hooks(), transferId as string));
  await byHand(`transfer_confirm:${transferId}`, () => confirmTransfer(deps, hooks(), transferId as string));
  expect(await payoutRow(payoutId)).toMatchObject({ status: 'sent' });
  return payoutId;
}

// --- queries ----------------------------------------------------------------------------------------------------

/** Every row a query reads; untyped unless the caller names its columns, as pg gives them. */
async function rowsOf<Row extends QueryResultRow = any>(text: string, params: unknown[]): Promise<Row[]> {
  return (await db.pool.query<Row>(text, params)).rows;
}

/** One text column of every row a query reads. */
async function columnOf(column: string, text: string, params: unknown[]): Promise<string[]> {
  const rows = await rowsOf<Record<string, string>>(text, params);
  return rows.map((r) => r[column]!);
}

/** The row a query reads when the test knows there is one: none fails at the first field read. */
async function firstRowOf<Row extends QueryResultRow = any>(text: string, params: unknown[]): Promise<Row> {
  const [row] = await rowsOf<Row>(text, params);
  return row!;
}

// --- jobs ---------------------------------------------------------------------------------------------------------

async function loseJob(key: string): Promise<void> {
  const { rowCount } = await db.pool.query('delete from graphile_worker._private_jobs where key = $1', [key]);
  expect(rowCount, `a job ${key} to lose`).toBe(1);
}

async function giveUpJob(key: string): Promise<void> {
  const { rowCount } = await db.pool.query(
    "update graphile_worker._private_jobs set attempts = max_attempts, last_error = 'gave up (test)' where key = $1",
    [key],
  );
  expect(rowCount, `a job ${key} to give up`).toBe(1);
}

/** The keys among these with a job that will still run, once per such job. */
async function liveJobs(keys: string[]): Promise<string[]> {
  return columnOf(
    'key',
    'select key from graphile_worker._private_jobs where key = any($1::text[]) and (locked_at is not null or attempts < max_attempts) order by key',
    [keys],
  );
}

async function jobRows(keys: string[]) {
  return rowsOf(
    'select id::text, key, run_at, attempts, max_attempts, revision, locked_at, locked_by from graphile_worker._private_jobs where key = any($1::text[]) order by key',
    [keys],
  );
}

// --- reads --------------------------------------------------------------------------------------------------------

async function conversionRow(id: string) {
  return firstRowOf(
    'select status, reason, exchange_id, transfer_id, usdt_received::text, reconcile_attempts, reconciled_at from conversions where conversion_id = $1',
    [id],
  );
}

async function payoutRow(id: string) {
  return firstRowOf(
    'select payout_id, status, reason, exchange_id, transfer_id, amount_out, attempts, reconcile_attempts from payouts where payout_id = $1',
    [id],
  );
}

async function payoutOfPayment(paymentId: string) {
  const payment = await firstRowOf<{ payout_id: string; transfer_id: string | null }>(
    'select payout_id from payouts where payment_id = $1',
    [paymentId],
  );
  return payoutRow(payment.payout_id);
}

async function transfersOf(purpose: string, ref: string) {
  return rowsOf<{
    transfer_id: string;
    status: string;
    tx_hash: string;
    to_address: string;
    amount: string;
  }>(
    'select transfer_id, status, tx_hash, lower(to_address) as to_address, amount::text from chain_transfers where purpose = $1 and ref = $2',
    [purpose, ref],
  );
}

async function paymentStatuses(conversionId: string): Promise<string[]> {
  return columnOf('conversion_status', 'select conversion_status from payments where conversion_id = $1', [
    conversionId,
  ]);
}

async function transferRow(id: string) {
  return firstRowOf('select status, reconcile_attempts from chain_transfers where transfer_id = $1', [id]);
}

/** The payments a conversion took, by id (they stay listed there after a release). */
async function paymentIdsOf(conversionId: string): Promise<string[]> {
  return columnOf(
    'payment_id',
    'select payment_id::text from conversion_payments where conversion_id = $1 order by payment_id',
    [conversionId],
  );
}

/** Where the payments a conversion once took are now. */
async function paymentsOnceIn(conversionId: string) {
  return rowsOf(
    `select p.conversion_status, p.conversion_id, coalesce(p.conversion_hold_until > now(), false) as held
       from payments p join conversion_payments c on c.payment_id = p.payment_id where c.conversion_id = $1 order by p.payment_id`,
    [conversionId],
  );
}

/** Open stored alerts of a rule about a subject. */
async function openAlerts(rule: string, subject: string) {
  return rowsOf('select severity, details from alerts where rule = $1 and subject = $2 and resolved_at is null', [
    rule,
    subject,
  ]);
}

function exchangesFor(ref: string) {
  return [...outside.sim.exchanges.values()].filter((e) => e.userId === ref);
}

/** The pass's actions as [kind, id, state, action], in the order taken. */
function actionsOf(summary: ReconcileSummary): string[][] {
  return summary.actions.map((a) => [a.kind, a.id, a.state, a.action]);
}

function actionLines(id: string) {
  return sink.lines.filter((l) => l.event === 'reconcile_action' && l.id === id);
}

async function completes(kind: 'conversion' | 'payout', id: string): Promise<void> {
  const row = () => (kind === 'conversion' ? conversionRow(id) : payoutRow(id));
  let last: { status: string; reason: string | null } | undefined;
  try {
    await eventually(`${kind} ${id} completed`, async () => (last = await row()).status === 'completed');
  } catch (error) {
    throw new Error(`${(error as Error).message} (last: ${last?.status}, ${last?.reason ?? 'no reason'})`, {
      cause: error,
    });
  }
}

/** Completed through one exchange at ChangeNow paid by one confirmed transfer to its payin address. */
async function expectOneExchangeOneTransfer(kind: 'conversion' | 'payout', id: string): Promise<void> {
  const exchanges = exchangesFor(id);
  expect(exchanges).toHaveLength(1);
  const row = kind === 'conversion' ? await conversionRow(id) : await payoutRow(id);
  expect(row.exchange_id).toBe(exchanges[0]!.id);
  expect(await transfersOf(kind, id)).toMatchObject([
    {
      transfer_id: row.transfer_id,
      status: 'confirmed',
      to_address: exchanges[0]!.payinAddress.toLowerCase(),
      amount: NET_WEI.toString(),
    },
  ]);
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
beforeEach(() => {
  sink = logSink();
  deps = depsWith();
});
afterEach(async () => {
  await worker?.stop();
  worker = undefined;
  await extraPool?.close();
  extraPool = undefined;
  await outside.sim.setFault('none');
});
afterAll(async () => {
  await web?.stop();
  try {
    if (db && outside) await expectLedgerEqualsChain(db, outside);
  } finally {
    await db?.close();
    await outside?.stop();
  }
});

describe('exchanges created at ChangeNow whose creation was never recorded', () => {
  it('a conversion left in exchange_requested, its job lost: the pass resumes its stage, which adopts the exchange; settled with one exchange and one transfer', async () => {
    const id = await conversionWithUnrecordedExchange();

    const summary = await reconcile(deps, NOW);
    expect(actionsOf(summary)).toEqual([['conversion', id, 'exchange_requested', 'find_exchange']]);
    expect(summary).toMatchObject({ ran: true, resumed: 1, reviewed: 0, moved: 0 });
    expect(await liveJobs([`conversion_exchange:${id}`])).toEqual([`conversion_exchange:${id}`]);
    expect(await conversionRow(id)).toMatchObject({
      status: 'exchange_requested',
      reconcile_attempts: 1,
      reconciled_at: expect.any(Date),
    });
    expect(actionLines(id)).toEqual([
      expect.objectContaining({
        event: 'reconcile_action',
        kind: 'conversion',
        id,
        state: 'exchange_requested',
        action: 'find_exchange',
        reason: expect.stringMatching(/^no job moves it on \(unchanged in exchange_requested for \d+ s\)$/),
      }),
    ]);

    await startWorker();
    await completes('conversion', id);
    await expectOneExchangeOneTransfer('conversion', id);
    // The resume counted in exchange_requested; each later state started its own count.
    expect(await conversionRow(id)).toMatchObject({ usdt_received: CONVERTED_USDT, reconcile_attempts: 0 });
    expect(await paymentStatuses(id)).toEqual(['completed']);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('an instant payout left in exchange_requested, its job lost: the pass resumes its run, which adopts the exchange; completed with one exchange and one transfer', async () => {
    const payoutId = await payoutWithUnrecordedExchange();
    expect(await liveJobs([`payout_run:${payoutId}`])).toEqual([]);

    const summary = await reconcile(deps, NOW);
    expect(actionsOf(summary)).toEqual([['payout', payoutId, 'exchange_requested', 'find_exchange']]);
    expect(await liveJobs([`payout_run:${payoutId}`])).toEqual([`payout_run:${payoutId}`]);

    await startWorker();
    await completes('payout', payoutId);
    await expectOneExchangeOneTransfer('payout', payoutId);
    expect(await payoutRow(payoutId)).toMatchObject({ amount_out: '13.1717', reconcile_attempts: 1 });
    expect(sink.alerts()).toEqual([]);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });
});

describe('lost and given-up jobs', () => {
  it('a broadcast transfer with no confirm job: the pass re-queues the receipt lookup; the conversion settles on the same transaction', async () => {
    const { id, transferId } = await conversionBroadcast();
    const [broadcast] = await transfersOf('conversion', id);
    expect(broadcast).toMatchObject({ transfer_id: transferId, status: 'broadcast' });
    await loseJob(`transfer_confirm:${transferId}`);

    const summary = await reconcile(deps, NOW);
    expect(actionsOf(summary)).toEqual([['transfer', transferId, 'broadcast', 'reconfirm']]);
    expect(await liveJobs([`transfer_confirm:${transferId}`, `transfer_send:${transferId}`])).toEqual([
      `transfer_confirm:${transferId}`,
    ]);

    await startWorker();
    await completes('conversion', id);
    await expectOneExchangeOneTransfer('conversion', id);
    expect((await transfersOf('conversion', id))[0]!.tx_hash).toBe(broadcast!.tx_hash);
    expect(await paymentStatuses(id)).toEqual(['completed']);
  });

  it('a sent payout whose poll job gave up: the pass re-polls under the same key; the payout completes', async () => {
    const payoutId = await payoutSent();
    await giveUpJob(`payout_poll:${payoutId}`);

    const summary = await reconcile(deps, NOW);
    expect(actionsOf(summary)).toEqual([['payout', payoutId, 'sent', 'repoll']]);
    // The given-up job does not count, and is not doubled: one job will poll.
    expect(await liveJobs([`payout_poll:${payoutId}`])).toEqual([`payout_poll:${payoutId}`]);

    await startWorker();
    await completes('payout', payoutId);
    await expectOneExchangeOneTransfer('payout', payoutId);
    expect(await payoutRow(payoutId)).toMatchObject({ amount_out: '13.1717' });
  });

  it('a conversion past its poll deadline, its poll job lost: the last look by its stage finds the exchange finished and settles it', async () => {
    const id = await conversionSent();
    await loseJob(`conversion_poll:${id}`);
    await db.pool.query(
      "update conversions set poll_deadline_at = now() - interval '1 minute' where conversion_id = $1",
      [id],
    );

    const summary = await reconcile(deps, NOW);
    expect(actionsOf(summary)).toEqual([['conversion', id, 'sent', 'repoll']]);
    expect(summary.actions[0]!.reason).toMatch(
      /^past its final deadline \S+ and no job moves it on \(unchanged in sent for \d+ s\): one last look by its stage$/,
    );

    await startWorker();
    await completes('conversion', id);
    await expectOneExchangeOneTransfer('conversion', id);
    expect(await conversionRow(id)).toMatchObject({ usdt_received: CONVERTED_USDT });
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });
});

describe('credited instant payments whose payout was never opened', () => {
  it('a lost or given-up payout_instant job is queued again, once; a payment with a payout or a live job is left alone', async () => {
    const lost = await instantPayment();
    const gaveUp = await instantPayment();
    const alive = await instantPayment();
    const opened = await instantPayment();
    await loseJob(`payout_instant:${lost}`);
    await giveUpJob(`payout_instant:${gaveUp}`);
    await byHand(`payout_instant:${opened}`, () => openInstantPayout(deps, opened));

    const summary = await reconcile(deps, NOW);
    expect([...summary.reopened].sort()).toEqual([lost, gaveUp].sort());
    expect(await liveJobs([lost, gaveUp, alive].map((id) => `payout_instant:${id}`))).toEqual(
      [lost, gaveUp, alive].map((id) => `payout_instant:${id}`).sort(),
    );
    expect((await reconcile(deps, NOW)).reopened).toEqual([]);

    for (const paymentId of [lost, gaveUp])
      await byHand(`payout_instant:${paymentId}`, () => openInstantPayout(deps, paymentId));
    for (const paymentId of [lost, gaveUp])
      expect(await payoutOfPayment(paymentId)).toMatchObject({ status: 'exchange_created' });
    expect((await reconcile(deps, NOW)).reopened).toEqual([]);
  });

  it('a payout_instant run for the IPN of a channel never registered opens nothing, and says the payment is not a credited instant one', async () => {
    // Not forwarded on chain: the IPN is kept for review (202), its ETH never reaches the host wallet.
    const body = ipnBody({ payment_id: nextPaymentId++, order_id: `PGP-1|-${nextChannel++}` });
    const { raw, headers } = signed(body, IPN_SECRET);
    expect((await web.request('POST', '/webhooks/nowpayments', { raw, headers, token: null })).status).toBe(202);
    const paymentId = String(body.payment_id);
    const kept = await firstRowOf('select credited_at, review_reason from payments where payment_id = $1', [paymentId]);
    expect(kept.credited_at).toBeNull();
    expect(kept.review_reason).not.toBeNull();
    for (let run = 0; run < 2; run++)
      await expect(openInstantPayout(deps, paymentId)).rejects.toThrow(
        `payment ${paymentId} is not a credited instant payment`,
      );
    expect(await rowsOf('select payout_id from payouts where payment_id = $1', [paymentId])).toEqual([]);
    expect((await reconcile(deps, NOW)).reopened).toEqual([]);
  });
});

describe('giving up once resuming has had its chance', () => {
  it('a payout whose stage keeps dying goes to review after its resumes; a transfer never does: past its limit it raises transfer_stuck and is queued again, then confirms and its conversion settles', async () => {
    const payoutId = await payoutWithUnrecordedExchange();
    // Three passes resume it; each time its job is lost again.
    for (let resume = 1; resume <= 3; resume++) {
      expect(actionsOf(await reconcile(deps, NOW))).toEqual([
        ['payout', payoutId, 'exchange_requested', 'find_exchange'],
      ]);
      expect(await payoutRow(payoutId)).toMatchObject({ status: 'exchange_requested', reconcile_attempts: resume });
      await loseJob(`payout_run:${payoutId}`);
    }
    const { id, transferId } = await conversionBroadcast();
    await loseJob(`transfer_confirm:${transferId}`);
    await db.pool.query('update chain_transfers set reconcile_attempts = 3 where transfer_id = $1', [transferId]);

    const summary = await reconcile(deps, NOW);
    expect(actionsOf(summary)).toEqual([
      ['payout', payoutId, 'exchange_requested', 'review'],
      ['transfer', transferId, 'broadcast', 'reconfirm'],
    ]);
    expect(summary).toMatchObject({ resumed: 1, reviewed: 1, released: 0 });
    const payoutReason = expect.stringMatching(
      /^stuck in exchange_requested: no job moves it on \(unchanged in exchange_requested for \d+ s\) after 3 resumes by the reconciler$/,
    );
    expect(await payoutRow(payoutId)).toMatchObject({ status: 'needs_review', reason: payoutReason });
    const transferReason = expect.stringMatching(
      /^stuck in broadcast: no job moves it on \(unchanged in broadcast for \d+ s\) after 3 resumes by the reconciler$/,
    );
    expect(summary.actions[1]).toMatchObject({ alert: 'transfer_stuck', reason: transferReason });
    // Its owner is not sent to review: it keeps waiting for the transfer, whose receipt lookup is queued again.
    expect(await conversionRow(id)).toMatchObject({ status: 'exchange_created', reason: null });
    expect(await paymentStatuses(id)).toEqual(['converting']);
    expect(await transferRow(transferId)).toMatchObject({ status: 'broadcast', reconcile_attempts: 4 });
    expect(await liveJobs([`payout_run:${payoutId}`, `transfer_confirm:${transferId}`])).toEqual([
      `transfer_confirm:${transferId}`,
    ]);
    expect(await openAlerts('transfer_stuck', transferId)).toEqual([
      {
        severity: 'critical',
        details: expect.objectContaining({
          transferId,
          state: 'broadcast',
          ownerKind: 'conversion',
          ownerId: id,
          reason: transferReason,
          mayHaveLeft: true,
        }),
      },
    ]);
    expect(sink.lines.filter((l) => l.event === 'alert').map((l) => [l.alert, l.payoutId ?? l.transferId])).toEqual([
      ['payout_stuck', payoutId],
      ['transfer_stuck', transferId],
    ]);
    expect(actionLines(payoutId).at(-1)).toMatchObject({ action: 'review', reason: payoutReason });
    expect(actionLines(transferId).at(-1)).toMatchObject({
      action: 'reconfirm',
      alert: 'transfer_stuck',
      reason: transferReason,
    });

    // Its job lost again: the next pass queues it again, and the alert stays one open alert.
    await loseJob(`transfer_confirm:${transferId}`);
    const next = await reconcile(deps, NOW);
    expect(actionsOf(next)).toEqual([['transfer', transferId, 'broadcast', 'reconfirm']]);
    expect(next.actions[0]!.alert).toBe('transfer_stuck');
    expect(await liveJobs([`transfer_confirm:${transferId}`])).toEqual([`transfer_confirm:${transferId}`]);
    expect(await openAlerts('transfer_stuck', transferId)).toHaveLength(1);

    // The payout in review is a person's, and the transfer's job is alive: the next pass leaves both.
    expect(actionsOf(await reconcile(deps, NOW))).toEqual([]);
    expect(exchangesFor(payoutId)).toHaveLength(1);

    // A person's retry is the way on, with a fresh budget of resumes: the run adopts the one exchange.
    expect(await applyPayoutAction(db.db, payoutId, 'retry', 'alice', { pollDeadlineMs: 60_000 })).toEqual({
      payoutId,
      from: 'needs_review',
      to: 'exchange_requested',
    });
    expect(await payoutRow(payoutId)).toMatchObject({ status: 'exchange_requested', reconcile_attempts: 0 });
    await startWorker();
    await completes('payout', payoutId);
    await expectOneExchangeOneTransfer('payout', payoutId);
    // The transaction anvil mined is recorded, and the conversion moves on to settle on it.
    await completes('conversion', id);
    await expectOneExchangeOneTransfer('conversion', id);
    expect((await transfersOf('conversion', id))[0]!.transfer_id).toBe(transferId);
    expect(await paymentStatuses(id)).toEqual(['completed']);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('an intent transfer (never signed) past its limit is queued for its send again with transfer_stuck, its direct payout left waiting; it pays, its count started over at each state', async () => {
    const paymentId = await instantPayment('eth', 'eth', freshWallet());
    await byHand(`payout_instant:${paymentId}`, () => openInstantPayout(deps, paymentId));
    const payout = await payoutOfPayment(paymentId);
    expect(payout).toMatchObject({ status: 'sent', exchange_id: null });
    const transferId = payout.transfer_id as string;
    await loseJob(`transfer_send:${transferId}`);
    await db.pool.query('update chain_transfers set reconcile_attempts = 3 where transfer_id = $1', [transferId]);

    const summary = await reconcile(deps, NOW);
    expect(actionsOf(summary)).toEqual([['transfer', transferId, 'intent', 'resend']]);
    expect(summary).toMatchObject({ resumed: 1, reviewed: 0, released: 0 });
    expect(summary.actions[0]!.alert).toBe('transfer_stuck');
    expect(await openAlerts('transfer_stuck', transferId)).toEqual([
      {
        severity: 'critical',
        details: expect.objectContaining({
          transferId,
          state: 'intent',
          ownerKind: 'payout',
          ownerId: payout.payout_id,
          mayHaveLeft: false,
        }),
      },
    ]);
    expect(await payoutRow(payout.payout_id)).toMatchObject({ status: 'sent', reason: null });
    expect(await transferRow(transferId)).toMatchObject({ status: 'intent', reconcile_attempts: 4 });
    expect(await liveJobs([`transfer_send:${transferId}`])).toEqual([`transfer_send:${transferId}`]);

    await startWorker();
    await completes('payout', payout.payout_id);
    // Signed, then broadcast: each a new state with a count of its own (mined is final, the count left as it was).
    expect(await transferRow(transferId)).toMatchObject({ status: 'confirmed', reconcile_attempts: 0 });
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('a conversion given up before its ETH left is failed and its payments go back to pending, held; one with a transfer goes to review; the next batch converts the released payments', async () => {
    const requested = await conversionWithUnrecordedExchange();
    const pending = await newConversion();
    await loseJob(`conversion_exchange:${pending}`);
    const { id: withTransfer, transferId } = await conversionWithTransfer();
    // Forged (no stage does this): back in exchange_requested with its transfer recorded, whose send may still happen.
    await loseJob(`transfer_send:${transferId}`);
    await db.pool.query("update conversions set status = 'exchange_requested' where conversion_id = $1", [
      withTransfer,
    ]);
    await db.pool.query('update conversions set reconcile_attempts = 3 where conversion_id = any($1::text[])', [
      [requested, pending, withTransfer],
    ]);
    const released = [...(await paymentIdsOf(pending)), ...(await paymentIdsOf(requested))];
    expect(released).toHaveLength(2);

    const summary = await reconcile(deps, NOW);
    expect(actionsOf(summary)).toEqual([
      ['conversion', pending, 'pending', 'release'],
      ['conversion', requested, 'exchange_requested', 'release'],
      ['conversion', withTransfer, 'exchange_requested', 'review'],
    ]);
    expect(summary).toMatchObject({ resumed: 0, released: 2, reviewed: 1 });
    for (const [id, state] of [
      [pending, 'pending'],
      [requested, 'exchange_requested'],
    ] as const) {
      expect(await conversionRow(id)).toMatchObject({
        status: 'failed',
        reason: expect.stringMatching(
          new RegExp(
            `^stuck in ${state}: no job moves it on \\(unchanged in ${state} for \\d+ s\\) after 3 resumes by the reconciler; its ETH never left: payments back to pending$`,
          ),
        ),
      });
      // Back to pending, out of the conversion, and held before the next batch (as after a ChangeNow refusal).
      expect(await paymentsOnceIn(id)).toEqual([{ conversion_status: 'pending', conversion_id: null, held: true }]);
      expect(await openAlerts('conversion_stuck', id)).toEqual([
        { severity: 'critical', details: expect.objectContaining({ conversionId: id, state }) },
      ]);
    }
    expect(await liveJobs([`conversion_exchange:${pending}`, `conversion_exchange:${requested}`])).toEqual([]);
    // The exchange made for it at ChangeNow is never funded; ChangeNow expires it.
    expect(exchangesFor(requested)).toHaveLength(1);
    // Its ETH may leave: a person decides.
    expect(await conversionRow(withTransfer)).toMatchObject({
      status: 'needs_review',
      reason: expect.stringMatching(
        new RegExp(`after 3 resumes by the reconciler; its transfer ${transferId} is intent$`),
      ),
    });
    expect(await paymentStatuses(withTransfer)).toEqual(['failed']);
    expect(sink.alerts()).toEqual(['conversion_stuck', 'conversion_stuck', 'conversion_stuck']);
    expect(actionsOf(await reconcile(deps, NOW))).toEqual([]);

    // The hold over, the next batch takes both payments: one new conversion, one exchange, one transfer.
    await db.pool.query(
      "update payments set conversion_hold_until = now() - interval '1 second' where payment_id = any($1::numeric[])",
      [released],
    );
    const next = await batchPendingPayments(deps);
    expect(next).not.toBeNull();
    expect(await paymentIdsOf(next as string)).toEqual([...released].sort());
    await startWorker();
    await completes('conversion', next as string);
    expect(exchangesFor(next as string)).toHaveLength(1);
    expect(await transfersOf('conversion', next as string)).toMatchObject([
      { status: 'confirmed', amount: (2n * NET_WEI).toString() },
    ]);
    expect(await paymentStatuses(next as string)).toEqual(['completed', 'completed']);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('a conversion past its poll deadline whose last look died too goes to review with the reason', async () => {
    const id = await conversionSent();
    await loseJob(`conversion_poll:${id}`);
    await db.pool.query(
      "update conversions set poll_deadline_at = now() - interval '1 minute' where conversion_id = $1",
      [id],
    );
    expect(actionsOf(await reconcile(deps, NOW))).toEqual([['conversion', id, 'sent', 'repoll']]);
    // The last look's job gives up without a word (its worker died on each attempt, say).
    await giveUpJob(`conversion_poll:${id}`);

    const summary = await reconcile(deps, NOW);
    expect(actionsOf(summary)).toEqual([['conversion', id, 'sent', 'review']]);
    const row = await conversionRow(id);
    expect(row.status).toBe('needs_review');
    expect(row.reason).toMatch(
      /^stuck in sent past its final deadline \S+: no job moves it on \(unchanged in sent for \d+ s\) after the reconciler's last look$/,
    );
    expect(await paymentStatuses(id)).toEqual(['failed']);
    expect(sink.alerts()).toEqual(['conversion_stuck']);
  });
});

describe('items whose job is alive are left alone', () => {
  it('a poll queued for later and a send running its last attempt: not stuck, however old; nothing queued or counted', async () => {
    const id = await conversionSent();
    const pollKey = `conversion_poll:${id}`;
    await db.pool.query("update graphile_worker._private_jobs set run_at = now() + interval '1 hour' where key = $1", [
      pollKey,
    ]);
    await db.pool.query("update conversions set updated_at = now() - interval '1 hour' where conversion_id = $1", [id]);
    const paymentId = await instantPayment('eth', 'eth', freshWallet());
    await byHand(`payout_instant:${paymentId}`, () => openInstantPayout(deps, paymentId));
    const direct = await payoutOfPayment(paymentId);
    expect(direct).toMatchObject({ status: 'sent', exchange_id: null });
    const sendKey = `transfer_send:${direct.transfer_id}`;
    await db.pool.query(
      "update graphile_worker._private_jobs set attempts = max_attempts, locked_at = now(), locked_by = 'another-worker' where key = $1",
      [sendKey],
    );
    const before = await jobRows([pollKey, sendKey]);
    expect(before).toHaveLength(2);

    const summary = await reconcile(deps, NOW);
    expect(summary.actions).toEqual([]);
    // Left out by the pass's query itself: a live job makes an item no candidate at all.
    expect(summary).toMatchObject({ ran: true, examined: 0, alive: 0, resumed: 0, reviewed: 0, failed: 0 });
    expect(await jobRows([pollKey, sendKey])).toEqual(before);
    expect(await conversionRow(id)).toMatchObject({ status: 'sent', reconcile_attempts: 0 });
    expect(sink.lines.filter((l) => l.event === 'reconcile_action')).toEqual([]);

    // Let them run: both end on their own jobs.
    await db.pool.query('update graphile_worker._private_jobs set run_at = now() where key = $1', [pollKey]);
    await db.pool.query(
      'update graphile_worker._private_jobs set attempts = 0, locked_at = null, locked_by = null where key = $1',
      [sendKey],
    );
    await startWorker();
    await completes('conversion', id);
    await completes('payout', direct.payout_id);
  });
});

describe('healthy items do not hide a stuck one', () => {
  it('more healthy sent conversions than the per-state limit, all older than a stuck one: the pass still reaches the stuck one and re-polls it', async () => {
    const healthy: string[] = [];
    for (let i = 0; i < 3; i++) {
      const id = await conversionSent();
      // Polling, its next poll later: a poll does not touch updated_at, so it only gets older while it is healthy.
      await db.pool.query(
        "update graphile_worker._private_jobs set run_at = now() + interval '1 hour' where key = $1",
        [`conversion_poll:${id}`],
      );
      await db.pool.query("update conversions set updated_at = now() - interval '1 hour' where conversion_id = $1", [
        id,
      ]);
      healthy.push(id);
    }
    const stuck = await conversionSent();
    await loseJob(`conversion_poll:${stuck}`);

    // A limit of 2 per state: the two oldest sent conversions are healthy, the stuck one comes after all three.
    const summary = await reconcile(deps, { ...NOW, perStateLimit: 2 });
    expect(actionsOf(summary)).toEqual([['conversion', stuck, 'sent', 'repoll']]);
    expect(summary).toMatchObject({ examined: 1, alive: 0, resumed: 1 });
    expect(await liveJobs([`conversion_poll:${stuck}`])).toEqual([`conversion_poll:${stuck}`]);

    await db.pool.query('update graphile_worker._private_jobs set run_at = now() where key = any($1::text[])', [
      healthy.map((id) => `conversion_poll:${id}`),
    ]);
    await startWorker();
    for (const id of [...healthy, stuck]) await completes('conversion', id);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });
});

describe('an item that fails', () => {
  it('is logged and alerted, and the pass goes on with the next item, at every pass; once its row is fixed it is resumed', async () => {
    const { id: failing, transferId: badTransfer } = await conversionWithTransfer();
    await loseJob(`transfer_send:${badTransfer}`);
    const { id: other, transferId: otherTransfer } = await conversionBroadcast();
    await loseJob(`transfer_confirm:${otherTransfer}`);
    // A sending wallet so long that its send's job queue (wallet:<address>) is refused by graphile-worker (128 at most).
    const { rows } = await db.pool.query<{ from_address: string }>(
      'select from_address from chain_transfers where transfer_id = $1',
      [badTransfer],
    );
    const hostAddress = rows[0]!.from_address;
    await db.pool.query("update chain_transfers set from_address = repeat('f', 130) where transfer_id = $1", [
      badTransfer,
    ]);

    // The intent transfer comes first in the pass (intent before broadcast) and fails; the broadcast one is resumed.
    const summary = await reconcile(deps, NOW);
    expect(actionsOf(summary)).toEqual([['transfer', otherTransfer, 'broadcast', 'reconfirm']]);
    expect(summary).toMatchObject({ examined: 2, failed: 1, resumed: 1 });
    expect(sink.lines.filter((l) => l.event === 'reconcile_item_failed')).toEqual([
      expect.objectContaining({
        kind: 'transfer',
        id: badTransfer,
        state: 'intent',
        err: expect.stringMatching(/queue/),
      }),
    ]);
    expect(await openAlerts('reconcile_item_failed', `transfer:${badTransfer}`)).toEqual([
      {
        severity: 'critical',
        details: expect.objectContaining({
          kind: 'transfer',
          id: badTransfer,
          state: 'intent',
          err: expect.stringMatching(/queue/),
        }),
      },
    ]);
    // Its failed decision left nothing behind.
    expect(await transferRow(badTransfer)).toMatchObject({ status: 'intent', reconcile_attempts: 0 });
    expect(await liveJobs([`transfer_send:${badTransfer}`])).toEqual([]);

    // The next pass meets it again, and still finishes.
    expect(await reconcile(deps, NOW)).toMatchObject({ ran: true, examined: 1, failed: 1, actions: [] });

    await db.pool.query('update chain_transfers set from_address = $2 where transfer_id = $1', [
      badTransfer,
      hostAddress,
    ]);
    expect(actionsOf(await reconcile(deps, NOW))).toEqual([['transfer', badTransfer, 'intent', 'resend']]);
    await startWorker();
    await completes('conversion', other);
    await completes('conversion', failing);
    await expectOneExchangeOneTransfer('conversion', other);
    await expectOneExchangeOneTransfer('conversion', failing);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });
});

describe('passes at once, and again', () => {
  it('two concurrent passes (two pools, as two workers) and a repeated one resume each item once; one exchange and one transfer each', async () => {
    const conversionId = await conversionWithUnrecordedExchange();
    const requestedPayout = await payoutWithUnrecordedExchange();
    const sentPayout = await payoutSent();
    await loseJob(`payout_poll:${sentPayout}`);
    const keys = [`conversion_exchange:${conversionId}`, `payout_run:${requestedPayout}`, `payout_poll:${sentPayout}`];

    extraPool = openPool(db.url, {
      max: 4,
      applicationName: 'payrail-test-second-worker',
      logger: createLogger({ level: 'silent' }),
    });
    const other = depsWith({ handle: extraPool });
    const passes = await Promise.all([reconcile(deps, NOW), reconcile(other, NOW)]);
    expect(passes.some((p) => p.ran)).toBe(true);
    const taken = passes.flatMap(actionsOf).sort((a, b) => a[1]!.localeCompare(b[1]!));
    expect(taken).toEqual(
      [
        ['conversion', conversionId, 'exchange_requested', 'find_exchange'],
        ['payout', requestedPayout, 'exchange_requested', 'find_exchange'],
        ['payout', sentPayout, 'sent', 'repoll'],
      ].sort((a, b) => a[1]!.localeCompare(b[1]!)),
    );
    expect(passes[0].resumed + passes[1].resumed).toBe(3);
    expect(await liveJobs(keys)).toEqual([...keys].sort());

    const again = await reconcile(deps, NOW);
    expect(again).toMatchObject({ ran: true, examined: 0, resumed: 0, reviewed: 0, actions: [] });
    expect(await liveJobs(keys)).toEqual([...keys].sort());
    expect(await conversionRow(conversionId)).toMatchObject({ reconcile_attempts: 1 });
    expect(await payoutRow(requestedPayout)).toMatchObject({ reconcile_attempts: 1 });
    expect(await payoutRow(sentPayout)).toMatchObject({ reconcile_attempts: 1 });

    await startWorker();
    await completes('conversion', conversionId);
    await completes('payout', requestedPayout);
    await completes('payout', sentPayout);
    await expectOneExchangeOneTransfer('conversion', conversionId);
    await expectOneExchangeOneTransfer('payout', requestedPayout);
    await expectOneExchangeOneTransfer('payout', sentPayout);
    // Done items are not looked at again.
    expect((await reconcile(deps, NOW)).actions).toEqual([]);
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });
});

describe('the reconcile task', () => {
  it('runs every RECONCILE_INTERVAL, once, without backfill; a worker runs it with the default deadlines', async () => {
    expect(HANDLED_TASKS).toContain('reconcile');
    expect(pipelineCron({ conversionIntervalMs: 60_000, reconcileIntervalMs: 300_000 })).toContainEqual({
      task: 'reconcile',
      match: '*/5 * * * *',
      identifier: 'reconcile',
      options: { backfillPeriod: 0, maxAttempts: 1 },
    });
    expect(() => pipelineCron({ conversionIntervalMs: 60_000, reconcileIntervalMs: 90_000 })).toThrow(
      'reconcile interval must be whole minutes from 1 to 59',
    );

    const payoutId = await payoutSent();
    await loseJob(`payout_poll:${payoutId}`);
    // Unchanged for ten minutes: past the default deadline of a sent payout (a poll interval and a minute).
    await db.pool.query("update payouts set updated_at = now() - interval '10 minutes' where payout_id = $1", [
      payoutId,
    ]);

    const logs = logSink();
    await startWorker(logs);
    await db.pool.query("select graphile_worker.add_job('reconcile', '{}'::json, max_attempts => 1)");
    await completes('payout', payoutId);
    expect(logs.lines.filter((l) => l.event === 'reconcile_action' && l.id === payoutId)).toEqual([
      expect.objectContaining({ kind: 'payout', state: 'sent', action: 'repoll' }),
    ]);
    await expectOneExchangeOneTransfer('payout', payoutId);
  });
});
