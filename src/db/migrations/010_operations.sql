-- Alerts an operator must see: stored, so they survive restarts, show in the API and dashboard, and are sent once
-- per change. One open alert per (rule, subject); a condition that clears resolves it, one that returns opens a new
-- row. `details` is the evidence at the last evaluation (ids, ages, amounts as strings).
create table alerts (
  id bigserial primary key,
  rule text not null check (rule ~ '^[a-z][a-z0-9_]{0,62}$'),
  subject text not null check (length(subject) between 1 and 200),
  severity text not null check (severity in ('warning', 'critical')),
  message text not null,
  details jsonb not null default '{}',
  first_seen_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now(),
  resolved_at timestamptz,
  -- Who resolved it by hand (an admin token's name); null when the condition cleared on its own.
  resolved_by text,
  check (resolved_at is null or resolved_at >= first_seen_at)
);
create unique index alerts_one_open on alerts (rule, subject) where resolved_at is null;
create index alerts_recent on alerts (last_seen_at desc);

-- What a worker last saw of the outside world (host wallet balances, chain RPC and ChangeNow reachability), so the
-- web processes can report it in /health, /metrics and the dashboard without calling out themselves.
-- `value` is a string: balances are smallest-unit integers, never floats.
create table observations (
  name text primary key check (name ~ '^[a-z][a-z0-9_.:-]{0,99}$'),
  ok boolean not null,
  value text,
  detail text,
  observed_at timestamptz not null default now()
);
