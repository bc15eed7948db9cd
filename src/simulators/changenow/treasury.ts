/** The simulator's own wallet on the local chain: what it pays out and sends back, as real transactions. */
import { createPublicClient, createWalletClient, erc20Abi, http as viemHttp, type Address } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { viemLocalChain } from '../chain.ts';
import { Decimal, DECIMALS } from './pricing.ts';

export type Treasury = ReturnType<typeof createTreasury>;

/** Sends payouts one at a time (one nonce sequence) and waits for each receipt. */
export function createTreasury(rpcUrl: string, key: `0x${string}`, tokens: Record<string, Address>) {
  // A local chain mines at once: look for receipts every 100 ms, not viem's default 4 s.
  const client = createPublicClient({ pollingInterval: 100, transport: viemHttp(rpcUrl, { timeout: 15_000 }) });
  const account = privateKeyToAccount(key);
  let queue: Promise<unknown> = Promise.resolve();
  const send = async (currency: string, to: Address, amount: Decimal): Promise<string> => {
    const wallet = createWalletClient({
      account,
      chain: await viemLocalChain(client, rpcUrl),
      transport: viemHttp(rpcUrl, { timeout: 15_000 }),
    });
    const units = BigInt(amount.mul(new Decimal(10).pow(DECIMALS[currency] ?? 18)).toFixed(0, Decimal.ROUND_DOWN));
    const token = tokens[currency];
    const hash =
      currency === 'eth' || !token
        ? await wallet.sendTransaction({ to, value: units })
        : await wallet.writeContract({ address: token, abi: erc20Abi, functionName: 'transfer', args: [to, units] });
    const receipt = await client.waitForTransactionReceipt({ hash, timeout: 15_000 });
    if (receipt.status !== 'success') throw new Error(`simulator payout ${hash} reverted`);
    return hash;
  };
  return {
    pay(currency: string, to: Address, amount: Decimal): Promise<string> {
      const next = queue.then(() => send(currency, to, amount));
      queue = next.catch(() => undefined);
      return next;
    },
  };
}
