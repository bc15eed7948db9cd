/** Local signing (no network call), so the hash is known and stored before anything is broadcast. */
import { keccak256, type Address, type Hex } from 'viem';
import type { WalletContext } from './context.ts';
import { callOf, CANCEL_GAS, gasLimit } from './fees.ts';
import type { FeeQuote, SignedTransfer, TransferRequest } from './types.ts';

export function signTransfer(ctx: WalletContext, request: TransferRequest, fees: FeeQuote): Promise<SignedTransfer> {
  return signAt(ctx, request.nonce, request.gas ?? gasLimit(request.asset), fees, callOf(request));
}

export function signCancel(ctx: WalletContext, nonce: number, fees: FeeQuote): Promise<SignedTransfer> {
  return signAt(ctx, nonce, CANCEL_GAS, fees, { to: ctx.address, value: 0n });
}

async function signAt(
  ctx: WalletContext,
  nonce: number,
  gas: bigint,
  fees: FeeQuote,
  call: { to: Address; value: bigint; data?: Hex },
): Promise<SignedTransfer> {
  const rawTx = await ctx.signTransaction({
    chainId: ctx.chainId,
    nonce,
    gas,
    maxFeePerGas: fees.maxFeePerGas,
    maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
    type: 'eip1559',
    ...call,
  });
  return { rawTx, hash: keccak256(rawTx), nonce, maxFeeWei: gas * fees.maxFeePerGas };
}
