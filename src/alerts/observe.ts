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
  /** The ledger invariant check's last run: ok = clean, value = problems found, observed_at = when it began. */
  ledgerCheck: 'ledger_check',
  /** The ledger against the chain's last run: ok = no difference, value = assets differing. */
  ledgerChainCheck: 'ledger_chain_check',
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
    [
      OBSERVATION.changenow,
      async () => {
        await deps.exchange.listExchanges({ userId: PROBE_USER_ID });
        return null;
      },
    ],
  ];
  const usdt = deps.usdtContract;
  if (usdt !== undefined)
    probes.push([
      OBSERVATION.hostUsdt,
      async () => (await deps.wallet.balance({ kind: 'erc20', contract: usdt })).toString(),
    ]);
  const observations = await Promise.all(
    probes.map(async ([name, probe]): Promise<Observation> => {
      try {
        return { name, ok: true, value: await probe(), detail: null };
      } catch (error) {
        return { name, ok: false, value: null, detail: shortError(error) };
      }
    }),
  );
  for (const o of observations) await recordObservation(deps.db, o);
  return observations;
}

/**
 * Writes an observation, keeping when its failing streak began: failing_since is the first failed observation's
 * time, carried over while it keeps failing, and cleared by the first success. A row whose failing_since is older
 * than its observed_at has therefore failed at least twice in a row.
 */
export async function recordObservation(db: Db, o: Observation): Promise<void> {
  await sql`insert into observations (name, ok, value, detail, observed_at, failing_since)
    values (${o.name}, ${o.ok}, ${o.value}, ${o.detail}, now(), case when ${o.ok} then null else now() end)
    on conflict (name) do update set ok = excluded.ok, value = excluded.value, detail = excluded.detail, observed_at = excluded.observed_at,
      failing_since = case when excluded.ok then null else coalesce(observations.failing_since, excluded.observed_at) end`.execute(
    db,
  );
}

/**
 * Claims a throttled check's turn: moves its row's observed_at to now when the last run started at least `everyMs`
 * ago (or never ran), in its own statement, so the claim holds whether the run then succeeds, fails or never ends.
 * Every worker process reads the same row: the check runs once per `everyMs` in all, not once per process. The
 * last result (ok, value) stays until the run records its own; detail says a run is under way.
 */
export async function claimThrottled(db: Db, name: string, everyMs: number): Promise<boolean> {
  const { rows } = await sql<{ name: string }>`
    insert into observations (name, ok, value, detail, observed_at) values (${name}, false, null, 'running', now())
    on conflict (name) do update set observed_at = now(), detail = 'running'
      where observations.observed_at <= now() - ${everyMs} * interval '1 millisecond'
    returning name`.execute(db);
  return rows.length > 0;
}

/** The result of a claimed check, under the claim's observed_at (when the check began looking). */
export async function recordThrottled(db: Db, o: Observation): Promise<void> {
  await sql`update observations set ok = ${o.ok}, value = ${o.value}, detail = ${o.detail},
      failing_since = case when ${o.ok} then null else coalesce(failing_since, observed_at) end
    where name = ${o.name}`.execute(db);
}
