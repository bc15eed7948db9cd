-- Idempotency keys of the admin API: a retried POST/PUT/DELETE carrying the same Idempotency-Key answers what the
-- first one answered instead of acting twice. Keys are scoped per admin token name (actor), so two people's keys
-- never collide. A row is in flight (response_status null) while its request runs, then holds the stored answer
-- (2xx or 4xx; a 5xx removes the row so a retry acts again). Rows older than 24 hours are forgotten: ignored when read
-- and deleted by the next keyed request (src/http/idempotency.ts).
create table idempotency_keys (
  actor text not null,
  key text not null check (key ~ '^[\x20-\x7e]{1,255}$'),
  -- sha256 (hex) of the method, the URL path and the raw body bytes: the same key with another request is refused.
  fingerprint text not null check (fingerprint ~ '^[0-9a-f]{64}$'),
  -- The request that holds the row now: only it stores its answer or removes the row (a request that took over an
  -- abandoned row makes the original's late answer a no-op).
  attempt uuid not null,
  -- When the request holding the row started: in flight for longer than a minute means its process died; a stored
  -- answer is kept for 24 hours from here.
  created_at timestamptz not null default now(),
  completed_at timestamptz,
  response_status integer check (response_status between 200 and 499),
  response_content_type text,
  response_body bytea,
  primary key (actor, key),
  check ((response_status is null) = (completed_at is null) and (response_status is null) = (response_body is null)),
  check (response_content_type is null or response_status is not null)
);
create index idempotency_keys_created_at on idempotency_keys (created_at);
