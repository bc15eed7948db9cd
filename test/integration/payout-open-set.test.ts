// Its own world, not the shared fixtures': a web payrail takes the IPNs and runs no jobs; the stages run by hand.
/**
 * A payout_instant run opens the payouts of the other credited instant payments whose jobs wait in the queue
 * (src/pipeline/payout/open-set.ts), on real parts (PostgreSQL, anvil, the ChangeNow simulator over HTTP): each payout
 * as its own run would open it, the direct ones with their transfers, the others with their runs queued, their
 * payments' jobs removed in the same commit. A payment another transaction holds, a job that failed before, and
 * every payment of a set whose transaction fails are left to their own jobs, and end the same. A strategy switch never
 * strands a payment whose payout is being opened or has ended.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { jobWithKeyExists } from '../../src/jobs/index.ts';
import { accounts, checkLedger, inLedgerGroup, postJournal } from '../../src/ledger/index.ts';
import { createLogger } from '../../src/log.ts';
import { applyPayoutAction, type StageDeps } from '../../src/pipeline/index.ts';
import { openQueuedPayouts } from '../../src/pipeline/payout/open-set.ts';
import { ASK_FALLBACK_MS } from '../../src/pipeline/payout/ask-at-opening.ts';
import { openInstantPayout, runPayout } from '../../src/pipeline/payout/run.ts';
import { RunLocked } from '../../src/pipeline/run-lock.ts';
import { DEFAULT_PAIRS } from '../../src/simulators/index.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { bookHostFunding } from '../support/ledger-chain.ts';
import { eventually, startOutside, type Outside } from '../support/outside.ts';
import { logSink, startTestPayrail, workerStageDeps, type TestPayrail } from '../support/payrail.ts';
import { freshWallet, saveChannel, sendFinished, TRON_WALLET } from '../support/payouts.ts';

/** One fixture payment's net: 0.00487 ETH less the 3 % platform fee. */
const NET_WEI = 4_723_900_000_000_000n;

let outside: Outside;
let db: TestDatabase;
let web: TestPayrail;
let deps: StageDeps;
let nextPaymentId = 9_810_000_000;
let nextChannel = 1_008_100_000_001;

beforeAll(async () => {
  outside = await startOutside();
  db = await createTestDatabase();
  await bookHostFunding(db, outside);
  web = await startTestPayrail(db, { outside, roles: { web: true, worker: false }, env: outside.env });
});
beforeEach(async () => {
  deps = workerStageDeps(db, outside);
  // Each test sees only its own queued jobs.
  await db.pool.query("delete from graphile_worker._private_jobs where key like 'payout_instant:%'");
});
afterEach(async () => {
  await db.pool.query("delete from graphile_worker._private_jobs where key like 'payout_instant:%'");
});
afterAll(async () => {
  await web?.stop();
  await db?.close();
  await outside?.stop();
});

/** An instant channel paying to `currency` on `network`, and one payment of it credited: its payout job queued. */
async function instantPayment(
  currency: string,
  network: string,
  wallet: string,
): Promise<{ paymentId: string; channelId: string; wallet: string }> {
  const channelId = await saveChannel(web, `-${nextChannel++}`, {
    payoutStrategy: 'instant',
    payoutCurrency: currency,
    payoutNetwork: network,
    walletAddress: wallet,
  });
  const paymentId = await sendFinished(web, nextPaymentId++, channelId);
  expect(await jobWithKeyExists(db.db, `payout_instant:${paymentId}`)).toBe(true);
  return { paymentId, channelId, wallet };
}

const direct = () => instantPayment('eth', 'eth', freshWallet());
const viaExchange = () => instantPayment('usdt', 'trx', TRON_WALLET);

interface OpenedPayout {
  payout_id: string;
  status: string;
  amount: string;
  transfer_id: string | null;
  wallet_address: string;
}

async function payoutsOf(paymentId: string): Promise<OpenedPayout[]> {
  const { rows } = await db.pool.query<OpenedPayout>(
    'select payout_id, status, amount::text, transfer_id, wallet_address from payouts where payment_id = $1',
    [paymentId],
  );
  return rows;
}

async function transfersOf(
  payoutId: string,
): Promise<Array<{ transfer_id: string; status: string; amount: string; to_address: string }>> {
  const { rows } = await db.pool.query(
    "select transfer_id, status, amount::text, to_address from chain_transfers where purpose = 'payout' and ref = $1",
    [payoutId],
  );
  return rows;
}

async function balanceOf(channelId: string, payoutAccount: boolean): Promise<bigint> {
  const account = payoutAccount ? accounts.channelPayout(channelId, 'eth') : accounts.channel(channelId, 'eth');
  const { rows } = await db.pool.query<{ balance: string }>(
    'select balance::text from ledger_accounts where code = $1 and asset = $2',
    [account.code, account.asset],
  );
  return BigInt(rows[0]?.balance ?? '0');
}

/** The payment's payout was opened once, as its own run opens it: reserved from the channel, linked from the payment. */
async function expectOpenedOnce(p: { paymentId: string; channelId: string }): Promise<OpenedPayout> {
  const payouts = await payoutsOf(p.paymentId);
  expect(payouts).toHaveLength(1);
  const payout = payouts[0] as OpenedPayout;
  expect(payout.amount).toBe(NET_WEI.toString());
  const { rows } = await db.pool.query<{ payout_id: string }>('select payout_id from payments where payment_id = $1', [
    p.paymentId,
  ]);
  expect(rows[0]?.payout_id).toBe(payout.payout_id);
  expect(await balanceOf(p.channelId, false)).toBe(0n);
  expect(await balanceOf(p.channelId, true)).toBe(NET_WEI);
  const journals = await db.pool.query('select 1 from ledger_journals where kind = $1 and ref = $2', [
    'payout_reserved',
    payout.payout_id,
  ]);
  expect(journals.rowCount).toBe(1);
  return payout;
}

/** `base` with its ChangeNow client's calls counted (the real client, over HTTP to the simulator). */
function countingCalls(base: StageDeps) {
  const calls = { estimate: 0, createExchange: 0, listExchanges: 0 };
  const cn = base.exchange;
  const exchange: StageDeps['exchange'] = {
    ...cn,
    estimate: (request) => ((calls.estimate += 1), cn.estimate(request)),
    createExchange: (request) => ((calls.createExchange += 1), cn.createExchange(request)),
    listExchanges: (filter) => ((calls.listExchanges += 1), cn.listExchanges(filter)),
  };
  return { deps: { ...base, exchange }, calls };
}

function exchangesFor(payoutId: string) {
  return [...outside.sim.exchanges.values()].filter((e) => e.userId === payoutId);
}

/**
 * The payout's exchange recorded as its run records one: `exchange_created` with the one exchange ChangeNow holds for
 * it, asked as the run asks, the transfer intent paying its payin address, and no run left.
 */
async function expectExchangeRecorded(payout: OpenedPayout): Promise<void> {
  const { rows } = await db.pool.query(
    'select status, exchange_id, payin_address, expected_amount_out, exchange_asked_at, transfer_id from payouts where payout_id = $1',
    [payout.payout_id],
  );
  const exchanges = exchangesFor(payout.payout_id);
  expect(exchanges).toHaveLength(1);
  const exchange = exchanges[0]!;
  expect(exchange).toMatchObject({
    fromCurrency: 'eth',
    fromNetwork: 'eth',
    toCurrency: 'usdt',
    toNetwork: 'trx',
    expectedAmountFrom: '0.0047239',
    payoutAddress: TRON_WALLET,
    refundAddress: outside.hostAddress,
  });
  expect(rows[0]).toMatchObject({
    status: 'exchange_created',
    exchange_id: exchange.id,
    payin_address: exchange.payinAddress,
    expected_amount_out: exchange.expectedAmountTo,
    exchange_asked_at: expect.any(Date),
  });
  const transfers = await transfersOf(payout.payout_id);
  expect(transfers).toEqual([
    {
      transfer_id: rows[0].transfer_id,
      status: 'intent',
      amount: NET_WEI.toString(),
      to_address: exchange.payinAddress,
    },
  ]);
  expect(await jobWithKeyExists(db.db, `transfer_send:${rows[0].transfer_id}`)).toBe(true);
  expect(await jobWithKeyExists(db.db, `payout_run:${payout.payout_id}`)).toBe(false);
}

describe('a payout_instant run opens the queued payouts with its own', () => {
  it('each once, in one commit: direct ones sent with their transfers, the others asked for their exchanges, the payments’ jobs removed', async () => {
    const directs = [await direct(), await direct()];
    const exchanges = [await viaExchange(), await viaExchange()];

    const counted = countingCalls(deps);
    await openQueuedPayouts(counted.deps);

    for (const p of directs) {
      const payout = await expectOpenedOnce(p);
      expect(payout).toMatchObject({ status: 'sent', wallet_address: p.wallet });
      const transfers = await transfersOf(payout.payout_id);
      expect(transfers).toEqual([
        {
          transfer_id: payout.transfer_id,
          status: 'intent',
          amount: NET_WEI.toString(),
          to_address: payout.wallet_address,
        },
      ]);
      expect(await jobWithKeyExists(db.db, `transfer_send:${payout.transfer_id}`)).toBe(true);
      expect(await jobWithKeyExists(db.db, `payout_run:${payout.payout_id}`)).toBe(false);
      expect(await jobWithKeyExists(db.db, `payout_instant:${p.paymentId}`)).toBe(false);
    }
    for (const p of exchanges) {
      const payout = await expectOpenedOnce(p);
      await expectExchangeRecorded(payout);
      expect(await jobWithKeyExists(db.db, `payout_instant:${p.paymentId}`)).toBe(false);
    }
    // One estimate and one create per exchange payout, as its run asks, and no list: it was never asked before.
    expect(counted.calls).toEqual({ estimate: 2, createExchange: 2, listExchanges: 0 });
    expect((await checkLedger(db.db)).ok).toBe(true);

    // A removed job that a worker had already taken runs anyway: it finds the payout opened and opens nothing more.
    for (const p of [...directs, ...exchanges]) {
      const before = await payoutsOf(p.paymentId);
      await openInstantPayout(deps, p.paymentId);
      const after = await expectOpenedOnce(p);
      expect(after.payout_id).toBe(before[0]?.payout_id);
      // Each keeps its one transfer: a direct one sent, an exchange one with its exchange.
      expect(await transfersOf(after.payout_id)).toHaveLength(1);
    }
    expect((await checkLedger(db.db)).ok).toBe(true);
  });

  it('two sets at once open each payment once between them', async () => {
    const payments = [await direct(), await viaExchange(), await direct(), await viaExchange(), await direct()];
    await Promise.all([openQueuedPayouts(deps), openQueuedPayouts(workerStageDeps(db, outside))]);
    for (const p of payments) {
      const payout = await expectOpenedOnce(p);
      expect(await transfersOf(payout.payout_id)).toHaveLength(1);
      if (payout.status !== 'sent') await expectExchangeRecorded(payout);
      expect(await jobWithKeyExists(db.db, `payout_instant:${p.paymentId}`)).toBe(false);
    }
    expect((await checkLedger(db.db)).ok).toBe(true);
  });

  it('a removed job a worker had taken, meeting its payout run by another, ends without an error it could not retry', async () => {
    const p = await viaExchange();
    // Above PAYOUT_APPROVAL_ABOVE_USD: opened pending, left to its run.
    await openQueuedPayouts(workerStageDeps(db, outside, { env: { PAYOUT_APPROVAL_ABOVE_USD: '1' } }));
    const payout = await expectOpenedOnce(p);
    const runner = await db.pool.connect();
    try {
      // Its payout_run job holds the payout's run lock meanwhile.
      await runner.query('select pg_advisory_lock(hashtext($1))', [`payout:${payout.payout_id}`]);
      await expect(openInstantPayout(deps, p.paymentId)).resolves.toBeUndefined();
    } finally {
      await runner.query('select pg_advisory_unlock(hashtext($1))', [`payout:${payout.payout_id}`]);
      runner.release();
    }
    expect((await expectOpenedOnce(p)).status).toBe('pending');
    expect(await jobWithKeyExists(db.db, `payout_run:${payout.payout_id}`)).toBe(true);
  });

  it('a direct payout its run would hold or ask approval for is opened pending, with its run queued to do that', async () => {
    const held = await direct();
    // The channel's wallet changed just now: under WALLET_CHANGE_HOLD its payouts wait.
    await saveChannel(web, held.channelId, {
      payoutStrategy: 'instant',
      payoutCurrency: 'eth',
      payoutNetwork: 'eth',
      walletAddress: freshWallet(),
    });
    await openQueuedPayouts(workerStageDeps(db, outside, { env: { WALLET_CHANGE_HOLD: '1h' } }));
    const heldPayout = await expectOpenedOnce(held);
    expect(heldPayout).toMatchObject({ status: 'pending', transfer_id: null });
    expect(await jobWithKeyExists(db.db, `payout_run:${heldPayout.payout_id}`)).toBe(true);

    const large = await direct();
    await openQueuedPayouts(workerStageDeps(db, outside, { env: { PAYOUT_APPROVAL_ABOVE_USD: '1' } }));
    const largePayout = await expectOpenedOnce(large);
    expect(largePayout).toMatchObject({ status: 'pending', transfer_id: null });
    expect(await jobWithKeyExists(db.db, `payout_run:${largePayout.payout_id}`)).toBe(true);
  });

  it('leaves to its own job a payment another transaction holds, and a job that failed before', async () => {
    const locked = await direct();
    const failedBefore = await direct();
    const taken = await direct();
    await db.pool.query(
      "update graphile_worker._private_jobs set attempts = 1, last_error = 'earlier failure' where key = $1",
      [`payout_instant:${failedBefore.paymentId}`],
    );
    const holder = await db.pool.connect();
    try {
      await holder.query('begin');
      await holder.query('select 1 from payments where payment_id = $1 for update', [locked.paymentId]);
      await openQueuedPayouts(deps);
      await holder.query('commit');
    } finally {
      holder.release();
    }

    await expectOpenedOnce(taken);
    for (const p of [locked, failedBefore]) {
      expect(await payoutsOf(p.paymentId)).toEqual([]);
      expect(await jobWithKeyExists(db.db, `payout_instant:${p.paymentId}`)).toBe(true);
      await openInstantPayout(deps, p.paymentId);
      expect((await expectOpenedOnce(p)).status).toBe('sent');
    }
    expect((await checkLedger(db.db)).ok).toBe(true);
  });

  it('leaves to its own job a payment its channel moved to threshold, which that job then skips', async () => {
    const switched = await direct();
    const plain = await direct();
    await saveChannel(web, switched.channelId, {
      payoutStrategy: 'threshold',
      thresholdUsd: '1000',
      payoutCurrency: 'usdt',
      payoutNetwork: 'trx',
      walletAddress: TRON_WALLET,
    });
    await openQueuedPayouts(deps);

    await expectOpenedOnce(plain);
    expect(await payoutsOf(switched.paymentId)).toEqual([]);
    expect(await jobWithKeyExists(db.db, `payout_instant:${switched.paymentId}`)).toBe(true);
    await openInstantPayout(deps, switched.paymentId);
    expect(await payoutsOf(switched.paymentId)).toEqual([]);
    const { rows } = await db.pool.query(
      'select payout_strategy, conversion_status from payments where payment_id = $1',
      [switched.paymentId],
    );
    expect(rows[0]).toEqual({ payout_strategy: 'threshold', conversion_status: 'pending' });
    expect(await balanceOf(switched.channelId, false)).toBe(NET_WEI);
    expect((await checkLedger(db.db)).ok).toBe(true);
  });

  it('a switch to threshold waiting on a payment whose payout a set is opening leaves the payment to that payout', async () => {
    const p = await direct();
    const account = accounts.channel(p.channelId, 'eth');
    const waitingOn = async (text: string): Promise<boolean> => {
      const { rows } = await db.pool.query<{ n: number }>(
        `select count(*)::int as n from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock' and query ilike $1`,
        [`%${text}%`],
      );
      return (rows[0]?.n ?? 0) > 0;
    };
    // The channel's balance row held: the set stops at its ledger group's end, the payment locked, its payout written.
    const blocker = await db.pool.connect();
    let opening: Promise<void> | undefined;
    try {
      await blocker.query('begin');
      await blocker.query('select 1 from ledger_accounts where code = $1 and asset = $2 for update', [
        account.code,
        account.asset,
      ]);
      opening = openQueuedPayouts(deps);
      await eventually('the set waits on the channel balance', () => waitingOn('payrail_post_journal'));
      const switching = web.request('PUT', `/api/channels/${p.channelId}`, {
        body: {
          payoutStrategy: 'threshold',
          thresholdUsd: '1000',
          payoutCurrency: 'usdt',
          payoutNetwork: 'trx',
          walletAddress: TRON_WALLET,
        },
      });
      await eventually('the switch waits on the payment', () => waitingOn('set payout_strategy'));
      await blocker.query('commit');
      expect((await switching).status).toBe(200);
    } finally {
      blocker.release();
      await opening;
    }

    const payout = await expectOpenedOnce(p);
    expect(payout.status).toBe('sent');
    const { rows } = await db.pool.query(
      'select payout_strategy, conversion_status, payout_id from payments where payment_id = $1',
      [p.paymentId],
    );
    expect(rows[0]).toEqual({ payout_strategy: 'instant', conversion_status: null, payout_id: payout.payout_id });
    expect((await checkLedger(db.db)).ok).toBe(true);
  });

  it('a set whose transaction fails keeps nothing; each payment is then opened by its own job', async () => {
    const a = await direct();
    const b = await viaExchange();
    // What b's channel holds is taken out first: the set's ledger group would leave that account below zero.
    const moveOut = async (sign: bigint) =>
      db.db.transaction().execute((trx) =>
        inLedgerGroup(trx, async () => {
          await postJournal(trx, {
            kind: 'test_hold',
            ref: `${b.channelId}:${sign > 0n ? 'out' : 'back'}`,
            entries: [
              { account: accounts.channel(b.channelId, 'eth'), amount: -sign * NET_WEI },
              { account: accounts.operator('eth'), amount: sign * NET_WEI },
            ],
          });
        }),
      );
    await moveOut(1n);
    const sink = logSink();
    await openQueuedPayouts(
      workerStageDeps(db, outside, { logger: createLogger({ level: 'info', destination: sink.stream }) }),
    );
    expect(sink.lines.filter((l) => l.event === 'payout_open_set_failed')).toHaveLength(1);
    for (const p of [a, b]) {
      expect(await payoutsOf(p.paymentId)).toEqual([]);
      expect(await jobWithKeyExists(db.db, `payout_instant:${p.paymentId}`)).toBe(true);
    }

    await moveOut(-1n);
    for (const p of [a, b]) await openInstantPayout(deps, p.paymentId);
    expect((await expectOpenedOnce(a)).status).toBe('sent');
    await expectOpenedOnce(b);
    expect((await checkLedger(db.db)).ok).toBe(true);
  });
});

describe('exchanges asked for by the set that opens their payouts', () => {
  /** The payout's state, its run's due time, and its transfers. */
  async function leftToItsRun(payoutId: string) {
    const { rows } = await db.pool.query(
      `select p.status, p.exchange_asked_at is not null as asked, j.run_at
       from payouts p left join graphile_worker.jobs j on j.key = 'payout_run:' || p.payout_id
       where p.payout_id = $1`,
      [payoutId],
    );
    return { ...rows[0], transfers: (await transfersOf(payoutId)).length };
  }

  async function runItsJob(payoutId: string, with_: StageDeps = deps): Promise<void> {
    const { rowCount } = await db.pool.query('delete from graphile_worker._private_jobs where key = $1', [
      `payout_run:${payoutId}`,
    ]);
    expect(rowCount).toBe(1);
    await runPayout(with_, payoutId);
  }

  it('ChangeNow down: the payout is left pending to its run, due later, which asks and records it once', async () => {
    const p = await viaExchange();
    await outside.sim.setFault('down');
    const opened = Date.now();
    try {
      await openQueuedPayouts(deps);
    } finally {
      await outside.sim.setFault('none');
    }
    const payout = await expectOpenedOnce(p);
    const left = await leftToItsRun(payout.payout_id);
    // The estimate failed: no intent recorded, nothing asked.
    expect(left).toMatchObject({ status: 'pending', asked: false, transfers: 0 });
    expect(left.run_at.getTime()).toBeGreaterThanOrEqual(opened + ASK_FALLBACK_MS - 1_000);
    expect(exchangesFor(payout.payout_id)).toEqual([]);

    const counted = countingCalls(deps);
    await runItsJob(payout.payout_id, counted.deps);
    await expectExchangeRecorded(payout);
    expect(counted.calls).toEqual({ estimate: 1, createExchange: 1, listExchanges: 0 });
    expect((await checkLedger(db.db)).ok).toBe(true);
  });

  it('the answer lost after ChangeNow created the exchange: the run finds that one and records it, asking for no other', async () => {
    const p = await viaExchange();
    const sink = logSink();
    await openQueuedPayouts(
      workerStageDeps(db, outside, {
        logger: createLogger({ level: 'info', destination: sink.stream }),
        crashPoint: (name) => {
          if (name === 'payout_after_exchange_created') throw new Error('answer lost');
        },
      }),
    );
    expect(sink.lines.filter((l) => l.event === 'payout_ask_left')).toHaveLength(1);
    const payout = await expectOpenedOnce(p);
    expect(await leftToItsRun(payout.payout_id)).toMatchObject({
      status: 'exchange_requested',
      asked: true,
      transfers: 0,
    });
    expect(exchangesFor(payout.payout_id)).toHaveLength(1);

    const counted = countingCalls(deps);
    await runItsJob(payout.payout_id, counted.deps);
    await expectExchangeRecorded(payout);
    expect(counted.calls).toEqual({ estimate: 0, createExchange: 0, listExchanges: 1 });
    expect((await checkLedger(db.db)).ok).toBe(true);
  });

  it('one call failing leaves the set no call under way: the others are recorded or left, each exchange once', async () => {
    const payments = [await viaExchange(), await viaExchange(), await viaExchange()];
    let creates = 0;
    const failing = workerStageDeps(db, outside);
    const cn = failing.exchange;
    // The first create fails at once; the other two are still under way at ChangeNow when it does.
    const slowOrFailing: StageDeps = {
      ...failing,
      exchange: {
        ...cn,
        createExchange: async (request) => {
          creates += 1;
          if (creates === 1) throw new Error('connection reset');
          await new Promise((r) => setTimeout(r, 300));
          return cn.createExchange(request);
        },
      },
    };
    await openQueuedPayouts(slowOrFailing);
    const payouts = await Promise.all(payments.map((p) => expectOpenedOnce(p)));
    const states = await Promise.all(payouts.map((p) => leftToItsRun(p.payout_id)));
    // Both others were answered and recorded before the run locks were released.
    expect(states.filter((s) => s.status === 'exchange_created')).toHaveLength(2);
    const left = payouts.find((_, i) => states[i]!.status === 'exchange_requested')!;
    expect(exchangesFor(left.payout_id)).toEqual([]);
    await runItsJob(left.payout_id);
    for (const payout of payouts) await expectExchangeRecorded(payout);
    expect((await checkLedger(db.db)).ok).toBe(true);
  });

  it("below ChangeNow's minimum: the estimate holds the payout as its run would, no intent, no exchange", async () => {
    const p = await viaExchange();
    outside.sim.setPair('eth/eth->usdt/trx', { ...DEFAULT_PAIRS['eth/eth->usdt/trx']!, minAmount: '1' });
    try {
      await openQueuedPayouts(deps);
    } finally {
      outside.sim.setPair('eth/eth->usdt/trx', DEFAULT_PAIRS['eth/eth->usdt/trx']!);
    }
    const payout = await expectOpenedOnce(p);
    const { rows } = await db.pool.query('select status, reason, exchange_asked_at from payouts where payout_id = $1', [
      payout.payout_id,
    ]);
    expect(rows[0]).toMatchObject({ status: 'held', exchange_asked_at: null });
    expect(rows[0].reason).toMatch(/^below ChangeNow's minimum for eth → usdt\/trx: /);
    expect(exchangesFor(payout.payout_id)).toEqual([]);
    expect(await transfersOf(payout.payout_id)).toEqual([]);
    // Its run waits for the hold's end.
    expect((await leftToItsRun(payout.payout_id)).run_at.getTime()).toBeGreaterThan(Date.now() + 30 * 60_000);
  });

  it('an answer unlike the request is never funded: the payout goes to review as its run would send it', async () => {
    const p = await viaExchange();
    outside.sim.failNextExchange('wrong_payout_address');
    const sink = logSink();
    await openQueuedPayouts(
      workerStageDeps(db, outside, { logger: createLogger({ level: 'info', destination: sink.stream }) }),
    );
    const payout = await expectOpenedOnce(p);
    const [exchange] = exchangesFor(payout.payout_id);
    const { rows } = await db.pool.query('select status, reason from payouts where payout_id = $1', [payout.payout_id]);
    expect(rows[0]).toEqual({
      status: 'needs_review',
      reason: `ChangeNow created exchange ${exchange!.id} unlike the request: payoutAddress ${exchange!.payoutAddress} (asked ${TRON_WALLET}); not funded`,
    });
    expect(await transfersOf(payout.payout_id)).toEqual([]);
    expect(sink.lines.filter((l) => l.alert === 'exchange_mismatch' && l.payoutId === payout.payout_id)).toHaveLength(
      1,
    );
    // Its run, due later, finds it in review and leaves it there.
    await runItsJob(payout.payout_id);
    expect(await leftToItsRun(payout.payout_id)).toMatchObject({ status: 'needs_review', transfers: 0 });
    expect((await checkLedger(db.db)).ok).toBe(true);
  });

  it('a run of the payout while the set asks is refused by its run lock; one exchange, recorded once', async () => {
    const p = await viaExchange();
    await outside.sim.setFault('slow', { slowMs: 1_500 });
    let opening: Promise<void>;
    try {
      opening = openQueuedPayouts(deps);
      let asking = '';
      await eventually('the payout opened, its exchange being asked for', async () => {
        const { rows } = await db.pool.query(
          "select payout_id from payouts where payment_id = $1 and status = 'exchange_requested'",
          [p.paymentId],
        );
        asking = rows[0]?.payout_id ?? '';
        return asking !== '';
      });
      await expect(runPayout(deps, asking)).rejects.toBeInstanceOf(RunLocked);
      await opening;
    } finally {
      await outside.sim.setFault('none');
    }
    const payout = await expectOpenedOnce(p);
    await expectExchangeRecorded(payout);
    expect((await checkLedger(db.db)).ok).toBe(true);
  });
});

describe('a payment whose instant payout ended', () => {
  it('switched to threshold and back to instant, stays with the conversion: it cannot have a second payout', async () => {
    const p = await direct();
    // Above PAYOUT_APPROVAL_ABOVE_USD it waits for approval; a person cancels it: its ETH is back on the channel.
    await db.pool.query('delete from graphile_worker._private_jobs where key = $1', [`payout_instant:${p.paymentId}`]);
    await openInstantPayout(workerStageDeps(db, outside, { env: { PAYOUT_APPROVAL_ABOVE_USD: '1' } }), p.paymentId);
    const [payout] = await payoutsOf(p.paymentId);
    expect(payout?.status).toBe('awaiting_approval');
    await applyPayoutAction(db.db, payout!.payout_id, 'cancel', 'alice', { pollDeadlineMs: 60_000 });
    expect(await balanceOf(p.channelId, false)).toBe(NET_WEI);

    const threshold = {
      payoutStrategy: 'threshold',
      thresholdUsd: '1000',
      payoutCurrency: 'usdt',
      payoutNetwork: 'trx',
    };
    await saveChannel(web, p.channelId, { ...threshold, walletAddress: TRON_WALLET });
    await saveChannel(web, p.channelId, {
      payoutStrategy: 'instant',
      payoutCurrency: 'eth',
      payoutNetwork: 'eth',
      walletAddress: p.wallet,
    });

    const { rows } = await db.pool.query(
      'select payout_strategy, conversion_status, payout_id from payments where payment_id = $1',
      [p.paymentId],
    );
    expect(rows[0]).toEqual({ payout_strategy: 'threshold', conversion_status: 'pending', payout_id: null });
    expect(await jobWithKeyExists(db.db, `payout_instant:${p.paymentId}`)).toBe(false);
    expect(await payoutsOf(p.paymentId)).toMatchObject([{ status: 'cancelled' }]);
    expect(await balanceOf(p.channelId, false)).toBe(NET_WEI);
    expect((await checkLedger(db.db)).ok).toBe(true);
  });
});
