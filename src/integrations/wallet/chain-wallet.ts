/**
 * The platform's host wallet on an EVM chain, through viem. Chain operations only: signing is local and separate
 * from broadcasting, so the caller can store a signed transaction (and its hash) as the transfer's intent before it
 * ever reaches the network, and a retry can ask the chain about that exact hash instead of sending again.
 */
import { broadcast } from './broadcast.ts';
import { walletContext, type WalletOptions } from './context.ts';
import { estimateGas, feeReader, gasLimit } from './fees.ts';
import { balance, blockAt, blockHash, blockNumber, hostTransactionsIn, nonceAt, pendingNonce } from './reads.ts';
import { lookup, minedReceipt, nativeReceived, tokenReceived, transaction, waitMined } from './receipts.ts';
import { signCancel, signTransfer } from './signing.ts';
import type { ChainWallet } from './types.ts';

export { CANCEL_GAS, gasWithMargin } from './fees.ts';
export {
  ChainUnavailableError,
  type BroadcastResult,
  type ChainTransaction,
  type ChainWallet,
  type FeeQuote,
  type GasEstimate,
  type MinedReceipt,
  type SignedTransfer,
  type TransferAsset,
  type TransferRequest,
  type TxLookup,
} from './types.ts';

/**
 * With `address` instead of `privateKey`, a read-only wallet (check-ledger --chain, deposits): signing throws, and
 * the key never has to reach a process that only reads.
 */
export function createChainWallet(options: WalletOptions): ChainWallet {
  const ctx = walletContext(options);
  return {
    address: ctx.address,
    chainId: ctx.chainId,
    pendingNonce: () => pendingNonce(ctx),
    balance: (asset) => balance(ctx, asset),
    blockNumber: () => blockNumber(ctx),
    fees: feeReader(ctx),
    maxFeeWei: (asset, fees) => gasLimit(asset) * fees.maxFeePerGas,
    estimateGas: (request) => estimateGas(ctx, request),
    sign: (request, fees) => signTransfer(ctx, request, fees),
    signCancel: (nonce, fees) => signCancel(ctx, nonce, fees),
    receipt: (hash) => minedReceipt(ctx, hash),
    transaction: (hash) => transaction(ctx, hash),
    nonceAt: (block) => nonceAt(ctx, block),
    blockHash: (number) => blockHash(ctx, number),
    hostTransactionsIn: (number) => hostTransactionsIn(ctx, number),
    blockAt: (tag) => blockAt(ctx, tag),
    broadcast: (rawTx) => broadcast(ctx, rawTx),
    lookup: (hash) => lookup(ctx, hash),
    tokenReceived: (hash, token, to) => tokenReceived(ctx, hash, token, to),
    nativeReceived: (hash, to) => nativeReceived(ctx, hash, to),
    waitMined: (hash, timeoutMs) => waitMined(ctx, hash, timeoutMs),
  };
}
