/**
 * A person's actions on a payout: retry, cancel, approve. Each is allowed only from states where it is safe, takes
 * the payout's row lock (so it cannot race a running job's guarded transitions), and is kept in the audit log with
 * the acting token's name.
 *
 * Whether funds may have left decides what is safe: a payout whose transfer exists and has not failed has (or may
 * have) sent them, so it is never cancelled; retrying it only looks at ChangeNow again.
 */
import { sql, type Transaction, type Updateable } from 'kysely';
import type { Database, Db, PayoutsTable, PayoutStatus } from '../db/index.ts';
import { enqueuePayoutPoll, enqueuePayoutRun, isDirect, returnFundsIn, type Payout } from './payout.ts';

export type PayoutAction = 'retry' | 'cancel' | 'approve';

export class PayoutActionRefused extends Error {
  override name = 'PayoutActionRefused';
}

export interface PayoutActionResult {
  readonly payoutId: string;
  readonly from: PayoutStatus;
  readonly to: PayoutStatus;
}

export async function applyPayoutAction(db: Db, payoutId: string, action: PayoutAction, actor: string, pollDeadlineMs: number): Promise<PayoutActionResult | null> {
  return db.transaction().execute(async (trx) => {
    const payout = await trx.selectFrom('payouts').selectAll().where('payout_id', '=', payoutId).forUpdate().executeTakeFirst();
    if (!payout) return null;
    const transfer = payout.transfer_id === null ? undefined : await trx.selectFrom('chain_transfers').select('status').where('transfer_id', '=', payout.transfer_id).executeTakeFirst();
    const fundsMayHaveLeft = transfer !== undefined && transfer.status !== 'failed';
    const to = await ACTIONS[action](trx, payout, { fundsMayHaveLeft, transferStatus: transfer?.status ?? null, actor, pollDeadlineMs });
    await trx
      .insertInto('audit_log')
      .values({ actor, action: `payout.${action}`, subject: payoutId, details: JSON.stringify({ from: payout.status, to, reason: payout.reason }) })
      .execute();
    return { payoutId, from: payout.status, to };
  });
}

interface Context {
  fundsMayHaveLeft: boolean;
  transferStatus: string | null;
  actor: string;
  pollDeadlineMs: number;
}

type Handler = (trx: Transaction<Database>, payout: Payout, context: Context) => Promise<PayoutStatus>;

const ACTIONS: Record<PayoutAction, Handler> = {
  async retry(trx, payout, context) {
    const id = payout.payout_id;
    if (payout.status === 'held') {
      await set(trx, id, { status: 'pending', hold_until: null, reason: null, attempts: 0, last_error: null });
      await enqueuePayoutRun(trx, id);
      return 'pending';
    }
    if (payout.status !== 'needs_review') throw new PayoutActionRefused(`a ${payout.status} payout cannot be retried (only needs_review or held)`);
    if (payout.exchange_id !== null && context.transferStatus === 'confirmed') {
      // The funds are at ChangeNow: look again, with a fresh deadline.
      await set(trx, id, { status: 'sent', reason: null, poll_deadline_at: new Date(Date.now() + context.pollDeadlineMs) });
      await enqueuePayoutPoll(trx, id, new Date());
      return 'sent';
    }
    if (context.fundsMayHaveLeft) throw new PayoutActionRefused(`its transfer is ${context.transferStatus}: wait for it, it cannot be retried`);
    if (payout.transfer_id !== null) throw new PayoutActionRefused('its transfer failed and the funds never left: cancel it to return them to the channel');
    if (isDirect(payout)) {
      // A direct payout never asks ChangeNow for an exchange (exchange_requested would ask for one): it starts over
      // from pending, through the approval check to its one transfer.
      await set(trx, id, { status: 'pending', reason: null, attempts: 0, last_error: null });
      await enqueuePayoutRun(trx, id);
      return 'pending';
    }
    // An exchange may have been asked for: the run looks for it at ChangeNow before creating one.
    await set(trx, id, { status: 'exchange_requested', reason: null, attempts: 0, last_error: null });
    await enqueuePayoutRun(trx, id);
    return 'exchange_requested';
  },
  async cancel(trx, payout, context) {
    const cancellable: readonly PayoutStatus[] = ['pending', 'held', 'awaiting_approval', 'exchange_requested', 'needs_review'];
    if (!cancellable.includes(payout.status)) throw new PayoutActionRefused(`a ${payout.status} payout cannot be cancelled`);
    if (context.fundsMayHaveLeft) throw new PayoutActionRefused(`its transfer is ${context.transferStatus}: the funds may have left, so they cannot go back to the channel`);
    await returnFundsIn(trx, payout, 'cancelled', `cancelled by ${context.actor}`);
    return 'cancelled';
  },
  async approve(trx, payout, context) {
    if (payout.status !== 'awaiting_approval') throw new PayoutActionRefused(`a ${payout.status} payout is not awaiting approval`);
    await set(trx, payout.payout_id, { status: 'pending', approved_by: context.actor, approved_at: new Date() });
    await enqueuePayoutRun(trx, payout.payout_id);
    return 'pending';
  },
};

async function set(trx: Transaction<Database>, payoutId: string, values: Updateable<PayoutsTable>): Promise<void> {
  await trx.updateTable('payouts').set({ ...values, updated_at: sql`now()` }).where('payout_id', '=', payoutId).execute();
}
