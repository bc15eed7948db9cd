/** The read side of payouts, amounts as decimal strings. */
import type { Selectable } from 'kysely';
import type { Db, PayoutsTable, PayoutStatus } from '../../db/index.ts';
import { decimalsOf, formatUnits } from '../../money/index.ts';

export interface PayoutView {
  readonly payoutId: string;
  readonly kind: 'threshold' | 'instant';
  readonly channelId: string;
  /** The payment an instant payout pays out. */
  readonly paymentId: string | null;
  readonly status: PayoutStatus;
  readonly asset: string;
  readonly amount: string;
  readonly payoutCurrency: string;
  readonly payoutNetwork: string;
  readonly walletAddress: string;
  readonly reason: string | null;
  readonly exchangeId: string | null;
  readonly payinAddress: string | null;
  readonly expectedAmountOut: string | null;
  /** What the owner received, in the payout currency (ChangeNow's figure, or the direct transfer's amount). */
  readonly amountOut: string | null;
  readonly payinHash: string | null;
  readonly payoutHash: string | null;
  readonly attempts: number;
  readonly lastError: string | null;
  readonly holdUntil: string | null;
  readonly approvedBy: string | null;
  readonly approvedAt: string | null;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly completedAt: string | null;
}

export async function listPayouts(
  db: Db,
  filter: { channelId?: string; status?: PayoutStatus; kind?: 'threshold' | 'instant'; limit: number },
): Promise<PayoutView[]> {
  let query = db
    .selectFrom('payouts')
    .leftJoin('chain_transfers', 'chain_transfers.transfer_id', 'payouts.transfer_id')
    .selectAll('payouts')
    .select('chain_transfers.tx_hash as payin_hash')
    .orderBy('payouts.created_at', 'desc')
    .limit(filter.limit);
  if (filter.channelId !== undefined) query = query.where('payouts.channel_id', '=', filter.channelId);
  if (filter.status !== undefined) query = query.where('payouts.status', '=', filter.status);
  if (filter.kind !== undefined) query = query.where('payouts.kind', '=', filter.kind);
  return (await query.execute()).map(toView);
}

export async function getPayout(db: Db, payoutId: string): Promise<PayoutView | null> {
  const row = await db
    .selectFrom('payouts')
    .leftJoin('chain_transfers', 'chain_transfers.transfer_id', 'payouts.transfer_id')
    .selectAll('payouts')
    .select('chain_transfers.tx_hash as payin_hash')
    .where('payouts.payout_id', '=', payoutId)
    .executeTakeFirst();
  return row ? toView(row) : null;
}

const iso = (d: Date | null) => (d === null ? null : d.toISOString());

function toView(row: Selectable<PayoutsTable> & { payin_hash: string | null }): PayoutView {
  return {
    payoutId: row.payout_id,
    kind: row.kind,
    channelId: row.channel_id,
    paymentId: row.payment_id,
    status: row.status,
    asset: row.asset,
    amount: formatUnits(BigInt(row.amount), decimalsOf(row.asset)),
    payoutCurrency: row.payout_currency,
    payoutNetwork: row.payout_network,
    walletAddress: row.wallet_address,
    reason: row.reason,
    exchangeId: row.exchange_id,
    payinAddress: row.payin_address,
    expectedAmountOut: row.expected_amount_out,
    amountOut: row.amount_out,
    payinHash: row.payin_hash,
    payoutHash: row.payout_hash,
    attempts: row.attempts,
    lastError: row.last_error,
    holdUntil: iso(row.hold_until),
    approvedBy: row.approved_by,
    approvedAt: iso(row.approved_at),
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    completedAt: iso(row.completed_at),
  };
}
