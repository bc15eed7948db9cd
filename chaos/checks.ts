/**
 * What must hold after the faults stop and the system settles, each figure printed: nothing lost, nothing paid twice,
 * the ledger balanced and in agreement with the chain, no job failed for good without an alert.
 */
import type pg from 'pg';
import { checkLedger } from '../src/ledger/index.ts';
import type { DatabaseHandle } from '../src/db/index.ts';
import type { Fleet } from './processes.ts';
import type { ChaosChannel, PlannedPayment } from './traffic.ts';
import type { World } from './world.ts';

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
  channel_id: string;
  channel_usdt: string | null;
  threshold_units: string | null;
}

/** Where each acknowledged payment stands now. */
export async function classify(pool: pg.Pool, payments: PlannedPayment[]): Promise<Outcome[]> {
  const acknowledged = payments.filter((p) => p.acknowledged).map((p) => p.paymentId);
  const { rows } = await pool.query<PaymentRow>(
    `select p.payment_id::text, p.payout_strategy, p.credited_at is not null as credited, p.review_reason,
            p.conversion_status, p.conversion_hold_until, p.conversion_id,
            c.status as conv_status, coalesce(c.reason, c.last_error) as conv_reason, c.transfer_id as conv_transfer,
            po.payout_id, po.status as payout_status, po.reason as payout_reason, po.last_error as payout_error, po.transfer_id as payout_transfer,
            p.channel_id, a.balance::text as channel_usdt, (ch.threshold_usd_cents * 10000)::numeric(78,0)::text as threshold_units
     from payments p
     left join conversions c on c.conversion_id = p.conversion_id
     left join payouts po on po.payout_id = coalesce((select payout_id from payouts where payment_id = p.payment_id), p.payout_id)
     left join channels ch on ch.channel_id = p.channel_id
     left join ledger_accounts a on a.code = 'channel:' || p.channel_id and a.asset = 'usdt'
     where p.payment_id = any($1::numeric[])`,
    [acknowledged],
  );
  const byId = new Map(rows.map((r) => [r.payment_id, r]));
  return acknowledged.map((paymentId): Outcome => {
    const r = byId.get(paymentId);
    const out = (state: Outcome['state'], detail: string, jobKeys: string[] = []): Outcome => ({ paymentId, state, detail, jobKeys });
    if (!r) return out('lost', 'acknowledged finished IPN but no payment row');
    if (!r.credited) return r.review_reason ? out('visible', `payment in review: ${r.review_reason}`) : out('lost', 'acknowledged finished IPN but never credited');
    const payout = (): Outcome => {
      if (!r.payout_id) return out('lost', 'no payout');
      if (r.payout_status === 'completed') return out('paid', `payout ${r.payout_id} completed`);
      if (REVIEWABLE.includes(r.payout_status ?? '')) {
        const reason = r.payout_reason ?? r.payout_error;
        return reason ? out('visible', `payout ${r.payout_status}: ${reason}`) : out('lost', `payout ${r.payout_id} ${r.payout_status} without a reason`);
      }
      const keys = [`payout_run:${r.payout_id}`, `payout_poll:${r.payout_id}`];
      if (r.payout_transfer) keys.push(`transfer_send:${r.payout_transfer}`, `transfer_confirm:${r.payout_transfer}`);
      return out('in_flight', `payout ${r.payout_id} ${r.payout_status}`, keys);
    };
    if (r.payout_strategy === 'instant') {
      if (!r.payout_id) return out('in_flight', 'instant payout not opened yet', [`payout_instant:${paymentId}`]);
      return payout();
    }
    switch (r.conversion_status) {
      case 'pending':
        return r.conversion_hold_until && r.conversion_hold_until.getTime() > Date.now()
          ? out('visible', `conversion held until ${r.conversion_hold_until.toISOString()}`)
          : out('in_flight', 'waiting for a conversion', ['conversion_batch']);
      case 'converting': {
        if (r.conv_status === 'needs_review' || r.conv_status === 'failed') {
          return r.conv_reason ? out('visible', `conversion ${r.conv_status}: ${r.conv_reason}`) : out('lost', `conversion ${r.conversion_id} ${r.conv_status} without a reason`);
        }
        const keys = [`conversion_exchange:${r.conversion_id}`, `conversion_poll:${r.conversion_id}`];
        if (r.conv_transfer) keys.push(`transfer_send:${r.conv_transfer}`, `transfer_confirm:${r.conv_transfer}`);
        return out('in_flight', `conversion ${r.conversion_id} ${r.conv_status}`, keys);
      }
      case 'completed':
        if (r.payout_id) return payout();
        if (r.threshold_units !== null && BigInt(r.channel_usdt ?? '0') >= BigInt(r.threshold_units)) {
          return out('in_flight', `converted, channel at ${r.channel_usdt} ≥ threshold ${r.threshold_units} but no batch yet`, [`threshold_check:${r.channel_id}`]);
        }
        return out('on_channel', `converted, on channel ${r.channel_id} below its threshold`);
      default:
        return r.conversion_status === 'failed' ? out('visible', 'conversion failed') : out('lost', `threshold payment with conversion status ${r.conversion_status}`);
    }
  });
}

/** Keys of jobs still to run (not failed for good). */
export async function liveJobKeys(pool: pg.Pool): Promise<Set<string>> {
  const { rows } = await pool.query<{ key: string | null; task_identifier: string }>('select key, task_identifier from graphile_worker.jobs where attempts < max_attempts');
  const keys = new Set<string>();
  for (const r of rows) {
    if (r.key) keys.add(r.key);
    if (r.task_identifier === 'conversion_batch') keys.add('conversion_batch');
  }
  // The conversion batch also runs from cron: pending payments always have a next run coming.
  keys.add('conversion_batch');
  return keys;
}

export interface CheckReport {
  figures: string[];
  violations: string[];
}

export async function runChecks(db: DatabaseHandle, world: World, fleet: Fleet, channels: ChaosChannel[], payments: PlannedPayment[]): Promise<CheckReport> {
  const figures: string[] = [];
  const violations: string[] = [];
  const pool = db.pool;
  const fig = (line: string) => figures.push(line);
  const examples = (items: string[]) => items.slice(0, 5).join('; ') + (items.length > 5 ? `; … (${items.length} in all)` : '');

  // 1. Nothing lost.
  const outcomes = await classify(pool, payments);
  const live = await liveJobKeys(pool);
  const count = (s: Outcome['state']) => outcomes.filter((o) => o.state === s);
  const inFlight = count('in_flight');
  const queued = inFlight.filter((o) => o.jobKeys.some((k) => live.has(k)));
  const stuck = inFlight.filter((o) => !o.jobKeys.some((k) => live.has(k)));
  const lost = count('lost');
  fig(`payments: ${payments.length} planned, ${outcomes.length} acknowledged finished; paid out ${count('paid').length}, on channel below threshold ${count('on_channel').length}, held/review/failed with a reason ${count('visible').length}, still in flight with a job queued ${queued.length}, stuck without a job ${stuck.length}, lost ${lost.length}`);
  const visibleReasons = new Map<string, number>();
  for (const o of count('visible')) visibleReasons.set(o.detail.replace(/[0-9a-f-]{20,}|\d{4}-\d\d-\d\dT[^ ]+/g, '…'), (visibleReasons.get(o.detail.replace(/[0-9a-f-]{20,}|\d{4}-\d\d-\d\dT[^ ]+/g, '…')) ?? 0) + 1);
  for (const [reason, n] of visibleReasons) fig(`  visible: ${n} × ${reason}`);
  // After the bounded settle, work still in flight is not "visibly held with a reason": it did not finish in time.
  if (queued.length > 0) violations.push(`not settled: ${queued.length} payment(s) still in flight (a job is queued): ${examples(queued.map((o) => `${o.paymentId}: ${o.detail}`))}`);
  if (lost.length > 0) violations.push(`lost: ${lost.length} acknowledged payment(s): ${examples(lost.map((o) => `${o.paymentId}: ${o.detail}`))}`);
  if (stuck.length > 0) violations.push(`stuck: ${stuck.length} payment(s) in flight with no job to move them: ${examples(stuck.map((o) => `${o.paymentId}: ${o.detail}`))}`);

  const neverFinished = payments.filter((p) => p.shape === 'never_finished').map((p) => p.paymentId);
  const wronglyCredited = (await pool.query<{ id: string }>('select payment_id::text as id from payments where payment_id = any($1::numeric[]) and credited_at is not null', [neverFinished])).rows;
  fig(`never-finished payments: ${neverFinished.length}, credited ${wronglyCredited.length}`);
  if (wronglyCredited.length > 0) violations.push(`credited without a finished IPN: ${examples(wronglyCredited.map((r) => r.id))}`);

  // 2. Nothing twice: one exchange per conversion / payout, one transfer per exchange, chain agrees.
  const exchanges = [...world.sim.exchanges.values()];
  const byUser = new Map<string, number>();
  for (const ex of exchanges) byUser.set(ex.userId ?? '(none)', (byUser.get(ex.userId ?? '(none)') ?? 0) + 1);
  const doubleExchanges = [...byUser.entries()].filter(([, n]) => n > 1);
  fig(`ChangeNow exchanges: ${exchanges.length} for ${byUser.size} conversions/payouts; with more than one: ${doubleExchanges.length}`);
  if (doubleExchanges.length > 0) violations.push(`double exchange: ${examples(doubleExchanges.map(([u, n]) => `${u}: ${n} exchanges`))}`);

  const transfers = (await pool.query<{ purpose: string; ref: string; asset: string; to_address: string; amount: string; status: string; nonce: string | null }>(
    'select purpose, ref, asset, lower(to_address) as to_address, amount::text, status, nonce::text from chain_transfers',
  )).rows;
  const perRef = new Map<string, number>();
  for (const t of transfers) perRef.set(`${t.purpose}:${t.ref}`, (perRef.get(`${t.purpose}:${t.ref}`) ?? 0) + 1);
  const doubleTransfers = [...perRef.entries()].filter(([, n]) => n > 1);
  fig(`chain transfers: ${transfers.length} (${transfers.filter((t) => t.status === 'confirmed').length} confirmed); purposes with more than one: ${doubleTransfers.length}`);
  if (doubleTransfers.length > 0) violations.push(`double transfer record: ${examples(doubleTransfers.map(([r, n]) => `${r}: ${n}`))}`);

  // What each payin address holds on chain equals what payrail recorded sending it: a second send would show here.
  let payinMismatch = 0;
  const payinProblems: string[] = [];
  for (const ex of exchanges) {
    const sent = transfers.filter((t) => t.to_address === ex.payinAddress.toLowerCase() && t.status === 'confirmed').reduce((s, t) => s + BigInt(t.amount), 0n);
    const held = ex.fromCurrency === 'eth' ? await world.ethBalance(ex.payinAddress) : await world.usdtBalance(ex.payinAddress);
    if (held !== sent) {
      payinMismatch++;
      const statuses = transfers.filter((t) => t.to_address === ex.payinAddress.toLowerCase()).map((t) => t.status).join(',');
      payinProblems.push(`exchange ${ex.id} (${ex.userId}): payin holds ${held}, confirmed transfers ${sent} [${statuses || 'none'}]`);
    }
  }
  fig(`payin addresses whose on-chain balance differs from the confirmed transfers to them: ${payinMismatch} of ${exchanges.length}`);
  if (payinMismatch > 0) violations.push(`payin mismatch: ${examples(payinProblems)}`);

  const hostNonce = await world.nonce(world.hostAddress);
  const recorded = transfers.filter((t) => t.nonce !== null && t.status !== 'failed').length;
  fig(`host wallet: ${hostNonce} transactions on chain, ${recorded} signed transfers recorded (not failed)`);
  if (hostNonce !== recorded) violations.push(`host wallet sent ${hostNonce} transactions but payrail recorded ${recorded}`);

  // 3. Ledger clean, and what it says agrees with the chain.
  const ledger = await checkLedger(db.db);
  fig(`checkLedger: ${ledger.ok ? 'clean' : `${ledger.problems.length} problem(s)`} (${ledger.accounts} accounts, ${ledger.journals} journals, ${ledger.entries} entries)`);
  for (const p of ledger.problems) violations.push(`ledger ${p.rule}: ${p.subject}: ${p.detail}`);

  const directPayouts = (await pool.query<{ wallet: string; asset: string; completed: string; open: string }>(
    `select lower(wallet_address) as wallet, asset, coalesce(sum(amount) filter (where status = 'completed'), 0)::text as completed,
            count(*) filter (where status not in ('completed', 'failed', 'cancelled'))::text as open
     from payouts where exchange_id is null and payout_network = 'eth' group by 1, 2`,
  )).rows;
  let directBad = 0;
  for (const ch of channels.filter((c) => c.direct)) {
    const asset = ch.kind === 'instant_eth_direct' ? 'eth' : 'usdt';
    const row = directPayouts.find((r) => r.wallet === ch.wallet.toLowerCase() && r.asset === asset);
    const completed = BigInt(row?.completed ?? '0');
    const onChain = asset === 'eth' ? await world.ethBalance(ch.wallet) : await world.usdtBalance(ch.wallet);
    if (onChain !== completed) {
      directBad++;
      violations.push(`direct owner ${ch.wallet} (channel ${ch.id}): holds ${onChain} ${asset} on chain, completed direct payouts ${completed} (${row?.open ?? 0} still open)`);
    }
  }
  fig(`direct payout owners whose on-chain balance differs from their completed direct payouts: ${directBad} of ${channels.filter((c) => c.direct).length}`);

  // Host USDT: on chain = what ChangeNow paid it (conversions, USDT refunds) − USDT it sent; and the ledger's USDT
  // held by the platform (every non-world account) = that, plus USDT that left for payouts not yet booked out,
  // minus USDT that arrived but is not booked (conversions not settled, refunds of payouts not returned).
  const host = world.hostAddress.toLowerCase();
  const convStatus = new Map((await pool.query<{ id: string; status: string }>('select conversion_id as id, status from conversions')).rows.map((r) => [r.id, r.status]));
  const payoutStatus = new Map((await pool.query<{ id: string; status: string }>('select payout_id as id, status from payouts')).rows.map((r) => [r.id, r.status]));
  const units = (text: string | null) => (text === null ? 0n : toUnits(text, 6));
  let paidToHost = 0n;
  let unbooked = 0n;
  for (const ex of exchanges) {
    if (ex.status === 'finished' && ex.toCurrency === 'usdt' && ex.toNetwork === 'eth' && ex.payoutAddress.toLowerCase() === host) {
      const amount = units(ex.amountTo) - (ex.forcedEnd === 'short_payout' ? 1n : 0n);
      paidToHost += amount;
      if (convStatus.get(ex.userId ?? '') !== 'completed') unbooked += amount;
    }
    if (ex.status === 'refunded' && ex.refundHash && ex.fromCurrency === 'usdt' && (ex.refundAddress ?? '').toLowerCase() === host) {
      const amount = units(ex.amountFrom);
      paidToHost += amount;
      if (payoutStatus.get(ex.userId ?? '') !== 'failed') unbooked += amount;
    }
  }
  const usdtSent = transfers.filter((t) => t.asset === 'usdt' && t.status === 'confirmed').reduce((s, t) => s + BigInt(t.amount), 0n);
  const leftNotBooked = (await pool.query<{ n: string }>(
    `select coalesce(sum(t.amount), 0)::text as n from chain_transfers t join payouts p on p.transfer_id = t.transfer_id
     where t.asset = 'usdt' and t.status = 'confirmed' and p.status not in ('completed', 'failed', 'cancelled')`,
  )).rows[0]?.n ?? '0';
  const hostUsdt = await world.usdtBalance(world.hostAddress);
  fig(`host USDT on chain ${hostUsdt}; ChangeNow paid it ${paidToHost}, it sent ${usdtSent}`);
  if (hostUsdt !== paidToHost - usdtSent) violations.push(`host USDT on chain ${hostUsdt} ≠ received ${paidToHost} − sent ${usdtSent}`);
  const ledgerHeld = BigInt((await pool.query<{ n: string }>("select coalesce(sum(balance), 0)::text as n from ledger_accounts where asset = 'usdt' and code not like 'world:%'")).rows[0]?.n ?? '0');
  const expected = hostUsdt + BigInt(leftNotBooked) - unbooked;
  fig(`ledger USDT held by the platform ${ledgerHeld}; expected from the chain ${expected} (host ${hostUsdt} + left for open payouts ${leftNotBooked} − arrived unbooked ${unbooked})`);
  if (ledgerHeld !== expected) violations.push(`ledger USDT ${ledgerHeld} ≠ chain-derived ${expected}`);

  // 4. No job failed for good without an alert: a stored job_failed_permanently alert (open, or resolved once a later
  // periodic run superseded the job) for every job out of attempts. The run waits for an alert pass after settling.
  const failed = (await pool.query<{ id: string; task_identifier: string; last_error: string | null }>('select id::text, task_identifier, last_error from graphile_worker.jobs where attempts >= max_attempts and locked_at is null')).rows;
  const stored = (await pool.query<{ subject: string; open: boolean }>("select subject, resolved_at is null as open from alerts where rule = 'job_failed_permanently'")).rows;
  const alerted = new Set(stored.map((a) => a.subject));
  const silent = failed.filter((j) => !alerted.has(j.id));
  fig(`jobs failed permanently: ${failed.length} (${[...new Set(failed.map((j) => j.task_identifier))].join(', ') || 'none'}); job_failed_permanently alerts stored: ${stored.length} (${stored.filter((a) => a.open).length} open); failed without an alert: ${silent.length}`);
  if (silent.length > 0) violations.push(`job failed permanently without an alert: ${examples(silent.map((j) => `${j.task_identifier} #${j.id}: ${j.last_error ?? ''}`))}`);
  const storedByRule = (await pool.query<{ rule: string; n: number; open: number }>('select rule, count(*)::int as n, count(*) filter (where resolved_at is null)::int as open from alerts group by rule order by rule')).rows;
  fig(`alerts stored: ${storedByRule.map((r) => `${r.rule} ×${r.n} (${r.open} open)`).join(', ') || 'none'}`);
  const otherAlerts = new Map<string, number>();
  for (const l of fleet.alerts()) otherAlerts.set(String(l.json?.alert), (otherAlerts.get(String(l.json?.alert)) ?? 0) + 1);
  fig(`alerts logged: ${[...otherAlerts.entries()].map(([a, n]) => `${a} ×${n}`).join(', ') || 'none'}`);

  return { figures, violations };
}

/** "12.5" with 6 decimals → 12500000n (exact; more decimals than `decimals` is an error). */
function toUnits(text: string, decimals: number): bigint {
  const [whole = '0', frac = ''] = text.split('.');
  if (frac.length > decimals) throw new Error(`${text} has more than ${decimals} decimals`);
  return BigInt(whole) * 10n ** BigInt(decimals) + BigInt(frac.padEnd(decimals, '0') || '0');
}

/** What the queue looks like, for a failed run's log: jobs by task and lock, locked queues, heartbeats. */
export async function diagnostics(pool: pg.Pool): Promise<string[]> {
  const q = async (title: string, text: string) => {
    const { rows } = await pool.query(text);
    return [`-- ${title}`, ...rows.map((r) => JSON.stringify(r))];
  };
  return [
    ...(await q('jobs', `select task_identifier, queue_name, locked_by is not null as locked, count(*)::int as n, min(run_at) as first_run_at, max(attempts) as max_attempts_used, min(locked_at) as oldest_lock, max(last_error) as an_error
                         from graphile_worker.jobs group by 1, 2, 3 order by 1`)),
    ...(await q('locked queues', 'select queue_name, locked_at, locked_by from graphile_worker._private_job_queues where locked_by is not null')),
    ...(await q('worker heartbeats', 'select worker_id, last_seen_at, queue_worker_ids from worker_heartbeats')),
    ...(await q('open payouts', "select payout_id, kind, status, attempts, last_error, updated_at from payouts where status not in ('completed','failed','cancelled') order by updated_at limit 15")),
    ...(await q('open transfers', "select transfer_id, purpose, status, nonce, attempts, last_error from chain_transfers where status <> 'confirmed' order by created_at limit 15")),
  ];
}
