-- A top-up: a payment credited as partial whose rest arrives later (a finished IPN saying more). The difference is
-- credited on its own journal ('payment_topped_up', '<payment id>:<new gross>'), the credit columns hold the total,
-- and what moved on before it (converted, or paid out as an instant payment) stays where it went.
alter table payments
  -- The credit is a partially_paid IPN's: a later IPN saying more is the rest arriving, not a restatement.
  add column credited_partial boolean not null default false,
  -- The outcome of the last IPN that restated the credit otherwise (top_up, outcome_amount_changed): what a top-up's
  -- credit books the difference to, and, after an ignore, what only another amount opens a review again for.
  add column restated_outcome_amount numeric,
  add column restated_outcome_currency text,
  -- Of net_amount, what conversions or the instant payout took before a top-up: the next batch converts the rest.
  add column net_moved_wei numeric(78, 0) not null default 0,
  add constraint payments_restated_complete check ((restated_outcome_amount is null) = (restated_outcome_currency is null)),
  add constraint payments_net_moved check (net_moved_wei >= 0 and (net_amount is null or exchange_cost_wei + net_moved_wei <= net_amount));
update payments set credited_partial = true where credited_at is not null and partial_amounts;
