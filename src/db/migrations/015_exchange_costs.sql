-- What ChangeNow kept of a payment's ETH when its conversion came back short (a refund less network fees): the
-- payment goes back to pending worth less, and the next batch converts net_amount - exchange_cost_wei.
alter table payments add column exchange_cost_wei numeric(78, 0) not null default 0;
alter table payments add constraint payments_exchange_cost check (exchange_cost_wei >= 0 and (net_amount is null or exchange_cost_wei <= net_amount));
