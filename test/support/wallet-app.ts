/**
 * The test world's chain as software outside payrail sees it through viem: an operator's wallet app holding a key
 * payrail also holds, and a client that waits for what was sent to be mined.
 */
import { createPublicClient, createWalletClient, http, type Chain, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import type { LocalChain } from '../../src/simulators/index.ts';

type Node = Pick<LocalChain, 'chainId' | 'rpcUrl'>;

/** The chain as viem signs for it: anvil's id, reached at `rpcUrl` (the node itself unless a proxy in front is named). */
export function viemChain(node: Node, rpcUrl: string = node.rpcUrl): Chain {
  return {
    id: node.chainId,
    name: 'local',
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  };
}

/** A wallet app signing with `key` beside payrail, as an operator's own app sharing the host key would. */
export function walletApp(node: Node, key: Hex) {
  return createWalletClient({
    account: privateKeyToAccount(key),
    chain: viemChain(node),
    transport: http(node.rpcUrl),
  });
}

/** The receipt of `hash` once it is mined (at most 10 s). */
export function mined(node: Node, hash: Hex) {
  return createPublicClient({ transport: http(node.rpcUrl) }).waitForTransactionReceipt({ hash, timeout: 10_000 });
}
