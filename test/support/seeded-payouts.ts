/**
 * What every seeded payout is made of, whichever seeder writes it: the credited payment it pays, its row when it is an
 * instant payout, and the journals that set its funds aside and send them, booked as the payout stages book them.
 */
import type { Transaction } from 'kysely';
import type { Database, PayoutStatus } from '../../src/db/index.ts';
import { accounts, postJournal, type AccountRef } from '../../src/ledger/index.ts';

type Trx = Transaction<Database>;

/** A credited payment as a payout sees it: the channel it was credited to and its net in wei. */
export async function creditedPayment(trx: Trx, paymentId: string): Promise<{ channelId: string; net: bigint }> {
  const payment = await trx
    .selectFrom('payments')
    .selectAll()
    .where('payment_id', '=', paymentId)
    .executeTakeFirstOrThrow();
  return { channelId: payment.channel_id, net: BigInt(payment.net_amount as string) };
}

/** The columns an instant payout of one payment always has: the payment's whole net, in ETH. */
export function instantPayoutRow(
  payoutId: string,
  channelId: string,
  paymentId: string,
  status: PayoutStatus,
  net: bigint,
) {
  return {
    payout_id: payoutId,
    kind: 'instant' as const,
    channel_id: channelId,
    payment_id: paymentId,
    status,
    asset: 'eth' as const,
    amount: net,
  };
}

/** `amount` of the channel's `asset` set aside for the payout (payout_reserved). */
export async function reservePayout(trx: Trx, payoutId: string, channelId: string, asset: string, amount: bigint) {
  await postJournal(trx, {
    kind: 'payout_reserved',
    ref: payoutId,
    entries: [
      { account: accounts.channel(channelId, asset), amount: -amount },
      { account: accounts.channelPayout(channelId, asset), amount },
    ],
  });
}

/** What reservePayout set aside, gone to `to` (payout_completed): the owner, or the exchange that pays them. */
export async function completePayout(
  trx: Trx,
  payoutId: string,
  channelId: string,
  asset: string,
  amount: bigint,
  to: AccountRef,
) {
  await postJournal(trx, {
    kind: 'payout_completed',
    ref: payoutId,
    entries: [
      { account: accounts.channelPayout(channelId, asset), amount: -amount },
      { account: to, amount },
    ],
  });
}
