-- Posting a journal in one round trip. Balance rows are locked in account-id order (no deadlocks) and held only
-- from here to the commit; accounts are created only when missing (an insert over an existing, locked account row
-- would wait on that lock). The caller checks the journal balances before calling; this checks it again.
create function payrail_post_journal(p_kind text, p_ref text, p_codes text[], p_assets text[], p_allow_negative boolean[], p_amounts numeric[])
returns bigint language plpgsql as $$
declare
  v_journal bigint;
  v_entries integer;
begin
  if cardinality(p_codes) < 2 or cardinality(p_codes) <> cardinality(p_assets) or cardinality(p_codes) <> cardinality(p_amounts)
     or cardinality(p_codes) <> cardinality(p_allow_negative) then
    raise exception 'journal %:% is malformed', p_kind, p_ref;
  end if;
  if exists (select 1 from unnest(p_assets, p_amounts) as e(asset, amount) group by e.asset having sum(e.amount) <> 0) then
    raise exception 'journal %:% does not balance', p_kind, p_ref;
  end if;

  insert into ledger_journals (kind, ref) values (p_kind, p_ref) on conflict (kind, ref) do nothing returning id into v_journal;
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

  perform 1 from ledger_accounts a
  where (a.code, a.asset) in (select e.code, e.asset from unnest(p_codes, p_assets) as e(code, asset))
  order by a.id for update;

  update ledger_accounts a set balance = a.balance + d.delta, updated_at = now()
  from (
    select e.code, e.asset, sum(e.amount) as delta from unnest(p_codes, p_assets, p_amounts) as e(code, asset, amount) group by e.code, e.asset
  ) d
  where a.code = d.code and a.asset = d.asset;

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
