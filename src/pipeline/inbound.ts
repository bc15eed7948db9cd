/**
 * Money a person says came back to the host wallet, read on chain before anything is booked: the named transaction
 * must be deep enough that a reorganisation cannot take it back, sent by someone other than the host wallet (sending
 * to itself brings nothing back), and must have brought the asset to the host wallet. Used by the resolves of
 * conversions and payouts in review; the refund registry (refunds.ts) then makes sure one transaction backs one item.
 */
import type { Hex } from 'viem';
import { ChainUnavailableError, type ChainWallet } from '../integrations/wallet/index.ts';
import { deepTransaction, TreasuryRefused } from '../treasury/evidence.ts';

/** What a resolve reads the chain with: the host wallet's incoming ETH and USDT, read only. */
export interface HostChainReader {
  readonly wallet: Pick<
    ChainWallet,
    'address' | 'tokenReceived' | 'nativeReceived' | 'receipt' | 'transaction' | 'blockAt'
  >;
  readonly hostAddress: string;
  readonly usdtContract: string | undefined;
  /** CHAIN_CONFIRMATIONS: a named transaction counts only this deep. */
  readonly confirmations: number | 'safe' | 'finalized';
}

/** Why the named transaction cannot back the resolve: the caller turns it into its own refusal (409). */
export class InboundRefused extends Error {
  override name = 'InboundRefused';
}

/** What inboundAmount reads, the node's silence left to it. */
async function readInbound(chain: HostChainReader | undefined, txHash: string, asset: 'eth' | 'usdt'): Promise<bigint> {
  if (!chain)
    throw new InboundRefused('this process cannot read the chain (ETH_RPC_URL): run the resolve where it can');
  const hash = txHash.toLowerCase() as Hex;
  const host = chain.hostAddress as Hex;
  let sender: string;
  try {
    sender = (await deepTransaction(chain, hash)).tx.from;
  } catch (error) {
    if (error instanceof TreasuryRefused) throw new InboundRefused(error.message);
    throw error;
  }
  if (sender.toLowerCase() === host.toLowerCase())
    throw new InboundRefused(`${hash} was sent by the host wallet itself`);
  if (asset === 'eth') {
    const eth = await chain.wallet.nativeReceived(hash, host);
    if (eth === null || eth <= 0n)
      throw new InboundRefused(`the chain shows no ETH brought to the host wallet by ${hash}`);
    return eth;
  }
  if (!chain.usdtContract) throw new InboundRefused('no USDT contract is configured');
  const usdt = await chain.wallet.tokenReceived(hash, chain.usdtContract as Hex, host);
  if (usdt === null || usdt <= 0n)
    throw new InboundRefused(`the chain shows no USDT brought to the host wallet by ${hash}`);
  return usdt;
}

/**
 * The smallest units of `asset` that `txHash` brought to the host wallet (> 0), or a refusal saying why not. A node
 * that does not answer is a refusal too: nothing is booked, and the person tries again.
 */
export async function inboundAmount(
  chain: HostChainReader | undefined,
  txHash: string,
  asset: 'eth' | 'usdt',
): Promise<bigint> {
  try {
    return await readInbound(chain, txHash, asset);
  } catch (error) {
    if (error instanceof ChainUnavailableError) {
      // viem's messages run over several lines: the first says what failed.
      throw new InboundRefused(
        `the chain could not be read (${error.message.split('\n')[0]}): nothing was booked, try again`,
      );
    }
    throw error;
  }
}
