/**
 * What the reconciler calls stuck, in one table. An item is looked at once it has sat in a non-final state longer
 * than its state's deadline; it is stuck only if, on top of that, no job will move it on (no queued or running job
 * under the keys its stage uses; a job out of attempts counts as none). Every state change commits with the job that
 * follows it, so an item whose job is alive is merely slow, never stuck.
 *
 * Resuming has a budget (reconcile_attempts): per state for conversions and transfers, whose stages start it over
 * whenever they move the item to another state; for a payout, until a person retries it. What happens once it is spent depends on where the money is (`giveUp`): a transfer is never given up (its
 * transaction may be in flight or mined, and its owner can only learn that through it); a conversion whose ETH never
 * left releases its payments; anything else goes to a person.
 *
 * States not in the table are not the reconciler's: final ones (completed, failed, cancelled), the ones a person
 * moves on (a payout awaiting approval, anything in needs_review), and the ones whose transfer moves them on (a
 * conversion or payout in exchange_created, a direct payout sent): their transfer is the item looked at.
 */
import type { ConversionSettings } from '../interfaces.ts';

export type ItemKind = 'conversion' | 'payout' | 'transfer';

/** What a resume asks of the stage (the job it queues, under the stage's own key). */
export type ResumeAction =
  /** conversion_exchange: ask ChangeNow for the conversion's exchange. */
  | 'resume_exchange'
  /** conversion_exchange / payout_run from exchange_requested: list ChangeNow's exchanges by the item's id (userId) and adopt the one found before creating any. */
  | 'find_exchange'
  /** payout_run: approval check, estimate, exchange or direct transfer. */
  | 'resume_run'
  /** conversion_poll / payout_poll: ask ChangeNow how the exchange ended (the poll settles, or goes to review by its own deadline). */
  | 'repoll'
  /** transfer_send: sign once, broadcast the same bytes. */
  | 'resend'
  /** transfer_confirm: look the receipt up on chain. */
  | 'reconfirm';

export interface ReconcileSettings {
  /**
   * A stage job's own time: a worker picking it up, one outside call bounded by ChangeNow's timeouts or a 15 s receipt
   * wait, and the commit of its answer. An item unchanged for longer than this past the time its next step was due is
   * worth a look.
   */
  stepMs: number;
  /** CONVERSION_POLL_INTERVAL: a sent conversion's or payout's next poll is due this long after the last. */
  pollIntervalMs: number;
  /** TRANSFER_CONFIRM_DEADLINE: a broadcast transfer not mined by then is past its final deadline. */
  transferConfirmDeadlineMs: number;
  /** Resumes by the reconciler in one state after which an item still stuck is given up on: its stage keeps dying. */
  maxResumes: number;
  /**
   * Candidates looked at per state per pass (the oldest first, only those with no live job): a larger backlog is
   * worked through by the next passes.
   */
  perStateLimit: number;
}

export const DEFAULT_STEP_MS = 60_000;
export const DEFAULT_MAX_RESUMES = 3;
export const DEFAULT_PER_STATE_LIMIT = 200;

export function reconcileSettings(
  stage: ConversionSettings,
  overrides: Partial<ReconcileSettings> = {},
): ReconcileSettings {
  return {
    stepMs: DEFAULT_STEP_MS,
    pollIntervalMs: stage.pollIntervalMs,
    transferConfirmDeadlineMs: stage.transferConfirmDeadlineMs,
    maxResumes: DEFAULT_MAX_RESUMES,
    perStateLimit: DEFAULT_PER_STATE_LIMIT,
    ...overrides,
  };
}

export interface DeadlineRule {
  kind: ItemKind;
  state: string;
  /** Where the item's time in this state starts: its last recorded change, or the end of its hold. */
  since: 'updated_at' | 'hold_until';
  /** How long after `since` a job-less item counts as stuck. */
  stuckAfterMs(settings: ReconcileSettings): number;
  /**
   * Its final deadline, if its state has one. Past it the item gets one last look by its stage (which may settle it,
   * or send it to review with its own reason); still stuck at a later pass, the reconciler sends it to review.
   */
  finalDeadline: 'poll_deadline_at' | 'broadcast_at + TRANSFER_CONFIRM_DEADLINE' | null;
  action: ResumeAction;
  /** Once resuming has had its chance. */
  giveUp: GiveUp;
}

export type GiveUp =
  /** To review through the stage's review path: the money may have left, a person finds out where it went. */
  | 'review'
  /**
   * A conversion before its transfer: with no transfer (or only a failed one) its ETH is provably still on the host
   * wallet, so it ends failed and its payments go back to pending, held like after a ChangeNow refusal. With one, review.
   */
  | 'release_or_review'
  /**
   * A transfer: its job is queued again at every pass, with a transfer_stuck alert. Review would be a dead end: its
   * owner cannot be retried, cancelled or resolved while the transfer is open, a transaction mined later would never
   * be recorded, and a transfer left signed blocks every later transfer of its wallet. Its stage jobs only ask the
   * chain about the stored hash and re-send the same bytes, so queuing them again is always safe.
   */
  | 'keep_resuming';

const step = (s: ReconcileSettings) => s.stepMs;
const pollThenStep = (s: ReconcileSettings) => s.pollIntervalMs + s.stepMs;

/** The deadline table: one row per state the reconciler drives on. */
export const DEADLINES: readonly DeadlineRule[] = [
  {
    kind: 'conversion',
    state: 'pending',
    since: 'updated_at',
    stuckAfterMs: step,
    finalDeadline: null,
    action: 'resume_exchange',
    giveUp: 'release_or_review',
  },
  {
    kind: 'conversion',
    state: 'exchange_requested',
    since: 'updated_at',
    stuckAfterMs: step,
    finalDeadline: null,
    action: 'find_exchange',
    giveUp: 'release_or_review',
  },
  {
    kind: 'conversion',
    state: 'sent',
    since: 'updated_at',
    stuckAfterMs: pollThenStep,
    finalDeadline: 'poll_deadline_at',
    action: 'repoll',
    giveUp: 'review',
  },
  {
    kind: 'payout',
    state: 'pending',
    since: 'updated_at',
    stuckAfterMs: step,
    finalDeadline: null,
    action: 'resume_run',
    giveUp: 'review',
  },
  {
    kind: 'payout',
    state: 'held',
    since: 'hold_until',
    stuckAfterMs: step,
    finalDeadline: null,
    action: 'resume_run',
    giveUp: 'review',
  },
  {
    kind: 'payout',
    state: 'exchange_requested',
    since: 'updated_at',
    stuckAfterMs: step,
    finalDeadline: null,
    action: 'find_exchange',
    giveUp: 'review',
  },
  // With an exchange only: a direct payout's `sent` waits for its transfer, which is looked at below.
  {
    kind: 'payout',
    state: 'sent',
    since: 'updated_at',
    stuckAfterMs: pollThenStep,
    finalDeadline: 'poll_deadline_at',
    action: 'repoll',
    giveUp: 'review',
  },
  // Transfers whose owner is waiting for them (a conversion or payout in exchange_created, a direct payout sent).
  // intent and signed share their rule, yet keep a row each: the table is read, and documented, one state a row.
  {
    kind: 'transfer',
    state: 'intent',
    since: 'updated_at',
    stuckAfterMs: step,
    finalDeadline: null,
    action: 'resend',
    giveUp: 'keep_resuming',
  },
  {
    kind: 'transfer',
    state: 'signed',
    since: 'updated_at',
    stuckAfterMs: step,
    finalDeadline: null,
    action: 'resend',
    giveUp: 'keep_resuming',
  },
  {
    kind: 'transfer',
    state: 'broadcast',
    since: 'updated_at',
    stuckAfterMs: step,
    finalDeadline: 'broadcast_at + TRANSFER_CONFIRM_DEADLINE',
    action: 'reconfirm',
    giveUp: 'keep_resuming',
  },
];

/** A job key of the stages: `task:` followed by the item's id, or by its payment's id. */
export interface JobKeySource {
  task: string;
  of: 'id' | 'payment_id';
}

/**
 * The jobs that move an item on from its state (the keys its stages queue under). One list for both uses: the pass's
 * query leaves out items with such a job alive, and the re-check under the row lock looks them up again.
 */
export function jobKeySources(kind: ItemKind, state: string): JobKeySource[] {
  if (kind === 'conversion') return [{ task: state === 'sent' ? 'conversion_poll' : 'conversion_exchange', of: 'id' }];
  if (kind === 'payout') {
    if (state === 'sent') return [{ task: 'payout_poll', of: 'id' }];
    // An instant payout is opened and first run inside its payment's payout_instant job.
    return [
      { task: 'payout_run', of: 'id' },
      { task: 'payout_instant', of: 'payment_id' },
    ];
  }
  return [{ task: state === 'broadcast' ? 'transfer_confirm' : 'transfer_send', of: 'id' }];
}

export function jobKeysFor(kind: ItemKind, state: string, id: string, paymentId: string | null): string[] {
  return jobKeySources(kind, state).flatMap(({ task, of }) => {
    const value = of === 'id' ? id : paymentId;
    return value === null ? [] : [`${task}:${value}`];
  });
}

export type Decision = { do: 'resume'; reason: string } | { do: 'give_up'; reason: string };

export interface StuckItem {
  state: string;
  resumes: number;
  reconciledAt: Date | null;
  finalAt: Date | null;
  idleSeconds: string;
}

/**
 * Resume, or give up once resuming has had its chance (what giving up does is the rule's `giveUp`): the stage keeps
 * dying (resumes in this state used up), or the item is past its final deadline and the last look the reconciler gave
 * it after that deadline did not move it on.
 */
export function decide(item: StuckItem, now: Date, settings: ReconcileSettings): Decision {
  const noJob = `no job moves it on (unchanged in ${item.state} for ${item.idleSeconds} s)`;
  if (item.resumes >= settings.maxResumes) {
    return {
      do: 'give_up',
      reason: `stuck in ${item.state}: ${noJob} after ${item.resumes} resumes by the reconciler`,
    };
  }
  if (item.finalAt !== null && now.getTime() > item.finalAt.getTime()) {
    if (item.reconciledAt !== null && item.reconciledAt.getTime() > item.finalAt.getTime()) {
      return {
        do: 'give_up',
        reason: `stuck in ${item.state} past its final deadline ${item.finalAt.toISOString()}: ${noJob} after the reconciler's last look`,
      };
    }
    return {
      do: 'resume',
      reason: `past its final deadline ${item.finalAt.toISOString()} and ${noJob}: one last look by its stage`,
    };
  }
  return { do: 'resume', reason: noJob };
}
