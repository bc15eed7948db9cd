/**
 * Progress per stage on stderr, read from payrail's tables: invoices created by checkout and paid at NOWPayments,
 * payments credited, threshold payments converted to USDT, payments paid out (or converted and waiting below their
 * channel's threshold). On a terminal the bars redraw in
 * place; anywhere else (a log, a test) one line per update, every few seconds, so the output stays readable.
 */
import type pg from 'pg';
import { liveJobCountSql } from '../jobs/index.ts';
import { USDT_UNITS_PER_CENT } from '../pipeline/index.ts';

/**
 * One row per channel with converted threshold payments in no payout: how many (`n`), their USDT, the channel's
 * available USDT (`balance`) and threshold, what of the channel is still unconverted or in an open payout, and `waits`
 * (1 or 0): whether these payments legitimately wait, as the threshold strategy makes them: nothing of the channel
 * pending, converting or in an open payout, and its available USDT below its threshold. Such a balance waits for more
 * money; nothing in payrail moves it on, and nothing should.
 */
export const UNPAID_BY_CHANNEL_SQL = `
  select u.*,
         case when u.threshold_cents is not null and u.unconverted = 0 and u.open_payouts = 0
                   and u.balance::numeric < u.threshold_cents::numeric * ${USDT_UNITS_PER_CENT} then 1 else 0 end as waits
  from (
    select w.channel_id, w.n::int as n, w.usdt::text as usdt, coalesce(a.balance, 0)::text as balance, c.threshold_usd_cents::text as threshold_cents,
           (select count(*)::int from payments q where q.channel_id = w.channel_id and q.conversion_status in ('pending', 'converting')) as unconverted,
           (select count(*)::int from payouts o where o.channel_id = w.channel_id and o.status not in ('completed', 'failed', 'cancelled')) as open_payouts
    from (select channel_id, count(*) as n, coalesce(sum(usdt_amount), 0) as usdt
          from payments where payout_strategy = 'threshold' and conversion_status = 'completed' and payout_id is null group by 1) w
    left join channels c on c.channel_id = w.channel_id
    left join ledger_accounts a on a.code = 'channel:' || w.channel_id and a.asset = 'usdt'
  ) u
  order by u.channel_id`;

/** Periodic or demo-queued work that runs whether or not anything is open: not a sign that the run moves on. */
const IDLE_TASKS = ['conversion_batch', 'reconcile', 'alerts_evaluate', 'alert_notify'];

/** Counts of rows (never amounts). */
export interface StageCounts {
  /** Invoices checkout created (POST /api/invoices). */
  invoices: number;
  /** Payments whose `finished` IPN payrail has: paid at NOWPayments, credited once its API agrees. */
  paid: number;
  /** Payments credited to their channel (after NOWPayments' API confirmed them). */
  credited: number;
  thresholdReceived: number;
  pendingConversion: number;
  converting: number;
  converted: number;
  conversions: number;
  conversionsCompleted: number;
  /** needs_review: nothing moves them on without a person. */
  conversionsBlocked: number;
  paidOut: number;
  /** Converted threshold payments in no payout whose channel legitimately waits below its threshold (UNPAID_BY_CHANNEL_SQL). */
  waiting: number;
  /** Conversions neither completed nor ended (failed, needs_review). */
  conversionsOpen: number;
  /** Host-wallet transfers neither confirmed nor failed. */
  transfersOpen: number;
  /** Pipeline jobs queued or running that can still run (not the periodic checks). */
  jobsQueued: number;
  payouts: number;
  payoutsCompleted: number;
  payoutsOpen: number;
  payoutsHeld: number;
  /** needs_review, failed, cancelled or awaiting_approval: the demo cannot wait these out. */
  payoutsBlocked: number;
  paymentsInReview: number;
}

export async function readCounts(pool: pg.Pool): Promise<StageCounts> {
  const { rows } = await pool.query<StageCounts>(
    `select
       (select count(*)::int from invoices) as invoices,
       (select count(*)::int from payments where status = 'finished') as paid,
       (select count(*)::int from payments where credited_at is not null) as credited,
       (select count(*)::int from payments where payout_strategy = 'threshold') as "thresholdReceived",
       (select count(*)::int from payments where conversion_status = 'pending') as "pendingConversion",
       (select count(*)::int from payments where conversion_status = 'converting') as converting,
       (select count(*)::int from payments where payout_strategy = 'threshold' and conversion_status = 'completed') as converted,
       (select count(*)::int from conversions) as conversions,
       (select count(*)::int from conversions where status = 'completed') as "conversionsCompleted",
       (select count(*)::int from conversions where status = 'needs_review') as "conversionsBlocked",
       (select count(*)::int from payments p join payouts po on po.payout_id = p.payout_id where po.status = 'completed') as "paidOut",
       (select coalesce(sum(n), 0)::int from (${UNPAID_BY_CHANNEL_SQL}) u where u.waits = 1) as waiting,
       (select count(*)::int from conversions where status not in ('completed', 'failed', 'needs_review')) as "conversionsOpen",
       (select count(*)::int from chain_transfers where status not in ('confirmed', 'failed')) as "transfersOpen",
       ${liveJobCountSql('$1')} as "jobsQueued",
       (select count(*)::int from payouts) as payouts,
       (select count(*)::int from payouts where status = 'completed') as "payoutsCompleted",
       (select count(*)::int from payouts where status not in ('completed', 'failed', 'cancelled')) as "payoutsOpen",
       (select count(*)::int from payouts where status = 'held') as "payoutsHeld",
       (select count(*)::int from payouts where status in ('needs_review', 'failed', 'cancelled', 'awaiting_approval')) as "payoutsBlocked",
       (select count(*)::int from payments where review_reason is not null) as "paymentsInReview"`,
    [IDLE_TASKS],
  );
  return rows[0] as StageCounts;
}

export interface Totals {
  payments: number;
  thresholdPayments: number;
}

const BAR_WIDTH = 30;
/** Not on a terminal: one line at most this often (and whenever the note changes). */
const LINE_EVERY_MS = 3_000;

export function bar(done: number, total: number): string {
  const filled = total <= 0 ? BAR_WIDTH : Math.min(BAR_WIDTH, Math.floor((done * BAR_WIDTH) / total));
  return `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}]`;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1).padStart(6)} s`;
}

export class ProgressDisplay {
  private drawnLines = 0;
  private lastLineAt = 0;
  private lastNote: string | undefined;

  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly totals: Totals,
    private readonly tty: boolean,
  ) {}

  /** The bars, as drawn on a terminal. */
  lines(c: StageCounts, elapsedMs: number, note: string | undefined): string[] {
    const width = String(this.totals.payments).length;
    const n = (x: number) => String(x).padStart(width);
    return [
      `payrail demo ${seconds(elapsedMs)}`,
      `  invoices paid       ${bar(c.paid, this.totals.payments)} ${n(c.paid)}/${this.totals.payments}  (${c.invoices} created by checkout, paid in the NOWPayments simulator)`,
      `  payments credited   ${bar(c.credited, this.totals.payments)} ${n(c.credited)}/${this.totals.payments}  (each once NOWPayments' API confirmed it)`,
      `  converted to USDT   ${bar(c.converted, this.totals.thresholdPayments)} ${n(c.converted)}/${this.totals.thresholdPayments} threshold payments  (${c.conversionsCompleted} of ${c.conversions} conversions completed)`,
      `  payouts completed   ${bar(c.paidOut, this.totals.payments)} ${n(c.paidOut)}/${this.totals.payments} payments paid out  (${c.payoutsCompleted} of ${c.payouts} payouts completed; ${c.waiting} converted and waiting below their channel's threshold)`,
      `  ${note ?? ''}`,
    ];
  }

  /** One line for a log. */
  line(c: StageCounts, elapsedMs: number, note: string | undefined): string {
    return `[${seconds(elapsedMs)}] invoices ${c.invoices}/${this.totals.payments} (${c.paid} paid) | credited ${c.credited}/${this.totals.payments} | converted ${c.converted}/${this.totals.thresholdPayments} (${c.conversionsCompleted}/${c.conversions} conversions) | paid out ${c.paidOut}/${this.totals.payments} (${c.payoutsCompleted}/${c.payouts} payouts), ${c.waiting} waiting below threshold${note ? ` | ${note}` : ''}`;
  }

  update(c: StageCounts, elapsedMs: number, note: string | undefined, final = false): void {
    if (this.tty) {
      const lines = this.lines(c, elapsedMs, note);
      // Back to the first line of the last drawing, then each line cleared and written again.
      const up = this.drawnLines > 0 ? `\x1b[${this.drawnLines}F` : '';
      this.out.write(up + lines.map((l) => `\x1b[2K${l}\n`).join(''));
      this.drawnLines = lines.length;
      return;
    }
    const now = Date.now();
    // A note whose only change is a countdown is not news.
    const noteKind = note?.replace(/[0-9]+/g, '#');
    if (!final && noteKind === this.lastNote && now - this.lastLineAt < LINE_EVERY_MS) return;
    this.lastLineAt = now;
    this.lastNote = noteKind;
    this.out.write(`${this.line(c, elapsedMs, note)}\n`);
  }
}
