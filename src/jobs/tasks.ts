/**
 * The task registry: every job payrail queues, with its payload type. A job queued for a task whose handler is not
 * part of this version stays queued and visible (graphile-worker only fetches tasks it knows), never dropped.
 */
export interface TaskPayloads {
  /** A crediting IPN's payment: ask NOWPayments' API, credit once it agrees (NOWPAYMENTS_API_KEY set). */
  payment_confirm: { paymentId: string };
  /** An instant channel's credited payment: open its payout (once), then run it. */
  payout_instant: { paymentId: string };
  /** Move a payout (threshold batch or instant) on: approval check, exchange, transfer. */
  payout_run: { payoutId: string };
  /** Follow a sent payout's exchange until it ends. */
  payout_poll: { payoutId: string };
  /** A threshold batch queued by an earlier version (payout id in batchId): run as payout_run. */
  payout_batch: { batchId: string };
  /** A channel's threshold check on its own (after its batch completed). */
  threshold_check: { channelId: string };
  /** Gather pending payments into a conversion when there are enough (cron, and nudged by intake). */
  conversion_batch: Record<string, never>;
  /** Create the conversion's ChangeNow exchange and the transfer that pays it. */
  conversion_exchange: { conversionId: string };
  /** Follow the conversion's exchange until it ends, then settle. */
  conversion_poll: { conversionId: string };
  /** Sign and broadcast an on-chain transfer (serialized per sending wallet). */
  transfer_send: { transferId: string };
  /** Wait for a broadcast transfer's receipt. */
  transfer_confirm: { transferId: string };
  /** Find conversions, payouts and transfers past their deadline and drive them on, or to review (cron). */
  reconcile: Record<string, never>;
  /** Observe the outside world and evaluate the alert rules (cron). */
  alerts_evaluate: Record<string, never>;
  /** Send one alert's change (firing or resolved) to ALERT_WEBHOOK_URL. */
  alert_notify: { alertId: string; state: 'firing' | 'resolved' };
  /** Deliver pending events to the webhook endpoints (re-queued by itself while endpoints exist, and by cron). */
  events_dispatch: Record<string, never>;
}

export type TaskName = keyof TaskPayloads;

/**
 * Every task with the part of payrail that runs it (pipeline, alerts, events): typed over TaskPayloads, so a task
 * added there and not here does not compile, and each part's list of handled tasks is read from here.
 */
const TASK_RUNNER: Record<TaskName, 'pipeline' | 'alerts' | 'events'> = {
  payment_confirm: 'pipeline',
  payout_instant: 'pipeline',
  payout_run: 'pipeline',
  payout_poll: 'pipeline',
  payout_batch: 'pipeline',
  threshold_check: 'pipeline',
  conversion_batch: 'pipeline',
  conversion_exchange: 'pipeline',
  conversion_poll: 'pipeline',
  transfer_send: 'pipeline',
  transfer_confirm: 'pipeline',
  reconcile: 'pipeline',
  alerts_evaluate: 'alerts',
  alert_notify: 'alerts',
  events_dispatch: 'events',
};

export const TASK_NAMES: readonly TaskName[] = Object.keys(TASK_RUNNER) as TaskName[];

/** The tasks one part of payrail runs, in TASK_NAMES order. */
export function tasksRunBy(runner: (typeof TASK_RUNNER)[TaskName]): readonly TaskName[] {
  return TASK_NAMES.filter((task) => TASK_RUNNER[task] === runner);
}
