/**
 * transfer_confirm: believe the chain. Each run asks the chain about every signed version of the transfer:
 * - one is mined: it is booked once its block is deep enough (CHAIN_CONFIRMATIONS); until then it is watched, and a
 *   receipt that disappears (a reorganisation) sends the same bytes again;
 * - none is, and the chain's nonce has passed ours: another transaction took it (after a second look, to the review);
 * - none is yet: the latest version is sent again if the node forgot it, or replaced with higher fees once it waited
 *   TRANSFER_BUMP_AFTER.
 * A person's requested action (bump, cancel, resolve) is carried out here, where the key and the chain are.
 */
import { sql } from 'kysely';
import type { Hex } from 'viem';
import type { Logger } from '../../log.ts';
import { stageAlert } from '../alert.ts';
import type { StageDeps } from '../interfaces.ts';
import { deepEnough, findMined, nonceUser, trustedBlock, type MinedVersion } from './chain-reads.ts';
import { carryOutRequest } from './requests.ts';
import { bringForward } from '../../jobs/index.ts';
import {
  CONFIRM_RECHECK_MS,
  CONFIRM_SET_MAX,
  RELEASED_STATES,
  confirmJobKey,
  enqueueConfirm,
  loadTransfer,
  loadVersions,
  type Transfer,
  type TransferHooksByPurpose,
  type TransferVersion,
  waitingRecheckMs,
} from './model.ts';
import { confirmCompanions } from './confirm-set.ts';
import { logSettled, outcomeOf, settleMined } from './settle.ts';
import { broadcastVersion, replace } from './versions.ts';

/**
 * The chain's nonce past ours is seen twice, this far apart, before a person is asked: one node's answer about the
 * nonce and another's about our receipts can disagree for a moment behind a load-balanced RPC.
 */
export const NONCE_TAKEN_RECHECK_MS = 10_000;

export async function confirmTransfer(
  deps: StageDeps,
  hooks: TransferHooksByPurpose,
  transferId: string,
): Promise<void> {
  let transfer = await loadTransfer(deps.db, transferId);
  const log = deps.logger.child({ transferId, purpose: transfer.purpose, ref: transfer.ref });
  if (transfer.requested_action !== null && (transfer.status === 'broadcast' || transfer.status === 'needs_review')) {
    await carryOutRequest(deps, hooks, transfer, log);
    transfer = await loadTransfer(deps.db, transferId);
  }
  // needs_review waits for a person, whose action queues this job again.
  if (transfer.status !== 'broadcast') return;
  const versions = await loadVersions(deps.db, transferId);
  const mined = (await findMined(deps, versions, 0)) ?? (await waitForReceipt(deps, transfer, versions));
  if (mined) {
    if (await deepEnough(deps, mined.receipt)) {
      const outcome = outcomeOf(transfer, mined.version.kind, mined.receipt, deps.usdtContract);
      const booked = await deps.db
        .transaction()
        .execute((trx) => settleMined(trx, hooks, transferId, { ...mined, outcome }));
      if (!booked) return;
      await logSettled(deps, log, transfer, mined, outcome);
      // The wallet's later nonces are likely mined too: their confirmations are settled together from here.
      await confirmCompanions(deps, hooks, transfer, log);
      await wakeWaiting(deps, transfer, log);
      return;
    }
    if (await watchMined(deps, transfer, mined, log)) await wakeWaiting(deps, transfer, log);
    return;
  }
  if (transfer.block_number !== null) {
    await reorganisedAway(deps, transfer, versions, log);
    return;
  }
  if (await nonceTaken(deps, transfer, versions, log)) return;
  const behind = await keepOnNetwork(deps, transfer, versions, log);
  await deps.db.transaction().execute(async (trx) => {
    const ageMs = Date.now() - (transfer.broadcast_at ?? transfer.updated_at).getTime();
    if (ageMs > deps.settings.transferConfirmDeadlineMs) {
      await stageAlert(
        deps,
        log,
        {
          rule: 'transfer_unconfirmed',
          subject: transferId,
          severity: 'critical',
          message: 'transfer still not mined past its deadline',
          details: { transferId, txHash: transfer.tx_hash, versions: versions.length, ageMs },
        },
        trx,
      );
    }
    await enqueueConfirm(trx, transferId, {
      runAt: new Date(Date.now() + (behind === null ? CONFIRM_RECHECK_MS : waitingRecheckMs(behind))),
    });
  });
}

/**
 * Once a confirm run sees its transfer mined (first seen in its block, or booked), every lower nonce of the wallet is
 * used on chain and the ones just above are likely mined too: the looks of the wallet's lowest CONFIRM_SET_MAX
 * broadcast transfers not yet seen mined, pushed back while they waited far behind (waitingRecheckMs), are brought
 * forward to now. Their looks do the same in turn, so after a stall the chain's progress reaches the one that is now
 * the lowest unmined (to be sent again or replaced) within seconds, not at its own schedule (CHAIN_CONFIRMATIONS blocks
 * before the first booking on mainnet); a look running at that moment keeps the schedule it sets, until the next wake.
 * Never fails the run: a waiter not woken looks on its own.
 */
async function wakeWaiting(deps: StageDeps, seen: Transfer, log: Logger): Promise<void> {
  try {
    const lowest = await deps.db
      .selectFrom('chain_transfers')
      .select('transfer_id')
      .where('from_address', '=', seen.from_address)
      .where('status', '=', 'broadcast')
      .where('block_number', 'is', null)
      .orderBy('nonce')
      .limit(CONFIRM_SET_MAX)
      .execute();
    await bringForward(
      deps.db,
      lowest.map((t) => confirmJobKey(t.transfer_id)),
      CONFIRM_RECHECK_MS,
    );
  } catch (error) {
    log.warn(
      { event: 'transfer_wake_failed', err: error },
      'waking the waiting transfers failed: they look on their own',
    );
  }
}

/**
 * Mined, not deep enough yet: the block is remembered (so its disappearance is noticed) and looked at again. Answers
 * whether this look is the first to see it in that block.
 */
async function watchMined(deps: StageDeps, transfer: Transfer, mined: MinedVersion, log: Logger): Promise<boolean> {
  const firstSeen = transfer.block_hash !== mined.receipt.blockHash;
  await deps.db.transaction().execute(async (trx) => {
    if (firstSeen) {
      await trx
        .updateTable('chain_transfers')
        .set({
          block_number: mined.receipt.blockNumber.toString(),
          block_hash: mined.receipt.blockHash,
          tx_hash: mined.version.tx_hash,
          raw_tx: mined.version.raw_tx,
          nonce_taken_seen_at: null,
          updated_at: sql`now()`,
        })
        .where('transfer_id', '=', transfer.transfer_id)
        .where('status', '=', 'broadcast')
        .execute();
      log.info(
        { event: 'transfer_mined', txHash: mined.version.tx_hash, blockNumber: mined.receipt.blockNumber.toString() },
        'transfer mined; waiting for confirmations',
      );
    }
    await enqueueConfirm(trx, transfer.transfer_id, {
      runAt: new Date(Date.now() + CONFIRM_RECHECK_MS),
    });
  });
  return firstSeen;
}

/**
 * A version seen mined has no receipt now. If the chain still has the block it was seen in, a lagging node hides it:
 * nothing changes. Otherwise its block left the chain: nothing was booked; the same bytes go again.
 */
async function reorganisedAway(
  deps: StageDeps,
  transfer: Transfer,
  versions: readonly TransferVersion[],
  log: Logger,
): Promise<void> {
  const still = await deps.wallet.blockHash(BigInt(transfer.block_number as string));
  if (still !== null && still.toLowerCase() === transfer.block_hash?.toLowerCase()) {
    log.warn(
      { event: 'transfer_receipt_hidden', txHash: transfer.tx_hash, blockNumber: transfer.block_number },
      'its block is still in the chain but the node shows no receipt (a lagging node): looking again',
    );
    await deps.db.transaction().execute((trx) =>
      enqueueConfirm(trx, transfer.transfer_id, {
        runAt: new Date(Date.now() + CONFIRM_RECHECK_MS),
      }),
    );
    return;
  }
  const seen = versions.find((v) => v.tx_hash === transfer.tx_hash) ?? versions.at(-1);
  await stageAlert(deps, log, {
    rule: 'transfer_reorged',
    subject: transfer.transfer_id,
    severity: 'warning',
    message: 'a mined transfer left the chain (reorganisation); sent again, booked once mined again',
    details: {
      transferId: transfer.transfer_id,
      txHash: transfer.tx_hash,
      blockNumber: transfer.block_number,
      blockHash: transfer.block_hash,
      blockHashNow: still,
    },
  });
  await deps.db.transaction().execute(async (trx) => {
    await trx
      .updateTable('chain_transfers')
      .set({ block_number: null, block_hash: null, updated_at: sql`now()` })
      .where('transfer_id', '=', transfer.transfer_id)
      .where('status', '=', 'broadcast')
      .execute();
    await enqueueConfirm(trx, transfer.transfer_id, {
      runAt: new Date(Date.now() + CONFIRM_RECHECK_MS),
    });
  });
  if (seen) await broadcastVersion(deps, transfer.transfer_id, seen, log);
}

/**
 * None of our versions is mined, yet the chain (at the block the confirmation policy trusts) counts a transaction at
 * our nonce: someone else used it, and none of ours can ever be mined. Never re-signed at another nonce on that
 * evidence: a person looks (resolve with the hash that paid, or as never sent).
 */
async function nonceTaken(
  deps: StageDeps,
  transfer: Transfer,
  versions: readonly TransferVersion[],
  log: Logger,
): Promise<boolean> {
  const trusted = await trustedBlock(deps);
  const ours = Number(transfer.nonce);
  const used = await deps.wallet.nonceAt(trusted);
  if (used <= ours) {
    await forgetNonceTaken(deps, transfer);
    return false;
  }
  // Who used it: one of our versions (its receipt hidden by a lagging node) is no reason for a person.
  const user = await nonceUser(deps, ours, trusted);
  const own = user && versions.find((v) => v.tx_hash.toLowerCase() === user.hash.toLowerCase());
  if (!user || own) {
    log.warn(
      { event: 'transfer_receipt_hidden', nonce: ours, chainNonce: used, usedBy: user?.hash ?? null },
      'our nonce is used, by one of our versions or by a transaction the node does not show: looking again',
    );
    await recheckNonce(deps, transfer, false);
    return true;
  }
  const seenAt = transfer.nonce_taken_seen_at;
  if (seenAt === null || Date.now() - seenAt.getTime() < NONCE_TAKEN_RECHECK_MS) {
    await recheckNonce(deps, transfer, seenAt === null);
    log.warn(
      { event: 'transfer_nonce_passed', nonce: ours, chainNonce: used, usedBy: user.hash },
      'another transaction used our nonce; looking again before asking a person',
    );
    return true;
  }
  await nonceTakenToReview(deps, transfer, versions, log, { nonce: ours, chainNonce: used, user });
  return true;
}

/** Our nonce is free again at the trusted block: an earlier sighting no longer counts towards the second look. */
async function forgetNonceTaken(deps: StageDeps, transfer: Transfer): Promise<void> {
  if (transfer.nonce_taken_seen_at === null) return;
  await deps.db
    .updateTable('chain_transfers')
    .set({ nonce_taken_seen_at: null })
    .where('transfer_id', '=', transfer.transfer_id)
    .where('status', '=', 'broadcast')
    .execute();
}

/** Looked at again later; `firstSeen` marks when the nonce was first seen taken. */
async function recheckNonce(deps: StageDeps, transfer: Transfer, firstSeen: boolean): Promise<void> {
  await deps.db.transaction().execute(async (trx) => {
    if (firstSeen)
      await trx
        .updateTable('chain_transfers')
        .set({ nonce_taken_seen_at: sql`now()` })
        .where('transfer_id', '=', transfer.transfer_id)
        .where('status', '=', 'broadcast')
        .execute();
    await enqueueConfirm(trx, transfer.transfer_id, {
      runAt: new Date(Date.now() + CONFIRM_RECHECK_MS),
    });
  });
}

/** Seen taken twice, by a transaction we did not sign: a person looks. */
async function nonceTakenToReview(
  deps: StageDeps,
  transfer: Transfer,
  versions: readonly TransferVersion[],
  log: Logger,
  taken: { nonce: number; chainNonce: number; user: NonNullable<Awaited<ReturnType<typeof nonceUser>>> },
): Promise<void> {
  const { nonce: ours, chainNonce: used, user } = taken;
  const reason = `nonce ${ours} was used by a transaction payrail did not sign (${user.hash}, block ${user.blockNumber}); none of this transfer's ${versions.length} version(s) can be mined`;
  const moved = await deps.db
    .updateTable('chain_transfers')
    .set({ status: 'needs_review', reason, updated_at: sql`now()` })
    .where('transfer_id', '=', transfer.transfer_id)
    .where('status', '=', 'broadcast')
    .returning('transfer_id')
    .executeTakeFirst();
  if (!moved) return;
  await stageAlert(deps, log, {
    rule: 'transfer_nonce_taken',
    subject: transfer.transfer_id,
    severity: 'critical',
    message: "another transaction took this transfer's nonce; it will never be mined as signed",
    details: {
      transferId: transfer.transfer_id,
      nonce: ours,
      chainNonce: used,
      usedBy: user.hash,
      usedInBlock: user.blockNumber.toString(),
      hashes: versions.map((v) => v.tx_hash),
    },
  });
}

/**
 * After a first look found no receipt, a run waits for one only while its latest version is new (the common case:
 * mined within seconds), never longer than until receiptWaitMs after it was signed, and only when no lower nonce of
 * the wallet is still unmined (its nonce is the next to be mined, or the chain counts it mined already and a lagging
 * node hides the receipt). A transfer that waits longer (in a paused pool), or behind a lower nonce of ours the
 * chain has not mined (whose receipt must come first), is looked at again later instead: a job holding a worker slot
 * for it would starve the very jobs that can unblock it (the stuck nonce's own, the sends). While one nonce is stuck,
 * every transfer signed after it used to hold a slot for its first receipt wait: with a steady flow of transfers, all
 * of them.
 */
async function waitForReceipt(
  deps: StageDeps,
  transfer: Transfer,
  versions: readonly TransferVersion[],
): Promise<MinedVersion | null> {
  const latest = versions.at(-1);
  if (transfer.block_number !== null || !latest) return null;
  const waitMs = deps.settings.transfer.receiptWaitMs - (Date.now() - latest.created_at.getTime());
  if (waitMs <= 0) return null;
  if ((await deps.wallet.nonceAt('latest')) < Number(transfer.nonce)) return null;
  return findMined(deps, versions, waitMs, { lookedJustNow: true });
}

/**
 * Not mined yet. Behind a lower nonce of ours that the chain has not mined (a forgotten or outbid transaction, one
 * waiting for its release or for a person), this
 * one cannot be mined before it: bumping it would only burn fees; that transfer's own check sends it again or replaces
 * it. Otherwise: replaced once it waited long enough, else sent again when the node no longer knows it. Answers how
 * far above the chain's next nonce it waits behind such a nonce (1: right behind it), or null.
 */
async function keepOnNetwork(
  deps: StageDeps,
  transfer: Transfer,
  versions: readonly TransferVersion[],
  log: Logger,
): Promise<number | null> {
  const latest = versions.at(-1);
  if (!latest) throw new Error(`transfer ${transfer.transfer_id} is broadcast without a signed version`);
  const mined = await deps.wallet.nonceAt('latest');
  if (mined < Number(transfer.nonce)) {
    const blocker = await deps.db
      .selectFrom('chain_transfers')
      .select('transfer_id')
      .where('from_address', '=', transfer.from_address)
      .where('nonce', '=', String(mined))
      .where('status', 'in', RELEASED_STATES)
      .executeTakeFirst();
    if (blocker) {
      // Not re-queued from here: hundreds of waiters moving the blocker's job to "now" kept it behind the jobs already
      // due (a chaos finding). Its own check runs on its own schedule and sends it again or replaces it. This one is
      // only handed to the node again if the node forgot it (same bytes, no fee spent): otherwise, once the blocker is
      // mined, each forgotten nonce above it would wait for its own next check, one nonce per check (a chaos finding).
      log.info(
        { event: 'transfer_waits_behind', nonce: transfer.nonce, blockedBy: blocker.transfer_id, minedNonce: mined },
        'waiting behind a lower nonce of ours: not bumped',
      );
      await sendAgainIfForgotten(deps, transfer, latest, log);
      return Number(transfer.nonce) - mined;
    }
  }
  if (Date.now() - latest.created_at.getTime() >= deps.settings.transfer.bumpAfterMs) {
    const outcome = await replace(
      deps,
      transfer,
      latest.kind,
      log,
      `not mined ${Math.round((Date.now() - latest.created_at.getTime()) / 1000)}s after version ${latest.version}`,
      { olderThanMs: deps.settings.transfer.bumpAfterMs },
    );
    if (outcome.replaced) return null;
  }
  await sendAgainIfForgotten(deps, transfer, latest, log);
  return null;
}

async function sendAgainIfForgotten(
  deps: StageDeps,
  transfer: Transfer,
  latest: TransferVersion,
  log: Logger,
): Promise<void> {
  if ((await deps.wallet.transaction(latest.tx_hash as Hex)) === null)
    await broadcastVersion(deps, transfer.transfer_id, latest, log);
}
