/**
 * Following a sent payout's exchange until it ends. `finished`: completed, with the amount the owner received and
 * the payout hash (review when ChangeNow names no amount, or one too far below the estimate). `refunded`: the refund
 * is checked on chain; when the whole amount came back to the host wallet it returns to the channel's balance,
 * otherwise a person decides. `failed`/`expired`, or no end by the deadline: review. Every ending raises an alert
 * except success.
 */
import type { Hex } from 'viem';
import type { ChangeNowError, ExchangeStatus } from '../../integrations/changenow/index.ts';
import { accounts } from '../../ledger/index.ts';
import { decimalsOf, formatUnits, withinTolerance } from '../../money/index.ts';
import type { Logger } from '../../log.ts';
import type { StageDeps } from '../interfaces.ts';
import { ChainUnavailableError } from '../../integrations/wallet/index.ts';
import { claimRefund } from '../refunds.ts';
import { followExchange, reportNoStatus } from '../follow-exchange.ts';
import { judgeFinish } from './finished.ts';
import { pollCompanions } from './poll-set.ts';
import {
  completeIn,
  enqueuePayoutPoll,
  loadPayout,
  payoutForUpdate,
  returnFundsIn,
  toReview,
  type Payout,
} from './run.ts';

/** A sent payout as one poll found it, with what every outcome below reports through. */
interface Poll {
  readonly deps: StageDeps;
  readonly payout: Payout;
  readonly log: Logger;
  /** Whether the poll deadline had passed when this poll began, before ChangeNow was asked. */
  readonly pastDeadline: boolean;
}

/** payout_poll */
export async function pollPayout(deps: StageDeps, payoutId: string): Promise<void> {
  const payout = await loadPayout(deps.db, payoutId);
  if (payout.status !== 'sent' || payout.exchange_id === null) return;
  const poll: Poll = {
    deps,
    payout,
    log: deps.logger.child({ payoutId, exchangeId: payout.exchange_id }),
    pastDeadline: payout.poll_deadline_at !== null && Date.now() > payout.poll_deadline_at.getTime(),
  };

  const outcomes = { onNoStatus, onFinished, onRefunded, onFailed, onStillWaiting };
  await followExchange(poll, payout.exchange_id, outcomes);
}

/** ChangeNow gave no status. */
async function onNoStatus(poll: Poll, error: ChangeNowError): Promise<void> {
  // The funds are at ChangeNow whatever it answers now: keep looking until the deadline sends the payout to review.
  await reportNoStatus(
    poll,
    error,
    { message: 'ChangeNow refused a payout status request', ids: { payoutId: poll.payout.payout_id } },
    { event: 'payout_poll_failed', message: 'ChangeNow unreachable; polling the payout again later' },
  );
  await pollAgainUntilDeadline(poll, `no exchange status past the poll deadline (${error.code})`, 'payout_stuck');
}

/** finished: completed with what ChangeNow paid the owner, unless the answer is not the one asked for. */
async function onFinished(poll: Poll, status: ExchangeStatus): Promise<void> {
  const { deps, payout } = poll;
  const finish = judgeFinish(deps, payout, status);
  if (finish.to === 'mismatch') {
    await toReview(
      deps,
      payout.payout_id,
      `exchange ${status.id} finished unlike the request: ${finish.wrong}`,
      'exchange_mismatch',
    );
    return;
  }
  if (finish.to === 'unverifiable') {
    await finishedToReview(
      poll,
      status,
      `exchange ${status.id} finished without amountTo: what the owner received is unknown; not booked as completed`,
      'payout_unverifiable',
    );
    return;
  }
  if (finish.to === 'below_estimate') {
    await finishedToReview(
      poll,
      status,
      `exchange ${status.id} finished below its estimate: ${finish.below}; the owner was paid that, not booked as completed`,
      'payout_below_estimate',
    );
    return;
  }
  deps.crashPoint?.('payout_before_complete');
  // The payouts whose polls wait behind this one have likely finished too: they are completed together from here.
  if (await complete(poll, finish.amountOut, status.payoutHash)) await pollCompanions(deps, payout);
}

/**
 * The owner has it and nothing can take it back: not booked as completed, never paid again. What ChangeNow reports
 * paying is kept with the review, so that a resolve as paid records what the owner received.
 */
async function finishedToReview(poll: Poll, status: ExchangeStatus, reason: string, alert: string): Promise<void> {
  const { deps, payout } = poll;
  await deps.db.transaction().execute(async (trx) => {
    if (!(await toReview(deps, payout.payout_id, reason, alert, trx))) return;
    await trx
      .updateTable('payouts')
      .set({ amount_out: status.amountTo, payout_hash: status.payoutHash })
      .where('payout_id', '=', payout.payout_id)
      .where('status', '=', 'needs_review')
      .execute();
  });
}

/** True when this poll completed the payout (false: another poll, or a set, did it first). */
async function complete(poll: Poll, amountOut: string, payoutHash: string | null): Promise<boolean> {
  const { deps, payout, log } = poll;
  const moved = await deps.db.transaction().execute(async (trx) => {
    const current = await payoutForUpdate(trx, payout.payout_id).executeTakeFirstOrThrow();
    return completeIn(trx, current, { amountOut, payoutHash, counterparty: accounts.changenow(current.asset) });
  });
  if (moved)
    log.info(
      { event: 'payout_completed', amountOut, currency: payout.payout_currency, payoutHash },
      'payout completed',
    );
  return moved;
}

/** refunded: back on the channel's balance once the chain shows (nearly) all of it on the host wallet. */
async function onRefunded(poll: Poll, status: ExchangeStatus): Promise<void> {
  const { deps, payout } = poll;
  const refunded = status.refundHash === null ? null : await refundedAmount(deps, payout, status.refundHash as Hex);
  if (refunded === null) {
    await pollAgainUntilDeadline(
      poll,
      `exchange refunded, but refund ${status.refundHash ?? '(no hash)'} is not visible on chain`,
      'payout_refund_missing',
    );
    return;
  }
  const amount = BigInt(payout.amount);
  if (!withinTolerance(amount, refunded, deps.settings.refundTolerance)) {
    await toReview(
      deps,
      payout.payout_id,
      `exchange refunded ${shown(payout, refunded)} of ${shown(payout, amount)} (refund ${status.refundHash}), short by more than CHANGENOW_REFUND_TOLERANCE`,
      'payout_refund_short',
    );
    return;
  }
  await returnRefunded(poll, status.refundHash as string, refunded);
}

/** A refund seen on chain, whole within the tolerance: the funds go back to the channel, once per refund hash. */
async function returnRefunded(poll: Poll, refundHash: string, refunded: bigint): Promise<void> {
  const { deps, payout, log } = poll;
  const payoutId = payout.payout_id;
  const amount = BigInt(payout.amount);
  // A refund less network fees: what did not come back is ChangeNow's cost; more than was sent is not the channel's.
  const back = refunded < amount ? refunded : amount;
  const short = back < amount ? `; ${shown(payout, amount - back)} short, booked as ChangeNow's cost` : '';
  const returned = await deps.db.transaction().execute(async (trx) => {
    const current = await payoutForUpdate(trx, payoutId).executeTakeFirstOrThrow();
    if (current.status !== 'sent') return 'moved';
    if (
      !(await claimRefund(trx, {
        txHash: refundHash,
        purpose: 'payout',
        ref: payoutId,
        asset: current.asset,
        amount: refunded,
      }))
    )
      return 'hash_used';
    await returnFundsIn(
      trx,
      current,
      'failed',
      `exchange refunded (refund ${refundHash}); ${shown(payout, back)} back on the channel's balance${short}`,
      back,
    );
    return 'returned';
  });
  if (returned === 'hash_used')
    await toReview(
      deps,
      payoutId,
      `refund ${refundHash} already returned funds for something else`,
      'payout_refund_reused',
    );
  if (returned === 'returned')
    log.error(
      { event: 'alert', alert: 'payout_refunded', refundHash },
      'payout exchange refunded; funds back on the channel balance',
    );
}

/** failed or expired: the funds went to ChangeNow and have not come back. */
async function onFailed(poll: Poll, status: ExchangeStatus): Promise<void> {
  await toReview(
    poll.deps,
    poll.payout.payout_id,
    `exchange ${status.status}; the funds sent have not come back`,
    'payout_exchange_failed',
  );
}

/** Any other status: the exchange is still under way. */
async function onStillWaiting(poll: Poll, status: ExchangeStatus): Promise<void> {
  await pollAgainUntilDeadline(poll, `exchange still ${status.status} past the poll deadline`, 'payout_stuck');
}

/**
 * Not seen through yet: looked at again after the poll interval, or, past the poll deadline, handed to a person.
 * Apart from the conversion's: the deadline here is judged as the poll began, and each has its own job and review.
 */
async function pollAgainUntilDeadline(poll: Poll, reason: string, alert: string): Promise<void> {
  const { deps, payout } = poll;
  if (poll.pastDeadline) {
    await toReview(deps, payout.payout_id, reason, alert);
    return;
  }
  await deps.db
    .transaction()
    .execute((trx) => enqueuePayoutPoll(trx, payout.payout_id, new Date(Date.now() + deps.settings.pollIntervalMs)));
}

/** An amount of the payout's asset as a person reads it. */
function shown(payout: Payout, units: bigint): string {
  return `${formatUnits(units, decimalsOf(payout.asset))} ${payout.asset.toUpperCase()}`;
}

/**
 * What the refund transaction brought back to the host wallet, in the payout's asset; null when not visible (yet),
 * or when the chain cannot be asked now: the deadline, not a job failure, decides when to stop looking.
 */
async function refundedAmount(deps: StageDeps, payout: Payout, hash: Hex): Promise<bigint | null> {
  const host = deps.hostAddress as Hex;
  try {
    if (payout.asset === 'eth') return await deps.wallet.nativeReceived(hash, host);
    if (!deps.usdtContract) return null;
    return await deps.wallet.tokenReceived(hash, deps.usdtContract, host);
  } catch (error) {
    if (!(error instanceof ChainUnavailableError)) throw error;
    deps.logger.warn(
      { event: 'payout_refund_check_failed', payoutId: payout.payout_id, err: error.message },
      'chain unreachable; checking the refund later',
    );
    return null;
  }
}
