import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { createPublicClient, erc20Abi, http, type Address, type Hex } from 'viem';
import {
  DEFAULT_PAIRS,
  rpc,
  startChainSender,
  startChangeNowSimulator,
  startLocalChain,
  type ChainSender,
  type ChangeNowSimulator,
  type LocalChain,
} from '../../src/simulators/index.ts';
import { deployLocalUsdt, mintLocalUsdt } from '../../src/simulators/usdt/index.ts';
import { freePort } from './ports.ts';

export const SIM_API_KEY = 'sim-changenow-key-0123456789';

export interface Outside {
  chain: LocalChain;
  sim: ChangeNowSimulator;
  hostKey: Hex;
  hostAddress: Address;
  usdt: Address;
  /** The transfer that funded the host wallet (10^20 wei), for tests that book it as capital. */
  hostFundingTx: Hex;
  /** Sends ETH as NOWPayments forwarding an outcome to the host wallet. */
  nowpayments: ChainSender;
  /** USDT ChangeNow sends back on chain (a failed exchange's refund, whole or in part), from a key of its own. */
  changenowReturn(to: Address, units: bigint): Promise<void>;
  env: Record<string, string>;
  balanceOf(address: string): Promise<bigint>;
  usdtBalanceOf(address: string): Promise<bigint>;
  stop(): Promise<void>;
}

/** anvil + the ChangeNow simulator reading it + a funded host wallet, and the env that points payrail at them. */
export async function startOutside(options: { stepMs?: number } = {}): Promise<Outside> {
  const chain = await startLocalChain({ port: await freePort() });
  const hostKey = generatePrivateKey();
  const hostAddress = privateKeyToAccount(hostKey).address;
  const treasuryKey = generatePrivateKey();
  const treasury = privateKeyToAccount(treasuryKey).address;
  await rpc(chain.rpcUrl, 'anvil_setBalance', [treasury, `0x${(10n ** 20n).toString(16)}`]);
  // The host wallet is funded by a real transfer, as an operator would: a test can book it as capital (deposit) and
  // compare ledger and chain. NOWPayments' forwarding of outcomes is another sender, for tests that settle payments.
  const hostFundingTx = await (await startChainSender(chain.rpcUrl)).send(hostAddress, 10n ** 20n);
  const nowpayments = await startChainSender(chain.rpcUrl);
  // The simulator pays conversions out in LocalUSDT from its treasury, on chain, as ChangeNow would.
  const usdt = await deployLocalUsdt(chain.rpcUrl, treasuryKey);
  await mintLocalUsdt(chain.rpcUrl, usdt, treasuryKey, treasury, 10n ** 15n);
  // Not the simulator's treasury: its own payouts use that key's nonces concurrently.
  const returnsKey = generatePrivateKey();
  await rpc(chain.rpcUrl, 'anvil_setBalance', [
    privateKeyToAccount(returnsKey).address,
    `0x${(10n ** 20n).toString(16)}`,
  ]);
  const sim = await startChangeNowSimulator({
    port: 0,
    apiKey: SIM_API_KEY,
    rpcUrl: chain.rpcUrl,
    stepMs: options.stepMs ?? 0,
    tokens: { usdt },
    treasuryKey,
  });
  const client = createPublicClient({ transport: http(chain.rpcUrl) });
  return {
    chain,
    sim,
    hostKey,
    hostAddress,
    usdt,
    hostFundingTx,
    nowpayments,
    changenowReturn: (to, units) => mintLocalUsdt(chain.rpcUrl, usdt, returnsKey, to, units),
    env: {
      USDT_CONTRACT: usdt,
      CHANGENOW_API_URL: sim.url,
      CHANGENOW_API_KEY: SIM_API_KEY,
      CHANGENOW_TIMEOUT: '2s',
      ETH_RPC_URL: chain.rpcUrl,
      CHAIN_ID: String(chain.chainId),
      HOST_WALLET_PRIVATE_KEY: hostKey,
      WORKER_POLL_INTERVAL_MS: '100',
      CONVERSION_POLL_INTERVAL: '200ms',
    },
    balanceOf: (address) => client.getBalance({ address: address as Address }),
    usdtBalanceOf: (address) =>
      client.readContract({ address: usdt, abi: erc20Abi, functionName: 'balanceOf', args: [address as Address] }),
    async stop() {
      await sim.stop();
      await chain.stop();
    },
  };
}

/** Polls `check` until it returns true; bounded, so a stuck pipeline fails the test instead of hanging it. */
export async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 45_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`timed out waiting for: ${what}`);
}

/**
 * Undoes every fault a test may have set on the outside world: ChangeNow answering normally with its default pairs
 * and no forced exchange outcome, and the chain mining each transaction at once.
 */
export async function resetFaults(outside: Outside): Promise<void> {
  await outside.sim.setFault('none');
  outside.sim.failNextExchange(null);
  for (const [key, pair] of Object.entries(DEFAULT_PAIRS)) outside.sim.setPair(key, pair);
  await rpc(outside.chain.rpcUrl, 'evm_setAutomine', [true]);
}

/**
 * NOWPayments forwarding `wei` to `host`, mined before the caller goes on (it sends `finished` only after). A test
 * that paused mining (to keep payrail's next transfer waiting) gets one block for the forward alone; anything else
 * already waiting in the pool would be mined with it and change that test, so that is refused.
 */
export async function forwardOnChain(outside: Outside, host: Address, wei: bigint): Promise<void> {
  const rpcUrl = outside.chain.rpcUrl;
  if ((await rpc(rpcUrl, 'anvil_getAutomine', [])) === true) {
    await outside.nowpayments.send(host, wei);
    return;
  }
  if ((await pendingCount(rpcUrl)) !== 0)
    throw new Error(
      'forwardOnChain: mining is paused with transactions waiting; forward the outcome before they are sent',
    );
  const sent = outside.nowpayments.send(host, wei);
  await eventually('the forward in the pool', async () => (await pendingCount(rpcUrl)) === 1, 10_000);
  await rpc(rpcUrl, 'evm_mine', []);
  await sent;
}

async function pendingCount(rpcUrl: string): Promise<number> {
  const status = (await rpc(rpcUrl, 'txpool_status', [])) as { pending: string | number };
  return Number(status.pending);
}
