/**
 * Ledger = chain for a test world, as an operator runs it: the host wallet's funding booked as capital (`payrail
 * deposit`), and at the end `payrail check-ledger --chain`, exact in ETH and USDT, read through a wallet that only
 * knows the host address.
 */
import type { Address, Hex } from 'viem';
import { createChainWallet, type ChainWallet } from '../../src/integrations/wallet/index.ts';
import { checkLedgerAgainstChain, recordDeposit } from '../../src/treasury/index.ts';
import { formatChainReport } from '../../src/treasury/commands.ts';
import type { DatabaseHandle } from '../../src/db/index.ts';
import type { Outside } from './outside.ts';

/** The chain a database's money lives on: a host wallet other than the world's own can be named. */
export interface HostChain {
  rpcUrl: string;
  chainId: number;
  hostAddress: Address;
  usdt: Address;
}

export function hostChainOf(outside: Outside, hostAddress: Address = outside.hostAddress): HostChain {
  return { rpcUrl: outside.chain.rpcUrl, chainId: outside.chain.chainId, hostAddress, usdt: outside.usdt };
}

function reader(chain: HostChain): ChainWallet {
  return createChainWallet({
    rpcUrl: chain.rpcUrl,
    address: chain.hostAddress,
    chainId: chain.chainId,
    timeoutMs: 15_000,
  });
}

/** Books a transfer that funded the host wallet as platform capital (the world's own funding by default). */
export async function bookHostFunding(
  db: DatabaseHandle,
  outside: Outside,
  options: { txHash?: Hex; hostAddress?: Address } = {},
): Promise<void> {
  const chain = hostChainOf(outside, options.hostAddress);
  await recordDeposit(
    db.db,
    { wallet: reader(chain), usdtContract: chain.usdt, confirmations: 1 },
    { txHash: options.txHash ?? outside.hostFundingTx, asset: 'eth', actor: 'test-operator' },
  );
}

/**
 * Fails with the command's full report when the host wallet's ETH or USDT differs from the ledger of this database.
 * Run it once the file's payrail instances are stopped (nothing moves any more) and before the chain stops.
 */
export async function expectLedgerEqualsChain(db: DatabaseHandle, chain: Outside | HostChain): Promise<void> {
  const side = 'chain' in chain ? hostChainOf(chain) : chain;
  const report = await checkLedgerAgainstChain(db.db, { wallet: reader(side), usdtContract: side.usdt });
  if (!report.ok) throw new Error(`check-ledger --chain after this file:\n${formatChainReport(report)}`);
}
