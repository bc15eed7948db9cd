/**
 * Intake's one call (payrail_intake_ipn) against intake statement by statement, differentially: the same random IPN
 * sequences go through both on two databases holding the same channels, A taking the one call first (and the
 * stepwise path when it declines, as recordIpn does), B the stepwise path only. After every IPN both answers must be
 * equal; after every sequence every payment row, ledger journal with its entries, ledger balance, job, event and
 * alert of A must be those of B (ids and timestamps aside: a timestamp is compared as set or not). An IPN the one call
 * declines must leave A exactly as it was (row versions, events).
 *
 * The sequences mix what the one call must take (first IPNs for known channels, forward moves, repeats, copies,
 * parent ids, own and default fees, instant and threshold, with and without NOWPayments' check) with what it must
 * decline (unknown channels, partials under both policies, refunds, foreign and changed outcomes, conflicting order
 * ids, a channel registered or changed between two IPNs of a payment). NOWPayments' check may be switched on or off
 * within a sequence, so a finished payment left uncredited for the check is also met by a copy without it, which the
 * one call credits as a repeat. Jobs are compared with their key mode's effects (revision, run_at and updated_at
 * against created_at), so a job queued with another option on one path diverges.
 *
 * A failure prints fast-check's seed and path; replay with FUZZ_SEED=<seed> FUZZ_PATH=<path> (FUZZ_RUNS=<n>).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertChannel } from '../../src/channels/index.ts';
import { PAYMENT_STATUSES, readIpn, type Ipn, type IpnStatus } from '../../src/integrations/nowpayments/index.ts';
import { checkLedger } from '../../src/ledger/index.ts';
import { intakeMetricsText } from '../../src/metrics/intake.ts';
import { parsePercent } from '../../src/money/index.ts';
import type { IntakeResult, IntakeSettings } from '../../src/pipeline/index.ts';
import { createIntakeBatcher } from '../../src/pipeline/payment/intake-batch.ts';
import { intakeInOneCall, type OneCallResult } from '../../src/pipeline/payment/intake-one-call.ts';
import { createLogger } from '../../src/log.ts';
import { oneCallSettings, recordIpnStepwise } from '../../src/pipeline/payment/intake.ts';
import { createTestDatabase, fingerprint, type TestDatabase } from '../support/db.ts';
import { usdtChannelInput } from '../support/intake-inputs.ts';
import { signed } from '../support/ipn.ts';
import { fuzzParams } from './support.ts';

const SECRET = 'one-call-differential-secret';
const USER = '6271402111';

/** Registered in both databases before the first sequence; a sequence may change them (both alike). */
const CHANNELS = [
  { id: '-1026000000001', strategy: 'threshold', fee: null },
  { id: '-1026000000002', strategy: 'instant', fee: null },
  { id: '-1026000000003', strategy: 'threshold', fee: '2.50' },
  { id: '-1026000000004', strategy: 'instant', fee: '0' },
  { id: '-1026000000005', strategy: 'instant', fee: '99.999999' },
] as const;
/** Never registered. */
const UNKNOWN = '-1026000000999';

type ChannelRef = { kind: 'known'; index: number } | { kind: 'unknown' } | { kind: 'late' };

interface IpnStep {
  kind: 'ipn';
  payment: number;
  status: IpnStatus;
  outcome: string;
  outcomeCurrency: string;
  payAmount: string;
  actuallyPaid: string;
  priceAmount: string;
  /** Another user in the order id: the same payment id for another order. */
  otherOrder: boolean;
  /** none, another payment of the sequence, or an id of no payment. */
  parent: 'none' | 'sibling' | 'stranger';
  invoice: boolean;
}
/** The same body again, byte for byte: NOWPayments' retries. */
interface CopyStep {
  kind: 'copy';
  of: number;
}
/** A channel save between two IPNs: the late channel registered, or a known one's strategy or fee changed. */
interface SaveStep {
  kind: 'save';
  channel: number | 'late';
  strategy: 'instant' | 'threshold';
  fee: string | null;
}
/** NOWPAYMENTS_API_KEY set (the check's deadline) or unset from here on: a deployment changing its settings. */
interface CheckStep {
  kind: 'check';
  confirmMs: number | null;
}
/**
 * A worker picks up every queued job (and keeps it, as if still running): a key mode shows in what a later enqueue
 * with the same key does to a running job (left alone, or a new job queued beside it).
 */
interface PickStep {
  kind: 'pick';
}
type Step = IpnStep | CopyStep | SaveStep | CheckStep | PickStep;

interface Sequence {
  fee: string;
  partialPayments: 'credit' | 'review' | undefined;
  confirmMs: number | null;
  payments: ChannelRef[];
  steps: Step[];
}

/**
 * A finished IPN of the first payment recorded with NOWPayments' check, which left it uncredited; its check picked up
 * by a worker and the IPN again (payment_confirm queued against a running job: its key mode shows); then the check
 * switched off and the same IPN again: the one call credits it as a repeat, from the stored amounts.
 */
const lateCreditPrelude: Step[] = [
  { kind: 'check', confirmMs: 3_600_000 },
  {
    kind: 'ipn',
    payment: 0,
    status: 'finished',
    outcome: '0.00487',
    outcomeCurrency: 'eth',
    payAmount: '0.0049',
    actuallyPaid: '0.0049',
    priceAmount: '14.99',
    otherOrder: false,
    parent: 'none',
    invoice: false,
  },
  { kind: 'pick' },
  { kind: 'copy', of: 0 },
  { kind: 'check', confirmMs: null },
  { kind: 'copy', of: 0 },
];

const FEES = ['3', '0', '2.5', '99.999999', '0.000001', '4.000000'];
const AMOUNTS = [
  '0.00487',
  '0.004870',
  '0.00294',
  '0.005',
  '0',
  '1.000000000000000001',
  '123456789.123456789012345678',
];

const channelRef: fc.Arbitrary<ChannelRef> = fc.oneof(
  { arbitrary: fc.nat(CHANNELS.length - 1).map((index) => ({ kind: 'known' as const, index })), weight: 8 },
  { arbitrary: fc.constant({ kind: 'unknown' as const }), weight: 1 },
  { arbitrary: fc.constant({ kind: 'late' as const }), weight: 1 },
);

const ipnStep = (payments: number): fc.Arbitrary<IpnStep> =>
  fc.record({
    kind: fc.constant('ipn' as const),
    payment: fc.nat(payments - 1),
    status: fc.oneof(
      { arbitrary: fc.constantFrom('waiting', 'confirming', 'confirmed', 'sending', 'finished'), weight: 6 },
      { arbitrary: fc.constant('finished' as const), weight: 3 },
      // Every status payrail reads: both paths are payrail's, and each is checked against the other, not the list.
      { arbitrary: fc.constantFrom(...PAYMENT_STATUSES), weight: 2 },
    ),
    outcome: fc.oneof(
      { arbitrary: fc.constant('0.00487'), weight: 5 },
      { arbitrary: fc.constantFrom(...AMOUNTS), weight: 2 },
    ),
    outcomeCurrency: fc.oneof(
      { arbitrary: fc.constant('eth'), weight: 10 },
      { arbitrary: fc.constantFrom('ETH', 'usdt', 'btc'), weight: 1 },
    ),
    payAmount: fc.constantFrom('0.0049', '0.00490', '0.003'),
    actuallyPaid: fc.constantFrom('0', '0.0049', '0.003'),
    priceAmount: fc.constantFrom('14.99', '15'),
    otherOrder: fc.oneof({ arbitrary: fc.constant(false), weight: 15 }, { arbitrary: fc.constant(true), weight: 1 }),
    parent: fc.oneof(
      { arbitrary: fc.constant('none' as const), weight: 8 },
      { arbitrary: fc.constantFrom('sibling' as const, 'stranger' as const), weight: 1 },
    ),
    invoice: fc.boolean(),
  });

const sequence: fc.Arbitrary<Sequence> = fc
  .record({
    fee: fc.constantFrom(...FEES),
    partialPayments: fc.constantFrom('credit' as const, 'review' as const, undefined),
    confirmMs: fc.oneof({ arbitrary: fc.constant(null), weight: 2 }, fc.constantFrom(3_600_000, 1_234)),
    // Enough payments that IPNs arriving together hold runs of several first IPNs (migration 036).
    payments: fc.array(channelRef, { minLength: 1, maxLength: 6 }),
    lateCredit: fc.oneof({ arbitrary: fc.constant(false), weight: 3 }, { arbitrary: fc.constant(true), weight: 1 }),
  })
  .chain((s) =>
    fc
      .array(
        fc.oneof(
          { arbitrary: ipnStep(s.payments.length), weight: 10 },
          { arbitrary: fc.nat(20).map((of): CopyStep => ({ kind: 'copy', of })), weight: 3 },
          { arbitrary: fc.constant<PickStep>({ kind: 'pick' }), weight: 1 },
          {
            arbitrary: fc.record({
              kind: fc.constant('check' as const),
              confirmMs: fc.constantFrom(null, 3_600_000, 1_234),
            }),
            weight: 1,
          },
          {
            arbitrary: fc.record({
              kind: fc.constant('save' as const),
              channel: fc.oneof(fc.constant('late' as const), fc.nat(CHANNELS.length - 1)),
              strategy: fc.constantFrom('instant' as const, 'threshold' as const),
              fee: fc.constantFrom(null, '1', '2.50', '0'),
            }),
            weight: 1,
          },
        ),
        { minLength: 1, maxLength: 12 },
      )
      .map((steps): Sequence => {
        const { lateCredit, ...rest } = s;
        if (!lateCredit) return { ...rest, steps };
        // The prelude's payment is on a known channel, and its IPN is the sequence's first (its copy names it).
        const payments = [{ kind: 'known' as const, index: 0 }, ...rest.payments.slice(1)];
        return { ...rest, payments, steps: [...lateCreditPrelude, ...steps] };
      }),
  );

let a: TestDatabase;
let b: TestDatabase;
let nextPaymentId = 2_026_000_000_000n;
let nextLateChannel = 1_026_100_000_000n;

async function saveChannel(channelId: string, strategy: 'instant' | 'threshold', fee: string | null): Promise<void> {
  const input = usdtChannelInput(strategy, fee);
  for (const database of [a, b]) await upsertChannel(database.db, channelId, input, 'differential');
}

/** Everything intake may write, without ids and with every timestamp as set or not. */
async function contents(database: TestDatabase, mode: 'one by one' | 'together') {
  // A group's IPNs share their transaction's time, so a row it both wrote and changed looks untouched, and a job it
  // queued and then updated looks never updated: those comparisons hold only one by one.
  const query = async (text: string) =>
    (await database.pool.query(text)).rows
      .map(withoutTimes)
      .map((row) => (mode === 'together' ? omit(row, ['touched', 'never_updated', 'runs_as_created']) : row));
  return {
    payments: await query(`select p.*, p.updated_at <> p.created_at as touched,
        (p.confirm_deadline_at - p.confirm_requested_at)::text as confirm_window
      from payments p order by payment_id`),
    journals: await query(`select j.kind, j.ref,
        (select json_agg(json_build_object('code', a.code, 'asset', a.asset, 'amount', e.amount::text) order by e.id)
         from ledger_entries e join ledger_accounts a on a.id = e.account_id where e.journal_id = j.id) as entries
      from ledger_journals j order by j.id`),
    balances: await query(
      `select code, asset, allow_negative, balance::text from ledger_accounts order by code, asset`,
    ),
    jobs: await query(`select t.identifier, q.queue_name, j.payload::text as payload, j.priority, j.attempts,
        j.max_attempts, j.key, j.revision, j.flags, j.locked_at, j.is_available, j.last_error,
        j.run_at = j.created_at as runs_as_created, j.updated_at = j.created_at as never_updated
      from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
      left join graphile_worker._private_job_queues q on q.id = j.job_queue_id order by j.id`),
    events: await query(`select type, subject, data from events order by seq`),
    // The per-day sums statements read: a group adds its own at its end, a single call in its trigger.
    days: await query(`select channel_id, asset, day::text, kind, available::text, reserved::text, journals::text,
        gross::text, fee::text from ledger_channel_days order by channel_id, asset, day, kind`),
    alerts: await query(`select rule, subject, severity, message, details, resolved_at from alerts order by id`),
  };
}

function omit(row: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(row).filter(([k]) => !keys.includes(k)));
}

function withoutTimes(row: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, v instanceof Date ? 'set' : v]));
}

/** What the one call must not touch when it declines: every table's row versions, and the events. */
async function untouched(database: TestDatabase) {
  const events = await database.pool.query<{ n: number }>('select count(*)::int as n from events');
  return { ...(await fingerprint(database)), events: events.rows[0]?.n };
}

function body(step: IpnStep, paymentId: string, channelId: string, ids: readonly string[]): string {
  const parent =
    step.parent === 'sibling'
      ? ids.find((id) => id !== paymentId)
      : step.parent === 'stranger'
        ? String(BigInt(paymentId) + 1_000_000n)
        : undefined;
  return JSON.stringify({
    payment_id: Number(paymentId),
    ...(step.invoice && { invoice_id: '4522625843' }),
    ...(parent !== undefined && { parent_payment_id: parent }),
    payment_status: step.status,
    pay_address: '0x4a2B8f7cE21c0fE1d5C6b0B1e6A0aB3f9c8D7e21',
    price_amount: step.priceAmount,
    price_currency: 'usd',
    pay_amount: step.payAmount,
    actually_paid: step.actuallyPaid,
    pay_currency: 'eth',
    order_id: `PGP-${step.otherOrder ? '7000000001' : USER}|${channelId}`,
    outcome_amount: step.outcome,
    outcome_currency: step.outcomeCurrency,
  });
}

function signedIpn(raw: string): Ipn | null {
  const reading = readIpn(raw, signed(raw, SECRET).headers['x-nowpayments-sig'], SECRET);
  return reading.ok ? reading.ipn : null;
}

beforeAll(async () => {
  [a, b] = await Promise.all([createTestDatabase(), createTestDatabase()]);
  for (const channel of CHANNELS) await saveChannel(channel.id, channel.strategy, channel.fee);
});

afterAll(async () => {
  await a?.close();
  await b?.close();
});

const params = fuzzParams<[Sequence]>(60);
/** The defaults take well under a minute; FUZZ_RUNS beyond them gets the time they take (a second a run is ample). */
const TIMEOUT_MS = Math.max(60_000, (params.numRuns ?? 60) * 1_000);

interface Taken {
  recorded: number;
  credited: number;
  confirming: number;
  advanced: number;
  unchanged: number;
  declined: number;
  creditedAsRepeat: number;
}

function countTaken(taken: Taken, fast: OneCallResult): void {
  taken[fast.outcome]++;
  if (fast.credited) taken.credited++;
  if (fast.confirming) taken.confirming++;
  if (fast.outcome === 'unchanged' && fast.credited) taken.creditedAsRepeat++;
}

/** A's side, one IPN at a time: the one call, and the stepwise path when it declines, which must then find A as it was. */
async function oneByOne(ipn: Ipn, raw: string, settings: IntakeSettings, taken: Taken): Promise<void> {
  const before = await untouched(a);
  const fast = await intakeInOneCall(a.db, ipn, oneCallSettings(ipn, settings));
  let resultA: IntakeResult;
  if (fast) {
    resultA = { ...fast, paymentId: ipn.paymentId, reviewReason: null };
    countTaken(taken, fast);
  } else {
    expect(await untouched(a), `declined, yet wrote: ${raw}`).toEqual(before);
    taken.declined++;
    resultA = await recordIpnStepwise(a.db, ipn, settings);
  }
  const resultB = await recordIpnStepwise(b.db, ipn, settings);
  expect(resultA, raw).toEqual(resultB);
}

/**
 * A's side for IPNs that arrive together, as the web process takes them: all handed to a batcher at once (the first
 * goes alone, the rest as one group, payrail_intake_ipns), then the declined ones statement by statement in the order
 * received. A decline writes nothing, so A applied the taken IPNs in order and then the declined ones: B is given
 * them statement by statement in that order, and every answer must be B's.
 */
async function together(group: ReadonlyArray<{ ipn: Ipn; raw: string }>, settings: IntakeSettings, taken: Taken) {
  // One group at a time: groups in flight at once would apply in no set order, which B could not follow.
  const batcher = createIntakeBatcher(a.db, {
    logger: warnings,
    maxInFlight: 1,
    onGroup: (size) => size > 1 && groups.push(size),
  });
  const fast = await Promise.all(group.map(({ ipn }) => batcher.take(ipn, oneCallSettings(ipn, settings))));
  // A group applied one by one after it failed as a whole would hide the group's own fault.
  expect(warningLines.splice(0), 'no group failed as a whole').toEqual([]);
  const resultsA = new Map<number, IntakeResult>();
  fast.forEach((result, index) => {
    if (!result) return;
    countTaken(taken, result);
    resultsA.set(index, { ...result, paymentId: group[index]!.ipn.paymentId, reviewReason: null });
  });
  const declined = group.map((_, index) => index).filter((index) => !resultsA.has(index));
  for (const index of declined) {
    taken.declined++;
    resultsA.set(index, await recordIpnStepwise(a.db, group[index]!.ipn, settings));
  }
  for (const index of [...group.keys()].filter((i) => fast[i]).concat(declined)) {
    const resultB = await recordIpnStepwise(b.db, group[index]!.ipn, settings);
    expect(resultsA.get(index), group[index]!.raw).toEqual(resultB);
  }
}

/** What the batcher warns of (an intake group that failed as a whole). */
const warningLines: string[] = [];
const warnings = createLogger({
  level: 'warn',
  destination: { write: (line: string) => warningLines.push(line) } as unknown as NodeJS.WritableStream,
});
/** The sizes of the groups of more than one IPN sent together (mode 'together'). */
const groups: number[] = [];

describe.each(['one by one', 'together'] as const)('intake in one call, IPNs %s', (mode) => {
  it(
    'writes exactly what intake statement by statement writes, and nothing when it declines',
    async () => {
      const taken: Taken = {
        recorded: 0,
        credited: 0,
        confirming: 0,
        advanced: 0,
        unchanged: 0,
        declined: 0,
        // A finished, uncredited payment credited by a repeat (no forward move) without NOWPayments' check.
        creditedAsRepeat: 0,
      };
      await fc.assert(
        fc.asyncProperty(sequence, async (s) => {
          const settingsWith = (confirmMs: number | null): IntakeSettings => ({
            feePercent: parsePercent(s.fee),
            ...(s.partialPayments !== undefined && { partialPayments: s.partialPayments }),
            ...(confirmMs !== null && { confirm: { deadlineMs: confirmMs } }),
          });
          let settings = settingsWith(s.confirmMs);
          const lateChannel = `-${nextLateChannel++}`;
          const ids = s.payments.map(() => String(nextPaymentId++));
          const channelOf = (ref: ChannelRef) =>
            ref.kind === 'known' ? CHANNELS[ref.index]!.id : ref.kind === 'late' ? lateChannel : UNKNOWN;
          const sent: string[] = [];
          // IPNs between two other steps arrive together (mode 'together').
          let arriving: Array<{ ipn: Ipn; raw: string }> = [];
          const land = async () => {
            if (arriving.length > 0) await together(arriving, settings, taken);
            arriving = [];
          };
          for (const step of s.steps) {
            let raw: string | undefined;
            if (step.kind === 'save') {
              await land();
              await saveChannel(
                step.channel === 'late' ? lateChannel : CHANNELS[step.channel]!.id,
                step.strategy,
                step.fee,
              );
              continue;
            }
            if (step.kind === 'check') {
              await land();
              settings = settingsWith(step.confirmMs);
              continue;
            }
            if (step.kind === 'pick') {
              await land();
              for (const database of [a, b])
                await database.pool.query(
                  `update graphile_worker._private_jobs set locked_at = now(), locked_by = 'fuzz' where locked_at is null`,
                );
              continue;
            }
            if (step.kind === 'copy') raw = sent[step.of % Math.max(1, sent.length)];
            else raw = body(step, ids[step.payment]!, channelOf(s.payments[step.payment]!), ids);
            if (raw === undefined) continue;
            const ipn = signedIpn(raw);
            if (!ipn) continue; // refused at the edge (a zero finished amount, too many decimals): intake never sees it
            sent.push(raw);
            if (mode === 'together') arriving.push({ ipn, raw });
            else await oneByOne(ipn, raw, settings, taken);
          }
          await land();
          const [left, right] = await Promise.all([contents(a, mode), contents(b, mode)]);
          expect(left.payments).toEqual(right.payments);
          expect(left.journals).toEqual(right.journals);
          expect(left.balances).toEqual(right.balances);
          expect(left.jobs).toEqual(right.jobs);
          expect(left.events).toEqual(right.events);
          expect(left.days).toEqual(right.days);
          expect(left.alerts).toEqual(right.alerts);
        }),
        params,
      );
      // The comparison says something only if the one call took each of its cases, and declined others, often.
      const often = Math.ceil((params.numRuns ?? 60) / 10);
      for (const [what, n] of Object.entries(taken))
        expect(n, `${what}: ${JSON.stringify(taken)}`).toBeGreaterThanOrEqual(often);
      if (mode === 'together') expect(groups.length, 'groups of several IPNs').toBeGreaterThanOrEqual(often);
      for (const database of [a, b]) expect((await checkLedger(database.db)).ok).toBe(true);
      // Every decline carried a code the metric knows.
      expect(await intakeMetricsText()).toContain('payrail_intake_one_call_total{result="other"} 0');
    },
    TIMEOUT_MS,
  );
});
