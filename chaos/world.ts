/**
 * The outside world of a chaos run, all on 127.0.0.1 and in this process: anvil (host wallet and the simulator's
 * treasury funded, LocalUSDT deployed and minted to the treasury), a block ticker, the JSON-RPC proxy the payrail
 * processes use (src/simulators/rpc-proxy.ts: lost answers, a lagging node, refusals, down), and the ChangeNow
 * simulator (reading anvil directly, paying finished exchanges out on it). The pattern of test/support/outside.ts,
 * with every key drawn from the run's seed. The simulator, the faults and the checks talk to anvil directly.
 */
import { createPublicClient, erc20Abi, http, type Address, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { makeContractWallet, pausePool, resumeMining } from '../src/simulators/chain-faults.ts';
import { rpc, startChangeNowSimulator, startLocalChain, startRpcProxy, type ChangeNowSimulator, type LocalChain, type RpcProxy } from '../src/simulators/index.ts';
import { blacklistLocalUsdt, deployLocalUsdt, mintLocalUsdt } from '../src/simulators/usdt/index.ts';
import { freePort, sleep } from './net.ts';
import type { Rng } from './rng.ts';

/** A block about every second, as a chain makes them whether or not anyone sends: confirmations accrue when traffic stops. */
const TICK_MS = 1_000;

/**
 * evm_mine every TICK_MS (anvil also mines each transaction as it arrives), except while held. `hold()` stops it and
 * anvil's automine, so new transactions wait in the pool, and returns once no tick is in flight: a fault that holds
 * the chain knows the head does not move under it. `release()` mines what waits and starts the ticks again.
 */
export class BlockTicker {
  blocks = 0;
  failures = 0;
  private held = false;
  private stopped = false;
  private current: Promise<void> = Promise.resolve();
  private readonly loop: Promise<void>;

  constructor(private readonly rpcUrl: string) {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      await sleep(TICK_MS);
      if (this.held || this.stopped) continue;
      // Assigned in the same turn as the check above, so hold() always sees the tick it has to wait for.
      this.current = rpc(this.rpcUrl, 'evm_mine', [], 5_000).then(
        () => void this.blocks++,
        () => void this.failures++,
      );
      await this.current;
    }
  }

  get isHeld(): boolean {
    return this.held;
  }

  async hold(): Promise<void> {
    this.held = true;
    await this.current;
    await pausePool(this.rpcUrl);
  }

  async release(): Promise<void> {
    await resumeMining(this.rpcUrl);
    this.held = false;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/** A host-wallet transaction payrail did not sign (a nonce_taken fault's). */
export interface OutsideTx {
  nonce: number;
  hash: Hex;
}

export interface World {
  chain: LocalChain;
  proxy: RpcProxy;
  ticker: BlockTicker;
  sim: ChangeNowSimulator;
  simApiKey: string;
  hostKey: Hex;
  hostAddress: Address;
  usdt: Address;
  /** Every host-wallet transaction the faults sent from outside payrail, for the nonce check. */
  outsideTxs: OutsideTx[];
  ethBalance(address: string): Promise<bigint>;
  usdtBalance(address: string): Promise<bigint>;
  nonce(address: string): Promise<number>;
  /** A transaction's nonce and block, as anvil shows it: null when unknown or still waiting in the pool. */
  minedTx(hash: Hex): Promise<{ nonce: number; blockNumber: number } | null>;
  /** Turns an owner's address into a contract wallet that needs more than 21,000 gas to receive ETH. */
  makeContractWallet(address: string): Promise<void>;
  /** Puts an address on LocalUSDT's blacklist (signed by the token's owner, the simulator's treasury). */
  blacklistUsdt(address: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startWorld(rng: Rng): Promise<World> {
  const chainPort = await freePort();
  const chain = await startLocalChain({ port: chainPort });
  const stops: Array<() => Promise<void>> = [() => chain.stop()];
  try {
    const hostKey = rng.hex32();
    const hostAddress = privateKeyToAccount(hostKey).address;
    const treasuryKey = rng.hex32();
    const treasury = privateKeyToAccount(treasuryKey).address;
    for (const address of [hostAddress, treasury]) await rpc(chain.rpcUrl, 'anvil_setBalance', [address, `0x${(10n ** 22n).toString(16)}`]);
    const usdt = await deployLocalUsdt(chain.rpcUrl, treasuryKey);
    await mintLocalUsdt(chain.rpcUrl, usdt, treasuryKey, treasury, 10n ** 15n);
    const proxy = await startRpcProxy({ upstream: chain.rpcUrl });
    stops.unshift(() => proxy.stop());
    const ticker = new BlockTicker(chain.rpcUrl);
    // Stopped first, and left with automine on, so nothing else waits on a held pool on the way out.
    stops.unshift(async () => {
      await ticker.stop();
      if (ticker.isHeld) await ticker.release();
    });
    const simApiKey = `chaos-sim-key-${rng.int(1e8, 1e9 - 1)}`;
    const sim = await startChangeNowSimulator({ port: 0, apiKey: simApiKey, rpcUrl: chain.rpcUrl, stepMs: 0, tokens: { usdt }, treasuryKey });
    stops.unshift(() => sim.stop());
    const client = createPublicClient({ transport: http(chain.rpcUrl) });
    return {
      chain,
      proxy,
      ticker,
      sim,
      simApiKey,
      hostKey,
      hostAddress,
      usdt,
      outsideTxs: [],
      ethBalance: (address) => client.getBalance({ address: address as Address }),
      usdtBalance: (address) => client.readContract({ address: usdt, abi: erc20Abi, functionName: 'balanceOf', args: [address as Address] }),
      nonce: (address) => client.getTransactionCount({ address: address as Address }),
      async minedTx(hash) {
        const tx = (await rpc(chain.rpcUrl, 'eth_getTransactionByHash', [hash])) as { nonce: Hex; blockNumber: Hex | null } | null;
        return tx?.blockNumber ? { nonce: Number(tx.nonce), blockNumber: Number(tx.blockNumber) } : null;
      },
      makeContractWallet: (address) => makeContractWallet(chain.rpcUrl, address as Address),
      blacklistUsdt: (address) => blacklistLocalUsdt(chain.rpcUrl, usdt, treasuryKey, address as Address, true),
      async stop() {
        for (const stop of stops) await stop().catch(() => undefined);
      },
    };
  } catch (error) {
    for (const stop of stops) await stop().catch(() => undefined);
    throw error;
  }
}
