-- Foundation: the payee registry, payments as NOWPayments reports them, and the double-entry ledger.
-- Amounts in smallest units are NUMERIC(78,0): exact, and wide enough for any token supply.

create table supported_pairs (
  currency text not null check (currency ~ '^[a-z0-9]{2,12}$'),
  network text not null check (network ~ '^[a-z0-9]{2,12}$'),
  address_format text not null check (address_format in ('evm', 'tron', 'btc', 'ltc', 'doge', 'sol', 'ton', 'xmr')),
  primary key (currency, network)
);

-- The common ChangeNow pairs a channel owner can be paid in.
insert into supported_pairs (currency, network, address_format) values
  ('eth', 'eth', 'evm'), ('eth', 'arbitrum', 'evm'), ('eth', 'op', 'evm'), ('eth', 'base', 'evm'),
  ('usdt', 'eth', 'evm'), ('usdt', 'bsc', 'evm'), ('usdt', 'trx', 'tron'), ('usdt', 'sol', 'sol'),
  ('usdt', 'matic', 'evm'), ('usdt', 'arbitrum', 'evm'), ('usdt', 'op', 'evm'), ('usdt', 'ton', 'ton'),
  ('usdc', 'eth', 'evm'), ('usdc', 'bsc', 'evm'), ('usdc', 'sol', 'sol'), ('usdc', 'matic', 'evm'),
  ('usdc', 'base', 'evm'), ('usdc', 'arbitrum', 'evm'),
  ('bnb', 'bsc', 'evm'), ('matic', 'matic', 'evm'), ('pol', 'matic', 'evm'),
  ('btc', 'btc', 'btc'), ('ltc', 'ltc', 'ltc'), ('doge', 'doge', 'doge'),
  ('trx', 'trx', 'tron'), ('sol', 'sol', 'sol'), ('ton', 'ton', 'ton'), ('xmr', 'xmr', 'xmr');

create table channels (
  channel_id text primary key check (channel_id ~ '^-?[1-9][0-9]{0,19}$'),
  payout_strategy text not null check (payout_strategy in ('instant', 'threshold')),
  threshold_usd_cents numeric(20, 0) check (threshold_usd_cents > 0),
  payout_currency text not null,
  payout_network text not null,
  wallet_address text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  foreign key (payout_currency, payout_network) references supported_pairs (currency, network),
  check ((payout_strategy = 'threshold') = (threshold_usd_cents is not null))
);

-- Who did what through the admin API, kept forever.
create table audit_log (
  id bigint generated always as identity primary key,
  actor text not null,
  action text not null,
  subject text not null,
  details jsonb not null default '{}',
  at timestamptz not null default now()
);

create table ledger_accounts (
  id bigint generated always as identity primary key,
  code text not null,
  asset text not null check (asset ~ '^[a-z0-9]{2,12}$'),
  -- world accounts stand for counterparties outside payrail and go negative as money flows in.
  allow_negative boolean not null,
  balance numeric(78, 0) not null default 0,
  updated_at timestamptz not null default now(),
  unique (code, asset),
  check (allow_negative or balance >= 0)
);

create table ledger_journals (
  id bigint generated always as identity primary key,
  kind text not null,
  -- The business key (payment id, conversion id...): one journal per (kind, ref), a second credit cannot exist.
  ref text not null,
  created_at timestamptz not null default now(),
  unique (kind, ref)
);

create table ledger_entries (
  id bigint generated always as identity primary key,
  journal_id bigint not null references ledger_journals (id),
  account_id bigint not null references ledger_accounts (id),
  amount numeric(78, 0) not null check (amount <> 0),
  created_at timestamptz not null default now()
);
create index ledger_entries_journal on ledger_entries (journal_id);
create index ledger_entries_account on ledger_entries (account_id);

-- Journals and entries are history: never edited, never removed.
create function payrail_forbid_mutation() returns trigger language plpgsql as $$
begin
  raise exception '% is append-only (% refused)', tg_table_name, tg_op;
end;
$$;
create trigger ledger_entries_append_only before update or delete or truncate on ledger_entries
  for each statement execute function payrail_forbid_mutation();
create trigger ledger_journals_append_only before update or delete or truncate on ledger_journals
  for each statement execute function payrail_forbid_mutation();

create table payments (
  payment_id numeric(20, 0) primary key check (payment_id > 0),
  invoice_id numeric(20, 0),
  order_id text not null,
  user_id text not null,
  -- As parsed from order_id. Not a foreign key: an IPN for an unknown channel is kept, flagged for review.
  channel_id text not null,
  status text not null check (status in ('waiting', 'confirming', 'confirmed', 'sending', 'partially_paid', 'finished', 'failed', 'refunded', 'expired')),
  pay_currency text not null,
  pay_amount numeric not null,
  actually_paid numeric not null,
  price_amount numeric not null,
  price_currency text not null,
  outcome_amount numeric not null,
  outcome_currency text not null,
  -- Set once, when a finished IPN credits the channel; its journal is ('payment_received', payment_id).
  asset text,
  gross_amount numeric(78, 0),
  fee_amount numeric(78, 0),
  net_amount numeric(78, 0),
  fee_percent numeric,
  payout_strategy text check (payout_strategy in ('instant', 'threshold')),
  credited_at timestamptz,
  conversion_status text check (conversion_status in ('pending', 'converting', 'completed', 'failed')),
  conversion_attempts integer not null default 0,
  conversion_last_attempt_at timestamptz,
  usdt_amount numeric(78, 0),
  conversion_rate numeric,
  review_reason text,
  ipn_count integer not null default 1,
  -- The last applied IPN exactly as signed (text: jsonb would refuse some bytes a signed body may carry).
  last_ipn text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check (credited_at is null or (gross_amount > 0 and fee_amount >= 0 and net_amount >= 0 and gross_amount = fee_amount + net_amount)),
  check ((conversion_status is not null) = (payout_strategy = 'threshold' and credited_at is not null))
);
create index payments_channel on payments (channel_id, created_at);
create index payments_conversion_pending on payments (created_at) where conversion_status = 'pending';
create index payments_review on payments (updated_at) where review_reason is not null;

-- Liveness of worker processes, for /health: graphile-worker itself keeps no heartbeat.
create table worker_heartbeats (
  worker_id text primary key,
  hostname text not null,
  pid integer not null,
  started_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now()
);
