-- The conversion batch takes pending payments oldest credit first: index what it orders by.
drop index payments_conversion_pending;
create index payments_conversion_pending on payments (credited_at) where conversion_status = 'pending';
