/**
 * A channel's statement over a time range, per asset, built from the ledger alone: what payrail owed the channel's
 * owner at `from` (opening), every journal of the range that moved the channel's accounts (as payments, conversion
 * shares, payouts and other movements, each with what the rest of payrail knows of it), and what it owed at `to`
 * (closing). "Owed" is the channel's two accounts together: available (channel:<id>) and set aside for a payout
 * (channel:<id>:payout); moving funds between them changes neither the total nor the statement's sums.
 *
 * The totals (opening, closing, the range's sums per kind) cover the whole range and cost the same at any size
 * (totals.ts); the lines come a page at a time (page.ts), each page after the cursor the previous one handed out. The
 * statement proves its totals before any of it is served: opening + movements must equal closing, and closing + what
 * came after must equal the balance the ledger keeps, for each account; a page that holds the whole range must also
 * add up to the movements. Anything else is a bug, and the caller refuses to serve the statement
 * (StatementCheckError) rather than serve a wrong one.
 *
 * Everything a page shows is read in one read-only repeatable-read snapshot, so its figures describe the same moment.
 * Times are the journals' (the start of the transaction that booked them), in UTC with microseconds. The first page
 * ends the range before any time a transaction still open could yet book a line at (horizon.ts), so the lines and
 * totals of the range are final from then on: every page lists and counts the same.
 */
import { sql, type Transaction } from 'kysely';
import type { Database, Db, PaymentStatus, PayoutStatus } from '../db/index.ts';
import { accounts } from '../ledger/index.ts';
import { decimalsOf, formatUnits, isAssetCode } from '../money/index.ts';
import { BadPageError, decodeCursor, encodeCursor, type LineKey } from './cursor.ts';
import { readPage, type JournalRow } from './page.ts';
import { cutRange, readHorizon, type Horizon } from './horizon.ts';
import { resolveRange, type Bounds, type TimeRange } from './range.ts';
import { readTotals, type AssetTotals, type ChannelAccounts, type KindSums } from './totals.ts';

/** Listed in every statement, even when the channel never held them: the assets the ledger keeps channels in. */
export const STATEMENT_ASSETS = ['eth', 'usdt'] as const;

/** Items per page of a JSON statement when the request does not say, and at most. */
export const STATEMENT_PAGE_DEFAULT = 200;
export const STATEMENT_PAGE_MAX = 1000;

/** A large statement is a long read; this keeps one from holding the database without end. */
const STATEMENT_TIMEOUT = '60s';

export class StatementCheckError extends Error {
  override name = 'StatementCheckError';
}

export interface StatementBalance {
  /** channel:<id>: owed and free. */
  readonly available: string;
  /** channel:<id>:payout: set aside in a payout under way. */
  readonly reserved: string;
  readonly total: string;
}

interface ItemBase {
  /** The payment, conversion or payout id; for other movements, the journal's ref. */
  readonly id: string;
  /** When the journal was booked (the latest one in range, for a payout booked in several). */
  readonly time: string;
  /** What the item changed the channel's total by, in this asset (signed). */
  readonly amount: string;
  /** The same, split between the two accounts (a payout sets funds aside before they leave). */
  readonly available: string;
  readonly reserved: string;
  /** The ledger journals this item stands for. */
  readonly journals: string[];
}

export interface PaymentItem extends ItemBase {
  /** payment: its credit; payment_top_up: a later credit of the same payment (what NOWPayments sent on top). */
  readonly kind: 'payment' | 'payment_top_up';
  readonly paymentId: string;
  /** What the journal took from NOWPayments, the platform's fee out of it, and the channel's share (= amount). */
  readonly gross: string;
  readonly fee: string;
  readonly net: string;
  /** PLATFORM_FEE_PERCENT when the payment was credited. */
  readonly feePercent: string | null;
  readonly status: PaymentStatus | null;
}

export interface ConversionItem extends ItemBase {
  readonly kind: 'conversion';
  readonly conversionId: string;
  /** The channel's share of the conversion: its ETH that went to ChangeNow and the USDT it got back. */
  readonly ethOut: string;
  readonly usdtIn: string;
  /** The conversion's USDT per ETH (12 decimals, rounded down), as booked. */
  readonly rate: string | null;
}

export interface PayoutItem extends ItemBase {
  readonly kind: 'payout';
  readonly payoutId: string;
  readonly payoutKind: 'threshold' | 'instant' | null;
  /** The payout's whole amount in the asset (amount is what left the channel in range: all of it once completed). */
  readonly payoutAmount: string | null;
  readonly asset: string;
  readonly payoutCurrency: string | null;
  readonly payoutNetwork: string | null;
  readonly walletAddress: string | null;
  readonly exchangeId: string | null;
  /** Our transfer into the exchange (or to the owner, for a direct payout). */
  readonly payinHash: string | null;
  /** The exchange's transfer to the owner. */
  readonly payoutHash: string | null;
  /** What the owner received, in the payout currency. */
  readonly amountOut: string | null;
  readonly status: PayoutStatus | null;
}

export interface OtherItem extends ItemBase {
  /**
   * payment_reversal: a refunded payment's credit taken back; exchange_cost: ETH ChangeNow kept from a conversion it
   * refunded short; payout_returned: a failed or cancelled payout's funds back on the channel (less what an exchange
   * kept); other: any journal not named here, by its kind.
   */
  readonly kind: 'payment_reversal' | 'exchange_cost' | 'payout_returned' | 'other';
  readonly journalKind: string;
  readonly ref: string;
  readonly paymentId: string | null;
  readonly conversionId: string | null;
  readonly payoutId: string | null;
}

export type StatementItem = PaymentItem | ConversionItem | PayoutItem | OtherItem;

export interface AmountCheck {
  readonly opening: string;
  /** Σ of the channel's entries in range. */
  readonly movementsFromEntries: string;
  /** Σ of the items listed. */
  readonly movementsFromItems: string;
  readonly openingPlusMovements: string;
  readonly closing: string;
  /** Σ of the entries booked at or after `to`. */
  readonly after: string;
  /** The balance the ledger keeps on the accounts, which closing + after must equal. */
  readonly ledgerBalance: string;
}

export interface AssetStatement {
  readonly asset: string;
  readonly opening: StatementBalance;
  readonly closing: StatementBalance;
  readonly payments: PaymentItem[];
  readonly conversions: ConversionItem[];
  readonly payouts: PayoutItem[];
  readonly other: OtherItem[];
  readonly sums: {
    readonly payments: { count: number; gross: string; fee: string; net: string };
    readonly conversions: { count: number; amount: string };
    readonly payouts: { count: number; amount: string };
    readonly other: { count: number; amount: string };
    readonly movements: string;
  };
  readonly check: AmountCheck & { readonly ok: true };
}

export interface Statement {
  readonly channelId: string;
  /** The bounds as asked for (or defaulted), `to` as cut: from inclusive, to exclusive. */
  readonly from: string;
  readonly to: string;
  /**
   * The `to` asked for (a time, for one left out: now), when the range was cut short of it: a transaction still open
   * when the first page was read could yet book lines from `to` on. Ask again later, from `to`, for the rest. null:
   * the range is as asked.
   */
  readonly toAsked: string | null;
  readonly generatedAt: string;
  readonly assets: AssetStatement[];
  readonly page: StatementPage;
}

export interface StatementPage {
  readonly limit: number;
  /** Lines on this page, all assets (a conversion's share, listed under both assets, is one line). */
  readonly lines: number;
  readonly hasMore: boolean;
  /** Pass as `after` for the next page; null on the last one. */
  readonly next: string | null;
}

export interface PageRequest {
  readonly limit: number;
  readonly after?: string | undefined;
}

const OTHER_KINDS = ['payment_reversal', 'exchange_cost', 'payout_returned', 'other'] as const;
const PAYMENT_JOURNALS = ['payment_received', 'payment_topped_up'];
const CONVERSION_JOURNALS = ['conversion_settled'];
const PAYOUT_JOURNALS = ['payout_reserved', 'payout_topped_up', 'payout_completed'];
const KNOWN_JOURNALS = [...PAYMENT_JOURNALS, ...CONVERSION_JOURNALS, ...PAYOUT_JOURNALS];

/** A statement's fixed parts: whose, over what, and its totals, proven. */
export interface StatementHead {
  readonly channelId: string;
  readonly range: TimeRange;
  /** The `to` asked for, when `range` was cut short of it. */
  readonly asked: Date | null;
  readonly now: Date;
  readonly accounts: ChannelAccounts;
  readonly totals: Map<string, AssetTotals>;
  /** Every asset listed, in order. */
  readonly assets: string[];
}

/**
 * The channel's statement between `bounds` (missing ones: the channel's creation, and now), one page of its lines;
 * null: no such channel. Throws BadRangeError when the range runs backwards, BadPageError for a cursor of another
 * statement, StatementCheckError when it does not add up.
 */
export async function channelStatement(
  db: Db,
  channelId: string,
  bounds: Bounds,
  page: PageRequest = { limit: STATEMENT_PAGE_DEFAULT },
): Promise<Statement | null> {
  const cursor = page.after === undefined ? null : decodeCursor(page.after);
  if (cursor) {
    // The cursor fixes the range (and the moment a defaulted `to` stood for): bounds given again must be the same.
    const differs = (given: Date | undefined, fixed: Date) =>
      given !== undefined && given.getTime() !== fixed.getTime();
    // A range cut short: the `to` asked for is the same statement, and so is the `to` it was cut at.
    const differsTo = (given: Date | undefined) =>
      differs(given, cursor.to) && (cursor.asked === null || differs(given, cursor.asked));
    if (cursor.channel !== channelId || differs(bounds.from, cursor.from) || differsTo(bounds.to))
      throw new BadPageError(
        `after: this cursor continues the statement of channel ${cursor.channel} from ${cursor.from.toISOString()} to ${cursor.to.toISOString()}, not this one (leave from and to out, or give the same)`,
      );
  }
  // Before the snapshot: see horizon.ts. Later pages keep the range the first one fixed.
  const horizon = cursor ? null : await readHorizon(db);
  return db
    .transaction()
    .setIsolationLevel('repeatable read')
    .setAccessMode('read only')
    .execute(async (trx) => {
      const head = cursor
        ? await openStatement(trx, channelId, { from: cursor.from, to: cursor.to }, null, cursor.asked)
        : await openStatement(trx, channelId, bounds, horizon);
      if (!head) return null;
      const { rows, lines, more } = await readPage(trx, head.accounts, head.range, cursor?.key ?? null, page.limit);
      const drafts = itemsByAsset(rows);
      // A page that is the whole range must add up to the range's movements, as the totals do.
      if (cursor === null && !more) for (const asset of head.assets) checkItems(head, asset, drafts.get(asset) ?? []);
      const last = lines[lines.length - 1];
      return {
        channelId,
        from: head.range.from.toISOString(),
        to: head.range.to.toISOString(),
        toAsked: head.asked?.toISOString() ?? null,
        generatedAt: head.now.toISOString(),
        assets: head.assets.map((asset) => assetStatement(head, asset, drafts.get(asset) ?? [])),
        page: {
          limit: page.limit,
          lines: lines.length,
          hasMore: more,
          next: more && last ? encodeCursor(channelId, head.range.from, head.range.to, head.asked, last) : null,
        },
      };
    });
}

/**
 * The channel, its range and its proven totals, in `trx`'s snapshot; null: no such channel. A statement read first
 * passes the horizon read before `trx`'s snapshot, which a `to` left out stands for and the range is cut at; one
 * continued passes none, its bounds as the first page fixed them, and `asked` as that page cut them.
 */
export async function openStatement(
  trx: Transaction<Database>,
  channelId: string,
  bounds: Bounds,
  horizon: Horizon | null,
  asked: Date | null = null,
): Promise<StatementHead | null> {
  await sql`select set_config('statement_timeout', ${STATEMENT_TIMEOUT}, true)`.execute(trx);
  const channel = await trx
    .selectFrom('channels')
    .select(['created_at', sql<Date>`now()`.as('now')])
    .where('channel_id', '=', channelId)
    .executeTakeFirst();
  if (!channel) return null;
  const asking = resolveRange(bounds, {
    from: channel.created_at,
    to: horizon?.now ?? channel.now,
    fromName: "default: the channel's creation",
    toName: 'default: now',
  });
  const cut = horizon ? cutRange(asking, horizon) : { range: asking, asked };
  const range = cut.range;
  const available = accounts.channel(channelId, '').code;
  const reserved = accounts.channelPayout(channelId, '').code;
  const ids = await trx
    .selectFrom('ledger_accounts')
    .select('id')
    .where('code', 'in', [available, reserved])
    .orderBy('id')
    .execute();
  const channelAccounts = { channelId, available, reserved, ids: ids.map((r) => String(r.id)) };
  const totals = await readTotals(trx, channelAccounts, range);
  const assets = [...new Set([...STATEMENT_ASSETS, ...totals.keys()])].sort();
  const head = { channelId, range, asked: cut.asked, now: channel.now, accounts: channelAccounts, totals, assets };
  for (const asset of assets) proveTotals(head, asset);
  return head;
}

/** A line as the CSV writes it, with what it moved in units (for the check at the end of the range). */
export interface ReadLine {
  readonly item: StatementItem;
  readonly moved: Moved;
}

/** Lines of the whole range in booking order, per asset, `batch` at a time (the CSV's reading). */
export async function* statementLines(
  trx: Transaction<Database>,
  head: StatementHead,
  batch: number,
): AsyncGenerator<Map<string, ReadLine[]>, void, undefined> {
  let after: LineKey | null = null;
  for (;;) {
    const { rows, lines, more } = await readPage(trx, head.accounts, head.range, after, batch);
    yield itemsByAsset(rows);
    if (!more) return;
    after = lines[lines.length - 1] as LineKey;
  }
}

/** Throws StatementCheckError unless the lines read for the whole range moved each account as its entries did. */
export function checkLines(head: StatementHead, asset: string, moved: Moved): void {
  const t = head.totals.get(asset);
  for (const part of ['available', 'reserved'] as const) {
    const within = t?.accounts[part].within ?? 0n;
    if (moved[part] !== within)
      throw new StatementCheckError(
        `statement of channel ${head.channelId} does not add up in ${asset} (${part}): items sum to ${moved[part]}, entries to ${within}`,
      );
  }
}

function checkItems(head: StatementHead, asset: string, drafts: Draft[]): void {
  checkLines(
    head,
    asset,
    drafts.reduce<Moved>(
      (sum, d) => ({ available: sum.available + d.moved.available, reserved: sum.reserved + d.moved.reserved }),
      { available: 0n, reserved: 0n },
    ),
  );
}

/** Each account on its own, so a payout's move from available to reserved cannot hide an error in either. */
function proveTotals(head: StatementHead, asset: string): void {
  const t = head.totals.get(asset);
  if (!t) return;
  for (const part of ['available', 'reserved'] as const) {
    const { opening, closing, within, after, balance } = t.accounts[part];
    const byKind = [...t.kinds.values()].reduce((s, k) => s + k[part], 0n);
    const problems: string[] = [];
    if (opening + within !== closing) problems.push(`opening ${opening} + entries ${within} ≠ closing ${closing}`);
    if (byKind !== within) problems.push(`movements by kind sum to ${byKind}, entries to ${within}`);
    if (closing + after !== balance)
      problems.push(`closing ${closing} + entries after the range ${after} ≠ ledger balance ${balance}`);
    if (problems.length > 0)
      throw new StatementCheckError(
        `statement of channel ${head.channelId} does not add up in ${asset} (${part}): ${problems.join('; ')}`,
      );
  }
}

/** What an item moved, kept in units until the statement is formatted. */
export interface Moved {
  available: bigint;
  reserved: bigint;
}

/** An item, with what it moved and (a payment) its gross and fee, in units for the sums. */
type Draft = { item: StatementItem; moved: Moved; gross?: bigint; fee?: bigint };

/** Items per asset from the range's journals (one row per journal and asset), in booking order. */
function itemsByAsset(rows: JournalRow[]): Map<string, Draft[]> {
  const out = new Map<string, Draft[]>();
  const push = (asset: string, draft: Draft) => {
    const list = out.get(asset) ?? [];
    list.push(draft);
    out.set(asset, list);
  };
  // A conversion's ETH and USDT rows describe one share; a payout's journals, one payout.
  const conversions = new Map<string, JournalRow[]>();
  const payouts = new Map<string, { rows: JournalRow[] }>();
  for (const row of rows) {
    if (row.kind === 'conversion_settled') {
      const list = conversions.get(row.journal_id) ?? [];
      list.push(row);
      conversions.set(row.journal_id, list);
    } else if (row.kind === 'payout_reserved' || row.kind === 'payout_topped_up' || row.kind === 'payout_completed') {
      const key = `${row.payout_id ?? row.ref}/${row.asset}`;
      const entry = payouts.get(key) ?? { rows: [] };
      entry.rows.push(row);
      payouts.set(key, entry);
    } else {
      push(row.asset, single(row));
    }
  }
  for (const group of conversions.values()) for (const [asset, draft] of conversionShare(group)) push(asset, draft);
  for (const { rows: group } of payouts.values()) {
    const first = group[0] as JournalRow;
    push(first.asset, payoutItem(group));
  }
  // Booking order, as pages are cut: by time, then by the journal a line is placed at (a payout's latest).
  const placedAt = (d: Draft) => BigInt(d.item.journals[d.item.journals.length - 1] ?? '0');
  for (const list of out.values())
    list.sort((a, b) =>
      a.item.time !== b.item.time
        ? a.item.time < b.item.time
          ? -1
          : 1
        : placedAt(a) < placedAt(b)
          ? -1
          : placedAt(a) > placedAt(b)
            ? 1
            : 0,
    );
  return out;
}

function moved(row: JournalRow): Moved {
  return { available: BigInt(row.available), reserved: BigInt(row.reserved) };
}

function movedFields(asset: string, m: Moved) {
  return {
    amount: fmt(m.available + m.reserved, asset),
    available: fmt(m.available, asset),
    reserved: fmt(m.reserved, asset),
  };
}

/** A journal that is an item on its own: a payment's credit or top-up, or another movement. */
function single(row: JournalRow): Draft {
  const m = moved(row);
  const base = { time: row.at, ...movedFields(row.asset, m), journals: [row.journal_id] };
  if ((row.kind === 'payment_received' || row.kind === 'payment_topped_up') && row.payment_id !== null) {
    const gross = BigInt(row.gross ?? '0');
    const fee = BigInt(row.fee ?? '0');
    return {
      moved: m,
      gross,
      fee,
      item: {
        kind: row.kind === 'payment_received' ? 'payment' : 'payment_top_up',
        id: row.payment_id,
        ...base,
        paymentId: row.payment_id,
        gross: fmt(gross, row.asset),
        fee: fmt(fee, row.asset),
        net: fmt(m.available + m.reserved, row.asset),
        feePercent: row.fee_percent,
        status: row.payment_status,
      },
    };
  }
  const kind =
    row.kind === 'payment_reversed'
      ? 'payment_reversal'
      : row.kind === 'conversion_shortfall'
        ? 'exchange_cost'
        : row.kind === 'payout_returned'
          ? 'payout_returned'
          : 'other';
  return {
    moved: m,
    item: {
      kind,
      id: row.payment_id ?? row.conversion_id ?? row.payout_id ?? row.ref,
      ...base,
      journalKind: row.kind,
      ref: row.ref,
      paymentId: row.payment_id,
      conversionId: row.conversion_id,
      payoutId: row.payout_id,
    },
  };
}

/** The channel's share of one settled conversion: an item in ETH (out) and one in USDT (in, when it got any). */
function conversionShare(rows: JournalRow[]): Array<[string, Draft]> {
  const first = rows[0] as JournalRow;
  const eth = rows.find((r) => r.asset === 'eth');
  const usdt = rows.find((r) => r.asset === 'usdt');
  const ethOut = eth ? -(BigInt(eth.available) + BigInt(eth.reserved)) : 0n;
  const usdtIn = usdt ? BigInt(usdt.available) + BigInt(usdt.reserved) : 0n;
  return rows.map((row) => {
    const m = moved(row);
    return [
      row.asset,
      {
        moved: m,
        item: {
          kind: 'conversion',
          id: first.conversion_id ?? first.ref,
          time: row.at,
          ...movedFields(row.asset, m),
          journals: [row.journal_id],
          conversionId: first.conversion_id ?? first.ref,
          ethOut: fmt(ethOut, 'eth'),
          usdtIn: fmt(usdtIn, 'usdt'),
          rate: first.rate,
        },
      },
    ];
  });
}

/** One payout's journals in range (set aside, topped up, completed): one item, at the time of the latest. */
function payoutItem(rows: JournalRow[]): Draft {
  const last = rows[rows.length - 1] as JournalRow;
  const m = rows.reduce<Moved>(
    (sum, row) => ({
      available: sum.available + BigInt(row.available),
      reserved: sum.reserved + BigInt(row.reserved),
    }),
    { available: 0n, reserved: 0n },
  );
  const asset = last.asset;
  return {
    moved: m,
    item: {
      kind: 'payout',
      id: last.payout_id ?? last.ref,
      time: last.at,
      ...movedFields(asset, m),
      journals: rows.map((r) => r.journal_id),
      payoutId: last.payout_id ?? last.ref,
      payoutKind: last.payout_kind,
      payoutAmount: last.payout_amount === null ? null : fmt(BigInt(last.payout_amount), asset),
      asset,
      payoutCurrency: last.payout_currency,
      payoutNetwork: last.payout_network,
      walletAddress: last.wallet_address,
      exchangeId: last.exchange_id,
      payinHash: last.payin_hash,
      payoutHash: last.payout_hash,
      amountOut: last.amount_out,
      status: last.payout_status,
    },
  };
}

function figures(head: StatementHead, asset: string) {
  const t = head.totals.get(asset);
  const account = (part: 'available' | 'reserved') =>
    t?.accounts[part] ?? { opening: 0n, closing: 0n, within: 0n, after: 0n, balance: 0n };
  const parts = { available: account('available'), reserved: account('reserved') };
  const sum = (key: 'opening' | 'closing' | 'within' | 'after' | 'balance') =>
    parts.available[key] + parts.reserved[key];
  const balance = (key: 'opening' | 'closing'): StatementBalance => ({
    available: fmt(parts.available[key], asset),
    reserved: fmt(parts.reserved[key], asset),
    total: fmt(sum(key), asset),
  });
  return { t, sum, balance };
}

/** What the channel was owed in `asset` at the range's bounds. */
export function assetBalances(
  head: StatementHead,
  asset: string,
): { opening: StatementBalance; closing: StatementBalance } {
  const { balance } = figures(head, asset);
  return { opening: balance('opening'), closing: balance('closing') };
}

function assetStatement(head: StatementHead, asset: string, drafts: Draft[]): AssetStatement {
  const { t, sum, balance } = figures(head, asset);
  // The range's sums per kind, whole range (not the page): journals of the kinds each list stands for.
  const kinds = [...(t?.kinds ?? new Map<string, KindSums>())];
  const of = (names: readonly string[] | null) =>
    kinds
      .filter(([kind]) => (names === null ? !KNOWN_JOURNALS.includes(kind) : names.includes(kind)))
      .reduce(
        (s, [, k]) => ({
          journals: s.journals + k.journals,
          amount: s.amount + k.available + k.reserved,
          gross: s.gross + k.gross,
          fee: s.fee + k.fee,
        }),
        { journals: 0n, amount: 0n, gross: 0n, fee: 0n },
      );
  const payments = of(PAYMENT_JOURNALS);
  const conversions = of(CONVERSION_JOURNALS);
  const payouts = of(PAYOUT_JOURNALS);
  const setAside = of(['payout_reserved']);
  const other = of(null);
  const movements = payments.amount + conversions.amount + payouts.amount + other.amount;
  const items = drafts.map((d) => d.item);
  return {
    asset,
    opening: balance('opening'),
    closing: balance('closing'),
    payments: items.filter((i): i is PaymentItem => i.kind === 'payment' || i.kind === 'payment_top_up'),
    conversions: items.filter((i): i is ConversionItem => i.kind === 'conversion'),
    payouts: items.filter((i): i is PayoutItem => i.kind === 'payout'),
    other: items.filter((i): i is OtherItem => (OTHER_KINDS as readonly string[]).includes(i.kind)),
    sums: {
      payments: {
        count: Number(payments.journals),
        gross: fmt(payments.gross, asset),
        fee: fmt(payments.fee, asset),
        net: fmt(payments.amount, asset),
      },
      conversions: { count: Number(conversions.journals), amount: fmt(conversions.amount, asset) },
      payouts: { count: Number(setAside.journals), amount: fmt(payouts.amount, asset) },
      other: { count: Number(other.journals), amount: fmt(other.amount, asset) },
      movements: fmt(movements, asset),
    },
    check: {
      ok: true,
      opening: fmt(sum('opening'), asset),
      movementsFromEntries: fmt(sum('within'), asset),
      movementsFromItems: fmt(movements, asset),
      openingPlusMovements: fmt(sum('opening') + movements, asset),
      closing: fmt(sum('closing'), asset),
      after: fmt(sum('after'), asset),
      ledgerBalance: fmt(sum('balance'), asset),
    },
  };
}

/** An asset payrail does not know the decimals of is shown in smallest units rather than guessed. */
function fmt(value: bigint, asset: string): string {
  return isAssetCode(asset) ? formatUnits(value, decimalsOf(asset)) : value.toString();
}
