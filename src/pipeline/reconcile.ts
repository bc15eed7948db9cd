/**
 * The reconciler (cron `reconcile`, every RECONCILE_INTERVAL): finds every conversion, payout and on-chain transfer
 * past its state's deadline with no job that will move it on (see reconcile-rules.ts), and drives it on by
 * re-queuing its stage's own job under the stage's own key, or sends it to review with the reason once resuming
 * has had its chance. What really happened is asked of ChangeNow and the chain by those stage jobs, which already
 * look before they act: a conversion or payout left in exchange_requested lists ChangeNow's exchanges by its id
 * (userId) and adopts the one it finds, so an exchange whose creation was never recorded is found, never made twice.
 *
 * Running it any number of times, concurrently, changes nothing more than running it once: one pass at a time holds
 * an advisory lock (another pass finding it held does nothing), each item is decided under its row lock with its jobs
 * looked up again there, and the jobs it queues carry the stage's key (a live job of that key is never doubled).
 */
import type { Logger } from '../log.ts';
import type { StageDeps } from './interfaces.ts';
import { findPastDeadline, keysOf, liveKeys, lockItem, resume, review, type ItemRow } from './reconcile-items.ts';
import { DEADLINES, decide, reconcileSettings, type DeadlineRule, type ItemKind, type ReconcileSettings, type ResumeAction } from './reconcile-rules.ts';
import { RunLocked, withRunLock } from './run-lock.ts';

/** Items looked at per state per pass: a backlog larger than this is worked through by the next passes. */
const PER_STATE_LIMIT = 200;
const PASS_LOCK = 'reconcile:pass';

export interface ReconcileActionRecord {
  kind: ItemKind;
  id: string;
  state: string;
  action: ResumeAction | 'review';
  reason: string;
  /** For a review: what went to review (a transfer's owner). */
  reviewed?: { kind: 'conversion' | 'payout'; id: string };
}

export interface ReconcileSummary {
  /** False when another pass held the lock: this one looked at nothing. */
  ran: boolean;
  /** Items past their state's deadline. */
  examined: number;
  /** Of those, with a live job: left alone. */
  alive: number;
  /** Moved on, or held by a running stage, between the look and the row lock: left alone. */
  moved: number;
  resumed: number;
  reviewed: number;
  actions: ReconcileActionRecord[];
}

function emptySummary(ran: boolean): ReconcileSummary {
  return { ran, examined: 0, alive: 0, moved: 0, resumed: 0, reviewed: 0, actions: [] };
}

export async function reconcile(deps: StageDeps, overrides: Partial<ReconcileSettings> = {}): Promise<ReconcileSummary> {
  const settings = reconcileSettings(deps.settings, overrides);
  try {
    return await withRunLock(deps.db, PASS_LOCK, () => pass(deps, settings));
  } catch (error) {
    if (!(error instanceof RunLocked)) throw error;
    deps.logger.info({ event: 'reconcile_skipped' }, 'another reconcile pass is running');
    return emptySummary(false);
  }
}

async function pass(deps: StageDeps, settings: ReconcileSettings): Promise<ReconcileSummary> {
  const summary = emptySummary(true);
  for (const rule of DEADLINES) {
    const items = await findPastDeadline(deps.db, rule, settings, PER_STATE_LIMIT);
    summary.examined += items.length;
    const live = await liveKeys(deps.db, items.flatMap((item) => keysOf(rule, item)));
    for (const item of items) {
      if (keysOf(rule, item).some((key) => live.has(key))) {
        summary.alive++;
        continue;
      }
      const outcome = await decideItem(deps, settings, rule, item.id);
      if (outcome === 'alive') summary.alive++;
      else if (outcome === 'moved') summary.moved++;
      else {
        summary.actions.push(outcome);
        if (outcome.action === 'review') summary.reviewed++;
        else summary.resumed++;
        logAction(deps.logger, outcome);
      }
    }
  }
  const { actions, ...counts } = summary;
  if (actions.length > 0) deps.logger.info({ event: 'reconcile_pass', ...counts }, 'reconcile pass drove stuck items on');
  else deps.logger.debug({ event: 'reconcile_pass', ...counts }, 'reconcile pass: nothing stuck');
  return summary;
}

/** One item, decided under its row lock: its state and its jobs are read again there, so a stage that moved it wins. */
async function decideItem(deps: StageDeps, settings: ReconcileSettings, rule: DeadlineRule, id: string): Promise<ReconcileActionRecord | 'alive' | 'moved'> {
  return deps.db.transaction().execute(async (trx) => {
    const item: ItemRow | null = await lockItem(trx, rule, settings, id);
    if (item === null) return 'moved';
    if ((await liveKeys(trx, keysOf(rule, item))).size > 0) return 'alive';
    const decision = decide(item, item.now, settings);
    const record = { kind: rule.kind, id, state: item.state, reason: decision.reason };
    if (decision.do === 'resume') {
      await resume(trx, rule, item);
      return { ...record, action: rule.action };
    }
    return { ...record, action: 'review' as const, reviewed: await review(deps, trx, rule, item, decision.reason) };
  });
}

function logAction(logger: Logger, record: ReconcileActionRecord): void {
  const fields = { event: 'reconcile_action', kind: record.kind, id: record.id, state: record.state, action: record.action, reason: record.reason, ...(record.reviewed && { reviewed: record.reviewed }) };
  if (record.action === 'review') logger.warn(fields, 'reconciler sent a stuck item to review');
  else logger.info(fields, 'reconciler resumed a stuck item');
}
