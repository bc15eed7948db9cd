/**
 * What payments cost the platform, per payout strategy, from the ledger: the fees booked to `platform:fees#NN`, the
 * gas booked to `platform:network_costs`, and what ChangeNow kept (the cost journals' credits to `world:changenow`).
 * The ledger is the book of record, so these are the figures as booked, never recomputed from row columns; the rows
 * (payments, conversions, payouts, chain_transfers) only say which strategy a journal belongs to.
 *
 * Attribution, the rule every figure follows:
 * - a fee belongs to the strategy of the payment its journal names (payment_received, payment_topped_up and
 *   payment_reversed, ref `<payment id>[:<total>]`); a payment's strategy is the one it is paid out under
 *   (`payments.payout_strategy`: a strategy switch moves a pending payment with it);
 * - a conversion carries threshold payments only: its exchange, its transfer's gas and what ChangeNow kept of it
 *   (`conversion_shortfall`, `conversion_lost`) are threshold costs;
 * - a payout is its kind's: an instant payout its payment's, a batch the threshold strategy's (its exchange, its
 *   transfer's gas, what ChangeNow kept of a returned one in `payout_returned`);
 * - gas not spent for a conversion or a payout (a `wallet_withdrawal`: the operator's own transaction from the host
 *   wallet) is shared: shown on its own line, in no strategy's margin but in the total's.
 * Over a set of payments, a conversion or a payout counts whole when it carries any payment of the set (a batch through
 * the payments it holds), and shared costs are left out: they belong to no payment.
 *
 * Exchange costs are what ChangeNow kept, whoever the ledger charged it to: a short refund is taken from the owners'
 * balances, a lost conversion from `platform:losses`. The margin subtracts them all, so it is the platform's margin
 * as if it made its owners whole: a floor. The exchange rate's spread is in what the owner receives, not a cost booked.
 *
 * Amounts stay per asset, in smallest units (bigint): fees in ETH and gas in ETH subtract, nothing is added across
 * assets. A per-1,000-payments figure is truncated toward zero to the asset's smallest unit (bigint division).
 *
 * This sums journals, not balance rows: one read per run (the demo, the bench, a test), not a dashboard poll.
 */
import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/index.ts';
import { formatUnits } from '../money/index.ts';
import { addUnits, formatAsset, type UnitsByAsset } from './amounts.ts';

export type CostStrategy = 'threshold' | 'instant';
/** `shared`: costs no strategy carries (see the module's rule). */
export type CostLine = CostStrategy | 'shared';

export interface StrategyCosts {
  readonly strategy: CostLine;
  /** Payments credited (one payment_received journal each). */
  readonly payments: number;
  /** ChangeNow exchanges created: conversions and payouts with an exchange id. */
  readonly exchanges: number;
  /** Host-wallet transfers mined, their gas booked (one network_fee journal each). */
  readonly transfers: number;
  readonly fees: UnitsByAsset;
  readonly gas: UnitsByAsset;
  readonly exchangeCosts: UnitsByAsset;
  /** fees − gas − exchangeCosts, per asset. */
  readonly margin: UnitsByAsset;
}

export interface CostsReport {
  /** threshold, instant, then shared (present only when it holds something). */
  readonly lines: StrategyCosts[];
  /** Every line added up, shared costs included. */
  readonly total: StrategyCosts;
}

export interface CostScope {
  /** Only these payments (ids as decimal strings) and the conversions and payouts carrying them. */
  readonly paymentIds?: readonly string[];
  /** Journals booked (and exchanges created) at or after this instant. */
  readonly from?: Date;
  /** ... and before this one. */
  readonly to?: Date;
}

interface Figures {
  payments: number;
  exchanges: number;
  transfers: number;
  fees: UnitsByAsset;
  gas: UnitsByAsset;
  exchangeCosts: UnitsByAsset;
}

const empty = (): Figures => ({
  payments: 0,
  exchanges: 0,
  transfers: 0,
  fees: new Map(),
  gas: new Map(),
  exchangeCosts: new Map(),
});

/** A journal's payment, from its ref (`<id>` or `<id>:<total>`); null for any other ref. */
const REF_PAYMENT = sql`(case when split_part(j.ref, ':', 1) ~ '^[0-9]{1,20}$' then split_part(j.ref, ':', 1)::numeric end)`;

export async function readCosts(db: Db, scope: CostScope = {}): Promise<CostsReport> {
  const where = scopeConditions(scope);
  const lines = new Map<CostLine, Figures>();
  const at = (strategy: string): Figures => lineOf(lines, strategy);
  await readPaymentsCredited(db, where, at);
  await readFees(db, where, at);
  await readGas(db, where, at);
  await readExchangeCosts(db, where, at);
  await readExchanges(db, where, at);
  return costsReport(lines);
}

/** The scope as SQL conditions, shared by every read. */
interface ScopeConditions {
  /** The scope's payment ids, null without a payment set. */
  readonly ids: string[] | null;
  /** A row created inside the scope's time window. */
  readonly booked: (column: string) => RawBuilder<unknown>;
  /** A conversion in the scope's payment set (always true without one). */
  readonly conversionInSet: (column: string) => RawBuilder<unknown>;
  /** The payout `po` in the scope's payment set (always true without one). */
  readonly payoutInSet: RawBuilder<unknown>;
}

/** The figures a journal's strategy is attributed to: anything but threshold or instant is shared. */
type LineOf = (strategy: string) => Figures;

function scopeConditions(scope: CostScope): ScopeConditions {
  const ids = scope.paymentIds === undefined ? null : [...scope.paymentIds];
  const from = scope.from ?? null;
  const to = scope.to ?? null;
  return {
    ids,
    booked: (column) =>
      sql`(${from}::timestamptz is null or ${sql.ref(column)} >= ${from}::timestamptz) and (${to}::timestamptz is null or ${sql.ref(column)} < ${to}::timestamptz)`,
    conversionInSet: (column) =>
      sql`(${ids}::numeric[] is null or exists (select 1 from conversion_payments cp where cp.conversion_id = ${sql.ref(column)} and cp.payment_id = any(${ids}::numeric[])))`,
    payoutInSet: sql`(${ids}::numeric[] is null or po.payment_id = any(${ids}::numeric[])
    or exists (select 1 from payments pp where pp.payout_id = po.payout_id and pp.payment_id = any(${ids}::numeric[])))`,
  };
}

function lineOf(lines: Map<CostLine, Figures>, strategy: string): Figures {
  const key: CostLine = strategy === 'threshold' || strategy === 'instant' ? strategy : 'shared';
  let figures = lines.get(key);
  if (!figures) lines.set(key, (figures = empty()));
  return figures;
}

async function readPaymentsCredited(db: Db, { ids, booked }: ScopeConditions, at: LineOf): Promise<void> {
  const credited = await sql<{ strategy: string; n: number }>`
    select coalesce(p.payout_strategy, 'shared') as strategy, count(*)::int as n
    from ledger_journals j join payments p on p.payment_id = ${REF_PAYMENT}
    where j.kind = 'payment_received' and ${booked('j.created_at')}
      and (${ids}::numeric[] is null or p.payment_id = any(${ids}::numeric[]))
    group by 1`.execute(db);
  for (const r of credited.rows) at(r.strategy).payments += r.n;
}

// Every entry on the fee accounts, so the total is their balance over the scope; one naming no payment is shared.
async function readFees(db: Db, { ids, booked }: ScopeConditions, at: LineOf): Promise<void> {
  const fees = await sql<{ strategy: string; asset: string; units: string }>`
    select coalesce(p.payout_strategy, 'shared') as strategy, a.asset, sum(e.amount)::text as units
    from ledger_entries e
    join ledger_accounts a on a.id = e.account_id
    join ledger_journals j on j.id = e.journal_id
    left join payments p on p.payment_id = ${REF_PAYMENT}
    where a.code like 'platform:fees#%' and ${booked('j.created_at')}
      and (${ids}::numeric[] is null or p.payment_id = any(${ids}::numeric[]))
    group by 1, 2`.execute(db);
  for (const r of fees.rows) addUnits(at(r.strategy).fees, r.asset, BigInt(r.units));
}

// Gas is booked below zero (an expense): negated to read as an amount paid.
async function readGas(db: Db, where: ScopeConditions, at: LineOf): Promise<void> {
  const { ids, booked, conversionInSet, payoutInSet } = where;
  const gas = await sql<{ strategy: string; asset: string; units: string; transfers: number }>`
    select case when t.purpose = 'conversion' then 'threshold' else coalesce(po.kind, 'shared') end as strategy,
           a.asset, (-sum(e.amount))::text as units, count(distinct j.id) filter (where j.kind = 'network_fee')::int as transfers
    from ledger_entries e
    join ledger_accounts a on a.id = e.account_id
    join ledger_journals j on j.id = e.journal_id
    left join chain_transfers t on j.kind = 'network_fee' and t.transfer_id = j.ref
    left join payouts po on t.purpose = 'payout' and po.payout_id = t.ref
    where a.code = 'platform:network_costs' and ${booked('j.created_at')}
      and (${ids}::numeric[] is null
           or (t.purpose = 'conversion' and ${conversionInSet('t.ref')})
           or (t.purpose = 'payout' and ${payoutInSet}))
    group by 1, 2`.execute(db);
  for (const r of gas.rows) {
    addUnits(at(r.strategy).gas, r.asset, BigInt(r.units));
    at(r.strategy).transfers += r.transfers;
  }
}

async function readExchangeCosts(db: Db, where: ScopeConditions, at: LineOf): Promise<void> {
  const { ids, booked, conversionInSet, payoutInSet } = where;
  const costs = await sql<{ strategy: string; asset: string; units: string }>`
    select case when j.kind = 'payout_returned' then coalesce(po.kind, 'shared') else 'threshold' end as strategy,
           a.asset, sum(e.amount)::text as units
    from ledger_journals j
    join ledger_entries e on e.journal_id = j.id
    join ledger_accounts a on a.id = e.account_id
    left join payouts po on j.kind = 'payout_returned' and po.payout_id = j.ref
    where j.kind in ('conversion_shortfall', 'conversion_lost', 'payout_returned') and a.code = 'world:changenow'
      and ${booked('j.created_at')}
      and (${ids}::numeric[] is null
           or (j.kind <> 'payout_returned' and ${conversionInSet('j.ref')})
           or (j.kind = 'payout_returned' and ${payoutInSet}))
    group by 1, 2`.execute(db);
  for (const r of costs.rows) addUnits(at(r.strategy).exchangeCosts, r.asset, BigInt(r.units));
}

async function readExchanges(db: Db, where: ScopeConditions, at: LineOf): Promise<void> {
  const { booked, conversionInSet, payoutInSet } = where;
  const exchanges = await sql<{ strategy: string; n: number }>`
    select 'threshold' as strategy, count(*)::int as n from conversions c
    where c.exchange_id is not null and ${booked('c.created_at')} and ${conversionInSet('c.conversion_id')}
    union all
    select po.kind, count(*)::int from payouts po
    where po.exchange_id is not null and ${booked('po.created_at')} and ${payoutInSet}
    group by po.kind`.execute(db);
  for (const r of exchanges.rows) at(r.strategy).exchanges += r.n;
}

/** threshold, instant, then shared when it holds something; the total adds them all up. */
function costsReport(lines: Map<CostLine, Figures>): CostsReport {
  const order: CostLine[] = ['threshold', 'instant', 'shared'];
  const out = order
    .filter((s) => s !== 'shared' || lines.has('shared'))
    .map((s) => withMargin(s, lines.get(s) ?? empty()));
  const total = empty();
  for (const line of out) {
    total.payments += line.payments;
    total.exchanges += line.exchanges;
    total.transfers += line.transfers;
    for (const key of ['fees', 'gas', 'exchangeCosts'] as const)
      for (const [asset, units] of line[key]) addUnits(total[key], asset, units);
  }
  return { lines: out, total: withMargin('shared', total) };
}

function withMargin(strategy: CostLine, f: Figures): StrategyCosts {
  const margin: UnitsByAsset = new Map();
  for (const [asset, units] of f.fees) addUnits(margin, asset, units);
  for (const [asset, units] of f.gas) addUnits(margin, asset, -units);
  for (const [asset, units] of f.exchangeCosts) addUnits(margin, asset, -units);
  return { strategy, ...f, margin };
}

/** Per 1,000 payments, truncated toward zero to the asset's smallest unit; null without payments. */
export function perThousandTruncated(units: bigint, payments: number): bigint | null {
  return payments === 0 ? null : (units * 1000n) / BigInt(payments);
}

/** A count per 1,000 payments, to two decimals, truncated. */
function countPerThousand(count: number, payments: number): string {
  return payments === 0 ? '-' : formatUnits((BigInt(count) * 100_000n) / BigInt(payments), 2, { fixed: true });
}

/** ETH first, then USDT, then any other asset by name; zero where a figure has no entry for an asset another has. */
function assetsOf(line: StrategyCosts): string[] {
  const seen = new Set<string>(['eth']);
  for (const m of [line.fees, line.gas, line.exchangeCosts]) for (const asset of m.keys()) seen.add(asset);
  const rank = (a: string) => (a === 'eth' ? 0 : a === 'usdt' ? 1 : 2);
  return [...seen].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

function amounts(units: UnitsByAsset, assets: string[], payments?: number): string {
  return assets
    .map((asset) => {
      const value = units.get(asset) ?? 0n;
      if (payments === undefined) return `${formatAsset(value, asset)} ${asset.toUpperCase()}`;
      const per = perThousandTruncated(value, payments);
      return per === null ? '-' : `${formatAsset(per, asset)} ${asset.toUpperCase()}`;
    })
    .join(' + ');
}

/**
 * The report as text lines, one block per strategy: counts with their rate per 1,000 payments, then each amount as
 * booked and per 1,000 payments. Assets are listed side by side, never added together.
 */
export function formatCosts(report: CostsReport): string[] {
  const out = [
    'cost per payment (from the ledger: fees booked, gas paid, what ChangeNow kept; margin = fees - gas - exchange costs,',
    "  per asset; per 1,000 payments truncated toward zero to the asset's smallest unit; shared costs in no strategy's margin)",
  ];
  const label = (line: StrategyCosts, isTotal: boolean) =>
    isTotal ? 'all' : line.strategy === 'shared' ? 'shared (not any strategy)' : line.strategy;
  for (const [i, line] of [...report.lines, report.total].entries()) {
    const isTotal = i === report.lines.length;
    const assets = assetsOf(line);
    const per = line.strategy === 'shared' && !isTotal ? undefined : line.payments;
    out.push(
      `  ${label(line, isTotal)}: ${line.payments} payments, ${line.exchanges} ChangeNow exchanges (${countPerThousand(line.exchanges, line.payments)} per 1,000), ${line.transfers} on-chain transfers (${countPerThousand(line.transfers, line.payments)} per 1,000)`,
    );
    const figures = [
      ['fees', line.fees],
      ['gas', line.gas],
      ['exchange costs', line.exchangeCosts],
      ['margin', line.margin],
    ] as const;
    const width = Math.max(...figures.map(([, units]) => amounts(units, assets).length));
    for (const [name, units] of figures) {
      const rate = per === undefined ? '' : `   per 1,000: ${amounts(units, assets, per)}`;
      out.push(`    ${name.padEnd(15)}${amounts(units, assets).padEnd(width)}${rate}`.trimEnd());
    }
  }
  return out;
}
