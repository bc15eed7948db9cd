/**
 * Alerts: stored (first seen, last seen, resolved, by whom), evaluated every ALERT_INTERVAL, visible in the API and
 * dashboard, and sent to ALERT_WEBHOOK_URL when it is set. Resolution semantics: see evaluate.ts.
 *
 * State rules (rule: subject), evaluated by the alerts_evaluate cron:
 *   conversion_pending_too_long: conversion id    conversion_needs_review: conversion id
 *   payments_awaiting_conversion: "payments"      payments_in_review: "payments"
 *   conversion_held: ChangeNow error code          payout_failed / payout_needs_review / payout_awaiting_approval: payout id
 *   threshold_no_batch: channel id                 queue_depth / queue_age: task name
 *   job_failed_permanently: job id                 alert_webhook_failed: "webhook" (never sent to the webhook)
 *   host_wallet_low: eth | usdt                    chain_rpc_unreachable: chain_rpc    changenow_unreachable: changenow
 *   ledger_invariant_broken: invariant name        transfer_needs_review: transfer id
 * Event rules (EVENT_RULES), raised by code paths with raiseAlert: changenow_permanent_error (error code),
 * host_wallet_insufficient (eth | usdt), transfer_refused / transfer_unconfirmed / transfer_estimate_failed /
 * transfer_fee_ceiling / transfer_nonce_taken / transfer_reorged / transfer_review / transfer_resolved (transfer id), duplicate_exchanges,
 * exchange_mismatch and conversion_* (conversion id), worker_runner_stopped (worker id), alert_rule_failed (rule),
 * payment_review and payment_unconfirmed (payment id).
 */
export {
  raiseAlert,
  storeEventAlert,
  listAlerts,
  getAlert,
  resolveAlertByHand,
  NOTIFY_MAX_ATTEMPTS,
  type AlertInput,
  type AlertView,
  type AlertListState,
  type HandResolution,
  type RaiseOptions,
} from './store.ts';
export { evaluateAlerts, type EvaluateDeps, type EvaluationSummary } from './evaluate.ts';
export { STATE_RULES, EVENT_RULES } from './rules.ts';
export type { AlertSettings, StateRule, RuleResult, Firing } from './rule-types.ts';
export { OBSERVATION, observeOutside, type Observation } from './observe.ts';
export {
  deliverAlert,
  verifyAlertSignature,
  signAlertBody,
  WEBHOOK_TIMEOUT_MS,
  type WebhookSettings,
  type AlertPayload,
} from './notify.ts';
export { alertTasks, alertCron, ALERT_TASKS, type AlertDeps } from './tasks.ts';
export { alertSettings, alertWebhook } from './settings.ts';
