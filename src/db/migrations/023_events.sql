-- Business facts for the platform (an outbox): each written in the transaction of the change it reports, then
-- pulled through GET /api/events or pushed to registered webhook endpoints.
create table events (
  -- The order of writing; not the order of committing: readers order by (txid, seq) and read only below the oldest
  -- transaction still running, so an event committed late is never skipped by a cursor already past it.
  seq bigint generated always as identity primary key,
  id uuid not null unique default gen_random_uuid(),
  txid xid8 not null default pg_current_xact_id(),
  type text not null,
  -- What the event is about ("payment:<id>", "payout:<id>", "channel:<id>", ...): deliveries keep its order.
  subject text not null,
  data jsonb not null,
  created_at timestamptz not null default now()
);
create index events_position on events (txid, seq);

create table webhook_endpoints (
  id uuid primary key default gen_random_uuid(),
  url text not null,
  event_types text[] not null check (cardinality(event_types) > 0),
  -- Shown once, when the endpoint is created; every delivery is signed with it.
  secret text not null,
  created_by text not null,
  created_at timestamptz not null default now(),
  deleted_at timestamptz,
  -- Fan-out position: every event after (cursor_txid, cursor_seq) that the endpoint wants has its delivery row.
  cursor_txid xid8 not null,
  cursor_seq bigint not null default 0
);

create table webhook_deliveries (
  endpoint_id uuid not null references webhook_endpoints (id),
  event_seq bigint not null references events (seq),
  subject text not null,
  status text not null default 'pending' check (status in ('pending', 'delivered', 'failed')),
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  last_attempt_at timestamptz,
  last_status integer,
  last_error text,
  delivered_at timestamptz,
  -- Given up (failed) after the retry window; a person's retry puts it back to pending.
  failed_at timestamptz,
  created_at timestamptz not null default now(),
  -- Start of the retry window: the first attempt (a delivery queued behind its subject's failing head has not been
  -- tried yet); cleared by a person's retry of a failed delivery, with the attempts.
  first_attempt_at timestamptz,
  primary key (endpoint_id, event_seq)
);
-- The head of each subject's line: the oldest pending delivery per (endpoint, subject).
create index webhook_deliveries_pending on webhook_deliveries (endpoint_id, subject, event_seq) where status = 'pending';
create index webhook_deliveries_failed on webhook_deliveries (endpoint_id, event_seq) where status = 'failed';

create table webhook_attempts (
  id bigint generated always as identity primary key,
  endpoint_id uuid not null,
  event_seq bigint not null,
  attempted_at timestamptz not null default now(),
  -- The receiver's HTTP status, or null when no answer came (the error says why).
  status_code integer,
  error text,
  duration_ms integer not null,
  foreign key (endpoint_id, event_seq) references webhook_deliveries (endpoint_id, event_seq)
);
create index webhook_attempts_delivery on webhook_attempts (endpoint_id, event_seq, id);

-- Events are written by triggers on the rows whose changes they report, in the same transaction: no code path (a
-- stage, a person's action, the reconciler, a future one) can change a payment, conversion, payout or channel without
-- its event. Amounts leave as exact decimal strings in the asset's unit, never floats.

-- Smallest units to the asset's decimal text (exact: numeric multiplication by a power of ten, trailing zeros cut).
create function payrail_event_amount(units numeric, asset text) returns jsonb language plpgsql immutable as $$
declare
  unit numeric;
begin
  if units is null then return null; end if;
  -- The decimals of src/money/assets.ts, repeated for SQL (a test holds the two equal).
  unit := case lower(asset) when 'eth' then 0.000000000000000001 when 'usdt' then 0.000001 when 'usdc' then 0.000001
    when 'usd' then 0.01 end;
  -- A new asset without its decimals here must not leave with a wrong amount: the change that books it fails.
  if unit is null then raise exception 'events: no decimals known for asset %', asset; end if;
  return jsonb_build_object('asset', lower(asset), 'amount', trim_scale(units * unit)::text);
end $$;

create function payrail_emit(type text, subject text, data jsonb) returns void language sql as $$
  insert into events (type, subject, data) values (type, subject, data);
$$;

create function payrail_payment_events() returns trigger language plpgsql as $$
declare
  who jsonb := jsonb_build_object('paymentId', new.payment_id::text, 'channelId', new.channel_id,
    'userId', new.user_id, 'orderId', new.order_id, 'invoiceId', new.invoice_id::text);
  reported jsonb := jsonb_build_object('status', new.status,
    'price', jsonb_build_object('currency', new.price_currency, 'amount', new.price_amount::text),
    'pay', jsonb_build_object('currency', new.pay_currency, 'amount', new.pay_amount::text,
      'actuallyPaid', new.actually_paid::text),
    'outcome', jsonb_build_object('currency', new.outcome_currency, 'amount', new.outcome_amount::text));
  credit jsonb;
begin
  -- Built only for the events that carry it: an amount the events cannot format fails the change that emits them,
  -- never an unrelated one (a status change of the same payment).
  if new.credited_at is not null and (tg_op = 'INSERT' or old.credited_at is null
      or new.gross_amount > old.gross_amount or (new.reversed_at is not null and old.reversed_at is null)) then
    credit := jsonb_build_object('strategy', new.payout_strategy, 'partial', new.credited_partial,
      'feePercent', new.fee_percent::text, 'gross', payrail_event_amount(new.gross_amount, new.asset),
      'fee', payrail_event_amount(new.fee_amount, new.asset), 'net', payrail_event_amount(new.net_amount, new.asset));
  end if;
  if tg_op = 'INSERT' then
    perform payrail_emit('payment.received', 'payment:' || new.payment_id, who || reported);
  end if;
  if new.status = 'partially_paid' and (tg_op = 'INSERT' or old.status is distinct from 'partially_paid') then
    perform payrail_emit('payment.partially_paid', 'payment:' || new.payment_id, who || reported);
  end if;
  if new.credited_at is not null and (tg_op = 'INSERT' or old.credited_at is null) then
    perform payrail_emit('payment.credited', 'payment:' || new.payment_id, who || credit || jsonb_build_object('topUp', false));
  elsif tg_op = 'UPDATE' and new.credited_at is not null and new.gross_amount > old.gross_amount then
    perform payrail_emit('payment.credited', 'payment:' || new.payment_id, who || credit || jsonb_build_object(
      'topUp', true,
      'added', jsonb_build_object('gross', payrail_event_amount(new.gross_amount - old.gross_amount, new.asset),
        'fee', payrail_event_amount(new.fee_amount - old.fee_amount, new.asset),
        'net', payrail_event_amount(new.net_amount - old.net_amount, new.asset))));
  end if;
  if new.review_reason is not null and (tg_op = 'INSERT' or old.review_reason is distinct from new.review_reason) then
    perform payrail_emit('payment.review', 'payment:' || new.payment_id,
      who || reported || jsonb_build_object('reason', new.review_reason));
  end if;
  if tg_op = 'UPDATE' and new.reversed_at is not null and old.reversed_at is null then
    perform payrail_emit('payment.refunded', 'payment:' || new.payment_id, who || credit);
  end if;
  return null;
end $$;

create trigger payments_events_insert after insert on payments
  for each row execute function payrail_payment_events();
-- Intake updates a payment on every copy of an IPN: the function runs only when a reported fact changed.
create trigger payments_events_update after update on payments for each row
  when (new.status is distinct from old.status or new.credited_at is distinct from old.credited_at
    or new.gross_amount is distinct from old.gross_amount or new.review_reason is distinct from old.review_reason
    or new.reversed_at is distinct from old.reversed_at)
  execute function payrail_payment_events();

-- Deferred to the commit: a conversion's shares are written after its status in the same transaction.
create function payrail_conversion_events() returns trigger language plpgsql as $$
declare
  c conversions;
begin
  select * into c from conversions where conversion_id = new.conversion_id;
  perform payrail_emit('conversion.completed', 'conversion:' || c.conversion_id, jsonb_build_object(
    'conversionId', c.conversion_id, 'exchangeId', c.exchange_id, 'payoutHash', c.payout_hash,
    'sent', payrail_event_amount(c.amount_wei, 'eth'), 'received', payrail_event_amount(c.usdt_received, 'usdt'),
    'rate', c.rate::text,
    'shares', coalesce((select jsonb_agg(jsonb_build_object('paymentId', p.payment_id::text, 'channelId', p.channel_id,
        'sent', payrail_event_amount(p.net_wei, 'eth'), 'received', payrail_event_amount(p.usdt_share, 'usdt'))
        order by p.payment_id)
      from conversion_payments p where p.conversion_id = c.conversion_id), '[]'::jsonb)));
  return null;
end $$;

create constraint trigger conversions_events after update of status on conversions
  deferrable initially deferred for each row
  when (new.status = 'completed' and old.status is distinct from 'completed')
  execute function payrail_conversion_events();

create function payrail_payout_events() returns trigger language plpgsql as $$
declare
  data jsonb := jsonb_build_object('payoutId', new.payout_id, 'kind', new.kind, 'channelId', new.channel_id,
    'paymentId', new.payment_id::text, 'status', new.status, 'amount', payrail_event_amount(new.amount, new.asset),
    'payoutCurrency', new.payout_currency, 'payoutNetwork', new.payout_network, 'walletAddress', new.wallet_address);
  subject text := 'payout:' || new.payout_id;
begin
  if tg_op = 'INSERT' then
    perform payrail_emit('payout.opened', subject, data);
    -- A batch a person opened below the threshold (pay now) is a payout, not a threshold reached. USDT has 10^4
    -- units per cent (threshold_usd_cents).
    if new.kind = 'threshold' and new.amount >= (select threshold_usd_cents * 10000 from channels
        where channel_id = new.channel_id) then
      perform payrail_emit('channel.threshold_reached', 'channel:' || new.channel_id, jsonb_build_object(
        'channelId', new.channel_id, 'payoutId', new.payout_id, 'balance', payrail_event_amount(new.amount, new.asset),
        'thresholdUsd', (select trim_scale(threshold_usd_cents * 0.01)::text from channels
          where channel_id = new.channel_id)));
    end if;
    return null;
  end if;
  if new.status is not distinct from old.status then return null; end if;
  if new.status = 'completed' then
    perform payrail_emit('payout.completed', subject, data || jsonb_build_object('exchangeId', new.exchange_id,
      'amountOut', case when new.amount_out is null then null
        else jsonb_build_object('currency', new.payout_currency, 'amount', new.amount_out) end,
      'payoutHash', new.payout_hash));
  elsif new.status in ('failed', 'cancelled') then
    perform payrail_emit('payout.failed', subject, data || jsonb_build_object('reason', new.reason));
  elsif new.status = 'needs_review' then
    perform payrail_emit('payout.needs_review', subject, data || jsonb_build_object('reason', new.reason));
  end if;
  return null;
end $$;

create trigger payouts_events after insert or update of status on payouts
  for each row execute function payrail_payout_events();

create function payrail_channel_events() returns trigger language plpgsql as $$
begin
  perform payrail_emit('channel.wallet_changed', 'channel:' || new.channel_id, jsonb_build_object(
    'channelId', new.channel_id, 'walletAddress', new.wallet_address, 'payoutCurrency', new.payout_currency,
    'payoutNetwork', new.payout_network, 'previous', jsonb_build_object('walletAddress', old.wallet_address,
      'payoutCurrency', old.payout_currency, 'payoutNetwork', old.payout_network)));
  return null;
end $$;

create trigger channels_events after update on channels for each row
  when (new.wallet_address is distinct from old.wallet_address or new.payout_currency is distinct from old.payout_currency
    or new.payout_network is distinct from old.payout_network)
  execute function payrail_channel_events();
