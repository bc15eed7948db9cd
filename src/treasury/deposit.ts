/**
 * Funds the operator puts on the host wallet (gas money, a float), booked from the chain: a transaction the chain
 * shows mined deep enough, sending ETH (its value) or USDT (its Transfer logs) to the host wallet. Each hash is
 * booked once (journal wallet_deposit, ref = hash), and never one payrail already knows as something else (its own
 * transfer, a refund, a conversion's USDT payout): that money is on the books already.
 */
import type { Hex } from 'viem';
import { recordAudit } from '../db/index.ts';
import type { Transaction } from 'kysely';
import type { Database, Db } from '../db/index.ts';
import { accounts, postJournal } from '../ledger/index.ts';
import { deepTransaction, normalisedHash, TreasuryRefused, usdtOf, type EvidenceChain } from './evidence.ts';
import { isBookedDeposit, lockInboundHash } from './inbound.ts';

export type DepositAsset = 'eth' | 'usdt';

export interface DepositResult {
  readonly txHash: string;
  readonly asset: DepositAsset;
  /** Smallest units. */
  readonly amount: bigint;
  /** False when this hash was booked before (nothing changed). */
  readonly booked: boolean;
}

export async function recordDeposit(
  db: Db,
  chain: EvidenceChain,
  input: { txHash: string; asset: DepositAsset; actor: string },
): Promise<DepositResult> {
  const hash = normalisedHash(input.txHash);
  const amount = await depositedAmount(chain, hash, input.asset);
  const booked = await db.transaction().execute(async (trx) => {
    await lockInboundHash(trx, hash);
    if (await isBookedDeposit(trx, hash)) return false;
    await refuseKnownHash(trx, hash);
    const journal = await postJournal(trx, {
      kind: 'wallet_deposit',
      ref: hash,
      entries: [
        { account: accounts.operator(input.asset), amount: -amount },
        { account: accounts.capital(input.asset), amount },
      ],
    });
    if (journal.posted) {
      await recordAudit(trx, {
        actor: input.actor,
        action: 'wallet.deposit',
        subject: hash,
        details: { asset: input.asset, amount: amount.toString() },
      });
    }
    return journal.posted;
  });
  return { txHash: hash, asset: input.asset, amount, booked };
}

async function refuseKnownHash(trx: Transaction<Database>, hash: string): Promise<void> {
  const known = await trx
    .selectNoFrom((eb) => [
      eb.exists(eb.selectFrom('chain_transfer_versions').select('tx_hash').where('tx_hash', '=', hash)).as('transfer'),
      eb.exists(eb.selectFrom('chain_refunds').select('tx_hash').where('tx_hash', '=', hash)).as('refund'),
      eb.exists(eb.selectFrom('conversions').select('conversion_id').where('payout_hash', '=', hash)).as('conversion'),
    ])
    .executeTakeFirstOrThrow();
  if (known.transfer) throw new TreasuryRefused(`${hash} is a transfer payrail signed, not a deposit`);
  if (known.refund) throw new TreasuryRefused(`${hash} is a refund already booked`);
  if (known.conversion) throw new TreasuryRefused(`${hash} is a conversion's USDT payout already booked`);
}

async function depositedAmount(chain: EvidenceChain, hash: Hex, asset: DepositAsset): Promise<bigint> {
  const host = chain.wallet.address.toLowerCase();
  const { receipt, tx } = await deepTransaction(chain, hash);
  if (!receipt.success) throw new TreasuryRefused(`${hash} reverted: it moved nothing`);
  if (tx.from.toLowerCase() === host)
    throw new TreasuryRefused(`${hash} was sent by the host wallet itself (book it with payrail withdrawal)`);
  let amount: bigint;
  if (asset === 'eth') {
    amount = tx.to?.toLowerCase() === host ? tx.value : 0n;
  } else {
    const token = usdtOf(chain);
    amount = receipt.tokenTransfers
      .filter((t) => t.token.toLowerCase() === token && t.to.toLowerCase() === host)
      .reduce((sum, t) => sum + t.value, 0n);
  }
  if (amount <= 0n)
    throw new TreasuryRefused(`${hash} sent no ${asset.toUpperCase()} to the host wallet ${chain.wallet.address}`);
  return amount;
}
