-- Every signed IPN is kept: repeated deposits name the payment they followed, a credit can be reversed after a
-- refund, and a person's decision on a payment in review (credit, ignore, reverse) is kept on the payment.

alter table payments
  -- NOWPayments' parent_payment_id: a repeated deposit to the same pay address is a payment of its own. Not a foreign
  -- key: the parent's IPN may arrive later than the child's, or never.
  add column parent_payment_id numeric(20, 0) check (parent_payment_id > 0 and parent_payment_id <> payment_id),
  -- The credit was taken back after a refund (journal ('payment_reversed', payment_id)); the credit columns stay as
  -- the record of what was credited.
  add column reversed_at timestamptz,
  add column review_action text check (review_action in ('credit', 'ignore', 'reverse')),
  add column review_action_by text,
  add column review_action_at timestamptz,
  add constraint payments_reversed_credited check (reversed_at is null or credited_at is not null),
  add constraint payments_review_action_complete check ((review_action is null) = (review_action_by is null) and (review_action is null) = (review_action_at is null));

-- A reversed threshold payment is no longer the conversion stage's: it has no conversion status.
alter table payments drop constraint payments_check1;
alter table payments add constraint payments_conversion_status_credited
  check ((conversion_status is not null) = (payout_strategy = 'threshold' and credited_at is not null and reversed_at is null));

create index payments_parent on payments (parent_payment_id) where parent_payment_id is not null;
