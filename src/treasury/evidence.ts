/**
 * What the chain shows of a transaction an operator names (a deposit to the host wallet, a spend from it): mined,
 * as deep as CHAIN_CONFIRMATIONS asks, so a reorganisation cannot take back what gets booked from it.
 */
import type { Hex } from 'viem';
import type { ChainTransaction, ChainWallet, MinedReceipt } from '../integrations/wallet/index.ts';

export interface EvidenceChain {
  readonly wallet: Pick<ChainWallet, 'address' | 'receipt' | 'transaction' | 'blockAt'>;
  readonly usdtContract?: string | undefined;
  /** CHAIN_CONFIRMATIONS: a transaction counts only this deep. */
  readonly confirmations: number | 'safe' | 'finalized';
}

/** Refused evidence: nothing was booked, and the message says why. */
export class TreasuryRefused extends Error {
  override name = 'TreasuryRefused';
}

export function normalisedHash(txHash: string): Hex {
  const hash = txHash.toLowerCase();
  if (!/^0x[0-9a-f]{64}$/.test(hash)) throw new TreasuryRefused('txHash must be a 0x-prefixed transaction hash');
  return hash as Hex;
}

export async function deepTransaction(
  chain: EvidenceChain,
  hash: Hex,
): Promise<{ receipt: MinedReceipt; tx: ChainTransaction }> {
  const receipt = await chain.wallet.receipt(hash);
  if (receipt === null) throw new TreasuryRefused(`the chain shows no mined transaction ${hash}`);
  const deep =
    typeof chain.confirmations === 'number'
      ? (await chain.wallet.blockAt('latest')) - receipt.blockNumber + 1n >= BigInt(chain.confirmations)
      : (await chain.wallet.blockAt(chain.confirmations)) >= receipt.blockNumber;
  if (!deep)
    throw new TreasuryRefused(
      `${hash} is mined in block ${receipt.blockNumber} but not yet as deep as CHAIN_CONFIRMATIONS asks; record it later`,
    );
  const tx = await chain.wallet.transaction(hash);
  if (tx === null) throw new TreasuryRefused(`the chain shows no transaction ${hash}`);
  return { receipt, tx };
}

/** The configured USDT contract, lower-cased, or a refusal naming what is missing. */
export function usdtOf(chain: EvidenceChain): string {
  const token = chain.usdtContract?.toLowerCase();
  if (token === undefined) throw new TreasuryRefused('no USDT contract is configured');
  return token;
}
