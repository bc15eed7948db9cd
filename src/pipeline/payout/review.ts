/**
 * A person's actions on a payout: retry, cancel, approve, resolve. Each is allowed only from states where it is
 * safe, takes the payout's row lock (so it cannot race a running job's guarded transitions), and is kept in the
 * audit log with the acting token's name.
 *
 * Whether funds may have left decides what is safe: a payout whose transfer exists and has not failed has (or may
 * have) sent them, so it is never cancelled; retrying it only looks at ChangeNow again, and once a person knows
 * what became of those funds, resolve records it (paid, or what came back).
 */
import { sql, type Transaction, type Updateable } from 'kysely';
import { recordAudit } from '../../db/index.ts';
import type { Database, Db, PayoutsTable, PayoutStatus } from '../../db/index.ts';
import { accounts } from '../../ledger/index.ts';
import { decimalsOf, formatUnits, parseUnits } from '../../money/index.ts';
import { inboundAmount, InboundRefused, type HostChainReader } from '../inbound.ts';
import {
  completeIn,
  enqueuePayoutPoll,
  enqueuePayoutRun,
  isDirect,
  payoutForUpdate,
  returnFundsIn,
  UNLIKE_REQUEST,
  type Payout,
} from './run.ts';
import { claimRefund } from '../refunds.ts';
import { resumeTransfer, type Transfer } from '../transfer/index.ts';

export type PayoutAction = 'retry' | 'cancel' | 'approve' | 'resolve';

/**
 * A person's finding about a payout in review whose funds left: the owner was paid, or (part of) them came back, in
 * the transaction named (read on chain before anything is booked; none when nothing came back).
 */
export type Resolution =
  { outcome: 'paid'; note?: string } | { outcome: 'returned'; amount: string; txHash?: string; note?: string };

export class PayoutActionRefused extends Error {
  override name = 'PayoutActionRefused';
}

/** The request itself is wrong (an amount the asset cannot hold, say): a 400, whatever the payout's state. */
export class PayoutActionInvalid extends Error {
  override name = 'PayoutActionInvalid';
}

export interface PayoutActionResult {
  readonly payoutId: string;
  readonly from: PayoutStatus;
  readonly to: PayoutStatus;
}

export async function applyPayoutAction(
  db: Db,
  payoutId: string,
  action: PayoutAction,
  actor: string,
  options: { pollDeadlineMs: number; resolution?: Resolution; chain?: HostChainReader | undefined },
): Promise<PayoutActionResult | null> {
  // The chain is read before the payout's row lock (a slow node must not hold it); the transaction checks the state.
  let arrived: bigint | undefined;
  const resolution = options.resolution;
  if (action === 'resolve' && resolution?.outcome === 'returned' && resolution.txHash !== undefined) {
    const seen = await db.selectFrom('payouts').select('asset').where('payout_id', '=', payoutId).executeTakeFirst();
    if (!seen) return null;
    try {
      arrived = await inboundAmount(options.chain, resolution.txHash, seen.asset);
    } catch (error) {
      if (error instanceof InboundRefused) throw new PayoutActionRefused(error.message);
      throw error;
    }
  }
  return db.transaction().execute(async (trx) => {
    const payout = await payoutForUpdate(trx, payoutId).executeTakeFirst();
    if (!payout) return null;
    const transfer =
      payout.transfer_id === null
        ? undefined
        : await trx
            .selectFrom('chain_transfers')
            .select(['transfer_id', 'status', 'from_address'])
            .where('transfer_id', '=', payout.transfer_id)
            .executeTakeFirst();
    const fundsMayHaveLeft = transfer !== undefined && transfer.status !== 'failed';
    const to = await ACTIONS[action](trx, payout, {
      fundsMayHaveLeft,
      transfer,
      actor,
      pollDeadlineMs: options.pollDeadlineMs,
      arrived,
      ...(resolution && { resolution }),
    });
    await recordAudit(trx, {
      actor,
      action: `payout.${action}`,
      subject: payoutId,
      details: {
        from: payout.status,
        to,
        reason: payout.reason,
        ...(options.resolution && action === 'resolve' && { resolution: options.resolution }),
      },
    });
    return { payoutId, from: payout.status, to };
  });
}

interface Context {
  fundsMayHaveLeft: boolean;
  transfer: Pick<Transfer, 'transfer_id' | 'status' | 'from_address'> | undefined;
  actor: string;
  pollDeadlineMs: number;
  resolution?: Resolution;
  /** What the chain shows the resolution's txHash brought to the host wallet, in the payout's asset. */
  arrived: bigint | undefined;
}

type Handler = (trx: Transaction<Database>, payout: Payout, context: Context) => Promise<PayoutStatus>;

const ACTIONS: Record<PayoutAction, Handler> = {
  async retry(trx, payout, context) {
    const id = payout.payout_id;
    if (payout.status === 'held') {
      await set(trx, payout, { status: 'pending', hold_until: null, reason: null, attempts: 0, last_error: null });
      await enqueuePayoutRun(trx, id);
      return 'pending';
    }
    // A payout on its way whose job gave up (or was lost): queue the job for its state again; every step is
    // idempotent, so a second job where one still exists changes nothing.
    if (payout.status === 'pending' || payout.status === 'exchange_requested') {
      await enqueuePayoutRun(trx, id);
      return payout.status;
    }
    if (payout.status === 'exchange_created' || (payout.status === 'sent' && payout.exchange_id === null))
      return resumeItsTransfer(trx, payout, context);
    if (payout.status === 'sent') {
      await set(trx, payout, { poll_deadline_at: new Date(Date.now() + context.pollDeadlineMs) });
      await enqueuePayoutPoll(trx, id, new Date());
      return 'sent';
    }
    if (payout.status !== 'needs_review')
      throw new PayoutActionRefused(`a payout in state ${payout.status} cannot be retried`);
    return retryFromReview(trx, payout, context);
  },
  async cancel(trx, payout, context) {
    const cancellable: readonly PayoutStatus[] = [
      'pending',
      'held',
      'awaiting_approval',
      'exchange_requested',
      'needs_review',
    ];
    if (!cancellable.includes(payout.status))
      throw new PayoutActionRefused(`a payout in state ${payout.status} cannot be cancelled`);
    if (context.fundsMayHaveLeft)
      throw new PayoutActionRefused(
        `its transfer is ${context.transfer?.status}: the funds may have left, so they cannot go back to the channel (resolve it instead)`,
      );
    await returnFundsIn(trx, payout, 'cancelled', `cancelled by ${context.actor}`);
    return 'cancelled';
  },
  async approve(trx, payout, context) {
    if (payout.status !== 'awaiting_approval')
      throw new PayoutActionRefused(`a payout in state ${payout.status} is not awaiting approval`);
    await set(trx, payout, { status: 'pending', approved_by: context.actor, approved_at: new Date() });
    await enqueuePayoutRun(trx, payout.payout_id);
    return 'pending';
  },
  // The way out of review once the funds have left: a person records what happened to them.
  async resolve(trx, payout, context) {
    const resolution = context.resolution;
    if (!resolution)
      throw new PayoutActionRefused(
        'a resolution is required: {"outcome":"paid"} or {"outcome":"returned","amount":"...","txHash":"0x..."}',
      );
    if (payout.status !== 'needs_review')
      throw new PayoutActionRefused(`a payout in state ${payout.status} is not in review`);
    if (context.transfer?.status !== 'confirmed')
      throw new PayoutActionRefused('its funds never left (no confirmed transfer): retry or cancel it instead');
    const note = resolution.note ? `: ${resolution.note}` : '';
    if (resolution.outcome === 'paid') return resolvePaid(trx, payout, context.actor, note);
    return resolveReturned(trx, payout, resolution, context, note);
  },
};

/** A transfer on its way is its own jobs' to carry on; one in review is a person's to act on first. */
async function resumeItsTransfer(trx: Transaction<Database>, payout: Payout, context: Context): Promise<PayoutStatus> {
  if (context.transfer?.status === 'needs_review') {
    throw new PayoutActionRefused(
      `its transfer ${context.transfer.transfer_id} is in review: act on the transfer (POST /api/transfers/${context.transfer.transfer_id}/…), and this payout moves on from its outcome`,
    );
  }
  if (context.transfer) await resumeTransfer(trx, context.transfer);
  return payout.status;
}

async function retryFromReview(trx: Transaction<Database>, payout: Payout, context: Context): Promise<PayoutStatus> {
  const id = payout.payout_id;
  // Out of review, the reconciler's resumes start over: a person chose to try again.
  if (payout.exchange_id !== null && context.transfer?.status === 'confirmed') {
    // The funds are at ChangeNow: look again, with a fresh deadline.
    await set(trx, payout, {
      status: 'sent',
      reason: null,
      poll_deadline_at: new Date(Date.now() + context.pollDeadlineMs),
      reconcile_attempts: 0,
    });
    await enqueuePayoutPoll(trx, id, new Date());
    return 'sent';
  }
  refuseStartOver(payout, context);
  return startOver(trx, payout);
}

/** Starting over is for funds that never left and an exchange a retry would not find again. */
function refuseStartOver(payout: Payout, context: Context): void {
  if (context.fundsMayHaveLeft)
    throw new PayoutActionRefused(
      `its transfer is ${context.transfer?.status ?? null}: wait for it, it cannot be retried`,
    );
  if (payout.transfer_id !== null)
    throw new PayoutActionRefused(
      'its transfer failed and the funds never left: cancel it to return them to the channel',
    );
  if (Object.values(UNLIKE_REQUEST).some((prefix) => payout.reason?.startsWith(prefix))) {
    throw new PayoutActionRefused(
      'the exchange ChangeNow holds for it is not the one asked for, and a retry would find it again: cancel the payout to return its funds to the channel (nothing was sent)',
    );
  }
}

async function startOver(trx: Transaction<Database>, payout: Payout): Promise<PayoutStatus> {
  const id = payout.payout_id;
  if (isDirect(payout)) {
    // A direct payout never asks ChangeNow for an exchange (exchange_requested would ask for one): it starts over
    // from pending, through the approval check to its one transfer.
    await set(trx, payout, { status: 'pending', reason: null, attempts: 0, last_error: null, reconcile_attempts: 0 });
    await enqueuePayoutRun(trx, id);
    return 'pending';
  }
  // An exchange may have been asked for: the run looks for it at ChangeNow before creating one.
  await set(trx, payout, {
    status: 'exchange_requested',
    reason: null,
    attempts: 0,
    last_error: null,
    reconcile_attempts: 0,
  });
  await enqueuePayoutRun(trx, id);
  return 'exchange_requested';
}

async function resolvePaid(
  trx: Transaction<Database>,
  payout: Payout,
  actor: string,
  note: string,
): Promise<PayoutStatus> {
  const counterparty = payout.exchange_id === null ? accounts.payees(payout.asset) : accounts.changenow(payout.asset);
  // What ChangeNow reported paying when it went to review (an exchange finished below its estimate), else unknown.
  await completeIn(trx, payout, {
    amountOut: payout.amount_out,
    payoutHash: payout.payout_hash,
    counterparty,
    reason: `resolved as paid by ${actor}${note}`,
    from: 'needs_review',
  });
  return 'completed';
}

type Returned = Extract<Resolution, { outcome: 'returned' }>;

async function resolveReturned(
  trx: Transaction<Database>,
  payout: Payout,
  resolution: Returned,
  context: Context,
  note: string,
): Promise<PayoutStatus> {
  const returned = returnedAmount(payout, resolution, context.arrived);
  if (
    resolution.txHash !== undefined &&
    !(await claimRefund(trx, {
      txHash: resolution.txHash,
      purpose: 'payout',
      ref: payout.payout_id,
      asset: payout.asset,
      amount: returned,
    }))
  ) {
    throw new PayoutActionRefused(
      `${resolution.txHash.toLowerCase()} already backs something else (another refund, a conversion's payout or an operator deposit)`,
    );
  }
  const evidence =
    resolution.txHash === undefined
      ? 'nothing came back'
      : `${resolution.amount} ${payout.asset.toUpperCase()} came back (refund ${resolution.txHash.toLowerCase()})`;
  await returnFundsIn(trx, payout, 'failed', `resolved by ${context.actor}: ${evidence}${note}`, returned);
  return 'failed';
}

/** The amount said to have come back, in smallest units, once the chain and the payout agree it can have. */
function returnedAmount(payout: Payout, resolution: Returned, arrived: bigint | undefined): bigint {
  let returned: bigint;
  try {
    returned = parseUnits(resolution.amount, decimalsOf(payout.asset));
  } catch (error) {
    throw new PayoutActionInvalid(`amount: ${(error as Error).message}`);
  }
  const amount = BigInt(payout.amount);
  const show = (units: bigint) => `${formatUnits(units, decimalsOf(payout.asset))} ${payout.asset.toUpperCase()}`;
  // Believe the chain: what the owner's channel gets back is what a transaction brought to the host wallet.
  if (resolution.txHash === undefined) {
    if (returned > 0n)
      throw new PayoutActionInvalid(
        'txHash: name the transaction that brought the funds back to the host wallet (read on chain); without one, only amount "0" (nothing came back) is recorded',
      );
  } else {
    if (arrived !== returned)
      throw new PayoutActionRefused(
        `${resolution.txHash.toLowerCase()} brought ${show(arrived ?? 0n)} to the host wallet, not ${resolution.amount}`,
      );
  }
  if (returned > amount)
    throw new PayoutActionRefused(`amount: more than the payout's ${show(amount)} cannot have come back`);
  return returned;
}

/**
 * The payout's change, from the state it was read in under its row lock: the update names that state, so it can never
 * leave another one.
 */
async function set(trx: Transaction<Database>, payout: Payout, values: Updateable<PayoutsTable>): Promise<void> {
  const updated = await trx
    .updateTable('payouts')
    .set({ ...values, updated_at: sql`now()` })
    .where('payout_id', '=', payout.payout_id)
    .where('status', '=', payout.status)
    .executeTakeFirst();
  if (updated.numUpdatedRows !== 1n)
    throw new Error(`payout ${payout.payout_id} is no longer ${payout.status} under its row lock`);
}
