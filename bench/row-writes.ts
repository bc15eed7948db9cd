/**
 * Row versions the run wrote, per payment, from PostgreSQL's table counters: how often the pipeline rewrites a row,
 * and how much of that stays on its page without touching an index (a heap-only update). These are counts, not
 * timings, so they compare two commits on a busy machine as well as on a quiet one, and they show a change in the
 * database's work per payment that the run's throughput is too noisy to show.
 */
import type { DatabaseHandle } from '../src/db/index.ts';
import { table } from './shared.ts';

/** The tables a payment's way through the pipeline writes, the ledger's included. */
const TABLES = [
  'payments',
  'conversion_payments',
  'conversions',
  'payouts',
  'chain_transfers',
  'ledger_journals',
  'ledger_entries',
  'ledger_accounts',
  'ledger_channel_days',
] as const;

export interface TableWrites {
  table: string;
  inserted: bigint;
  updated: bigint;
  /** Updates that wrote no index entry: the new version on the same page, no indexed column changed. */
  heapOnly: bigint;
  /** Updates whose new version went to another page (PostgreSQL 16 and later count them). */
  newPage: bigint;
}

type Counters = Map<string, TableWrites>;

/** The tables' counters, and the write-ahead log the whole cluster wrote (the setup's included). */
export interface RowWrites {
  tables: TableWrites[];
  walRecords: bigint;
  walBytes: bigint;
}

async function readCounters(database: DatabaseHandle): Promise<Counters> {
  const { rows } = await database.pool.query<{
    relname: string;
    ins: string;
    upd: string;
    hot: string;
    newpage: string;
  }>(
    `select relname, n_tup_ins::text as ins, n_tup_upd::text as upd, n_tup_hot_upd::text as hot,
            n_tup_newpage_upd::text as newpage
       from pg_stat_user_tables where schemaname = 'public' and relname = any ($1::text[])`,
    [[...TABLES]],
  );
  return new Map(
    rows.map((r) => [
      r.relname,
      {
        table: r.relname,
        inserted: BigInt(r.ins),
        updated: BigInt(r.upd),
        heapOnly: BigInt(r.hot),
        newPage: BigInt(r.newpage),
      },
    ]),
  );
}

/**
 * The counters once payrail has stopped. A session reports its counts when it goes idle, but not within a second of
 * its last report, and then only after 10 s more idle (PostgreSQL's PGSTAT_IDLE_INTERVAL), or as it ends: so the
 * caller stops payrail first, and the sessions' ends are waited for here (they end as PostgreSQL notices the closed
 * connections).
 */
export async function readRowWrites(database: DatabaseHandle): Promise<RowWrites> {
  // Every session but the bench's own (its pool is named payrail-bench-driver).
  const others = `select count(*)::int as n from pg_stat_activity
                   where backend_type = 'client backend' and datname = current_database()
                     and application_name <> 'payrail-bench-driver'`;
  for (let i = 0; i < 100; i++) {
    const { rows } = await database.pool.query<{ n: number }>(others);
    if (rows[0]?.n === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const counters = await readCounters(database);
  const { rows } = await database.pool.query<{ records: string; bytes: string }>(
    'select wal_records::text as records, wal_bytes::text as bytes from pg_stat_wal',
  );
  return {
    tables: TABLES.flatMap((name) => counters.get(name) ?? []),
    walRecords: BigInt(rows[0]?.records ?? '0'),
    walBytes: BigInt(rows[0]?.bytes ?? '0'),
  };
}

/** Hundredths of a row per payment, as text: counts, not money, but kept exact all the same. */
function perPayment(count: bigint, payments: bigint): string {
  const hundredths = (count * 100n + payments / 2n) / payments;
  return `${hundredths / 100n}.${String(hundredths % 100n).padStart(2, '0')}`;
}

function share(part: bigint, whole: bigint): string {
  return whole === 0n ? '–' : `${((part * 100n + whole / 2n) / whole).toString()} %`;
}

export function rowWritesLines(writes: RowWrites, payments: number): string[] {
  const n = BigInt(payments);
  return [
    table(
      ['table', 'inserted / payment', 'updated / payment', 'heap-only updates', 'updates to another page'],
      writes.tables.map((w) => [
        w.table,
        perPayment(w.inserted, n),
        perPayment(w.updated, n),
        share(w.heapOnly, w.updated),
        share(w.newPage, w.updated),
      ]),
    ),
    `write-ahead log per payment: ${perPayment(writes.walRecords, n)} records, ${perPayment(writes.walBytes, n)} bytes`,
  ];
}
