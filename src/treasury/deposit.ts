/**
 * Funds the operator puts on the host wallet (gas money, a float), booked from the chain: a transaction the chain
 * shows mined deep enough, sending ETH (its value) or USDT (its Transfer logs) to the host wallet. Each hash is
 * booked once (journal wallet_deposit, ref = hash), and never one payrail already knows as something else (its own
 * transfer, a refund, a conversion's USDT payout): that money is on the books already.
 */
import type { Hex } from 'viem';
import type { Transaction } from 'kysely';
import type { Database, Db } from '../db/index.ts';
import type { ChainWallet } from '../integrations/wallet/index.ts';
import { accounts, postJournal } from '../ledger/index.ts';
import { isBookedDeposit, lockInboundHash } from './inbound.ts';

export type DepositAsset = 'eth' | 'usdt';

export class DepositRefused extends Error {
  override name = 'DepositRefused';
}

export interface DepositResult {
  readonly txHash: string;
  readonly asset: DepositAsset;
  /** Smallest units. */
  readonly amount: bigint;
  /** False when this hash was booked before (nothing changed). */
  readonly booked: boolean;
}

export interface DepositChain {
  readonly wallet: Pick<ChainWallet, 'address' | 'receipt' | 'transaction' | 'blockAt'>;
  readonly usdtContract?: string | undefined;
  /** CHAIN_CONFIRMATIONS: a deposit counts only this deep. */
  readonly confirmations: number | 'safe' | 'finalized';
}

export async function recordDeposit(db: Db, chain: DepositChain, input: { txHash: string; asset: DepositAsset; actor: string }): Promise<DepositResult> {
  const hash = input.txHash.toLowerCase();
  if (!/^0x[0-9a-f]{64}$/.test(hash)) throw new DepositRefused('txHash must be a 0x-prefixed transaction hash');
  const amount = await depositedAmount(chain, hash as Hex, input.asset);
  const booked = await db.transaction().execute(async (trx) => {
    await lockInboundHash(trx, hash);
    if (await isBookedDeposit(trx, hash)) return false;
    await refuseKnownHash(trx, hash);
    const journal = await postJournal(trx, { kind: 'wallet_deposit', ref: hash, entries: [
      { account: accounts.operator(input.asset), amount: -amount },
      { account: accounts.capital(input.asset), amount },
    ] });
    if (journal.posted) {
      await trx.insertInto('audit_log').values({ actor: input.actor, action: 'wallet.deposit', subject: hash, details: JSON.stringify({ asset: input.asset, amount: amount.toString() }) }).execute();
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
  if (known.transfer) throw new DepositRefused(`${hash} is a transfer payrail signed, not a deposit`);
  if (known.refund) throw new DepositRefused(`${hash} is a refund already booked`);
  if (known.conversion) throw new DepositRefused(`${hash} is a conversion's USDT payout already booked`);
}

async function depositedAmount(chain: DepositChain, hash: Hex, asset: DepositAsset): Promise<bigint> {
  const host = chain.wallet.address.toLowerCase();
  const receipt = await chain.wallet.receipt(hash);
  if (receipt === null) throw new DepositRefused(`the chain shows no mined transaction ${hash}`);
  if (!receipt.success) throw new DepositRefused(`${hash} reverted: it moved nothing`);
  const deep =
    typeof chain.confirmations === 'number'
      ? (await chain.wallet.blockAt('latest')) - receipt.blockNumber + 1n >= BigInt(chain.confirmations)
      : (await chain.wallet.blockAt(chain.confirmations)) >= receipt.blockNumber;
  if (!deep) throw new DepositRefused(`${hash} is mined in block ${receipt.blockNumber} but not yet as deep as CHAIN_CONFIRMATIONS asks; record it later`);
  const tx = await chain.wallet.transaction(hash);
  if (tx === null) throw new DepositRefused(`the chain shows no transaction ${hash}`);
  if (tx.from.toLowerCase() === host) throw new DepositRefused(`${hash} was sent by the host wallet itself`);
  let amount: bigint;
  if (asset === 'eth') {
    amount = tx.to?.toLowerCase() === host ? tx.value : 0n;
  } else {
    const token = chain.usdtContract?.toLowerCase();
    if (token === undefined) throw new DepositRefused('no USDT contract is configured');
    amount = receipt.tokenTransfers.filter((t) => t.token.toLowerCase() === token && t.to.toLowerCase() === host).reduce((sum, t) => sum + t.value, 0n);
  }
  if (amount <= 0n) throw new DepositRefused(`${hash} sent no ${asset.toUpperCase()} to the host wallet ${chain.wallet.address}`);
  return amount;
}
