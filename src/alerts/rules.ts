/**
 * State rules: each looks at the database (and the observations of the outside world written just before) and says
 * which subjects are firing now. The evaluator opens what is new and resolves what cleared. A rule never writes.
 */
import type { StateRule } from './rule-types.ts';
import { eventRules } from './rules-events.ts';
import { outsideRules } from './rules-outside.ts';
import { pipelineRules } from './rules-pipeline.ts';
import { queueRules } from './rules-queue.ts';

export const STATE_RULES: readonly StateRule[] = [...pipelineRules, ...queueRules, ...outsideRules, ...eventRules];

/**
 * Alerts raised by code paths where something happened, rather than evaluated from a state. They resolve when they
 * have not recurred for ALERT_EVENT_RESOLVE_AFTER, or by hand. Listed for operators; any rule name not in
 * STATE_RULES is treated as an event.
 */
export const EVENT_RULES = [
  'changenow_permanent_error',
  'host_wallet_insufficient',
  'transfer_refused',
  'transfer_unconfirmed',
  'transfer_estimate_failed',
  'transfer_fee_ceiling',
  'transfer_nonce_taken',
  'transfer_reorged',
  'transfer_review',
  'transfer_resolved',
  'duplicate_exchanges',
  'exchange_mismatch',
  'conversion_stuck',
  'conversion_unverifiable',
  'conversion_payout_missing',
  'conversion_payout_short',
  'conversion_below_estimate',
  'conversion_payout_reused',
  'conversion_refund_missing',
  'conversion_refund_short',
  'conversion_refund_reused',
  'conversion_refunded',
  'conversion_failed',
  'worker_runner_stopped',
  'alert_rule_failed',
  'payment_review',
  'payment_unconfirmed',
] as const;
