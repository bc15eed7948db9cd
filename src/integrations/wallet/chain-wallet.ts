/**
 * The platform's host wallet on an EVM chain, through viem. Chain operations only: signing is local and separate
 * from broadcasting, so the caller can store a signed transaction (and its hash) as the transfer's intent before it
 * ever reaches the network, and a retry can ask the chain about that exact hash instead of sending again.
 */
import {
  BaseError,
  BlockNotFoundError,
  createPublicClient,
  encodeFunctionData,
  erc20Abi,
  ExecutionRevertedError,
  HttpRequestError,
  http,
  InsufficientFundsError,
  keccak256,
  parseEventLogs,
  TransactionNotFoundError,
  TimeoutError,
  TransactionReceiptNotFoundError,
  WaitForTransactionReceiptTimeoutError,
  type Address,
  type Hex,
  type PublicClient,
} from 'viem';
import { privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts';

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
  | { ok: false; reason: 'insufficient_funds' | 'nonce_too_low' | 'underpriced' | 'rejected'; message: string };

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

const NATIVE_GAS = 21_000n;
/** A cancel is a plain transfer to an account without code (the host wallet itself). */
export const CANCEL_GAS = NATIVE_GAS;
// ERC-20 transfers cost ~35-65k gas; a fixed ceiling keeps signing free of a network estimate call.
const ERC20_GAS = 100_000n;

function gasLimit(asset: TransferAsset): bigint {
  return asset.kind === 'native' ? NATIVE_GAS : ERC20_GAS;
}

/**
 * The limit signed for an estimate: a transfer to an account without code costs exactly 21,000 and nothing can change
 * that; anything running code gets a fifth more, for state that may change between the estimate and the block.
 */
export function gasWithMargin(estimate: bigint): bigint {
  return estimate === NATIVE_GAS ? estimate : (estimate * 6n + 4n) / 5n;
}

function callOf(
  account: Address,
  request: { to: Address; asset: TransferAsset; amount: bigint },
): { to: Address; value: bigint; data?: Hex } {
  if (request.asset.kind === 'native') return { to: request.to, value: request.amount };
  return {
    to: request.asset.contract,
    value: 0n,
    data: encodeFunctionData({ abi: erc20Abi, functionName: 'transfer', args: [request.to, request.amount] }),
  };
}

/**
 * With `address` instead of `privateKey`, a read-only wallet (check-ledger --chain, deposits): signing throws, and
 * the key never has to reach a process that only reads.
 */
export function createChainWallet(
  options: { rpcUrl: string; chainId: number; timeoutMs: number } & ({ privateKey: Hex } | { address: Address }),
): ChainWallet {
  const signer: PrivateKeyAccount | undefined =
    'privateKey' in options ? privateKeyToAccount(options.privateKey) : undefined;
  const account = {
    address: signer?.address ?? (options as { address: Address }).address,
    signTransaction: (...args: Parameters<PrivateKeyAccount['signTransaction']>) => {
      if (!signer) throw new Error('this wallet only reads: it was made without the host wallet key');
      return signer.signTransaction(...args);
    },
  };
  const client: PublicClient = createPublicClient({
    transport: http(options.rpcUrl, { timeout: options.timeoutMs, retryCount: 0 }),
  });
  const guard = async <T>(what: string, call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (error) {
      if (error instanceof TransactionNotFoundError || error instanceof TransactionReceiptNotFoundError) throw error;
      throw new ChainUnavailableError(
        `${what}: ${error instanceof BaseError ? error.shortMessage : (error as Error).message}`,
        { cause: error },
      );
    }
  };

  /** The receipt, or null while the chain does not know the transaction as mined. */
  const receiptOrNull = async (hash: Hex) => {
    try {
      return await client.getTransactionReceipt({ hash });
    } catch (error) {
      if (error instanceof TransactionReceiptNotFoundError) return null;
      throw new ChainUnavailableError(`receipt: ${(error as Error).message}`, { cause: error });
    }
  };

  let chainVerified = false;
  const lookup = async (hash: Hex): Promise<TxLookup> => {
    try {
      const receipt = await client.getTransactionReceipt({ hash });
      return {
        state: 'mined',
        blockNumber: receipt.blockNumber,
        success: receipt.status === 'success',
        gasCostWei: receipt.gasUsed * receipt.effectiveGasPrice,
      };
    } catch (error) {
      if (!(error instanceof TransactionReceiptNotFoundError))
        throw new ChainUnavailableError(`receipt: ${(error as Error).message}`, { cause: error });
    }
    try {
      await client.getTransaction({ hash });
      return { state: 'pending' };
    } catch (error) {
      if (error instanceof TransactionNotFoundError) return { state: 'unknown' };
      throw new ChainUnavailableError(`transaction: ${(error as Error).message}`, { cause: error });
    }
  };

  return {
    address: account.address,
    chainId: options.chainId,
    pendingNonce: () =>
      guard('nonce', () => client.getTransactionCount({ address: account.address, blockTag: 'pending' })),
    balance: (asset) =>
      guard('balance', () =>
        asset.kind === 'native'
          ? client.getBalance({ address: account.address })
          : client.readContract({
              address: asset.contract,
              abi: erc20Abi,
              functionName: 'balanceOf',
              args: [account.address],
            }),
      ),
    blockNumber: () => guard('block number', () => client.getBlockNumber({ cacheTime: 0 })),
    async fees() {
      // Checked before the first transaction is priced (and so signed), even when the RPC was down at start.
      if (!chainVerified) {
        const served = await guard('chain id', () => client.getChainId());
        if (served !== options.chainId)
          throw new Error(`the RPC serves chain ${served}, not chain ${options.chainId}: refusing to sign`);
        chainVerified = true;
      }
      return guard('fees', () => client.estimateFeesPerGas());
    },
    maxFeeWei: (asset, fees) => gasLimit(asset) * fees.maxFeePerGas,
    async estimateGas(request) {
      try {
        const gas = await client.estimateGas({ account: account.address, ...callOf(account.address, request) });
        return { ok: true, gas };
      } catch (error) {
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
    },
    async sign(request, fees) {
      const gas = request.gas ?? gasLimit(request.asset);
      const base = {
        chainId: options.chainId,
        nonce: request.nonce,
        gas,
        maxFeePerGas: fees.maxFeePerGas,
        maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
        type: 'eip1559' as const,
      };
      const rawTx = await account.signTransaction({ ...base, ...callOf(account.address, request) });
      return { rawTx, hash: keccak256(rawTx), nonce: request.nonce, maxFeeWei: gas * fees.maxFeePerGas };
    },
    async signCancel(nonce, fees) {
      const base = {
        chainId: options.chainId,
        nonce,
        gas: CANCEL_GAS,
        maxFeePerGas: fees.maxFeePerGas,
        maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
        type: 'eip1559' as const,
      };
      const rawTx = await account.signTransaction({ ...base, to: account.address, value: 0n });
      return { rawTx, hash: keccak256(rawTx), nonce, maxFeeWei: CANCEL_GAS * fees.maxFeePerGas };
    },
    async receipt(hash) {
      const receipt = await receiptOrNull(hash);
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
    },
    async transaction(hash) {
      try {
        const tx = await client.getTransaction({ hash });
        return { hash: tx.hash, from: tx.from, to: tx.to ?? null, value: tx.value, nonce: tx.nonce, input: tx.input };
      } catch (error) {
        if (error instanceof TransactionNotFoundError) return null;
        throw new ChainUnavailableError(`transaction: ${(error as Error).message}`, { cause: error });
      }
    },
    nonceAt: (block) =>
      guard('nonce', () =>
        block === 'latest'
          ? client.getTransactionCount({ address: account.address, blockTag: 'latest' })
          : client.getTransactionCount({ address: account.address, blockNumber: block }),
      ),
    async blockHash(number) {
      try {
        return (await client.getBlock({ blockNumber: number })).hash;
      } catch (error) {
        if (error instanceof BlockNotFoundError) return null;
        throw new ChainUnavailableError(`block ${number}: ${(error as Error).message}`, { cause: error });
      }
    },
    async hostTransactionsIn(number) {
      const block = await guard(`block ${number}`, () =>
        client.getBlock({ blockNumber: number, includeTransactions: true }),
      );
      return block.transactions
        .filter((tx) => tx.from.toLowerCase() === account.address.toLowerCase())
        .map((tx) => ({ hash: tx.hash, nonce: tx.nonce }));
    },
    async blockAt(tag) {
      if (tag === 'latest') return guard('block number', () => client.getBlockNumber({ cacheTime: 0 }));
      const block = await guard(`${tag} block`, () => client.getBlock({ blockTag: tag }));
      return block.number;
    },
    async broadcast(rawTx) {
      try {
        await client.sendRawTransaction({ serializedTransaction: rawTx });
        return { ok: true };
      } catch (error) {
        const text =
          `${error instanceof BaseError ? (error.details ?? '') : ''} ${(error as Error).message}`.toLowerCase();
        // The node already has it: a repeat of our own broadcast, which is the point of signing first.
        if (
          text.includes('already known') ||
          text.includes('already imported') ||
          text.includes('transaction already exists')
        )
          return { ok: true };
        if (text.includes('insufficient funds'))
          return { ok: false, reason: 'insufficient_funds', message: text.trim() };
        if (text.includes('nonce too low')) return { ok: false, reason: 'nonce_too_low', message: text.trim() };
        // A version at the same nonce with higher fees is already in the node's pool (or this one is not 10 % above it).
        if (text.includes('underpriced') || text.includes('fee too low') || text.includes('less than block base fee'))
          return { ok: false, reason: 'underpriced', message: text.trim() };
        if (
          text.includes('fetch failed') ||
          text.includes('econnrefused') ||
          text.includes('timed out') ||
          text.includes('http request failed')
        ) {
          throw new ChainUnavailableError(`broadcast: ${text.trim()}`, { cause: error });
        }
        return { ok: false, reason: 'rejected', message: text.trim() };
      }
    },
    lookup,
    async tokenReceived(hash, token, to) {
      const receipt = await receiptOrNull(hash);
      if (receipt === null) return null;
      if (receipt.status !== 'success') return 0n;
      const logs = parseEventLogs({ abi: erc20Abi, eventName: 'Transfer', logs: receipt.logs });
      return logs
        .filter(
          (log) => log.address.toLowerCase() === token.toLowerCase() && log.args.to.toLowerCase() === to.toLowerCase(),
        )
        .reduce((sum, log) => sum + log.args.value, 0n);
    },
    async nativeReceived(hash, to) {
      const receipt = await receiptOrNull(hash);
      if (receipt === null) return null;
      if (receipt.status !== 'success') return 0n;
      const tx = await guard('transaction', () => client.getTransaction({ hash }));
      return tx.to?.toLowerCase() === to.toLowerCase() ? tx.value : 0n;
    },
    async waitMined(hash, timeoutMs) {
      try {
        await client.waitForTransactionReceipt({ hash, timeout: timeoutMs, pollingInterval: 250 });
      } catch (error) {
        // Past the deadline the answer is what the chain shows now (pending or unknown), as for any other read.
        if (!(error instanceof WaitForTransactionReceiptTimeoutError)) {
          throw new ChainUnavailableError(`receipt wait: ${(error as Error).message}`, { cause: error });
        }
      }
      // Read again rather than trust the waiter's receipt: for a replaced transaction viem answers the replacement's.
      return lookup(hash);
    },
  };
}
