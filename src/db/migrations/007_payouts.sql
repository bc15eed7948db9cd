-- Payouts: one model for threshold batches (USDT) and instant payouts (one payment's ETH). A payout is paid through
-- at most one ChangeNow exchange and at most one on-chain transfer from the host wallet, ever.
alter table payout_batches rename to payouts;
alter table payouts rename column batch_id to payout_id;
alter index payout_batches_one_open rename to payouts_one_open_batch;
alter table payments rename column payout_batch_id to payout_id;
alter index payments_payout_batch rename to payments_payout;

alter table payouts
  add column kind text not null default 'threshold' check (kind in ('threshold', 'instant')),
  -- The payment an instant payout pays out: one payout per payment.
  add column payment_id numeric(20, 0) unique references payments (payment_id),
  add column exchange_id text unique,
  add column payin_address text,
  add column expected_amount_out text,
  add column amount_out text,
  add column payout_hash text,
  add column transfer_id text references chain_transfers (transfer_id),
  add column attempts integer not null default 0,
  add column last_error text,
  add column hold_until timestamptz,
  add column poll_deadline_at timestamptz,
  add column approved_by text,
  add column approved_at timestamptz,
  add column completed_at timestamptz,
  -- How many times new balance was added to a held batch (each addition is its own journal).
  add column top_ups integer not null default 0;
alter table payouts alter column kind drop default;

alter table payouts drop constraint payout_batches_asset_check;
alter table payouts add constraint payouts_asset_check check (asset in ('usdt', 'eth'));
alter table payouts drop constraint payout_batches_status_check;
alter table payouts add constraint payouts_status_check check (status in (
  'pending', 'held', 'awaiting_approval', 'exchange_requested', 'exchange_created', 'sent',
  'completed', 'failed', 'needs_review', 'cancelled'));
alter table payouts add constraint payouts_kind_payment check ((kind = 'instant') = (payment_id is not null));

-- One open batch per threshold channel; instant payouts are one per payment and may run side by side.
drop index payouts_one_open_batch;
create unique index payouts_one_open_batch on payouts (channel_id) where kind = 'threshold' and status not in ('completed', 'failed', 'cancelled');
create index payouts_open on payouts (status, updated_at) where status not in ('completed', 'failed', 'cancelled');

-- A transfer that was ever handed to the network may still be mined: it is never re-signed with another nonce.
alter table chain_transfers add column broadcast_at timestamptz;

-- Refunds credited back from chain transactions: one use per transaction hash, across conversions and payouts, so
-- one refund (or a hash ChangeNow reports twice) can never return funds twice.
create table chain_refunds (
  tx_hash text primary key,
  purpose text not null check (purpose in ('conversion', 'payout')),
  ref text not null,
  asset text not null check (asset in ('eth', 'usdt')),
  amount numeric(78, 0) not null check (amount >= 0),
  created_at timestamptz not null default now(),
  unique (purpose, ref)
);

-- The USDT payout that settled a conversion: one transaction credits one conversion, whatever ChangeNow reports.
alter table conversions add column payout_hash text unique;
