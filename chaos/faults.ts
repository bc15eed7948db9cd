/**
 * The faults of a run, planned from the seed: what, when (a point in the sending progress, then a pause), and for
 * how long (bounded). They run one at a time, each undone before the next, and all are undone before the checks.
 */
import { parseGwei } from 'viem';
import type { ForcedEnd } from '../src/simulators/changenow/server.ts';
import type { AdminApi } from './admin.ts';
import { feeSpike, nonceTaken, poolDropped, reorgBlocks } from './chain-faults.ts';
import type { ChaosPostgres } from './postgres.ts';
import type { Fleet } from './processes.ts';
import type { Rng } from './rng.ts';
import type { World } from './world.ts';
import { sleep } from './net.ts';

/** payrail's fee ceiling in the run (TRANSFER_MAX_FEE_GWEI): a nonce_taken fault outbids it, a fee spike stays under it. */
export const TRANSFER_MAX_FEE_GWEI = '300';
const CEILING_WEI = parseGwei(TRANSFER_MAX_FEE_GWEI);
/** What the node answers a send while rpc_refusing: the answer that tempts a sender to sign again at another nonce. */
const REFUSAL = 'insufficient funds for gas * price + value';
/**
 * How the next exchange misbehaves, per fault kind (the fault's target picks one): it ends failed, or expired although
 * funded (the deposit kept either way); refunds whole or short (within CHANGENOW_REFUND_TOLERANCE: settled by itself);
 * finishes but pays a unit short, to another address, 5 % below its estimate (beyond CHANGENOW_MAX_SLIPPAGE), or
 * without saying how much (no amountTo); is
 * created unlike the request (another payout address, twice the amount: never funded); or sits in ChangeNow's
 * `verifying` (its AML check) for 3 s before finishing.
 */
const EXCHANGE_ENDS = {
  exchange_failed: ['failed', 'expired_funded'],
  exchange_refunded: ['refunded', 'refunded_short'],
  exchange_paid_wrong: ['short_payout', 'payout_elsewhere', 'below_estimate', 'no_amount_to'],
  exchange_answer_wrong: ['wrong_payout_address', 'wrong_amount'],
  exchange_verifying: ['verifying'],
} as const satisfies Record<string, readonly NonNullable<ForcedEnd>[]>;
/** "Every send while the fault lasts": more than any run makes. */
const ALL_SENDS = 1_000_000;

export type FaultKind =
  | 'kill_worker'
  | 'restart_postgres'
  | 'changenow_down'
  | 'changenow_5xx'
  | 'changenow_401'
  | 'changenow_slow'
  | 'nowpayments_unavailable'
  | 'rpc_down'
  | 'rpc_lost_answers'
  | 'rpc_refusing'
  | 'rpc_refusing_gaps'
  | 'exchange_failed'
  | 'exchange_refunded'
  | 'exchange_paid_wrong'
  | 'exchange_answer_wrong'
  | 'exchange_verifying'
  | 'fee_spike'
  | 'pool_dropped'
  | 'reorg'
  | 'nonce_taken';

export interface PlannedFault {
  kind: FaultKind;
  /** Fires once this share of the payments has been sent (0..1), plus `pauseMs`. */
  atProgress: number;
  pauseMs: number;
  durationMs: number;
  /** kill_worker: which worker; reorg: depth (1 + target % 3) and from which host nonce transactions are dropped. */
  target: number;
}

export function planFaults(rng: Rng, count: number, canRestartPostgres: boolean): PlannedFault[] {
  const kinds: FaultKind[] = [
    'kill_worker',
    'changenow_down',
    'changenow_5xx',
    'changenow_401',
    'changenow_slow',
    'nowpayments_unavailable',
    'rpc_down',
    'rpc_lost_answers',
    'rpc_refusing',
    'rpc_refusing_gaps',
    'exchange_failed',
    'exchange_refunded',
    'exchange_paid_wrong',
    'exchange_answer_wrong',
    'exchange_verifying',
    'fee_spike',
    'pool_dropped',
    'reorg',
    'nonce_taken',
  ];
  if (canRestartPostgres) kinds.push('restart_postgres');
  // The first faults cover every kind once, in a seeded order, so a short run still sees each; then at random.
  const firstRound = rng.shuffle([...kinds]);
  const faults: PlannedFault[] = [];
  for (let i = 0; i < count; i++) {
    const kind = i < firstRound.length ? (firstRound[i] as FaultKind) : rng.pick(kinds);
    faults.push({
      kind,
      atProgress: rng.next(),
      pauseMs: rng.int(0, 1_500),
      durationMs: rng.int(1_000, 4_000),
      target: rng.int(0, 63),
    });
  }
  return faults.sort((a, b) => a.atProgress - b.atProgress);
}

export interface FaultContext {
  world: World;
  fleet: Fleet;
  postgres: ChaosPostgres;
  /** The admin API, for the operator's part of a fault (resolving a transfer whose nonce was taken). */
  admin: AdminApi;
  /** Work a fault leaves to go on beside the next faults (an operator's follow-up); awaited before the settle. */
  followUp: (work: Promise<string>) => void;
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
    case 'changenow_slow':
      return changenowUnavailable(world, fault.kind, d);
    case 'nowpayments_unavailable':
      return nowpaymentsUnavailable(world, fault.target, d);
    case 'rpc_down':
      return rpcDown(world, d);
    case 'rpc_lost_answers':
      return rpcLostAnswers(world, d);
    case 'rpc_refusing':
      return rpcRefusing(world, d);
    case 'rpc_refusing_gaps':
      return rpcRefusingGaps(world, d);
    case 'exchange_failed':
    case 'exchange_refunded':
    case 'exchange_paid_wrong':
    case 'exchange_answer_wrong':
    case 'exchange_verifying':
      return forceNextExchangeEnd(world, fault.kind, fault.target);
    case 'fee_spike':
      return feeSpike(world, d, CEILING_WEI);
    case 'pool_dropped':
      return poolDropped(world, d);
    case 'reorg':
      return reorgBlocks(world, 1 + (fault.target % 3), Math.floor(fault.target / 3));
    case 'nonce_taken':
      // Twice the ceiling: no replacement payrail signs can take the nonce back.
      return nonceTaken(world, ctx.admin, CEILING_WEI * 2n, ctx.followUp);
  }
}

async function changenowUnavailable(
  world: World,
  kind: 'changenow_down' | 'changenow_5xx' | 'changenow_401' | 'changenow_slow',
  d: number,
): Promise<string> {
  const mode = kind.slice('changenow_'.length) as 'down' | '5xx' | '401' | 'slow';
  // slow: 3 s per request, over the workers' 2 s CHANGENOW_TIMEOUT, so requests time out (answer unknown).
  await world.sim.setFault(mode, mode === 'slow' ? { slowMs: 3_000 } : {});
  await sleep(d);
  await world.sim.setFault('none');
  return `ChangeNow ${mode} for ${d} ms`;
}

async function nowpaymentsUnavailable(world: World, target: number, d: number): Promise<string> {
  // Credits wait: each confirmation is asked again with the queue's backoff, never credited on the IPN's word.
  const mode = (['down', '5xx', 'slow'] as const)[target % 3] as 'down' | '5xx' | 'slow';
  await world.nowpaymentsApi.setFault(mode, mode === 'slow' ? { slowMs: 3_000 } : {});
  await sleep(d);
  await world.nowpaymentsApi.setFault('none');
  return `NOWPayments' API ${mode} for ${d} ms`;
}

async function rpcDown(world: World, d: number): Promise<string> {
  world.proxy.setFaults({ down: true });
  await sleep(d);
  world.proxy.setFaults({});
  return `RPC answered 503 for ${d} ms`;
}

async function rpcLostAnswers(world: World, d: number): Promise<string> {
  // The node takes each send but its answer is lost, and lookups of any hash say unknown (a lagging node).
  const sends = world.proxy.calls('eth_sendRawTransaction');
  world.proxy.setFaults({ dropSendAnswers: ALL_SENDS, lagging: true });
  await sleep(d);
  world.proxy.setFaults({});
  return `RPC lost every send's answer (the node took them) and lagged for ${d} ms: ${world.proxy.calls('eth_sendRawTransaction') - sends} send(s)`;
}

async function rpcRefusing(world: World, d: number): Promise<string> {
  // The double-payment trap: sends the node took without an answer, then, still lagging, the node refuses the
  // same transfers as if the wallet could not pay. A sender that believed it would sign again at a new nonce.
  const sends = world.proxy.calls('eth_sendRawTransaction');
  const half = Math.round(d / 2);
  world.proxy.setFaults({ dropSendAnswers: ALL_SENDS, lagging: true });
  await sleep(half);
  const lost = world.proxy.calls('eth_sendRawTransaction') - sends;
  world.proxy.setFaults({ refuseSends: REFUSAL, lagging: true });
  await sleep(d - half);
  world.proxy.setFaults({});
  return `RPC lost send answers and lagged for ${half} ms (${lost} send(s)), then refused sends ("${REFUSAL}") still lagging for ${d - half} ms (${world.proxy.calls('eth_sendRawTransaction') - sends - lost} send(s))`;
}

async function rpcRefusingGaps(world: World, d: number): Promise<string> {
  // A node that does not queue: a send whose nonce is ahead of the ones it holds is refused ("nonce too high"), as a
  // batch's broadcasts reaching it out of order meet on Hardhat or a full geth pool.
  const sends = world.proxy.calls('eth_sendRawTransaction');
  const refused = world.proxy.gapsRefused();
  world.proxy.setFaults({ refuseGaps: true });
  await sleep(d);
  world.proxy.setFaults({});
  return `RPC refused sends with a nonce gap for ${d} ms: ${world.proxy.gapsRefused() - refused} of ${world.proxy.calls('eth_sendRawTransaction') - sends} send(s) refused`;
}

async function forceNextExchangeEnd(world: World, kind: keyof typeof EXCHANGE_ENDS, target: number): Promise<string> {
  const ends = EXCHANGE_ENDS[kind];
  const end = ends[target % ends.length] as NonNullable<ForcedEnd>;
  const before = world.sim.exchanges.size;
  world.sim.failNextExchange(end);
  // Wait (bounded) for an exchange to take it, so the forced end is not cleared unused when the faults stop.
  const deadline = Date.now() + 15_000;
  while (world.sim.exchanges.size === before && Date.now() < deadline) await sleep(100);
  const taken = world.sim.exchanges.size > before;
  return taken
    ? `next ChangeNow exchange set to ${end}`
    : `next ChangeNow exchange set to ${end} (no exchange created within 15 s)`;
}

/** Undoes whatever may still be in effect (called before the checks, and on the way out). */
export async function clearFaults(world: World): Promise<void> {
  world.proxy.setFaults({});
  if (world.ticker.isHeld) await world.ticker.release();
  await world.sim.setFault('none');
  await world.nowpaymentsApi.setFault('none');
  world.sim.failNextExchange(null);
}
