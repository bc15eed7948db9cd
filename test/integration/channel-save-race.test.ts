/**
 * A channel save (upsertChannel, then rehomeChannelPayments in its transaction, as PUT /api/channels/:id runs them)
 * racing a crediting IPN: the payment ends on the channel's new strategy, whichever of the two began first. The
 * channel's credit lock (src/channels/lock.ts) is what makes it so: a credit arriving during a save waits for the
 * save's commit and reads the new version; a save arriving during a credit waits for the credit's commit and moves it.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channelLockKey, upsertChannel } from '../../src/channels/index.ts';
import { checkLedger } from '../../src/ledger/index.ts';
import { parsePercent } from '../../src/money/index.ts';
import {
  recordIpn,
  rehomeChannelPayments,
  type IntakeResult,
  type IntakeSettings,
  type Rehomed,
} from '../../src/pipeline/index.ts';
import { recordIpnStepwise } from '../../src/pipeline/payment/intake.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { finishedIpn, usdtChannelInput } from '../support/intake-inputs.ts';

const SECRET = 'save-race-secret';
const SETTINGS: IntakeSettings = { feePercent: parsePercent('3') };

type Strategy = 'instant' | 'threshold';

let db: TestDatabase;
let nextPaymentId = 2_026_700_000_000;
let nextChannel = 1_026_700_000_001;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.close();
});

/** The save as the admin route makes it: the upsert, then the rehome in its transaction; `beforeRehome` pauses it. */
async function save(channelId: string, strategy: Strategy, beforeRehome?: () => Promise<void>): Promise<Rehomed> {
  let rehomed: Rehomed = { toConversion: [], toInstant: [] };
  await upsertChannel(db.db, channelId, usdtChannelInput(strategy), 'test', async (trx) => {
    await beforeRehome?.();
    rehomed = await rehomeChannelPayments(trx, channelId);
  });
  return rehomed;
}

const PATHS = {
  'the one call': recordIpn,
  'the stepwise path': recordIpnStepwise,
} as const;

async function finished(channelId: string, path: keyof typeof PATHS): Promise<{ id: string; result: IntakeResult }> {
  const id = String(nextPaymentId++);
  return { id, result: await PATHS[path](db.db, finishedIpn(Number(id), channelId, SECRET), SETTINGS) };
}

/** Sessions of this database waiting for a lock (a heavyweight one: advisory, row, transaction). */
async function waitingForLocks(): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
  );
  return rows[0]!.n;
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Where the payment stands: its strategy, its conversion, its payout job and payouts. */
async function standing(id: string) {
  const { rows } = await db.pool.query(
    `select p.payout_strategy, p.conversion_status,
       (select count(*)::int from graphile_worker._private_jobs where key = 'payout_instant:' || $1::text) as payout_jobs,
       (select count(*)::int from payouts o where o.payment_id = p.payment_id) as payouts
     from payments p where p.payment_id = $1::numeric and p.credited_at is not null`,
    [id],
  );
  return rows[0];
}

function expectOn(row: any, strategy: Strategy, payoutJobs: number) {
  expect(row).toEqual({
    payout_strategy: strategy,
    conversion_status: strategy === 'threshold' ? 'pending' : null,
    payout_jobs: payoutJobs,
    payouts: 0,
  });
}

const SWITCHES: ReadonlyArray<[Strategy, Strategy]> = [
  ['threshold', 'instant'],
  ['instant', 'threshold'],
];

describe('the channel credit lock', () => {
  it('has the same key in Node and in SQL', async () => {
    for (const channelId of ['-1003296084379', '42', '-1', "it's"]) {
      const node = channelLockKey(channelId).compile(db.db);
      const { rows } = await db.pool.query<{ node: string; sql: string }>(
        `select (${node.sql})::text as node, payrail_channel_lock_key($2)::text as sql`,
        [...node.parameters, channelId],
      );
      expect(rows[0]!.sql).toBe(rows[0]!.node);
    }
  });
});

describe('a crediting IPN during a save, between its upsert and its rehome', () => {
  for (const [from, to] of SWITCHES)
    it(`waits for the save and books the new strategy: ${from} to ${to}`, async () => {
      const channelId = `-${nextChannel++}`;
      await save(channelId, from);
      let reached!: () => void;
      const atRehome = new Promise<void>((resolve) => (reached = resolve));
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const saving = save(channelId, to, async () => {
        reached();
        await gate;
      });
      await atRehome;
      let settled = false;
      const credit = finished(channelId, 'the one call').finally(() => {
        settled = true;
      });
      await until('the IPN waits for the save', async () => (await waitingForLocks()) === 1);
      expect(settled).toBe(false);
      release();
      const [rehomed, { id, result }] = await Promise.all([saving, credit]);
      expect(rehomed).toEqual({ toConversion: [], toInstant: [] });
      expect(result).toMatchObject({ outcome: 'recorded', credited: to });
      expectOn(await standing(id), to, to === 'instant' ? 1 : 0);
    });
});

describe('a save during a crediting IPN that read the channel before it', () => {
  for (const path of Object.keys(PATHS) as Array<keyof typeof PATHS>)
    for (const [from, to] of SWITCHES)
      it(`waits for the credit and moves it (${path}): ${from} to ${to}`, async () => {
        const channelId = `-${nextChannel++}`;
        await save(channelId, from);
        // A first credit opens the channel's ledger account, whose row lock then holds the next credit open after
        // its read of the channel, at its journal.
        await finished(channelId, path);
        const blocker = new pg.Client({ connectionString: db.url });
        await blocker.connect();
        let credit: Promise<{ id: string; result: IntakeResult }> | undefined;
        let saving: Promise<Rehomed> | undefined;
        try {
          await blocker.query('begin');
          await blocker.query(`select 1 from ledger_accounts where code = $1 for update`, [`channel:${channelId}`]);
          credit = finished(channelId, path);
          await until('the credit waits at its journal', async () => (await waitingForLocks()) === 1);
          let saved = false;
          saving = save(channelId, to).finally(() => {
            saved = true;
          });
          // The save waits for the credit under way: it can move it only once it is committed.
          await until('the save waits for the credit', async () => saved || (await waitingForLocks()) === 2);
          expect(saved).toBe(false);
          await blocker.query('commit');
        } finally {
          await blocker.end();
        }
        const [{ id, result }, rehomed] = await Promise.all([credit, saving]);
        expect(result).toMatchObject({ outcome: 'recorded', credited: from });
        // Now instant: paid by its own job. Now threshold: converted; the instant job the credit queued skips it.
        expect(to === 'instant' ? rehomed.toInstant : rehomed.toConversion).toContain(id);
        expectOn(await standing(id), to, 1);
        expect((await checkLedger(db.db)).ok).toBe(true);
      });
});
