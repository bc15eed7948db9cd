/**
 * Totals from the ledger's balance rows: a few dozen rows whatever the history (2,944 accounts for 1,000,000
 * payments over 1,000 channels), never a sum over payments, entries or payouts.
 *
 * Paid out has no account of its own: a payout's completion moves its amount to `world:payees` (sent straight to the
 * owner) or to `world:changenow` (exchanged into the owner's currency), and `world:changenow` also holds the two legs
 * of every settled conversion and the part of a returned payout that did not come back. So, per asset:
 *
 *   paid out = world:payees + world:changenow − (conversions' legs) − (losses booked by payout_returned journals)
 *
 * The conversion legs come from the conversions table (one row per batch of ~200 payments), the losses from the few
 * `payout_returned` journals (found through their (kind, ref) index). test/integration/overview.test.ts checks the
 * result against the sum of completed payouts.
 *
 * Network costs are the balance of `platform:network_costs`, which only `network_fee` journals move (one per mined
 * transfer, ≈ 318,000 for 1,000,000 payments: too many to sum here); the same test checks the balance against the
 * sum of those journals.
 */
import { sql } from 'kysely';
import type { Db } from '../db/index.ts';
import { addUnits, formatAsset, sumUnits, toAmounts, type UnitsByAsset } from './amounts.ts';
import type { ConversionStates } from './conversions.ts';
import type { Totals } from './types.ts';

export interface LedgerFigures {
  /** world:nowpayments#NN, negated: money entering payrail debits the world. */
  readonly received: UnitsByAsset;
  readonly fees: UnitsByAsset;
  readonly available: UnitsByAsset;
  readonly reserved: UnitsByAsset;
  readonly payees: UnitsByAsset;
  readonly changenow: UnitsByAsset;
  /** What ChangeNow kept of returned payouts (payout_returned entries on world:changenow). */
  readonly returnLosses: UnitsByAsset;
  /** platform:network_costs, negated: gas paid is an expense, booked below zero. */
  readonly networkCosts: UnitsByAsset;
}

const BUCKETS = ['received', 'fees', 'available', 'reserved', 'payees', 'changenow', 'networkCosts'] as const;
/** Buckets whose accounts run below zero, negated to read as amounts. */
const NEGATED: ReadonlySet<string> = new Set(['received', 'networkCosts']);

export async function readLedgerFigures(db: Db): Promise<LedgerFigures> {
  const balances = await sql<{ bucket: (typeof BUCKETS)[number]; asset: string; units: string }>`
    select case
             when code like 'world:nowpayments#%' then 'received'
             when code like 'platform:fees#%' then 'fees'
             when code like 'channel:%:payout' then 'reserved'
             when code like 'channel:%' then 'available'
             when code = 'world:payees' then 'payees'
             when code = 'platform:network_costs' then 'networkCosts'
             else 'changenow'
           end as bucket,
           asset, sum(balance)::text as units
    from ledger_accounts
    where code like 'world:nowpayments#%' or code like 'platform:fees#%' or code like 'channel:%' or code in ('world:payees', 'world:changenow', 'platform:network_costs')
    group by 1, 2`.execute(db);
  const losses = await sql<{ asset: string; units: string }>`
    select a.asset, sum(e.amount)::text as units
    from ledger_journals j
    join ledger_entries e on e.journal_id = j.id
    join ledger_accounts a on a.id = e.account_id
    where j.kind = 'payout_returned' and a.code = 'world:changenow'
    group by a.asset`.execute(db);

  const figures = Object.fromEntries([...BUCKETS.map((b) => [b, new Map()]), ['returnLosses', new Map()]]) as Record<
    keyof LedgerFigures,
    UnitsByAsset
  >;
  for (const row of balances.rows)
    addUnits(figures[row.bucket], row.asset, NEGATED.has(row.bucket) ? -BigInt(row.units) : BigInt(row.units));
  for (const row of losses.rows) addUnits(figures.returnLosses, row.asset, BigInt(row.units));
  return figures;
}

export function totalsFrom(ledger: LedgerFigures, conversions: ConversionStates): Totals {
  const sent: UnitsByAsset = new Map();
  const received: UnitsByAsset = new Map();
  for (const c of conversions.settled) {
    addUnits(sent, c.fromAsset, c.sentUnits);
    addUnits(received, c.toAsset, c.receivedUnits);
  }
  const paidOut = sumUnits(ledger.payees, ledger.changenow);
  for (const [asset, units] of sent) addUnits(paidOut, asset, -units);
  for (const [asset, units] of received) addUnits(paidOut, asset, units);
  for (const [asset, units] of ledger.returnLosses) addUnits(paidOut, asset, -units);
  const converting: UnitsByAsset = new Map();
  for (const c of conversions.openSent) addUnits(converting, c.fromAsset, c.sentUnits);
  const feesEth = ledger.fees.get('eth') ?? 0n;
  const networkCostsEth = ledger.networkCosts.get('eth') ?? 0n;
  return {
    received: toAmounts(ledger.received, ['eth']),
    platformFees: toAmounts(ledger.fees, ['eth']),
    feesVsNetworkCosts: {
      asset: 'eth',
      fees: formatAsset(feesEth, 'eth'),
      networkCosts: formatAsset(networkCostsEth, 'eth'),
      net: formatAsset(feesEth - networkCostsEth, 'eth'),
    },
    converted: {
      count: conversions.settledCount,
      sent: toAmounts(sent, ['eth']),
      received: toAmounts(received, ['usdt']),
    },
    paidOut: toAmounts(paidOut, ['eth', 'usdt']),
    inFlight: {
      available: toAmounts(ledger.available, ['eth', 'usdt']),
      reserved: toAmounts(ledger.reserved, ['eth', 'usdt']),
      converting: toAmounts(converting, ['eth']),
      total: toAmounts(sumUnits(ledger.available, ledger.reserved), ['eth', 'usdt']),
    },
  };
}
