/**
 * The reconciler (cron `reconcile`, every RECONCILE_INTERVAL): finds every conversion, payout and on-chain transfer
 * past its state's deadline with no job that will move it on (see rules.ts), and drives it on by
 * re-queuing its stage's own job under the stage's own key. Once resuming has had its chance it gives up as the
 * item's rule says: a conversion whose ETH never left is released (its payments back to pending), a conversion or
 * payout whose money may have left goes to review with the reason, and a transfer is never given up (its job is
 * queued again at every pass, with a transfer_stuck alert). What really happened is asked of ChangeNow and the chain
 * by those stage jobs, which already look before they act: a conversion or payout left in exchange_requested lists
 * ChangeNow's exchanges by its id (userId) and adopts the one it finds, so an exchange whose creation was never
 * recorded is found, never made twice.
 *
 * Running it any number of times, concurrently, changes nothing more than running it once: one pass at a time holds
 * an advisory lock (another pass finding it held does nothing), each item is decided under its row lock with its jobs
 * looked up again there, and the jobs it queues carry the stage's key (a live job of that key is never doubled).
 * An item that fails is alerted and skipped: the others of the pass, and later passes, go on.
 */
import type { Logger } from '../../log.ts';
import { stageAlert } from '../alert.ts';
import type { StageDeps } from '../interfaces.ts';
import {
  findPastDeadline,
  keysOf,
  lockItem,
  releaseOrReview,
  resume,
  resumeStuckTransfer,
  review,
  type ItemRow,
} from './items.ts';
import {
  DEADLINES,
  decide,
  reconcileSettings,
  type DeadlineRule,
  type ItemKind,
  type ReconcileSettings,
  type ResumeAction,
} from './rules.ts';
import { reopenInstantPayouts } from './instant.ts';
import { RunLocked, withRunLock } from '../run-lock.ts';
import { liveJobKeys } from '../../jobs/index.ts';

const PASS_LOCK = 'reconcile:pass';

export interface ReconcileActionRecord {
  kind: ItemKind;
  id: string;
  state: string;
  /** A resume (the stage's job queued again), or what giving up did: review, or release (a conversion whose ETH never left). */
  action: ResumeAction | 'review' | 'release';
  reason: string;
  /** A transfer resumed past its limits: the alert raised with it. */
  alert?: 'transfer_stuck';
}

export interface ReconcileSummary {
  /** False when another pass held the lock: this one looked at nothing. */
  ran: boolean;
  /** Items past their state's deadline with no live job (at most the per-state limit of each state). */
  examined: number;
  /** Of those, with a job alive again by the time of the row lock: left alone. */
  alive: number;
  /** Moved on, or held by a running stage, between the look and the row lock: left alone. */
  moved: number;
  resumed: number;
  reviewed: number;
  released: number;
  /** Items whose decision failed (alerted as reconcile_item_failed); the pass went on with the next. */
  failed: number;
  /** Credited instant payments whose payout was never opened and whose job was lost: payout_instant queued again. */
  reopened: string[];
  actions: ReconcileActionRecord[];
}

function emptySummary(ran: boolean): ReconcileSummary {
  return {
    ran,
    examined: 0,
    alive: 0,
    moved: 0,
    resumed: 0,
    reviewed: 0,
    released: 0,
    failed: 0,
    reopened: [],
    actions: [],
  };
}

export async function reconcile(
  deps: StageDeps,
  overrides: Partial<ReconcileSettings> = {},
): Promise<ReconcileSummary> {
  const settings = reconcileSettings(deps.settings, overrides);
  try {
    return await withRunLock(deps.runLocks, PASS_LOCK, () => pass(deps, settings));
  } catch (error) {
    if (!(error instanceof RunLocked)) throw error;
    deps.logger.info({ event: 'reconcile_skipped' }, 'another reconcile pass is running');
    return emptySummary(false);
  }
}

async function pass(deps: StageDeps, settings: ReconcileSettings): Promise<ReconcileSummary> {
  const summary = emptySummary(true);
  for (const rule of DEADLINES) {
    const items = await findPastDeadline(deps.db, rule, settings);
    summary.examined += items.length;
    for (const item of items) {
      let outcome: Awaited<ReturnType<typeof decideItem>>;
      try {
        outcome = await decideItem(deps, settings, rule, item.id);
      } catch (error) {
        // One item's failure (a row its stage cannot take, say) must not stop the pass at it, at every pass.
        summary.failed++;
        await itemFailed(deps, rule, item, error);
        continue;
      }
      if (outcome === 'alive') summary.alive++;
      else if (outcome === 'moved') summary.moved++;
      else {
        summary.actions.push(outcome);
        if (outcome.action === 'review') summary.reviewed++;
        else if (outcome.action === 'release') summary.released++;
        else summary.resumed++;
        logAction(deps.logger, outcome);
      }
    }
  }
  summary.reopened = await reopenInstantPayouts(deps.db, {
    stuckAfterMs: settings.stepMs,
    limit: settings.perStateLimit,
  });
  for (const paymentId of summary.reopened) {
    deps.logger.warn(
      {
        event: 'reconcile_action',
        kind: 'payment',
        id: paymentId,
        state: 'credited',
        action: 'reopen_instant_payout',
        reason: 'credited instant payment with no payout and no live payout_instant job',
      },
      'reconciler queued a lost instant payout again',
    );
  }
  const { actions, reopened, ...counts } = summary;
  if (actions.length > 0 || reopened.length > 0 || summary.failed > 0)
    deps.logger.info(
      { event: 'reconcile_pass', ...counts, reopened: reopened.length },
      'reconcile pass drove stuck items on',
    );
  else deps.logger.debug({ event: 'reconcile_pass', ...counts, reopened: 0 }, 'reconcile pass: nothing stuck');
  return summary;
}

/** One item, decided under its row lock: its state and its jobs are read again there, so a stage that moved it wins. */
async function decideItem(
  deps: StageDeps,
  settings: ReconcileSettings,
  rule: DeadlineRule,
  id: string,
): Promise<ReconcileActionRecord | 'alive' | 'moved'> {
  return deps.db.transaction().execute(async (trx) => {
    const item: ItemRow | null = await lockItem(trx, rule, settings, id);
    if (item === null) return 'moved';
    if ((await liveJobKeys(trx, keysOf(rule, item))).size > 0) return 'alive';
    const decision = decide(item, item.now, settings);
    const record = { kind: rule.kind, id, state: item.state, reason: decision.reason };
    if (decision.do === 'resume') {
      await resume(trx, rule, item);
      return { ...record, action: rule.action };
    }
    if (rule.giveUp === 'keep_resuming') {
      await resumeStuckTransfer(deps, trx, rule, item, decision.reason);
      return { ...record, action: rule.action, alert: 'transfer_stuck' as const };
    }
    if (rule.giveUp === 'release_or_review')
      return { ...record, action: await releaseOrReview(deps, trx, rule, item, decision.reason) };
    await review(deps, trx, rule, item, decision.reason);
    return { ...record, action: 'review' as const };
  });
}

async function itemFailed(deps: StageDeps, rule: DeadlineRule, item: ItemRow, error: unknown): Promise<void> {
  const err = error instanceof Error ? error.message : String(error);
  deps.logger.error(
    { event: 'reconcile_item_failed', kind: rule.kind, id: item.id, state: rule.state, err },
    'reconciler could not decide an item; going on with the next',
  );
  // On the pool, outside the item's rolled-back transaction; a failure to store it is logged, never thrown.
  await stageAlert(deps, deps.logger, {
    rule: 'reconcile_item_failed',
    subject: `${rule.kind}:${item.id}`,
    severity: 'critical',
    message: `the reconciler failed on a ${rule.kind} in ${rule.state}; it tries again at the next pass`,
    details: { kind: rule.kind, id: item.id, state: rule.state, err },
  });
}

function logAction(logger: Logger, record: ReconcileActionRecord): void {
  const fields = {
    event: 'reconcile_action',
    kind: record.kind,
    id: record.id,
    state: record.state,
    action: record.action,
    reason: record.reason,
    ...(record.alert && { alert: record.alert }),
  };
  if (record.action === 'review' || record.action === 'release' || record.alert)
    logger.warn(fields, 'reconciler gave up resuming a stuck item');
  else logger.info(fields, 'reconciler resumed a stuck item');
}
