/**
 * A statement's lines a page at a time, in booking order: the journals that moved the channel's accounts in the
 * range, keyed by (time, journal id), each page starting after the key the previous one ended on. A payout booked in
 * several journals in the range (set aside, topped up, completed) is one line, placed at its latest journal there:
 * its earlier journals are not lines of their own, and the line carries them all.
 *
 * Each page reads what it lists (the channel's entries from the key on, by the (account, time) index, and the
 * journals they belong to), never the part of the range before it, so a page costs the same anywhere in any range.
 */
import { sql, type Transaction } from 'kysely';
import type { Database, PaymentStatus, PayoutStatus } from '../db/index.ts';
import type { LineKey } from './cursor.ts';
import type { TimeRange } from './range.ts';
import type { ChannelAccounts } from './totals.ts';

/** µs and UTC: timestamptz keeps microseconds, which a JS Date would cut (keys must be exact). */
const ISO_UTC = sql.raw(`'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`);
const PAYMENT_KINDS = ['payment_received', 'payment_topped_up', 'payment_reversed'];
/** A payout's journals that make its line; payout_returned is a line of its own. */
const PAYOUT_LINE_KINDS = ['payout_reserved', 'payout_topped_up', 'payout_completed'];
const PAYOUT_KINDS = [...PAYOUT_LINE_KINDS, 'payout_returned'];
/**
 * The payout kinds as literals, not parameters: only then can the planner see that a query's kinds are those of the
 * partial index ledger_journals_payout (migration 027), and look a payout's journals up in it.
 */
const PAYOUT_LINE_KINDS_SQL = sql.join(PAYOUT_LINE_KINDS.map((kind) => sql.lit(kind)));

export type JournalRow = {
  journal_id: string;
  kind: string;
  ref: string;
  asset: string;
  available: string;
  reserved: string;
  at: string;
  gross: string | null;
  fee: string | null;
  payment_id: string | null;
  payment_status: PaymentStatus | null;
  fee_percent: string | null;
  conversion_id: string | null;
  rate: string | null;
  payout_id: string | null;
  payout_kind: 'threshold' | 'instant' | null;
  payout_status: PayoutStatus | null;
  payout_amount: string | null;
  payout_currency: string | null;
  payout_network: string | null;
  wallet_address: string | null;
  exchange_id: string | null;
  amount_out: string | null;
  payout_hash: string | null;
  payin_hash: string | null;
};

export interface PageRows {
  /** One row per journal and asset of the page's lines (a payout's earlier journals in range included). */
  readonly rows: JournalRow[];
  /** The key of each line, in order: the journal a line is placed at. */
  readonly lines: LineKey[];
  /** More lines follow the last one. */
  readonly more: boolean;
}

function compareKeys(a: LineKey, b: LineKey): number {
  if (a.at !== b.at) return a.at < b.at ? -1 : 1;
  const [x, y] = [BigInt(a.journal), BigInt(b.journal)];
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Up to `limit` lines after `after` (null: from the start of the range). */
export async function readPage(
  trx: Transaction<Database>,
  accounts: ChannelAccounts,
  range: TimeRange,
  after: LineKey | null,
  limit: number,
): Promise<PageRows> {
  const lines: LineKey[] = [];
  let from = after;
  // Candidates are read a little ahead of the page: a payout's earlier journals are passed over, not listed.
  const ahead = limit + 1 + 16;
  for (;;) {
    const { keys, exhausted } = await candidates(trx, accounts, range, from, ahead);
    if (keys.length === 0) break;
    const placed = await lineJournals(trx, range, keys);
    for (const key of keys) if (placed.has(key.journal)) lines.push(key);
    if (lines.length > limit || exhausted) break;
    from = keys[keys.length - 1] as LineKey;
  }
  const more = lines.length > limit;
  const page = lines.slice(0, limit);
  const rows = page.length === 0 ? [] : await journalRows(trx, accounts, range, page);
  return { rows, lines: page, more };
}

/**
 * The next journals after `from` that moved the channel's accounts, in key order, at most `count`. Each account is
 * read in its own index order, `count` entries at most; past the first account that ran out of its `count`, another
 * account's later entries might come before ones not read yet, so only keys up to there are returned.
 */
async function candidates(
  trx: Transaction<Database>,
  accounts: ChannelAccounts,
  range: TimeRange,
  from: LineKey | null,
  count: number,
): Promise<{ keys: LineKey[]; exhausted: boolean }> {
  if (accounts.ids.length === 0) return { keys: [], exhausted: true };
  const afterKey =
    from === null ? sql`true` : sql`(e.created_at, e.journal_id) > (${from.at}::timestamptz, ${from.journal}::bigint)`;
  const branches = accounts.ids.map(
    (id) => sql`(select ${id}::text as account, to_char(e.created_at at time zone 'UTC', ${ISO_UTC}) as at,
                        e.journal_id::text as journal
                 from ledger_entries e
                 where e.account_id = ${id}::bigint and e.created_at >= ${range.from} and e.created_at < ${range.to}
                   and ${afterKey}
                 order by e.created_at, e.journal_id limit ${count})`,
  );
  const { rows } = await sql<{
    account: string;
    at: string;
    journal: string;
  }>`${sql.join(branches, sql` union all `)}`.execute(trx);
  let bound: LineKey | null = null;
  for (const id of accounts.ids) {
    const own = rows.filter((r) => r.account === id);
    if (own.length < count) continue;
    const last = own.reduce((m, r) => (compareKeys(r, m) > 0 ? r : m));
    if (bound === null || compareKeys(last, bound) < 0) bound = { at: last.at, journal: last.journal };
  }
  const seen = new Set<string>();
  const keys = rows
    .filter((r) => bound === null || compareKeys(r, bound) <= 0)
    .filter((r) => !seen.has(r.journal) && seen.add(r.journal))
    .map((r) => ({ at: r.at, journal: r.journal }))
    .sort(compareKeys);
  return { keys, exhausted: bound === null };
}

/** Of `keys`, the journals a line is placed at: all but a payout's journals followed by another of its own in range. */
async function lineJournals(trx: Transaction<Database>, range: TimeRange, keys: LineKey[]): Promise<Set<string>> {
  const { rows } = await sql<{ id: string }>`
    select j.id::text as id from ledger_journals j
    where j.id in (${sql.join(keys.map((k) => sql`${k.journal}::bigint`))})
      and not (j.kind in (${PAYOUT_LINE_KINDS_SQL}) and exists (
        select 1 from ledger_journals l
        where split_part(l.ref, ':', 1) = split_part(j.ref, ':', 1) and l.kind in (${PAYOUT_LINE_KINDS_SQL})
          and (l.created_at, l.id) > (j.created_at, j.id) and l.created_at < ${range.to}))`.execute(trx);
  return new Set(rows.map((r) => r.id));
}

/**
 * The page's journals with what the rest of payrail knows of them, one row per journal and asset: the lines' own,
 * and a payout line's earlier journals in range.
 */
export async function journalRows(
  trx: Transaction<Database>,
  accounts: ChannelAccounts,
  range: TimeRange,
  lines: LineKey[],
): Promise<JournalRow[]> {
  // A payout line's earlier journals, found by its id, one index probe per payout line.
  const { rows: earlier } = await sql<{ id: string }>`
    select l.id::text as id from ledger_journals j
    cross join lateral (
      select l.id from ledger_journals l
      where split_part(l.ref, ':', 1) = split_part(j.ref, ':', 1) and l.kind in (${PAYOUT_LINE_KINDS_SQL})
        and l.created_at >= ${range.from} and (l.created_at, l.id) < (j.created_at, j.id)
      -- A fence: flattened into a join, the planner hashes every payout journal instead of probing the index.
      offset 0) l
    where j.id in (${sql.join(lines.map((k) => sql`${k.journal}::bigint`))})
      and j.kind in (${PAYOUT_LINE_KINDS_SQL})`.execute(trx);
  const ids = [...new Set([...lines.map((k) => k.journal), ...earlier.map((r) => r.id)])];
  const { rows } = await sql<JournalRow>`
    with moved as (
      select e.journal_id, a.asset, min(e.created_at) as at,
             coalesce(sum(e.amount) filter (where a.code = ${accounts.available}), 0) as available,
             coalesce(sum(e.amount) filter (where a.code = ${accounts.reserved}), 0) as reserved
      from ledger_entries e join ledger_accounts a on a.id = e.account_id
      where e.journal_id in (${sql.join(ids.map((id) => sql`${id}::bigint`))}) and a.code in (${accounts.available}, ${accounts.reserved})
      group by e.journal_id, a.asset)
    select m.journal_id::text as journal_id, j.kind, j.ref, m.asset, m.available::text as available,
           m.reserved::text as reserved, to_char(m.at at time zone 'UTC', ${ISO_UTC}) as at,
           pj.gross::text as gross, pj.fee::text as fee,
           p.payment_id::text as payment_id, p.status as payment_status, p.fee_percent::text as fee_percent,
           c.conversion_id, c.rate::text as rate,
           po.payout_id, po.kind as payout_kind, po.status as payout_status, po.amount::text as payout_amount,
           po.payout_currency, po.payout_network, po.wallet_address, po.exchange_id, po.amount_out, po.payout_hash,
           t.tx_hash as payin_hash
    from moved m
    join ledger_journals j on j.id = m.journal_id
    -- A credit's gross and fee are its other entries: what NOWPayments' account gave, what the fee account took.
    left join lateral (
      select -sum(x.amount) filter (where xa.code like 'world:nowpayments#%') as gross,
             sum(x.amount) filter (where xa.code like 'platform:fees#%') as fee
      from ledger_entries x join ledger_accounts xa on xa.id = x.account_id
      where x.journal_id = m.journal_id and j.kind in ('payment_received', 'payment_topped_up')) pj on true
    -- Refs name what a journal is about ('<payment id>:<new gross>' for a top-up, '<payout id>:<n>' for a
    -- payout's n-th top-up); CASE keeps other kinds' refs from being cast.
    left join payments p on p.payment_id = (
      case when j.kind in (${sql.join(PAYMENT_KINDS)}) then split_part(j.ref, ':', 1)::numeric end)
    left join conversions c on c.conversion_id = (
      case when j.kind in ('conversion_settled', 'conversion_shortfall') then j.ref end)
    left join payouts po on po.payout_id = (
      case when j.kind in (${sql.join(PAYOUT_KINDS)}) then split_part(j.ref, ':', 1) end)
    left join chain_transfers t on t.transfer_id = po.transfer_id
    order by m.at, m.journal_id, m.asset`.execute(trx);
  return rows;
}
