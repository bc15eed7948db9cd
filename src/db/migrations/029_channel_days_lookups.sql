-- 028's payrail_channel_days_add, which every journal runs (through 027's trigger, or once at an intake group's end),
-- read all of ledger_accounts twice per call. Its plan is the session's generic one, made without the journals'
-- array: PostgreSQL priced the journals' entries as a few dozen rows and joined them to the accounts by hashing the
-- whole table, once for the channel accounts and once for the gross and fee of each payment. With 1,000 channels
-- (2,944 accounts, 59 pages) that was 118 pages and ≈ 1.4 ms of a 2.4 ms intake; on the empty bench database, a
-- third of the pages an intake touched in ledger_accounts.
--
-- The entries are now read once, and their accounts fetched by primary key from the ids those entries name
-- (`id = any (array(…))` is an index lookup in any plan), so the cost follows the journals, not the number of
-- accounts: 16 pages and 0.13 ms for one payment with that history. The sums written are the same, row for row.
create or replace function payrail_channel_days_add(p_journals bigint[]) returns void language plpgsql as $$
begin
  insert into ledger_channel_days as d (channel_id, asset, day, kind, available, reserved, journals, gross, fee)
  with n as materialized (
    select e.journal_id, e.account_id, e.amount, e.created_at from ledger_entries e where e.journal_id = any (p_journals)
  ), a as materialized (
    select x.id, x.code, x.asset, x.code like '%:payout' as payout from ledger_accounts x
    where x.id = any (array(select distinct n.account_id from n))
  ), p as (
    -- A payment journal's gross (what NOWPayments' account gave) and fee (what the fee account took).
    select n.journal_id, -sum(n.amount) filter (where a.code like 'world:nowpayments#%') as gross,
           sum(n.amount) filter (where a.code like 'platform:fees#%') as fee
    from n join a on a.id = n.account_id group by n.journal_id
  )
  select substr(regexp_replace(a.code, ':payout$', ''), length('channel:') + 1), a.asset,
         (n.created_at at time zone 'UTC')::date, j.kind,
         coalesce(sum(n.amount) filter (where not a.payout), 0), coalesce(sum(n.amount) filter (where a.payout), 0),
         count(distinct n.journal_id), coalesce(sum(p.gross), 0), coalesce(sum(p.fee), 0)
  from n
  join a on a.id = n.account_id
  join ledger_journals j on j.id = n.journal_id
  left join p on p.journal_id = n.journal_id and not a.payout and j.kind in ('payment_received', 'payment_topped_up')
  where a.code like 'channel:%'
  group by 1, 2, 3, 4
  -- Key order: a transaction adding to several rows locks them in the order every other one does.
  order by 1, 2, 3, 4
  on conflict (channel_id, asset, day, kind) do update
    set available = d.available + excluded.available, reserved = d.reserved + excluded.reserved,
        journals = d.journals + excluded.journals, gross = d.gross + excluded.gross, fee = d.fee + excluded.fee;
end $$;
