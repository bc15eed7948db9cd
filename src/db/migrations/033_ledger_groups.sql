-- Ledger groups: one transaction that books several journals of several owners at once (src/ledger/group.ts; the
-- host wallet's confirmations settled together, src/pipeline/transfer/confirm-set.ts).
--
-- A single payrail_post_journal locks its balance rows (in id order) as it books, and holds them to its commit. Several
-- journals in one transaction would lock theirs one journal after the other: a payout's channel account, then the
-- shared world:payees, then the next payout's channel account, in an order no other transaction shares (a deadlock
-- with any single settlement of that channel waiting to happen), and hold world:payees and the gas rows through the
-- rest of the set. So inside a ledger group (payrail.ledger_group, this transaction's id, as 028's intake group) a
-- journal is booked with its entries but leaves its balances and per-day sums; its id is kept in
-- payrail.ledger_group_journals. payrail_ledger_group_end then applies the sum of those journals' entries per account,
-- locking the rows in id order (FOR NO KEY UPDATE), and their per-day sums in key order: the locks a single journal
-- takes, in the order it takes them, each row locked from there to the commit only and updated once per group.
--
-- The balances' check (allow_negative or balance >= 0) is met by the group's sum: a group that would leave an account
-- below zero fails at its end, and nothing of it is kept. Inside the group its balances are not yet updated: a group
-- books only journals whose owners read no balance in the same transaction.

create function payrail_in_ledger_group() returns boolean language sql stable as $$
  select coalesce(current_setting('payrail.ledger_group', true) = txid_current_if_assigned()::text, false)
$$;

create function payrail_ledger_group_begin() returns void language plpgsql as $$
begin
  if payrail_in_intake_group() or payrail_in_ledger_group() then
    raise exception 'a ledger group is already open in this transaction';
  end if;
  perform set_config('payrail.ledger_group', txid_current()::text, true);
  perform set_config('payrail.ledger_group_journals', '', true);
end $$;

-- Returns how many journals the group booked.
create function payrail_ledger_group_end() returns integer language plpgsql as $$
declare
  v_journals bigint[];
begin
  if not payrail_in_ledger_group() then
    raise exception 'no ledger group is open in this transaction';
  end if;
  v_journals := coalesce(
    string_to_array(nullif(current_setting('payrail.ledger_group_journals', true), ''), ',')::bigint[], '{}');
  perform set_config('payrail.ledger_group', '', true);
  perform set_config('payrail.ledger_group_journals', '', true);
  perform 1 from ledger_accounts a
    where a.id in (select e.account_id from ledger_entries e where e.journal_id = any (v_journals))
    order by a.id for no key update;
  update ledger_accounts a set balance = a.balance + d.delta, updated_at = now()
    from (select e.account_id, sum(e.amount) as delta from ledger_entries e
          where e.journal_id = any (v_journals) group by e.account_id) d
    where a.id = d.account_id;
  perform payrail_channel_days_add(v_journals);
  return cardinality(v_journals);
end $$;

create or replace function payrail_channel_days() returns trigger language plpgsql as $$
begin
  if not payrail_in_intake_group() and not payrail_in_ledger_group() then
    perform payrail_channel_days_add(array(select distinct journal_id from new_entries));
  end if;
  return null;
end $$;

-- 030's function; inside a ledger group the balances are left to the group's end, which learns the journal's id.
create or replace function payrail_post_journal(p_kind text, p_ref text, p_codes text[], p_assets text[],
  p_allow_negative boolean[], p_amounts numeric[])
returns bigint language plpgsql set plan_cache_mode = force_generic_plan as $$
declare
  v_journal bigint;
  v_ids bigint[];
  v_mismatch boolean;
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

  select array_agg(a.id order by e.n), coalesce(bool_or(a.allow_negative <> e.allow_negative), false)
    into v_ids, v_mismatch
    from unnest(p_codes, p_assets, p_allow_negative) with ordinality as e(code, asset, allow_negative, n)
    join ledger_accounts a on a.code = e.code and a.asset = e.asset;
  if coalesce(cardinality(v_ids), 0) <> cardinality(p_codes) then
    -- An account seen for the first time. Inserted only where missing: an insert over an existing row that another
    -- transaction holds locked would wait for that lock.
    insert into ledger_accounts (code, asset, allow_negative)
    select distinct e.code, e.asset, e.allow_negative
    from unnest(p_codes, p_assets, p_allow_negative) as e(code, asset, allow_negative)
    where not exists (select 1 from ledger_accounts a where a.code = e.code and a.asset = e.asset)
    on conflict (code, asset) do nothing;
    select array_agg(a.id order by e.n), coalesce(bool_or(a.allow_negative <> e.allow_negative), false)
      into v_ids, v_mismatch
      from unnest(p_codes, p_assets, p_allow_negative) with ordinality as e(code, asset, allow_negative, n)
      join ledger_accounts a on a.code = e.code and a.asset = e.asset;
  end if;
  if v_mismatch then
    raise exception 'journal %:% names an account with a different allow_negative', p_kind, p_ref;
  end if;

  if payrail_in_intake_group() then
    -- Only the group's credits are left for it to add up (payrail_intake_ipns sums payment_received journals).
    if p_kind <> 'payment_received' then
      raise exception 'journal %:% posted inside an intake group, whose end adds only payment_received', p_kind, p_ref;
    end if;
  elsif payrail_in_ledger_group() then
    perform set_config('payrail.ledger_group_journals',
      concat_ws(',', nullif(current_setting('payrail.ledger_group_journals', true), ''), v_journal::text), true);
  else
    perform 1 from ledger_accounts a where a.id = any (v_ids) order by a.id for no key update;
    -- `id = any (…)` keeps the plan on the primary key whatever the table's size; the delta per row is the sum of the
    -- journal's entries on it.
    update ledger_accounts a
      set balance = a.balance + (select sum(e.amount) from unnest(v_ids, p_amounts) as e(id, amount) where e.id = a.id),
          updated_at = now()
      where a.id = any (v_ids);
  end if;

  insert into ledger_entries (journal_id, account_id, amount)
  select v_journal, e.id, e.amount from unnest(v_ids, p_amounts) with ordinality as e(id, amount, n)
  order by e.n;
  get diagnostics v_entries = row_count;
  if v_entries <> cardinality(p_codes) then
    raise exception 'journal %:% wrote % of % entries', p_kind, p_ref, v_entries, cardinality(p_codes);
  end if;
  return v_journal;
end;
$$;
