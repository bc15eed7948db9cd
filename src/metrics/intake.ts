/**
 * How intake's one call (payrail_intake_ipn, migration 026) fares in this process: taken, or declined and why. Its
 * own Registry, made on first use and rendered by every payrail instance's /metrics beside runtimeRegistry: the call
 * is made from the pipeline, far from any instance's metrics, so the figure is the process's (several instances in
 * one process, as in tests, share it). A rule change that makes the call decline every IPN shows as `taken` standing
 * still while a decline code grows; intake stays correct either way (the stepwise path takes what is declined), only
 * slower.
 */
import { Counter, Registry } from 'prom-client';

/**
 * Why the call declines (its o_declined): an IPN Node does not send it, a channel not registered, a payment row gone,
 * another order, in review, partial, refunded or reversed, restated, a finished IPN that restates the credit, nothing
 * to credit, or stored amounts not this IPN's.
 */
export const ONE_CALL_DECLINES = [
  'not_common',
  'unknown_channel',
  'no_row',
  'other_order',
  'in_review',
  'partial',
  'refunded',
  'restated',
  'restatement',
  'zero_amount',
  'stored_amounts',
] as const;
export type OneCallDecline = (typeof ONE_CALL_DECLINES)[number];

/** `other`: a code the function gave that this list does not know (a label never grows without bound). */
const RESULTS = ['taken', ...ONE_CALL_DECLINES, 'other'] as const;

let registry: Registry | undefined;
let results: Counter<'result'> | undefined;
let calls: Counter | undefined;
let callIpns: Counter | undefined;

function counter(): { registry: Registry; results: Counter<'result'>; calls: Counter; callIpns: Counter } {
  if (registry === undefined || results === undefined || calls === undefined || callIpns === undefined) {
    registry = new Registry();
    // Two counters rather than a histogram of sizes: the mean group over any window is their rates' ratio.
    calls = new Counter({
      name: 'payrail_intake_calls_total',
      help: "Database calls of the web process's intake, each one IPN alone or a group of IPNs committed together.",
      registers: [registry],
    });
    callIpns = new Counter({
      name: 'payrail_intake_call_ipns_total',
      help: 'IPNs sent in those calls: divided by payrail_intake_calls_total, the mean group (1 when idle).',
      registers: [registry],
    });
    results = new Counter({
      name: 'payrail_intake_one_call_total',
      help: "IPNs offered to intake's one database call, by result: taken, or the code of why it declined (the IPN then took the stepwise path).",
      labelNames: ['result'],
      registers: [registry],
    });
    for (const result of RESULTS) results.inc({ result }, 0);
  }
  return { registry, results, calls, callIpns };
}

/** One IPN offered to the one call: `taken`, or the code it declined with. */
export function countOneCall(result: string): void {
  counter().results.inc({ result: (RESULTS as readonly string[]).includes(result) ? result : 'other' });
}

/** One group of IPNs sent to the database together. */
export function observeIntakeGroup(size: number): void {
  const { calls, callIpns } = counter();
  calls.inc();
  callIpns.inc(size);
}

/** The current figures, every result shown (at 0 until it happens). */
export async function intakeMetricsText(): Promise<string> {
  return counter().registry.metrics();
}
