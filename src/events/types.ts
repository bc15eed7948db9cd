/**
 * The business facts payrail tells the platform about. A type, once published, keeps its meaning and its fields
 * (fields may be added, never renamed or removed): receivers are other teams' code.
 */
export const EVENT_TYPES = [
  'payment.received',
  'payment.credited',
  'payment.partially_paid',
  'payment.review',
  'payment.refunded',
  'conversion.completed',
  'payout.opened',
  'payout.completed',
  'payout.failed',
  'payout.needs_review',
  'channel.threshold_reached',
  'channel.wallet_changed',
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

/** One event as the API and the webhooks show it. */
export interface EventBody {
  readonly id: string;
  /**
   * The order events were written in (an integer as a string, with gaps). One subject's events are written under its
   * row lock, so within a subject it is the order things happened; across subjects, only the stream's order counts.
   */
  readonly sequence: string;
  readonly type: EventType;
  readonly createdAt: string;
  readonly subject: string;
  readonly data: Record<string, unknown>;
}
