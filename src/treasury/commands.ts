/**
 * The command-line side of the treasury: `payrail check-ledger --chain` and `payrail deposit <txHash>`. Both only
 * read the chain, so they take the host wallet's address (HOST_WALLET_ADDRESS, or derived from the key when given).
 */
import { privateKeyToAccount } from 'viem/accounts';
import type { Config } from '../config.ts';
import { createChainWallet, type ChainWallet } from '../integrations/wallet/index.ts';
import { decimalsOf, formatUnits } from '../money/index.ts';
import type { ChainReport } from './chain-check.ts';

/** The read-only wallet the commands use, or the reason it cannot be made from this configuration. */
export function readOnlyWallet(config: Config): ChainWallet | string {
  if (config.ETH_RPC_URL === undefined) return 'ETH_RPC_URL: required to read the chain';
  const fromKey = config.HOST_WALLET_PRIVATE_KEY ? privateKeyToAccount(config.HOST_WALLET_PRIVATE_KEY).address : undefined;
  const given = config.HOST_WALLET_ADDRESS;
  if (fromKey && given && fromKey.toLowerCase() !== given.toLowerCase()) return `HOST_WALLET_ADDRESS: ${given} is not the address of HOST_WALLET_PRIVATE_KEY (${fromKey})`;
  const address = (given ?? fromKey) as `0x${string}` | undefined;
  if (!address) return 'HOST_WALLET_ADDRESS: required (or HOST_WALLET_PRIVATE_KEY) to know which wallet to read';
  return createChainWallet({ rpcUrl: config.ETH_RPC_URL, address, chainId: config.CHAIN_ID, timeoutMs: 15_000 });
}

function units(amount: bigint, asset: 'eth' | 'usdt'): string {
  return `${formatUnits(amount, decimalsOf(asset))} ${asset.toUpperCase()}`;
}

/** Every term, so a difference can be traced to its cause. */
export function formatChainReport(report: ChainReport): string {
  const lines = [`host wallet ${report.hostAddress}`];
  for (const a of report.assets) {
    lines.push(
      `${a.asset.toUpperCase()}:`,
      `  on chain                                 ${units(a.onChain, a.asset)}`,
      `  ledger, held by the platform             ${units(a.ledgerHeld, a.asset)}   (channels, payouts set aside, fees, capital, gas paid)`,
      `  − mined, not booked out yet              ${units(a.leftNotBooked, a.asset)}   (${a.inFlight.length} transfer(s)${a.inFlight.length ? `: ${a.inFlight.slice(0, 5).map((t) => `${t.transferId} ${t.purpose} ${t.ref}`).join(', ')}` : ''})`,
      ...(a.asset === 'eth' ? [`  − gas of mined versions, not booked yet  ${units(a.gasNotBooked, a.asset)}`] : []),
      `  = expected on chain                      ${units(a.expected, a.asset)}`,
      `  difference (on chain − expected)         ${units(a.difference, a.asset)}${a.difference === 0n ? '' : '   MISMATCH'}`,
    );
  }
  lines.push(report.ok ? 'ledger = chain' : `ledger ≠ chain: ${report.assets.filter((a) => a.difference !== 0n).map((a) => a.asset.toUpperCase()).join(', ')}`);
  return `${lines.join('\n')}\n`;
}

