/** The host account's and the chain's state: nonces, balances, blocks. */
import { BlockNotFoundError, erc20Abi, type Hex } from 'viem';
import { guard, readOrNull, type WalletContext } from './context.ts';
import type { TransferAsset } from './types.ts';

export function pendingNonce(ctx: WalletContext): Promise<number> {
  return guard('nonce', () => ctx.client.getTransactionCount({ address: ctx.address, blockTag: 'pending' }));
}

export function nonceAt(ctx: WalletContext, block: bigint | 'latest'): Promise<number> {
  return guard('nonce', () =>
    block === 'latest'
      ? ctx.client.getTransactionCount({ address: ctx.address, blockTag: 'latest' })
      : ctx.client.getTransactionCount({ address: ctx.address, blockNumber: block }),
  );
}

export function balance(ctx: WalletContext, asset: TransferAsset): Promise<bigint> {
  return guard('balance', () =>
    asset.kind === 'native'
      ? ctx.client.getBalance({ address: ctx.address })
      : ctx.client.readContract({
          address: asset.contract,
          abi: erc20Abi,
          functionName: 'balanceOf',
          args: [ctx.address],
        }),
  );
}

export function blockNumber(ctx: WalletContext): Promise<bigint> {
  return guard('block number', () => ctx.client.getBlockNumber({ cacheTime: 0 }));
}

export async function blockAt(ctx: WalletContext, tag: 'latest' | 'safe' | 'finalized'): Promise<bigint> {
  if (tag === 'latest') return blockNumber(ctx);
  const block = await guard(`${tag} block`, () => ctx.client.getBlock({ blockTag: tag }));
  return block.number;
}

export async function blockHash(ctx: WalletContext, number: bigint): Promise<Hex | null> {
  const block = await readOrNull(`block ${number}`, BlockNotFoundError, () =>
    ctx.client.getBlock({ blockNumber: number }),
  );
  return block === null ? null : block.hash;
}

export async function hostTransactionsIn(
  ctx: WalletContext,
  number: bigint,
): Promise<Array<{ hash: Hex; nonce: number }>> {
  const block = await guard(`block ${number}`, () =>
    ctx.client.getBlock({ blockNumber: number, includeTransactions: true }),
  );
  return block.transactions
    .filter((tx) => tx.from.toLowerCase() === ctx.address.toLowerCase())
    .map((tx) => ({ hash: tx.hash, nonce: tx.nonce }));
}
