/**
 * The task registry: every job payrail queues, with its payload type. A job queued for a task whose handler is not
 * part of this version stays queued and visible (graphile-worker only fetches tasks it knows), never dropped.
 */
export interface TaskPayloads {
  /** An instant channel's credited payment, to be paid out (handler comes with the payouts stage). */
  payout_instant: { paymentId: string };
}

export type TaskName = keyof TaskPayloads;

export const TASK_NAMES: readonly TaskName[] = ['payout_instant'];
