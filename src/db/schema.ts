/**
 * Row types as kysely sees them. NUMERIC and BIGINT columns are strings: money is parsed into bigint explicitly,
 * at the point of use, never by the driver into a float.
 */
import type { ColumnType, Generated } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Numeric = ColumnType<string, string | bigint, string | bigint>;
type NullableNumeric = ColumnType<string | null, string | bigint | null | undefined, string | bigint | null>;

export interface SupportedPairsTable {
  currency: string;
  network: string;
  address_format: string;
}

export interface ChannelsTable {
  channel_id: string;
  payout_strategy: 'instant' | 'threshold';
  threshold_usd_cents: NullableNumeric;
  payout_currency: string;
  payout_network: string;
  wallet_address: string;
  /** Last change of wallet_address, payout_currency or payout_network (set by a trigger); null: never changed. */
  wallet_changed_at: ColumnType<Date | null, never, never>;
  /** The channel's own platform fee (percent, as PLATFORM_FEE_PERCENT); null: PLATFORM_FEE_PERCENT applies. */
  platform_fee_percent: NullableNumeric;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface AuditLogTable {
  id: Generated<string>;
  actor: string;
  action: string;
  subject: string;
  details: ColumnType<unknown, string | undefined, never>;
  at: Timestamp;
}

export interface LedgerAccountsTable {
  id: Generated<string>;
  code: string;
  asset: string;
  allow_negative: boolean;
  balance: ColumnType<string, string | bigint | undefined, string | bigint>;
  updated_at: Timestamp;
}

export interface LedgerJournalsTable {
  id: Generated<string>;
  kind: string;
  ref: string;
  created_at: Timestamp;
}

export interface LedgerEntriesTable {
  id: Generated<string>;
  journal_id: string;
  account_id: string;
  amount: Numeric;
  created_at: Timestamp;
}

export type PaymentStatus =
  | 'waiting'
  | 'confirming'
  | 'confirmed'
  | 'sending'
  | 'partially_paid'
  | 'finished'
  | 'failed'
  | 'refunded'
  | 'expired';
export type ConversionStatus = 'pending' | 'converting' | 'completed' | 'failed';

export interface PaymentsTable {
  payment_id: Numeric;
  invoice_id: NullableNumeric;
  order_id: string;
  user_id: string;
  channel_id: string;
  status: PaymentStatus;
  pay_currency: string;
  pay_amount: Numeric;
  actually_paid: Numeric;
  price_amount: Numeric;
  price_currency: string;
  outcome_amount: Numeric;
  outcome_currency: string;
  asset: string | null;
  gross_amount: NullableNumeric;
  fee_amount: NullableNumeric;
  net_amount: NullableNumeric;
  fee_percent: NullableNumeric;
  payout_strategy: 'instant' | 'threshold' | null;
  credited_at: NullableTimestamp;
  conversion_status: ConversionStatus | null;
  conversion_attempts: Generated<number>;
  conversion_last_attempt_at: NullableTimestamp;
  conversion_hold_until: NullableTimestamp;
  usdt_amount: NullableNumeric;
  conversion_rate: NullableNumeric;
  /** ETH ChangeNow kept when a conversion of this payment came back short; the next batch converts net − this. */
  exchange_cost_wei: ColumnType<string, string | bigint | undefined, string | bigint>;
  /** The reported amounts are a partially_paid IPN's (kept when an expired or failed IPN follows): what credit books. */
  partial_amounts: ColumnType<boolean, boolean | undefined, boolean>;
  /** The credit is a partially_paid IPN's: a later IPN saying more is a top-up. */
  credited_partial: ColumnType<boolean, boolean | undefined, boolean>;
  /** The last IPN that restated the credit otherwise: what a top-up credits to, what an ignore acknowledged. */
  restated_outcome_amount: OptionalText;
  restated_outcome_currency: OptionalText;
  /** Of net_amount, what conversions or the instant payout took before a top-up; the next batch converts the rest. */
  net_moved_wei: ColumnType<string, string | bigint | undefined, string | bigint>;
  /** NOWPAYMENTS_API_KEY set: the restatement waits for NOWPayments' check until then; null once answered. */
  restated_confirm_deadline_at: NullableTimestamp;
  /** NOWPayments agreed with the restatement: a top-up a person may credit. */
  restated_confirmed_at: NullableTimestamp;
  review_reason: string | null;
  conversion_id: OptionalText;
  payout_id: OptionalText;
  ipn_count: Generated<number>;
  last_ipn: string;
  created_at: Timestamp;
  updated_at: Timestamp;
  parent_payment_id: NullableNumeric;
  reversed_at: NullableTimestamp;
  review_action: ColumnType<
    PaymentReviewAction | null,
    PaymentReviewAction | null | undefined,
    PaymentReviewAction | null
  >;
  review_action_by: OptionalText;
  review_action_at: NullableTimestamp;
  /** The NOWPayments API check of a crediting IPN (NOWPAYMENTS_API_KEY set): asked for, deadline, agreed. */
  confirm_requested_at: NullableTimestamp;
  confirm_deadline_at: NullableTimestamp;
  confirmed_at: NullableTimestamp;
  confirm_attempts: Generated<number>;
  confirm_last_error: OptionalText;
}

/** A person's decision on a payment in review (POST /api/payments/:id/credit|ignore|reverse). */
export type PaymentReviewAction = 'credit' | 'ignore' | 'reverse';

export interface WorkerHeartbeatsTable {
  worker_id: string;
  hostname: string;
  pid: number;
  queue_worker_ids: ColumnType<string[], string[] | undefined, string[]>;
  started_at: Timestamp;
  last_seen_at: Timestamp;
}

type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
/** A nullable text column that an insert may leave out. */
type OptionalText = ColumnType<string | null, string | null | undefined, string | null>;
/** A nullable integer column that an insert may leave out. */
type OptionalInteger = ColumnType<number | null, number | null | undefined, number | null>;

/** Every state a transfer can be in (see src/pipeline/transfer/model.ts); the database's CHECK lists the same. */
export const TRANSFER_STATES = ['intent', 'signed', 'broadcast', 'confirmed', 'failed', 'needs_review'] as const;
export type TransferStatus = (typeof TRANSFER_STATES)[number];
export const TRANSFER_ACTIONS_REQUESTED = ['bump', 'cancel', 'resolve_mined', 'resolve_never_sent'] as const;
export type TransferRequestedAction = (typeof TRANSFER_ACTIONS_REQUESTED)[number];

export interface ChainTransfersTable {
  transfer_id: string;
  purpose: 'conversion' | 'payout';
  ref: string;
  asset: 'eth' | 'usdt';
  from_address: string;
  to_address: string;
  amount: Numeric;
  status: TransferStatus;
  nonce: NullableNumeric;
  tx_hash: string | null;
  raw_tx: string | null;
  block_number: NullableNumeric;
  gas_cost_wei: NullableNumeric;
  broadcast_at: NullableTimestamp;
  attempts: Generated<number>;
  last_error: string | null;
  /** Times the reconciler re-queued its job, and when it last did. */
  reconcile_attempts: Generated<number>;
  reconciled_at: NullableTimestamp;
  reason: OptionalText;
  gas_limit: NullableNumeric;
  block_hash: OptionalText;
  nonce_taken_seen_at: NullableTimestamp;
  requested_action: ColumnType<
    TransferRequestedAction | null,
    TransferRequestedAction | null | undefined,
    TransferRequestedAction | null
  >;
  requested_hash: OptionalText;
  requested_by: OptionalText;
  requested_at: NullableTimestamp;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface ChainTransferVersionsTable {
  transfer_id: string;
  version: number;
  kind: 'transfer' | 'cancel';
  tx_hash: string;
  raw_tx: string;
  gas_limit: NullableNumeric;
  max_fee_per_gas: NullableNumeric;
  max_priority_fee_per_gas: NullableNumeric;
  created_at: Generated<Date>;
}

export interface ChainRefundsTable {
  tx_hash: string;
  purpose: 'conversion' | 'payout';
  ref: string;
  asset: 'eth' | 'usdt';
  amount: Numeric;
  created_at: Generated<Date>;
}

export interface WalletNoncesTable {
  address: string;
  next_nonce: Numeric;
  updated_at: Timestamp;
}

/** Every state of a conversion, in the order it moves (docs/architecture.md has the action that leaves each). */
export const CONVERSION_STATES = [
  'pending',
  'exchange_requested',
  'exchange_created',
  'sent',
  'completed',
  'failed',
  'needs_review',
] as const;
export type ConversionState = (typeof CONVERSION_STATES)[number];

export interface ConversionsTable {
  conversion_id: string;
  status: ConversionState;
  from_asset: 'eth';
  to_asset: 'usdt';
  amount_wei: Numeric;
  payment_count: number;
  exchange_id: string | null;
  payin_address: string | null;
  expected_usdt: NullableNumeric;
  transfer_id: string | null;
  usdt_received: NullableNumeric;
  /** The USDT payout transaction that settled it (lower case): unique, one payout credits one conversion. */
  payout_hash: OptionalText;
  rate: NullableNumeric;
  reason: string | null;
  last_error: string | null;
  poll_deadline_at: NullableTimestamp;
  /** Times the reconciler re-queued its job, and when it last did. */
  reconcile_attempts: Generated<number>;
  reconciled_at: NullableTimestamp;
  created_at: Timestamp;
  updated_at: Timestamp;
  completed_at: NullableTimestamp;
}

export interface ConversionPaymentsTable {
  conversion_id: string;
  payment_id: Numeric;
  channel_id: string;
  net_wei: Numeric;
  usdt_share: NullableNumeric;
}

/** Every state of a payout, in the order it moves (docs/architecture.md has the action that leaves each). */
// Many of a conversion's states by name, spelt out again: each list is its own table's CHECK, and neither follows the other.
export const PAYOUT_STATES = [
  'pending',
  'held',
  'awaiting_approval',
  'exchange_requested',
  'exchange_created',
  'sent',
  'completed',
  'failed',
  'needs_review',
  'cancelled',
] as const;
export type PayoutStatus = (typeof PAYOUT_STATES)[number];
/** The states a payout never leaves: its funds reached the owner, or came back to the channel. */
export const ENDED_PAYOUT_STATES = ['completed', 'failed', 'cancelled'] as const satisfies readonly PayoutStatus[];
/** The states a payout is under way in (a person's review included): everything but the ended ones. */
export const OPEN_PAYOUT_STATES: readonly PayoutStatus[] = PAYOUT_STATES.filter(
  (s) => !(ENDED_PAYOUT_STATES as readonly PayoutStatus[]).includes(s),
);

export interface PayoutsTable {
  payout_id: string;
  kind: 'threshold' | 'instant';
  channel_id: string;
  payment_id: OptionalText;
  status: PayoutStatus;
  asset: 'usdt' | 'eth';
  amount: Numeric;
  payout_currency: string;
  payout_network: string;
  wallet_address: string;
  reason: string | null;
  exchange_id: OptionalText;
  payin_address: OptionalText;
  /** Decimal text in the payout currency, as ChangeNow states it. */
  expected_amount_out: OptionalText;
  amount_out: OptionalText;
  payout_hash: OptionalText;
  transfer_id: OptionalText;
  attempts: Generated<number>;
  last_error: OptionalText;
  hold_until: NullableTimestamp;
  poll_deadline_at: NullableTimestamp;
  approved_by: OptionalText;
  approved_at: NullableTimestamp;
  /** When the payout first became exchange_requested (set by a trigger, never cleared): null, ChangeNow holds none. */
  exchange_asked_at: ColumnType<Date | null, never, never>;
  completed_at: NullableTimestamp;
  top_ups: Generated<number>;
  /** Times the reconciler re-queued its job, and when it last did. */
  reconcile_attempts: Generated<number>;
  reconciled_at: NullableTimestamp;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export type AlertSeverity = 'warning' | 'critical';

export interface AlertsTable {
  id: Generated<string>;
  rule: string;
  subject: string;
  severity: AlertSeverity;
  message: string;
  details: ColumnType<
    Record<string, unknown>,
    Record<string, unknown> | string | undefined,
    Record<string, unknown> | string
  >;
  first_seen_at: Timestamp;
  last_seen_at: Timestamp;
  resolved_at: NullableTimestamp;
  resolved_by: OptionalText;
}

export interface ObservationsTable {
  name: string;
  ok: boolean;
  value: OptionalText;
  detail: OptionalText;
  observed_at: Timestamp;
  /** Migration 012: the first observation of the current failing streak; null while ok. */
  failing_since: NullableTimestamp;
}

/** Migration 021: an admin request's Idempotency-Key, per admin token name; in flight until response_status is set. */
export interface IdempotencyKeysTable {
  actor: string;
  key: string;
  fingerprint: string;
  attempt: string;
  created_at: Timestamp;
  completed_at: NullableTimestamp;
  response_status: OptionalInteger;
  response_content_type: OptionalText;
  response_body: ColumnType<Buffer | null, Buffer | null | undefined, Buffer | null>;
}

/** Migration 023: business facts for the platform, written with the change they report (see src/events/). */
export interface EventsTable {
  seq: ColumnType<string, never, never>;
  id: Generated<string>;
  /** xid8 of the writing transaction, as text. */
  txid: ColumnType<string, never, never>;
  type: string;
  subject: string;
  data: ColumnType<Record<string, unknown>, string, never>;
  created_at: Timestamp;
}

export interface WebhookEndpointsTable {
  id: Generated<string>;
  url: string;
  event_types: ColumnType<string[], string[], string[]>;
  secret: string;
  created_by: string;
  created_at: Timestamp;
  deleted_at: NullableTimestamp;
  cursor_txid: ColumnType<string, string, string>;
  cursor_seq: ColumnType<string, string | undefined, string>;
}

export const DELIVERY_STATES = ['pending', 'delivered', 'failed'] as const;
export type DeliveryState = (typeof DELIVERY_STATES)[number];

export interface WebhookDeliveriesTable {
  endpoint_id: string;
  event_seq: string;
  subject: string;
  status: ColumnType<DeliveryState, DeliveryState | undefined, DeliveryState>;
  attempts: ColumnType<number, number | undefined, number>;
  next_attempt_at: Timestamp;
  last_attempt_at: NullableTimestamp;
  last_status: OptionalInteger;
  last_error: OptionalText;
  delivered_at: NullableTimestamp;
  failed_at: NullableTimestamp;
  created_at: Timestamp;
  first_attempt_at: NullableTimestamp;
}

export interface WebhookAttemptsTable {
  id: Generated<string>;
  endpoint_id: string;
  event_seq: string;
  attempted_at: Timestamp;
  status_code: number | null;
  error: string | null;
  duration_ms: number;
}

/** Migration 025: checkout's NOWPayments invoices, stored once NOWPayments created one as asked (never updated). */
export interface InvoicesTable {
  invoice_id: string;
  channel_id: string;
  user_id: string;
  /** Exact decimal text, two places. */
  price_usd: Numeric;
  order_id: string;
  description: OptionalText;
  invoice_url: string;
  success_url: OptionalText;
  ipn_callback_url: string;
  created_by: string;
  created_at: Timestamp;
}

export interface Database {
  alerts: AlertsTable;
  observations: ObservationsTable;
  chain_transfers: ChainTransfersTable;
  chain_transfer_versions: ChainTransferVersionsTable;
  chain_refunds: ChainRefundsTable;
  wallet_nonces: WalletNoncesTable;
  conversions: ConversionsTable;
  conversion_payments: ConversionPaymentsTable;
  payouts: PayoutsTable;
  supported_pairs: SupportedPairsTable;
  channels: ChannelsTable;
  audit_log: AuditLogTable;
  ledger_accounts: LedgerAccountsTable;
  ledger_journals: LedgerJournalsTable;
  ledger_entries: LedgerEntriesTable;
  payments: PaymentsTable;
  worker_heartbeats: WorkerHeartbeatsTable;
  idempotency_keys: IdempotencyKeysTable;
  events: EventsTable;
  webhook_endpoints: WebhookEndpointsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_attempts: WebhookAttemptsTable;
  invoices: InvoicesTable;
}
