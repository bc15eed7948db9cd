/**
 * What every wallet operation works from (the RPC client, the host account, the chain it must be on), and the two
 * ways a read fails: the chain is unreachable, or it does not know the thing asked for.
 */
import {
  BaseError,
  createPublicClient,
  http,
  TransactionNotFoundError,
  TransactionReceiptNotFoundError,
  type Address,
  type Hex,
  type PublicClient,
  type TransactionReceipt,
} from 'viem';
import { privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts';
import { ChainUnavailableError } from './types.ts';

export type WalletOptions = { rpcUrl: string; chainId: number; timeoutMs: number } & (
  { privateKey: Hex } | { address: Address }
);

export interface WalletContext {
  readonly client: PublicClient;
  readonly chainId: number;
  readonly address: Address;
  readonly signTransaction: PrivateKeyAccount['signTransaction'];
}

export function walletContext(options: WalletOptions): WalletContext {
  const signer: PrivateKeyAccount | undefined =
    'privateKey' in options ? privateKeyToAccount(options.privateKey) : undefined;
  return {
    client: createPublicClient({ transport: http(options.rpcUrl, { timeout: options.timeoutMs, retryCount: 0 }) }),
    chainId: options.chainId,
    address: signer?.address ?? (options as { address: Address }).address,
    signTransaction: (...args) => {
      if (!signer) throw new Error('this wallet only reads: it was made without the host wallet key');
      return signer.signTransaction(...args);
    },
  };
}

/** Any failure of `call` is the chain being unavailable, except viem's not-found answers, which pass through. */
export async function guard<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof TransactionNotFoundError || error instanceof TransactionReceiptNotFoundError) throw error;
    throw new ChainUnavailableError(
      `${what}: ${error instanceof BaseError ? error.shortMessage : (error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}

/** The answer of `call`, or null when it fails with `missing` (the chain does not know it); anything else is unavailability. */
export async function readOrNull<T>(
  what: string,
  missing: abstract new (...args: never[]) => Error,
  call: () => Promise<T>,
): Promise<T | null> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof missing) return null;
    throw new ChainUnavailableError(`${what}: ${(error as Error).message}`, { cause: error });
  }
}

/** The receipt, or null while the chain does not know the transaction as mined. */
export function receiptOrNull(ctx: WalletContext, hash: Hex): Promise<TransactionReceipt | null> {
  return readOrNull('receipt', TransactionReceiptNotFoundError, () => ctx.client.getTransactionReceipt({ hash }));
}
