/** Received per hour over the window, from the window's `payment_received` journals (see window.ts). */
import { sql } from 'kysely';
import type { Db } from '../db/index.ts';
import { addUnits, toAmounts, type UnitsByAsset } from './amounts.ts';
import type { VolumeBucket, VolumeSeries } from './types.ts';
import type { LedgerWindow } from './window.ts';

const HOUR_MS = 3_600_000;

export async function readVolume(db: Db, window: LedgerWindow, hours: number): Promise<VolumeSeries> {
  // world:nowpayments is debited by payment_received journals only, one entry each: its entries are the credits.
  const { rows } = await sql<{ hour: Date; asset: string; units: string; payments: number }>`
    select date_trunc('hour', j.created_at) as hour, a.asset, (-sum(e.amount))::text as units, count(*)::int as payments
    from ledger_journals j
    join ledger_entries e on e.journal_id = j.id
    join ledger_accounts a on a.id = e.account_id
    where j.id > ${window.afterJournalId}::bigint and j.kind = 'payment_received' and j.created_at >= ${window.since}::timestamptz
      and a.code like 'world:nowpayments#%'
    group by 1, 2`.execute(db);
  return volumeSeries(
    window.since,
    hours,
    rows.map((r) => ({ hour: r.hour, asset: r.asset, units: BigInt(r.units), payments: r.payments })),
  );
}

/** Every hour of the window, empty ones included, each asset scaled against its own peak hour (pure). */
export function volumeSeries(
  since: Date,
  hours: number,
  rows: Array<{ hour: Date; asset: string; units: bigint; payments: number }>,
): VolumeSeries {
  const byHour = new Map<number, { units: UnitsByAsset; payments: number }>();
  const peak: UnitsByAsset = new Map();
  for (const row of rows) {
    const bucket = byHour.get(row.hour.getTime()) ?? { units: new Map<string, bigint>(), payments: 0 };
    addUnits(bucket.units, row.asset, row.units);
    bucket.payments += row.payments;
    byHour.set(row.hour.getTime(), bucket);
  }
  for (const bucket of byHour.values())
    for (const [asset, units] of bucket.units) if (units > (peak.get(asset) ?? 0n)) peak.set(asset, units);
  const assets = [...new Set(['eth', ...peak.keys()])].sort();
  const buckets: VolumeBucket[] = [];
  for (let i = 0; i < hours; i++) {
    const start = since.getTime() + i * HOUR_MS;
    const bucket = byHour.get(start);
    const units = bucket?.units ?? new Map<string, bigint>();
    const scaleBps: Record<string, number> = {};
    for (const asset of assets) {
      const top = peak.get(asset) ?? 0n;
      scaleBps[asset] = top === 0n ? 0 : Number(((units.get(asset) ?? 0n) * 10_000n) / top);
    }
    buckets.push({
      hour: new Date(start).toISOString(),
      received: toAmounts(units, assets),
      payments: bucket?.payments ?? 0,
      scaleBps,
    });
  }
  return { hours, buckets, peak: toAmounts(peak, assets) };
}
