/**
 * Intake's groups (payrail_intake_ipns, migration 028, through the web process's batcher): what the differential fuzz
 * suite (test/fuzz/intake-one-call.fuzz.test.ts, mode 'together') does not reach. A group that fails as a whole is
 * applied again one IPN at a time, so one bad IPN costs the others nothing; groups of several processes at once,
 * over the same channels and the platform's shared accounts, never deadlock; a channel save under way holds a
 * group back until it commits, then the group books the saved channel; a group's runs of first IPNs are written
 * together (migration 036), and one whose payment another transaction inserts meanwhile is applied as a later IPN.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertChannel } from '../../src/channels/index.ts';
import { lockChannelForSave } from '../../src/channels/lock.ts';
import { readIpn, type Ipn } from '../../src/integrations/nowpayments/index.ts';
import { checkLedger } from '../../src/ledger/index.ts';
import { createLogger } from '../../src/log.ts';
import { parsePercent } from '../../src/money/index.ts';
import type { IntakeSettings } from '../../src/pipeline/index.ts';
import { createIntakeBatcher } from '../../src/pipeline/payment/intake-batch.ts';
import { oneCallSettings } from '../../src/pipeline/payment/intake.ts';
import { intakeInOneCall } from '../../src/pipeline/payment/intake-one-call.ts';
import { openPool } from '../../src/db/index.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { finishedIpn, usdtChannelInput } from '../support/intake-inputs.ts';
import { ipnBody, signed } from '../support/ipn.ts';

const SECRET = 'group-secret';
const SETTINGS: IntakeSettings = { feePercent: parsePercent('3') };

const silent = createLogger({ level: 'silent' });
let db: TestDatabase;
let nextPaymentId = 2_028_000_000_000;
let nextChannel = 1_028_000_000_001;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.close();
});

async function channel(strategy: 'instant' | 'threshold'): Promise<string> {
  const id = `-${nextChannel++}`;
  await upsertChannel(db.db, id, usdtChannelInput(strategy), 'test');
  return id;
}

const finished = (channelId: string): Ipn => finishedIpn(nextPaymentId++, channelId, SECRET);

function batcherWithLog() {
  const sizes: number[] = [];
  const lines: string[] = [];
  const logger = createLogger({
    level: 'warn',
    destination: { write: (line: string) => lines.push(line) } as unknown as NodeJS.WritableStream,
  });
  const batcher = createIntakeBatcher(db.db, { logger, onGroup: (size) => sizes.push(size) });
  return { batcher, sizes, lines };
}

const take = (batcher: ReturnType<typeof createIntakeBatcher>, ipn: Ipn) =>
  batcher.take(ipn, oneCallSettings(ipn, SETTINGS));

/** The channels' per-day sums (migration 027) against their balances: a group adds both at its end. */
async function expectDaysMatchBalances(): Promise<void> {
  const { rows } = await db.pool.query<{ code: string; balance: string; days: string }>(
    `select a.code, a.balance::text as balance,
            coalesce((select sum(d.available) from ledger_channel_days d
                      where 'channel:' || d.channel_id = a.code and d.asset = a.asset), 0)::text as days
     from ledger_accounts a where a.code like 'channel:%' and a.code not like '%:payout'`,
  );
  expect(rows.length).toBeGreaterThan(0);
  for (const row of rows) expect(row.days, row.code).toBe(row.balance);
}

async function credited(paymentIds: readonly string[]): Promise<string[]> {
  const { rows } = await db.pool.query<{ payment_id: string }>(
    `select payment_id::text from payments where payment_id = any($1::numeric[]) and credited_at is not null
     order by payment_id`,
    [paymentIds],
  );
  return rows.map((row) => row.payment_id);
}

describe('intake groups', () => {
  it('leave only payment_received journals to their end: any other kind posted inside one is refused', async () => {
    const client = await db.pool.connect();
    try {
      await client.query('begin');
      await client.query(`select set_config('payrail.intake_group', txid_current()::text, true)`);
      await expect(
        client.query(`select payrail_post_journal('manual_adjustment', 'in-a-group', array['a:x', 'b:x'],
          array['usdt', 'usdt'], array[true, true], array[-1, 1]::numeric[])`),
      ).rejects.toThrow(/posted inside an intake group/);
    } finally {
      await client.query('rollback');
      client.release();
    }
    // A mark not of this transaction (a role's or a session's setting) is no group: the journal books its balances.
    const session = await db.pool.connect();
    try {
      await session.query(`select set_config('payrail.intake_group', '1', false)`);
      await session.query(`select payrail_post_journal('manual_adjustment', 'not-a-group', array['a:x', 'b:x'],
        array['usdt', 'usdt'], array[true, true], array[-1, 1]::numeric[])`);
      const { rows } = await session.query<{ balance: string }>(
        `select balance::text from ledger_accounts where code = 'b:x' and asset = 'usdt'`,
      );
      expect(rows[0]?.balance).toBe('1');
    } finally {
      await session.query('reset payrail.intake_group');
      session.release();
    }
  });

  it('apply a group that fails as a whole one IPN at a time: the bad IPN fails alone, the others are credited', async () => {
    const channelId = await channel('threshold');
    const ipns = Array.from({ length: 5 }, () => finished(channelId));
    const bad = ipns[2] as Ipn;
    // A fault in the middle of a group: the database refuses this one payment's row.
    await db.pool.query(`create function test_refuse_payment() returns trigger language plpgsql as $$
      begin raise exception 'payment % refused by the test', new.payment_id; end $$`);
    await db.pool.query(`create trigger test_refuse_payment before insert on payments for each row
      when (new.payment_id = ${bad.paymentId}) execute function test_refuse_payment()`);
    try {
      const { batcher, sizes, lines } = batcherWithLog();
      const answers = await Promise.allSettled(ipns.map((ipn) => take(batcher, ipn)));

      // The first two IPNs went alone (two groups in flight); the three that arrived meanwhile went together,
      // failed, and went one by one.
      expect(sizes).toEqual([1, 1, 3]);
      expect(lines.join('')).toContain('intake_group_split');
      answers.forEach((answer, index) => {
        if (index === 2)
          expect(answer).toMatchObject({
            status: 'rejected',
            reason: { message: expect.stringContaining('refused by the test') },
          });
        else
          expect(answer).toEqual({
            status: 'fulfilled',
            value: expect.objectContaining({ outcome: 'recorded', credited: 'threshold' }),
          });
      });
      const others = ipns.filter((ipn) => ipn !== bad).map((ipn) => ipn.paymentId);
      expect(await credited(ipns.map((ipn) => ipn.paymentId))).toEqual([...others].sort());
      const journals = await db.pool.query<{ n: number }>(
        `select count(*)::int as n from ledger_journals where kind = 'payment_received' and ref = any($1::text[])`,
        [ipns.map((ipn) => ipn.paymentId)],
      );
      expect(journals.rows[0]?.n).toBe(4);
    } finally {
      await db.pool.query('drop trigger test_refuse_payment on payments');
      await db.pool.query('drop function test_refuse_payment()');
    }
    expect((await checkLedger(db.db)).ok).toBe(true);
  });

  it('of several processes at once, over the same channels and shared accounts, all land, each once', async () => {
    const channels = [await channel('threshold'), await channel('instant'), await channel('threshold')];
    const processes = [batcherWithLog(), batcherWithLog(), batcherWithLog()];
    const sent: string[] = [];
    for (let round = 0; round < 4; round++) {
      const answers = await Promise.all(
        processes.flatMap(({ batcher }) =>
          Array.from({ length: 24 }, (_, i) => {
            const ipn = finished(channels[i % channels.length] as string);
            sent.push(ipn.paymentId);
            return take(batcher, ipn);
          }),
        ),
      );
      expect(answers.every((answer) => answer?.outcome === 'recorded')).toBe(true);
    }
    // A deadlock between the rows two transactions create (the first instant job's task, a channel's first
    // accounts) may break a group or a call once: it is applied again, one by one. Balance rows and per-day sums are
    // locked in one order, so the rest of the traffic goes through in groups.
    const splits = processes.flatMap(({ lines }) => lines.filter((line) => line.includes('intake_group_split')));
    const grouped = processes.flatMap(({ sizes }) => sizes.filter((size) => size > 1));
    expect(grouped.length, 'IPNs went together').toBeGreaterThan(3 * splits.length);
    expect(await credited(sent)).toHaveLength(sent.length);
    expect((await checkLedger(db.db)).ok).toBe(true);
    await expectDaysMatchBalances();
  });

  it('wait for a channel save under way, then book the channel as saved', async () => {
    const channelId = await channel('threshold');
    const other = await channel('threshold');
    let commitSave!: () => void;
    let saveLocked!: () => void;
    const locked = new Promise<void>((resolve) => (saveLocked = resolve));
    // A save holds the channel's credit lock exclusively until its commit (src/channels/lock.ts).
    const save = db.db.transaction().execute(async (trx) => {
      await lockChannelForSave(trx, channelId);
      await trx
        .updateTable('channels')
        .set({ payout_strategy: 'instant', threshold_usd_cents: null })
        .where('channel_id', '=', channelId)
        .execute();
      saveLocked();
      await new Promise<void>((resolve) => (commitSave = resolve));
    });
    await locked;

    const { batcher, sizes } = batcherWithLog();
    const ipns = [finished(other), finished(channelId), finished(other), finished(channelId)];
    const answers = ipns.map((ipn) => take(batcher, ipn));
    let settled = 0;
    for (const answer of answers) void answer.finally(() => settled++);
    // The first IPN (another channel) went alone and is answered; the second (the saved channel) went alone too and
    // waits, and so does the group of the last two, which holds one of the saved channel's IPNs.
    await expect(answers[0]).resolves.toMatchObject({ outcome: 'recorded', credited: 'threshold' });
    await sleep(300);
    expect(settled).toBe(1);
    expect(await credited(ipns.slice(1).map((ipn) => ipn.paymentId))).toHaveLength(0);

    commitSave();
    await save;
    const results = await Promise.all(answers);
    expect(sizes).toEqual([1, 1, 2]);
    expect(results.map((result) => result?.credited)).toEqual(['threshold', 'instant', 'threshold', 'instant']);
    expect((await checkLedger(db.db)).ok).toBe(true);
  });
});

describe("an intake group's first IPNs (migration 036)", () => {
  /** A batcher on a connection of its own that counts PL/pgSQL function calls (track_functions). */
  async function countingBatcher() {
    const counted = openPool(db.url, { max: 1, applicationName: 'payrail-test-counted', logger: silent });
    await counted.pool.query(`set track_functions = 'pl'`);
    const lines: string[] = [];
    const logger = createLogger({
      level: 'warn',
      destination: { write: (line: string) => lines.push(line) } as unknown as NodeJS.WritableStream,
    });
    const sizes: number[] = [];
    const batcher = createIntakeBatcher(counted.db, { logger, maxInFlight: 1, onGroup: (size) => sizes.push(size) });
    // The database's counts (every session tracking them), as this session flushes its own; taken before and after.
    const counts = async (): Promise<Record<string, number>> => {
      await counted.pool.query('select pg_stat_force_next_flush()');
      const { rows } = await counted.pool.query<{ funcname: string; calls: string }>(
        `select funcname, calls::text from pg_stat_user_functions
         where funcname in ('payrail_intake_ipn', 'payrail_intake_first_ipns')`,
      );
      return Object.fromEntries(rows.map((row) => [row.funcname, Number(row.calls)]));
    };
    const before = await counts();
    const calls = async (): Promise<Record<string, number>> => {
      const after = await counts();
      return Object.fromEntries(Object.entries(after).map(([name, n]) => [name, n - (before[name] ?? 0)]));
    };
    return { batcher, sizes, lines, calls, close: () => counted.close() };
  }

  it('are written together, a run at a time, and every other IPN with a call of its own', async () => {
    const threshold = await channel('threshold');
    const instant = await channel('instant');
    const counting = await countingBatcher();
    try {
      const [a, b, c] = [finished(threshold), finished(instant), finished(threshold)];
      const lead = finished(threshold);
      // The lead goes alone; the rest together: two first IPNs, a copy of the first of them, one more first IPN.
      const ipns = [lead, a, b, a, c];
      const answers = await Promise.all(ipns.map((ipn) => take(counting.batcher, ipn)));
      expect(counting.sizes).toEqual([1, 4]);
      expect(answers.map((answer) => [answer?.outcome, answer?.credited ?? null])).toEqual([
        ['recorded', 'threshold'],
        ['recorded', 'threshold'],
        ['recorded', 'instant'],
        ['unchanged', null],
        ['recorded', 'threshold'],
      ]);
      expect(counting.lines.join('')).not.toContain('intake_group_split');
      // Calls: the lead alone and the copy; the runs [a, b] and [c].
      expect(await counting.calls()).toEqual({ payrail_intake_ipn: 2, payrail_intake_first_ipns: 2 });

      expect(await credited(ipns.map((ipn) => ipn.paymentId))).toEqual(
        [lead, a, b, c].map((ipn) => ipn.paymentId).sort(),
      );
      const jobs = await db.pool.query<{ key: string }>(
        `select key from graphile_worker._private_jobs where key = $1`,
        [`payout_instant:${b.paymentId}`],
      );
      expect(jobs.rows).toHaveLength(1);
      const events = await db.pool.query<{ type: string; subject: string }>(
        `select type, subject from events where subject = any($1::text[]) order by seq`,
        [[a, b, c].map((ipn) => `payment:${ipn.paymentId}`)],
      );
      expect(events.rows.map((row) => `${row.type} ${row.subject}`)).toEqual(
        [a, b, c].flatMap((ipn) => [
          `payment.received payment:${ipn.paymentId}`,
          `payment.credited payment:${ipn.paymentId}`,
        ]),
      );
    } finally {
      await counting.close();
    }
    expect((await checkLedger(db.db)).ok).toBe(true);
    await expectDaysMatchBalances();
  });

  it.each([
    {
      other: 'waiting' as const,
      what: 'its waiting IPN (no credit, no balance row held)',
      raced: ['advanced', 'threshold'],
    },
    { other: 'finished' as const, what: 'the same finished IPN, credited', raced: ['unchanged', null] },
  ])(
    'leave a payment another transaction inserted meanwhile to its call, as a later IPN: $what',
    async ({ other, raced: racedAnswer }) => {
      const channelId = await channel('threshold');
      // The lead on a channel of its own: a credit not yet committed holds its channel's balance rows.
      const lead = finished(await channel('threshold'));
      const [first, raced, last] = [finished(channelId), finished(channelId), finished(channelId)];
      // Another process took the payment's IPN and has not committed yet: the group does not see the payment, and its
      // insert waits for that commit.
      let commitOther!: () => void;
      let otherWrote!: () => void;
      const wrote = new Promise<void>((resolve) => (otherWrote = resolve));
      const otherProcess = db.db.transaction().execute(async (trx) => {
        const ipn = other === 'waiting' ? waitingIpn(raced, channelId) : raced;
        await intakeInOneCall(trx, ipn, oneCallSettings(ipn, SETTINGS));
        otherWrote();
        await new Promise<void>((resolve) => (commitOther = resolve));
      });
      await wrote;
      const counting = await countingBatcher();
      try {
        const answers = [lead, first, raced, last].map((ipn) => take(counting.batcher, ipn));
        await expect(answers[0]).resolves.toMatchObject({ outcome: 'recorded' });
        await waitForLockWait('payrail-test-counted');
        commitOther();
        await otherProcess;
        const results = await Promise.all(answers);
        expect(counting.sizes).toEqual([1, 3]);
        expect(results.map((result) => [result?.outcome, result?.credited ?? null])).toEqual([
          ['recorded', 'threshold'],
          ['recorded', 'threshold'],
          racedAnswer,
          ['recorded', 'threshold'],
        ]);
        expect(counting.lines.join('')).not.toContain('intake_group_split');
        // The lead alone, and the raced IPN after its run [first, raced, last] met the other payment.
        expect(await counting.calls()).toEqual({ payrail_intake_ipn: 2, payrail_intake_first_ipns: 1 });
        const booked = await db.pool.query<{ journals: number; events: number }>(
          `select (select count(*)::int from ledger_journals where kind = 'payment_received' and ref = $1) as journals,
                  (select count(*)::int from events where type = 'payment.credited' and subject = 'payment:' || $1)
                    as events`,
          [raced.paymentId],
        );
        expect(booked.rows[0]).toEqual({ journals: 1, events: 1 });
      } finally {
        commitOther?.();
        await otherProcess.catch(() => undefined);
        await counting.close();
      }
      expect(await credited([lead, first, raced, last].map((ipn) => ipn.paymentId))).toHaveLength(4);
      expect((await checkLedger(db.db)).ok).toBe(true);
      await expectDaysMatchBalances();
    },
  );
});

/** The waiting IPN of the payment `ipn` reports finished. */
function waitingIpn(ipn: Ipn, channelId: string): Ipn {
  const { raw, headers } = signed(
    ipnBody({ payment_id: Number(ipn.paymentId), order_id: `PGP-6271402111|${channelId}`, payment_status: 'waiting' }),
    SECRET,
  );
  const reading = readIpn(raw, headers['x-nowpayments-sig'], SECRET);
  if (!reading.ok) throw new Error(reading.error);
  return reading.ipn;
}

/** Until a session of this application name waits for a lock. */
async function waitForLockWait(applicationName: string): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const { rows } = await db.pool.query<{ n: number }>(
      `select count(*)::int as n from pg_stat_activity where application_name = $1 and wait_event_type = 'Lock'`,
      [applicationName],
    );
    if ((rows[0]?.n ?? 0) > 0) return;
    await sleep(25);
  }
  throw new Error(`no session of ${applicationName} waited for a lock`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
