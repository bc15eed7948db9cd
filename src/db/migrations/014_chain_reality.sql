-- The chain as it behaves: a transfer may have several signed versions at its one nonce (fee-bumped replacements, a
-- cancel), any of which may be the one mined; it counts only once its block is deep enough; a nonce taken by a
-- transaction payrail did not sign sends it to a person; a person's action on it is carried out by the worker.

-- Every signed version, kept before it is broadcast. They share the transfer's nonce, so at most one is ever mined.
create table chain_transfer_versions (
  transfer_id text not null references chain_transfers (transfer_id),
  version integer not null check (version >= 1),
  -- 'transfer': the payment itself; 'cancel': a zero-value transfer to the host wallet itself, taking the nonce.
  kind text not null check (kind in ('transfer', 'cancel')),
  tx_hash text not null unique,
  raw_tx text not null,
  -- Null for versions signed before versions were kept (their fees are read from raw_tx when needed).
  gas_limit numeric(20, 0),
  max_fee_per_gas numeric(78, 0),
  max_priority_fee_per_gas numeric(78, 0),
  created_at timestamptz not null default now(),
  primary key (transfer_id, version)
);

insert into chain_transfer_versions (transfer_id, version, kind, tx_hash, raw_tx, created_at)
  select transfer_id, 1, 'transfer', tx_hash, raw_tx, updated_at from chain_transfers where tx_hash is not null and raw_tx is not null;

alter table chain_transfers drop constraint chain_transfers_status_check;
alter table chain_transfers add constraint chain_transfers_status_check
  check (status in ('intent', 'signed', 'broadcast', 'confirmed', 'failed', 'needs_review'));

alter table chain_transfers
  -- Why a person should look (needs_review), or why the transfer failed.
  add column reason text,
  -- The gas limit of the transfer's versions: estimated for the real call, with a margin.
  add column gas_limit numeric(20, 0),
  -- The block the mined version was last seen in: a receipt that later disappears is a reorganisation.
  add column block_hash text,
  -- First seen: the chain's nonce past ours while none of our versions is mined.
  add column nonce_taken_seen_at timestamptz,
  -- A person's action, carried out by the worker (which alone holds the key and reads the chain).
  add column requested_action text check (requested_action in ('bump', 'cancel', 'resolve_mined', 'resolve_never_sent')),
  add column requested_hash text,
  add column requested_by text,
  add column requested_at timestamptz;

-- A transfer in review may have no nonce: one that an earlier version released after a refused broadcast (its
-- signed bytes forgotten, possibly still in a node's pool) is sent to a person below, never signed again unasked.
alter table chain_transfers drop constraint chain_transfers_check;
alter table chain_transfers add constraint chain_transfers_check check (
  status in ('intent', 'failed')
  or (status = 'needs_review' and nonce is null and tx_hash is null)
  or (nonce is not null and tx_hash is not null and raw_tx is not null));
update chain_transfers
  set status = 'needs_review', updated_at = now(),
      reason = 'released by an earlier version of payrail after a refused broadcast: the bytes it signed then may still be mined. Look for a transaction from the host wallet to ' || to_address || ' of this amount; resolve with its hash, or retry to sign it again'
  where status = 'intent' and attempts > 0;

-- "Broadcast" now means "may be on the network": written before the first broadcast call, never undone.
comment on column chain_transfers.broadcast_at is 'committed before the first broadcast call: from then on the transfer keeps its nonce and is never re-signed at another';

create index chain_transfers_review on chain_transfers (updated_at) where status = 'needs_review';
