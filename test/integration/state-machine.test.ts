/**
 * The state machines of the four aggregates a person acts on (conversion, payout, transfer, payment in review),
 * enumerated on real parts: PostgreSQL, payrail's admin API over HTTP, anvil for what a conversion's resolve reads.
 *
 * Each table below lists the states (and, where it decides what an action does, the state of the transfer beneath,
 * the way a payout pays, or where a payment's money is), the actions each allows and the state each leads to; an
 * action not listed for a state is refused. For every row a fresh one is seeded as the pipeline leaves it
 * (test/support/seed.ts) and every action of its aggregate is tried on it: an allowed one answers 2xx, moves it to the
 * state the table names, is audited, and leaves the ledger checked out and every payment and reservation consistent
 * with its owner; a refused one answers 409 and writes nothing (a fingerprint of every table).
 *
 * Then, no dead ends: every row that is not final is left by an action of its table or by the pipeline itself (a job
 * the reconciler queues again when it is lost, the transfer beneath, or a payment's own next step), and where that
 * leads is a row of the table that is final or left in turn. The transfer's outcomes (mined, or never executed) are
 * driven through the owners' own hooks, as the worker's transfer steps call them.
 *
 * The payout, transfer and payment tables are those of docs/architecture.md; the conversion table is the source of
 * its conversion states.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConversionState, PayoutStatus, TransferRequestedAction, TransferStatus } from '../../src/db/index.ts';
import { createNowPaymentsApi } from '../../src/integrations/nowpayments/index.ts';
import type { TaskName } from '../../src/jobs/index.ts';
import { checkLedger } from '../../src/ledger/index.ts';
import { createLogger } from '../../src/log.ts';
import { formatUnits, parsePercent } from '../../src/money/index.ts';
import { confirmPayment, DEADLINES, type StageDeps } from '../../src/pipeline/index.ts';
import { conversionTransferHooks } from '../../src/pipeline/conversion/run.ts';
import { isDirect, openInstantPayout, payoutTransferHooks } from '../../src/pipeline/payout/run.ts';
import { settleIn } from '../../src/pipeline/conversion/settle.ts';
import { failIn, settleMined } from '../../src/pipeline/transfer/settle.ts';
import type { TransferHooksByPurpose } from '../../src/pipeline/transfer/index.ts';
import { rpc, startNowPaymentsSimulator, type NowPaymentsSimulator } from '../../src/simulators/index.ts';
import { usdtThreshold } from '../support/conversions.ts';
import { createTestDatabase, fingerprint, type TestDatabase } from '../support/db.ts';
import { fixtures, ipnBody, signed } from '../support/ipn.ts';
import { startOutside, type Outside } from '../support/outside.ts';
import { instantBody } from '../support/payout-state.ts';
import { IPN_SECRET, runJobByHand, startTestPayrail, workerStageDeps, type TestPayrail } from '../support/payrail.ts';
import { freshWallet, saveChannel } from '../support/payouts.ts';
import { seeder, type Seeded, type Seeder, type SeedTransfer } from '../support/seed.ts';

// --- the tables -----------------------------------------------------------------------------------------------------

/** What moves a state on when no person acts: a stage's job (queued again by the reconciler when it is lost), or the transfer beneath. */
type Exit = 'final' | { job: TaskName } | 'its transfer';

const CONVERSION_ACTIONS = ['retry', 'resolve received', 'resolve returned', 'resolve lost'] as const;
type ConversionAction = (typeof CONVERSION_ACTIONS)[number];

/** A row of the table of an aggregate with a transfer beneath it (a conversion or a payout). */
interface OwnerRow<State extends string, Action extends string> {
  readonly state: State;
  /** The state of the transfer it made (null: none was made). */
  readonly transfer: SeedTransfer | null;
  /** The actions allowed, and the state each leads to; any other is 409. */
  readonly actions: Partial<Record<Action, State>>;
  readonly exit?: Exit;
}

/** The transfer beneath is its ETH transfer to ChangeNow's payin address; the actions POST /api/conversions/:id/retry|resolve. */
interface ConversionRow extends OwnerRow<ConversionState, ConversionAction> {
  readonly meaning: string;
  readonly eth: string;
}

/**
 * Conversion states, with the transfer beneath where it decides what an action does, and what a person may do in
 * each. The table of conversion states in docs/architecture.md is written from this one.
 */
const CONVERSION_TABLE: readonly ConversionRow[] = [
  {
    state: 'pending',
    transfer: null,
    meaning: 'pending payments batched; no exchange asked for yet',
    eth: 'on the host wallet',
    actions: {},
    exit: { job: 'conversion_exchange' },
  },
  {
    state: 'exchange_requested',
    transfer: null,
    meaning: 'exchange asked for at ChangeNow, its answer not recorded yet',
    eth: 'on the host wallet',
    actions: {},
    exit: { job: 'conversion_exchange' },
  },
  {
    state: 'exchange_created',
    transfer: 'intent',
    meaning: 'exchange recorded; the ETH transfer to its payin address not signed yet',
    eth: 'on the host wallet',
    actions: {},
    exit: 'its transfer',
  },
  {
    state: 'exchange_created',
    transfer: 'broadcast',
    meaning: 'exchange recorded; its transfer signed and possibly on the network',
    eth: 'leaving',
    actions: {},
    exit: 'its transfer',
  },
  {
    state: 'exchange_created',
    transfer: 'needs_review',
    meaning: 'exchange recorded; its transfer waits for a person',
    eth: 'leaving, or on the host wallet',
    actions: {},
    exit: 'its transfer',
  },
  {
    state: 'sent',
    transfer: 'confirmed',
    meaning: 'transfer mined: ChangeNow is polled until the exchange ends',
    eth: 'at ChangeNow',
    actions: {},
    exit: { job: 'conversion_poll' },
  },
  {
    state: 'completed',
    transfer: 'confirmed',
    meaning: "the USDT the chain shows arrived is split among the payments' channels",
    eth: 'gone (USDT on the channels)',
    actions: {},
    exit: 'final',
  },
  {
    state: 'failed',
    transfer: null,
    meaning:
      "its ETH never left, came back (a shortfall booked as ChangeNow's cost), or was lost (the platform's); payments back to pending",
    eth: 'back on the channels',
    actions: {},
    exit: 'final',
  },
  {
    state: 'failed',
    transfer: 'failed',
    meaning: 'its transfer failed: the ETH never left; payments back to pending',
    eth: 'back on the channels',
    actions: {},
    exit: 'final',
  },
  {
    state: 'needs_review',
    transfer: null,
    meaning: 'a person decides (reason); no transfer was made',
    eth: 'on the host wallet',
    actions: { retry: 'failed' },
  },
  {
    state: 'needs_review',
    transfer: 'failed',
    meaning: 'a person decides; its transfer failed, the ETH never left',
    eth: 'on the host wallet',
    actions: { retry: 'failed' },
  },
  {
    state: 'needs_review',
    transfer: 'intent',
    meaning: 'a person decides; its transfer is not signed yet: act on the transfer',
    eth: 'on the host wallet',
    actions: {},
    exit: 'its transfer',
  },
  {
    state: 'needs_review',
    transfer: 'broadcast',
    meaning: 'a person decides; its transfer is on its way: retry and resolve wait for it',
    eth: 'leaving',
    actions: {},
    exit: 'its transfer',
  },
  {
    state: 'needs_review',
    transfer: 'needs_review',
    meaning: 'a person decides; its transfer is in review too: act on the transfer',
    eth: 'leaving, or on the host wallet',
    actions: {},
    exit: 'its transfer',
  },
  {
    state: 'needs_review',
    transfer: 'confirmed',
    meaning: 'a person decides; its ETH left (the exchange failed, expired, refunded short, …)',
    eth: 'at ChangeNow',
    actions: { retry: 'sent', 'resolve received': 'completed', 'resolve returned': 'failed', 'resolve lost': 'failed' },
  },
];

const PAYOUT_ACTIONS = ['retry', 'cancel', 'approve', 'resolve paid', 'resolve returned'] as const;
type PayoutAction = (typeof PAYOUT_ACTIONS)[number];

interface PayoutRow extends OwnerRow<PayoutStatus, PayoutAction> {
  /** direct: the held asset straight to the owner's wallet; exchange: through ChangeNow. */
  readonly route: 'direct' | 'exchange';
}

/** The payout states of docs/architecture.md (POST /api/payouts/:id/retry|cancel|approve|resolve), with the transfer beneath and the route where they decide. */
const PAYOUT_TABLE: readonly PayoutRow[] = [
  {
    state: 'pending',
    transfer: null,
    route: 'direct',
    actions: { retry: 'pending', cancel: 'cancelled' },
    exit: { job: 'payout_run' },
  },
  {
    state: 'held',
    transfer: null,
    route: 'direct',
    actions: { retry: 'pending', cancel: 'cancelled' },
    exit: { job: 'payout_run' },
  },
  { state: 'awaiting_approval', transfer: null, route: 'direct', actions: { cancel: 'cancelled', approve: 'pending' } },
  {
    state: 'exchange_requested',
    transfer: null,
    route: 'exchange',
    actions: { retry: 'exchange_requested', cancel: 'cancelled' },
    exit: { job: 'payout_run' },
  },
  {
    state: 'exchange_created',
    transfer: 'intent',
    route: 'exchange',
    actions: { retry: 'exchange_created' },
    exit: 'its transfer',
  },
  {
    state: 'exchange_created',
    transfer: 'broadcast',
    route: 'exchange',
    actions: { retry: 'exchange_created' },
    exit: 'its transfer',
  },
  { state: 'exchange_created', transfer: 'needs_review', route: 'exchange', actions: {}, exit: 'its transfer' },
  { state: 'sent', transfer: 'confirmed', route: 'exchange', actions: { retry: 'sent' }, exit: { job: 'payout_poll' } },
  { state: 'sent', transfer: 'broadcast', route: 'direct', actions: { retry: 'sent' }, exit: 'its transfer' },
  { state: 'sent', transfer: 'needs_review', route: 'direct', actions: {}, exit: 'its transfer' },
  { state: 'completed', transfer: null, route: 'direct', actions: {}, exit: 'final' },
  { state: 'failed', transfer: null, route: 'direct', actions: {}, exit: 'final' },
  { state: 'cancelled', transfer: null, route: 'direct', actions: {}, exit: 'final' },
  { state: 'needs_review', transfer: null, route: 'direct', actions: { retry: 'pending', cancel: 'cancelled' } },
  {
    state: 'needs_review',
    transfer: null,
    route: 'exchange',
    actions: { retry: 'exchange_requested', cancel: 'cancelled' },
  },
  { state: 'needs_review', transfer: 'failed', route: 'exchange', actions: { cancel: 'cancelled' } },
  { state: 'needs_review', transfer: 'intent', route: 'exchange', actions: {}, exit: 'its transfer' },
  { state: 'needs_review', transfer: 'broadcast', route: 'exchange', actions: {}, exit: 'its transfer' },
  { state: 'needs_review', transfer: 'needs_review', route: 'exchange', actions: {}, exit: 'its transfer' },
  {
    state: 'needs_review',
    transfer: 'confirmed',
    route: 'direct',
    actions: { 'resolve paid': 'completed', 'resolve returned': 'failed' },
  },
  {
    state: 'needs_review',
    transfer: 'confirmed',
    route: 'exchange',
    actions: { retry: 'sent', 'resolve paid': 'completed', 'resolve returned': 'failed' },
  },
];

const TRANSFER_ACTIONS = ['bump', 'cancel', 'resolve mined', 'resolve never_sent', 'retry'] as const;
type TransferAction = (typeof TRANSFER_ACTIONS)[number];
/** What the API records for the worker to carry out (202): the transfer keeps its state until the worker has. */
const REQUESTED: Record<Exclude<TransferAction, 'retry'>, TransferRequestedAction> = {
  bump: 'bump',
  cancel: 'cancel',
  'resolve mined': 'resolve_mined',
  'resolve never_sent': 'resolve_never_sent',
};

interface TransferRow {
  readonly state: SeedTransfer;
  /** 'requested': 202, the request recorded for the worker, the state unchanged; a state: 200, moved there. */
  readonly actions: Partial<Record<TransferAction, TransferStatus | 'requested'>>;
  readonly exit?: Exit;
}

/** The transfer states of docs/architecture.md (POST /api/transfers/:id/bump|cancel|resolve|retry), with the conditions the API checks. */
const TRANSFER_TABLE: readonly TransferRow[] = [
  { state: 'intent', actions: { cancel: 'requested' }, exit: { job: 'transfer_send' } },
  { state: 'signed', actions: {}, exit: { job: 'transfer_send' } },
  {
    state: 'broadcast',
    actions: {
      bump: 'requested',
      cancel: 'requested',
      'resolve mined': 'requested',
      'resolve never_sent': 'requested',
    },
    exit: { job: 'transfer_confirm' },
  },
  {
    state: 'mined',
    actions: { 'resolve mined': 'requested', 'resolve never_sent': 'requested' },
    exit: { job: 'transfer_confirm' },
  },
  { state: 'requested', actions: {}, exit: { job: 'transfer_confirm' } },
  {
    state: 'needs_review',
    actions: {
      cancel: 'requested',
      'resolve mined': 'requested',
      'resolve never_sent': 'requested',
      retry: 'broadcast',
    },
  },
  // With no nonce the chain cannot show it unused: never_sent is refused up front (the worker would refuse it too).
  { state: 'unsigned_review', actions: { 'resolve mined': 'requested', retry: 'intent' } },
  { state: 'confirmed', actions: {}, exit: 'final' },
  { state: 'failed', actions: {}, exit: 'final' },
];

const PAYMENT_ACTIONS = ['credit', 'ignore', 'reverse', 'recheck'] as const;
type PaymentAction = (typeof PAYMENT_ACTIONS)[number];

interface PaymentRow {
  readonly reason: string;
  /** Where its money is, where that decides. */
  readonly where: string;
  /** A payment kept for review this way: its id. */
  seed(): Promise<string>;
  /** The actions allowed; each takes the payment out of review. */
  readonly actions: readonly PaymentAction[];
  /** How it leaves review when no action of the table does: by itself, or by opening an action of the table. */
  readonly exit?: {
    readonly by: string;
    readonly run: (paymentId: string) => Promise<void>;
    readonly opens?: PaymentAction;
  };
  /** The actions are asked of a payrail that confirms credits with NOWPayments (NOWPAYMENTS_API_KEY set). */
  readonly confirming?: true;
  /** Actions besides credit that credit an uncredited payment (what it waited for while in review). */
  readonly credits?: readonly PaymentAction[];
}

/** The review reasons of docs/architecture.md (POST /api/payments/:id/credit|ignore|reverse|recheck), with where the money is where it decides. */
const PAYMENT_TABLE: readonly PaymentRow[] = [
  {
    reason: 'unknown_channel',
    where: 'not credited',
    seed: () => kept(ipn(unregisteredChannel())),
    actions: [],
    exit: { by: 'registering its channel (PUT /api/channels/:id)', run: registerChannelOf },
  },
  {
    reason: 'conflicting_order_id',
    where: 'credited, on the channel',
    seed: async () => conflicting(await credited(THRESHOLD)),
    actions: ['ignore'],
  },
  {
    reason: 'conflicting_order_id',
    where: 'not credited (waiting)',
    seed: async () => conflicting(await waiting(THRESHOLD)),
    actions: ['ignore'],
  },
  // Its first order's finished IPN came while it was in review: nothing else would ever credit it.
  {
    reason: 'conflicting_order_id',
    where: 'not credited, its first order finished while in review',
    seed: async () => finishedInReview(await conflicting(await waiting(THRESHOLD))),
    actions: ['ignore'],
    credits: ['ignore'],
  },
  {
    reason: 'partially_paid',
    where: 'not credited',
    seed: () =>
      kept({ ...structuredClone(fixtures.partially_paid), payment_id: nextPaymentId++, order_id: orderOf(THRESHOLD) }),
    actions: ['credit', 'ignore'],
  },
  {
    reason: 'foreign_outcome_currency',
    where: 'not credited',
    seed: () => kept(ipn(THRESHOLD, { outcome_currency: 'usdttrc20' })),
    actions: ['ignore'],
  },
  {
    reason: 'outcome_amount_changed',
    where: 'credited, on the channel',
    seed: async () => restated(await credited(THRESHOLD), { outcome_amount: 0.00486 }),
    actions: ['ignore'],
  },
  {
    reason: 'top_up',
    where: 'credited as partial, on the channel',
    seed: async () =>
      restated(await creditedPartial(THRESHOLD), {
        payment_status: 'finished',
        actually_paid: 0.00495,
        outcome_amount: 0.00487,
      }),
    actions: ['credit', 'ignore'],
  },
  {
    reason: 'refunded_after_credit',
    where: 'on the channel',
    seed: async () => refunded(await credited(THRESHOLD)),
    actions: ['reverse'],
  },
  // Where its money may still come back (a conversion or payout not ended), neither reverse nor ignore yet: waiting, or
  // a cancel of a payout that sent nothing, decides which.
  {
    reason: 'refunded_after_credit',
    where: 'in a conversion that has not ended (sent)',
    seed: () => refundedIn(seed.conversion('sent', { transfer: 'confirmed' })),
    actions: [],
    exit: {
      by: 'its conversion settling (as conversion_poll settles a finished exchange)',
      run: settleConversionOf,
      opens: 'ignore',
    },
  },
  {
    reason: 'refunded_after_credit',
    where: 'in a conversion in review, its ETH never sent',
    seed: () => refundedIn(seed.conversion('needs_review')),
    actions: [],
    exit: {
      by: "a person's retry of its conversion (its ETH back on the channel)",
      run: retryConversionOf,
      opens: 'reverse',
    },
  },
  {
    reason: 'refunded_after_credit',
    where: 'in a payout that sent nothing (pending)',
    seed: () => refundedIn(seed.payout('pending')),
    actions: [],
    exit: {
      by: "a person's cancel of its payout (its ETH back on the channel)",
      run: cancelPayoutOf,
      opens: 'reverse',
    },
  },
  // A row for each place a refunded payment's money can be: each allows other actions, so each is a case of its own.
  {
    reason: 'refunded_after_credit',
    where: 'converted (its conversion completed)',
    seed: () => refundedIn(seed.conversion('completed')),
    actions: ['ignore'],
  },
  {
    reason: 'refunded_after_credit',
    where: 'paid out (its payout completed)',
    seed: () => refundedIn(seed.payout('completed')),
    actions: ['ignore'],
  },
  {
    reason: 'refunded_after_credit',
    where: 'its payout failed (its ETH back on the channel)',
    seed: () => refundedIn(seed.payout('failed')),
    actions: ['reverse'],
  },
  {
    reason: 'refunded_after_credit',
    where: 'its payout cancelled (its ETH back on the channel)',
    seed: () => refundedIn(seed.payout('cancelled')),
    actions: ['reverse'],
  },
  {
    reason: 'refunded_after_credit',
    where: 'instant, its payout job not run yet',
    seed: async () => refunded(await credited(INSTANT)),
    actions: [],
    exit: { by: 'its payout_instant job, which skips a payment in review', run: runInstantPayoutJob, opens: 'reverse' },
  },
  {
    reason: 'payment_unconfirmed',
    where: 'not credited',
    seed: unconfirmed,
    actions: ['ignore', 'recheck'],
    confirming: true,
  },
  {
    reason: 'payment_unconfirmed',
    where: 'not credited, NOWPAYMENTS_API_KEY unset since: nothing to ask',
    seed: unconfirmed,
    actions: ['ignore'],
  },
  // Its payout job ran while it was in review, and skipped it: the way out must queue what pays it.
  {
    reason: 'conflicting_order_id',
    where: 'instant, its payout job run while in review',
    seed: async () => jobRunInReview(await conflicting(await credited(INSTANT))),
    actions: ['ignore'],
  },
  {
    reason: 'outcome_amount_changed',
    where: 'instant, its payout job run while in review',
    seed: async () => jobRunInReview(await restated(await credited(INSTANT), { outcome_amount: 0.00486 })),
    actions: ['ignore'],
  },
  {
    reason: 'top_up',
    where: 'instant, credited as partial, its payout job run while in review',
    seed: async () =>
      jobRunInReview(
        await restated(await creditedPartial(INSTANT), {
          payment_status: 'finished',
          actually_paid: 0.00495,
          outcome_amount: 0.00487,
        }),
      ),
    actions: ['credit', 'ignore'],
  },
];

// --- the world ------------------------------------------------------------------------------------------------------

const WALLET = freshWallet();
const INSTANT = '-1008800000001';
const THRESHOLD = '-1008800000002';
const NOWPAYMENTS_KEY = 'test-nowpayments-api-key-0123456789';
let nextPaymentId = 8_800_000_000;
let nextChannel = 1_008_800_000_100;

let outside: Outside;
let db: TestDatabase;
let payrail: TestPayrail;
/** The same database, asked by a payrail that confirms credits with NOWPayments (web only, as payrail). */
let confirming: TestPayrail;
let nowpayments: NowPaymentsSimulator;
let seed: Seeder;
let deps: StageDeps;
let hooks: TransferHooksByPurpose;
/** Every IPN body sent, by payment id: a later copy (refund, restatement) starts from it. */
const bodies = new Map<string, Record<string, unknown>>();

const orderOf = (channelId: string) => `PGP-1|${channelId}`;
const ipn = (channelId: string, overrides: Record<string, unknown> = {}) =>
  ipnBody({ payment_id: nextPaymentId++, order_id: orderOf(channelId), ...overrides });

async function send(body: Record<string, unknown>, to: TestPayrail = payrail) {
  bodies.set(String(body.payment_id), body);
  const { raw, headers } = signed(body, IPN_SECRET);
  return to.request('POST', '/webhooks/nowpayments', { raw, headers, token: null });
}

/** A finished IPN, credited at once (no worker runs here: an instant payment's payout job stays queued). */
async function credited(channelId: string): Promise<string> {
  const body = ipn(channelId);
  expect((await send(body)).status).toBe(200);
  return String(body.payment_id);
}

/** A partially_paid IPN kept for review and credited by hand. */
async function creditedPartial(channelId: string): Promise<string> {
  const id = await kept({
    ...structuredClone(fixtures.partially_paid),
    payment_id: nextPaymentId++,
    order_id: orderOf(channelId),
  });
  expect((await payrail.request('POST', `/api/payments/${id}/credit`)).status).toBe(200);
  return id;
}

async function waiting(channelId: string): Promise<string> {
  const body = {
    ...structuredClone(fixtures.sequence.find((b) => b.payment_status === 'waiting') as Record<string, unknown>),
    payment_id: nextPaymentId++,
    order_id: orderOf(channelId),
  };
  expect((await send(body)).status).toBe(200);
  return String(body.payment_id);
}

/** An IPN kept for review on arrival (202). */
async function kept(body: Record<string, unknown>): Promise<string> {
  const res = await send(body);
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return String(body.payment_id);
}

/** A later copy of the payment's IPN with `changes`, kept for review (202). */
async function restated(paymentId: string, changes: Record<string, unknown>): Promise<string> {
  return kept({ ...(bodies.get(paymentId) as Record<string, unknown>), ...changes });
}

/** NOWPayments refunded the payment after its credit: a later copy of its IPN says so, kept for review. */
const refunded = (paymentId: string) => restated(paymentId, { payment_status: 'refunded' });

/** The payment of a conversion or payout seeded in some state, refunded. */
const refundedIn = async (seeded: Promise<Seeded>) => refunded((await seeded).paymentId);

/** The payment's first order finishes while it is in review (kept, not credited). */
async function finishedInReview(paymentId: string): Promise<string> {
  const first = bodies.get(paymentId) as Record<string, unknown>;
  await kept(ipnBody({ payment_id: first.payment_id, order_id: orderOf(THRESHOLD) }));
  return paymentId;
}

/** The same payment id for another order. */
const conflicting = (paymentId: string) => restated(paymentId, { order_id: `PGP-2|${THRESHOLD}` });

const unregisteredChannel = () => `-${nextChannel++}`;

async function registerChannelOf(paymentId: string): Promise<void> {
  const channelId = String(bodies.get(paymentId)?.order_id).split('|')[1] as string;
  await saveChannel(payrail, channelId, usdtThreshold(WALLET, '1000000'));
}

async function runInstantPayoutJob(paymentId: string): Promise<void> {
  await runJobByHand(db, `payout_instant:${paymentId}`, () => openInstantPayout(deps, paymentId));
}

async function conversionIdOf(paymentId: string): Promise<string> {
  const { rows } = await db.pool.query('select conversion_id from payments where payment_id = $1', [paymentId]);
  return rows[0].conversion_id;
}

/** The payment's conversion settles as conversion_poll settles a finished exchange (its USDT to the channel). */
async function settleConversionOf(paymentId: string): Promise<void> {
  const conversionId = await conversionIdOf(paymentId);
  const settled = await db.db
    .transaction()
    .execute((trx) => settleIn(trx, conversionId, 1_000n, `0x${'ee'.repeat(32)}`, 'sent'));
  expect(settled).toBe(true);
}

/** A person retries the payment's conversion in review (POST /api/conversions/:id/retry). */
async function retryConversionOf(paymentId: string): Promise<void> {
  const conversionId = await conversionIdOf(paymentId);
  expect((await payrail.request('POST', `/api/conversions/${conversionId}/retry`)).status).toBe(200);
}

/** A person cancels the payment's payout (POST /api/payouts/:id/cancel). */
async function cancelPayoutOf(paymentId: string): Promise<void> {
  const {
    rows: [p],
  } = await db.pool.query('select payout_id from payouts where payment_id = $1', [paymentId]);
  expect((await payrail.request('POST', `/api/payouts/${p.payout_id}/cancel`)).status).toBe(200);
}

/** The payment's payout job runs while it is in review (and skips it). */
async function jobRunInReview(paymentId: string): Promise<string> {
  await runInstantPayoutJob(paymentId);
  expect(
    await db.db.selectFrom('payouts').select('payout_id').where('payment_id', '=', paymentId).execute(),
    'no payout opened in review',
  ).toEqual([]);
  return paymentId;
}

/**
 * A credited instant payment out of review whose credit stands is paid: its payout opened, or the job that opens it
 * queued (and, run, it opens the payout for its net). Else its ETH would stay on the channel's balance for good.
 */
async function expectInstantPaid(paymentId: string, label: string): Promise<void> {
  const p = await db.db
    .selectFrom('payments')
    .selectAll()
    .where('payment_id', '=', paymentId)
    .executeTakeFirstOrThrow();
  if (
    p.credited_at === null ||
    p.reversed_at !== null ||
    p.payout_strategy !== 'instant' ||
    p.review_reason !== null ||
    p.status === 'refunded'
  )
    return;
  const opened = () =>
    db.db.selectFrom('payouts').select(['payout_id', 'amount']).where('payment_id', '=', paymentId).execute();
  if ((await opened()).length > 0) return;
  const { rows } = await db.pool.query('select count(*)::int as n from graphile_worker._private_jobs where key = $1', [
    `payout_instant:${paymentId}`,
  ]);
  expect(rows[0].n, `${label}: credited instant payment ${paymentId} has no payout and no payout job`).toBe(1);
  await runInstantPayoutJob(paymentId);
  expect(
    (await opened()).map((r) => r.amount),
    label,
  ).toEqual([String(BigInt(p.net_amount as string) - BigInt(p.net_moved_wei))]);
}

/**
 * A finished IPN taken by a payrail that confirms credits with NOWPayments, whose API knows no such payment: the
 * payment_confirm job (run by hand) keeps it for review.
 */
async function unconfirmed(): Promise<string> {
  const body = ipn(THRESHOLD);
  expect((await send(body, confirming)).status).toBe(200);
  expect(await runConfirmJob(String(body.payment_id))).toBe('review');
  return String(body.payment_id);
}

/** The payment_confirm job as a worker with NOWPAYMENTS_API_KEY runs it. */
function runConfirmJob(paymentId: string) {
  const api = createNowPaymentsApi({ baseUrl: nowpayments.url, apiKey: NOWPAYMENTS_KEY, timeoutMs: 5_000 });
  const intake = {
    feePercent: parsePercent('3'),
    partialPayments: 'review' as const,
    confirm: { deadlineMs: 3_600_000 },
  };
  return runJobByHand(db, `payment_confirm:${paymentId}`, () =>
    confirmPayment(
      { db: db.db, logger: createLogger({ level: 'silent' }), notifyAlerts: false, api, intake },
      paymentId,
    ),
  );
}

beforeAll(async () => {
  outside = await startOutside();
  db = await createTestDatabase();
  nowpayments = await startNowPaymentsSimulator({ port: 0, apiKey: NOWPAYMENTS_KEY });
  // Web only: no worker runs the jobs actions queue, so every row stays in the state an action put it in.
  payrail = await startTestPayrail(db, { roles: { web: true, worker: false }, env: outside.env });
  confirming = await startTestPayrail(db, {
    roles: { web: true, worker: false },
    env: { ...outside.env, NOWPAYMENTS_API_KEY: NOWPAYMENTS_KEY, NOWPAYMENTS_API_URL: nowpayments.url },
  });
  await saveChannel(payrail, INSTANT, instantBody('eth', 'eth', WALLET));
  await saveChannel(payrail, THRESHOLD, usdtThreshold(WALLET, '1000000'));
  seed = seeder({ db, pay: credited, instantChannel: INSTANT, thresholdChannel: THRESHOLD, wallet: WALLET });
  deps = workerStageDeps(db, outside);
  hooks = { conversion: conversionTransferHooks(deps), payout: payoutTransferHooks(deps) };
});

afterAll(async () => {
  await confirming?.stop();
  await payrail?.stop();
  await nowpayments?.stop();
  await db?.close();
  await outside?.stop();
});

// --- checks ---------------------------------------------------------------------------------------------------------

/**
 * What every allowed action leaves behind: the ledger checks out; each payment is where its conversion says (converting
 * while a stage works on it, failed while it is in review, completed with it, and out of it, pending, once it failed);
 * each channel's payout account holds exactly what its open payouts reserve.
 */
async function expectConsistent(context: string): Promise<void> {
  expect((await checkLedger(db.db)).problems, context).toEqual([]);
  const { rows: strays } = await db.pool.query(`
    select p.payment_id::text, p.conversion_status, c.conversion_id, c.status as conversion
    from payments p left join conversions c on c.conversion_id = p.conversion_id
    where (p.conversion_id is null) <> (p.conversion_status is null or p.conversion_status = 'pending')
       or (c.status in ('pending', 'exchange_requested', 'exchange_created', 'sent') and p.conversion_status <> 'converting')
       or (c.status = 'needs_review' and p.conversion_status <> 'failed')
       or (c.status = 'completed' and p.conversion_status <> 'completed')
       or c.status = 'failed'`);
  expect(strays, `payments out of step with their conversion: ${context}`).toEqual([]);
  const { rows: reservations } = await db.pool.query(`
    with open as (select 'channel:' || channel_id || ':payout' as code, asset, sum(amount) as reserved from payouts
                  where status not in ('completed', 'failed', 'cancelled') group by 1, 2)
    select coalesce(a.code, o.code) as code, a.balance::text as balance, o.reserved::text as reserved
    from (select code, asset, balance from ledger_accounts where code like 'channel:%:payout') a
    full join open o on o.code = a.code and o.asset = a.asset
    where coalesce(a.balance, 0) <> coalesce(o.reserved, 0)`);
  expect(reservations, `payout accounts unlike their open payouts: ${context}`).toEqual([]);
}

async function lastAudit(): Promise<{ action: string; subject: string }> {
  const { rows } = await db.pool.query('select action, subject from audit_log order by id desc limit 1');
  return rows[0];
}

/**
 * One action over HTTP: refused (409, nothing written), or answered `status` with the action audited and everything
 * consistent afterwards. Returns the answer.
 */
async function attempt(
  path: string,
  body: unknown,
  expected: { status: 200 | 202; audit: string; subject: string } | null,
  context: string,
  to: TestPayrail = payrail,
) {
  const before = await fingerprint(db);
  const res = await to.request('POST', path, body === undefined ? {} : { body });
  const said = `${context} → ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`;
  if (!expected) {
    expect(res.status, said).toBe(409);
    expect(await fingerprint(db), `a refused action wrote something: ${said}`).toEqual(before);
    return res;
  }
  expect(res.status, said).toBe(expected.status);
  expect(await lastAudit(), said).toEqual({ action: expected.audit, subject: expected.subject });
  await expectConsistent(said);
  return res;
}

async function journals(kind: string, ref: string): Promise<number> {
  const { rows } = await db.pool.query('select count(*)::int as n from ledger_journals where kind = $1 and ref = $2', [
    kind,
    ref,
  ]);
  return rows[0].n;
}

/** The hash of the last transaction mined (anvil mines each at once). */
async function lastMinedHash(): Promise<string> {
  return ((await rpc(outside.chain.rpcUrl, 'eth_getBlockByNumber', ['latest', false])) as { transactions: string[] })
    .transactions[0] as string;
}

/** A resolve's body, with what the chain must show for it sent first (USDT to the host wallet, or ETH back). */
async function conversionResolution(action: ConversionAction, conversionId: string): Promise<Record<string, string>> {
  if (action === 'resolve lost') return { outcome: 'lost', note: 'exchange closed, support unreachable' };
  if (action === 'resolve received') {
    const units = 13_000_000n;
    await outside.changenowReturn(outside.hostAddress, units);
    return { outcome: 'received', amount: formatUnits(units, 6), txHash: await lastMinedHash() };
  }
  const { rows } = await db.pool.query('select amount_wei::text as wei from conversions where conversion_id = $1', [
    conversionId,
  ]);
  // 1 % short: ChangeNow kept its fee, booked as its cost.
  return {
    outcome: 'returned',
    txHash: await outside.nowpayments.send(outside.hostAddress, (BigInt(rows[0].wei) * 99n) / 100n),
  };
}

/** Half a payout's ETH back on the host wallet, and the resolve that books it with its transaction. */
async function payoutReturned(wei: bigint): Promise<Record<string, string>> {
  return {
    outcome: 'returned',
    amount: formatUnits(wei, 18),
    txHash: await outside.nowpayments.send(outside.hostAddress, wei),
  };
}

const conversionLabel = (r: ConversionRow) => `${r.state}${r.transfer ? ` (transfer ${r.transfer})` : ''}`;
const payoutLabel = (r: PayoutRow) => `${r.state} ${r.route}${r.transfer ? ` (transfer ${r.transfer})` : ''}`;
const transferOption = (transfer: SeedTransfer | null) => (transfer ? { transfer } : {});
const seedPayout = (r: Pick<PayoutRow, 'state' | 'transfer' | 'route'>) =>
  seed.payout(r.state, { ...transferOption(r.transfer), exchange: r.route === 'exchange' });

/** A transfer in `state`, under a payout in the state the pipeline leaves it in meanwhile. */
function seedTransfer(state: SeedTransfer) {
  const owner: PayoutStatus = state === 'confirmed' ? 'sent' : state === 'failed' ? 'failed' : 'exchange_created';
  return seed.payout(owner, { transfer: state, exchange: true });
}

// --- every action in every state ------------------------------------------------------------------------------------

describe('conversions: every action in every state', () => {
  it.each(CONVERSION_TABLE.map((r) => [conversionLabel(r), r] as const))(
    '%s',
    async (_, row) => {
      for (const action of CONVERSION_ACTIONS) {
        const { id } = await seed.conversion(row.state, transferOption(row.transfer));
        const to = row.actions[action];
        const body = action === 'retry' ? undefined : await conversionResolution(action, id);
        const res = await attempt(
          `/api/conversions/${id}/${action === 'retry' ? 'retry' : 'resolve'}`,
          body,
          to ? { status: 200, audit: `conversion.${action === 'retry' ? 'retry' : 'resolve'}`, subject: id } : null,
          `${conversionLabel(row)}: ${action}`,
        );
        if (!to) continue;
        expect(res.body.status, action).toBe(to);
        const { rows } = await db.pool.query('select status from conversions where conversion_id = $1', [id]);
        expect(rows[0].status, action).toBe(to);
        expect(await journals('conversion_settled', id), action).toBe(to === 'completed' ? 1 : 0);
        expect(await journals('conversion_lost', id), action).toBe(action === 'resolve lost' ? 1 : 0);
      }
    },
    120_000,
  );
});

describe('payouts: every action in every state', () => {
  it.each(PAYOUT_TABLE.map((r) => [payoutLabel(r), r] as const))(
    '%s',
    async (_, row) => {
      for (const action of PAYOUT_ACTIONS) {
        const { id } = await seedPayout(row);
        const {
          rows: [payout],
        } = await db.pool.query('select amount::text from payouts where payout_id = $1', [id]);
        const body =
          action === 'resolve paid'
            ? { outcome: 'paid', note: 'paid by hand' }
            : action === 'resolve returned'
              ? await payoutReturned(BigInt(payout.amount) / 2n)
              : undefined;
        const verb = action.startsWith('resolve') ? 'resolve' : action;
        const to = row.actions[action];
        const res = await attempt(
          `/api/payouts/${id}/${verb}`,
          body,
          to ? { status: 200, audit: `payout.${verb}`, subject: id } : null,
          `${payoutLabel(row)}: ${action}`,
        );
        if (!to) continue;
        expect(res.body.status, action).toBe(to);
        const { rows } = await db.pool.query('select status from payouts where payout_id = $1', [id]);
        expect(rows[0].status, action).toBe(to);
        expect(await journals('payout_returned', id), action).toBe(to === 'failed' || to === 'cancelled' ? 1 : 0);
        expect(await journals('payout_completed', id), action).toBe(to === 'completed' ? 1 : 0);
      }
    },
    120_000,
  );
});

describe('transfers: every action in every state', () => {
  it.each(TRANSFER_TABLE.map((r) => [r.state, r] as const))(
    '%s',
    async (_, row) => {
      for (const action of TRANSFER_ACTIONS) {
        const { transferId } = await seedTransfer(row.state);
        const id = transferId as string;
        const body =
          action === 'resolve mined'
            ? { outcome: 'mined', txHash: `0x${'ab'.repeat(32)}` }
            : action === 'resolve never_sent'
              ? { outcome: 'never_sent' }
              : undefined;
        const verb = action.startsWith('resolve') ? 'resolve' : action;
        const to = row.actions[action];
        const {
          rows: [before],
        } = await db.pool.query('select status from chain_transfers where transfer_id = $1', [id]);
        const res = await attempt(
          `/api/transfers/${id}/${verb}`,
          body,
          to ? { status: to === 'requested' ? 202 : 200, audit: `transfer.${verb}`, subject: id } : null,
          `${row.state}: ${action}`,
        );
        if (!to) continue;
        const status = to === 'requested' ? before.status : to;
        const requested = to === 'requested' ? REQUESTED[action as Exclude<TransferAction, 'retry'>] : null;
        expect({ status: res.body.status, requested: res.body.requested?.action ?? null }, action).toEqual({
          status,
          requested,
        });
        const { rows } = await db.pool.query(
          'select status, requested_action from chain_transfers where transfer_id = $1',
          [id],
        );
        expect(rows[0], action).toEqual({ status, requested_action: requested });
      }
    },
    120_000,
  );
});

describe('payments in review: every action for every reason', () => {
  it.each(PAYMENT_TABLE.map((r) => [`${r.reason} (${r.where})`, r] as const))(
    '%s',
    async (_, row) => {
      for (const action of PAYMENT_ACTIONS) {
        const id = await row.seed();
        const {
          rows: [held],
        } = await db.pool.query('select review_reason, credited_at from payments where payment_id = $1', [id]);
        expect(held.review_reason.split(':')[0], 'seeded for its reason').toBe(row.reason);
        const allowed = row.actions.includes(action);
        const res = await attempt(
          `/api/payments/${id}/${action}`,
          { note: 'looked at by a person' },
          allowed ? { status: 200, audit: `payment.${action}`, subject: id } : null,
          `${row.reason} (${row.where}): ${action}`,
          row.confirming ? confirming : payrail,
        );
        if (!allowed) continue;
        // A recheck decides nothing itself: NOWPayments' answer to the check it queues does.
        expect(res.body).toMatchObject({ reviewReason: null, reviewAction: action === 'recheck' ? null : { action } });
        const {
          rows: [after],
        } = await db.pool.query('select review_reason, credited_at, reversed_at from payments where payment_id = $1', [
          id,
        ]);
        expect(after.review_reason).toBeNull();
        expect(after.credited_at !== null, 'credited').toBe(
          action === 'credit' || (row.credits ?? []).includes(action) || held.credited_at !== null,
        );
        expect(after.reversed_at !== null, 'reversed').toBe(action === 'reverse');
        await expectInstantPaid(id, `${row.reason} (${row.where}): ${action}`);
        // NOWPayments knows no such payment: its check, run again, keeps it for review, still uncredited.
        if (action === 'recheck') expect(await runConfirmJob(id)).toBe('review');
      }
    },
    120_000,
  );
});

// --- no dead ends ---------------------------------------------------------------------------------------------------

/** A transfer's state as the tables name it. */
function seedStateOf(
  t:
    | { status: TransferStatus; block_number: string | null; requested_action: string | null; nonce: string | null }
    | undefined,
): SeedTransfer | null {
  if (!t) return null;
  if (t.status === 'broadcast' && t.requested_action !== null) return 'requested';
  if (t.status === 'broadcast' && t.block_number !== null) return 'mined';
  if (t.status === 'needs_review' && t.nonce === null) return 'unsigned_review';
  return t.status;
}

async function transferOf(purpose: 'conversion' | 'payout', ref: string) {
  return db.db
    .selectFrom('chain_transfers')
    .selectAll()
    .where('purpose', '=', purpose)
    .where('ref', '=', ref)
    .executeTakeFirst();
}

/** The row of `table` for `state` and what lies beneath it (`beneath`); a final state's row whatever lies beneath. */
function rowFor<R extends OwnerRow<string, string>>(table: readonly R[], state: string, beneath: (row: R) => boolean) {
  return (
    table.find((r) => r.state === state && beneath(r)) ?? table.find((r) => r.state === state && r.exit === 'final')
  );
}

/** The row a conversion is in now. */
async function conversionRowNow(id: string): Promise<ConversionRow | undefined> {
  const { status } = await db.db
    .selectFrom('conversions')
    .select('status')
    .where('conversion_id', '=', id)
    .executeTakeFirstOrThrow();
  const transfer = seedStateOf(await transferOf('conversion', id));
  return rowFor(CONVERSION_TABLE, status, (r) => r.transfer === transfer);
}

/** The row a payout is in now. */
async function payoutRowNow(id: string): Promise<PayoutRow | undefined> {
  const payout = await db.db.selectFrom('payouts').selectAll().where('payout_id', '=', id).executeTakeFirstOrThrow();
  const transfer = seedStateOf(await transferOf('payout', id));
  const route = isDirect(payout) ? 'direct' : 'exchange';
  return rowFor(PAYOUT_TABLE, payout.status, (r) => r.transfer === transfer && r.route === route);
}

const RECEIPT = {
  blockNumber: 1n,
  blockHash: `0x${'cd'.repeat(32)}` as const,
  success: true,
  gasCostWei: 0n,
  tokenTransfers: [],
};

/** The transfer's outcome as the worker books it: mined (its version confirmed), or provably never executed. */
async function transferEnds(transferId: string, outcome: 'mined' | 'never executed'): Promise<void> {
  await db.db.transaction().execute(async (trx) => {
    const t = await trx
      .selectFrom('chain_transfers')
      .selectAll()
      .where('transfer_id', '=', transferId)
      .forUpdate()
      .executeTakeFirstOrThrow();
    if (outcome === 'mined') {
      expect(
        await settleMined(trx, hooks, transferId, {
          version: { tx_hash: t.tx_hash as string, raw_tx: t.raw_tx as string },
          receipt: RECEIPT,
          outcome: { status: 'confirmed' },
        }),
      ).toBe(true);
    } else {
      await failIn(
        trx,
        hooks,
        t,
        t.status === 'intent'
          ? { code: 'cancelled', message: 'cancelled before it was signed' }
          : { code: 'never_sent', message: 'its nonce was used by another transaction' },
      );
    }
  });
}

/** Outcomes a transfer in this state can still have (one never signed cannot be mined without being signed first). */
const outcomesOf = (transfer: SeedTransfer | null): Array<'mined' | 'never executed'> =>
  transfer === 'intent' ? ['never executed'] : ['mined', 'never executed'];

/** A row is left: by an action of its table, by the reconciler's own job for it, or (checked by the caller) by its transfer. */
function leftBy(
  kind: 'conversion' | 'payout' | 'transfer',
  state: string,
  row: { actions: object; exit?: Exit },
): string[] {
  const ways = Object.keys(row.actions).map((a) => `action ${a}`);
  if (row.exit && typeof row.exit === 'object') {
    // The reconciler queues the stage's own job again when it is lost: the table of deadlines covers this state.
    expect(
      DEADLINES.some((d) => d.kind === kind && d.state === state),
      `${kind} ${state}: the reconciler has no deadline for it, so a lost ${row.exit.job} job would leave it stuck`,
    ).toBe(true);
    ways.push(`job ${row.exit.job}`);
  }
  if (row.exit === 'its transfer') ways.push('its transfer');
  return ways;
}

/** What the checks below need of a table whose rows wait on a transfer: how to seed a row, find one, and name it. */
interface OwnerTable<R extends OwnerRow<string, string>> {
  readonly kind: 'conversion' | 'payout';
  readonly rows: readonly R[];
  readonly seed: (row: R) => Promise<Seeded>;
  readonly rowNow: (id: string) => Promise<R | undefined>;
  readonly label: (row: R) => string;
}

const CONVERSIONS: OwnerTable<ConversionRow> = {
  kind: 'conversion',
  rows: CONVERSION_TABLE,
  seed: (r) => seed.conversion(r.state, transferOption(r.transfer)),
  rowNow: conversionRowNow,
  label: conversionLabel,
};

const PAYOUTS: OwnerTable<PayoutRow> = {
  kind: 'payout',
  rows: PAYOUT_TABLE,
  seed: seedPayout,
  rowNow: payoutRowNow,
  label: payoutLabel,
};

/** The rows of the table that wait for their transfer, with their names. */
const waitingOnTransfer = <R extends OwnerRow<string, string>>(table: OwnerTable<R>) =>
  table.rows.filter((r) => r.exit === 'its transfer').map((r) => [table.label(r), r] as const);

/** Whatever the transfer beneath `row` does, its owner lands in a row of its table that is final or left. */
async function expectLandsFinalOrLeft<R extends OwnerRow<string, string>>(table: OwnerTable<R>, name: string, row: R) {
  for (const outcome of outcomesOf(row.transfer)) {
    const { id, transferId } = await table.seed(row);
    await transferEnds(transferId as string, outcome);
    const now = await table.rowNow(id);
    const context = `${name}, its transfer ${outcome}: now ${now ? table.label(now) : 'in no state of the table'}`;
    expect(now, context).toBeDefined();
    expect(now!.exit === 'final' || leftBy(table.kind, now!.state, now!).length > 0, context).toBe(true);
    await expectConsistent(context);
  }
}

describe('no dead ends', () => {
  it('every state that is not final is left by an action or by the pipeline; a transfer beneath is left in turn', () => {
    for (const row of CONVERSION_TABLE)
      if (row.exit !== 'final') expect(leftBy('conversion', row.state, row), conversionLabel(row)).not.toEqual([]);
    for (const row of PAYOUT_TABLE)
      if (row.exit !== 'final') expect(leftBy('payout', row.state, row), payoutLabel(row)).not.toEqual([]);
    for (const row of TRANSFER_TABLE)
      if (row.exit !== 'final')
        expect(
          leftBy('transfer', row.state === 'mined' || row.state === 'requested' ? 'broadcast' : row.state, row),
          row.state,
        ).not.toEqual([]);
    for (const row of [...CONVERSION_TABLE, ...PAYOUT_TABLE]) {
      if (row.exit !== 'its transfer') continue;
      const beneath = TRANSFER_TABLE.find((t) => t.state === row.transfer);
      expect(beneath && beneath.exit !== 'final', `${row.state} waits for a transfer that is ${row.transfer}`).toBe(
        true,
      );
    }
  });

  it.each(waitingOnTransfer(CONVERSIONS))(
    'conversion %s: whatever its transfer does, it lands in a state that is final or left',
    (name, row) => expectLandsFinalOrLeft(CONVERSIONS, name, row),
  );

  it.each(waitingOnTransfer(PAYOUTS))(
    'payout %s: whatever its transfer does, it lands in a state that is final or left',
    (name, row) => expectLandsFinalOrLeft(PAYOUTS, name, row),
  );

  it.each(PAYMENT_TABLE.filter((r) => r.actions.length === 0).map((r) => [`${r.reason} (${r.where})`, r] as const))(
    'payment %s: left by the pipeline',
    async (name, row) => {
      expect(row.exit, `${name}: no action and no other way out of review`).toBeDefined();
      const { by, run, opens } = row.exit!;
      const id = await row.seed();
      await run(id);
      if (opens)
        await attempt(
          `/api/payments/${id}/${opens}`,
          undefined,
          { status: 200, audit: `payment.${opens}`, subject: id },
          `${name}, after ${by}: ${opens}`,
        );
      const {
        rows: [now],
      } = await db.pool.query('select review_reason from payments where payment_id = $1', [id]);
      expect(now.review_reason, `${name}, after ${by}`).toBeNull();
      await expectConsistent(name);
    },
  );
});
