/**
 * CSV as RFC 4180 writes it: fields separated by commas, lines ended by CRLF, a field quoted when it holds a comma, a
 * quote, a line break or surrounding spaces, and quotes inside it doubled. Null is an empty field.
 *
 * A spreadsheet runs a field that starts with = + - @ (or a tab or carriage return) as a formula. Amounts start with
 * "-" and must stay numbers, so a field is left alone when it is a plain decimal; any other such field (an exchange id
 * or address an outside party chose, say) gets a leading apostrophe, which spreadsheets read as "this is text".
 */
import type { Statement, StatementBalance, StatementItem } from './statement.ts';

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

/**
 * A statement as CSV: per asset, an `opening` row (at `from`), one row per item in booking order, a `closing` row (at
 * `to`). Amounts are plain decimals in the asset, signed; opening and closing carry the balance in `amount`.
 */
export function statementCsv(statement: Statement): string {
  const lines = [csvLine(STATEMENT_COLUMNS)];
  const row = (values: Partial<Record<Column, string | null>>) => csvLine(STATEMENT_COLUMNS.map((c) => values[c]));
  for (const a of statement.assets) {
    const balance = (kind: 'opening' | 'closing', time: string, b: StatementBalance) =>
      row({
        asset: a.asset,
        kind,
        id: statement.channelId,
        time,
        amount: b.total,
        available: b.available,
        reserved: b.reserved,
      });
    lines.push(balance('opening', statement.from, a.opening));
    const items: StatementItem[] = [...a.payments, ...a.conversions, ...a.payouts, ...a.other].sort((x, y) =>
      x.time < y.time ? -1 : x.time > y.time ? 1 : 0,
    );
    for (const item of items) lines.push(row({ asset: a.asset, ...itemColumns(item) }));
    lines.push(balance('closing', statement.to, a.closing));
  }
  return lines.join('');
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
