/**
 * Money arriving at the host wallet on the local chain as it does on mainnet: NOWPayments forwarding each payment's
 * outcome (before its `finished` IPN), and the operator's funding of the wallet. Each is a real transaction from a
 * funded key of its own, so the chain shows what the ledger books, and `payrail check-ledger --chain` can agree.
 */
import { createPublicClient, createWalletClient, http, type Address, type Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { rpc, viemLocalChain } from './chain.ts';

const TIMEOUT_MS = 30_000;
/** Enough for any local run's payments and their gas. */
const SENDER_FUNDING_WEI = 10n ** 24n;

export interface ChainSender {
  readonly address: Address;
  /** Sends `wei` to `to` and waits for it to be mined; returns the hash. Calls are sent one after another. */
  send(to: Address, wei: bigint): Promise<Hex>;
}

/** A fresh key, funded with anvil_setBalance (the local chain's faucet), that sends ETH for real. */
export async function startChainSender(rpcUrl: string): Promise<ChainSender> {
  const account = privateKeyToAccount(generatePrivateKey());
  await rpc(rpcUrl, 'anvil_setBalance', [account.address, `0x${SENDER_FUNDING_WEI.toString(16)}`]);
  const transport = http(rpcUrl, { timeout: TIMEOUT_MS });
  const client = createPublicClient({ pollingInterval: 50, transport });
  const chain = await viemLocalChain(client, rpcUrl);
  const wallet = createWalletClient({ account, chain, transport });
  let queue: Promise<unknown> = Promise.resolve();
  return {
    address: account.address,
    send(to, wei) {
      const sent = queue.then(async () => {
        const hash = await wallet.sendTransaction({ to, value: wei });
        const receipt = await client.waitForTransactionReceipt({ hash, timeout: TIMEOUT_MS });
        if (receipt.status !== 'success') throw new Error(`local transfer of ${wei} wei to ${to} failed (tx ${hash})`);
        return hash;
      });
      queue = sent.catch(() => undefined);
      return sent;
    },
  };
}
