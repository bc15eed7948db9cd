-- Intake's common case in one database call (src/pipeline/payment/intake-one-call.ts): a first IPN for a known
-- channel that needs no person, or a later IPN that only advances or repeats its payment. The statement-by-statement
-- path (recordIpnStepwise, src/pipeline/payment/intake.ts) took 5 to 8 round trips, its transaction waiting for a
-- busy Node process between them with the payment's row and, after the journal, balance rows locked. This call
-- writes exactly the rows, journal, job and events (through the triggers of 023) that path writes for the same IPN.
-- For any other IPN it returns o_outcome null and o_declined a short code saying why, having written nothing, and
-- Node takes that path instead: it is the one place that knows the review rules, so this function never decides a
-- review, it only recognises the cases where none can arise. The payment's id in every ref, key and payload is the
-- row's (v_id::text, canonical), never the caller's text.

-- The channel's credit lock (src/channels/lock.ts channelLockKey computes the same key; a test holds them equal):
-- taken shared by every credit before it reads the channel, exclusively by a channel save before it writes it.
create function payrail_channel_lock_key(p_channel_id text) returns bigint
language sql immutable strict as $$ select hashtextextended('channel:' || p_channel_id, 0) $$;

-- src/money/fee.ts splitFee in SQL: the fee is gross × percent / 100 rounded down in the smallest unit, the rest the
-- channel's. numeric multiplication is exact and div() truncates the exact quotient (towards zero: nothing here is
-- negative), so no intermediate rounding can push the fee over a unit boundary.
create function payrail_fee_split(p_gross numeric, p_percent numeric, out fee numeric, out net numeric)
language plpgsql immutable strict as $$
begin
  -- parsePercent's bounds and a whole, non-negative number of units: anything else is a caller's mistake.
  if p_gross < 0 or p_gross <> trunc(p_gross) or p_percent < 0 or p_percent >= 100 then
    raise exception 'fee split of % at % percent is not defined', p_gross, p_percent;
  end if;
  fee := div(p_gross * p_percent, 100);
  net := p_gross - fee;
end $$;

-- What a credit books besides the payment row (intake.ts creditEffects): the instant payout job (enqueue's call,
-- with the task, key mode and attempts creditEffects uses, passed from the same constants), then the journal, last,
-- since it locks balance rows until the commit. The journal's three accounts come from Node (src/ledger/accounts.ts
-- names and shards them), in the order NOWPayments, platform fees, channel; a zero amount (a 0 % fee) is left out,
-- as postJournal's caller does.
create function payrail_intake_credit(p_payment_id text, p_asset text, p_gross numeric, p_fee numeric,
  p_net numeric, p_strategy text, p_accounts text[], p_allow_negative boolean[], p_payout_task text,
  p_payout_key_mode text, p_payout_max_attempts integer)
returns void language plpgsql as $$
declare
  v_codes text[];
  v_assets text[];
  v_allow_negative boolean[];
  v_amounts numeric[];
begin
  if p_strategy = 'instant' then
    -- The payload's text is JSON.stringify's ({"paymentId":"…"}, no spaces), as enqueue writes it.
    perform graphile_worker.add_job(identifier => p_payout_task,
      payload => format('{"paymentId":%s}', to_json(p_payment_id))::json, queue_name => null::text,
      run_at => null::timestamptz, max_attempts => p_payout_max_attempts,
      job_key => p_payout_task || ':' || p_payment_id, job_key_mode => p_payout_key_mode);
  end if;
  select array_agg(e.code order by e.n), array_agg(p_asset order by e.n), array_agg(e.allow_negative order by e.n),
         array_agg(e.amount order by e.n)
    into v_codes, v_assets, v_allow_negative, v_amounts
    from unnest(p_accounts, p_allow_negative, array[-p_gross, p_fee, p_net]) with ordinality
      as e(code, allow_negative, amount, n)
    where e.amount <> 0;
  if payrail_post_journal('payment_received', p_payment_id, v_codes, v_assets, v_allow_negative, v_amounts) is null then
    raise exception 'payment % already has a ledger credit: refusing to credit twice', p_payment_id;
  end if;
end $$;

-- intake.ts enqueueConfirm: payment_confirm with its key (one job waits per payment) and the task and key mode it
-- uses, passed from the same constant. PL/pgSQL, as the function above: graphile-worker's schema is installed after
-- payrail's migrations on a new database, and a PL/pgSQL body names add_job only when it runs.
create function payrail_intake_confirm_job(p_payment_id text, p_task text, p_key_mode text, p_max_attempts integer)
returns void language plpgsql as $$
begin
  perform graphile_worker.add_job(identifier => p_task,
    payload => format('{"paymentId":%s}', to_json(p_payment_id))::json, queue_name => null::text,
    run_at => null::timestamptz, max_attempts => p_max_attempts, job_key => p_task || ':' || p_payment_id,
    job_key_mode => p_key_mode);
end $$;

-- p_asset and p_gross are Node's reading of outcome_currency and outcome_amount (the credited asset, the amount in
-- its smallest unit); p_advances_from the statuses this IPN's status moves a payment forward from (intake's order of
-- statuses, kept in Node); the settings come as parameters (PLATFORM_FEE_PERCENT's exact text, the confirm deadline
-- in seconds or null without NOWPAYMENTS_API_KEY, the jobs' tasks, key modes and attempts). PARTIAL_PAYMENTS is not
-- one of them: no partial payment is handled here. o_declined, when the call declines: not_common (an IPN Node does
-- not send here), unknown_channel, no_row, other_order, in_review, partial, refunded, restated, restatement,
-- zero_amount, stored_amounts (src/metrics/intake.ts ONE_CALL_DECLINES lists them for the metric).
create function payrail_intake_ipn(
  p_payment_id text, p_invoice_id numeric, p_parent_payment_id numeric, p_order_id text, p_user_id text,
  p_channel_id text, p_status text, p_pay_currency text, p_pay_amount numeric, p_actually_paid numeric,
  p_price_amount numeric, p_price_currency text, p_outcome_amount numeric, p_outcome_currency text, p_asset text,
  p_gross numeric, p_last_ipn text, p_advances_from text[], p_accounts text[], p_allow_negative boolean[],
  p_default_fee_percent numeric, p_confirm_deadline_secs double precision, p_payout_task text,
  p_payout_key_mode text, p_payout_max_attempts integer, p_confirm_task text, p_confirm_key_mode text,
  p_confirm_max_attempts integer,
  out o_outcome text, out o_status text, out o_credited text, out o_confirming boolean, out o_declined text)
language plpgsql as $$
declare
  v_id numeric := p_payment_id::numeric;
  v_ref text := v_id::text;
  v_channel channels;
  v_row payments;
  v_percent numeric;
  v_fee numeric;
  v_net numeric;
  v_credits boolean;
  v_confirms boolean;
  v_forward boolean;
  v_parent boolean;
  v_status text;
begin
  -- A partially_paid or refunded IPN, or an outcome payrail does not credit, can call for a person: Node does not
  -- send them, and they are refused here too.
  if p_asset is null or p_gross is null or p_status in ('partially_paid', 'refunded')
     or (p_status = 'finished' and p_gross <= 0) then
    o_declined := 'not_common';
    return;
  end if;
  -- What Node worked out from the IPN must be of this IPN and channel: a credit to another channel's account, or of
  -- an amount other than the one reported, is a caller's mistake, refused before anything is written. The channel's
  -- account is accounts.channel's name, unsharded; the decimals are payrail_event_amount's (023, held equal to
  -- src/money/assets.ts by a test).
  if coalesce(array_length(p_accounts, 1), 0) <> 3 or p_accounts[3] is distinct from 'channel:' || p_channel_id then
    raise exception 'payment %: the credit''s accounts % are not those of channel %', v_ref, p_accounts, p_channel_id;
  end if;
  if p_outcome_currency is distinct from p_asset
     or (payrail_event_amount(p_gross, p_asset) ->> 'amount')::numeric is distinct from p_outcome_amount then
    raise exception 'payment %: % units of % are not the reported % %', v_ref, p_gross, p_asset, p_outcome_amount,
      p_outcome_currency;
  end if;

  -- The channel's credit lock, shared, is this call's first lock (lock order: src/channels/lock.ts): a save of the
  -- channel under way holds it exclusively, and this call waits for its commit; a save starting now waits for this
  -- call's commit, and then moves what it credited to the channel's new strategy (rehomeChannelPayments). Other
  -- intakes hold it shared too and never wait for this one: no channel row is locked, no tuple written for it.
  perform pg_advisory_xact_lock_shared(payrail_channel_lock_key(p_channel_id));
  -- Read once, after the lock (a volatile function's statement takes a new snapshot under READ COMMITTED, so a save
  -- that committed while this call waited is seen), and only this copy is used below: the row's credit columns, the
  -- fee split, the journal and the payout job all take their fee and strategy from it, one committed version of the
  -- channel, in force until this call commits. recordIpnStepwise locks and reads the channel the same way, first in
  -- its transaction.
  select * into v_channel from channels where channel_id = p_channel_id;
  if not found then
    o_declined := 'unknown_channel'; -- a review
    return;
  end if;
  v_percent := coalesce(v_channel.platform_fee_percent, p_default_fee_percent);

  -- A first IPN: recorded, and a finished one credited (or, with NOWPAYMENTS_API_KEY, its check asked for) by the
  -- insert itself. A concurrent copy inserting the same payment makes this insert wait for its commit, then do
  -- nothing: the copy's row is then handled as a later IPN below.
  v_credits := p_status = 'finished' and p_confirm_deadline_secs is null;
  v_confirms := p_status = 'finished' and p_confirm_deadline_secs is not null;
  if v_credits then
    select s.fee, s.net into v_fee, v_net from payrail_fee_split(p_gross, v_percent) s;
  end if;
  insert into payments (payment_id, invoice_id, parent_payment_id, order_id, user_id, channel_id, status,
      pay_currency, pay_amount, actually_paid, price_amount, price_currency, outcome_amount, outcome_currency,
      partial_amounts, review_reason, last_ipn, asset, gross_amount, fee_amount, net_amount, fee_percent,
      payout_strategy, credited_partial, credited_at, conversion_status, confirm_requested_at, confirm_deadline_at)
    values (v_id, p_invoice_id, p_parent_payment_id, p_order_id, p_user_id, p_channel_id, p_status,
      p_pay_currency, p_pay_amount, p_actually_paid, p_price_amount, p_price_currency, p_outcome_amount,
      p_outcome_currency, false, null, p_last_ipn,
      case when v_credits then p_asset end, case when v_credits then p_gross end, v_fee, v_net,
      case when v_credits then v_percent end, case when v_credits then v_channel.payout_strategy end, false,
      case when v_credits then now() end,
      case when v_credits and v_channel.payout_strategy = 'threshold' then 'pending' end,
      case when v_confirms then now() end,
      case when v_confirms then now() + make_interval(secs => p_confirm_deadline_secs) end)
    on conflict (payment_id) do nothing;
  if found then
    o_outcome := 'recorded';
    o_status := p_status;
    o_confirming := v_confirms;
    if v_credits then
      perform payrail_intake_credit(v_ref, p_asset, p_gross, v_fee, v_net, v_channel.payout_strategy,
        p_accounts, p_allow_negative, p_payout_task, p_payout_key_mode, p_payout_max_attempts);
      o_credited := v_channel.payout_strategy;
    elsif v_confirms then
      perform payrail_intake_confirm_job(v_ref, p_confirm_task, p_confirm_key_mode, p_confirm_max_attempts);
    end if;
    return;
  end if;

  -- A later IPN. Everything is decided before the first write, so a return still leaves nothing written (the row
  -- lock taken here is released with this call's transaction).
  select * into v_row from payments where payment_id = v_id for update;
  if not found then
    o_declined := 'no_row';
    return;
  end if;
  -- Only a payment no review rule can touch: the same order, out of review and never decided on by a person, not
  -- partial, not refunded or reversed, never restated.
  o_declined := case
    when v_row.order_id <> p_order_id then 'other_order'
    when v_row.review_reason is not null or v_row.review_action is not null then 'in_review'
    when v_row.partial_amounts or v_row.credited_partial or v_row.status = 'partially_paid' then 'partial'
    when v_row.status = 'refunded' or v_row.reversed_at is not null then 'refunded'
    when v_row.restated_outcome_amount is not null then 'restated'
    -- A finished IPN saying other than the credit is a restatement (outcome_amount_changed, top_up).
    when v_row.credited_at is not null and p_status = 'finished'
      and (v_row.asset is distinct from p_asset or v_row.gross_amount is distinct from p_gross) then 'restatement'
  end;
  if o_declined is not null then
    return;
  end if;
  v_forward := v_row.status = any (p_advances_from);
  v_parent := v_row.parent_payment_id is null and p_parent_payment_id is not null;
  v_status := case when v_forward then p_status else v_row.status end;

  -- A finished payment not credited yet is credited (or its check asked for again) from the amounts the row holds
  -- once this IPN is applied: this IPN's when it moves the status (an uncredited payment takes the reported amounts
  -- of every forward IPN), else the stored ones, which are taken here only when they are this IPN's too.
  v_credits := false;
  v_confirms := false;
  if v_status = 'finished' and v_row.credited_at is null then
    if p_gross <= 0 then
      o_declined := 'zero_amount';
      return;
    end if;
    if not v_forward and (v_row.outcome_currency <> p_asset or v_row.outcome_amount <> p_outcome_amount) then
      o_declined := 'stored_amounts';
      return;
    end if;
    v_credits := p_confirm_deadline_secs is null;
    v_confirms := not v_credits;
  end if;

  if v_forward or v_parent then
    -- Reported amounts follow the status until the credit fixes them.
    update payments set
        parent_payment_id = case when v_parent then p_parent_payment_id else parent_payment_id end,
        status = v_status,
        last_ipn = case when v_forward then p_last_ipn else last_ipn end,
        pay_currency = case when v_forward and credited_at is null then p_pay_currency else pay_currency end,
        pay_amount = case when v_forward and credited_at is null then p_pay_amount else pay_amount end,
        actually_paid = case when v_forward and credited_at is null then p_actually_paid else actually_paid end,
        price_amount = case when v_forward and credited_at is null then p_price_amount else price_amount end,
        price_currency = case when v_forward and credited_at is null then p_price_currency else price_currency end,
        outcome_amount = case when v_forward and credited_at is null then p_outcome_amount else outcome_amount end,
        outcome_currency =
          case when v_forward and credited_at is null then p_outcome_currency else outcome_currency end,
        ipn_count = ipn_count + 1,
        updated_at = now()
      where payment_id = v_id;
    o_outcome := 'advanced';
  else
    update payments set ipn_count = ipn_count + 1 where payment_id = v_id;
    o_outcome := 'unchanged';
  end if;

  if v_credits then
    select s.fee, s.net into v_fee, v_net from payrail_fee_split(p_gross, v_percent) s;
    update payments set asset = p_asset, gross_amount = p_gross, fee_amount = v_fee, net_amount = v_net,
        fee_percent = v_percent, payout_strategy = v_channel.payout_strategy, credited_partial = false,
        credited_at = now(),
        conversion_status = case when v_channel.payout_strategy = 'threshold' then 'pending' end
      where payment_id = v_id;
    perform payrail_intake_credit(v_ref, p_asset, p_gross, v_fee, v_net, v_channel.payout_strategy,
      p_accounts, p_allow_negative, p_payout_task, p_payout_key_mode, p_payout_max_attempts);
    o_credited := v_channel.payout_strategy;
  elsif v_confirms then
    -- The check's clock starts with the first crediting IPN: a later copy keeps it.
    update payments set confirm_requested_at = coalesce(confirm_requested_at, now()),
        confirm_deadline_at = coalesce(confirm_deadline_at, now() + make_interval(secs => p_confirm_deadline_secs))
      where payment_id = v_id and credited_at is null;
    perform payrail_intake_confirm_job(v_ref, p_confirm_task, p_confirm_key_mode, p_confirm_max_attempts);
  end if;
  o_status := v_status;
  o_confirming := v_confirms;
end $$;
