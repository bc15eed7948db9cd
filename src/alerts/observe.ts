/**
 * What the worker sees of the outside world, kept in `observations` so web processes (health, metrics, dashboard)
 * report it without calling out themselves. A probe that fails is recorded (ok = false, a short message), never
 * thrown: the rest of the pass goes on, and the rule reading that observation fires.
 */
import { sql } from 'kysely';
import type { Db } from '../db/index.ts';
import type { TransferAsset } from '../integrations/wallet/index.ts';
import { shortError } from './text.ts';

/** The names other parts read: do not rename. */
export const OBSERVATION = {
  /** Host wallet ETH, in wei (decimal integer text). */
  hostEth: 'host_wallet.eth',
  /** Host wallet USDT, in 10^-6 units (decimal integer text). */
  hostUsdt: 'host_wallet.usdt',
  /** The chain RPC: the latest block number. */
  chainRpc: 'chain_rpc',
  /** ChangeNow answering an authenticated read. */
  changenow: 'changenow',
} as const;

export interface ObserveDeps {
  db: Db;
  wallet: { balance(asset: TransferAsset): Promise<bigint>; blockNumber(): Promise<bigint> };
  /** Unset: no USDT observation. */
  usdtContract?: `0x${string}` | undefined;
  exchange: { listExchanges(filter: { userId: string }): Promise<unknown[]> };
}

export interface Observation {
  name: string;
  ok: boolean;
  value: string | null;
  detail: string | null;
}

/** A userId payrail never gives an exchange: listing it is a cheap, authenticated read that changes nothing. */
const PROBE_USER_ID = 'payrail-probe';

export async function observeOutside(deps: ObserveDeps): Promise<Observation[]> {
  const probes: Array<[string, () => Promise<string | null>]> = [
    [OBSERVATION.hostEth, async () => (await deps.wallet.balance({ kind: 'native' })).toString()],
    [OBSERVATION.chainRpc, async () => (await deps.wallet.blockNumber()).toString()],
    [OBSERVATION.changenow, async () => {
      await deps.exchange.listExchanges({ userId: PROBE_USER_ID });
      return null;
    }],
  ];
  const usdt = deps.usdtContract;
  if (usdt !== undefined) probes.push([OBSERVATION.hostUsdt, async () => (await deps.wallet.balance({ kind: 'erc20', contract: usdt })).toString()]);
  const observations = await Promise.all(
    probes.map(async ([name, probe]): Promise<Observation> => {
      try {
        return { name, ok: true, value: await probe(), detail: null };
      } catch (error) {
        return { name, ok: false, value: null, detail: shortError(error) };
      }
    }),
  );
  for (const o of observations) {
    await sql`insert into observations (name, ok, value, detail, observed_at) values (${o.name}, ${o.ok}, ${o.value}, ${o.detail}, now())
      on conflict (name) do update set ok = excluded.ok, value = excluded.value, detail = excluded.detail, observed_at = excluded.observed_at`.execute(deps.db);
  }
  return observations;
}
