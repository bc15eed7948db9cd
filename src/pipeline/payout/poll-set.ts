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
 * set is left to the companion's own job, which asks again and handles it as before. While the set reads, the
 * companions' jobs are pushed back (a job a worker already holds is not taken), so that no worker polls one at the
 * same time; those the set does not complete are due again at its commit.
 *
 * The completions are booked as one ledger group (src/ledger/group.ts): their balance rows locked once, in id order.
 */
import { sql } from 'kysely';
import type { ExchangeStatus } from '../../integrations/changenow/index.ts';
import { holdDueJobs, releaseHeldJobs, removeJobs, type HeldJobs } from '../../jobs/index.ts';
import { accounts, inLedgerGroup } from '../../ledger/index.ts';
import { CallGroups } from '../call-groups.ts';
import type { StageDeps } from '../interfaces.ts';
import { RunLocked, withRunLock } from '../run-lock.ts';
import { judgeFinish } from './finished.ts';
import { completeIn, type Payout } from './run.ts';

/** The most companions one run polls besides its own. */
export const POLL_SET_MAX = 32;

/** ChangeNow status reads at once. */
const POLLS_AT_ONCE = 4;

/** No group of reads starts once the set has spent this long. */
const POLL_BUDGET_MS = 10_000;

/** How far the candidates' jobs are pushed back while the set reads: well past its budget and one more group. */
const POLL_HOLD_MS = 60_000;

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
  const { payouts: candidates, held } = await takeCandidates(deps, own.payout_id);
  if (held.keys.length === 0) return;
  try {
    await readAndComplete(deps, own, candidates, held);
  } catch (error) {
    // Their jobs due again at once, as if the set had not taken them (best effort: else they run when the hold ends).
    await releaseHeldJobs(deps.db, held, held.keys).catch(() => undefined);
    throw error;
  }
}

async function readAndComplete(
  deps: StageDeps,
  own: Pick<Payout, 'payout_id'>,
  candidates: readonly Payout[],
  held: HeldJobs,
): Promise<void> {
  const calls = new CallGroups({
    atOnce: POLLS_AT_ONCE,
    budgetMs: POLL_BUDGET_MS,
    logger: deps.logger,
    stopped: {
      event: 'payout_poll_set_stopped',
      message:
        'the set stopped reading statuses (a read failed, or its time is spent): each payout left is polled by its own job',
    },
    fields: (p: Payout) => ({ payoutId: p.payout_id }),
  });
  const read = await calls.each(candidates, async (payout) => ({
    payout,
    status: await deps.exchange.getExchange(payout.exchange_id as string),
  }));
  const finished: Finished[] = [];
  for (const { payout, status } of read) {
    if (status.status !== 'finished') continue;
    try {
      const finish = judgeFinish(deps, payout, status);
      if (finish.to === 'completed') finished.push({ payout, status, amountOut: finish.amountOut });
    } catch {
      // An answer the judgement cannot read: its own poll reads it again, and reports it.
    }
  }
  const booked = await complete(deps, finished, held);
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

/**
 * The sent instant payouts whose poll jobs wait, due now and never tried, oldest first, with those jobs held (pushed
 * back by POLL_HOLD_MS): no worker takes one while the set reads. A job a worker holds is not taken, nor its payout.
 */
async function takeCandidates(deps: StageDeps, ownId: string): Promise<{ payouts: Payout[]; held: HeldJobs }> {
  const { rows } = await sql<{ key: string }>`
    select j.key from graphile_worker.jobs j
    join payouts p on j.key = ${JOB_KEY_PREFIX} || p.payout_id
    where j.task_identifier = 'payout_poll' and j.locked_at is null and j.attempts = 0 and j.run_at <= now()
      and p.status = 'sent' and p.kind = 'instant' and p.exchange_id is not null and p.payout_id <> ${ownId}
    order by j.priority, j.run_at, j.id
    limit ${POLL_SET_MAX}`.execute(deps.db);
  const held = await holdDueJobs(
    deps.db,
    rows.map((r) => r.key),
    POLL_HOLD_MS,
  );
  if (held.keys.length === 0) return { payouts: [], held };
  const payouts = await deps.db
    .selectFrom('payouts')
    .selectAll()
    .where(
      'payout_id',
      'in',
      held.keys.map((k) => k.slice(JOB_KEY_PREFIX.length)),
    )
    .orderBy('payout_id')
    .execute();
  return { payouts, held };
}

/**
 * The completions, under the payouts' row locks, as one ledger group; their poll jobs removed in the same commit, and
 * the jobs of the candidates left due again at once.
 */
async function complete(deps: StageDeps, finished: readonly Finished[], held: HeldJobs): Promise<Finished[]> {
  const byId = new Map(finished.map((f) => [f.payout.payout_id, f] as const));
  return deps.db.transaction().execute(async (trx) => {
    if (byId.size === 0) {
      await releaseHeldJobs(trx, held, held.keys);
      return [];
    }
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
        const moved = await completeIn(trx, current, {
          amountOut: f.amountOut,
          payoutHash: f.status.payoutHash,
          counterparty: accounts.changenow(current.asset),
        });
        if (moved) done.push(f);
      }
    });
    await removeJobs(
      trx,
      done.map((f) => keyOf(f.payout)),
    );
    const completed = new Set(done.map((f) => f.payout.payout_id));
    await releaseHeldJobs(
      trx,
      held,
      held.keys.filter((k) => !completed.has(k.slice(JOB_KEY_PREFIX.length))),
    );
    return done;
  });
}

function keyOf(payout: Pick<Payout, 'payout_id'>): string {
  return `${JOB_KEY_PREFIX}${payout.payout_id}`;
}
