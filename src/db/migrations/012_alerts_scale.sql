-- Alerts at scale: what each evaluation pass reads stays small however long payrail runs, and outside probes must
-- fail twice in a row before they page anyone.

-- payout_failed looks only at payouts that failed recently (a failed payout is final: the alert resolves once it is
-- older than ALERT_EVENT_RESOLVE_AFTER). payouts_open (007) leaves failed payouts out, and every payout that ever
-- failed stays failed, so without this the rule would read all of them every pass.
create index payouts_failed_recent on payouts (updated_at) where status = 'failed';

-- A state alert a person resolved while its condition held (an acknowledgement) is looked up each pass until the
-- condition is seen clear. Only those not yet cleared are indexed: hand-resolved alerts pile up for ever, live
-- acknowledgements do not. The predicate is the one the evaluator's query spells out, so the planner can use it.
create index alerts_acknowledged on alerts (rule, subject) where resolved_by is not null and not (details ? 'conditionClearedAt');

-- When an observation started failing (null while it is ok): a probe that fails once is noise, one that failed on
-- the pass before too is an outage. Rows failing now count from their last observation.
alter table observations add column failing_since timestamptz;
update observations set failing_since = observed_at where not ok;
