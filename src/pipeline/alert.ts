import { sql, type Kysely } from 'kysely';
import { raiseAlert, type AlertInput } from '../alerts/index.ts';
import type { ConversionState, Database, PayoutStatus } from '../db/index.ts';
import type { Logger } from '../log.ts';
import type { StageDeps } from './interfaces.ts';

/** What raising an alert needs of a stage: the pool (when no transaction is given) and whether to notify. */
type AlertDeps = Pick<StageDeps, 'db' | 'notifyAlerts'>;

/**
 * An event alert raised by a stage: the same log line as before (through the stage's logger, with its bound ids),
 * stored, and sent to the webhook when one is configured. In `db` when given (the caller's transaction).
 */
export function stageAlert(
  deps: AlertDeps,
  logger: Logger,
  alert: AlertInput,
  db: Kysely<Database> = deps.db,
  options: { logged?: boolean } = {},
): Promise<void> {
  return raiseAlert(db, alert, { logger, notify: deps.notifyAlerts === true, ...options });
}

/** The records a stage hands to a person through their status, with the states each may be in. */
interface ReviewedStates {
  conversions: ConversionState;
  payouts: PayoutStatus;
}
const REVIEWED_KEY = { conversions: 'conversion_id', payouts: 'payout_id' } as const;

/** A record to needs_review, only from `from`: the states a stage still works on, never a final one. */
export type StatusReview = {
  [T in keyof ReviewedStates]: { table: T; id: string; from: readonly ReviewedStates[T][]; reason: string };
}[keyof ReviewedStates];

/** How a person hears of a record sent to review. */
export type ReviewNotice =
  /** An event alert: logged, stored and sent, in the move's transaction. */
  | { logger: Logger; alert: AlertInput }
  /** The log line only: a state rule stores the alert from the record's state itself (payout_needs_review). */
  | { logger: Logger; line: Record<string, unknown>; message: string }
  /** Nobody here: the caller tells a person its own way. */
  | null;

export interface Review {
  /** A status move, or the caller's own guarded update: true when the record moved. */
  move: StatusReview | ((db: Kysely<Database>) => Promise<boolean>);
  /** What goes with the move. */
  also?: (db: Kysely<Database>) => Promise<unknown>;
  notice: ReviewNotice;
}

/**
 * Hands a record to a person and tells them: both or neither. When the record was no longer in a state it may leave,
 * nothing else is written and nobody is told, so a stale run (a reaped worker still alive) neither raises an alert for
 * a record another run moved on nor replaces the reason a person is reading. Everything in `db`: the caller passes
 * its transaction when the move, what goes with it and the stored alert must commit together. True when it moved.
 */
export async function reviewWithAlert(deps: AlertDeps, db: Kysely<Database>, review: Review): Promise<boolean> {
  const moved = typeof review.move === 'function' ? await review.move(db) : await moveStatus(db, review.move);
  if (!moved) return false;
  if (review.also) await review.also(db);
  const notice = review.notice;
  if (notice === null) return true;
  if ('alert' in notice) await stageAlert(deps, notice.logger, notice.alert, db);
  else notice.logger.error({ event: 'alert', ...notice.line }, notice.message);
  return true;
}

async function moveStatus(db: Kysely<Database>, review: StatusReview): Promise<boolean> {
  const key = REVIEWED_KEY[review.table];
  const moved = await db
    .updateTable(review.table)
    .set({ status: 'needs_review', reason: review.reason, updated_at: sql`now()` })
    .where(key, '=', review.id)
    .where('status', 'in', review.from)
    .returning(key)
    .executeTakeFirst();
  return moved !== undefined;
}
