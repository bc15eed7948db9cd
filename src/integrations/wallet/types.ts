/** What the host wallet's callers see: its interface, the shapes it answers in and its one error. */
import type { Address, Hex } from 'viem';

export type TransferAsset = { kind: 'native' } | { kind: 'erc20'; contract: Address };

export interface TransferRequest {
  readonly to: Address;
  readonly asset: TransferAsset;
  /** Smallest units (wei, or the token's base unit). */
  readonly amount: bigint;
  readonly nonce: number;
  /** The gas limit (from estimateGas); a fixed one for the asset when left out. */
  readonly gas?: bigint;
}

export type GasEstimate =
  { ok: true; gas: bigint } | { ok: false; reason: 'reverted' | 'insufficient_funds'; message: string };

/** A mined transaction as the chain shows it now, with the ERC-20 Transfer logs it emitted. */
export interface MinedReceipt {
  readonly blockNumber: bigint;
  readonly blockHash: Hex;
  readonly success: boolean;
  readonly gasCostWei: bigint;
  readonly tokenTransfers: ReadonlyArray<{ token: Address; from: Address; to: Address; value: bigint }>;
}

export interface ChainTransaction {
  readonly hash: Hex;
  readonly from: Address;
  readonly to: Address | null;
  readonly value: bigint;
  readonly nonce: number;
  readonly input: Hex;
}

export interface FeeQuote {
  readonly maxFeePerGas: bigint;
  readonly maxPriorityFeePerGas: bigint;
}

export interface SignedTransfer {
  readonly rawTx: Hex;
  readonly hash: Hex;
  readonly nonce: number;
  /** The most the transaction can cost in gas, in wei. */
  readonly maxFeeWei: bigint;
}

export type TxLookup =
  | { state: 'mined'; blockNumber: bigint; success: boolean; gasCostWei: bigint }
  | { state: 'pending' }
  | { state: 'unknown' };

export type BroadcastResult =
  | { ok: true }
  | {
      ok: false;
      reason: 'insufficient_funds' | 'nonce_too_low' | 'nonce_gap' | 'underpriced' | 'rejected';
      message: string;
    };

export class ChainUnavailableError extends Error {
  override name = 'ChainUnavailableError';
}

export interface ChainWallet {
  readonly address: Address;
  readonly chainId: number;
  pendingNonce(): Promise<number>;
  balance(asset: TransferAsset): Promise<bigint>;
  /** The latest block the node knows (a cheap liveness read). */
  blockNumber(): Promise<bigint>;
  /** EIP-1559 fees for a transaction now (a network call). */
  fees(): Promise<FeeQuote>;
  /** The most a transfer of this asset can cost in gas at these fees, in wei. */
  maxFeeWei(asset: TransferAsset, fees: FeeQuote): bigint;
  /** Gas for the real call from the host wallet (a contract receiver needs more than 21,000), or why it would fail. */
  estimateGas(request: Omit<TransferRequest, 'nonce' | 'gas'>): Promise<GasEstimate>;
  /** Signs locally (no network call): the hash is known before anything is broadcast. */
  sign(request: TransferRequest, fees: FeeQuote): Promise<SignedTransfer>;
  /** A zero-value transfer to the host wallet itself at `nonce`: mined, it takes the nonce from every other version. */
  signCancel(nonce: number, fees: FeeQuote): Promise<SignedTransfer>;
  /** The receipt as the chain shows it now, or null while it shows none (not mined, reorganised away, lagging node). */
  receipt(hash: Hex): Promise<MinedReceipt | null>;
  transaction(hash: Hex): Promise<ChainTransaction | null>;
  /** How many transactions of the host wallet are in the chain at `block` (a number, or the latest block). */
  nonceAt(block: bigint | 'latest'): Promise<number>;
  /** The number of the block a tag names: 'safe' and 'finalized' are what the chain says will not change. */
  blockAt(tag: 'latest' | 'safe' | 'finalized'): Promise<bigint>;
  /** The hash of the block at `number` in the chain as the node sees it now, or null beyond its head. */
  blockHash(number: bigint): Promise<Hex | null>;
  /** The host wallet's transactions in the block at `number` (hash and nonce), for finding who used a nonce. */
  hostTransactionsIn(number: bigint): Promise<Array<{ hash: Hex; nonce: number }>>;
  broadcast(rawTx: Hex): Promise<BroadcastResult>;
  lookup(hash: Hex): Promise<TxLookup>;
  /**
   * What a mined transaction moved of `token` to `to` (sum of its ERC-20 Transfer logs), or null when the chain
   * does not know the transaction (not mined, or not yet visible). Used to check what ChangeNow says it paid us.
   */
  tokenReceived(hash: Hex, token: Address, to: Address): Promise<bigint | null>;
  /** What a mined transaction sent in the native coin straight to `to`, or null when the chain does not know it. */
  nativeReceived(hash: Hex, to: Address): Promise<bigint | null>;
  /** Waits at most `timeoutMs` for the receipt; returns the last lookup when the deadline passes. */
  waitMined(hash: Hex, timeoutMs: number): Promise<TxLookup>;
}
