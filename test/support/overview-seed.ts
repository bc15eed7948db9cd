/**
 * States of the pipeline written straight into the database, as the stages leave them (rows, links and balanced
 * journals), for tests that read the overview of a pipeline that stands still (web role only, no worker).
 */
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { Db, PayoutStatus, TransferStatus } from '../../src/db/index.ts';
import { accounts, postJournal } from '../../src/ledger/index.ts';
import { splitProportionally } from '../../src/money/index.ts';
import { completePayout, creditedPayment, instantPayoutRow, reservePayout } from './seeded-payouts.ts';

const WALLET = '0x8ba1f109551bD432803012645Ac136ddd64DBA72';
/** The host wallet the seeded transfers are sent from (anvil's first account). */
const HOST = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266';

/** A settled ETH → USDT conversion of pending threshold payments, as conversion/settle.ts books it. */
export async function settleConversion(db: Db, paymentIds: readonly string[], usdtUnits: bigint): Promise<string> {
  const conversionId = `cv_${randomBytes(8).toString('hex')}`;
  await db.transaction().execute(async (trx) => {
    const rows = await trx
      .selectFrom('payments')
      .select(['payment_id', 'channel_id', 'net_amount'])
      .where('payment_id', 'in', [...paymentIds])
      .where('conversion_status', '=', 'pending')
      .orderBy('payment_id')
      .execute();
    if (rows.length !== paymentIds.length)
      throw new Error(`settleConversion: ${paymentIds.length - rows.length} payment(s) not pending`);
    const weights = rows.map((r) => BigInt(r.net_amount as string));
    const totalWei = weights.reduce((a, b) => a + b, 0n);
    const shares = splitProportionally(usdtUnits, weights);
    await trx
      .insertInto('conversions')
      .values({
        conversion_id: conversionId,
        status: 'completed',
        from_asset: 'eth',
        to_asset: 'usdt',
        amount_wei: totalWei,
        payment_count: rows.length,
        usdt_received: usdtUnits,
        expected_usdt: usdtUnits,
        completed_at: sql`now()`,
      })
      .execute();
    for (const [i, r] of rows.entries()) {
      await trx
        .insertInto('conversion_payments')
        .values({
          conversion_id: conversionId,
          payment_id: r.payment_id,
          channel_id: r.channel_id,
          net_wei: weights[i] as bigint,
          usdt_share: shares[i] as bigint,
        })
        .execute();
      await trx
        .updateTable('payments')
        .set({ conversion_status: 'completed', conversion_id: conversionId, usdt_amount: shares[i] as bigint })
        .where('payment_id', '=', r.payment_id)
        .execute();
    }
    const entries = [
      { account: accounts.changenow('eth'), amount: totalWei },
      { account: accounts.changenow('usdt'), amount: -usdtUnits },
    ];
    for (const [i, r] of rows.entries()) {
      entries.push({ account: accounts.channel(r.channel_id, 'eth'), amount: -(weights[i] as bigint) });
      if ((shares[i] as bigint) > 0n)
        entries.push({ account: accounts.channel(r.channel_id, 'usdt'), amount: shares[i] as bigint });
    }
    await postJournal(trx, { kind: 'conversion_settled', ref: conversionId, entries });
  });
  return conversionId;
}

export interface SeededPayout {
  /** Where a completed payout's funds went: straight to the owner, or into a ChangeNow exchange. */
  via?: 'direct' | 'exchange';
  /** failed / cancelled: how much came back to the channel (all of it by default). */
  returned?: bigint;
}

/**
 * An instant payment's payout in `status` with its journals: reserved while open; reserved then completed, or
 * reserved then returned, once ended.
 */
export async function seedInstantPayout(
  db: Db,
  paymentId: string,
  status: PayoutStatus,
  options: SeededPayout = {},
): Promise<string> {
  const payoutId = `po_${randomBytes(8).toString('hex')}`;
  await db.transaction().execute(async (trx) => {
    const { channelId, net } = await creditedPayment(trx, paymentId);
    const via = options.via ?? 'direct';
    await trx
      .insertInto('payouts')
      .values({
        ...instantPayoutRow(payoutId, channelId, paymentId, status, net),
        payout_currency: via === 'direct' ? 'eth' : 'usdt',
        payout_network: 'eth',
        wallet_address: WALLET,
        reason:
          status === 'needs_review'
            ? 'seeded: exchange failed'
            : status === 'awaiting_approval'
              ? 'above the approval limit'
              : null,
        ...(status === 'completed' && { completed_at: sql`now()`, amount_out: '1' }),
      })
      .execute();
    await trx.updateTable('payments').set({ payout_id: payoutId }).where('payment_id', '=', paymentId).execute();
    await reservePayout(trx, payoutId, channelId, 'eth', net);
    if (status === 'completed') {
      const counterparty = via === 'direct' ? accounts.payees('eth') : accounts.changenow('eth');
      await completePayout(trx, payoutId, channelId, 'eth', net, counterparty);
    }
    if (status === 'failed' || status === 'cancelled') {
      const returned = options.returned ?? net;
      const entries = [
        { account: accounts.channelPayout(channelId, 'eth'), amount: -net },
        { account: accounts.channel(channelId, 'eth'), amount: returned },
        { account: accounts.changenow('eth'), amount: net - returned },
      ].filter((e) => e.amount !== 0n);
      await postJournal(trx, { kind: 'payout_returned', ref: payoutId, entries });
    }
  });
  return payoutId;
}

/** A threshold channel's batch of its available USDT, completed through an exchange (payout_reserved + payout_completed). */
export async function seedCompletedBatch(db: Db, channelId: string, units: bigint): Promise<string> {
  return seedThresholdBatch(db, channelId, units, 'completed');
}

/**
 * A threshold channel's batch of `units` of its available USDT in `status`: reserved while open (payout_reserved),
 * then completed through an exchange. Ended otherwise is not seeded here (seedInstantPayout books returns).
 */
export async function seedThresholdBatch(
  db: Db,
  channelId: string,
  units: bigint,
  status: Exclude<PayoutStatus, 'failed' | 'cancelled'>,
): Promise<string> {
  const payoutId = `po_${randomBytes(8).toString('hex')}`;
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto('payouts')
      .values({
        payout_id: payoutId,
        kind: 'threshold',
        channel_id: channelId,
        status,
        asset: 'usdt',
        amount: units,
        payout_currency: 'usdt',
        payout_network: 'trx',
        wallet_address: WALLET,
        reason: status === 'needs_review' ? 'seeded: exchange failed' : null,
        ...(status === 'completed' && { completed_at: sql`now()`, amount_out: '1' }),
      })
      .execute();
    await reservePayout(trx, payoutId, channelId, 'usdt', units);
    if (status === 'completed')
      await completePayout(trx, payoutId, channelId, 'usdt', units, accounts.changenow('usdt'));
  });
  return payoutId;
}

export interface SeededTransfer {
  purpose: 'conversion' | 'payout';
  /** The conversion or payout it pays; a payout's transfer_id is linked to it. */
  ref: string;
  asset: 'eth' | 'usdt';
  /** Smallest units. */
  amount: bigint;
  status: TransferStatus;
  /** Null: never signed (an intent, or in review after an earlier version released it); no version then. */
  nonce: number | null;
  reason?: string;
  /** Its latest version's hash (random when not given) once it has a nonce. */
  txHash?: string;
  /** Set when one of its versions was seen mined. */
  blockNumber?: number;
  /** How long ago it last changed, as a Postgres interval ('15 minutes'). */
  changedAgo?: string;
}

/** A host-wallet transfer row as the transfer stages leave it (no signed versions: nothing here reads them). */
export async function seedTransfer(db: Db, transfer: SeededTransfer): Promise<string> {
  const transferId = `tr_${randomBytes(8).toString('hex')}`;
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto('chain_transfers')
      .values({
        transfer_id: transferId,
        purpose: transfer.purpose,
        ref: transfer.ref,
        asset: transfer.asset,
        from_address: HOST,
        to_address: WALLET,
        amount: transfer.amount,
        status: transfer.status,
        reason: transfer.reason ?? null,
        // The table's check: a transfer with a nonce holds the signed bytes of its latest version and their hash.
        ...(transfer.nonce === null
          ? { nonce: null, tx_hash: null, raw_tx: null }
          : {
              nonce: BigInt(transfer.nonce),
              tx_hash: transfer.txHash ?? `0x${randomBytes(32).toString('hex')}`,
              raw_tx: '0x02seeded',
            }),
        block_number: transfer.blockNumber === undefined ? null : BigInt(transfer.blockNumber),
        broadcast_at: sql`now() - ${transfer.changedAgo ?? '0 seconds'}::interval`,
        updated_at: sql`now() - ${transfer.changedAgo ?? '0 seconds'}::interval`,
      })
      .execute();
    if (transfer.purpose === 'payout')
      await trx.updateTable('payouts').set({ transfer_id: transferId }).where('payout_id', '=', transfer.ref).execute();
  });
  return transferId;
}

/** The gas a mined transfer cost, booked as transfer/settle.ts books it. */
export async function seedNetworkFee(db: Db, transferId: string, gasWei: bigint): Promise<void> {
  await db.transaction().execute((trx) =>
    postJournal(trx, {
      kind: 'network_fee',
      ref: transferId,
      entries: [
        { account: accounts.networkCosts('eth'), amount: -gasWei },
        { account: accounts.ethereum('eth'), amount: gasWei },
      ],
    }),
  );
}

export async function insertAlert(
  db: Db,
  alert: {
    rule: string;
    subject: string;
    severity: 'warning' | 'critical';
    message: string;
    details?: Record<string, unknown>;
    resolved?: boolean;
  },
): Promise<string> {
  const row = await db
    .insertInto('alerts')
    .values({
      rule: alert.rule,
      subject: alert.subject,
      severity: alert.severity,
      message: alert.message,
      details: JSON.stringify(alert.details ?? {}),
      ...(alert.resolved && { resolved_at: sql`now()` }),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

export async function observe(
  db: Db,
  name: string,
  ok: boolean,
  value: string | null,
  detail: string | null = null,
): Promise<void> {
  await db
    .insertInto('observations')
    .values({ name, ok, value, detail })
    .onConflict((oc) => oc.column('name').doUpdateSet({ ok, value, detail, observed_at: sql`now()` }))
    .execute();
}
