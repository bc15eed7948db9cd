/**
 * Confirming in sets. Each transfer's confirmation used to be a job of its own: its fetch, two reads, the chain's
 * head, a transaction and its commit, the job's completion. When a confirm run books its transfer, the wallet's later
 * nonces are usually mined as well, and their jobs wait in the queue behind it. That run now settles them too, in one
 * transaction, with one read of the transfers and their versions and one of the chain's head.
 *
 * A companion keeps every guarantee of its own run: it is booked only from its receipt as the chain shows it now, deep
 * enough and in the chain's block at that height; under its row lock, still broadcast with no person's request; and
 * its own job is removed in the same commit. Only the plain case is taken: a payout's transfer mined as asked (not a
 * threshold payout's, whose completion queues a job under a shared key). One
 * not mined, not deep enough, that moved something else, or failed on chain is left to its own job, which handles it
 * as before; so is every companion when the set's transaction fails. A companion's job that a worker takes between
 * the read and the commit loses its key and retries to the removal, and finds its transfer booked if it runs first
 * to the row lock: every step re-reads the status under that lock.
 *
 * The set's journals are booked as two ledger groups (src/ledger/group.ts): the payouts' completions first, then the
 * gas. Each group's balance rows are locked once, in id order, at its end: the owners' accounts (world:payees shared
 * by all) before the two gas rows, the order in which a single settlement locks them.
 */
import { sql } from 'kysely';
import { queuedJobWithKey, removeJobs } from '../../jobs/index.ts';
import { inLedgerGroup } from '../../ledger/index.ts';
import type { Logger } from '../../log.ts';
import type { StageDeps } from '../interfaces.ts';
import { RunLocked, withRunLock } from '../run-lock.ts';
import { deepEnough, deepestBlock, findMined, type MinedVersion } from './chain-reads.ts';
import {
  CONFIRM_KEY_PREFIX,
  CONFIRM_SET_MAX,
  confirmJobKey,
  type Transfer,
  type TransferHooksByPurpose,
  type TransferVersion,
} from './model.ts';
import { bookGas, bookOutcome, logSettled, outcomeOf, type MinedOutcome } from './settle.ts';

interface Companion {
  readonly transfer: Transfer;
  readonly mined: MinedVersion;
  readonly outcome: MinedOutcome;
}

/**
 * Settles the wallet's other broadcast payouts that are mined deep enough, after `own` was booked. Never fails its
 * caller: a companion left out is confirmed by its own job. One run at a time per wallet gathers companions; another
 * run meanwhile books only its own transfer.
 */
export async function confirmCompanions(
  deps: StageDeps,
  hooks: TransferHooksByPurpose,
  own: Transfer,
  log: Logger,
): Promise<void> {
  try {
    await withRunLock(deps.runLocks, `transfer_confirm_set:${own.from_address.toLowerCase()}`, () =>
      settleCompanions(deps, hooks, own),
    );
  } catch (error) {
    if (error instanceof RunLocked) return;
    log.warn(
      { event: 'transfer_confirm_set_failed', err: error },
      "settling the wallet's other mined transfers together failed: each is confirmed by its own job",
    );
  }
}

async function settleCompanions(deps: StageDeps, hooks: TransferHooksByPurpose, own: Transfer): Promise<void> {
  const candidates = await queuedCandidates(deps, own);
  if (candidates.length === 0) return;
  const versions = await versionsOf(
    deps,
    candidates.map((t) => t.transfer_id),
  );
  const deepUpTo = await deepestBlock(deps);
  const found = await Promise.all(
    candidates.map(async (transfer): Promise<Companion | null> => {
      const mined = await findMined(deps, versions.get(transfer.transfer_id) ?? [], 0);
      if (!mined || !(await deepEnough(deps, mined.receipt, deepUpTo))) return null;
      const outcome = outcomeOf(transfer, mined.version.kind, mined.receipt, deps.usdtContract);
      return outcome.status === 'confirmed' ? { transfer, mined, outcome } : null;
    }),
  );
  const ready = new Map(
    found.filter((c): c is Companion => c !== null).map((c) => [c.transfer.transfer_id, c] as const),
  );
  if (ready.size === 0) return;
  const booked = await deps.db.transaction().execute(async (trx) => {
    const locked = await trx
      .selectFrom('chain_transfers')
      .selectAll()
      .where('transfer_id', 'in', [...ready.keys()])
      .orderBy('transfer_id')
      .forUpdate()
      .execute();
    const done: Companion[] = [];
    await inLedgerGroup(trx, async () => {
      for (const current of locked) {
        const companion = ready.get(current.transfer_id) as Companion;
        // Moved on since it was read (its own job, a person's request): left to its own job.
        if (current.status !== 'broadcast' || current.requested_action !== null) continue;
        if (await bookOutcome(trx, hooks, current, { ...companion.mined, outcome: companion.outcome }))
          done.push(companion);
      }
    });
    // Then the gas, in a group of its own: its two rows are locked after the owners' accounts, as a single
    // settlement locks them (settleMined), so a set and a single settlement never wait for each other in a cycle.
    await inLedgerGroup(trx, async () => {
      for (const companion of done) await bookGas(trx, companion.transfer.transfer_id, companion.mined.receipt);
    });
    await removeJobs(
      trx,
      done.map((c) => confirmJobKey(c.transfer.transfer_id)),
    );
    return done;
  });
  for (const companion of booked) {
    const { transfer } = companion;
    const log = deps.logger.child({
      transferId: transfer.transfer_id,
      purpose: transfer.purpose,
      ref: transfer.ref,
      confirmedWith: own.transfer_id,
    });
    await logSettled(deps, log, transfer, companion.mined, companion.outcome);
  }
}

/**
 * The wallet's broadcast payouts, in nonce order, whose confirm job waits in the queue (not running, attempts left):
 * one whose job ran out of attempts waits for a person, and one a person asked something of is carried out by its own.
 */
async function queuedCandidates(deps: StageDeps, own: Transfer): Promise<Transfer[]> {
  return (
    deps.db
      .selectFrom('chain_transfers')
      .selectAll()
      .where('status', '=', 'broadcast')
      .where('from_address', '=', own.from_address)
      .where('purpose', '=', 'payout')
      .where('requested_action', 'is', null)
      .where('transfer_id', '<>', own.transfer_id)
      // A threshold payout's completion queues its channel's threshold_check, whose job is often running: replacing
      // it locks that job's row until the commit. Two such rows in one set can meet graphile-worker's batched
      // completion of finished jobs, which locks their rows in no particular order, and a deadlock there stops the
      // worker process; one, taken before the set's balances (a single settlement takes it after them), can close a
      // cycle through world:payees. Left to its own run.
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('payouts')
              .select('payout_id')
              .whereRef('payouts.payout_id', '=', 'chain_transfers.ref')
              .where('payouts.kind', '=', 'threshold'),
          ),
        ),
      )
      .where(() => queuedJobWithKey(sql`${CONFIRM_KEY_PREFIX} || chain_transfers.transfer_id`))
      .orderBy('nonce')
      .limit(CONFIRM_SET_MAX)
      .execute()
  );
}

async function versionsOf(deps: StageDeps, transferIds: readonly string[]): Promise<Map<string, TransferVersion[]>> {
  const rows = await deps.db
    .selectFrom('chain_transfer_versions')
    .selectAll()
    .where('transfer_id', 'in', transferIds)
    .orderBy('transfer_id')
    .orderBy('version')
    .execute();
  const byTransfer = new Map<string, TransferVersion[]>();
  for (const row of rows) byTransfer.set(row.transfer_id, [...(byTransfer.get(row.transfer_id) ?? []), row]);
  return byTransfer;
}
