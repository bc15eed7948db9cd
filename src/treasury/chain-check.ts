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
 * the database; those mined and still waiting for confirmations are read from the chain too (their receipt says
 * whether they moved anything, and what gas they cost: neither is booked before the outcome).
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
    tx_hash: string;
    kind: string | null;
  }>`
    select t.transfer_id, t.purpose, t.ref, t.asset, t.amount::text as amount, t.status, t.tx_hash, v.kind
    from chain_transfers t
    left join chain_transfer_versions v on v.tx_hash = t.tx_hash
    where t.block_number is not null and t.status in ('confirmed', 'broadcast') and t.transfer_id in (
      select transfer_id from conversions where status not in ('completed', 'failed') and transfer_id is not null
      union all
      select transfer_id from payouts where status not in ('completed', 'failed', 'cancelled') and transfer_id is not null)`.execute(
    db,
  );
  // Mined, waiting for confirmations, whatever its owner: its gas is spent and not booked yet.
  const { rows: waiting } = await sql<{ transfer_id: string; tx_hash: string }>`
    select transfer_id, tx_hash from chain_transfers where status = 'broadcast' and block_number is not null`.execute(
    db,
  );
  const receipts = new Map<string, MinedReceipt | null>();
  let gas = 0n;
  for (const w of waiting) {
    const receipt = await chain.wallet.receipt(w.tx_hash as Hex);
    receipts.set(w.transfer_id, receipt);
    // Reorganised away since it was seen: the chain does not show its gas either.
    if (receipt) gas += receipt.gasCostWei;
  }
  const left: Mined['left'] = [];
  for (const r of rows) {
    const receipt = receipts.get(r.transfer_id);
    const moved =
      r.status === 'confirmed' || (receipt !== undefined && receipt !== null && receipt.success && r.kind !== 'cancel');
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
