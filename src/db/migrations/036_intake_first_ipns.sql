-- An intake group's first IPNs written together. payrail_intake_ipns (028) applied every IPN of a group with its own
-- payrail_intake_ipn call: about a dozen statements per IPN (the channel read, the fee split, the payment, the
-- credit's journal, its accounts and its entries, each planned and run alone), which cost the database more than the
-- rows they write. Under load most IPNs of a group are a payment's first (NOWPayments sends one per status change, and
-- a payment's IPNs are seconds apart), and those need nothing of what a later IPN needs: no stored row to compare,
-- no review rule to rule out. So the group now writes each run of consecutive first IPNs in a few statements, row for
-- row what payrail_intake_ipn's insert branch writes (the payment, its events through 023's trigger, the instant
-- payout or confirm job, the journal and its entries), and applies every other IPN with payrail_intake_ipn as before.
--
-- Which IPNs: an IPN payrail_intake_ipn would not decline as not_common, for a known channel, whose payment id (as a
-- number) no stored payment has and no earlier IPN of the group names. Any later IPN of that payment comes after its
-- run and goes through payrail_intake_ipn, which finds the row. A run's payments are inserted in the order received,
-- then its jobs, then its journals and entries: within the payments, events, jobs, journals and entries the rows come
-- in the order a call per IPN writes them (new accounts are created in key order instead, below). A payment another
-- transaction inserted meanwhile (the insert does nothing) is applied by payrail_intake_ipn right after its run, as a
-- later IPN: its writes come after those of the run's later IPNs, each payment's own still in the order received.
--
-- The group's channel locks (taken shared at its start, 028) stand for the per-IPN lock: no channel of the group can be
-- saved before its commit, so the channel read here is the one every IPN of the group would read. Balances and
-- per-day sums are left to the group's end, as for its other credits.

create function payrail_intake_first_ipns(p_from integer, p_to integer,
  p_payment_ids text[], p_invoice_ids numeric[], p_parent_payment_ids numeric[], p_order_ids text[],
  p_user_ids text[], p_channel_ids text[], p_statuses text[], p_pay_currencies text[], p_pay_amounts numeric[],
  p_actually_paid numeric[], p_price_amounts numeric[], p_price_currencies text[], p_outcome_amounts numeric[],
  p_outcome_currencies text[], p_assets text[], p_grosses numeric[], p_last_ipns text[],
  p_accounts text[], p_allow_negative boolean[],
  p_default_fee_percent numeric, p_confirm_deadline_secs double precision, p_payout_task text,
  p_payout_key_mode text, p_payout_max_attempts integer, p_confirm_task text, p_confirm_key_mode text,
  p_confirm_max_attempts integer)
returns table (o_index integer, o_credited text, o_confirming boolean)
-- Its statements' generic plans are lookups by key whatever the arrays hold (009's reason for
-- payrail_post_journal's): planned once per session, not at every run.
language plpgsql set plan_cache_mode = force_generic_plan as $$
declare
  v_k integer[];
  v_id numeric[];
  v_strategy text[];
  v_percent numeric[];
  v_credits boolean[];
  v_confirms boolean[];
  v_fee numeric[];
  v_net numeric[];
  v_done integer[];
  v_journal_ids bigint[];
  v_journal_refs text[];
  v_e_k integer[];
  v_e_ref text[];
  v_e_code text[];
  v_e_asset text[];
  v_e_allow_negative boolean[];
  v_e_amount numeric[];
  v_e_account bigint[];
  v_bad record;
  v_job record;
  v_written integer;
begin
  -- Only payrail_intake_ipns calls this, with the channels' credit locks held and for IPNs it found to be first ones.
  if not payrail_in_intake_group() then
    raise exception 'payrail_intake_first_ipns runs only inside an intake group';
  end if;
  if exists (select 1 from generate_series(p_from, p_to) k
             where not coalesce(p_assets[k] is not null and p_grosses[k] is not null
               and p_statuses[k] not in ('partially_paid', 'refunded')
               and not (p_statuses[k] = 'finished' and p_grosses[k] <= 0), false)) then
    raise exception 'intake group: IPNs % to % hold one payrail_intake_ipn declines', p_from, p_to;
  end if;
  -- payrail_intake_ipn's refusals, for the same IPNs and in its words.
  select k, p_payment_ids[k]::numeric::text as ref into v_bad
    from generate_series(p_from, p_to) k
    where p_accounts[k][3] is distinct from 'channel:' || p_channel_ids[k] order by k limit 1;
  if found then
    raise exception 'payment %: the credit''s accounts % are not those of channel %', v_bad.ref,
      array[p_accounts[v_bad.k][1], p_accounts[v_bad.k][2], p_accounts[v_bad.k][3]], p_channel_ids[v_bad.k];
  end if;
  select k, p_payment_ids[k]::numeric::text as ref into v_bad
    from generate_series(p_from, p_to) k
    where p_outcome_currencies[k] is distinct from p_assets[k]
       or (payrail_event_amount(p_grosses[k], p_assets[k]) ->> 'amount')::numeric is distinct from p_outcome_amounts[k]
    order by k limit 1;
  if found then
    raise exception 'payment %: % units of % are not the reported % %', v_bad.ref, p_grosses[v_bad.k],
      p_assets[v_bad.k], p_outcome_amounts[v_bad.k], p_outcome_currencies[v_bad.k];
  end if;

  -- One committed version of each channel (the group holds their credit locks), and each IPN's credit as
  -- payrail_intake_ipn splits it. The fee split is asked for every IPN, with zeros for one that credits nothing.
  select array_agg(s.k order by s.k), array_agg(s.id order by s.k), array_agg(s.strategy order by s.k),
         array_agg(s.percent order by s.k), array_agg(s.credits order by s.k), array_agg(s.confirms order by s.k),
         array_agg(case when s.credits then f.fee end order by s.k),
         array_agg(case when s.credits then f.net end order by s.k)
    into v_k, v_id, v_strategy, v_percent, v_credits, v_confirms, v_fee, v_net
    from (select k, p_payment_ids[k]::numeric as id, c.payout_strategy as strategy,
                 coalesce(c.platform_fee_percent, p_default_fee_percent) as percent,
                 p_statuses[k] = 'finished' and p_confirm_deadline_secs is null as credits,
                 p_statuses[k] = 'finished' and p_confirm_deadline_secs is not null as confirms
          from generate_series(p_from, p_to) k
          -- The run's channels read once, by key.
          join (select c.channel_id, c.payout_strategy, c.platform_fee_percent from channels c
                where c.channel_id = any (p_channel_ids[p_from:p_to])) c on c.channel_id = p_channel_ids[k]) s
    cross join lateral payrail_fee_split(case when s.credits then p_grosses[s.k] else 0 end,
      case when s.credits then s.percent else 0 end) f;
  if coalesce(cardinality(v_k), 0) <> p_to - p_from + 1 then
    raise exception 'intake group: IPNs % to % name a channel that is not registered', p_from, p_to;
  end if;

  with inserted as (
    insert into payments (payment_id, invoice_id, parent_payment_id, order_id, user_id, channel_id, status,
        pay_currency, pay_amount, actually_paid, price_amount, price_currency, outcome_amount, outcome_currency,
        partial_amounts, review_reason, last_ipn, asset, gross_amount, fee_amount, net_amount, fee_percent,
        payout_strategy, credited_partial, credited_at, conversion_status, confirm_requested_at, confirm_deadline_at)
      select r.id, p_invoice_ids[r.k], p_parent_payment_ids[r.k], p_order_ids[r.k], p_user_ids[r.k],
        p_channel_ids[r.k], p_statuses[r.k], p_pay_currencies[r.k], p_pay_amounts[r.k], p_actually_paid[r.k],
        p_price_amounts[r.k], p_price_currencies[r.k], p_outcome_amounts[r.k], p_outcome_currencies[r.k], false, null,
        p_last_ipns[r.k], case when r.credits then p_assets[r.k] end, case when r.credits then p_grosses[r.k] end,
        r.fee, r.net, case when r.credits then r.percent end, case when r.credits then r.strategy end, false,
        case when r.credits then now() end,
        case when r.credits and r.strategy = 'threshold' then 'pending' end,
        case when r.confirms then now() end,
        case when r.confirms then now() + make_interval(secs => p_confirm_deadline_secs) end
      from unnest(v_k, v_id, v_strategy, v_percent, v_credits, v_confirms, v_fee, v_net)
        as r(k, id, strategy, percent, credits, confirms, fee, net)
      order by r.k
      on conflict (payment_id) do nothing
      returning payment_id)
  select coalesce(array_agg(r.k order by r.k), '{}') into v_done
    from unnest(v_k, v_id) as r(k, id) join inserted i on i.payment_id = r.id;

  -- The jobs, in the order received (payrail_intake_credit's payout job, payrail_intake_confirm_job's check).
  for v_job in
    select r.id::text as ref, r.credits and r.strategy = 'instant' as payout
    from unnest(v_k, v_id, v_strategy, v_credits, v_confirms) as r(k, id, strategy, credits, confirms)
    where r.k = any (v_done) and ((r.credits and r.strategy = 'instant') or r.confirms)
    order by r.k
  loop
    if v_job.payout then
      perform graphile_worker.add_job(identifier => p_payout_task,
        payload => format('{"paymentId":%s}', to_json(v_job.ref))::json, queue_name => null::text,
        run_at => null::timestamptz, max_attempts => p_payout_max_attempts,
        job_key => p_payout_task || ':' || v_job.ref, job_key_mode => p_payout_key_mode);
    else
      perform payrail_intake_confirm_job(v_job.ref, p_confirm_task, p_confirm_key_mode, p_confirm_max_attempts);
    end if;
  end loop;

  -- The credits' journals as payrail_post_journal books them inside a group: NOWPayments, platform fees, channel,
  -- a zero amount left out; missing accounts created; balances left to the group's end.
  select array_agg(r.k order by r.k, e.n), array_agg(r.id::text order by r.k, e.n),
         array_agg(e.code order by r.k, e.n), array_agg(p_assets[r.k] order by r.k, e.n),
         array_agg(e.allow_negative order by r.k, e.n), array_agg(e.amount order by r.k, e.n)
    into v_e_k, v_e_ref, v_e_code, v_e_asset, v_e_allow_negative, v_e_amount
    from unnest(v_k, v_id, v_credits, v_fee, v_net) as r(k, id, credits, fee, net)
    cross join lateral unnest(array[p_accounts[r.k][1], p_accounts[r.k][2], p_accounts[r.k][3]],
      array[p_allow_negative[r.k][1], p_allow_negative[r.k][2], p_allow_negative[r.k][3]],
      array[-p_grosses[r.k], r.fee, r.net]) with ordinality as e(code, allow_negative, amount, n)
    where r.credits and r.k = any (v_done) and e.amount <> 0;
  if v_e_k is not null then
    select e.ref into v_bad from unnest(v_e_ref, v_e_asset, v_e_amount) as e(ref, asset, amount)
      group by e.ref, e.asset having sum(e.amount) <> 0 limit 1;
    if found then
      raise exception 'journal payment_received:% does not balance', v_bad.ref;
    end if;
    -- Accounts by key, one lookup each (the table holds every channel's accounts): the missing ones created, in key
    -- order (two groups creating the same new accounts, a new channel's or asset's, take them in one order), then
    -- each entry's account, which must allow a negative balance exactly when the entry says so.
    insert into ledger_accounts (code, asset, allow_negative)
      select d.code, d.asset, d.allow_negative
      from (select distinct e.code, e.asset, e.allow_negative
            from unnest(v_e_code, v_e_asset, v_e_allow_negative) as e(code, asset, allow_negative)) d
      where (select a.id from ledger_accounts a where a.code = d.code and a.asset = d.asset) is null
      order by d.code, d.asset
      on conflict (code, asset) do nothing;
    select array_agg((select a.id from ledger_accounts a
                      where a.code = e.code and a.asset = e.asset and a.allow_negative = e.allow_negative) order by e.n)
      into v_e_account
      from unnest(v_e_code, v_e_asset, v_e_allow_negative) with ordinality as e(code, asset, allow_negative, n);
    if array_position(v_e_account, null) is not null then
      raise exception 'journal payment_received:% names an account with a different allow_negative',
        v_e_ref[array_position(v_e_account, null)];
    end if;

    with booked as (
      insert into ledger_journals (kind, ref)
        select 'payment_received', r.id::text from unnest(v_k, v_id, v_credits) as r(k, id, credits)
        where r.credits and r.k = any (v_done) order by r.k
        on conflict (kind, ref) do nothing
        returning id, ref)
    select array_agg(id order by id), array_agg(ref order by id) into v_journal_ids, v_journal_refs from booked;
    select r.id::text as ref into v_bad from unnest(v_k, v_id, v_credits) as r(k, id, credits)
      where r.credits and r.k = any (v_done) and not (r.id::text = any (coalesce(v_journal_refs, '{}'))) limit 1;
    if found then
      raise exception 'payment % already has a ledger credit: refusing to credit twice', v_bad.ref;
    end if;

    -- In the order received, each journal's entries in their order: as one payrail_post_journal after another.
    insert into ledger_entries (journal_id, account_id, amount)
      select j.id, e.account, e.amount
      from unnest(v_e_ref, v_e_account, v_e_amount) with ordinality as e(ref, account, amount, n)
      join unnest(v_journal_ids, v_journal_refs) as j(id, ref) on j.ref = e.ref
      order by e.n;
    get diagnostics v_written = row_count;
    if v_written <> cardinality(v_e_k) then
      raise exception 'intake group: its first IPNs'' journals wrote % of % entries', v_written, cardinality(v_e_k);
    end if;
  end if;

  return query select r.k, case when r.credits then r.strategy end, r.confirms
    from unnest(v_k, v_strategy, v_credits, v_confirms) as r(k, strategy, credits, confirms)
    where r.k = any (v_done) order by r.k;
end $$;

-- 028's function, with its runs of first IPNs written by payrail_intake_first_ipns; every other IPN applied with
-- payrail_intake_ipn as before, in the order received. The answers are kept by position and returned in it.
create or replace function payrail_intake_ipns(
  p_payment_ids text[], p_invoice_ids numeric[], p_parent_payment_ids numeric[], p_order_ids text[],
  p_user_ids text[], p_channel_ids text[], p_statuses text[], p_pay_currencies text[], p_pay_amounts numeric[],
  p_actually_paid numeric[], p_price_amounts numeric[], p_price_currencies text[], p_outcome_amounts numeric[],
  p_outcome_currencies text[], p_assets text[], p_grosses numeric[], p_last_ipns text[], p_advances_from text[],
  p_accounts text[], p_allow_negative boolean[],
  p_default_fee_percent numeric, p_confirm_deadline_secs double precision, p_payout_task text,
  p_payout_key_mode text, p_payout_max_attempts integer, p_confirm_task text, p_confirm_key_mode text,
  p_confirm_max_attempts integer)
returns table (o_index integer, o_outcome text, o_status text, o_credited text, o_confirming boolean,
  o_declined text)
language plpgsql as $$
declare
  v_n integer := coalesce(cardinality(p_payment_ids), 0);
  v_key bigint;
  v_credited text[] := '{}';
  v_first boolean[];
  v_ids numeric[];
  v_stored numeric[];
  v_known text[];
  v_outcome text[];
  v_status text[];
  v_credit text[];
  v_confirming boolean[];
  v_declined text[];
  v_applied boolean[];
  v_row record;
  v_i integer;
  v_end integer;
begin
  if v_n = 0 or array_ndims(p_accounts) <> 2 or array_length(p_accounts, 1) <> v_n
     or array_length(p_accounts, 2) <> 3 or array_ndims(p_allow_negative) <> 2
     or array_length(p_allow_negative, 1) <> v_n or array_length(p_allow_negative, 2) <> 3
     or v_n <> all (array[cardinality(p_invoice_ids), cardinality(p_parent_payment_ids), cardinality(p_order_ids),
       cardinality(p_user_ids), cardinality(p_channel_ids), cardinality(p_statuses), cardinality(p_pay_currencies),
       cardinality(p_pay_amounts), cardinality(p_actually_paid), cardinality(p_price_amounts),
       cardinality(p_price_currencies), cardinality(p_outcome_amounts), cardinality(p_outcome_currencies),
       cardinality(p_assets), cardinality(p_grosses), cardinality(p_last_ipns), cardinality(p_advances_from)]) then
    raise exception 'an intake group of % IPNs is malformed', v_n;
  end if;

  for v_key in
    select distinct payrail_channel_lock_key(c) from unnest(p_channel_ids) as c order by 1
  loop
    perform pg_advisory_xact_lock_shared(v_key);
  end loop;
  perform set_config('payrail.intake_group', txid_current()::text, true);

  -- A payment's first IPN (see above), read once the channels' locks are held.
  v_ids := p_payment_ids::numeric[];
  -- By key (= any: index lookups), never a scan of payments or channels.
  select coalesce(array_agg(p.payment_id), '{}') into v_stored from payments p where p.payment_id = any (v_ids);
  select coalesce(array_agg(c.channel_id), '{}') into v_known from channels c where c.channel_id = any (p_channel_ids);
  select array_agg(coalesce(x.common and x.known and x.first and not x.stored, false) order by x.k) into v_first
    from (select k,
            p_assets[k] is not null and p_grosses[k] is not null
              and p_statuses[k] not in ('partially_paid', 'refunded')
              and not (p_statuses[k] = 'finished' and p_grosses[k] <= 0) as common,
            p_channel_ids[k] = any (v_known) as known,
            row_number() over (partition by v_ids[k] order by k) = 1 as first,
            v_ids[k] = any (v_stored) as stored
          from generate_subscripts(p_payment_ids, 1) as k) x;
  v_outcome := array_fill(null::text, array[v_n]);
  v_status := array_fill(null::text, array[v_n]);
  v_credit := array_fill(null::text, array[v_n]);
  v_confirming := array_fill(null::boolean, array[v_n]);
  v_declined := array_fill(null::text, array[v_n]);
  v_applied := array_fill(false, array[v_n]);

  v_i := 1;
  while v_i <= v_n loop
    if v_first[v_i] then
      v_end := v_i;
      while v_end < v_n and v_first[v_end + 1] loop
        v_end := v_end + 1;
      end loop;
      for v_row in
        select * from payrail_intake_first_ipns(v_i, v_end, p_payment_ids, p_invoice_ids, p_parent_payment_ids,
          p_order_ids, p_user_ids, p_channel_ids, p_statuses, p_pay_currencies, p_pay_amounts, p_actually_paid,
          p_price_amounts, p_price_currencies, p_outcome_amounts, p_outcome_currencies, p_assets, p_grosses,
          p_last_ipns, p_accounts, p_allow_negative, p_default_fee_percent, p_confirm_deadline_secs, p_payout_task,
          p_payout_key_mode, p_payout_max_attempts, p_confirm_task, p_confirm_key_mode, p_confirm_max_attempts)
      loop
        v_outcome[v_row.o_index] := 'recorded';
        v_status[v_row.o_index] := p_statuses[v_row.o_index];
        v_credit[v_row.o_index] := v_row.o_credited;
        v_confirming[v_row.o_index] := v_row.o_confirming;
        v_applied[v_row.o_index] := true;
      end loop;
    else
      v_end := v_i;
    end if;
    -- The IPN at v_i when it is not a first one, or those of the run another transaction's payment met.
    for i in v_i .. v_end loop
      continue when v_applied[i];
      select f.o_outcome, f.o_status, f.o_credited, f.o_confirming, f.o_declined into v_row
        from payrail_intake_ipn(p_payment_ids[i], p_invoice_ids[i], p_parent_payment_ids[i], p_order_ids[i],
          p_user_ids[i], p_channel_ids[i], p_statuses[i], p_pay_currencies[i], p_pay_amounts[i], p_actually_paid[i],
          p_price_amounts[i], p_price_currencies[i], p_outcome_amounts[i], p_outcome_currencies[i], p_assets[i],
          p_grosses[i], p_last_ipns[i], string_to_array(p_advances_from[i], ','),
          array[p_accounts[i][1], p_accounts[i][2], p_accounts[i][3]],
          array[p_allow_negative[i][1], p_allow_negative[i][2], p_allow_negative[i][3]],
          p_default_fee_percent, p_confirm_deadline_secs, p_payout_task, p_payout_key_mode, p_payout_max_attempts,
          p_confirm_task, p_confirm_key_mode, p_confirm_max_attempts) as f;
      v_outcome[i] := v_row.o_outcome;
      v_status[i] := v_row.o_status;
      v_credit[i] := v_row.o_credited;
      v_confirming[i] := v_row.o_confirming;
      v_declined[i] := v_row.o_declined;
      v_applied[i] := true;
    end loop;
    v_i := v_end + 1;
  end loop;

  select coalesce(array_agg(p_payment_ids[k]::numeric::text), '{}') into v_credited
    from generate_subscripts(p_payment_ids, 1) as k where v_credit[k] is not null;
  perform set_config('payrail.intake_group', '', true);
  perform 1 from ledger_accounts a
    where a.id in (select e.account_id from ledger_journals j join ledger_entries e on e.journal_id = j.id
                   where j.kind = 'payment_received' and j.ref = any (v_credited))
    order by a.id for no key update;
  update ledger_accounts a set balance = a.balance + d.delta, updated_at = now()
    from (select e.account_id, sum(e.amount) as delta
          from ledger_journals j join ledger_entries e on e.journal_id = j.id
          where j.kind = 'payment_received' and j.ref = any (v_credited) group by e.account_id) d
    where a.id = d.account_id;
  perform payrail_channel_days_add(array(
    select j.id from ledger_journals j where j.kind = 'payment_received' and j.ref = any (v_credited)));

  return query select k, v_outcome[k], v_status[k], v_credit[k], v_confirming[k], v_declined[k]
    from generate_subscripts(p_payment_ids, 1) as k order by k;
end $$;
