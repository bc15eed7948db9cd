-- payrail_post_journal (003, as 028 left it) found each of a journal's accounts by its code and asset five times:
-- to create the missing ones, to compare allow_negative, to lock the balance rows, to update them and to write the
-- entries. Each lookup walks the (code, asset) index and fetches the row, so a payment's credit spent about 45 pages
-- of ledger_accounts and its index on lookups alone, the largest share of the pages an intake touches.
--
-- The accounts are now found once, in the journal's order, and named by id from there on (primary key lookups for the
-- locks and the update, none for the entries). Missing accounts are created only when that first lookup did not find
-- them all, then looked up again. What is written, locked and refused is unchanged: the same entries in the same
-- order, the balance rows locked in id order FOR NO KEY UPDATE and updated once each (left to the group inside an
-- intake group, 028), a journal that names an account with another allow_negative refused.
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
