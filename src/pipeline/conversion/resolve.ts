/**
 * The way out of review for a conversion whose ETH left (its transfer to ChangeNow is confirmed) and whose exchange
 * will not end by itself: a person says what became of the ETH, and the chain confirms it before anything is booked.
 *
 * - received: USDT reached the host wallet in the named transaction (read on chain, the amount must match); it is
 *   settled to the payments' channels as a finished exchange would be.
 * - returned: ETH came back in the named transaction (read on chain); whatever is short of what was sent is
 *   ChangeNow's cost, shared among the payments, which go back to pending worth that much less.
 * - lost: nothing came back and nothing will; the platform bears it (journal conversion_lost, platform:losses) and
 *   the payments go back to pending whole, so the owners are paid as if it had not happened.
 *
 * Chain reads happen before the conversion's row lock; the transaction checks the state again.
 */
import type { Transaction } from 'kysely';
import { recordAudit } from '../../db/index.ts';
import type { ConversionState, Database, Db } from '../../db/index.ts';
import { accounts, postJournal } from '../../ledger/index.ts';
import { formatUnits, parseUnits } from '../../money/index.ts';
import { reclaimPayments, returnConversionFunds } from './outcomes.ts';
import { inboundAmount, InboundRefused, type HostChainReader } from '../inbound.ts';
import { conversionForUpdate, conversionTransfer, enqueueConversionBatch, releasePaymentsIn } from './run.ts';
import { settleIn } from './settle.ts';

export type ConversionResolution =
  | { outcome: 'received'; amount: string; txHash: string; note?: string }
  | { outcome: 'returned'; txHash: string; note?: string }
  | { outcome: 'lost'; note: string };

/** What the resolve reads the chain with: the host wallet's incoming ETH and USDT, read only. */
export type ConversionChain = HostChainReader;

export class ConversionResolveRefused extends Error {
  override name = 'ConversionResolveRefused';
}

/** What the chain shows arrived, in smallest units, or a refusal saying why it cannot be used. */
async function arrived(chain: ConversionChain | undefined, resolution: ConversionResolution): Promise<bigint | null> {
  if (resolution.outcome === 'lost') return null;
  let amount: bigint;
  try {
    amount = await inboundAmount(chain, resolution.txHash, resolution.outcome === 'returned' ? 'eth' : 'usdt');
  } catch (error) {
    if (error instanceof InboundRefused) throw new ConversionResolveRefused(error.message);
    throw error;
  }
  if (resolution.outcome === 'returned') return amount;
  let said: bigint;
  try {
    said = parseUnits(resolution.amount, 6);
  } catch (error) {
    throw new ConversionResolveRefused(`amount: ${(error as Error).message}`);
  }
  if (said !== amount)
    throw new ConversionResolveRefused(
      `${resolution.txHash.toLowerCase()} brought ${formatUnits(amount, 6)} USDT to the host wallet, not ${resolution.amount}`,
    );
  return amount;
}

export async function resolveConversion(
  db: Db,
  chain: ConversionChain | undefined,
  conversionId: string,
  resolution: ConversionResolution,
  actor: string,
): Promise<{ conversionId: string; from: ConversionState; to: ConversionState } | null> {
  const exists = await db
    .selectFrom('conversions')
    .select('status')
    .where('conversion_id', '=', conversionId)
    .executeTakeFirst();
  if (!exists) return null;
  const amount = await arrived(chain, resolution);
  return db.transaction().execute(async (trx) => {
    const conversion = await conversionForUpdate(trx, conversionId).executeTakeFirstOrThrow();
    if (conversion.status !== 'needs_review')
      throw new ConversionResolveRefused(`a conversion in state ${conversion.status} is not in review`);
    const transfer = await conversionTransfer(trx, conversionId);
    if (transfer?.status !== 'confirmed')
      throw new ConversionResolveRefused('its ETH never left (no confirmed transfer): retry it instead');
    const note = resolution.note ? `: ${resolution.note}` : '';
    const to = await apply(
      trx,
      conversionId,
      BigInt(conversion.amount_wei),
      resolution,
      amount,
      `resolved by ${actor} as ${resolution.outcome}${note}`,
    );
    await recordAudit(trx, {
      actor,
      action: 'conversion.resolve',
      subject: conversionId,
      details: {
        from: conversion.status,
        to,
        reason: conversion.reason,
        resolution,
        arrived: amount?.toString() ?? null,
      },
    });
    return { conversionId, from: conversion.status, to };
  });
}

async function apply(
  trx: Transaction<Database>,
  conversionId: string,
  sentWei: bigint,
  resolution: ConversionResolution,
  amount: bigint | null,
  reason: string,
): Promise<ConversionState> {
  // Each outcome below takes the payments from 'converting', as the poll's would.
  await reclaimPayments(trx, conversionId);
  if (resolution.outcome === 'received')
    return settleReceived(trx, conversionId, resolution.txHash, amount as bigint, reason);
  if (resolution.outcome === 'returned')
    return bookReturned(trx, conversionId, sentWei, resolution.txHash, amount as bigint, reason);
  return bookLost(trx, conversionId, sentWei, reason);
}

/** USDT reached the host wallet: settled to the payments' channels as a finished exchange would be. */
async function settleReceived(
  trx: Transaction<Database>,
  conversionId: string,
  txHash: string,
  amount: bigint,
  reason: string,
): Promise<ConversionState> {
  const settled = await settleIn(trx, conversionId, amount, txHash.toLowerCase(), 'needs_review');
  if (settled !== true)
    throw new ConversionResolveRefused(
      settled === 'hash_deposit'
        ? `${txHash} is booked as an operator deposit`
        : `${txHash} ${settled === false ? 'could not be used: the conversion moved on' : `already ${settled.slice('hash_used:'.length)}`}`,
    );
  await trx.updateTable('conversions').set({ reason }).where('conversion_id', '=', conversionId).execute();
  return 'completed';
}

/** ETH came back: what is short of what was sent is ChangeNow's cost. */
async function bookReturned(
  trx: Transaction<Database>,
  conversionId: string,
  sentWei: bigint,
  txHash: string,
  returned: bigint,
  reason: string,
): Promise<ConversionState> {
  if (returned > sentWei)
    throw new ConversionResolveRefused(
      `${txHash} brought ${formatUnits(returned, 18)} ETH, more than the ${formatUnits(sentWei, 18)} sent`,
    );
  const short =
    returned < sentWei ? `; ${formatUnits(sentWei - returned, 18)} ETH short, booked as ChangeNow's cost` : '';
  const refund = `${reason} (refund ${txHash.toLowerCase()})${short}`;
  if (!(await returnConversionFunds(trx, conversionId, txHash, returned, refund)))
    throw new ConversionResolveRefused(`${txHash} already returned funds for something else`);
  return 'failed';
}

/** Nothing came back: the platform bears the loss and the payments go back to pending whole. */
async function bookLost(
  trx: Transaction<Database>,
  conversionId: string,
  sentWei: bigint,
  reason: string,
): Promise<ConversionState> {
  await postJournal(trx, {
    kind: 'conversion_lost',
    ref: conversionId,
    entries: [
      { account: accounts.platformLosses('eth'), amount: -sentWei },
      { account: accounts.changenow('eth'), amount: sentWei },
    ],
  });
  await releasePaymentsIn(
    trx,
    conversionId,
    'failed',
    `${reason}; ${formatUnits(sentWei, 18)} ETH booked as the platform's loss, payments back to pending`,
  );
  await enqueueConversionBatch(trx);
  return 'failed';
}
