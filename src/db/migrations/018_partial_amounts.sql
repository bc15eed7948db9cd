-- A partially_paid payment that NOWPayments later calls expired (or failed): the rest never came, but the partial
-- money did arrive. An expired IPN's outcome_amount is what was asked, converted (its actually_paid is 0), not what
-- came, so the payment keeps the partially_paid IPN's amounts whatever status follows; this says its reported
-- amounts are such a partial payment's, the ones a person's credit books.
alter table payments add column partial_amounts boolean not null default false;
update payments set partial_amounts = true where status = 'partially_paid';
