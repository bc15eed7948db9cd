-- The alert pass's "threshold reached, no batch" rule (src/alerts/rules-pipeline.ts) asks, for every threshold
-- channel, when its latest batch last changed: max(updated_at) over the channel's threshold payouts. The only index
-- by channel is (channel_id, created_at), so each channel's whole payout history was read from the heap to find it:
-- on the 1,000,000-payment bench database (300,690 payouts, 906 threshold channels), 212,000 pages and 1.37 s of one
-- core, every minute (the pass's cron), whatever the traffic, taken from intake on a busy machine.
--
-- Indexed by channel and updated_at, for threshold payouts only, the maximum is the index's last entry for the
-- channel: 9 ms and 3,000 pages for the same pass on the same database. Built inside the migration's transaction,
-- payouts take no writes while it builds: 0.18 s on that database.
create index payouts_threshold_latest on payouts (channel_id, updated_at) where kind = 'threshold';
