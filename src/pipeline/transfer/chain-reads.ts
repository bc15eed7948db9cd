/** What the chain shows of a transfer's versions, read through the confirmation policy. */
import type { Hex } from 'viem';
import type { MinedReceipt } from '../../integrations/wallet/index.ts';
import type { StageDeps } from '../interfaces.ts';
import type { TransferVersion } from './model.ts';

const RECEIPT_POLL_MS = 250;

export interface MinedVersion {
  readonly version: TransferVersion;
  readonly receipt: MinedReceipt;
}

/**
 * The receipt of whichever version is mined, waiting at most `waitMs` for one to appear. Not viem's
 * waitForTransactionReceipt: that follows one hash, and here any of several versions sharing a nonce may be the one
 * the chain took, each read through the same lagging-node-aware `receipt`. `lookedJustNow`: the caller found none a
 * moment ago, so the first look waits a poll interval too.
 */
export async function findMined(
  deps: StageDeps,
  versions: readonly TransferVersion[],
  waitMs: number,
  options: { lookedJustNow?: boolean } = {},
): Promise<MinedVersion | null> {
  const deadline = Date.now() + waitMs;
  if (options.lookedJustNow) await new Promise((resolve) => setTimeout(resolve, RECEIPT_POLL_MS));
  for (;;) {
    const receipts = await Promise.all(versions.map((v) => deps.wallet.receipt(v.tx_hash as Hex)));
    const index = receipts.findIndex((r) => r !== null);
    if (index >= 0) return { version: versions[index] as TransferVersion, receipt: receipts[index] as MinedReceipt };
    if (Date.now() >= deadline) return null;
    await new Promise((resolve) => setTimeout(resolve, RECEIPT_POLL_MS));
  }
}

/**
 * The receipt's block is as deep as CHAIN_CONFIRMATIONS asks (its own block counts as one), or covered by the tag
 * named, and is still the chain's block at that height when the depth is read: a receipt read just before a
 * reorganisation (or from another node behind a balancer) names a block the chain no longer has.
 */
export async function deepEnough(
  deps: StageDeps,
  receipt: Pick<MinedReceipt, 'blockNumber' | 'blockHash'>,
  deepUpTo?: bigint,
): Promise<boolean> {
  if (receipt.blockNumber > (deepUpTo ?? (await deepestBlock(deps)))) return false;
  return (await deps.wallet.blockHash(receipt.blockNumber))?.toLowerCase() === receipt.blockHash.toLowerCase();
}

/**
 * The highest block deep enough for CHAIN_CONFIRMATIONS now (may be below zero on a young chain): read once for a set
 * of receipts and passed to deepEnough, which still compares each receipt's block with the chain's.
 */
export async function deepestBlock(deps: StageDeps): Promise<bigint> {
  const confirmations = deps.settings.transfer.confirmations;
  return typeof confirmations === 'number'
    ? (await deps.wallet.blockAt('latest')) - BigInt(confirmations) + 1n
    : deps.wallet.blockAt(confirmations);
}

/**
 * The host wallet's transaction that used `nonce`, in blocks up to `upTo`: the first block whose nonce count passes
 * it (a binary search over the count, about 25 reads on mainnet), then that block's transaction at that nonce. Null
 * when the count has not passed it by `upTo`. Only asked when our versions show no receipt: "nonce used" alone
 * cannot tell our mined version (hidden by a lagging node) from someone else's.
 */
export async function nonceUser(
  deps: StageDeps,
  nonce: number,
  upTo: bigint,
): Promise<{ hash: string; blockNumber: bigint } | null> {
  if ((await deps.wallet.nonceAt(upTo)) <= nonce) return null;
  let low = 0n;
  let high = upTo;
  while (low < high) {
    const middle = (low + high) / 2n;
    if ((await deps.wallet.nonceAt(middle)) > nonce) high = middle;
    else low = middle + 1n;
  }
  const used = (await deps.wallet.hostTransactionsIn(low)).find((tx) => tx.nonce === nonce);
  return used ? { hash: used.hash, blockNumber: low } : null;
}

/** The newest block the confirmation policy trusts: what the nonce is read at. */
export async function trustedBlock(deps: StageDeps): Promise<bigint> {
  const at = await deepestBlock(deps);
  return at < 0n ? 0n : at;
}
