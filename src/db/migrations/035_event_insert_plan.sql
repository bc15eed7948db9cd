-- payrail_emit (023) writes every event, from the triggers of payments, payouts, conversions and channels: two per
-- credited payment in intake. As a SQL function called from PL/pgSQL it was parsed and planned again at every call
-- (PostgreSQL keeps no plan for a non-inlined SQL function's statements between calls): about two thirds of its time
-- per event, more than the insert itself. As PL/pgSQL its insert is planned once per session. The same row, the same
-- defaults (seq, id, txid, created_at), in the same transaction.
create or replace function payrail_emit(type text, subject text, data jsonb) returns void language plpgsql as $$
begin
  insert into events (type, subject, data) values (type, subject, data);
end $$;
