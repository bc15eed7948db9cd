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
import type { ExchangeStatus } from '../../integrations/changenow/index.ts';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database } from '../../db/index.ts';
import { removeJobs } from '../../jobs/index.ts';
import { accounts, inLedgerGroup } from '../../ledger/index.ts';
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
  const candidates = await takeCandidates(deps, own.payout_id);
  if (candidates.length === 0) return;
  const finished: Finished[] = [];
  const until = Date.now() + POLL_BUDGET_MS;
  for (let i = 0; i < candidates.length && Date.now() < until; i += POLLS_AT_ONCE) {
    const group = candidates.slice(i, i + POLLS_AT_ONCE);
    const read = await Promise.allSettled(group.map((p) => deps.exchange.getExchange(p.exchange_id as string)));
    const failed = read.findIndex((r) => r.status === 'rejected');
    if (failed >= 0) {
      // ChangeNow is each job's to wait out, with its own attempts and deadline.
      deps.logger.warn(
        {
          event: 'payout_poll_set_stopped',
          payoutId: group[failed]?.payout_id,
          err: (read[failed] as PromiseRejectedResult).reason,
        },
        'a status read for a payout polled in a set failed: the set stops, each payout left is polled by its own job',
      );
      break;
    }
    read.forEach((r, j) => {
      const payout = group[j] as Payout;
      if (r.status !== 'fulfilled' || r.value.status !== 'finished') return;
      try {
        const finish = judgeFinish(deps, payout, r.value);
        if (finish.to === 'completed') finished.push({ payout, status: r.value, amountOut: finish.amountOut });
      } catch {
        // An answer the judgement cannot read: its own poll reads it again, and reports it.
      }
    });
  }
  const booked = await complete(deps, finished, candidates);
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
 * The sent instant payouts whose poll jobs wait, due now and never tried, oldest first; their jobs pushed back by
 * POLL_HOLD_MS in the same statement, so that no worker takes one while the set reads. A job a worker holds is not
 * pushed back, and its payout is left to it.
 */
async function takeCandidates(deps: StageDeps, ownId: string): Promise<Payout[]> {
  const { rows } = await sql<{ payout_id: string }>`
    with due as (
      select j.id from graphile_worker.jobs j
      join payouts p on j.key = ${JOB_KEY_PREFIX} || p.payout_id
      where j.task_identifier = 'payout_poll' and j.locked_at is null and j.attempts = 0 and j.run_at <= now()
        and p.status = 'sent' and p.kind = 'instant' and p.exchange_id is not null and p.payout_id <> ${ownId}
      order by j.priority, j.run_at, j.id
      limit ${POLL_SET_MAX}
    )
    select substr(r.key, ${JOB_KEY_PREFIX.length + 1}) as payout_id
    from graphile_worker.reschedule_jobs(array(select id from due), run_at => now() + ${`${POLL_HOLD_MS} milliseconds`}::interval) r`.execute(
    deps.db,
  );
  if (rows.length === 0) return [];
  return deps.db
    .selectFrom('payouts')
    .selectAll()
    .where(
      'payout_id',
      'in',
      rows.map((r) => r.payout_id),
    )
    .orderBy('payout_id')
    .execute();
}

/**
 * The completions, under the payouts' row locks, as one ledger group; their poll jobs removed in the same commit, and
 * the jobs of the candidates left due again at once.
 */
async function complete(deps: StageDeps, finished: readonly Finished[], taken: readonly Payout[]): Promise<Finished[]> {
  const byId = new Map(finished.map((f) => [f.payout.payout_id, f] as const));
  return deps.db.transaction().execute(async (trx) => {
    if (byId.size === 0) {
      await dueAgain(
        trx,
        taken.map((p) => p.payout_id),
      );
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
      done.map((f) => `${JOB_KEY_PREFIX}${f.payout.payout_id}`),
    );
    const completed = new Set(done.map((f) => f.payout.payout_id));
    await dueAgain(
      trx,
      taken.map((p) => p.payout_id).filter((id) => !completed.has(id)),
    );
    return done;
  });
}

/** The poll jobs of payouts the set did not complete, due now again (as they were before the set pushed them back). */
async function dueAgain(trx: Kysely<Database> | Transaction<Database>, payoutIds: readonly string[]): Promise<void> {
  if (payoutIds.length === 0) return;
  await sql`
    select 1 from graphile_worker.reschedule_jobs(
      array(select j.id from graphile_worker.jobs j
            where j.key = any(${payoutIds.map((id) => `${JOB_KEY_PREFIX}${id}`)}::text[])),
      run_at => now())`.execute(trx);
}
