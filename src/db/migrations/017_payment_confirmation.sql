-- A crediting IPN is checked with NOWPayments' API (GET /v1/payment/{id}) before it is credited, when
-- NOWPAYMENTS_API_KEY is set: the signature alone is no proof that the payment happened.

alter table payments
  -- When the check was first asked for, and the moment past which an unreachable NOWPayments sends the payment to
  -- review instead of being asked again. Null: no check asked for (no key, or credited on the IPN before).
  add column confirm_requested_at timestamptz,
  add column confirm_deadline_at timestamptz,
  -- NOWPayments agreed (status, outcome amount and currency, order): set in the transaction of the credit.
  add column confirmed_at timestamptz,
  -- Calls that got no usable answer, and the last such failure.
  add column confirm_attempts integer not null default 0,
  add column confirm_last_error text,
  add constraint payments_confirmed_credited check (confirmed_at is null or credited_at is not null),
  add constraint payments_confirm_deadline check ((confirm_requested_at is null) = (confirm_deadline_at is null));
