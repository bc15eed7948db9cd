-- A payment whose conversion ChangeNow refused for good (amount too small, pair inactive, bad key) waits before the
-- next try, longer each time, instead of creating a refused exchange every interval.
alter table payments add column conversion_hold_until timestamptz;
