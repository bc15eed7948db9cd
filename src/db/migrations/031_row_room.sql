-- Room on the page for a row's next version. A payment row is inserted by intake and then updated by the worker two
-- or three times (taken by a conversion, settled, linked to its payout), and a conversion's share of each payment
-- once (its USDT, at settlement); the ledger's balances and per-day sums are few rows updated by every journal. On full pages nearly every one of those updates put the new version on another
-- page, reading and dirtying a page of its own, and wrote an entry into each of the table's indexes. With room on the
-- page, the new version stays beside the old one, and an update that changes no indexed column (a share's USDT, a
-- payment's attempt count) writes no index entry at all: a heap-only tuple. PostgreSQL prunes the old versions on the
-- page once no snapshot can see them, so the room is reused.
--
-- Measured with bench:pipeline and 1,000 payments (bench/README.md): payments' updates that went to another page fell
-- from 93 % to 36 %; the shares' from 88 % to none, and the balances' and per-day sums' from 20 % and 47 % to 2 % and
-- none, nearly all of them heap-only. Only pages written from now on are filled to the new factor; each table grows
-- by about as much as the room left on its pages.
alter table payments set (fillfactor = 70);
alter table conversion_payments set (fillfactor = 50);
alter table ledger_accounts set (fillfactor = 50);
alter table ledger_channel_days set (fillfactor = 50);
