/**
 * The database's side of /metrics, in two reads of different cost.
 *
 * Live figures are read at every scrape and cost what is open, not what happened: conversions (one row per batch),
 * open payouts (their partial index), the queue, open alerts, observations. History figures count every payment and
 * every ended payout, which no index makes cheap: with 300,000 payments, counting payments by status reads 330 MB of
 * heap (≈ 180 ms), and even an index on status would still count every row. So they are read at most once per
 * HISTORY_MAX_AGE_MS per process, without parallel workers, and their age is published with them.
 *
 * Each read is one read-only, repeatable-read transaction (its figures agree with each other) with a statement
 * timeout (a slow database cannot hold a scrape or a pooled connection for long). Amounts stay bigint smallest
 * units; counts are plain numbers.
 */
import { sql, type Transaction } from 'kysely';
import type { Database, Db } from '../db/index.ts';
import { queueStats, type TaskQueueStats } from '../jobs/index.ts';

const STATEMENT_TIMEOUT = '5s';
export const HISTORY_MAX_AGE_MS = 60_000;

/**
 * The workers' alerts cron refreshes each observation once per ALERT_INTERVAL. One missed refresh is a slow or busy
 * worker; three mean nobody is looking any more (no worker, its cron failing), and the last value, however good it
 * was, says nothing about now.
 */
const STALE_AFTER_INTERVALS = 3;

export function observationStaleAfterSeconds(alertIntervalMs: number): number {
  return (STALE_AFTER_INTERVALS * alertIntervalMs) / 1_000;
}

export interface Observation {
  readonly ok: boolean;
  readonly value: string | null;
  readonly ageSeconds: number;
}

export interface LiveFigures {
  readonly conversionsByState: ReadonlyArray<{ state: string; count: number }>;
  readonly openPayouts: ReadonlyArray<{ state: string; kind: string; count: number }>;
  readonly queue: readonly TaskQueueStats[];
  readonly alertsFiring: ReadonlyArray<{ rule: string; severity: string; count: number }>;
  /** Completed conversions: the ETH that went in and the USDT that came out, smallest units. */
  readonly converted: { readonly eth: bigint; readonly usdt: bigint };
  readonly observations: ReadonlyMap<string, Observation>;
}

export interface HistoryFigures {
  readonly paymentsByStatus: ReadonlyArray<{ status: string; count: number }>;
  readonly endedPayouts: ReadonlyArray<{ state: string; kind: string; count: number }>;
  /** Completed payouts by payrail's asset (what left the host wallet for the owner), smallest units. */
  readonly paidOut: ReadonlyArray<{ asset: string; units: bigint }>;
  /** When this read was made, by the clock the caller passed (milliseconds). */
  readonly readAt: number;
}

function snapshot<T>(db: Db, read: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
  return db
    .transaction()
    .setIsolationLevel('repeatable read')
    .setAccessMode('read only')
    .execute(async (trx) => {
      await sql`set local statement_timeout = ${sql.lit(STATEMENT_TIMEOUT)}`.execute(trx);
      return read(trx);
    });
}

export function readLiveFigures(db: Db): Promise<LiveFigures> {
  return snapshot(db, async (trx) => {
    const conversions = await sql<{
      status: string;
      n: number;
    }>`select status, count(*)::int as n from conversions group by status`.execute(trx);
    const payouts = await sql<{ status: string; kind: string; n: number }>`
      select status, kind, count(*)::int as n from payouts
      -- Written as the payouts_open index's own predicate (literals, not parameters), so the planner uses it.
      where status not in ('completed', 'failed', 'cancelled') group by status, kind`.execute(trx);
    const converted = await sql<{ eth: string; usdt: string }>`
      select coalesce(sum(amount_wei), 0)::text as eth, coalesce(sum(usdt_received), 0)::text as usdt
      from conversions where status = 'completed'`.execute(trx);
    const alerts = await sql<{ rule: string; severity: string; n: number }>`
      select rule, severity, count(*)::int as n from alerts where resolved_at is null group by rule, severity`.execute(
      trx,
    );
    const observations = await sql<{ name: string; ok: boolean; value: string | null; age: string }>`
      select name, ok, value, greatest(0, extract(epoch from now() - observed_at))::text as age from observations`.execute(
      trx,
    );
    const queue = await queueStats(trx);
    const totals = converted.rows[0] ?? { eth: '0', usdt: '0' };
    return {
      conversionsByState: conversions.rows.map((r) => ({ state: r.status, count: r.n })),
      openPayouts: payouts.rows.map((r) => ({ state: r.status, kind: r.kind, count: r.n })),
      queue,
      alertsFiring: alerts.rows.map((r) => ({ rule: r.rule, severity: r.severity, count: r.n })),
      converted: { eth: BigInt(totals.eth), usdt: BigInt(totals.usdt) },
      observations: new Map(
        observations.rows.map((r) => [r.name, { ok: r.ok, value: r.value, ageSeconds: Number(r.age) }]),
      ),
    };
  });
}

export function readHistoryFigures(db: Db, now: () => number = Date.now): Promise<HistoryFigures> {
  return snapshot(db, async (trx) => {
    // A scan of the whole history must not take every core from intake for its duration.
    await sql`set local max_parallel_workers_per_gather = 0`.execute(trx);
    const payments = await sql<{
      status: string;
      n: number;
    }>`select status, count(*)::int as n from payments group by status`.execute(trx);
    const payouts = await sql<{ status: string; kind: string; asset: string; n: number; units: string }>`
      select status, kind, asset, count(*)::int as n, sum(amount)::text as units
      from payouts where status in ('completed', 'failed', 'cancelled') group by status, kind, asset`.execute(trx);
    const ended = new Map<string, { state: string; kind: string; count: number }>();
    const paidOut = new Map<string, bigint>();
    for (const row of payouts.rows) {
      const key = `${row.status}/${row.kind}`;
      const entry = ended.get(key) ?? { state: row.status, kind: row.kind, count: 0 };
      entry.count += row.n;
      ended.set(key, entry);
      if (row.status === 'completed') paidOut.set(row.asset, (paidOut.get(row.asset) ?? 0n) + BigInt(row.units));
    }
    return {
      paymentsByStatus: payments.rows.map((r) => ({ status: r.status, count: r.n })),
      endedPayouts: [...ended.values()],
      paidOut: [...paidOut].map(([asset, units]) => ({ asset, units })),
      readAt: now(),
    };
  });
}
