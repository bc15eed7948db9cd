-- When a channel's payout destination (wallet address, or payout currency or network) last changed: null until the
-- first change (creating a channel is not a change). Payouts to a recently changed destination can be held
-- (WALLET_CHANGE_HOLD). Kept by a trigger, so a change made by hand in SQL counts too, and no update can set or
-- clear it without changing the destination.
alter table channels add column wallet_changed_at timestamptz;

create function payrail_channel_wallet_changed() returns trigger language plpgsql as $$
begin
  if tg_op = 'INSERT' then
    new.wallet_changed_at := null;
  elsif (new.wallet_address, new.payout_currency, new.payout_network) is distinct from (old.wallet_address, old.payout_currency, old.payout_network) then
    new.wallet_changed_at := now();
  else
    new.wallet_changed_at := old.wallet_changed_at;
  end if;
  return new;
end;
$$;
create trigger channels_wallet_changed before insert or update on channels
  for each row execute function payrail_channel_wallet_changed();
