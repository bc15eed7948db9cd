/**
 * The outside world of a chaos run, all on 127.0.0.1 and in this process: anvil (host wallet and the simulator's
 * treasury funded, LocalUSDT deployed and minted to the treasury), the RPC proxy the payrail processes use, and the
 * ChangeNow simulator (reading anvil directly, paying finished exchanges out on it). The pattern of
 * test/support/outside.ts, with every key drawn from the run's seed.
 */
import { createPublicClient, erc20Abi, http, type Address, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { rpc, startChangeNowSimulator, startLocalChain, type ChangeNowSimulator, type LocalChain } from '../src/simulators/index.ts';
import { deployLocalUsdt, mintLocalUsdt } from '../src/simulators/usdt/index.ts';
import { freePort } from './net.ts';
import { startRpcProxy, type RpcProxy } from './proxy.ts';
import type { Rng } from './rng.ts';

export interface World {
  chain: LocalChain;
  proxy: RpcProxy;
  sim: ChangeNowSimulator;
  simApiKey: string;
  hostKey: Hex;
  hostAddress: Address;
  usdt: Address;
  ethBalance(address: string): Promise<bigint>;
  usdtBalance(address: string): Promise<bigint>;
  nonce(address: string): Promise<number>;
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
    const proxy = await startRpcProxy({ host: '127.0.0.1', port: chainPort });
    stops.unshift(() => proxy.stop());
    const simApiKey = `chaos-sim-key-${rng.int(1e8, 1e9 - 1)}`;
    const sim = await startChangeNowSimulator({ port: 0, apiKey: simApiKey, rpcUrl: chain.rpcUrl, stepMs: 0, tokens: { usdt }, treasuryKey });
    stops.unshift(() => sim.stop());
    const client = createPublicClient({ transport: http(chain.rpcUrl) });
    return {
      chain,
      proxy,
      sim,
      simApiKey,
      hostKey,
      hostAddress,
      usdt,
      ethBalance: (address) => client.getBalance({ address: address as Address }),
      usdtBalance: (address) => client.readContract({ address: usdt, abi: erc20Abi, functionName: 'balanceOf', args: [address as Address] }),
      nonce: (address) => client.getTransactionCount({ address: address as Address }),
      async stop() {
        for (const stop of stops) await stop().catch(() => undefined);
      },
    };
  } catch (error) {
    for (const stop of stops) await stop().catch(() => undefined);
    throw error;
  }
}
