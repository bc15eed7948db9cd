/** Smallest units (bigint) per asset, and their decimal form: the overview's only money arithmetic; and ages. */
import { sql } from 'kysely';
import { decimalsOf, formatUnits, isAssetCode } from '../money/index.ts';
import type { AssetAmounts } from './types.ts';

export type UnitsByAsset = Map<string, bigint>;

/** An asset payrail does not know the decimals of is shown in smallest units rather than guessed. */
export function formatAsset(units: bigint, asset: string): string {
  return isAssetCode(asset) ? formatUnits(units, decimalsOf(asset)) : units.toString();
}

export function addUnits(target: UnitsByAsset, asset: string, units: bigint): void {
  target.set(asset, (target.get(asset) ?? 0n) + units);
}

/** `always` assets are listed even at zero, so a total reads "0" rather than vanishing. */
export function toAmounts(units: UnitsByAsset, always: readonly string[] = []): AssetAmounts {
  const out: AssetAmounts = {};
  for (const asset of [...new Set([...always, ...units.keys()])].sort())
    out[asset] = formatAsset(units.get(asset) ?? 0n, asset);
  return out;
}

export function sumUnits(...parts: UnitsByAsset[]): UnitsByAsset {
  const out: UnitsByAsset = new Map();
  for (const part of parts) for (const [asset, units] of part) addUnits(out, asset, units);
  return out;
}

/** Whole seconds from a SQL `extract(epoch ...)::bigint::text`: ages, never amounts. */
export function seconds(text: string | null): number {
  return text === null ? 0 : Number.parseInt(text, 10);
}

/** A review list's column: how long the row has waited since it last changed, for waited(). */
export const WAITING = sql`extract(epoch from now() - updated_at)::bigint::text as waiting`;

/** When a row in review last changed, and how long it has waited since (never below 0 when clocks disagree). */
export function waited(r: { updated_at: Date; waiting: string }): { updatedAt: string; waitingSeconds: number } {
  return { updatedAt: r.updated_at.toISOString(), waitingSeconds: Math.max(0, seconds(r.waiting)) };
}
