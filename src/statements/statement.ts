/**
 * A channel's statement over a time range, per asset, built from the ledger alone: what payrail owed the channel's
 * owner at `from` (opening), every journal of the range that moved the channel's accounts (as payments, conversion
 * shares, payouts and other movements, each with what the rest of payrail knows of it), and what it owed at `to`
 * (closing). "Owed" is the channel's two accounts together: available (channel:<id>) and set aside for a payout
 * (channel:<id>:payout); moving funds between them changes neither the total nor the statement's sums.
 *
 * The statement proves itself before it is served: opening, closing, the range's entries and what came after are
 * four sums over the accounts' entries, and the items are read by a separate query grouping the same entries by
 * journal. opening + entries must equal closing, the items must add up to the entries, and closing + what came after
 * must equal the balance the ledger keeps on each account, for each account. Anything else is a bug, and the caller
 * refuses to serve the statement (StatementCheckError) rather than serve a wrong one.
 *
 * Everything is read in one read-only repeatable-read snapshot, so every figure describes the same moment. Times are
 * the journals' (the time of the transaction that booked them), in UTC with microseconds.
 */
import { sql } from 'kysely';
import type { Db, PaymentStatus, PayoutStatus } from '../db/index.ts';
import { accounts } from '../ledger/index.ts';
import { decimalsOf, formatUnits, isAssetCode } from '../money/index.ts';
import { resolveRange, type Bounds, type TimeRange } from './range.ts';

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
  /** The bounds as asked for (or defaulted): from inclusive, to exclusive. */
  readonly from: string;
  readonly to: string;
  readonly generatedAt: string;
  readonly assets: AssetStatement[];
}

const OTHER_KINDS = ['payment_reversal', 'exchange_cost', 'payout_returned', 'other'] as const;
const PAYMENT_KINDS = ['payment_received', 'payment_topped_up', 'payment_reversed'];
const PAYOUT_KINDS = ['payout_reserved', 'payout_topped_up', 'payout_completed', 'payout_returned'];

/** µs and UTC: timestamptz keeps microseconds, which a JS Date would cut. */
const ISO_UTC = `'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`;

type AccountSums = { balance: string; opening: string; closing: string; within: string; after: string };
type BalanceRow = AccountSums & { code: string; asset: string };
type JournalRow = {
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

/**
 * The channel's statement between `bounds` (missing ones: the channel's creation, and now); null: no such channel.
 * Throws BadRangeError when the range runs backwards, StatementCheckError when it does not add up.
 */
export async function channelStatement(db: Db, channelId: string, bounds: Bounds): Promise<Statement | null> {
  return db
    .transaction()
    .setIsolationLevel('repeatable read')
    .setAccessMode('read only')
    .execute(async (trx) => {
      await sql`select set_config('statement_timeout', ${STATEMENT_TIMEOUT}, true)`.execute(trx);
      const channel = await trx
        .selectFrom('channels')
        .select(['created_at', sql<Date>`now()`.as('now')])
        .where('channel_id', '=', channelId)
        .executeTakeFirst();
      if (!channel) return null;
      const range = resolveRange(bounds, {
        from: channel.created_at,
        to: channel.now,
        fromName: "default: the channel's creation",
        toName: 'default: now',
      });
      const available = accounts.channel(channelId, '').code;
      const reserved = accounts.channelPayout(channelId, '').code;
      const { rows: balances } = await sql<BalanceRow>`
        select a.code, a.asset, a.balance::text as balance,
               coalesce(sum(e.amount) filter (where e.created_at < ${range.from}), 0)::text as opening,
               coalesce(sum(e.amount) filter (where e.created_at < ${range.to}), 0)::text as closing,
               coalesce(sum(e.amount) filter (where e.created_at >= ${range.from} and e.created_at < ${range.to}), 0)::text as within,
               coalesce(sum(e.amount) filter (where e.created_at >= ${range.to}), 0)::text as after
        from ledger_accounts a left join ledger_entries e on e.account_id = a.id
        where a.code in (${available}, ${reserved})
        group by a.id order by a.asset, a.code`.execute(trx);
      const { rows: journals } = await sql<JournalRow>`
        with moved as (
          select e.journal_id, a.asset, min(e.created_at) as at,
                 coalesce(sum(e.amount) filter (where a.code = ${available}), 0) as available,
                 coalesce(sum(e.amount) filter (where a.code = ${reserved}), 0) as reserved
          from ledger_entries e join ledger_accounts a on a.id = e.account_id
          where a.code in (${available}, ${reserved}) and e.created_at >= ${range.from} and e.created_at < ${range.to}
          group by e.journal_id, a.asset)
        select m.journal_id::text as journal_id, j.kind, j.ref, m.asset, m.available::text as available,
               m.reserved::text as reserved, to_char(m.at at time zone 'UTC', ${sql.raw(ISO_UTC)}) as at,
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
      return buildStatement(channelId, range, channel.now, balances, journals);
    });
}

function buildStatement(
  channelId: string,
  range: TimeRange,
  now: Date,
  balances: BalanceRow[],
  journals: JournalRow[],
): Statement {
  const assets = [...new Set([...STATEMENT_ASSETS, ...balances.map((b) => b.asset)])].sort();
  const items = itemsByAsset(journals);
  return {
    channelId,
    from: range.from.toISOString(),
    to: range.to.toISOString(),
    generatedAt: now.toISOString(),
    assets: assets.map((asset) =>
      assetStatement(
        channelId,
        asset,
        balances.filter((b) => b.asset === asset),
        items.get(asset) ?? [],
      ),
    ),
  };
}

/** What an item moved, kept in units until the statement is formatted. */
interface Moved {
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
  for (const list of out.values())
    list.sort((a, b) => (a.item.time < b.item.time ? -1 : a.item.time > b.item.time ? 1 : 0));
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

function assetStatement(channelId: string, asset: string, rows: BalanceRow[], drafts: Draft[]): AssetStatement {
  const account = (reserved: boolean): AccountSums =>
    rows.find((r) => r.code.endsWith(':payout') === reserved) ?? {
      balance: '0',
      opening: '0',
      closing: '0',
      within: '0',
      after: '0',
    };
  const parts = { available: account(false), reserved: account(true) };
  const fromItems = drafts.reduce<Moved>(
    (sum, d) => ({ available: sum.available + d.moved.available, reserved: sum.reserved + d.moved.reserved }),
    { available: 0n, reserved: 0n },
  );
  // Each account on its own, so a payout's move from available to reserved cannot hide an error in either.
  for (const part of ['available', 'reserved'] as const) {
    const a = parts[part];
    const [opening, closing, within, after, balance] = [
      BigInt(a.opening),
      BigInt(a.closing),
      BigInt(a.within),
      BigInt(a.after),
      BigInt(a.balance),
    ] as const;
    const problems: string[] = [];
    if (opening + within !== closing) problems.push(`opening ${opening} + entries ${within} ≠ closing ${closing}`);
    if (fromItems[part] !== within) problems.push(`items sum to ${fromItems[part]}, entries to ${within}`);
    if (closing + after !== balance)
      problems.push(`closing ${closing} + entries after the range ${after} ≠ ledger balance ${balance}`);
    if (problems.length > 0)
      throw new StatementCheckError(
        `statement of channel ${channelId} does not add up in ${asset} (${part}): ${problems.join('; ')}`,
      );
  }
  const sum = (key: keyof AccountSums) => BigInt(parts.available[key]) + BigInt(parts.reserved[key]);
  const balance = (key: 'opening' | 'closing'): StatementBalance => ({
    available: fmt(BigInt(parts.available[key]), asset),
    reserved: fmt(BigInt(parts.reserved[key]), asset),
    total: fmt(sum(key), asset),
  });
  const items = drafts.map((d) => d.item);
  const payments = items.filter((i): i is PaymentItem => i.kind === 'payment' || i.kind === 'payment_top_up');
  const conversions = items.filter((i): i is ConversionItem => i.kind === 'conversion');
  const payouts = items.filter((i): i is PayoutItem => i.kind === 'payout');
  const other = items.filter((i): i is OtherItem => (OTHER_KINDS as readonly string[]).includes(i.kind));
  const total = (kinds: readonly StatementItem['kind'][], pick: (d: Draft) => bigint) =>
    fmt(
      drafts.filter((d) => kinds.includes(d.item.kind)).reduce((s, d) => s + pick(d), 0n),
      asset,
    );
  const amount = (d: Draft) => d.moved.available + d.moved.reserved;
  const PAYMENT = ['payment', 'payment_top_up'] as const;
  const movements = fromItems.available + fromItems.reserved;
  return {
    asset,
    opening: balance('opening'),
    closing: balance('closing'),
    payments,
    conversions,
    payouts,
    other,
    sums: {
      payments: {
        count: payments.length,
        gross: total(PAYMENT, (d) => d.gross ?? 0n),
        fee: total(PAYMENT, (d) => d.fee ?? 0n),
        net: total(PAYMENT, amount),
      },
      conversions: { count: conversions.length, amount: total(['conversion'], amount) },
      payouts: { count: payouts.length, amount: total(['payout'], amount) },
      other: { count: other.length, amount: total(OTHER_KINDS, amount) },
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
