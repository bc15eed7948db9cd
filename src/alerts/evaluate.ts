/**
 * One evaluation pass (the alerts_evaluate cron): observe the outside world, run every state rule, then in one
 * transaction open what is new, touch what still fires, resolve what cleared, and resolve event alerts gone quiet.
 * A session advisory lock makes concurrent passes (two workers, a slow pass overlapping the next) run one at a time:
 * the other skips, so a stale pass can never reopen what a newer one resolved.
 *
 * Resolution semantics:
 * - A state alert resolves on the first pass that finds its subject clear; if the condition returns, a new alert
 *   opens (a new row, sent again).
 * - A state alert a person resolves while its condition still holds stays resolved: it is acknowledged, and passes
 *   only keep its last_seen_at (and evidence) current. Once a pass finds the condition clear, that is recorded in
 *   its details (conditionClearedAt) and the next occurrence opens a new alert as usual.
 * - An event alert resolves when it has not been raised again for ALERT_EVENT_RESOLVE_AFTER, or by hand; raised
 *   again after that, it opens a new alert.
 * - A rule that fails, or an observation that failed, leaves its alerts as they are: a blind pass resolves nothing.
 * - An open state alert whose message and evidence are unchanged is not rewritten on every pass: its last_seen_at
 *   is refreshed once it is stateTouchEveryMs old (15 minutes). Being open is what says it still fires.
 * - Throttled rules (the ledger check) run once per their period across all workers, claimed in `observations`.
 */
import { sql, type Transaction } from 'kysely';
import type { Database, Db } from '../db/index.ts';
import type { Logger } from '../log.ts';
import type { ChainSide } from '../treasury/index.ts';
import { claimThrottled, observeOutside, recordThrottled, type Observation, type ObserveDeps } from './observe.ts';
import type { AlertSettings, Firing, RuleResult, StateRule } from './rule-types.ts';
import { STATE_RULES } from './rules.ts';
import {
  cleanSubject,
  enqueueNotify,
  openOrTouch,
  raiseAlert,
  resolveOpen,
  type AlertRow,
  type StoreOptions,
} from './store.ts';
import { cleanDetails, cleanText, shortError } from './text.ts';

export interface EvaluateDeps extends ObserveDeps {
  db: Db;
  /** The host wallet for rules that compare the ledger with the chain; unset, they see no chain. */
  chain?: ChainSide | undefined;
  logger: Logger;
  settings: AlertSettings;
  /** ALERT_WEBHOOK_URL is set. */
  notify: boolean;
  /** Replaces STATE_RULES (tests). */
  rules?: readonly StateRule[];
}

export interface EvaluationSummary {
  /** Another pass held the lock: this one did nothing. */
  skipped: boolean;
  observations: Observation[];
  opened: number;
  resolved: number;
  /** Rules that threw (an alert_rule_failed alert each); their alerts were left as they were. */
  failedRules: string[];
}

/** hashtext() of this names the pass among advisory locks. */
const PASS_LOCK = 'payrail:alerts_evaluate';

export async function evaluateAlerts(deps: EvaluateDeps): Promise<EvaluationSummary> {
  return deps.db.connection().execute(async (conn) => {
    const locked = await sql<{ ok: boolean }>`select pg_try_advisory_lock(hashtext(${PASS_LOCK})) as ok`.execute(conn);
    if (!locked.rows[0]?.ok) return { skipped: true, observations: [], opened: 0, resolved: 0, failedRules: [] };
    try {
      return await pass(deps);
    } finally {
      await sql`select pg_advisory_unlock(hashtext(${PASS_LOCK}))`.execute(conn);
    }
  });
}

async function pass(deps: EvaluateDeps): Promise<EvaluationSummary> {
  const observations = await observeOutside(deps);
  const rules = deps.rules ?? STATE_RULES;
  const results = new Map<StateRule, RuleResult>();
  const failedRules: string[] = [];
  for (const rule of rules) {
    const throttle = rule.throttle;
    try {
      // Claimed in the database before the run, not remembered in this process: any number of workers run the
      // check once per period, and a run that fails or times out waits its period like any other.
      if (throttle && !(await claimThrottled(deps.db, throttle.observation, throttle.everyMs(deps.settings)))) continue;
      const result = await rule.evaluate({ db: deps.db, settings: deps.settings, chain: deps.chain });
      results.set(rule, result);
      if (throttle)
        await recordRun(deps, {
          name: throttle.observation,
          ok: result.firing.length === 0,
          value: result.observedValue ?? String(result.firing.length),
          detail: null,
        });
    } catch (error) {
      failedRules.push(rule.name);
      if (throttle)
        await recordRun(deps, {
          name: throttle.observation,
          ok: false,
          value: null,
          detail: `check failed: ${shortError(error)}`,
        });
      await raiseAlert(
        deps.db,
        {
          rule: 'alert_rule_failed',
          subject: rule.name,
          severity: 'warning',
          message: `alert rule ${rule.name} could not be evaluated: ${shortError(error)}`,
          details: { ruleName: rule.name, error: shortError(error) },
        },
        { logger: deps.logger, notify: deps.notify },
      );
    }
  }
  const counts = await deps.db.transaction().execute(async (trx) => {
    let opened = 0;
    let resolved = 0;
    for (const [rule, result] of results) {
      const applied = await applyRule(trx, rule, result, deps);
      opened += applied.opened;
      resolved += applied.resolved;
    }
    resolved += (await resolveQuietEvents(trx, rules, deps)).length;
    return { opened, resolved };
  });
  return { skipped: false, observations, failedRules, ...counts };
}

/** The outcome of a throttled run, for the dashboard and the next claim; a failure to write it only logs. */
async function recordRun(deps: EvaluateDeps, observation: Observation): Promise<void> {
  try {
    await recordThrottled(deps.db, observation);
  } catch (error) {
    deps.logger.warn(
      { event: 'observation_store_failed', observation: observation.name, err: shortError(error) },
      'a throttled check ran but its result could not be stored',
    );
  }
}

async function applyRule(
  trx: Transaction<Database>,
  rule: StateRule,
  result: RuleResult,
  deps: EvaluateDeps,
): Promise<{ opened: number; resolved: number }> {
  const store: StoreOptions = { notify: deps.notify && rule.notify !== false };
  const firing = new Map(result.firing.map((f) => [cleanSubject(f.subject), f]));
  const unknown = new Set((result.unknown ?? []).map(cleanSubject));
  const open = await openAlerts(trx, rule.name);
  const acknowledged = await acknowledgedAlerts(trx, rule.name);
  const opened = await raiseFiring(trx, rule, firing, acknowledgedBySubject(open, acknowledged), store, deps);
  const clearedIds = (alerts: SubjectAlert[]) =>
    alerts.filter((a) => !firing.has(a.subject) && !unknown.has(a.subject)).map((a) => a.id);
  const resolved = await resolveOpen(trx, clearedIds(open), store);
  for (const row of resolved) logResolved(deps.logger, row, 'condition cleared');
  await markConditionCleared(trx, clearedIds(acknowledged));
  return { opened, resolved: resolved.length };
}

interface SubjectAlert {
  id: string;
  subject: string;
}

/** A rule's alerts by id and subject, for the open and the acknowledged reads to narrow. */
const alertsOfRule = (trx: Transaction<Database>, rule: string) =>
  trx.selectFrom('alerts').select(['id', 'subject']).where('rule', '=', rule);

async function openAlerts(trx: Transaction<Database>, rule: string): Promise<SubjectAlert[]> {
  return alertsOfRule(trx, rule).where('resolved_at', 'is', null).execute();
}

// Resolved by hand while the condition held, and not seen clear since: acknowledged.
async function acknowledgedAlerts(trx: Transaction<Database>, rule: string): Promise<SubjectAlert[]> {
  return alertsOfRule(trx, rule)
    .where('resolved_by', 'is not', null)
    .where(sql<boolean>`not (details ? 'conditionClearedAt')`)
    .execute();
}

/** The acknowledged alert of each subject that has no open one (an open alert is the one a firing touches). */
function acknowledgedBySubject(open: SubjectAlert[], acknowledged: SubjectAlert[]): Map<string, string> {
  const openSubjects = new Set(open.map((a) => a.subject));
  const ackBySubject = new Map(acknowledged.map((a) => [a.subject, a.id]));
  return new Map([...ackBySubject].filter(([subject]) => !openSubjects.has(subject)));
}

/** Each firing subject refreshes its acknowledged alert or opens (or touches) its alert; the number newly opened. */
async function raiseFiring(
  trx: Transaction<Database>,
  rule: StateRule,
  firing: Map<string, Firing>,
  ackBySubject: Map<string, string>,
  store: StoreOptions,
  deps: EvaluateDeps,
): Promise<number> {
  let opened = 0;
  for (const [subject, f] of firing) {
    const ackId = ackBySubject.get(subject);
    if (ackId !== undefined) await refreshAcknowledged(trx, ackId, f, deps.settings.stateTouchEveryMs);
    else if (await openFiring(trx, rule, subject, f, store, deps)) opened += 1;
  }
  return opened;
}

async function refreshAcknowledged(
  trx: Transaction<Database>,
  ackId: string,
  f: Firing,
  touchEveryMs: number,
): Promise<void> {
  const message = cleanText(f.message);
  const details = JSON.stringify(cleanDetails(f.details));
  // As for an open alert (see openOrTouch): rewritten when its evidence changed or its last sighting got stale.
  await trx
    .updateTable('alerts')
    .set({ last_seen_at: sql`now()`, message, details })
    .where('id', '=', ackId)
    .where(
      sql<boolean>`(message is distinct from ${message} or details is distinct from ${details}::jsonb or last_seen_at <= now() - ${touchEveryMs} * interval '1 millisecond')`,
    )
    .execute();
}

/** True when the firing opened a new alert (rather than touching the open one). */
async function openFiring(
  trx: Transaction<Database>,
  rule: StateRule,
  subject: string,
  f: Firing,
  store: StoreOptions,
  deps: EvaluateDeps,
): Promise<boolean> {
  const alert = { rule: rule.name, subject, severity: rule.severity, message: f.message, details: f.details };
  const row = await openOrTouch(trx, alert, { ...store, unchangedTouchEveryMs: deps.settings.stateTouchEveryMs });
  if (row?.opened !== true) return false;
  // Not event "alert": that line is for alerts raised where something happened (tests count them per step).
  deps.logger[rule.severity === 'critical' ? 'error' : 'warn'](
    { ...f.details, event: 'alert_opened', alert: rule.name, subject, alertId: row.id },
    f.message,
  );
  return true;
}

async function markConditionCleared(trx: Transaction<Database>, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await trx
    .updateTable('alerts')
    .set({ details: sql`details || jsonb_build_object('conditionClearedAt', now())` })
    .where('id', 'in', ids)
    .execute();
}

/**
 * Event alerts not raised again within ALERT_EVENT_RESOLVE_AFTER. One statement that decides and resolves: a raiser
 * touching the alert meanwhile holds its row, and the statement then reads the new last_seen_at and leaves it open
 * (a select-then-resolve would resolve an alert raised a moment ago). Events are every rule that is not a state rule,
 * not only EVENT_RULES: an event rule someone forgot to list still resolves.
 */
async function resolveQuietEvents(
  trx: Transaction<Database>,
  rules: readonly StateRule[],
  deps: EvaluateDeps,
): Promise<AlertRow[]> {
  const stateRules = [...new Set([...STATE_RULES, ...rules].map((r) => r.name))];
  const resolved = await trx
    .updateTable('alerts')
    .set({ resolved_at: sql`now()` })
    .where('resolved_at', 'is', null)
    .where('rule', 'not in', stateRules)
    .where('last_seen_at', '<', sql<Date>`now() - ${deps.settings.eventResolveAfterMs} * interval '1 millisecond'`)
    .returningAll()
    .execute();
  for (const row of resolved) {
    if (deps.notify) await enqueueNotify(trx, row.id, 'resolved');
    logResolved(deps.logger, row, 'not raised again within ALERT_EVENT_RESOLVE_AFTER');
  }
  return resolved;
}

function logResolved(logger: Logger, row: AlertRow, why: string): void {
  logger.info(
    { event: 'alert_resolved', alert: row.rule, subject: row.subject, alertId: row.id, why },
    'alert resolved',
  );
}
