/**
 * The chain's misbehaviour on demand, for tests and the chaos run: thin helpers over anvil's RPC that reproduce what
 * mainnet does to a payment system (shared/REALITY.md, Ethereum). Each one states what anvil 1.7 was seen to do,
 * because anvil and geth differ in places that matter to a sender (see spikeBaseFee and reorg).
 */
import { createPublicClient, createWalletClient, http, type Address, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { rpc, viemLocalChain } from './chain.ts';

const TIMEOUT_MS = 10_000;

/**
 * Runtime code that stores CALLVALUE in slot 0 (CALLVALUE PUSH0 SSTORE STOP): receiving ETH costs a cold SSTORE,
 * about 22,000 gas on top of the 21,000 intrinsic, as a Safe's or a 4337 account's receive hook costs something. A
 * plain 21,000-gas transfer to it is mined with status 0 (out of gas); one with eth_estimateGas's limit succeeds.
 */
const GAS_HUNGRY_RECEIVER: Hex = '0x345f5500';
/** Runtime code that reverts on any call (PUSH0 PUSH0 REVERT): eth_estimateGas for a transfer to it fails. */
const REJECTING_RECEIVER: Hex = '0x5f5ffd';

/** Turns `address` into a contract wallet that needs more than 21,000 gas to receive ETH. */
export async function makeContractWallet(rpcUrl: string, address: Address): Promise<void> {
  await rpc(rpcUrl, 'anvil_setCode', [address, GAS_HUNGRY_RECEIVER]);
}

/** Turns `address` into a contract that refuses every transfer: estimation and any sent transaction revert. */
export async function makeRejectingWallet(rpcUrl: string, address: Address): Promise<void> {
  await rpc(rpcUrl, 'anvil_setCode', [address, REJECTING_RECEIVER]);
}

/** Stops mining: new transactions wait in anvil's pool until mineBlocks or resumeMining. */
export async function pausePool(rpcUrl: string): Promise<void> {
  await rpc(rpcUrl, 'evm_setAutomine', [false]);
}

/** Mines one block per transaction again; anvil mines what waits in the pool at once. */
export async function resumeMining(rpcUrl: string): Promise<void> {
  await rpc(rpcUrl, 'evm_setAutomine', [true]);
}

/** Mines `count` blocks now, taking from the pool what fits (transactions priced under the base fee are evicted). */
export async function mineBlocks(rpcUrl: string, count: number): Promise<void> {
  if (!Number.isInteger(count) || count < 1 || count > 10_000)
    throw new Error(`mineBlocks: count ${count} out of 1..10000`);
  await rpc(rpcUrl, 'anvil_mine', [`0x${count.toString(16)}`]);
}

/**
 * Makes the base fee `weiPerGas` now: sets the next block's base fee and mines that (empty unless the pool holds
 * transactions that can pay it) block. Observed on anvil 1.7: the mined block carries exactly `weiPerGas`, and later
 * blocks move from it by EIP-1559's rule (an empty block lowers it by 12.5 %: 100 gwei, 87.5, 76.5625, ...); the
 * spike does not persist. Unlike geth, anvil does not keep a transaction whose max fee is under a block's base fee
 * waiting: the block it missed evicts it from the pool (it becomes unknown). To keep a transaction waiting, pause
 * the pool instead.
 */
export async function spikeBaseFee(rpcUrl: string, weiPerGas: bigint): Promise<void> {
  if (weiPerGas <= 0n) throw new Error('spikeBaseFee: weiPerGas must be positive');
  await rpc(rpcUrl, 'anvil_setNextBlockBaseFeePerGas', [`0x${weiPerGas.toString(16)}`]);
  await rpc(rpcUrl, 'evm_mine', []);
}

/** The pool forgets everything pending (anvil_dropAllTransactions): those hashes become unknown to the node. */
export async function dropAllPending(rpcUrl: string): Promise<void> {
  await rpc(rpcUrl, 'anvil_dropAllTransactions', []);
}

/** The pool forgets one pending transaction; true when anvil held it (it answers the hash, or null when unknown). */
export async function dropTransaction(rpcUrl: string, hash: Hex): Promise<boolean> {
  return (await rpc(rpcUrl, 'anvil_dropTransaction', [hash])) !== null;
}

/**
 * Reorganises the last `depth` blocks (anvil_reorg): they are replaced by as many new blocks, so the height is the
 * same but the hashes differ. Observed on anvil 1.7: the replaced blocks' transactions vanish, their receipts and
 * eth_getTransactionByHash answer null and they do not go back to the pool (the sender's nonce drops back), unless
 * named in `reinclude`: each of those signed transactions is mined again in the new block at `blockOffset` (0 is
 * the first replaced height), the "left the chain and came back in another block" case. (anvil_rollback, by
 * contrast, removes blocks and lowers the height; its transactions vanish the same way.)
 */
export async function reorg(
  rpcUrl: string,
  depth: number,
  reinclude: { rawTx: Hex; blockOffset: number }[] = [],
): Promise<void> {
  if (!Number.isInteger(depth) || depth < 1 || depth > 64) throw new Error(`reorg: depth ${depth} out of 1..64`);
  for (const { blockOffset } of reinclude) {
    if (!Number.isInteger(blockOffset) || blockOffset < 0 || blockOffset >= depth)
      throw new Error(`reorg: blockOffset ${blockOffset} out of 0..${depth - 1}`);
  }
  await rpc(rpcUrl, 'anvil_reorg', [depth, reinclude.map(({ rawTx, blockOffset }) => [rawTx, blockOffset])]);
}

/**
 * Someone else holding the key uses its next nonce, as an operator's wallet app would: a zero-value self-transfer,
 * sent straight to anvil at the pending nonce. Returns its hash. `nonce` takes a given nonce instead (a replacement
 * of a pending transaction: anvil then wants a strictly higher max fee, pass `maxFeePerGasWei`).
 */
export async function takeNonce(
  rpcUrl: string,
  privateKey: Hex,
  options: { nonce?: number; maxFeePerGasWei?: bigint } = {},
): Promise<Hex> {
  const account = privateKeyToAccount(privateKey);
  const transport = http(rpcUrl, { timeout: TIMEOUT_MS, retryCount: 0 });
  const client = createPublicClient({ transport });
  const chain = await viemLocalChain(client, rpcUrl);
  const wallet = createWalletClient({ account, chain, transport });
  const nonce = options.nonce ?? (await client.getTransactionCount({ address: account.address, blockTag: 'pending' }));
  // Tip = max fee when given, so a replacement also outbids on the tip (geth wants both raised by 10 %).
  const fees =
    options.maxFeePerGasWei === undefined
      ? {}
      : { maxFeePerGas: options.maxFeePerGasWei, maxPriorityFeePerGas: options.maxFeePerGasWei };
  return wallet.sendTransaction({ to: account.address, value: 0n, nonce, gas: 21_000n, ...fees });
}

/** The latest block's base fee in wei per gas. */
export async function baseFee(rpcUrl: string): Promise<bigint> {
  const block = (await rpc(rpcUrl, 'eth_getBlockByNumber', ['latest', false])) as { baseFeePerGas?: Hex } | null;
  if (!block?.baseFeePerGas) throw new Error('baseFee: the latest block has no base fee');
  return BigInt(block.baseFeePerGas);
}
