-- When payrail first asked ChangeNow for a payout's exchange: the intent (status exchange_requested) is recorded before
-- every request, so a payout that never had that status cannot have an exchange at ChangeNow. A payout run lists
-- ChangeNow's exchanges for the payout (userId = payout id) before asking, to adopt one an earlier attempt created
-- and died before recording; for a payout never asked, that list is one ChangeNow call per payout that can only come
-- back empty (src/pipeline/payout/run.ts, findEarlierExchange).
--
-- The status alone does not tell: an asked payout can go back to pending (held by WALLET_CHANGE_HOLD or a minimum, or
-- awaiting approval, then resumed) while ChangeNow holds its exchange. So the first ask is kept here, set by a trigger
-- whenever the status becomes exchange_requested, whoever writes it, and never cleared.
alter table payouts add column exchange_asked_at timestamptz;

create function payrail_payout_exchange_asked() returns trigger language plpgsql as $$
begin
  if tg_op = 'UPDATE' and old.exchange_asked_at is not null then
    new.exchange_asked_at := old.exchange_asked_at;
  elsif new.status = 'exchange_requested' and new.exchange_asked_at is null then
    new.exchange_asked_at := now();
  end if;
  return new;
end;
$$;
create trigger payouts_exchange_asked before insert or update of status, exchange_asked_at on payouts
  for each row execute function payrail_payout_exchange_asked();

-- Payouts recorded before this column may have been asked in any open state: each lists ChangeNow's exchanges as
-- before. An ended payout is never run again.
update payouts set exchange_asked_at = updated_at where status not in ('completed', 'failed', 'cancelled');
