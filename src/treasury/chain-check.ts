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
import { sql } from 'kysely';
import type { Hex } from 'viem';
import type { Db } from '../db/index.ts';
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
  const mined = await minedNotBooked(db, chain);
  const results: AssetReconciliation[] = [];
  for (const asset of assets) {
    const { rows } = await sql<{ held: string }>`
      select coalesce(sum(balance), 0)::text as held from ledger_accounts where asset = ${asset} and code not like 'world:%'`.execute(
      db,
    );
    const ledgerHeld = BigInt(rows[0]?.held ?? '0');
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

interface Mined {
  left: Array<InFlight & { asset: string }>;
  gas: bigint;
}

/**
 * Transfers a mined version of which moved funds that no journal has booked out yet. Confirmed ones are read from
 * the database; every broadcast one is read from the chain too (its receipt says whether it moved anything, and what
 * gas it cost: neither is booked before the outcome), including one mined before its confirm step first looked.
 */
async function minedNotBooked(db: Db, chain: ChainSide): Promise<Mined> {
  // Open owners only (the open-status indexes of conversions and payouts): the history of booked ones is never read.
  const { rows } = await sql<{
    transfer_id: string;
    purpose: string;
    ref: string;
    asset: string;
    amount: string;
    status: string;
  }>`
    select t.transfer_id, t.purpose, t.ref, t.asset, t.amount::text as amount, t.status
    from chain_transfers t
    where (t.status = 'broadcast' or (t.status = 'confirmed' and t.block_number is not null)) and t.transfer_id in (
      select transfer_id from conversions where status not in ('completed', 'failed') and transfer_id is not null
      union all
      select transfer_id from payouts where status not in ('completed', 'failed', 'cancelled') and transfer_id is not null)`.execute(
    db,
  );
  // Broadcast, whatever its owner: a mined version's gas is spent and not booked yet. One seen mined is read at the
  // version it was seen in; one not seen yet at each of its versions (any of them may be the one mined).
  const { rows: waiting } = await sql<{ transfer_id: string; hashes: string[]; kinds: string[] }>`
    select t.transfer_id,
           case when t.block_number is not null then array[t.tx_hash]
                else array_agg(v.tx_hash order by v.version) end as hashes,
           case when t.block_number is not null then array[(array_agg(v.kind) filter (where v.tx_hash = t.tx_hash))[1]]
                else array_agg(v.kind order by v.version) end as kinds
    from chain_transfers t join chain_transfer_versions v on v.transfer_id = t.transfer_id
    where t.status = 'broadcast'
    group by t.transfer_id`.execute(db);
  const receipts = new Map<string, { receipt: MinedReceipt; kind: string | null }>();
  let gas = 0n;
  for (const w of waiting) {
    for (const [i, hash] of w.hashes.entries()) {
      const receipt = await chain.wallet.receipt(hash as Hex);
      // Reorganised away since it was seen, or not mined: the chain does not show its gas either.
      if (!receipt) continue;
      receipts.set(w.transfer_id, { receipt, kind: w.kinds[i] ?? null });
      gas += receipt.gasCostWei;
      break;
    }
  }
  const left: Mined['left'] = [];
  for (const r of rows) {
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
