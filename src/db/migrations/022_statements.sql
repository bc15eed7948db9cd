-- Statements and accounting exports (src/statements): read-only, but they read ranges of history by time, which no
-- index served. Each index here is read by one of them; none changes how money is booked.
--
-- 1. A channel's statement sums its accounts' entries before, inside and after the range, and lists the journals
--    inside it. With only (account_id), every entry of the channel (three per payment at least) was fetched from the
--    heap to read its time and amount. This one replaces it (same leading column, so every lookup by account still
--    uses it, and entries keep the same number of indexes): the range is a slice of it and the sums an index-only scan.
drop index ledger_entries_account;
create index ledger_entries_account_time on ledger_entries (account_id, created_at) include (amount, journal_id);

-- 2. The ledger export walks journals by time in batches (keyset on (created_at, id)), then their entries by journal.
--    A journal is one index entry more per journal, not per entry.
create index ledger_journals_time on ledger_journals (created_at, id);

-- 3. The payments export walks credited payments by credit time (keyset on (credited_at, payment_id)). Payments never
--    credited (waiting, kept for review) are not in it, nor in this index.
create index payments_credited on payments (credited_at, payment_id) where credited_at is not null;

-- 4. The payouts export walks payouts by creation time (keyset on (created_at, payout_id)).
create index payouts_created on payouts (created_at, payout_id);
