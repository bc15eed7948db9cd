/** Pricing a transfer: the call it makes, the gas it may use and the fees it offers. */
import {
  BaseError,
  encodeFunctionData,
  erc20Abi,
  ExecutionRevertedError,
  HttpRequestError,
  InsufficientFundsError,
  TimeoutError,
  type Address,
  type Hex,
} from 'viem';
import { guard, type WalletContext } from './context.ts';
import {
  ChainUnavailableError,
  type FeeQuote,
  type GasEstimate,
  type TransferAsset,
  type TransferRequest,
} from './types.ts';

const NATIVE_GAS = 21_000n;
/** A cancel is a plain transfer to an account without code (the host wallet itself). */
export const CANCEL_GAS = NATIVE_GAS;
// ERC-20 transfers cost ~35-65k gas; a fixed ceiling keeps signing free of a network estimate call.
const ERC20_GAS = 100_000n;

export function gasLimit(asset: TransferAsset): bigint {
  return asset.kind === 'native' ? NATIVE_GAS : ERC20_GAS;
}

/**
 * The limit signed for an estimate: a transfer to an account without code costs exactly 21,000 and nothing can change
 * that; anything running code gets a fifth more, for state that may change between the estimate and the block.
 */
export function gasWithMargin(estimate: bigint): bigint {
  return estimate === NATIVE_GAS ? estimate : (estimate * 6n + 4n) / 5n;
}

export function callOf(request: { to: Address; asset: TransferAsset; amount: bigint }): {
  to: Address;
  value: bigint;
  data?: Hex;
} {
  if (request.asset.kind === 'native') return { to: request.to, value: request.amount };
  return {
    to: request.asset.contract,
    value: 0n,
    data: encodeFunctionData({ abi: erc20Abi, functionName: 'transfer', args: [request.to, request.amount] }),
  };
}

/** The wallet's fees(): the first call checks the RPC serves the configured chain, the rest only price. */
export function feeReader(ctx: WalletContext): () => Promise<FeeQuote> {
  let chainVerified = false;
  return async () => {
    // Checked before the first transaction is priced (and so signed), even when the RPC was down at start.
    if (!chainVerified) {
      const served = await guard('chain id', () => ctx.client.getChainId());
      if (served !== ctx.chainId)
        throw new Error(`the RPC serves chain ${served}, not chain ${ctx.chainId}: refusing to sign`);
      chainVerified = true;
    }
    return guard('fees', () => ctx.client.estimateFeesPerGas());
  };
}

export async function estimateGas(
  ctx: WalletContext,
  request: Omit<TransferRequest, 'nonce' | 'gas'>,
): Promise<GasEstimate> {
  try {
    const gas = await ctx.client.estimateGas({ account: ctx.address, ...callOf(request) });
    return { ok: true, gas };
  } catch (error) {
    return estimateFailure(error);
  }
}

/** A failed estimate as a verdict on the call, or thrown as unavailability when it says nothing about the call. */
function estimateFailure(error: unknown): GasEstimate {
  const base = error instanceof BaseError ? error : undefined;
  const message = base ? base.shortMessage : (error as Error).message;
  if (base?.walk((e) => e instanceof HttpRequestError || e instanceof TimeoutError))
    throw new ChainUnavailableError(`estimate gas: ${message}`, { cause: error });
  if (base?.walk((e) => e instanceof InsufficientFundsError))
    return { ok: false, reason: 'insufficient_funds', message };
  const text = `${base?.details ?? ''} ${message}`.toLowerCase();
  if (
    base?.walk((e) => e instanceof ExecutionRevertedError) ||
    text.includes('revert') ||
    text.includes('gas required exceeds') ||
    text.includes('out of gas')
  ) {
    return { ok: false, reason: 'reverted', message };
  }
  // Not a verdict on the call: look again later rather than fail a payout on an unexplained answer.
  throw new ChainUnavailableError(`estimate gas: ${message}`, { cause: error });
}
