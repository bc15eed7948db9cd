/**
 * What must hold after the faults stop and the system settles, each figure printed: nothing lost, nothing paid twice,
 * the ledger balanced and in agreement with the chain, no job failed for good without an alert.
 */
import type pg from 'pg';
import { failedJobs, jobsOverview, liveJobs } from '../src/jobs/index.ts';
import { checkLedger } from '../src/ledger/index.ts';
import { checkLedgerAgainstChain } from '../src/treasury/index.ts';
import type { DatabaseHandle } from '../src/db/index.ts';
import type { SimExchange } from '../src/simulators/changenow/index.ts';
import type { Fleet } from './processes.ts';
import type { ChaosChannel, PlannedPayment } from './traffic.ts';
import type { OutsideTx, World } from './world.ts';

const REVIEWABLE = ['held', 'needs_review', 'failed', 'cancelled', 'awaiting_approval'];

export interface Outcome {
  paymentId: string;
  /** paid | on_channel (converted, below threshold) | visible (held/review/failed, with reason) | in_flight | lost */
  state: 'paid' | 'on_channel' | 'visible' | 'in_flight' | 'lost';
  detail: string;
  /** Job keys whose presence means someone is still working on it (in_flight only). */
  jobKeys: string[];
}

interface PaymentRow {
  payment_id: string;
  payout_strategy: string | null;
  credited: boolean;
  review_reason: string | null;
  review_action: string | null;
  conversion_status: string | null;
  conversion_hold_until: Date | null;
  conversion_id: string | null;
  conv_status: string | null;
  conv_reason: string | null;
  conv_transfer: string | null;
  payout_id: string | null;
  payout_status: string | null;
  payout_reason: string | null;
  payout_error: string | null;
  payout_transfer: string | null;
  conv_transfer_status: string | null;
  conv_transfer_reason: string | null;
  payout_transfer_status: string | null;
  payout_transfer_reason: string | null;
  /** The channel's open threshold batch (when the payment is not in it): a payment can wait behind it. */
  batch_id: string | null;
  batch_status: string | null;
  batch_reason: string | null;
  batch_transfer_id: string | null;
  batch_transfer_status: string | null;
  batch_transfer_reason: string | null;
  channel_id: string;
  channel_usdt: string | null;
  threshold_units: string | null;
}

/** What the channel's open threshold batch waits for when a person must act on it (itself or its transfer); else null. */
function batchWaitingForAPerson(r: PaymentRow): { what: string; reason: string | null } | null {
  if (!r.batch_id) return null;
  if (REVIEWABLE.includes(r.batch_status ?? '')) return { what: `batch ${r.batch_status}`, reason: r.batch_reason };
  if (r.batch_transfer_status === 'needs_review')
    return { what: "batch's transfer in review", reason: r.batch_transfer_reason };
  return null;
}

/** Builds one payment's outcome. */
type Out = (state: Outcome['state'], detail: string, jobKeys?: string[]) => Outcome;

const PAYMENT_STATE_SQL = `select p.payment_id::text, p.payout_strategy, p.credited_at is not null as credited, p.review_reason, p.review_action,
            p.conversion_status, p.conversion_hold_until, p.conversion_id,
            c.status as conv_status, coalesce(c.reason, c.last_error) as conv_reason, c.transfer_id as conv_transfer,
            po.payout_id, po.status as payout_status, po.reason as payout_reason, po.last_error as payout_error, po.transfer_id as payout_transfer,
            ct.status as conv_transfer_status, ct.reason as conv_transfer_reason, pt.status as payout_transfer_status, pt.reason as payout_transfer_reason,
            b.payout_id as batch_id, b.status as batch_status, b.reason as batch_reason, b.transfer_id as batch_transfer_id, b.transfer_status as batch_transfer_status, b.transfer_reason as batch_transfer_reason,
            p.channel_id, a.balance::text as channel_usdt, (ch.threshold_usd_cents * 10000)::numeric(78,0)::text as threshold_units
     from payments p
     left join conversions c on c.conversion_id = p.conversion_id
     left join chain_transfers ct on ct.transfer_id = c.transfer_id
     left join payouts po on po.payout_id = coalesce((select payout_id from payouts where payment_id = p.payment_id), p.payout_id)
     left join chain_transfers pt on pt.transfer_id = po.transfer_id
     left join lateral (
       select ob.payout_id, ob.status, coalesce(ob.reason, ob.last_error) as reason, ob.transfer_id, obt.status as transfer_status, obt.reason as transfer_reason
       from payouts ob left join chain_transfers obt on obt.transfer_id = ob.transfer_id
       where ob.channel_id = p.channel_id and ob.kind = 'threshold' and ob.status not in ('completed', 'failed', 'cancelled')
       order by ob.created_at limit 1
     ) b on true
     left join channels ch on ch.channel_id = p.channel_id
     left join ledger_accounts a on a.code = 'channel:' || p.channel_id and a.asset = 'usdt'
     where p.payment_id = any($1::numeric[])`;

/** Where each acknowledged payment stands now. */
export async function classify(pool: pg.Pool, payments: PlannedPayment[]): Promise<Outcome[]> {
  const acknowledged = payments.filter((p) => p.acknowledged).map((p) => p.paymentId);
  const { rows } = await pool.query<PaymentRow>(PAYMENT_STATE_SQL, [acknowledged]);
  const byId = new Map(rows.map((r) => [r.payment_id, r]));
  return acknowledged.map((paymentId) => classifyPayment(paymentId, byId.get(paymentId)));
}

function classifyPayment(paymentId: string, r: PaymentRow | undefined): Outcome {
  const out: Out = (state, detail, jobKeys = []) => ({ paymentId, state, detail, jobKeys });
  if (!r) return out('lost', 'acknowledged finished IPN but no payment row');
  if (!r.credited) return uncreditedOutcome(r, out);
  if (r.payout_strategy === 'instant') {
    if (!r.payout_id) return out('in_flight', 'instant payout not opened yet', [`payout_instant:${paymentId}`]);
    return payoutOutcome(r, out);
  }
  switch (r.conversion_status) {
    case 'pending':
      return r.conversion_hold_until && r.conversion_hold_until.getTime() > Date.now()
        ? out('visible', `conversion held until ${r.conversion_hold_until.toISOString()}`)
        : out('in_flight', 'waiting for a conversion', ['conversion_batch']);
    case 'converting':
      return conversionOutcome(r, out);
    case 'completed':
      return r.payout_id ? payoutOutcome(r, out) : convertedOutcome(r, out);
    default:
      return r.conversion_status === 'failed'
        ? out('visible', 'conversion failed')
        : out('lost', `threshold payment with conversion status ${r.conversion_status}`);
  }
}

function uncreditedOutcome(r: PaymentRow, out: Out): Outcome {
  if (r.review_reason) return out('visible', `payment in review: ${r.review_reason}`);
  if (r.review_action === 'ignore') return out('visible', 'payment ignored by a person (nothing to credit)');
  return out('lost', 'acknowledged IPN reporting money but never credited');
}

function payoutOutcome(r: PaymentRow, out: Out): Outcome {
  if (!r.payout_id) return out('lost', 'no payout');
  if (r.payout_status === 'completed') return out('paid', `payout ${r.payout_id} completed`);
  if (REVIEWABLE.includes(r.payout_status ?? '')) {
    const reason = r.payout_reason ?? r.payout_error;
    return reason
      ? out('visible', `payout ${r.payout_status}: ${reason}`)
      : out('lost', `payout ${r.payout_id} ${r.payout_status} without a reason`);
  }
  // Its transfer waits for a person (a nonce taken by another transaction): visible, with the transfer's reason.
  if (r.payout_transfer_status === 'needs_review') {
    return r.payout_transfer_reason
      ? out('visible', `payout ${r.payout_status}, its transfer in review: ${r.payout_transfer_reason}`)
      : out('lost', `payout ${r.payout_id}'s transfer ${r.payout_transfer} in review without a reason`);
  }
  return out('in_flight', `payout ${r.payout_id} ${r.payout_status}`, payoutJobKeys(r.payout_id, r.payout_transfer));
}

/** The jobs that move a payout on: its run and poll, and its transfer's send and confirm. */
function payoutJobKeys(payoutId: string, transferId: string | null): string[] {
  const keys = [`payout_run:${payoutId}`, `payout_poll:${payoutId}`];
  if (transferId) keys.push(`transfer_send:${transferId}`, `transfer_confirm:${transferId}`);
  return keys;
}

function conversionOutcome(r: PaymentRow, out: Out): Outcome {
  if (r.conv_status === 'needs_review' || r.conv_status === 'failed') {
    return r.conv_reason
      ? out('visible', `conversion ${r.conv_status}: ${r.conv_reason}`)
      : out('lost', `conversion ${r.conversion_id} ${r.conv_status} without a reason`);
  }
  if (r.conv_transfer_status === 'needs_review') {
    return r.conv_transfer_reason
      ? out('visible', `conversion ${r.conv_status}, its transfer in review: ${r.conv_transfer_reason}`)
      : out('lost', `conversion ${r.conversion_id}'s transfer ${r.conv_transfer} in review without a reason`);
  }
  const keys = [`conversion_exchange:${r.conversion_id}`, `conversion_poll:${r.conversion_id}`];
  if (r.conv_transfer) keys.push(`transfer_send:${r.conv_transfer}`, `transfer_confirm:${r.conv_transfer}`);
  return out('in_flight', `conversion ${r.conversion_id} ${r.conv_status}`, keys);
}

/** Converted, no payout of its own: on the channel below its threshold, or waiting for the channel's batch. */
function convertedOutcome(r: PaymentRow, out: Out): Outcome {
  if (r.threshold_units !== null && BigInt(r.channel_usdt ?? '0') >= BigInt(r.threshold_units)) {
    // One open batch per channel: while it waits for a person, the channel's next batch waits behind it.
    const behind = batchWaitingForAPerson(r);
    if (behind) {
      return behind.reason
        ? out('visible', `converted, waiting behind its channel's ${behind.what}: ${behind.reason}`)
        : out('lost', `waiting behind payout ${r.batch_id} (${behind.what}) without a reason`);
    }
    // One open batch per channel: the USDT that arrives meanwhile waits for it to end (its end checks again).
    if (r.batch_id) {
      return out(
        'in_flight',
        `converted, waiting behind its channel's open batch ${r.batch_id} (${r.batch_status})`,
        payoutJobKeys(r.batch_id, r.batch_transfer_id),
      );
    }
    return out(
      'in_flight',
      `converted, channel at ${r.channel_usdt} ≥ threshold ${r.threshold_units} but no batch yet`,
      [`threshold_check:${r.channel_id}`],
    );
  }
  return out('on_channel', `converted, on channel ${r.channel_id} below its threshold`);
}

/** Keys of jobs still to run (not failed for good). */
export async function liveJobKeys(pool: pg.Pool): Promise<Set<string>> {
  const keys = new Set<string>();
  for (const job of await liveJobs(pool)) {
    if (job.key) keys.add(job.key);
    if (job.task === 'conversion_batch') keys.add('conversion_batch');
  }
  // The conversion batch also runs from cron: pending payments always have a next run coming.
  keys.add('conversion_batch');
  return keys;
}

export interface CheckReport {
  figures: string[];
  violations: string[];
}

export async function runChecks(
  db: DatabaseHandle,
  world: World,
  fleet: Fleet,
  channels: ChaosChannel[],
  payments: PlannedPayment[],
): Promise<CheckReport> {
  const pool = db.pool;
  const reports: CheckReport[] = [];
  // 1. Nothing lost.
  reports.push(await checkNothingLost(pool, payments));
  reports.push(await checkCreditedOnlyWhenFinished(pool, payments));

  // 2. Nothing twice: one exchange per conversion / payout, one transfer per exchange, chain agrees.
  const exchanges = [...world.sim.exchanges.values()];
  reports.push(checkOneExchangeEach(exchanges));
  const transfers = await readTransfers(pool);
  reports.push(checkOneTransferEach(transfers));
  reports.push(await checkPayinAddresses(world, exchanges, transfers));
  reports.push(await checkHostNonces(pool, world));

  // 3. Ledger clean, and what it says agrees with the chain.
  reports.push(await checkLedgerClean(db));
  reports.push(await checkDirectOwners(pool, world, channels));
  reports.push(await checkHostUsdt(pool, world, exchanges, transfers));
  reports.push(await checkLedgerEqualsChain(db, world, payments));

  // 4. No job failed for good without an alert: a stored job_failed_permanently alert (open, or resolved once a later
  // periodic run superseded the job) for every job out of attempts. The run waits for an alert pass after settling.
  reports.push(await checkFailedJobsAlerted(db));
  reports.push(await alertFigures(pool, fleet));

  return {
    figures: reports.flatMap((r) => r.figures),
    violations: reports.flatMap((r) => r.violations),
  };
}

/** The first five, and how many in all when there are more. */
function examples(items: string[]): string {
  return items.slice(0, 5).join('; ') + (items.length > 5 ? `; … (${items.length} in all)` : '');
}

async function checkNothingLost(pool: pg.Pool, payments: PlannedPayment[]): Promise<CheckReport> {
  const violations: string[] = [];
  const outcomes = await classify(pool, payments);
  const live = await liveJobKeys(pool);
  const count = (s: Outcome['state']) => outcomes.filter((o) => o.state === s);
  const inFlight = count('in_flight');
  const queued = inFlight.filter((o) => o.jobKeys.some((k) => live.has(k)));
  const stuck = inFlight.filter((o) => !o.jobKeys.some((k) => live.has(k)));
  const lost = count('lost');
  const figures = [
    `payments: ${payments.length} planned, ${outcomes.length} acknowledged finished; paid out ${count('paid').length}, on channel below threshold ${count('on_channel').length}, held/review/failed with a reason ${count('visible').length}, still in flight with a job queued ${queued.length}, stuck without a job ${stuck.length}, lost ${lost.length}`,
    ...visibleReasons(count('visible')),
  ];
  const listed = (list: Outcome[]) => examples(list.map((o) => `${o.paymentId}: ${o.detail}`));
  // After the bounded settle, work still in flight is not "visibly held with a reason": it did not finish in time.
  if (queued.length > 0)
    violations.push(`not settled: ${queued.length} payment(s) still in flight (a job is queued): ${listed(queued)}`);
  if (lost.length > 0) violations.push(`lost: ${lost.length} acknowledged payment(s): ${listed(lost)}`);
  if (stuck.length > 0)
    violations.push(`stuck: ${stuck.length} payment(s) in flight with no job to move them: ${listed(stuck)}`);
  return { figures, violations };
}

/** Reasons grouped without their ids, hashes, times and numbers. */
function visibleReasons(visible: Outcome[]): string[] {
  const shape = (detail: string) =>
    detail
      .replace(/\d{4}-\d\d-\d\dT[^ ]+|\b[a-z]{2}_[0-9a-f]{16}\b|0x[0-9a-fA-F]+|[0-9a-f-]{20,}/g, '…')
      .replace(/\b\d+\b/g, 'N');
  const byReason = new Map<string, number>();
  for (const o of visible) byReason.set(shape(o.detail), (byReason.get(shape(o.detail)) ?? 0) + 1);
  return [...byReason].map(([reason, n]) => `  visible: ${n} × ${reason}`);
}

async function creditedAmong(pool: pg.Pool, ids: string[]): Promise<Array<{ id: string }>> {
  return (
    await pool.query<{ id: string }>(
      'select payment_id::text as id from payments where payment_id = any($1::numeric[]) and credited_at is not null',
      [ids],
    )
  ).rows;
}

async function checkCreditedOnlyWhenFinished(pool: pg.Pool, payments: PlannedPayment[]): Promise<CheckReport> {
  const figures: string[] = [];
  const violations: string[] = [];
  const neverFinished = payments.filter((p) => p.shape === 'never_finished').map((p) => p.paymentId);
  const wronglyCredited = await creditedAmong(pool, neverFinished);
  figures.push(`never-finished payments: ${neverFinished.length}, credited ${wronglyCredited.length}`);
  if (wronglyCredited.length > 0)
    violations.push(`credited without a finished IPN: ${examples(wronglyCredited.map((r) => r.id))}`);
  // A leaked IPN secret must not mint money: NOWPayments' API knows no such payment.
  const forged = payments.filter((p) => p.forged).map((p) => p.paymentId);
  const forgedCredited = await creditedAmong(pool, forged);
  figures.push(
    `forged payments (signed, unknown to NOWPayments' API): ${forged.length}, credited ${forgedCredited.length}`,
  );
  if (forgedCredited.length > 0)
    violations.push(`forged payment credited: ${examples(forgedCredited.map((r) => r.id))}`);
  return { figures, violations };
}

function checkOneExchangeEach(exchanges: SimExchange[]): CheckReport {
  const byUser = new Map<string, number>();
  for (const ex of exchanges) byUser.set(ex.userId ?? '(none)', (byUser.get(ex.userId ?? '(none)') ?? 0) + 1);
  const doubleExchanges = [...byUser.entries()].filter(([, n]) => n > 1);
  const figures = [
    `ChangeNow exchanges: ${exchanges.length} for ${byUser.size} conversions/payouts; with more than one: ${doubleExchanges.length}`,
  ];
  const violations =
    doubleExchanges.length > 0
      ? [`double exchange: ${examples(doubleExchanges.map(([u, n]) => `${u}: ${n} exchanges`))}`]
      : [];
  return { figures, violations };
}

interface TransferRow {
  purpose: string;
  ref: string;
  asset: string;
  to_address: string;
  amount: string;
  status: string;
  nonce: string | null;
  last_error: string | null;
  reason: string | null;
}

async function readTransfers(pool: pg.Pool): Promise<TransferRow[]> {
  return (
    await pool.query<TransferRow>(
      'select purpose, ref, asset, lower(to_address) as to_address, amount::text, status, nonce::text, last_error, reason from chain_transfers',
    )
  ).rows;
}

function checkOneTransferEach(transfers: TransferRow[]): CheckReport {
  const violations: string[] = [];
  const perRef = new Map<string, number>();
  for (const t of transfers) perRef.set(`${t.purpose}:${t.ref}`, (perRef.get(`${t.purpose}:${t.ref}`) ?? 0) + 1);
  const doubleTransfers = [...perRef.entries()].filter(([, n]) => n > 1);
  const byOutcome = new Map<string, number>();
  for (const t of transfers) {
    const outcome = t.status === 'failed' ? `failed ${t.last_error ?? '?'}` : t.status;
    byOutcome.set(outcome, (byOutcome.get(outcome) ?? 0) + 1);
  }
  const figures = [
    `chain transfers: ${transfers.length} (${[...byOutcome.entries()]
      .sort()
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')}); purposes with more than one: ${doubleTransfers.length}`,
  ];
  if (doubleTransfers.length > 0)
    violations.push(`double transfer record: ${examples(doubleTransfers.map(([r, n]) => `${r}: ${n}`))}`);
  const reviewWithoutReason = transfers.filter((t) => t.status === 'needs_review' && !t.reason);
  if (reviewWithoutReason.length > 0)
    violations.push(
      `transfer in review without a reason: ${examples(reviewWithoutReason.map((t) => `${t.purpose}:${t.ref}`))}`,
    );
  return { figures, violations };
}

/** What each payin address holds on chain equals what payrail recorded sending it: a second send would show here. */
async function checkPayinAddresses(
  world: World,
  exchanges: SimExchange[],
  transfers: TransferRow[],
): Promise<CheckReport> {
  const payinProblems: string[] = [];
  for (const ex of exchanges) {
    const toPayin = transfers.filter((t) => t.to_address === ex.payinAddress.toLowerCase());
    const sent = toPayin.filter((t) => t.status === 'confirmed').reduce((s, t) => s + BigInt(t.amount), 0n);
    const held =
      ex.fromCurrency === 'eth' ? await world.ethBalance(ex.payinAddress) : await world.usdtBalance(ex.payinAddress);
    if (held !== sent) {
      const statuses = toPayin.map((t) => t.status).join(',');
      payinProblems.push(
        `exchange ${ex.id} (${ex.userId}): payin holds ${held}, confirmed transfers ${sent} [${statuses || 'none'}]`,
      );
    }
  }
  return {
    figures: [
      `payin addresses whose on-chain balance differs from the confirmed transfers to them: ${payinProblems.length} of ${exchanges.length}`,
    ],
    violations: payinProblems.length > 0 ? [`payin mismatch: ${examples(payinProblems)}`] : [],
  };
}

async function checkLedgerClean(db: DatabaseHandle): Promise<CheckReport> {
  const ledger = await checkLedger(db.db);
  return {
    figures: [
      `checkLedger: ${ledger.ok ? 'clean' : `${ledger.problems.length} problem(s)`} (${ledger.accounts} accounts, ${ledger.journals} journals, ${ledger.entries} entries)`,
    ],
    violations: ledger.problems.map((p) => `ledger ${p.rule}: ${p.subject}: ${p.detail}`),
  };
}

/** A direct owner holds on chain exactly what its completed direct payouts sent it. */
async function checkDirectOwners(pool: pg.Pool, world: World, channels: ChaosChannel[]): Promise<CheckReport> {
  const violations: string[] = [];
  const directPayouts = (
    await pool.query<{ wallet: string; asset: string; completed: string; open: string }>(
      `select lower(wallet_address) as wallet, asset, coalesce(sum(amount) filter (where status = 'completed'), 0)::text as completed,
            count(*) filter (where status not in ('completed', 'failed', 'cancelled'))::text as open
     from payouts where exchange_id is null and payout_network = 'eth' group by 1, 2`,
    )
  ).rows;
  const direct = channels.filter((c) => c.direct);
  for (const ch of direct) {
    const asset = ch.kind === 'instant_eth_direct' ? 'eth' : 'usdt';
    const row = directPayouts.find((r) => r.wallet === ch.wallet.toLowerCase() && r.asset === asset);
    const completed = BigInt(row?.completed ?? '0');
    const onChain = asset === 'eth' ? await world.ethBalance(ch.wallet) : await world.usdtBalance(ch.wallet);
    if (onChain !== completed)
      violations.push(
        `direct owner ${ch.wallet} (channel ${ch.id}): holds ${onChain} ${asset} on chain, completed direct payouts ${completed} (${row?.open ?? 0} still open)`,
      );
  }
  const figures = [
    `direct payout owners whose on-chain balance differs from their completed direct payouts: ${violations.length} of ${direct.length}`,
  ];
  return { figures, violations };
}

/**
 * Host USDT: on chain = what ChangeNow paid it (conversions, USDT refunds) − USDT it sent; and the ledger's USDT
 * held by the platform (every non-world account) = that, plus USDT that left for payouts not yet booked out,
 * minus USDT that arrived but is not booked (conversions not settled, refunds of payouts not returned).
 */
async function checkHostUsdt(
  pool: pg.Pool,
  world: World,
  exchanges: SimExchange[],
  transfers: TransferRow[],
): Promise<CheckReport> {
  const figures: string[] = [];
  const violations: string[] = [];
  const { paidToHost, unbooked } = await usdtFromChangeNow(pool, world, exchanges);
  const usdtSent = transfers
    .filter((t) => t.asset === 'usdt' && t.status === 'confirmed')
    .reduce((s, t) => s + BigInt(t.amount), 0n);
  const leftNotBooked = await sumOf(
    pool,
    `select coalesce(sum(t.amount), 0)::text as n from chain_transfers t join payouts p on p.transfer_id = t.transfer_id
     where t.asset = 'usdt' and t.status = 'confirmed' and p.status not in ('completed', 'failed', 'cancelled')`,
  );
  const hostUsdt = await world.usdtBalance(world.hostAddress);
  figures.push(`host USDT on chain ${hostUsdt}; ChangeNow paid it ${paidToHost}, it sent ${usdtSent}`);
  if (hostUsdt !== paidToHost - usdtSent)
    violations.push(`host USDT on chain ${hostUsdt} ≠ received ${paidToHost} − sent ${usdtSent}`);
  const ledgerHeld = BigInt(
    await sumOf(
      pool,
      "select coalesce(sum(balance), 0)::text as n from ledger_accounts where asset = 'usdt' and code not like 'world:%'",
    ),
  );
  const expected = hostUsdt + BigInt(leftNotBooked) - unbooked;
  figures.push(
    `ledger USDT held by the platform ${ledgerHeld}; expected from the chain ${expected} (host ${hostUsdt} + left for open payouts ${leftNotBooked} − arrived unbooked ${unbooked})`,
  );
  if (ledgerHeld !== expected) violations.push(`ledger USDT ${ledgerHeld} ≠ chain-derived ${expected}`);
  return { figures, violations };
}

/** A single `n` a query sums, as text ('0' when it answers nothing). */
async function sumOf(pool: pg.Pool, text: string): Promise<string> {
  return (await pool.query<{ n: string }>(text)).rows[0]?.n ?? '0';
}

/** USDT ChangeNow paid the host wallet (finished conversions, refunded payouts), and how much of it is not booked. */
async function usdtFromChangeNow(
  pool: pg.Pool,
  world: World,
  exchanges: SimExchange[],
): Promise<{ paidToHost: bigint; unbooked: bigint }> {
  const host = world.hostAddress.toLowerCase();
  const convStatus = await statusById(pool, 'select conversion_id as id, status from conversions');
  const payoutStatus = await statusById(pool, 'select payout_id as id, status from payouts');
  let paidToHost = 0n;
  let unbooked = 0n;
  // What ChangeNow's transaction moved, read from the chain: a short payout or a short refund moves less than the
  // exchange reports.
  const movedToHost = async (hash: string | null) =>
    hash ? ((await world.hostReader.tokenReceived(hash as `0x${string}`, world.usdt, world.hostAddress)) ?? 0n) : 0n;
  for (const ex of exchanges) {
    if (
      ex.status === 'finished' &&
      ex.toCurrency === 'usdt' &&
      ex.toNetwork === 'eth' &&
      ex.payoutAddress.toLowerCase() === host
    ) {
      const amount = await movedToHost(ex.payoutHash);
      paidToHost += amount;
      if (convStatus.get(ex.userId ?? '') !== 'completed') unbooked += amount;
    }
    if (
      ex.status === 'refunded' &&
      ex.refundHash &&
      ex.fromCurrency === 'usdt' &&
      (ex.refundAddress ?? '').toLowerCase() === host
    ) {
      const amount = await movedToHost(ex.refundHash);
      paidToHost += amount;
      if (payoutStatus.get(ex.userId ?? '') !== 'failed') unbooked += amount;
    }
  }
  return { paidToHost, unbooked };
}

async function statusById(pool: pg.Pool, text: string): Promise<Map<string, string>> {
  return new Map((await pool.query<{ id: string; status: string }>(text)).rows.map((r) => [r.id, r.status]));
}

async function checkFailedJobsAlerted(db: DatabaseHandle): Promise<CheckReport> {
  const pool = db.pool;
  const failed = await failedJobs(db.db);
  const stored = (
    await pool.query<{ subject: string; open: boolean }>(
      "select subject, resolved_at is null as open from alerts where rule = 'job_failed_permanently'",
    )
  ).rows;
  const alerted = new Set(stored.map((a) => a.subject));
  const silent = failed.filter((j) => !alerted.has(j.id));
  const figures = [
    `jobs failed permanently: ${failed.length} (${[...new Set(failed.map((j) => j.task))].join(', ') || 'none'}); job_failed_permanently alerts stored: ${stored.length} (${stored.filter((a) => a.open).length} open); failed without an alert: ${silent.length}`,
  ];
  const violations =
    silent.length > 0
      ? [
          `job failed permanently without an alert: ${examples(silent.map((j) => `${j.task} #${j.id}: ${j.last_error ?? ''}`))}`,
        ]
      : [];
  return { figures, violations };
}

/** Every alert payrail stored (by rule) and logged (by name): figures only. */
async function alertFigures(pool: pg.Pool, fleet: Fleet): Promise<CheckReport> {
  const storedByRule = (
    await pool.query<{ rule: string; n: number; open: number }>(
      'select rule, count(*)::int as n, count(*) filter (where resolved_at is null)::int as open from alerts group by rule order by rule',
    )
  ).rows;
  const logged = new Map<string, number>();
  for (const l of fleet.alerts()) logged.set(String(l.json?.alert), (logged.get(String(l.json?.alert)) ?? 0) + 1);
  return {
    figures: [
      `alerts stored: ${storedByRule.map((r) => `${r.rule} ×${r.n} (${r.open} open)`).join(', ') || 'none'}`,
      `alerts logged: ${[...logged.entries()].map(([a, n]) => `${a} ×${n}`).join(', ') || 'none'}`,
    ],
    violations: [],
  };
}

/**
 * Ledger = chain, as `payrail check-ledger --chain` sees it (checkLedgerAgainstChain with the host wallet read-only,
 * on anvil directly): per asset, the host wallet's balance on chain equals the ledger's non-world accounts less
 * transfers mined but not booked out and (ETH) gas not booked yet. Exact: after the settle nothing is in transit (a
 * ChangeNow payout that reached the host wallet before payrail's poll would show as a difference only until that
 * poll). The ETH that reaches the host wallet from outside is the run's own doing: the operator's funding (booked as
 * capital when the run starts) and NOWPayments' forwarding of each finished payment's outcome (taken as arrived when
 * payrail credits it), so a forward for a payment payrail never credited is printed beside the terms.
 *
 * The host wallet's transactions from outside payrail (a nonce_taken fault's zero-value self-transfer, signed by
 * another holder of the key, pays its gas from the host wallet) are booked by the operator with `payrail withdrawal`
 * before the checks; what they spent is read from the chain and printed beside the terms, and the difference must
 * still be exactly zero.
 */
async function checkLedgerEqualsChain(
  db: DatabaseHandle,
  world: World,
  payments: PlannedPayment[],
): Promise<CheckReport> {
  const figures: string[] = [];
  const violations: string[] = [];
  const forwarded = payments.filter((p) => p.forwardTx !== null);
  const credited = new Set(
    (
      await db.pool.query<{ id: string }>(
        'select payment_id::text as id from payments where payment_id = any($1::numeric[]) and credited_at is not null',
        [forwarded.map((p) => p.paymentId)],
      )
    ).rows.map((r) => r.id),
  );
  const uncredited = forwarded.filter((p) => !credited.has(p.paymentId));
  const uncreditedWei = uncredited.reduce((sum, p) => sum + (p.outcomeWei ?? 0n), 0n);
  const forwards = `NOWPayments forwarded ${forwarded.length} outcome(s), ${forwarded.reduce((sum, p) => sum + (p.outcomeWei ?? 0n), 0n)} wei; for payments payrail did not credit: ${uncredited.length} (${uncreditedWei} wei)${
    uncredited.length
      ? `: ${uncredited
          .slice(0, 5)
          .map((p) => p.paymentId)
          .join(', ')}`
      : ''
  }`;

  const host = world.hostAddress.toLowerCase();
  let outsideMined = 0;
  let outsideSpentWei = 0n;
  for (const o of world.outsideTxs) {
    const receipt = await world.hostReader.receipt(o.hash);
    if (!receipt) continue;
    const tx = await world.hostReader.transaction(o.hash);
    outsideMined++;
    outsideSpentWei += receipt.gasCostWei + (tx && tx.to?.toLowerCase() !== host ? tx.value : 0n);
  }

  const report = await checkLedgerAgainstChain(db.db, { wallet: world.hostReader, usdtContract: world.usdt });
  for (const a of report.assets) {
    const terms = `on chain ${a.onChain}; ledger held by the platform ${a.ledgerHeld} − mined not booked out ${a.leftNotBooked} (${a.inFlight.length} transfer(s))${a.asset === 'eth' ? ` − gas of mined versions not booked ${a.gasNotBooked}` : ''} = expected ${a.expected}; difference ${a.difference}${a.asset === 'eth' ? ` (${outsideMined} host transaction(s) from outside payrail spent ${outsideSpentWei}, booked as withdrawals)` : ''}`;
    figures.push(`ledger = chain, ${a.asset}: ${terms}`);
    if (a.difference !== 0n) {
      const inFlight = a.inFlight
        .slice(0, 5)
        .map((t) => `${t.transferId} ${t.purpose}:${t.ref} ${t.amount}`)
        .join('; ');
      violations.push(
        `ledger ≠ chain (${a.asset}): ${terms}; unexplained ${a.difference}${inFlight ? `; mined not booked out: ${inFlight}${a.inFlight.length > 5 ? '; …' : ''}` : ''}${a.asset === 'eth' ? `; ${forwards}` : ''}`,
      );
    }
  }
  figures.push(forwards);
  return { figures, violations };
}

/** What the queue looks like, for a failed run's log: jobs by task and lock, locked queues, heartbeats. */
export async function diagnostics(pool: pg.Pool): Promise<string[]> {
  const q = async (title: string, text: string) => {
    const { rows } = await pool.query(text);
    return [`-- ${title}`, ...rows.map((r) => JSON.stringify(r))];
  };
  return [
    // The queue's locked jobs per queue stand for its locked queues: its own tables are not read.
    '-- jobs',
    ...(await jobsOverview(pool)).map((r) => JSON.stringify(r)),
    ...(await q('worker heartbeats', 'select worker_id, last_seen_at, queue_worker_ids from worker_heartbeats')),
    ...(await q(
      'open payouts',
      "select payout_id, kind, status, attempts, last_error, updated_at from payouts where status not in ('completed','failed','cancelled') order by updated_at limit 15",
    )),
    ...(await q(
      'open transfers',
      "select transfer_id, purpose, status, nonce, attempts, last_error from chain_transfers where status <> 'confirmed' order by created_at limit 15",
    )),
  ];
}

/** Outcomes that used the transfer's nonce with a version of its own: mined (succeeded, reverted, a cancel, a token that moved nothing). */
const OWN_MINED_FAILURES = ['reverted', 'cancelled', 'token_not_moved'];

/**
 * The host wallet's nonces, exactly. The chain counts N transactions from the host wallet: nonces 0..N-1, each used
 * by exactly one mined transaction, either one of payrail's signed versions of a transfer (the first, a replacement,
 * a cancel) or a transaction a nonce_taken fault sent from outside payrail. payrail's records must say which:
 *
 *   own     = nonces of transfers whose own version was mined: confirmed; failed as reverted, cancelled or
 *             token_not_moved; in review for another cause than a taken nonce (a token that moved a wrong amount);
 *   outside = nonces of the nonce_taken faults' transactions, mined.
 *
 * A transfer failed as never_sent (resolved by the operator after a nonce_taken fault), or in review with its nonce
 * taken, used no nonce of its own: its nonce is in `outside`, where it is counted once (adding never_sent transfers
 * and outside transactions would count those nonces twice). estimate_failed transfers were never signed (no nonce).
 * So: own and outside are disjoint, never_sent ⊆ outside, and own ∪ outside = {0..N-1}, hence N = |own| + |outside|.
 *
 * The same is then read from the chain alone: of every signed version payrail stored, which are mined. At most one
 * per transfer (a second would be a second payment), at the transfer's nonce, exactly for the transfers counted in
 * `own`; and N = mined versions + mined outside transactions.
 */
interface NonceTransfer {
  transfer_id: string;
  status: string;
  nonce: string | null;
  last_error: string | null;
}

/** What payrail's records and the chain say of the host wallet's nonces, as the checks below compare them. */
interface HostNonces {
  /** Transactions the chain counts from the host wallet. */
  hostNonce: number;
  /** Transfers that were given a nonce. */
  transfers: NonceTransfer[];
  outsideMined: OutsideTx[];
  outside: Set<number>;
  own: NonceTransfer[];
  ownNonces: Map<number, string[]>;
  neverSent: NonceTransfer[];
  open: NonceTransfer[];
}

async function checkHostNonces(pool: pg.Pool, world: World): Promise<CheckReport> {
  const nonces = await readHostNonces(pool, world);
  const fromRecords = checkNoncesFromRecords(nonces);
  const fromChain = await checkNoncesFromChain(pool, world, nonces);
  return {
    figures: [...fromRecords.figures, ...fromChain.figures],
    violations: [...fromRecords.violations, ...fromChain.violations],
  };
}

async function readHostNonces(pool: pg.Pool, world: World): Promise<HostNonces> {
  const hostNonce = await world.nonce(world.hostAddress);
  const transfers = (
    await pool.query<NonceTransfer>(
      'select transfer_id, status, nonce::text, last_error from chain_transfers where nonce is not null',
    )
  ).rows;
  const outsideMined = (await mapBounded(world.outsideTxs, (o) => world.minedTx(o.hash))).flatMap((tx, i) =>
    tx ? [world.outsideTxs[i] as OutsideTx] : [],
  );
  const outside = new Set(outsideMined.map((o) => o.nonce));
  const own = transfers.filter((t) => usedOwnNonce(t, outside));
  const ownNonces = new Map<number, string[]>();
  for (const t of own) ownNonces.set(Number(t.nonce), [...(ownNonces.get(Number(t.nonce)) ?? []), t.transfer_id]);
  const neverSent = transfers.filter((t) => t.status === 'failed' && t.last_error === 'never_sent');
  const open = transfers.filter((t) => !['confirmed', 'failed', 'needs_review'].includes(t.status));
  return { hostNonce, transfers, outsideMined, outside, own, ownNonces, neverSent, open };
}

function usedOwnNonce(t: NonceTransfer, outside: Set<number>): boolean {
  return (
    t.status === 'confirmed' ||
    (t.status === 'failed' && OWN_MINED_FAILURES.includes(t.last_error ?? '')) ||
    (t.status === 'needs_review' && !outside.has(Number(t.nonce)))
  );
}

/** own ∪ outside = {0..N-1}, disjoint, one transfer per own nonce, never_sent ⊆ outside: by payrail's records. */
function checkNoncesFromRecords(n: HostNonces): CheckReport {
  const violations = nonceConflicts(n);
  const accounted = n.ownNonces.size + n.outside.size;
  const missing: number[] = [];
  for (let i = 0; i < n.hostNonce && missing.length < 5; i++)
    if (!n.ownNonces.has(i) && !n.outside.has(i)) missing.push(i);
  const figures = [
    `host wallet: ${n.hostNonce} transactions on chain = ${n.ownNonces.size} nonces used by payrail's transfers (confirmed, or failed as ${OWN_MINED_FAILURES.join('/')}) + ${n.outside.size} taken from outside (nonce_taken; ${n.neverSent.length} transfer(s) resolved never_sent at them)${n.open.length ? `; ${n.open.length} transfer(s) not final` : ''}`,
  ];
  if (n.hostNonce !== accounted || missing.length > 0) {
    violations.push(
      `host wallet sent ${n.hostNonce} transactions but payrail's transfers account for ${accounted} nonces (${n.ownNonces.size} own + ${n.outside.size} outside)${missing.length ? `; unaccounted nonces: ${missing.join(', ')}` : ''}${
        n.open.length
          ? `; not final: ${n.open
              .slice(0, 5)
              .map((t) => `${t.transfer_id} ${t.status}`)
              .join(', ')}`
          : ''
      }`,
    );
  }
  return { figures, violations };
}

/** Nonces claimed twice: by two transfers, or by a transfer and an outside transaction; never_sent with no taker. */
function nonceConflicts(n: HostNonces): string[] {
  const violations: string[] = [];
  const shared = [...n.ownNonces.entries()].filter(([, ids]) => ids.length > 1);
  if (shared.length > 0)
    violations.push(
      `host nonce used by more than one transfer: ${shared
        .slice(0, 5)
        .map(([nonce, ids]) => `${nonce}: ${ids.join(', ')}`)
        .join('; ')}`,
    );
  const both = [...n.ownNonces.keys()].filter((nonce) => n.outside.has(nonce));
  if (both.length > 0)
    violations.push(`host nonce both mined by payrail and taken from outside: ${both.slice(0, 5).join(', ')}`);
  const unexplained = n.neverSent.filter((t) => !n.outside.has(Number(t.nonce)));
  if (unexplained.length > 0)
    violations.push(
      `transfer failed as never_sent but no outside transaction took its nonce: ${unexplained
        .slice(0, 5)
        .map((t) => `${t.transfer_id} (nonce ${t.nonce})`)
        .join(', ')}`,
    );
  return violations;
}

type MinedVersions = Map<string, Array<{ version: number; nonce: number }>>;

/** From the chain alone: which stored versions are mined. */
async function checkNoncesFromChain(pool: pg.Pool, world: World, n: HostNonces): Promise<CheckReport> {
  const versions = (
    await pool.query<{ transfer_id: string; version: number; tx_hash: string }>(
      'select transfer_id, version, tx_hash from chain_transfer_versions',
    )
  ).rows;
  const mined = await mapBounded(versions, (v) => world.minedTx(v.tx_hash as `0x${string}`));
  const minedBy: MinedVersions = new Map();
  versions.forEach((v, i) => {
    const tx = mined[i];
    if (tx)
      minedBy.set(v.transfer_id, [...(minedBy.get(v.transfer_id) ?? []), { version: v.version, nonce: tx.nonce }]);
  });
  const minedCount = [...minedBy.values()].reduce((sum, list) => sum + list.length, 0);
  const twice = [...minedBy.entries()].filter(([, list]) => list.length > 1);
  const violations = minedVersionProblems(n, minedBy, twice);
  const figures = [
    `host wallet from the chain: ${minedCount} of ${versions.length} signed versions mined (one per transfer: ${twice.length === 0 ? 'yes' : 'no'}) + ${n.outsideMined.length} outside = ${minedCount + n.outsideMined.length} (chain: ${n.hostNonce})`,
  ];
  if (minedCount + n.outsideMined.length !== n.hostNonce)
    violations.push(
      `host wallet: ${n.hostNonce} transactions on chain, but ${minedCount} mined versions + ${n.outsideMined.length} outside transactions`,
    );
  return { figures, violations };
}

/** At most one mined version per transfer, at the transfer's nonce, exactly for the transfers booked as mined. */
function minedVersionProblems(
  n: HostNonces,
  minedBy: MinedVersions,
  twice: Array<[string, Array<{ version: number; nonce: number }>]>,
): string[] {
  const violations: string[] = [];
  if (twice.length > 0)
    violations.push(
      `transfer with more than one version mined: ${twice
        .slice(0, 5)
        .map(([id, list]) => `${id}: versions ${list.map((m) => m.version).join(', ')}`)
        .join('; ')}`,
    );
  const byId = new Map(n.transfers.map((t) => [t.transfer_id, t]));
  const wrongNonce = [...minedBy.entries()].filter(([id, list]) =>
    list.some((m) => String(m.nonce) !== byId.get(id)?.nonce),
  );
  if (wrongNonce.length > 0)
    violations.push(
      `mined version at another nonce than its transfer's: ${wrongNonce
        .slice(0, 5)
        .map(([id]) => id)
        .join(', ')}`,
    );
  const notMined = n.own.filter((t) => !minedBy.has(t.transfer_id));
  if (notMined.length > 0)
    violations.push(
      `transfer booked as mined but none of its versions is on chain: ${notMined
        .slice(0, 5)
        .map((t) => `${t.transfer_id} ${t.status}`)
        .join(', ')}`,
    );
  const minedUnbooked = n.transfers.filter(
    (t) => minedBy.has(t.transfer_id) && !usedOwnNonce(t, n.outside) && !n.open.includes(t),
  );
  if (minedUnbooked.length > 0)
    violations.push(
      `transfer with a version on chain but not booked as mined: ${minedUnbooked
        .slice(0, 5)
        .map((t) => `${t.transfer_id} ${t.status}${t.last_error ? ` ${t.last_error}` : ''}`)
        .join(', ')}`,
    );
  return violations;
}

/** Maps with at most `limit` calls in flight (a few thousand receipts read from anvil). */
async function mapBounded<T, R>(items: readonly T[], fn: (item: T) => Promise<R>, limit = 16): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i] as T);
      }
    }),
  );
  return out;
}
