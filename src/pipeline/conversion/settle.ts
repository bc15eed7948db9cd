/**
 * Settlement: follow a sent conversion's exchange until it ends. `finished`: the USDT actually received is shared
 * among the payments in proportion to their net ETH (largest remainder, nothing created or lost), the ledger moves
 * each channel's ETH into USDT in one balanced journal, and the threshold check runs in the same transaction.
 */
import { sql } from 'kysely';
import type { ChangeNowError, ExchangeStatus } from '../../integrations/changenow/index.ts';
import type { Selectable, Transaction } from 'kysely';
import type { ConversionsTable, Database } from '../../db/index.ts';
import type { Logger } from '../../log.ts';
import { accounts, inLedgerGroup, postJournals, type EntryInput } from '../../ledger/index.ts';
import { formatUnits, parseUnitsFloor, splitProportionally, withinTolerance } from '../../money/index.ts';
import { conversionForUpdate, enqueuePoll, toReview, type ReviewAlert } from './run.ts';
import { belowEstimate, statusMismatch } from '../exchange-answer.ts';
import { returnConversionFunds } from './outcomes.ts';
import { stageAlert } from '../alert.ts';
import { isBookedDeposit, lockInboundHash } from '../../treasury/inbound.ts';
import type { StageDeps } from '../interfaces.ts';
import { checkThresholds } from '../payout/threshold.ts';
import { openingSettings, type OpeningSettings } from '../payout/send-at-opening.ts';
import { followExchange, reportNoStatus } from '../follow-exchange.ts';

/** A sent conversion as one poll found it, with what every outcome below reports through. */
interface Poll {
  readonly deps: StageDeps;
  readonly conversion: Selectable<ConversionsTable>;
  readonly log: Logger;
}

/** conversion_poll */
export async function pollConversion(deps: StageDeps, conversionId: string): Promise<void> {
  const conversion = await deps.db
    .selectFrom('conversions')
    .selectAll()
    .where('conversion_id', '=', conversionId)
    .executeTakeFirstOrThrow();
  if (conversion.status !== 'sent') return;
  const poll: Poll = { deps, conversion, log: deps.logger.child({ conversionId, exchangeId: conversion.exchange_id }) };

  const outcomes = { onNoStatus, onFinished, onRefunded, onFailed, onStillWaiting };
  await followExchange(poll, conversion.exchange_id as string, outcomes);
}

/** ChangeNow gave no status. */
async function onNoStatus(poll: Poll, error: ChangeNowError): Promise<void> {
  // Whatever ChangeNow answers, the ETH is already there: keep looking until the deadline sends it to review.
  await reportNoStatus(
    poll,
    error,
    { message: 'ChangeNow refused a status request', ids: { conversionId: poll.conversion.conversion_id } },
    { event: 'conversion_poll_failed', message: 'ChangeNow unreachable; polling again later' },
  );
  await pollAgainUntilDeadline(poll, `no exchange status past the poll deadline (${error.code})`, {
    rule: 'conversion_stuck',
    message: 'no exchange status past the poll deadline; sent to review',
    details: { code: error.code },
  });
}

/** finished: booked only when the answer is the one asked for, within the slippage allowed, and the chain agrees. */
async function onFinished(poll: Poll, status: ExchangeStatus): Promise<void> {
  const { deps, conversion } = poll;
  const conversionId = conversion.conversion_id;
  // Paid out to another address than the host wallet, or for another deposit than the chain shows sent.
  const sent = formatUnits(BigInt(conversion.amount_wei), 18);
  const wrong = statusMismatch({ payoutAddress: deps.hostAddress, fromAmount: sent }, status, sent);
  if (wrong) {
    await toReview(deps, conversionId, `exchange ${status.id} finished unlike the request: ${wrong}`, {
      rule: 'exchange_mismatch',
      message: 'a conversion exchange finished unlike the request; not booked',
      details: { exchangeId: status.id },
    });
    return;
  }
  if (status.amountTo === null || status.payoutHash === null) {
    await toReview(
      deps,
      conversionId,
      `exchange ${status.id} finished without ${status.amountTo === null ? 'amountTo' : 'payoutHash'}`,
      { rule: 'conversion_unverifiable', message: 'finished exchange without amount or payout hash; sent to review' },
    );
    return;
  }
  const expected = parseUnitsFloor(status.amountTo, 6).units;
  // Judged on what would be booked (6 decimals): a rate that moved further than CHANGENOW_MAX_SLIPPAGE is a person's
  // call, though the USDT is on the host wallet; the way out is a resolve as received.
  const estimate = conversion.expected_usdt === null ? null : formatUnits(BigInt(conversion.expected_usdt), 6);
  const below =
    estimate === null ? null : belowEstimate(estimate, formatUnits(expected, 6), 'usdt', deps.settings.maxSlippage);
  if (below) {
    await toReview(deps, conversionId, `exchange ${status.id} finished below its estimate: ${below}; not booked`, {
      rule: 'conversion_below_estimate',
      message: 'conversion exchange finished further below its estimate than CHANGENOW_MAX_SLIPPAGE; not booked',
      details: { exchangeId: status.id, estimate, amountTo: status.amountTo, payoutHash: status.payoutHash },
    });
    return;
  }
  await settleIfOnChain(poll, status.amountTo, status.payoutHash, expected);
}

/** Book only what the chain shows arrived: ChangeNow's word alone does not credit channels. */
async function settleIfOnChain(poll: Poll, amountTo: string, payoutHash: string, expected: bigint): Promise<void> {
  const { deps, conversion } = poll;
  const conversionId = conversion.conversion_id;
  const received = deps.usdtContract
    ? await deps.wallet.tokenReceived(payoutHash as `0x${string}`, deps.usdtContract, deps.hostAddress as `0x${string}`)
    : null;
  if (received === null) {
    await pollAgainUntilDeadline(poll, `payout ${payoutHash} not found on chain by the poll deadline`, {
      rule: 'conversion_payout_missing',
      message: 'ChangeNow payout not found on chain; sent to review',
      details: { payoutHash },
    });
    return;
  }
  if (received < expected) {
    await toReview(
      deps,
      conversionId,
      `ChangeNow reports ${amountTo} USDT but payout ${payoutHash} brought ${formatUnits(received, 6)}`,
      {
        rule: 'conversion_payout_short',
        message: 'ChangeNow payout short; sent to review',
        details: { payoutHash, expected: expected.toString(), received: received.toString() },
      },
    );
    return;
  }
  deps.crashPoint?.('before_settle');
  await settle(deps, conversionId, amountTo, payoutHash);
}

/** refunded: the payments go back to pending only once the chain shows the whole ETH back on the host wallet. */
async function onRefunded(poll: Poll, status: ExchangeStatus): Promise<void> {
  const { deps, conversion } = poll;
  const refunded =
    status.refundHash === null
      ? null
      : await deps.wallet.nativeReceived(status.refundHash as `0x${string}`, deps.hostAddress as `0x${string}`);
  if (refunded === null) {
    await pollAgainUntilDeadline(
      poll,
      `exchange refunded, but refund ${status.refundHash ?? '(no hash)'} is not visible on chain`,
      {
        rule: 'conversion_refund_missing',
        message: 'refund not found on chain; sent to review',
        details: { refundHash: status.refundHash },
      },
    );
    return;
  }
  const sent = BigInt(conversion.amount_wei);
  if (!withinTolerance(sent, refunded, deps.settings.refundTolerance)) {
    await toReview(
      deps,
      conversion.conversion_id,
      `exchange refunded ${formatUnits(refunded, 18)} of ${formatUnits(sent, 18)} ETH (refund ${status.refundHash}), short by more than CHANGENOW_REFUND_TOLERANCE`,
      {
        rule: 'conversion_refund_short',
        message: 'refund short of the ETH sent; sent to review',
        details: { refundHash: status.refundHash },
      },
    );
    return;
  }
  await returnRefunded(poll, status.refundHash as string, refunded);
}

/** A refund seen on chain, whole within the tolerance: the payments are released, once per refund hash. */
async function returnRefunded(poll: Poll, refundHash: string, refunded: bigint): Promise<void> {
  const { deps, conversion, log } = poll;
  const conversionId = conversion.conversion_id;
  const sent = BigInt(conversion.amount_wei);
  const short = sent > refunded ? `; ${formatUnits(sent - refunded, 18)} ETH short, booked as ChangeNow's cost` : '';
  const claimed = await deps.db.transaction().execute(async (trx) => {
    const current = await conversionForUpdate(trx, conversionId).executeTakeFirstOrThrow();
    if (current.status !== 'sent') return 'moved' as const;
    return returnConversionFunds(
      trx,
      conversionId,
      refundHash,
      refunded,
      `exchange refunded (refund ${refundHash})${short}`,
    );
  });
  if (claimed === 'moved') return;
  if (!claimed) {
    await toReview(deps, conversionId, `refund ${refundHash} already returned funds for something else`, {
      rule: 'conversion_refund_reused',
      message: 'refund hash already used; sent to review',
      details: { refundHash },
    });
    return;
  }
  // Its alert is shaped as every stage's (stageAlert); the rule, subject and words are this step's own.
  await stageAlert(deps, log, {
    rule: 'conversion_refunded',
    subject: conversionId,
    severity: 'critical',
    message: 'conversion exchange refunded; payments back to pending',
    details: { conversionId },
  });
}

/** failed or expired: the ETH went to ChangeNow and has not come back. */
async function onFailed(poll: Poll, status: ExchangeStatus): Promise<void> {
  await toReview(
    poll.deps,
    poll.conversion.conversion_id,
    `exchange ${status.status}; the ETH sent has not come back`,
    {
      rule: 'conversion_failed',
      message: 'conversion exchange failed; sent to review',
      details: { exchangeStatus: status.status },
    },
  );
}

/** Any other status: the exchange is still under way. */
async function onStillWaiting(poll: Poll, status: ExchangeStatus): Promise<void> {
  await pollAgainUntilDeadline(poll, `exchange still ${status.status} past the poll deadline`, {
    rule: 'conversion_stuck',
    message: 'conversion exchange past its deadline; sent to review',
    details: { exchangeStatus: status.status },
  });
}

/** Not seen through yet: looked at again after the poll interval, or, past the poll deadline, handed to a person. */
async function pollAgainUntilDeadline(poll: Poll, reason: string, alert: ReviewAlert): Promise<void> {
  const { deps, conversion } = poll;
  const conversionId = conversion.conversion_id;
  if (conversion.poll_deadline_at && Date.now() > conversion.poll_deadline_at.getTime()) {
    await toReview(deps, conversionId, reason, alert);
    return;
  }
  await deps.db
    .transaction()
    .execute((trx) =>
      enqueuePoll(trx, conversionId, new Date(Date.now() + deps.settings.pollIntervalMs), { again: true }),
    );
}

async function settle(deps: StageDeps, conversionId: string, amountTo: string, payoutHash: string): Promise<void> {
  const { units: usdtUnits, droppedFraction } = parseUnitsFloor(amountTo, 6);
  const hash = payoutHash.toLowerCase();
  const opening = { settings: openingSettings(deps), sent: [] as string[] };
  const settled = await deps.db
    .transaction()
    .execute((trx) => settleIn(trx, conversionId, usdtUnits, hash, 'sent', opening));
  if (typeof settled === 'string') {
    const usedBy =
      settled === 'hash_deposit' ? 'is booked as an operator deposit' : `already ${settled.slice('hash_used:'.length)}`;
    await toReview(deps, conversionId, `payout ${hash} ${usedBy}`, {
      rule: 'conversion_payout_reused',
      message: 'ChangeNow named a payout already credited; sent to review',
      details: { payoutHash: hash },
    });
    return;
  }
  if (!settled) return;
  deps.logger.info(
    { event: 'conversion_settled', conversionId, usdtUnits: usdtUnits.toString(), droppedFraction },
    'conversion settled',
  );
  for (const payoutId of opening.sent)
    deps.logger.info(
      { event: 'payout_transfer_created', payoutId, asset: 'usdt', conversionId },
      'direct payout transfer recorded as its batch was opened',
    );
}

/**
 * Books the conversion's USDT (`usdtUnits`, brought to the host wallet by `hash`) to its payments' channels, from
 * `from` (the poll: sent; a person's resolve: needs_review). True when booked; false when the conversion was no
 * longer in `from`; a string when the hash already credited another conversion or is an operator's deposit.
 * With `opening`, the direct batches the settlement opens are sent as they are opened, their ids added to its
 * `sent` (checkThresholds); without, every batch gets its run.
 */
export async function settleIn(
  trx: Transaction<Database>,
  conversionId: string,
  usdtUnits: bigint,
  hash: string,
  from: 'sent' | 'needs_review',
  opening?: { readonly settings: OpeningSettings; readonly sent: string[] },
): Promise<boolean | `hash_used:${string}` | 'hash_deposit'> {
  const conversion = await conversionForUpdate(trx, conversionId).executeTakeFirstOrThrow();
  if (conversion.status !== from) return false;
  const used = await hashTakenElsewhere(trx, conversionId, hash);
  if (used !== null) return used;
  const split = await splitAmongPayments(trx, conversion, usdtUnits);
  await markSettled(trx, conversion, usdtUnits, hash, split);
  const sent = await bookSettlement(trx, conversionId, usdtUnits, split, opening?.settings);
  opening?.sent.push(...sent);
  return true;
}

/** Why `hash` cannot be this conversion's proceeds, or null when it can. */
async function hashTakenElsewhere(
  trx: Transaction<Database>,
  conversionId: string,
  hash: string,
): Promise<`hash_used:${string}` | 'hash_deposit' | null> {
  // One USDT payout credits one conversion: a hash ChangeNow already named for another would pass the chain
  // check a second time.
  await lockInboundHash(trx, hash);
  const other = await trx
    .selectFrom('conversions')
    .select('conversion_id')
    .where('payout_hash', '=', hash)
    .where('conversion_id', '<>', conversionId)
    .executeTakeFirst();
  if (other) return `hash_used:credited conversion ${other.conversion_id}` as const;
  if (await isBookedDeposit(trx, hash)) return 'hash_deposit' as const;
  // A refund already returned funds to a payout or conversion: the same USDT cannot also be this one's proceeds.
  const refund = await trx
    .selectFrom('chain_refunds')
    .select(['purpose', 'ref'])
    .where('tx_hash', '=', hash)
    .executeTakeFirst();
  if (refund) return `hash_used:returned funds for ${refund.purpose} ${refund.ref}` as const;
  return null;
}

/** The conversion's payments with each one's USDT share, in proportion to its net ETH. */
interface Split {
  readonly paymentIds: string[];
  readonly channelIds: string[];
  readonly weights: bigint[];
  readonly shares: bigint[];
  readonly totalWei: bigint;
  readonly rate: string;
}

async function splitAmongPayments(
  trx: Transaction<Database>,
  conversion: Selectable<ConversionsTable>,
  usdtUnits: bigint,
): Promise<Split> {
  const conversionId = conversion.conversion_id;
  const rows = await trx
    .selectFrom('conversion_payments')
    .selectAll()
    .where('conversion_id', '=', conversionId)
    .orderBy('payment_id')
    .execute();
  const weights = rows.map((r) => BigInt(r.net_wei));
  const totalWei = weights.reduce((a, b) => a + b, 0n);
  if (totalWei !== BigInt(conversion.amount_wei))
    throw new Error(
      `conversion ${conversionId}: payments sum to ${totalWei}, conversion holds ${conversion.amount_wei}`,
    );
  return {
    paymentIds: rows.map((r) => r.payment_id),
    channelIds: rows.map((r) => r.channel_id),
    weights,
    shares: splitProportionally(usdtUnits, weights),
    totalWei,
    rate: usdtPerEth(usdtUnits, totalWei),
  };
}

async function markSettled(
  trx: Transaction<Database>,
  conversion: Pick<Selectable<ConversionsTable>, 'conversion_id' | 'status'>,
  usdtUnits: bigint,
  hash: string,
  split: Split,
): Promise<void> {
  const conversionId = conversion.conversion_id;
  const { paymentIds: ids, rate } = split;
  // Two statements for the whole batch, however many payments it carries.
  const units = split.shares.map((x) => x.toString());
  await sql`update conversion_payments c set usdt_share = s.share
    from unnest(${ids}::numeric[], ${units}::numeric[]) as s(payment_id, share)
    where c.conversion_id = ${conversionId} and c.payment_id = s.payment_id`.execute(trx);
  // A topped-up payment's second conversion adds to what its first one brought.
  await sql`update payments p set conversion_status = 'completed', usdt_amount = coalesce(p.usdt_amount, 0) + s.share, conversion_rate = ${rate}::numeric, updated_at = now()
    from unnest(${ids}::numeric[], ${units}::numeric[]) as s(payment_id, share)
    where p.payment_id = s.payment_id`.execute(trx);
  const settled = await trx
    .updateTable('conversions')
    .set({
      status: 'completed',
      usdt_received: usdtUnits,
      rate,
      payout_hash: hash,
      completed_at: sql`now()`,
      updated_at: sql`now()`,
    })
    .where('conversion_id', '=', conversionId)
    // The state settleIn found it in under its row lock: a settlement leaves only that one.
    .where('status', '=', conversion.status)
    .executeTakeFirst();
  if (settled.numUpdatedRows !== 1n)
    throw new Error(`conversion ${conversionId} is no longer ${conversion.status} under its row lock`);
}

/** The threshold check on the channels credited, then the settlement's and the thresholds' journals. */
async function bookSettlement(
  trx: Transaction<Database>,
  conversionId: string,
  usdtUnits: bigint,
  split: Split,
  sendWith: OpeningSettings | undefined,
): Promise<string[]> {
  const { channelIds, weights, shares, totalWei } = split;
  const incoming = new Map<string, bigint>();
  channelIds.forEach((id, i) => incoming.set(id, (incoming.get(id) ?? 0n) + (shares[i] as bigint)));
  const thresholds = await checkThresholds(trx, [...incoming.keys()], incoming, sendWith ? { sendWith } : {});
  // Journals last, in one statement and one ledger group: their balance rows are locked once, in id order, and stay
  // locked only from here to the commit.
  const settlement = {
    kind: 'conversion_settled',
    ref: conversionId,
    entries: settlementEntries(channelIds, weights, shares, totalWei, usdtUnits),
  };
  await inLedgerGroup(trx, () => postJournals(trx, [settlement, ...thresholds.journals]));
  return thresholds.sent;
}

/** Per channel: ETH out of its balance, USDT in; ChangeNow took the ETH and gave the USDT. */
function settlementEntries(
  channelIds: string[],
  weights: bigint[],
  shares: bigint[],
  totalWei: bigint,
  usdtUnits: bigint,
): EntryInput[] {
  const ethByChannel = new Map<string, bigint>();
  const usdtByChannel = new Map<string, bigint>();
  channelIds.forEach((id, i) => {
    ethByChannel.set(id, (ethByChannel.get(id) ?? 0n) + (weights[i] as bigint));
    usdtByChannel.set(id, (usdtByChannel.get(id) ?? 0n) + (shares[i] as bigint));
  });
  const entries: EntryInput[] = [{ account: accounts.changenow('eth'), amount: totalWei }];
  for (const [id, wei] of ethByChannel) entries.push({ account: accounts.channel(id, 'eth'), amount: -wei });
  if (usdtUnits > 0n) {
    entries.push({ account: accounts.changenow('usdt'), amount: -usdtUnits });
    for (const [id, units] of usdtByChannel)
      if (units > 0n) entries.push({ account: accounts.channel(id, 'usdt'), amount: units });
  }
  return entries;
}

/** USDT per ETH with 12 decimals, rounded down: (units / 10^6) / (wei / 10^18). */
export function usdtPerEth(usdtUnits: bigint, wei: bigint): string {
  return formatUnits((usdtUnits * 10n ** 24n) / wei, 12);
}
