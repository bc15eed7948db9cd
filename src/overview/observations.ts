/**
 * What the workers last saw outside (migration 010's `observations`): the host wallet's balances, stored as
 * smallest-unit integer strings (`host_wallet.eth` in wei, `host_wallet.usdt` in 10^-6), and the reachability of
 * the chain RPC, ChangeNow and anything else a worker records.
 */
import { sql } from 'kysely';
import type { Db } from '../db/index.ts';
import { formatAsset, seconds } from './amounts.ts';
import type { HostBalance, ObservationView } from './types.ts';

const HOST_WALLET: Record<string, 'eth' | 'usdt'> = { 'host_wallet.eth': 'eth', 'host_wallet.usdt': 'usdt' };
const UNITS_RE = /^[0-9]{1,78}$/;

export interface Observed {
  readonly hostWallet: { readonly eth: HostBalance | null; readonly usdt: HostBalance | null };
  readonly services: ObservationView[];
}

/** A row of `observations` as read, with its age in whole seconds as text. */
export interface ObservationRow {
  name: string;
  ok: boolean;
  value: string | null;
  detail: string | null;
  observed_at: Date;
  age: string;
}

export async function readObservations(db: Db): Promise<Observed> {
  const { rows } = await sql<ObservationRow>`
    select name, ok, value, detail, observed_at, extract(epoch from now() - observed_at)::bigint::text as age
    from observations order by name`.execute(db);
  const hostWallet: { eth: HostBalance | null; usdt: HostBalance | null } = { eth: null, usdt: null };
  const services: ObservationView[] = [];
  for (const r of rows) {
    const base = { ok: r.ok, detail: r.detail, observedAt: r.observed_at.toISOString(), ageSeconds: seconds(r.age) };
    const asset = HOST_WALLET[r.name];
    if (asset) {
      // A value that is not an integer of units is shown as missing, never guessed at.
      const amount = r.value !== null && UNITS_RE.test(r.value) ? formatAsset(BigInt(r.value), asset) : null;
      hostWallet[asset] = { asset, amount, ...base };
    } else {
      services.push({ name: r.name, value: r.value, ...base });
    }
  }
  return { hostWallet, services };
}
