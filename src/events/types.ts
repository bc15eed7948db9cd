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

export function isEventType(value: string): value is EventType {
  return (EVENT_TYPES as readonly string[]).includes(value);
}

/** An amount with its asset, exact: a decimal string in the asset's unit ("0.0105", "12.5"). */
export interface EventAmount {
  readonly asset: string;
  readonly amount: string;
}

/** The JSON-safe body of an event's `data`: ids and exact amounts as strings, never numbers for money. */
export type EventData = Readonly<Record<string, string | boolean | null | EventAmount | readonly string[]>>;

/** What an emitter passes: the subject keeps deliveries of one payment, payout or channel in order. */
export interface NewEvent {
  readonly type: EventType;
  readonly subject: `${'payment' | 'conversion' | 'payout' | 'channel'}:${string}`;
  readonly data: EventData;
}

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
