-- Intake's common case for a group of IPNs in one transaction (src/pipeline/payment/intake-batch.ts): the IPNs that
-- reach the web process while its previous group is in the database, applied one after the other by
-- payrail_intake_ipn (026), each exactly as a call of its own would, and committed together. On 2 cores a payment's
-- own call spent about as much of the database's time on being a transaction (its start, its snapshot, the commit
-- and the wait for its WAL flush) as on its rows; a group pays that once.
--
-- Balances and per-day sums. A single call posts its journal last, locking its three balance rows (in id order) and
-- then its channel's per-day sum (027) until its commit. A group's items would lock theirs one item after the other,
-- holding the first ones through the rest of the group, in an order no other transaction shares (a deadlock with
-- another group, or with a single call, waiting to happen), and update the platform's fee and NOWPayments shards
-- once per IPN. So within a group (payrail.intake_group, this transaction's mark) payrail_post_journal books
-- each journal and its entries but leaves the balances, and the trigger leaves the per-day sums; at its end the group
-- applies the sum of its credited journals' entries per account, locking those rows in id order (FOR NO KEY UPDATE,
-- which the other groups' entries' foreign keys, FOR KEY SHARE, do not hold back), then their per-day
-- sums in key order: the order of a single call, each row locked from there to the commit only and updated once per
-- group. Nothing in intake reads a balance or a per-day sum, and a credit only adds to the accounts that may not go
-- negative.
--
-- The channels' credit locks are taken first, all of them, shared, in key order, as a single call takes its one
-- before anything else (026): a save waiting for one of them never finds the group holding one and asking for
-- another. What is left are the rows a transaction creates, which others then wait for whatever order they keep: a
-- channel's first accounts, a task's first job, the same new payment inserted at once by two. A deadlock among those
-- is broken by PostgreSQL, and Node applies the group's IPNs again one by one, with their own calls.

-- The group's mark: this transaction's id, so that no setting made outside one (a role's, a session's) can pass for
-- it. current_setting's missing_ok: unset, or set by a group of another transaction, is not in a group.
create function payrail_in_intake_group() returns boolean language sql stable as $$
  select coalesce(current_setting('payrail.intake_group', true) = txid_current_if_assigned()::text, false)
$$;

-- Arrays, one element per IPN, in the order Node received them; p_advances_from is each IPN's list of statuses it
-- moves a payment forward from, joined by commas (a status has none); p_accounts and p_allow_negative hold each IPN's
-- three accounts as one row of an n × 3 array. The settings are the group's (one process's configuration). A row is
-- returned per IPN, with its position (o_index, from 1), as payrail_intake_ipn returns it.
create function payrail_intake_ipns(
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

  for i in 1 .. v_n loop
    select i, f.o_outcome, f.o_status, f.o_credited, f.o_confirming, f.o_declined
      into o_index, o_outcome, o_status, o_credited, o_confirming, o_declined
      from payrail_intake_ipn(p_payment_ids[i], p_invoice_ids[i], p_parent_payment_ids[i], p_order_ids[i],
        p_user_ids[i], p_channel_ids[i], p_statuses[i], p_pay_currencies[i], p_pay_amounts[i], p_actually_paid[i],
        p_price_amounts[i], p_price_currencies[i], p_outcome_amounts[i], p_outcome_currencies[i], p_assets[i],
        p_grosses[i], p_last_ipns[i], string_to_array(p_advances_from[i], ','),
        array[p_accounts[i][1], p_accounts[i][2], p_accounts[i][3]],
        array[p_allow_negative[i][1], p_allow_negative[i][2], p_allow_negative[i][3]],
        p_default_fee_percent, p_confirm_deadline_secs, p_payout_task, p_payout_key_mode, p_payout_max_attempts,
        p_confirm_task, p_confirm_key_mode, p_confirm_max_attempts) as f;
    if o_credited is not null then
      v_credited := v_credited || p_payment_ids[i]::numeric::text;
    end if;
    return next;
  end loop;

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
end $$;

-- 027's trigger body as a function of the journals whose entries it adds, so that a group runs the same at its end.
-- The rows are written in key order: a transaction adding to several locks them in the order every other one does.
-- PL/pgSQL, not SQL: a SQL function's statement is planned again at every call, a PL/pgSQL one once per session.
create function payrail_channel_days_add(p_journals bigint[]) returns void language plpgsql as $$
begin
  insert into ledger_channel_days as d (channel_id, asset, day, kind, available, reserved, journals, gross, fee)
  select c.channel_id, a.asset, (n.created_at at time zone 'UTC')::date, j.kind,
         coalesce(sum(n.amount) filter (where not c.payout), 0), coalesce(sum(n.amount) filter (where c.payout), 0),
         count(distinct n.journal_id), coalesce(sum(p.gross), 0), coalesce(sum(p.fee), 0)
  from ledger_entries n
  join ledger_accounts a on a.id = n.account_id
  cross join lateral (select a.code like '%:payout' as payout,
                             substr(regexp_replace(a.code, ':payout$', ''), length('channel:') + 1) as channel_id) c
  join ledger_journals j on j.id = n.journal_id
  left join (
    select x.journal_id, -sum(x.amount) filter (where xa.code like 'world:nowpayments#%') as gross,
           sum(x.amount) filter (where xa.code like 'platform:fees#%') as fee
    from ledger_entries x join ledger_accounts xa on xa.id = x.account_id
    where x.journal_id = any (p_journals) group by x.journal_id) p
    on p.journal_id = n.journal_id and not c.payout and j.kind in ('payment_received', 'payment_topped_up')
  where n.journal_id = any (p_journals) and a.code like 'channel:%'
  group by c.channel_id, a.asset, (n.created_at at time zone 'UTC')::date, j.kind
  order by 1, 2, 3, 4
  on conflict (channel_id, asset, day, kind) do update
    set available = d.available + excluded.available, reserved = d.reserved + excluded.reserved,
        journals = d.journals + excluded.journals, gross = d.gross + excluded.gross, fee = d.fee + excluded.fee;
end $$;

create or replace function payrail_channel_days() returns trigger language plpgsql as $$
begin
  if not payrail_in_intake_group() then
    perform payrail_channel_days_add(array(select distinct journal_id from new_entries));
  end if;
  return null;
end $$;

-- 003's function, but for the balances: left to the group (above) while this transaction is one
-- (payrail_in_intake_group), which adds up only payment_received journals: any other kind is refused there. And the
-- balance rows are locked FOR NO KEY UPDATE, the lock the update itself takes, no longer FOR
-- UPDATE: a group's entries hold their accounts' rows FOR KEY SHARE (their foreign key) until its commit, which FOR
-- UPDATE would wait for, and the group, at its end, for this journal's rows. Everything else is as it was, 009's
-- generic plans included.
create or replace function payrail_post_journal(p_kind text, p_ref text, p_codes text[], p_assets text[],
  p_allow_negative boolean[], p_amounts numeric[])
returns bigint language plpgsql set plan_cache_mode = force_generic_plan as $$
declare
  v_journal bigint;
  v_entries integer;
begin
  if cardinality(p_codes) < 2 or cardinality(p_codes) <> cardinality(p_assets)
     or cardinality(p_codes) <> cardinality(p_amounts) or cardinality(p_codes) <> cardinality(p_allow_negative) then
    raise exception 'journal %:% is malformed', p_kind, p_ref;
  end if;
  if exists (select 1 from unnest(p_assets, p_amounts) as e(asset, amount) group by e.asset
             having sum(e.amount) <> 0) then
    raise exception 'journal %:% does not balance', p_kind, p_ref;
  end if;

  insert into ledger_journals (kind, ref) values (p_kind, p_ref) on conflict (kind, ref) do nothing
    returning id into v_journal;
  if v_journal is null then
    return null;
  end if;

  insert into ledger_accounts (code, asset, allow_negative)
  select distinct e.code, e.asset, e.allow_negative
  from unnest(p_codes, p_assets, p_allow_negative) as e(code, asset, allow_negative)
  where not exists (select 1 from ledger_accounts a where a.code = e.code and a.asset = e.asset)
  on conflict (code, asset) do nothing;

  if exists (
    select 1 from unnest(p_codes, p_assets, p_allow_negative) as e(code, asset, allow_negative)
    join ledger_accounts a on a.code = e.code and a.asset = e.asset where a.allow_negative <> e.allow_negative
  ) then
    raise exception 'journal %:% names an account with a different allow_negative', p_kind, p_ref;
  end if;

  if payrail_in_intake_group() then
    -- Only the group's credits are left for it to add up (payrail_intake_ipns sums payment_received journals).
    if p_kind <> 'payment_received' then
      raise exception 'journal %:% posted inside an intake group, whose end adds only payment_received', p_kind, p_ref;
    end if;
  else
    perform 1 from ledger_accounts a
    where (a.code, a.asset) in (select e.code, e.asset from unnest(p_codes, p_assets) as e(code, asset))
    order by a.id for no key update;

    update ledger_accounts a set balance = a.balance + d.delta, updated_at = now()
    from (
      select e.code, e.asset, sum(e.amount) as delta from unnest(p_codes, p_assets, p_amounts) as e(code, asset, amount)
      group by e.code, e.asset
    ) d
    where a.code = d.code and a.asset = d.asset;
  end if;

  insert into ledger_entries (journal_id, account_id, amount)
  select v_journal, a.id, e.amount
  from unnest(p_codes, p_assets, p_amounts) with ordinality as e(code, asset, amount, n)
  join ledger_accounts a on a.code = e.code and a.asset = e.asset
  order by e.n;
  get diagnostics v_entries = row_count;
  if v_entries <> cardinality(p_codes) then
    raise exception 'journal %:% wrote % of % entries', p_kind, p_ref, v_entries, cardinality(p_codes);
  end if;
  return v_journal;
end;
$$;
