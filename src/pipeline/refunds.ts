/**
 * Refunds seen on chain are used once: a transaction hash that returned funds for one conversion or payout can never
 * return funds for another (ChangeNow reporting one hash twice, or a hash that paid something else).
 */
import type { Transaction } from 'kysely';
import type { Database } from '../db/index.ts';
import { isBookedDeposit, lockInboundHash } from '../treasury/inbound.ts';

export interface RefundClaim {
  txHash: string;
  purpose: 'conversion' | 'payout';
  ref: string;
  asset: 'eth' | 'usdt';
  amount: bigint;
}

/** True when this hash is now recorded for this purpose and ref (or already was); false when something else used it. */
export async function claimRefund(trx: Transaction<Database>, claim: RefundClaim): Promise<boolean> {
  const txHash = claim.txHash.toLowerCase();
  await lockInboundHash(trx, txHash);
  if (await isBookedDeposit(trx, txHash)) return false;
  // A conversion's USDT payout already credited channels: it cannot also be a refund.
  const payout = await trx
    .selectFrom('conversions')
    .select('conversion_id')
    .where('payout_hash', '=', txHash)
    .executeTakeFirst();
  if (payout) return false;
  await trx
    .insertInto('chain_refunds')
    .values({ tx_hash: txHash, purpose: claim.purpose, ref: claim.ref, asset: claim.asset, amount: claim.amount })
    .onConflict((oc) => oc.doNothing())
    .execute();
  const row = await trx
    .selectFrom('chain_refunds')
    .select(['purpose', 'ref'])
    .where('tx_hash', '=', txHash)
    .executeTakeFirstOrThrow();
  return row.purpose === claim.purpose && row.ref === claim.ref;
}
