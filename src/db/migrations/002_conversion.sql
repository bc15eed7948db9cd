-- Conversion: pending ETH of threshold channels becomes USDT through one ChangeNow exchange per micro-batch, paid
-- from the host wallet; on-chain transfers with their intent; payout batches created by the threshold check.

create table chain_transfers (
  transfer_id text primary key,
  -- What the transfer is for: one transfer per (purpose, ref), ever (e.g. one ETH send per conversion).
  purpose text not null check (purpose in ('conversion', 'payout')),
  ref text not null,
  asset text not null check (asset in ('eth', 'usdt')),
  from_address text not null,
  to_address text not null,
  amount numeric(78, 0) not null check (amount > 0),
  status text not null check (status in ('intent', 'signed', 'broadcast', 'confirmed', 'failed')),
  nonce bigint,
  tx_hash text unique,
  raw_tx text,
  block_number numeric(20, 0),
  gas_cost_wei numeric(78, 0),
  attempts integer not null default 0,
  last_error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (purpose, ref),
  check (status = 'intent' or status = 'failed' or (nonce is not null and tx_hash is not null and raw_tx is not null))
);
-- No two live transactions of one wallet share a nonce; a failed one releases its nonce.
create unique index chain_transfers_nonce on chain_transfers (from_address, nonce) where status <> 'failed' and nonce is not null;

-- The next nonce of each sending wallet, locked while a transaction is signed.
create table wallet_nonces (
  address text primary key,
  next_nonce bigint not null check (next_nonce >= 0),
  updated_at timestamptz not null default now()
);

create table conversions (
  conversion_id text primary key,
  status text not null check (status in ('pending', 'exchange_requested', 'exchange_created', 'sent', 'completed', 'failed', 'needs_review')),
  from_asset text not null check (from_asset = 'eth'),
  to_asset text not null check (to_asset = 'usdt'),
  amount_wei numeric(78, 0) not null check (amount_wei > 0),
  payment_count integer not null check (payment_count > 0),
  exchange_id text unique,
  payin_address text,
  expected_usdt numeric(78, 0),
  transfer_id text references chain_transfers (transfer_id),
  usdt_received numeric(78, 0),
  -- USDT per ETH realized, 12 decimals, rounded down (informational: the shares are computed in units).
  rate numeric,
  reason text,
  last_error text,
  poll_deadline_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  completed_at timestamptz
);
create index conversions_open on conversions (status) where status not in ('completed', 'failed');

create table conversion_payments (
  conversion_id text not null references conversions (conversion_id),
  payment_id numeric(20, 0) not null references payments (payment_id),
  channel_id text not null,
  net_wei numeric(78, 0) not null check (net_wei > 0),
  usdt_share numeric(78, 0),
  primary key (conversion_id, payment_id)
);
create index conversion_payments_payment on conversion_payments (payment_id);

create table payout_batches (
  batch_id text primary key,
  channel_id text not null references channels (channel_id),
  status text not null check (status in ('pending', 'awaiting_approval', 'exchange_created', 'sent', 'completed', 'failed', 'needs_review', 'cancelled')),
  asset text not null check (asset = 'usdt'),
  amount numeric(78, 0) not null check (amount > 0),
  payout_currency text not null,
  payout_network text not null,
  wallet_address text not null,
  reason text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
-- One open batch per channel: concurrent threshold checks cannot create a second one.
create unique index payout_batches_one_open on payout_batches (channel_id) where status not in ('completed', 'failed', 'cancelled');

alter table payments
  add column conversion_id text references conversions (conversion_id),
  add column payout_batch_id text references payout_batches (batch_id);
create index payments_payout_batch on payments (payout_batch_id) where payout_batch_id is not null;
