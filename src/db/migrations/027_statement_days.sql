-- A channel's statement (src/statements) answers in the same time for a channel with 100 payments as for one with
-- 100,000. Its totals (opening, closing, the range's movements per kind, the proof against the balances) were sums
-- over every entry of the channel's accounts: an index-only scan, but still one index entry per payment, ≈ 150 ms for
-- 100,000 payments. They now read these per-day sums for the whole days of a range and the entries themselves only
-- for the parts of a day at its two bounds, so a statement reads one row per day and kind, whatever the traffic.
--
-- One row per channel (its available and payout accounts together), asset, UTC day of the entries' time and journal
-- kind. Kept by the trigger below in the transaction that writes the entries, so every snapshot sees the sums and the
-- entries agree; journals and entries are append-only, so a row only ever grows. The statement proves them: the sums
-- of all days must equal the balances the ledger keeps, and the day at `from` must sum to its own entries.
create table ledger_channel_days (
  channel_id text not null,
  asset text not null,
  day date not null,
  kind text not null,
  -- What the journals moved on channel:<id> and on channel:<id>:payout.
  available numeric(78, 0) not null,
  reserved numeric(78, 0) not null,
  -- Journals of this kind that moved the channel's accounts (a payout set aside moves both: counted once).
  journals bigint not null,
  -- Payment journals (payment_received, payment_topped_up): what NOWPayments' accounts gave and the fee accounts took
  -- in the same journal, as the statement lists them for each payment. 0 for other kinds.
  gross numeric(78, 0) not null,
  fee numeric(78, 0) not null,
  primary key (channel_id, asset, day, kind)
);

-- Entries are written one journal per statement (payrail_post_journal), so the transition table holds whole journals:
-- a payment's gross and fee are read from its own other entries. Only channel accounts are kept: the shared accounts
-- (NOWPayments', the fees') would add a row update to every credit for nothing a statement reads.
create function payrail_channel_days() returns trigger language plpgsql as $$
begin
  insert into ledger_channel_days as d (channel_id, asset, day, kind, available, reserved, journals, gross, fee)
  select c.channel_id, a.asset, (n.created_at at time zone 'UTC')::date, j.kind,
         coalesce(sum(n.amount) filter (where not c.payout), 0), coalesce(sum(n.amount) filter (where c.payout), 0),
         count(distinct n.journal_id), coalesce(sum(p.gross), 0), coalesce(sum(p.fee), 0)
  from new_entries n
  join ledger_accounts a on a.id = n.account_id
  cross join lateral (select a.code like '%:payout' as payout,
                             substr(regexp_replace(a.code, ':payout$', ''), length('channel:') + 1) as channel_id) c
  join ledger_journals j on j.id = n.journal_id
  left join lateral (
    select -sum(x.amount) filter (where xa.code like 'world:nowpayments#%') as gross,
           sum(x.amount) filter (where xa.code like 'platform:fees#%') as fee
    from new_entries x join ledger_accounts xa on xa.id = x.account_id
    where x.journal_id = n.journal_id and not c.payout and j.kind in ('payment_received', 'payment_topped_up')) p on true
  where a.code like 'channel:%'
  group by c.channel_id, a.asset, (n.created_at at time zone 'UTC')::date, j.kind
  on conflict (channel_id, asset, day, kind) do update
    set available = d.available + excluded.available, reserved = d.reserved + excluded.reserved,
        journals = d.journals + excluded.journals, gross = d.gross + excluded.gross, fee = d.fee + excluded.fee;
  return null;
end $$;

create trigger ledger_entries_channel_days after insert on ledger_entries
  referencing new table as new_entries for each statement execute function payrail_channel_days();

-- The sums from the entries themselves, in one pass over them: the history at this migration, and what a bulk loader
-- that wrote entries with triggers off (bench/history.ts) calls afterwards. Only on an empty table: rows already
-- kept would be counted twice.
create function payrail_channel_days_from_entries() returns bigint language plpgsql as $$
declare
  v_rows bigint;
begin
  if exists (select 1 from ledger_channel_days) then
    raise exception 'ledger_channel_days is not empty: its sums are built from the entries only once';
  end if;
  insert into ledger_channel_days (channel_id, asset, day, kind, available, reserved, journals, gross, fee)
  select c.channel_id, a.asset, (e.created_at at time zone 'UTC')::date, j.kind,
         coalesce(sum(e.amount) filter (where not c.payout), 0), coalesce(sum(e.amount) filter (where c.payout), 0),
         count(distinct e.journal_id), coalesce(sum(p.gross), 0), coalesce(sum(p.fee), 0)
  from ledger_entries e
  join ledger_accounts a on a.id = e.account_id
  cross join lateral (select a.code like '%:payout' as payout,
                             substr(regexp_replace(a.code, ':payout$', ''), length('channel:') + 1) as channel_id) c
  join ledger_journals j on j.id = e.journal_id
  left join (
    select x.journal_id, -sum(x.amount) filter (where xa.code like 'world:nowpayments#%') as gross,
           sum(x.amount) filter (where xa.code like 'platform:fees#%') as fee
    from ledger_entries x
    join ledger_accounts xa on xa.id = x.account_id
    join ledger_journals xj on xj.id = x.journal_id
    where xj.kind in ('payment_received', 'payment_topped_up')
      and (xa.code like 'world:nowpayments#%' or xa.code like 'platform:fees#%')
    group by x.journal_id) p on p.journal_id = e.journal_id and not c.payout
  where a.code like 'channel:%'
  group by c.channel_id, a.asset, (e.created_at at time zone 'UTC')::date, j.kind;
  get diagnostics v_rows = row_count;
  return v_rows;
end $$;

select payrail_channel_days_from_entries();

-- A page of a statement ends on a payout's latest journal in the range (its item stands for all of them there): the
-- statement finds a payout's journals by its id, the part of the ref before any ':<n>' (a top-up's).
create index ledger_journals_payout on ledger_journals (split_part(ref, ':', 1), created_at, id)
  where kind in ('payout_reserved', 'payout_topped_up', 'payout_completed');
