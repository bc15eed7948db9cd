-- Room on the page for a row's next version, in the small tables every payment updates: a conversion's share of
-- each payment is updated once (its USDT, at settlement), and the ledger's balances and per-day sums are a few rows
-- that every journal updates. On full pages, most of the shares' updates put the new version on another page and
-- wrote an entry into each of the table's indexes. With room on the page, a new version stays beside the old one,
-- and an update that changes no indexed column (a share's USDT, a balance, a day's sums) writes no index entry at
-- all: a heap-only tuple. PostgreSQL prunes the old versions on the page once no snapshot can see them, so the room
-- is reused. These tables are narrow or small: half-full pages cost little.
--
-- payments is left full. Filled to 70 %, its updates that went to another page fell from 93 % to 36 % in
-- bench:pipeline, but its throughput did not move, and the largest table would grow by 40 %.
--
-- Measured with bench:pipeline at its defaults (bench/README.md): the shares' updates heap-only 3–4 % -> 100 %,
-- the balances' 95 % -> 97–98 %, the per-day sums' 76–87 % -> 89–94 %. Only pages written from now on are filled to
-- the new factor.
alter table conversion_payments set (fillfactor = 50);
alter table ledger_accounts set (fillfactor = 50);
alter table ledger_channel_days set (fillfactor = 50);
