/** The read side of conversions (ETH→USDT micro-batches), amounts as decimal strings. */
import type { Selectable } from 'kysely';
import type { ConversionState, ConversionsTable, Db, TransferStatus } from '../../db/index.ts';
import { formatUnits } from '../../money/index.ts';

export { CONVERSION_STATES } from '../../db/index.ts';

export interface ConversionView {
  readonly conversionId: string;
  readonly status: ConversionState;
  readonly reason: string | null;
  readonly exchangeId: string | null;
  readonly payinAddress: string | null;
  /** The ETH the conversion sends to ChangeNow. */
  readonly amountEth: string;
  /** ChangeNow's quote when the exchange was made; what settlement booked is usdtReceived. */
  readonly expectedUsdt: string | null;
  readonly usdtReceived: string | null;
  readonly paymentCount: number;
  readonly transferStatus: TransferStatus | null;
  readonly payinHash: string | null;
  readonly payoutHash: string | null;
  readonly lastError: string | null;
  readonly pollDeadlineAt: string | null;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly completedAt: string | null;
}

type Row = Selectable<ConversionsTable> & { transfer_status: TransferStatus | null; payin_hash: string | null };

function select(db: Db) {
  // One transfer per conversion at most (unique on purpose and ref): joined by ref, it is found even before the
  // conversion row records its id.
  return db
    .selectFrom('conversions')
    .leftJoin('chain_transfers', (join) =>
      join
        .onRef('chain_transfers.ref', '=', 'conversions.conversion_id')
        .on('chain_transfers.purpose', '=', 'conversion'),
    )
    .selectAll('conversions')
    .select(['chain_transfers.status as transfer_status', 'chain_transfers.tx_hash as payin_hash']);
}

export async function listConversions(
  db: Db,
  filter: { status?: ConversionState; limit: number },
): Promise<ConversionView[]> {
  let query = select(db)
    .orderBy('conversions.created_at', 'desc')
    .orderBy('conversions.conversion_id')
    .limit(filter.limit);
  if (filter.status !== undefined) query = query.where('conversions.status', '=', filter.status);
  return (await query.execute()).map(toView);
}

export async function getConversion(db: Db, conversionId: string): Promise<ConversionView | null> {
  const row = await select(db).where('conversions.conversion_id', '=', conversionId).executeTakeFirst();
  return row ? toView(row) : null;
}

const iso = (d: Date | null) => (d === null ? null : d.toISOString());
const usdt = (units: string | null) => (units === null ? null : formatUnits(BigInt(units), 6));

function toView(row: Row): ConversionView {
  return {
    conversionId: row.conversion_id,
    status: row.status,
    reason: row.reason,
    exchangeId: row.exchange_id,
    payinAddress: row.payin_address,
    amountEth: formatUnits(BigInt(row.amount_wei), 18),
    expectedUsdt: usdt(row.expected_usdt),
    usdtReceived: usdt(row.usdt_received),
    paymentCount: row.payment_count,
    transferStatus: row.transfer_status,
    payinHash: row.payin_hash,
    payoutHash: row.payout_hash,
    lastError: row.last_error,
    pollDeadlineAt: iso(row.poll_deadline_at),
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    completedAt: iso(row.completed_at),
  };
}
