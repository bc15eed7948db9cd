/**
 * Payouts, conversions and transfers seeded in any state, as the pipeline leaves them there: each of one fresh
 * credited payment, the payment linked to it, its reservation in the ledger while a payout is open, and the transfer
 * beneath it in a chosen state. Tests that act on every state (the admin fuzz, the state machine) start from these:
 * the pipeline would need the outside world's cooperation, and minutes, to reach some of them.
 */
import { randomBytes } from 'node:crypto';
import type { Transaction } from 'kysely';
import type { ConversionState, Database, PayoutStatus, TransferStatus } from '../../src/db/index.ts';
import { releasePaymentsIn } from '../../src/pipeline/conversion/run.ts';
import { settleIn } from '../../src/pipeline/conversion/settle.ts';
import type { TestDatabase } from './db.ts';
import { TRON_WALLET } from './payouts.ts';
import { creditedPayment, instantPayoutRow, reservePayout } from './seeded-payouts.ts';

/**
 * A transfer's state, with the ones that differ beneath one status: `mined` (broadcast, in a block, waiting for its
 * confirmations), `requested` (broadcast with a person's bump not carried out yet), `unsigned_review` (in review with no
 * nonce: released by an earlier version of payrail).
 */
export type SeedTransfer = TransferStatus | 'mined' | 'requested' | 'unsigned_review';

export interface Seeded {
  readonly id: string;
  readonly paymentId: string;
  readonly transferId: string | null;
}

export interface SeedWorld {
  readonly db: TestDatabase;
  /** A finished IPN for the channel, credited (the payment's id). */
  pay(channelId: string): Promise<string>;
  /** An instant channel paying ETH on eth: its payouts are direct, or through an exchange when asked. */
  readonly instantChannel: string;
  /** A threshold channel far from its threshold. */
  readonly thresholdChannel: string;
  /** The host wallet transfers leave from, and the wallet direct payouts pay. */
  readonly wallet: string;
}

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

export function seeder(world: SeedWorld) {
  const { db } = world;
  let nextNonce = 1;

  async function transfer(
    trx: Transaction<Database>,
    purpose: 'conversion' | 'payout',
    ref: string,
    amount: bigint,
    state: SeedTransfer,
  ): Promise<string> {
    const transferId = `tr_${hex(8)}`;
    const status: TransferStatus =
      state === 'mined' || state === 'requested' ? 'broadcast' : state === 'unsigned_review' ? 'needs_review' : state;
    const signed = !['intent', 'failed', 'unsigned_review'].includes(state);
    await trx
      .insertInto('chain_transfers')
      .values({
        transfer_id: transferId,
        purpose,
        ref,
        asset: 'eth',
        from_address: world.wallet,
        to_address: world.wallet,
        amount,
        status,
        ...(signed && { nonce: String(nextNonce++), tx_hash: `0x${hex(32)}`, raw_tx: '0x00' }),
        ...(status !== 'intent' && status !== 'failed' && signed && { broadcast_at: new Date() }),
        ...((state === 'mined' || state === 'confirmed') && { block_number: '1', block_hash: `0x${hex(32)}` }),
        ...(status === 'needs_review' && {
          reason: 'seeded: the nonce was used by a transaction payrail did not sign',
        }),
        ...(state === 'failed' && { last_error: 'estimate_failed', reason: 'seeded: never signed' }),
        ...(state === 'requested' && {
          requested_action: 'bump',
          requested_by: 'someone else',
          requested_at: new Date(),
        }),
      })
      .execute();
    return transferId;
  }

  /**
   * A credited instant payment's payout in `status`. Direct (ETH to the channel's ETH wallet) unless `exchange`: then
   * USDT on Tron through ChangeNow, with an exchange recorded once its transfer exists.
   */
  async function payout(
    status: PayoutStatus,
    options: { transfer?: SeedTransfer; exchange?: boolean } = {},
  ): Promise<Seeded> {
    const paymentId = await world.pay(world.instantChannel);
    const payoutId = `po_${hex(8)}`;
    const channelId = world.instantChannel;
    let transferId: string | null = null;
    await db.db.transaction().execute(async (trx) => {
      const { net } = await creditedPayment(trx, paymentId);
      if (options.transfer) transferId = await transfer(trx, 'payout', payoutId, net, options.transfer);
      const exchange = options.exchange && (transferId !== null || status === 'exchange_created' || status === 'sent');
      await trx
        .insertInto('payouts')
        .values({
          ...instantPayoutRow(payoutId, channelId, paymentId, status, net),
          ...(options.exchange
            ? { payout_currency: 'usdt', payout_network: 'trx', wallet_address: TRON_WALLET }
            : { payout_currency: 'eth', payout_network: 'eth', wallet_address: world.wallet }),
          ...(exchange && { exchange_id: hex(7), payin_address: world.wallet }),
          reason:
            status === 'needs_review' ? 'seeded for review' : status === 'held' ? 'seeded: below the minimum' : null,
          ...(status === 'held' && { hold_until: new Date(Date.now() + 3_600_000) }),
          ...(status === 'sent' && { poll_deadline_at: new Date(Date.now() + 3_600_000) }),
          transfer_id: transferId,
        })
        .execute();
      await trx.updateTable('payments').set({ payout_id: payoutId }).where('payment_id', '=', paymentId).execute();
      if (!['completed', 'failed', 'cancelled'].includes(status))
        await reservePayout(trx, payoutId, channelId, 'eth', net);
    });
    return { id: payoutId, paymentId, transferId };
  }

  /**
   * A conversion of one fresh threshold payment in `status`: its payment converting while a stage works on it, failed
   * (kept out of every batch) in review, back to pending once it failed, and settled when completed (with `usdtUnits`
   * booked to the channel from a payout hash of its own).
   */
  async function conversion(
    status: ConversionState,
    options: { transfer?: SeedTransfer; usdtUnits?: bigint } = {},
  ): Promise<Seeded> {
    const paymentId = await world.pay(world.thresholdChannel);
    const conversionId = `conv_${hex(8)}`;
    let transferId: string | null = null;
    await db.db.transaction().execute(async (trx) => {
      const { net } = await creditedPayment(trx, paymentId);
      // Completed and failed ones pass through the state their end is reached from, by the pipeline's own functions.
      const seededAs: ConversionState =
        status === 'completed' ? 'sent' : status === 'failed' ? 'exchange_requested' : status;
      const withExchange = options.transfer !== undefined || seededAs === 'exchange_created' || seededAs === 'sent';
      await trx
        .insertInto('conversions')
        .values({
          conversion_id: conversionId,
          status: seededAs,
          from_asset: 'eth',
          to_asset: 'usdt',
          amount_wei: net,
          payment_count: 1,
          reason: seededAs === 'needs_review' ? 'seeded for review' : null,
          ...(withExchange && { exchange_id: hex(7), payin_address: world.wallet }),
          ...(seededAs === 'sent' && { poll_deadline_at: new Date(Date.now() + 3_600_000) }),
        })
        .execute();
      if (options.transfer) {
        transferId = await transfer(trx, 'conversion', conversionId, net, options.transfer);
        await trx
          .updateTable('conversions')
          .set({ transfer_id: transferId })
          .where('conversion_id', '=', conversionId)
          .execute();
      }
      await trx
        .insertInto('conversion_payments')
        .values({
          conversion_id: conversionId,
          payment_id: paymentId,
          channel_id: world.thresholdChannel,
          net_wei: net,
        })
        .execute();
      await trx
        .updateTable('payments')
        .set({ conversion_status: seededAs === 'needs_review' ? 'failed' : 'converting', conversion_id: conversionId })
        .where('payment_id', '=', paymentId)
        .execute();
      if (status === 'completed') {
        const settled = await settleIn(trx, conversionId, options.usdtUnits ?? 1_000n, `0x${hex(32)}`, 'sent');
        if (settled !== true) throw new Error(`seeding conversion ${conversionId}: not settled (${settled})`);
      }
      if (status === 'failed') await releasePaymentsIn(trx, conversionId, 'failed', 'seeded: its exchange was refused');
    });
    return { id: conversionId, paymentId, transferId };
  }

  return { payout, conversion };
}

export type Seeder = ReturnType<typeof seeder>;
