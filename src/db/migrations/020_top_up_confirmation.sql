-- A top-up (a later IPN saying more than a credited partial) is checked with NOWPayments' API before a person is
-- offered its credit, when NOWPAYMENTS_API_KEY is set: a signed IPN alone must not make more money creditable.
alter table payments
  -- The restatement waits for NOWPayments' answer until this moment (then it goes to review as payment_unconfirmed);
  -- null once the answer is applied, or when no check was asked for (no key).
  add column restated_confirm_deadline_at timestamptz,
  -- NOWPayments agreed with the restated status, outcome amount and currency (and order): the top-up is creditable.
  -- Cleared whenever another restatement replaces the one that was confirmed.
  add column restated_confirmed_at timestamptz,
  add constraint payments_restated_confirm check (
    (restated_confirm_deadline_at is null and restated_confirmed_at is null) or restated_outcome_amount is not null),
  add constraint payments_restated_confirm_once check (restated_confirm_deadline_at is null or restated_confirmed_at is null);
