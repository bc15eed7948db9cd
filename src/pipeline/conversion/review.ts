/**
 * A person's action on a conversion in review: retry. As for payouts (payout/review.ts), it is allowed only where it
 * is safe, takes the conversion's row lock (so it cannot race a running job's guarded transitions), commits with the
 * job that carries it on, and is kept in the audit log with the acting token's name.
 *
 * Where the ETH is decides what retry means: mined to ChangeNow's payin address, the exchange is looked at again
 * (the poll settles only what the chain shows arrived, or sends it back to review); provably never sent (no
 * transfer, or only a failed one), the conversion ends and its payments wait for the next batch; a transfer still on
 * its way (intent, signed, broadcast) is its own jobs' and the reconciler's to follow, so retry is refused.
 *
 * Once the ETH left and the exchange will not end by itself, the way out is a resolve (resolve.ts).
 */
import { sql, type Selectable, type Transaction } from 'kysely';
import { recordAudit } from '../../db/index.ts';
import type { ConversionState, ConversionsTable, Database, Db } from '../../db/index.ts';
import {
  conversionForUpdate,
  conversionTransfer,
  enqueueConversionBatch,
  enqueuePoll,
  releasePaymentsIn,
} from './run.ts';
import { reclaimPayments } from './outcomes.ts';

export type ConversionAction = 'retry';

export class ConversionActionRefused extends Error {
  override name = 'ConversionActionRefused';
}

export interface ConversionActionResult {
  readonly conversionId: string;
  readonly from: ConversionState;
  readonly to: ConversionState;
}

export async function applyConversionAction(
  db: Db,
  conversionId: string,
  action: ConversionAction,
  actor: string,
  options: { pollDeadlineMs: number },
): Promise<ConversionActionResult | null> {
  return db.transaction().execute(async (trx) => {
    const conversion = await conversionForUpdate(trx, conversionId).executeTakeFirst();
    if (!conversion) return null;
    if (conversion.status !== 'needs_review')
      throw new ConversionActionRefused(`a conversion in state ${conversion.status} cannot be retried`);
    const transfer = await conversionTransfer(trx, conversionId);
    refuseWhileUnsettled(conversion, transfer);
    const to =
      transfer?.status === 'confirmed'
        ? await lookAgain(trx, conversionId, options)
        : await endNeverSent(trx, conversion, transfer, actor);
    await recordAudit(trx, {
      actor,
      action: `conversion.${action}`,
      subject: conversionId,
      details: {
        from: conversion.status,
        to,
        reason: conversion.reason,
        transfer: transfer ? { id: transfer.transfer_id, status: transfer.status } : null,
      },
    });
    return { conversionId, from: conversion.status, to };
  });
}

type Conversion = Selectable<ConversionsTable>;
type PayingTransfer = Awaited<ReturnType<typeof conversionTransfer>>;

/** Retry is refused where the ETH's fate is not known yet, or where a confirmed transfer has no exchange to look at. */
function refuseWhileUnsettled(conversion: Conversion, transfer: PayingTransfer): void {
  if (transfer?.status === 'confirmed' && conversion.exchange_id === null)
    throw new ConversionActionRefused(
      `its transfer ${transfer.transfer_id} is confirmed but no exchange is recorded: nothing to look at again`,
    );
  if (transfer?.status === 'needs_review')
    throw new ConversionActionRefused(
      `its transfer ${transfer.transfer_id} is in review: act on the transfer (POST /api/transfers/${transfer.transfer_id}/…), and this conversion moves on from its outcome`,
    );
  if (transfer && transfer.status !== 'confirmed' && transfer.status !== 'failed')
    throw new ConversionActionRefused(
      `its transfer ${transfer.transfer_id} is ${transfer.status}: its own jobs and the reconciler follow it, it cannot be retried yet`,
    );
}

/** The ETH reached ChangeNow: the exchange is polled again. */
async function lookAgain(
  trx: Transaction<Database>,
  conversionId: string,
  options: { pollDeadlineMs: number },
): Promise<ConversionState> {
  await reclaimPayments(trx, conversionId);
  // A fresh deadline and budget: a person chose to look again, the reconciler's resumes start over.
  const looked = await trx
    .updateTable('conversions')
    .set({
      status: 'sent',
      reason: null,
      last_error: null,
      poll_deadline_at: new Date(Date.now() + options.pollDeadlineMs),
      reconcile_attempts: 0,
      updated_at: sql`now()`,
    })
    .where('conversion_id', '=', conversionId)
    .where('status', '=', 'needs_review')
    .executeTakeFirst();
  if (looked.numUpdatedRows !== 1n)
    throw new Error(`conversion ${conversionId} is no longer needs_review under its row lock`);
  await enqueuePoll(trx, conversionId, new Date());
  return 'sent';
}

/** The ETH never left: the conversion ends and its payments wait for the next batch. */
async function endNeverSent(
  trx: Transaction<Database>,
  conversion: Conversion,
  transfer: PayingTransfer,
  actor: string,
): Promise<ConversionState> {
  const conversionId = conversion.conversion_id;
  await reclaimPayments(trx, conversionId);
  // No hold (unlike releaseWithHold): the cause was looked at by a person, not a refusal that may come back at once.
  await trx
    .updateTable('payments')
    .set({ conversion_hold_until: null })
    .where('conversion_id', '=', conversionId)
    .where('conversion_status', '=', 'converting')
    .execute();
  const never = transfer ? `its transfer ${transfer.transfer_id} failed` : 'no transfer was made';
  await releasePaymentsIn(
    trx,
    conversionId,
    'failed',
    `retried by ${actor}: ${never}, its ETH never left; payments back to pending (was: ${conversion.reason ?? 'no reason'})`,
  );
  await enqueueConversionBatch(trx);
  return 'failed';
}
