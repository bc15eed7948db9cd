/** What the chain shows of one transaction: mined or not, what it cost and what it moved. */
import {
  erc20Abi,
  parseEventLogs,
  TransactionNotFoundError,
  WaitForTransactionReceiptTimeoutError,
  type Address,
  type Hex,
} from 'viem';
import { guard, readOrNull, receiptOrNull, type WalletContext } from './context.ts';
import { ChainUnavailableError, type ChainTransaction, type MinedReceipt, type TxLookup } from './types.ts';

export async function lookup(ctx: WalletContext, hash: Hex): Promise<TxLookup> {
  const receipt = await receiptOrNull(ctx, hash);
  if (receipt !== null) {
    return {
      state: 'mined',
      blockNumber: receipt.blockNumber,
      success: receipt.status === 'success',
      gasCostWei: receipt.gasUsed * receipt.effectiveGasPrice,
    };
  }
  const pending = await readOrNull('transaction', TransactionNotFoundError, () => ctx.client.getTransaction({ hash }));
  return pending === null ? { state: 'unknown' } : { state: 'pending' };
}

export async function minedReceipt(ctx: WalletContext, hash: Hex): Promise<MinedReceipt | null> {
  const receipt = await receiptOrNull(ctx, hash);
  if (receipt === null) return null;
  const transfers = parseEventLogs({ abi: erc20Abi, eventName: 'Transfer', logs: receipt.logs, strict: false });
  return {
    blockNumber: receipt.blockNumber,
    blockHash: receipt.blockHash,
    success: receipt.status === 'success',
    gasCostWei: receipt.gasUsed * receipt.effectiveGasPrice,
    tokenTransfers: transfers.flatMap((log) =>
      log.args.from !== undefined && log.args.to !== undefined && log.args.value !== undefined
        ? [{ token: log.address, from: log.args.from, to: log.args.to, value: log.args.value }]
        : [],
    ),
  };
}

export async function transaction(ctx: WalletContext, hash: Hex): Promise<ChainTransaction | null> {
  const tx = await readOrNull('transaction', TransactionNotFoundError, () => ctx.client.getTransaction({ hash }));
  if (tx === null) return null;
  return { hash: tx.hash, from: tx.from, to: tx.to ?? null, value: tx.value, nonce: tx.nonce, input: tx.input };
}

export async function tokenReceived(
  ctx: WalletContext,
  hash: Hex,
  token: Address,
  to: Address,
): Promise<bigint | null> {
  const receipt = await receiptOrNull(ctx, hash);
  if (receipt === null) return null;
  if (receipt.status !== 'success') return 0n;
  const logs = parseEventLogs({ abi: erc20Abi, eventName: 'Transfer', logs: receipt.logs });
  return logs
    .filter(
      (log) => log.address.toLowerCase() === token.toLowerCase() && log.args.to.toLowerCase() === to.toLowerCase(),
    )
    .reduce((sum, log) => sum + log.args.value, 0n);
}

export async function nativeReceived(ctx: WalletContext, hash: Hex, to: Address): Promise<bigint | null> {
  const receipt = await receiptOrNull(ctx, hash);
  if (receipt === null) return null;
  if (receipt.status !== 'success') return 0n;
  const tx = await guard('transaction', () => ctx.client.getTransaction({ hash }));
  return tx.to?.toLowerCase() === to.toLowerCase() ? tx.value : 0n;
}

export async function waitMined(ctx: WalletContext, hash: Hex, timeoutMs: number): Promise<TxLookup> {
  try {
    await ctx.client.waitForTransactionReceipt({ hash, timeout: timeoutMs, pollingInterval: 250 });
  } catch (error) {
    // Past the deadline the answer is what the chain shows now (pending or unknown), as for any other read.
    if (!(error instanceof WaitForTransactionReceiptTimeoutError)) {
      throw new ChainUnavailableError(`receipt wait: ${(error as Error).message}`, { cause: error });
    }
  }
  // Read again rather than trust the waiter's receipt: for a replaced transaction viem answers the replacement's.
  return lookup(ctx, hash);
}
