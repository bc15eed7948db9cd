/**
 * The ledger against the chain: per asset, what the host wallet holds on chain against what the ledger says the
 * platform holds there. The ledger side is every account that is not the world's (channels' balances and their
 * payouts set aside, platform fees, the operator's capital, refunds owed, gas paid as a negative), less what the
 * chain shows has left but no journal has booked out yet:
 * - transfers mined (confirmed, or mined and waiting for their confirmations) whose conversion or payout has not
 *   booked its outcome (settled, completed, or returned);
 * - the gas of mined versions not booked yet (booked with the transfer's outcome).
 * ETH credited from NOWPayments is taken as arrived: NOWPayments sends the outcome before its `finished` IPN.
 * Money that arrived and is not booked yet (a ChangeNow payout or refund before its poll) shows as a difference
 * until that poll books it: a difference that persists across checks is a real one.
 */
import { sql, type Transaction } from 'kysely';
import type { Hex } from 'viem';
import type { Database, Db } from '../db/index.ts';
import type { ChainWallet, MinedReceipt } from '../integrations/wallet/index.ts';

export type ReconciledAsset = 'eth' | 'usdt';

export interface InFlight {
  readonly transferId: string;
  readonly purpose: string;
  readonly ref: string;
  readonly amount: bigint;
}

export interface AssetReconciliation {
  readonly asset: ReconciledAsset;
  /** The host wallet's balance on chain (smallest units). */
  readonly onChain: bigint;
  /** Σ of the ledger's non-world accounts in this asset. */
  readonly ledgerHeld: bigint;
  /** Mined transfers whose owner has not booked the outflow yet. */
  readonly leftNotBooked: bigint;
  /** ETH only: gas of mined versions not booked yet. */
  readonly gasNotBooked: bigint;
  /** ledgerHeld − leftNotBooked − gasNotBooked: what the chain should show. */
  readonly expected: bigint;
  /** onChain − expected: 0 when ledger and chain agree. */
  readonly difference: bigint;
  readonly inFlight: readonly InFlight[];
}

export interface ChainReport {
  readonly ok: boolean;
  readonly hostAddress: string;
  readonly assets: readonly AssetReconciliation[];
}

export interface ChainSide {
  readonly wallet: Pick<ChainWallet, 'address' | 'balance' | 'receipt'>;
  /** Unset: USDT is not reconciled (no token on this chain). */
  readonly usdtContract?: `0x${string}` | undefined;
}

export async function checkLedgerAgainstChain(db: Db, chain: ChainSide): Promise<ChainReport> {
  const assets: ReconciledAsset[] = chain.usdtContract ? ['eth', 'usdt'] : ['eth'];
  // The books first, in one snapshot; then the chain. A transfer settled meanwhile was broadcast in that snapshot,
  // and its receipt counts it as left: the books and the chain then describe the same moment, not two.
  const books = await db
    .transaction()
    .setIsolationLevel('repeatable read')
    .setAccessMode('read only')
    .execute(async (trx) => ({
      transfers: await openTransfers(trx),
      held: new Map([
        ['eth', await ledgerHeldIn(trx, 'eth')],
        ['usdt', await ledgerHeldIn(trx, 'usdt')],
      ] as const),
    }));
  const mined = await minedNotBooked(books.transfers, chain);
  const results: AssetReconciliation[] = [];
  for (const asset of assets) {
    const ledgerHeld = books.held.get(asset) ?? 0n;
    const inFlight = mined.left.filter((m) => m.asset === asset);
    const leftNotBooked = inFlight.reduce((sum, m) => sum + m.amount, 0n);
    const gasNotBooked = asset === 'eth' ? mined.gas : 0n;
    const onChain = await chain.wallet.balance(
      asset === 'eth' ? { kind: 'native' } : { kind: 'erc20', contract: chain.usdtContract as `0x${string}` },
    );
    const expected = ledgerHeld - leftNotBooked - gasNotBooked;
    results.push({
      asset,
      onChain,
      ledgerHeld,
      leftNotBooked,
      gasNotBooked,
      expected,
      difference: onChain - expected,
      inFlight: inFlight.map(({ asset: _asset, ...m }) => m),
    });
  }
  return { ok: results.every((r) => r.difference === 0n), hostAddress: chain.wallet.address, assets: results };
}

async function ledgerHeldIn(trx: Transaction<Database>, asset: ReconciledAsset): Promise<bigint> {
  const { rows } = await sql<{ held: string }>`
    select coalesce(sum(balance), 0)::text as held from ledger_accounts where asset = ${asset} and code not like 'world:%'`.execute(
    trx,
  );
  return BigInt(rows[0]?.held ?? '0');
}

interface Mined {
  left: Array<InFlight & { asset: string }>;
  gas: bigint;
}

interface OpenTransfers {
  /** Confirmed or broadcast, for an owner that has not booked its outcome. */
  readonly owned: ReadonlyArray<{
    transfer_id: string;
    purpose: string;
    ref: string;
    asset: string;
    amount: string;
    status: string;
  }>;
  /** Every transfer that may be on the network (broadcast, or signed by an earlier version of payrail). */
  readonly broadcast: ReadonlyArray<{ transfer_id: string; hashes: string[]; kinds: string[] }>;
}

async function openTransfers(trx: Transaction<Database>): Promise<OpenTransfers> {
  // Open owners only (the open-status indexes of conversions and payouts): the history of booked ones is never read.
  const { rows: owned } = await sql<OpenTransfers['owned'][number]>`
    select t.transfer_id, t.purpose, t.ref, t.asset, t.amount::text as amount, t.status
    from chain_transfers t
    where (t.status in ('signed', 'broadcast') or (t.status = 'confirmed' and t.block_number is not null))
      and t.transfer_id in (
      select transfer_id from conversions where status not in ('completed', 'failed') and transfer_id is not null
      union all
      select transfer_id from payouts where status not in ('completed', 'failed', 'cancelled') and transfer_id is not null)`.execute(
    trx,
  );
  const { rows: broadcast } = await sql<OpenTransfers['broadcast'][number]>`
    select t.transfer_id, array_agg(v.tx_hash order by v.version) as hashes, array_agg(v.kind order by v.version) as kinds
    from chain_transfers t join chain_transfer_versions v on v.transfer_id = t.transfer_id
    where t.status in ('signed', 'broadcast')
    group by t.transfer_id`.execute(trx);
  return { owned, broadcast };
}

/**
 * Transfers a mined version of which moved funds that no journal has booked out yet. Confirmed ones are read from
 * the database; every one that may be on the network (broadcast, or signed by an earlier version of payrail) is
 * looked up on chain at each of its versions (at most one of them can be mined: they share a nonce), seen mined by
 * payrail or not: its receipt says whether it moved anything, and what gas it cost (neither is booked before the
 * outcome). A version seen mined and reorganised away shows no receipt, nor its gas.
 */
const RECEIPTS_AT_ONCE = 16;

async function minedNotBooked(transfers: OpenTransfers, chain: ChainSide): Promise<Mined> {
  const found = [];
  // A few at a time: a wallet's queue of transfers in flight can be hundreds long, and the node is a shared one.
  for (let at = 0; at < transfers.broadcast.length; at += RECEIPTS_AT_ONCE) {
    const some = transfers.broadcast.slice(at, at + RECEIPTS_AT_ONCE);
    found.push(
      ...(await Promise.all(
        some.map(async (t) => {
          const receipts = await Promise.all(t.hashes.map((hash) => chain.wallet.receipt(hash as Hex)));
          const index = receipts.findIndex((r) => r !== null);
          return index < 0
            ? null
            : { transferId: t.transfer_id, receipt: receipts[index] as MinedReceipt, kind: t.kinds[index] ?? null };
        }),
      )),
    );
  }
  const receipts = new Map<string, { receipt: MinedReceipt; kind: string | null }>();
  let gas = 0n;
  for (const m of found) {
    if (m === null) continue;
    receipts.set(m.transferId, m);
    gas += m.receipt.gasCostWei;
  }
  const left: Mined['left'] = [];
  for (const r of transfers.owned) {
    const mined = receipts.get(r.transfer_id);
    const moved = r.status === 'confirmed' || (mined !== undefined && mined.receipt.success && mined.kind !== 'cancel');
    if (moved)
      left.push({
        transferId: r.transfer_id,
        purpose: r.purpose,
        ref: r.ref,
        asset: r.asset,
        amount: BigInt(r.amount),
      });
  }
  return { left, gas };
}
