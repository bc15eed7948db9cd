/**
 * A person's action on a transfer, carried out by the worker: it alone holds the host wallet's key and reads the
 * chain. The web process checks the state and records the request (review.ts); here it is checked again against the
 * chain and either done or refused with the reason in last_error. Every outcome clears the request.
 */
import { lockInboundHash } from '../../treasury/inbound.ts';
import { sql } from 'kysely';
import type { Hex } from 'viem';
import type { Logger } from '../../log.ts';
import { stageAlert } from '../alert.ts';
import type { StageDeps } from '../interfaces.ts';
import { deepEnough, findMined, nonceUser, trustedBlock } from './chain-reads.ts';
import { enqueueConfirm, loadVersions, lockTransfer, type Transfer, type TransferHooksByPurpose } from './model.ts';
import { clearedRequest, failIn, outcomeOf, settleMined } from './settle.ts';
import { replace } from './versions.ts';

export async function carryOutRequest(
  deps: StageDeps,
  hooks: TransferHooksByPurpose,
  transfer: Transfer,
  log: Logger,
): Promise<void> {
  const action = transfer.requested_action;
  const by = transfer.requested_by ?? 'unknown';
  let refusal: string | null = null;
  try {
    if (action === 'bump' || action === 'cancel') refusal = await replaceNow(deps, transfer, action, by, log);
    else if (action === 'resolve_mined')
      refusal = await resolveMined(deps, hooks, transfer, transfer.requested_hash as Hex);
    else if (action === 'resolve_never_sent') refusal = await resolveNeverSent(deps, hooks, transfer);
  } catch (error) {
    // The chain did not answer: the request stays, and the job's retry carries it out later.
    log.warn(
      { event: 'transfer_request_deferred', action, err: (error as Error).message },
      'requested action deferred',
    );
    throw error;
  }
  await deps.db.transaction().execute(async (trx) => {
    const cleared = await trx
      .updateTable('chain_transfers')
      .set({
        ...clearedRequest,
        ...(refusal !== null && { last_error: `${action} requested by ${by} refused: ${refusal}` }),
        updated_at: sql`now()`,
      })
      .where('transfer_id', '=', transfer.transfer_id)
      .where('requested_at', '=', transfer.requested_at)
      .returning('status')
      .executeTakeFirst();
    if (cleared?.status === 'broadcast') await enqueueConfirm(trx, transfer.transfer_id);
  });
  if (refusal !== null)
    log.warn(
      { event: 'transfer_request_refused', action, by, refusal },
      'requested action refused by what the chain shows',
    );
  else log.warn({ event: 'transfer_request_done', action, by }, 'requested action carried out');
}

/** bump: a replacement now; cancel: a zero-value self-transfer at the nonce. From review, watching starts again. */
async function replaceNow(
  deps: StageDeps,
  transfer: Transfer,
  action: 'bump' | 'cancel',
  by: string,
  log: Logger,
): Promise<string | null> {
  const versions = await loadVersions(deps.db, transfer.transfer_id);
  const mined = await findMined(deps, versions, 0);
  if (mined) return `version ${mined.version.version} (${mined.version.tx_hash}) is already mined`;
  const outcome = await replace(
    deps,
    transfer,
    action === 'cancel' ? 'cancel' : (versions.at(-1)?.kind ?? 'transfer'),
    log,
    `${action} requested by ${by}`,
  );
  if (!outcome.replaced) return outcome.why;
  if (transfer.status === 'needs_review') {
    await deps.db
      .updateTable('chain_transfers')
      .set({ status: 'broadcast', reason: null, nonce_taken_seen_at: null, updated_at: sql`now()` })
      .where('transfer_id', '=', transfer.transfer_id)
      .where('status', '=', 'needs_review')
      .execute();
  }
  return null;
}

/**
 * A person names the transaction that paid: the chain must show it mined deep enough, sent by the host wallet at this
 * transfer's nonce (when it has one), and moving the amount to the receiver. One of our own versions is booked as
 * mined; if it moved another amount than asked (a token taking a fee), the person's resolve accepts what the chain
 * shows and the transfer is confirmed with that finding as its reason.
 */
async function resolveMined(
  deps: StageDeps,
  hooks: TransferHooksByPurpose,
  transfer: Transfer,
  hash: Hex,
): Promise<string | null> {
  const versions = await loadVersions(deps.db, transfer.transfer_id);
  const receipt = await deps.wallet.receipt(hash);
  if (receipt === null) return `the chain shows no mined transaction ${hash}`;
  if (!(await deepEnough(deps, receipt)))
    return `${hash} is mined in block ${receipt.blockNumber}, not yet deep enough (CHAIN_CONFIRMATIONS); ask again later`;
  const own = versions.find((v) => v.tx_hash.toLowerCase() === hash.toLowerCase());
  const tx = await deps.wallet.transaction(hash);
  if (tx === null) return `the chain shows no transaction ${hash}`;
  if (tx.from.toLowerCase() !== transfer.from_address.toLowerCase())
    return `${hash} was sent by ${tx.from}, not the host wallet`;
  if (transfer.nonce !== null && BigInt(tx.nonce) !== BigInt(transfer.nonce))
    return `${hash} used nonce ${tx.nonce}, not this transfer's ${transfer.nonce}`;
  if (!own) {
    const pays =
      transfer.asset === 'eth'
        ? tx.to?.toLowerCase() === transfer.to_address.toLowerCase() && tx.value === BigInt(transfer.amount)
        : true;
    if (!pays) return `${hash} sent ${tx.value} wei to ${tx.to}, not ${transfer.amount} to ${transfer.to_address}`;
  }
  const found = outcomeOf(transfer, own?.kind ?? 'transfer', receipt, deps.usdtContract);
  if (!own && found.status !== 'confirmed')
    return `${hash} did not move ${transfer.amount} to ${transfer.to_address} (${found.status === 'failed' ? found.failure.message : found.reason})`;
  const by = transfer.requested_by ?? 'unknown';
  const outcome =
    found.status === 'needs_review'
      ? ({ status: 'confirmed', reason: `accepted by ${by} as mined: ${found.reason}` } as const)
      : found;
  const version = own ?? { tx_hash: hash, raw_tx: transfer.raw_tx ?? '' };
  return deps.db.transaction().execute(async (trx) => {
    if (!own) {
      // A transaction from the host key outside payrail is booked once: as this transfer, or as an operator's
      // withdrawal (payrail withdrawal), never both. The same lock as the withdrawal's.
      await lockInboundHash(trx, hash);
      const withdrawn = await trx
        .selectFrom('ledger_journals')
        .select('id')
        .where('kind', '=', 'wallet_withdrawal')
        .where('ref', '=', hash.toLowerCase())
        .executeTakeFirst();
      if (withdrawn) return `${hash} is booked as an operator's withdrawal already`;
    }
    await settleMined(trx, hooks, transfer.transfer_id, { version, receipt, outcome });
    return null;
  });
}

/**
 * The transfer never executed: none of its versions has a receipt, and the chain shows its nonce used, in a block the
 * confirmation policy trusts, by a transaction that is not one of its versions (our cancel is one, and is settled by
 * the confirm step). Only then can its funds be the owner's again.
 */
async function resolveNeverSent(
  deps: StageDeps,
  hooks: TransferHooksByPurpose,
  transfer: Transfer,
): Promise<string | null> {
  if (transfer.nonce === null)
    return 'it has no nonce on record, so the chain cannot show it unused: look for its payment, then resolve with the hash or retry';
  const versions = await loadVersions(deps.db, transfer.transfer_id);
  const mined = await findMined(deps, versions, 0);
  if (mined) return `version ${mined.version.version} (${mined.version.tx_hash}) is mined: it was sent`;
  const trusted = await trustedBlock(deps);
  const user = await nonceUser(deps, Number(transfer.nonce), trusted);
  if (!user)
    return `nonce ${transfer.nonce} is not used yet in a trusted block: a version may still be mined; cancel it first`;
  const own = versions.find((v) => v.tx_hash.toLowerCase() === user.hash.toLowerCase());
  if (own) return `version ${own.version} (${own.tx_hash}) used the nonce in block ${user.blockNumber}: it was sent`;
  await deps.db.transaction().execute(async (trx) => {
    const current = await lockTransfer(trx, transfer.transfer_id);
    await failIn(trx, hooks, current, {
      code: 'never_sent',
      message: `resolved as never sent by ${transfer.requested_by ?? 'unknown'}: nonce ${transfer.nonce} was used by ${user.hash}`,
    });
  });
  await stageAlert(deps, deps.logger, {
    rule: 'transfer_resolved',
    subject: transfer.transfer_id,
    severity: 'warning',
    message: "a transfer was resolved as never sent; its funds are the owner's again",
    details: { transferId: transfer.transfer_id, by: transfer.requested_by, nonce: transfer.nonce, usedBy: user.hash },
  });
  return null;
}
