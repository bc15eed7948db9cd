-- Costs that grew with the stored history, found with 1,000,000 stored payments over 1,000 channels
-- (bench/README.md, "Intake with a large history").
--
-- 1. Lookups that read every stored row. Each was a scan whose cost grew with the history and took CPU from intake
--    on the same database:
--    - the host wallet's one-signed-transfer-at-a-time check (transfer.ts, every transfer sent):
--      `... from chain_transfers where from_address = $1 and status = 'signed' ...`, a sequential scan of every
--      transfer ever made (305,000: ≈ 200 ms each, 39 s of database time in a one-minute run);
--    - the conversion's `update payments ... where conversion_id = $1` (every conversion, and when a conversion is
--      released or sent to review): a sequential scan of all payments (1.1 GB: ≈ 1 s each);
--    - the threshold check's `update payments ... where channel_id = $1 and conversion_status = 'completed' and
--      payout_id is null`: every payment the channel ever had, for the few not yet in a payout (≈ 100 ms);
--    - a channel's payouts, newest first (GET and PUT /api/channels/:id): every payout (≈ 60 ms).
--    The payments and chain_transfers indexes are partial and small; intake's insert (no conversion id yet,
--    conversion pending or none) enters neither payments index, so the webhook maintains none of the new indexes.
create index chain_transfers_signed on chain_transfers (from_address) where status = 'signed';
create index payments_conversion on payments (conversion_id) where conversion_id is not null;
create index payments_unpaid_by_channel on payments (channel_id) where conversion_status = 'completed' and payout_id is null;
create index payouts_channel on payouts (channel_id, created_at);

-- 2. Every journal re-planned five of its statements. Those statements join unnest(the entries) to ledger_accounts.
--    The cached generic plan is right (index lookups, nested loop) but is priced for 10 entries against about 3 for
--    a plan made with the actual arrays, so once ledger_accounts is larger than a few hundred rows (≈ 3,000 with
--    1,000 channels) PostgreSQL keeps planning each statement again at every call: ≈ 0.5 ms of planning per journal,
--    more than the statements themselves (payrail_post_journal 0.88 ms against 0.39 ms with the generic plans). The
--    generic plans are index lookups whatever the number of accounts, so the function keeps them.
alter function payrail_post_journal(text, text, text[], text[], boolean[], numeric[]) set plan_cache_mode = force_generic_plan;
