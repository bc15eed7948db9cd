-- The reconciler's look for credited instant payments whose payout was never opened (their job lost): only the few
-- instant payments without a payout are in this index, not the history.
create index payments_instant_unopened on payments (credited_at)
  where payout_strategy = 'instant' and credited_at is not null and payout_id is null and review_reason is null;
