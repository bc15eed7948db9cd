-- The reconciler's own record on what it drives on: how many times it re-queued an item's job (a bound, so an item
-- whose stage keeps dying goes to a person instead of being resumed for ever), and when it last did (an item past its
-- final deadline gets one last look by its stage after that deadline, then review).
alter table conversions
  add column reconcile_attempts integer not null default 0 check (reconcile_attempts >= 0),
  add column reconciled_at timestamptz;
alter table payouts
  add column reconcile_attempts integer not null default 0 check (reconcile_attempts >= 0),
  add column reconciled_at timestamptz;
alter table chain_transfers
  add column reconcile_attempts integer not null default 0 check (reconcile_attempts >= 0),
  add column reconciled_at timestamptz;

-- Each pass looks up the open items of each state by age: the open-status indexes of 002 and 007 serve conversions
-- and payouts; transfers get theirs.
create index chain_transfers_open on chain_transfers (status, updated_at) where status not in ('confirmed', 'failed');
