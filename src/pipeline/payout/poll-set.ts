/**
 * Polling in sets. Each sent payout's exchange is followed by a payout_poll job of its own: its fetch, a read, one
 * ChangeNow status, a transaction and its commit, the job's completion. A confirm set (transfer/confirm-set.ts) marks
 * many payouts sent at once, and queues their polls due together; when one of them completes its payout, the others
 * wait in the queue behind it. That run now asks ChangeNow for theirs too (POLLS_AT_ONCE at a time) and completes
 * those finished as asked in one transaction, their jobs removed in the same commit.
 *
 * A companion keeps every guarantee of its own poll: its status is read after the companion was read sent, judged as
 * its poll judges it (finished.ts), and booked under its row lock, still sent with the same exchange. Only the plain
 * case is taken: an instant payout (a threshold batch's completion queues its channel's threshold_check, which a set
 * must not lock, as in confirm sets) whose exchange finished as asked. Any other answer, a failed call, or a failed
 * set is left to the companion's own job, which asks again and handles it as before.
 *
 * The completions are booked as one ledger group (src/ledger/group.ts): their balance rows locked once, in id order.
 */
import type { ExchangeStatus } from '../../integrations/changenow/index.ts';
import { queuedKeysOf, removeJobs } from '../../jobs/index.ts';
import { accounts, inLedgerGroup } from '../../ledger/index.ts';
import type { StageDeps } from '../interfaces.ts';
import { RunLocked, withRunLock } from '../run-lock.ts';
import { judgeFinish } from './finished.ts';
import { completeIn, type Payout } from './run.ts';

/** The most companions one run polls besides its own. */
export const POLL_SET_MAX = 32;

/** ChangeNow status reads at once. */
const POLLS_AT_ONCE = 4;

const JOB_KEY_PREFIX = 'payout_poll:';

interface Finished {
  readonly payout: Payout;
  readonly status: ExchangeStatus;
  readonly amountOut: string;
}

/**
 * Polls the other sent instant payouts whose payout_poll jobs wait in the queue, due now, and completes those whose
 * exchange finished as asked. Never fails its caller: a companion left out is polled by its own job. One run at a
 * time gathers companions; another run meanwhile polls only its own payout.
 */
export async function pollCompanions(deps: StageDeps, own: Pick<Payout, 'payout_id'>): Promise<void> {
  try {
    await withRunLock(deps.runLocks, 'payout_poll_set', () => pollSet(deps, own));
  } catch (error) {
    if (error instanceof RunLocked) return;
    deps.logger.warn(
      { event: 'payout_poll_set_failed', err: error },
      'polling the other sent payouts together failed: each is polled by its own job',
    );
  }
}

async function pollSet(deps: StageDeps, own: Pick<Payout, 'payout_id'>): Promise<void> {
  const keys = await queuedKeysOf(deps.db, 'payout_poll', POLL_SET_MAX);
  const ids = keys
    .filter((k) => k.startsWith(JOB_KEY_PREFIX))
    .map((k) => k.slice(JOB_KEY_PREFIX.length))
    .filter((id) => id !== own.payout_id);
  if (ids.length === 0) return;
  const candidates = await deps.db
    .selectFrom('payouts')
    .selectAll()
    .where('payout_id', 'in', ids)
    .where('status', '=', 'sent')
    .where('kind', '=', 'instant')
    .where('exchange_id', 'is not', null)
    .orderBy('payout_id')
    .execute();
  const finished: Finished[] = [];
  for (let i = 0; i < candidates.length; i += POLLS_AT_ONCE) {
    const read = await Promise.allSettled(
      candidates.slice(i, i + POLLS_AT_ONCE).map((p) => deps.exchange.getExchange(p.exchange_id as string)),
    );
    // A failed read: ChangeNow is each job's to wait out, with its own attempts and deadline.
    if (read.some((r) => r.status === 'rejected')) break;
    read.forEach((r, j) => {
      const payout = candidates[i + j] as Payout;
      if (r.status !== 'fulfilled' || r.value.status !== 'finished' || r.value.id !== payout.exchange_id) return;
      const finish = judgeFinish(deps, payout, r.value);
      if (finish.to === 'completed') finished.push({ payout, status: r.value, amountOut: finish.amountOut });
    });
  }
  if (finished.length === 0) return;
  const booked = await complete(deps, finished);
  for (const f of booked)
    deps.logger.info(
      {
        event: 'payout_completed',
        payoutId: f.payout.payout_id,
        exchangeId: f.payout.exchange_id,
        amountOut: f.amountOut,
        currency: f.payout.payout_currency,
        payoutHash: f.status.payoutHash,
        completedWith: own.payout_id,
      },
      'payout completed',
    );
}

/** The completions, under the payouts' row locks, as one ledger group; their poll jobs removed in the same commit. */
async function complete(deps: StageDeps, finished: readonly Finished[]): Promise<Finished[]> {
  const byId = new Map(finished.map((f) => [f.payout.payout_id, f] as const));
  return deps.db.transaction().execute(async (trx) => {
    const locked = await trx
      .selectFrom('payouts')
      .selectAll()
      .where('payout_id', 'in', [...byId.keys()])
      .orderBy('payout_id')
      .forUpdate()
      .execute();
    const done: Finished[] = [];
    await inLedgerGroup(trx, async () => {
      for (const current of locked) {
        const f = byId.get(current.payout_id) as Finished;
        // Moved on since it was read (its own poll, a person's action): left to its own job.
        if (current.status !== 'sent' || current.exchange_id !== f.payout.exchange_id) continue;
        await completeIn(trx, current, {
          amountOut: f.amountOut,
          payoutHash: f.status.payoutHash,
          counterparty: accounts.changenow(current.asset),
        });
        done.push(f);
      }
    });
    await removeJobs(
      trx,
      done.map((f) => `${JOB_KEY_PREFIX}${f.payout.payout_id}`),
    );
    return done;
  });
}
