/**
 * What only this process knows: IPN answers, ChangeNow calls and job attempts. Each payrail instance has its own
 * Registry (never prom-client's global one), so several instances in one process — tests — count separately.
 */
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import { isChangeNowError, type ChangeNowCall } from '../integrations/changenow/index.ts';
import type { JobObserver } from '../jobs/index.ts';
import type { IntakeOutcome } from '../pipeline/index.ts';

/** Accepted IPNs are labelled with intake's outcome; refusals by the HTTP status that refused them. */
const REFUSALS: Record<number, string> = {
  400: 'invalid',
  401: 'bad_signature',
  403: 'source_refused',
  413: 'too_large',
  429: 'rate_limited',
};
export const IPN_OUTCOMES = [
  'recorded',
  'advanced',
  'unchanged',
  'review',
  ...Object.values(REFUSALS),
  'refused_other',
  'error',
] as const;

export interface IpnAnswer {
  readonly status: number;
  /** Intake's outcome when the IPN was accepted; null when it was refused or failed. */
  readonly outcome: IntakeOutcome | null;
}

export function ipnOutcomeLabel(answer: IpnAnswer): string {
  if (answer.outcome !== null) return answer.outcome;
  if (answer.status >= 500) return 'error';
  return REFUSALS[answer.status] ?? 'refused_other';
}

/**
 * ChangeNow names some error codes itself (`pair_is_inactive`); a server answering a new code per request must not
 * grow the series without bound, so codes past this many distinct ones are counted as "other".
 */
const MAX_ERROR_CODES = 32;

let runtime: Registry | undefined;

/**
 * Node's own figures (event-loop lag, heap, GC pauses, CPU, open handles), prefixed payrail_process_. One Registry
 * for the whole process, made on first use and shared by every payrail instance in it: the figures belong to the
 * process, not to an instance, and each collectDefaultMetrics call starts a native event-loop-delay monitor and a GC
 * observer that prom-client gives no way to stop, so one call per instance would pile them up (tests start dozens).
 * It is still not prom-client's global registry, which other libraries in the process may write to.
 */
export function runtimeRegistry(): Registry {
  if (runtime === undefined) {
    runtime = new Registry();
    collectDefaultMetrics({ register: runtime, prefix: 'payrail_process_' });
  }
  return runtime;
}

export interface ProcessMetrics {
  readonly registry: Registry;
  ipnAnswered(answer: IpnAnswer): void;
  changenowCall(call: ChangeNowCall): void;
  readonly jobs: JobObserver;
}

export function createProcessMetrics(): ProcessMetrics {
  const registry = new Registry();
  const registers = [registry];
  // Made in this order, the order the registry lists them in.
  return {
    registry,
    ipnAnswered: ipnMetrics(registers),
    changenowCall: changenowMetrics(registers),
    jobs: jobMetrics(registers),
  };
}

function ipnMetrics(registers: Registry[]): ProcessMetrics['ipnAnswered'] {
  const ipns = new Counter({
    name: 'payrail_ipn_received_total',
    help: 'NOWPayments IPN requests answered, by outcome (intake outcome when accepted, refusal reason otherwise).',
    labelNames: ['outcome'],
    registers,
  });
  for (const outcome of IPN_OUTCOMES) ipns.inc({ outcome }, 0);
  return (answer) => {
    ipns.inc({ outcome: ipnOutcomeLabel(answer) });
  };
}

function changenowMetrics(registers: Registry[]): ProcessMetrics['changenowCall'] {
  const changenowDuration = new Histogram({
    name: 'payrail_changenow_request_duration_seconds',
    help: 'ChangeNow API calls sent, by endpoint and result (ok or error), in seconds.',
    labelNames: ['endpoint', 'result'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30],
    registers,
  });
  const changenowErrors = new Counter({
    name: 'payrail_changenow_errors_total',
    help: 'ChangeNow API calls that failed, by endpoint, class (transient: retried; permanent: needs a change) and code.',
    labelNames: ['endpoint', 'class', 'code'],
    registers,
  });
  const codeLabel = errorCodeLabels();
  return (call) => {
    if (call.sent)
      changenowDuration.observe(
        { endpoint: call.endpoint, result: call.error === null ? 'ok' : 'error' },
        call.seconds,
      );
    if (call.error === null) return;
    const [errorClass, code] = isChangeNowError(call.error)
      ? [call.error.kind, call.error.code]
      : ['unexpected', 'unexpected'];
    changenowErrors.inc({ endpoint: call.endpoint, class: errorClass, code: codeLabel(code) });
  };
}

/** The label for an error code: the code itself for the first MAX_ERROR_CODES distinct ones, "other" past them. */
function errorCodeLabels(): (code: string) => string {
  const seenCodes = new Set<string>();
  return (code) => {
    if (seenCodes.has(code)) return code;
    if (seenCodes.size >= MAX_ERROR_CODES) return 'other';
    seenCodes.add(code);
    return code;
  };
}

function jobMetrics(registers: Registry[]): JobObserver {
  const jobWait = new Histogram({
    name: 'payrail_job_wait_seconds',
    help: 'Time from a job being due to a worker of this process picking it up, by task, in seconds.',
    labelNames: ['task'],
    buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600],
    registers,
  });
  const jobDuration = new Histogram({
    name: 'payrail_job_duration_seconds',
    help: 'Job attempts run by this process, by task and result (success or error), in seconds.',
    labelNames: ['task', 'result'],
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers,
  });
  const jobAttempts = new Counter({
    name: 'payrail_job_attempts_total',
    help: 'Job attempts finished by this process, by task and result (success or error).',
    labelNames: ['task', 'result'],
    registers,
  });
  const jobsExhausted = new Counter({
    name: 'payrail_job_failures_total',
    help: 'Jobs that used up their attempts in this process (left failed in the queue), by task.',
    labelNames: ['task'],
    registers,
  });
  return {
    started(task, waitedSeconds) {
      jobWait.observe({ task }, waitedSeconds);
    },
    finished(task, seconds, result) {
      jobDuration.observe({ task, result }, seconds);
      jobAttempts.inc({ task, result });
    },
    exhausted(task) {
      jobsExhausted.inc({ task });
    },
  };
}
