/**
 * CSV as RFC 4180 writes it: fields separated by commas, lines ended by CRLF, a field quoted when it holds a comma, a
 * quote, a line break or surrounding spaces, and quotes inside it doubled. Null is an empty field.
 *
 * A spreadsheet runs a field that starts with = + - @ (or a tab or carriage return) as a formula. Amounts start with
 * "-" and must stay numbers, so a field is left alone when it is a plain decimal; any other such field (an exchange id
 * or address an outside party chose, say) gets a leading apostrophe, which spreadsheets read as "this is text".
 */
import { sql } from 'kysely';
import type { Db } from '../db/index.ts';
import { readHorizon } from './horizon.ts';
import type { Bounds } from './range.ts';
import {
  assetBalances,
  checkLines,
  openStatement,
  statementLines,
  type Statement,
  type StatementBalance,
  type StatementHead,
  type StatementItem,
} from './statement.ts';

const NEEDS_QUOTES = /[",\r\n]|^\s|\s$/;
const FORMULA_START = /^[=+\-@\t\r]/;
const SIGNED_DECIMAL = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?$/;

export function csvField(value: string | null | undefined): string {
  if (value === null || value === undefined) return '';
  const text = FORMULA_START.test(value) && !SIGNED_DECIMAL.test(value) ? `'${value}` : value;
  return NEEDS_QUOTES.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** One CSV line, CRLF included. */
export function csvLine(fields: ReadonlyArray<string | null | undefined>): string {
  return `${fields.map(csvField).join(',')}\r\n`;
}

/** The statement's CSV columns: the first five for every row, the rest where the item has them. */
export const STATEMENT_COLUMNS = [
  'asset',
  'kind',
  'id',
  'time',
  'amount',
  'available',
  'reserved',
  'gross',
  'fee',
  'fee_percent',
  'status',
  'eth_out',
  'usdt_in',
  'rate',
  'payout_amount',
  'payout_currency',
  'payout_network',
  'wallet_address',
  'exchange_id',
  'payin_hash',
  'payout_hash',
  'amount_out',
  'journal_kind',
  'journals',
] as const;

type Column = (typeof STATEMENT_COLUMNS)[number];

const row = (values: Partial<Record<Column, string | null>>) => csvLine(STATEMENT_COLUMNS.map((c) => values[c]));

/** Lines read per query while a statement streams as CSV. */
export const STATEMENT_CSV_BATCH = 1000;
/** A reader that stops reading this long ends the download (the database ends the idle snapshot). */
const CSV_IDLE = '2min';

/**
 * A statement as CSV: per asset, an `opening` row (at `from`), one row per item in booking order, a `closing` row (at
 * `to`). Amounts are plain decimals in the asset, signed; opening and closing carry the balance in `amount`. This is
 * one page's worth (a JSON statement's); statementCsvLines streams a whole range.
 */
export function statementCsv(statement: Statement): string {
  const lines = [csvLine(STATEMENT_COLUMNS)];
  for (const a of statement.assets) {
    lines.push(balanceRow(a.asset, 'opening', statement.channelId, statement.from, a.opening));
    const items: StatementItem[] = [...a.payments, ...a.conversions, ...a.payouts, ...a.other].sort((x, y) =>
      x.time < y.time ? -1 : x.time > y.time ? 1 : 0,
    );
    for (const item of items) lines.push(row({ asset: a.asset, ...itemColumns(item) }));
    lines.push(balanceRow(a.asset, 'closing', statement.channelId, statement.to, a.closing));
  }
  return lines.join('');
}

function balanceRow(asset: string, kind: 'opening' | 'closing', channelId: string, time: string, b: StatementBalance) {
  return row({ asset, kind, id: channelId, time, amount: b.total, available: b.available, reserved: b.reserved });
}

/**
 * The channel's statement over the whole range as CSV, streamed: its totals are read and proven before this returns
 * (a statement that does not add up throws here, before any byte), then each asset's lines are read
 * STATEMENT_CSV_BATCH at a time as the reader takes them, all in one snapshot. The lines of each asset must add up to
 * its movements: if they do not, the generator throws StatementCheckError at the end of that asset and the download
 * is cut rather than completed. null: no such channel. Stop reading (return()) to end it early: the snapshot is
 * released either way.
 */
export async function statementCsvLines(
  db: Db,
  channelId: string,
  bounds: Bounds,
): Promise<{ from: string; to: string; lines: AsyncGenerator<string, void, undefined> } | null> {
  // Before the snapshot, as for a JSON statement (horizon.ts): the closing row's time says where the range ended.
  const horizon = await readHorizon(db);
  const trx = await db.startTransaction().setIsolationLevel('repeatable read').setAccessMode('read only').execute();
  let ended = false;
  const release = async () => {
    if (ended) return;
    ended = true;
    await trx
      .rollback()
      .execute()
      .catch(() => undefined);
  };
  let head: StatementHead | null;
  try {
    await sql`select set_config('idle_in_transaction_session_timeout', ${CSV_IDLE}, true)`.execute(trx);
    head = await openStatement(trx, channelId, bounds, horizon);
  } catch (error) {
    await release();
    throw error;
  }
  if (!head) {
    await release();
    return null;
  }
  const opened = head;
  async function* lines(): AsyncGenerator<string, void, undefined> {
    try {
      yield csvLine(STATEMENT_COLUMNS);
      const from = opened.range.from.toISOString();
      const to = opened.range.to.toISOString();
      for (const asset of opened.assets) {
        const statement = assetBalances(opened, asset);
        yield balanceRow(asset, 'opening', channelId, from, statement.opening);
        let moved = { available: 0n, reserved: 0n };
        for await (const batch of statementLines(trx, opened, STATEMENT_CSV_BATCH)) {
          const lines = batch.get(asset) ?? [];
          if (lines.length === 0) continue;
          for (const line of lines)
            moved = {
              available: moved.available + line.moved.available,
              reserved: moved.reserved + line.moved.reserved,
            };
          yield lines.map((line) => row({ asset, ...itemColumns(line.item) })).join('');
        }
        checkLines(opened, asset, moved);
        yield balanceRow(asset, 'closing', channelId, to, statement.closing);
      }
      ended = true;
      await trx.commit().execute();
    } finally {
      // Committed already when it ran to its end; otherwise (an error, or a reader that stopped) rolled back.
      await release();
    }
  }
  return { from: head.range.from.toISOString(), to: head.range.to.toISOString(), lines: lines() };
}

function itemColumns(item: StatementItem): Partial<Record<Column, string | null>> {
  const common = {
    kind: item.kind,
    id: item.id,
    time: item.time,
    amount: item.amount,
    available: item.available,
    reserved: item.reserved,
    journals: item.journals.join(' '),
  };
  switch (item.kind) {
    case 'payment':
    case 'payment_top_up':
      return { ...common, gross: item.gross, fee: item.fee, fee_percent: item.feePercent, status: item.status };
    case 'conversion':
      return { ...common, eth_out: item.ethOut, usdt_in: item.usdtIn, rate: item.rate };
    case 'payout':
      return {
        ...common,
        status: item.status,
        payout_amount: item.payoutAmount,
        payout_currency: item.payoutCurrency,
        payout_network: item.payoutNetwork,
        wallet_address: item.walletAddress,
        exchange_id: item.exchangeId,
        payin_hash: item.payinHash,
        payout_hash: item.payoutHash,
        amount_out: item.amountOut,
      };
    default:
      return { ...common, journal_kind: item.journalKind };
  }
}
