/**
 * The faults of a run, planned from the seed: what, when (a point in the sending progress, then a pause), and for
 * how long (bounded). They run one at a time, each undone before the next, and all are undone before the checks.
 */
import type { ChaosPostgres } from './postgres.ts';
import type { Fleet } from './processes.ts';
import type { Rng } from './rng.ts';
import type { World } from './world.ts';
import { sleep } from './net.ts';

export type FaultKind =
  | 'kill_worker'
  | 'restart_postgres'
  | 'changenow_down'
  | 'changenow_5xx'
  | 'changenow_401'
  | 'changenow_slow'
  | 'rpc_down'
  | 'exchange_failed'
  | 'exchange_refunded';

export interface PlannedFault {
  kind: FaultKind;
  /** Fires once this share of the payments has been sent (0..1), plus `pauseMs`. */
  atProgress: number;
  pauseMs: number;
  durationMs: number;
  /** kill_worker: which worker. */
  target: number;
}

export function planFaults(rng: Rng, count: number, canRestartPostgres: boolean): PlannedFault[] {
  const kinds: FaultKind[] = ['kill_worker', 'changenow_down', 'changenow_5xx', 'changenow_401', 'changenow_slow', 'rpc_down', 'exchange_failed', 'exchange_refunded'];
  if (canRestartPostgres) kinds.push('restart_postgres');
  // The first faults cover every kind once, in a seeded order, so a short run still sees each; then at random.
  const firstRound = rng.shuffle([...kinds]);
  const faults: PlannedFault[] = [];
  for (let i = 0; i < count; i++) {
    const kind = i < firstRound.length ? (firstRound[i] as FaultKind) : rng.pick(kinds);
    faults.push({ kind, atProgress: rng.next(), pauseMs: rng.int(0, 1_500), durationMs: rng.int(1_000, 4_000), target: rng.int(0, 63) });
  }
  return faults.sort((a, b) => a.atProgress - b.atProgress);
}

export interface FaultContext {
  world: World;
  fleet: Fleet;
  postgres: ChaosPostgres;
  log: (line: string) => void;
}

/** Applies one fault and undoes it; returns a line describing what happened. */
export async function inject(fault: PlannedFault, ctx: FaultContext): Promise<string> {
  const { world, fleet, postgres } = ctx;
  const d = fault.durationMs;
  switch (fault.kind) {
    case 'kill_worker':
      return fleet.killWorker(fault.target);
    case 'restart_postgres':
      await postgres.restart(d);
      return `PostgreSQL stopped, down ${d} ms, started again`;
    case 'changenow_down':
    case 'changenow_5xx':
    case 'changenow_401':
    case 'changenow_slow': {
      const mode = fault.kind.slice('changenow_'.length) as 'down' | '5xx' | '401' | 'slow';
      // slow: 3 s per request, over the workers' 2 s CHANGENOW_TIMEOUT, so requests time out (answer unknown).
      await world.sim.setFault(mode, mode === 'slow' ? { slowMs: 3_000 } : {});
      await sleep(d);
      await world.sim.setFault('none');
      return `ChangeNow ${mode} for ${d} ms`;
    }
    case 'rpc_down':
      world.proxy.down();
      await sleep(d);
      world.proxy.up();
      return `RPC refused for ${d} ms`;
    case 'exchange_failed':
    case 'exchange_refunded': {
      const end = fault.kind === 'exchange_failed' ? 'failed' : 'refunded';
      const before = world.sim.exchanges.size;
      world.sim.failNextExchange(end);
      // Wait (bounded) for an exchange to take it, so the forced end is not cleared unused when the faults stop.
      const deadline = Date.now() + 15_000;
      while (world.sim.exchanges.size === before && Date.now() < deadline) await sleep(100);
      const taken = world.sim.exchanges.size > before;
      return taken ? `next ChangeNow exchange set to end ${end}` : `next ChangeNow exchange set to end ${end} (no exchange created within 15 s)`;
    }
  }
}

/** Undoes whatever may still be in effect (called before the checks, and on the way out). */
export async function clearFaults(world: World): Promise<void> {
  world.proxy.up();
  await world.sim.setFault('none');
  world.sim.failNextExchange(null);
}
