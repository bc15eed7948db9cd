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

/** The receipt of whichever version is mined, waiting at most `waitMs` for one to appear. */
export async function findMined(deps: StageDeps, versions: readonly TransferVersion[], waitMs: number): Promise<MinedVersion | null> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const receipts = await Promise.all(versions.map((v) => deps.wallet.receipt(v.tx_hash as Hex)));
    const index = receipts.findIndex((r) => r !== null);
    if (index >= 0) return { version: versions[index] as TransferVersion, receipt: receipts[index] as MinedReceipt };
    if (Date.now() >= deadline) return null;
    await new Promise((resolve) => setTimeout(resolve, RECEIPT_POLL_MS));
  }
}

/** The block is as deep as CHAIN_CONFIRMATIONS asks (its own block counts as one), or covered by the tag named. */
export async function deepEnough(deps: StageDeps, blockNumber: bigint): Promise<boolean> {
  const confirmations = deps.settings.transfer.confirmations;
  if (typeof confirmations === 'number') return (await deps.wallet.blockAt('latest')) - blockNumber + 1n >= BigInt(confirmations);
  return (await deps.wallet.blockAt(confirmations)) >= blockNumber;
}

/** The newest block the confirmation policy trusts: what the nonce is read at. */
export async function trustedBlock(deps: StageDeps): Promise<bigint> {
  const confirmations = deps.settings.transfer.confirmations;
  if (typeof confirmations !== 'number') return deps.wallet.blockAt(confirmations);
  const at = (await deps.wallet.blockAt('latest')) - BigInt(confirmations - 1);
  return at < 0n ? 0n : at;
}
