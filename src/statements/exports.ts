/**
 * Accounting exports as CSV, streamed: payments credited, payouts created, and ledger entries booked in a time range.
 * However long the range, memory stays flat: rows are read in batches of EXPORT_BATCH, each batch after the last row
 * of the one before (keyset on a unique key, served by the indexes of migration 022), and each batch is written out
 * before the next is read: the generator runs only as fast as its reader takes lines.
 *
 * All batches are read in one read-only repeatable-read snapshot, so an export is one moment's view: rows booked
 * while it runs are not in it, and its sums agree with each other and with what check-ledger saw at that moment. A
 * reader that stops reading for longer than EXPORT_IDLE ends the export (the database ends the idle transaction and
 * the response is cut short, never silently completed).
 */
import { sql, type RawBuilder, type Transaction } from 'kysely';
import type { Database, Db } from '../db/index.ts';
import { decimalsOf, formatUnits, isAssetCode } from '../money/index.ts';
import { csvLine } from './csv.ts';
import type { TimeRange } from './range.ts';

export const EXPORTS = ['payments', 'payouts', 'ledger'] as const;
export type ExportName = (typeof EXPORTS)[number];

/** Rows per query: large enough that round trips do not dominate, small enough that a batch is a few hundred KiB. */
export const EXPORT_BATCH = 1000;
const EXPORT_IDLE = '2min';
const STATEMENT_TIMEOUT = '60s';

/** µs and UTC: timestamptz keeps microseconds, which a JS Date would cut (the keyset needs them exact). */
const ISO_UTC = sql.raw(`'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`);
const iso = (column: string) => sql`to_char(${sql.ref(column)} at time zone 'UTC', ${ISO_UTC})`;

/** Where the previous batch ended: its last row's time (exact text) and unique id. */
type Cursor = { at: string; id: string } | null;

interface ExportSpec {
  readonly columns: readonly string[];
  /** One batch after `cursor`, in key order. */
  batch(trx: Transaction<Database>, range: TimeRange, cursor: Cursor, limit: number): Promise<Row[]>;
  /** The key of a batch's last row: the next batch starts after it. */
  cursorOf(row: Row): Cursor;
  line(row: Row): Array<string | null | undefined>;
}

type Row = Record<string, string | null>;

/** An amount in smallest units as a plain decimal in its asset (smallest units when the asset is not one payrail knows). */
function amount(units: string | null | undefined, asset: string | null | undefined): string | null {
  if (units === null || units === undefined) return null;
  return typeof asset === 'string' && isAssetCode(asset) ? formatUnits(BigInt(units), decimalsOf(asset)) : units;
}

function after(cursor: Cursor, at: string, id: string, idType: 'numeric' | 'text' | 'bigint'): RawBuilder<unknown> {
  if (cursor === null) return sql`true`;
  return sql`(${sql.ref(at)}, ${sql.ref(id)}) > (${cursor.at}::timestamptz, ${cursor.id}::${sql.raw(idType)})`;
}

const payments: ExportSpec = {
  columns: [
    'payment_id',
    'channel_id',
    'credited_at',
    'created_at',
    'status',
    'asset',
    'gross',
    'fee',
    'net',
    'fee_percent',
    'payout_strategy',
    'conversion_id',
    'usdt_amount',
    'conversion_rate',
    'exchange_cost',
    'payout_id',
    'reversed_at',
    'parent_payment_id',
    'invoice_id',
    'price_amount',
    'price_currency',
    'outcome_amount',
    'outcome_currency',
  ],
  async batch(trx, range, cursor, limit) {
    const { rows } = await sql<Row>`
      select p.payment_id::text as payment_id, p.channel_id, ${iso('p.credited_at')} as credited_at,
             ${iso('p.created_at')} as created_at, p.status, p.asset, p.gross_amount::text as gross,
             p.fee_amount::text as fee, p.net_amount::text as net, p.fee_percent::text as fee_percent, p.payout_strategy,
             p.conversion_id, p.usdt_amount::text as usdt_amount, p.conversion_rate::text as conversion_rate,
             p.exchange_cost_wei::text as exchange_cost, p.payout_id, ${iso('p.reversed_at')} as reversed_at,
             p.parent_payment_id::text as parent_payment_id, p.invoice_id::text as invoice_id,
             p.price_amount::text as price_amount, p.price_currency, p.outcome_amount::text as outcome_amount,
             p.outcome_currency
      from payments p
      where p.credited_at >= ${range.from} and p.credited_at < ${range.to} and ${after(cursor, 'p.credited_at', 'p.payment_id', 'numeric')}
      order by p.credited_at, p.payment_id limit ${limit}`.execute(trx);
    return rows;
  },
  cursorOf: (row) => ({ at: row.credited_at as string, id: row.payment_id as string }),
  line: (r) => [
    r.payment_id,
    r.channel_id,
    r.credited_at,
    r.created_at,
    r.status,
    r.asset,
    amount(r.gross, r.asset),
    amount(r.fee, r.asset),
    amount(r.net, r.asset),
    r.fee_percent,
    r.payout_strategy,
    r.conversion_id,
    amount(r.usdt_amount, 'usdt'),
    r.conversion_rate,
    amount(r.exchange_cost, r.asset),
    r.payout_id,
    r.reversed_at,
    r.parent_payment_id,
    r.invoice_id,
    r.price_amount,
    r.price_currency,
    r.outcome_amount,
    r.outcome_currency,
  ],
};

const payouts: ExportSpec = {
  columns: [
    'payout_id',
    'kind',
    'channel_id',
    'payment_id',
    'created_at',
    'completed_at',
    'status',
    'asset',
    'amount',
    'payout_currency',
    'payout_network',
    'wallet_address',
    'exchange_id',
    'expected_amount_out',
    'amount_out',
    'payin_hash',
    'payout_hash',
  ],
  async batch(trx, range, cursor, limit) {
    const { rows } = await sql<Row>`
      select po.payout_id, po.kind, po.channel_id, po.payment_id::text as payment_id,
             ${iso('po.created_at')} as created_at, ${iso('po.completed_at')} as completed_at, po.status, po.asset,
             po.amount::text as amount, po.payout_currency, po.payout_network, po.wallet_address, po.exchange_id,
             po.expected_amount_out, po.amount_out, t.tx_hash as payin_hash, po.payout_hash
      from payouts po left join chain_transfers t on t.transfer_id = po.transfer_id
      where po.created_at >= ${range.from} and po.created_at < ${range.to} and ${after(cursor, 'po.created_at', 'po.payout_id', 'text')}
      order by po.created_at, po.payout_id limit ${limit}`.execute(trx);
    return rows;
  },
  cursorOf: (row) => ({ at: row.created_at as string, id: row.payout_id as string }),
  line: (r) => [
    r.payout_id,
    r.kind,
    r.channel_id,
    r.payment_id,
    r.created_at,
    r.completed_at,
    r.status,
    r.asset,
    amount(r.amount, r.asset),
    r.payout_currency,
    r.payout_network,
    r.wallet_address,
    r.exchange_id,
    r.expected_amount_out,
    r.amount_out,
    r.payin_hash,
    r.payout_hash,
  ],
};

/**
 * Entries by journal: a batch is EXPORT_BATCH journals (two or three entries each, a conversion's one per channel),
 * with all of their entries, so a journal is never split across batches and a range holds whole journals.
 */
const ledger: ExportSpec = {
  columns: ['entry_id', 'journal_id', 'time', 'journal_kind', 'journal_ref', 'account', 'asset', 'amount'],
  async batch(trx, range, cursor, limit) {
    const { rows } = await sql<Row>`
      with j as (
        select j.id, j.kind, j.ref, j.created_at from ledger_journals j
        where j.created_at >= ${range.from} and j.created_at < ${range.to} and ${after(cursor, 'j.created_at', 'j.id', 'bigint')}
        order by j.created_at, j.id limit ${limit})
      select e.id::text as entry_id, j.id::text as journal_id, ${iso('j.created_at')} as time, j.kind as journal_kind,
             j.ref as journal_ref, a.code as account, a.asset, e.amount::text as amount
      from j join ledger_entries e on e.journal_id = j.id join ledger_accounts a on a.id = e.account_id
      order by j.created_at, j.id, e.id`.execute(trx);
    return rows;
  },
  cursorOf: (row) => ({ at: row.time as string, id: row.journal_id as string }),
  line: (r) => [
    r.entry_id,
    r.journal_id,
    r.time,
    r.journal_kind,
    r.journal_ref,
    r.account,
    r.asset,
    amount(r.amount, r.asset),
  ],
};

const SPECS: Record<ExportName, ExportSpec> = { payments, payouts, ledger };

/**
 * The export's CSV text, a header line then one chunk per batch. Stop reading it (return()) to end it early: the
 * snapshot is released either way.
 */
export async function* exportCsv(
  db: Db,
  name: ExportName,
  range: TimeRange,
  options: { batch?: number } = {},
): AsyncGenerator<string, void, undefined> {
  const spec = SPECS[name];
  const limit = options.batch ?? EXPORT_BATCH;
  const trx = await db.startTransaction().setIsolationLevel('repeatable read').setAccessMode('read only').execute();
  let committed = false;
  try {
    await sql`select set_config('statement_timeout', ${STATEMENT_TIMEOUT}, true),
                     set_config('idle_in_transaction_session_timeout', ${EXPORT_IDLE}, true)`.execute(trx);
    yield csvLine(spec.columns);
    let cursor: Cursor = null;
    for (;;) {
      const rows = await spec.batch(trx, range, cursor, limit);
      if (rows.length === 0) break;
      yield rows.map((r) => csvLine(spec.line(r))).join('');
      const last = rows[rows.length - 1] as Row;
      cursor = spec.cursorOf(last);
      // A short batch is the last one (the ledger's batches are counted in journals, not rows).
      const keys = name === 'ledger' ? new Set(rows.map((r) => r.journal_id)).size : rows.length;
      if (keys < limit) break;
    }
    await trx.commit().execute();
    committed = true;
  } finally {
    if (!committed)
      await trx
        .rollback()
        .execute()
        .catch(() => undefined);
  }
}
