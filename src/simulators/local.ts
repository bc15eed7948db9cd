/**
 * The outside world of a local run: anvil as the chain (host wallet funded) and the ChangeNow simulator reading it.
 * Started by `payrail start` when ETH_RPC_URL / CHANGENOW_API_URL are not set (only on a local run).
 */
import { privateKeyToAccount } from 'viem/accounts';
import type { Logger } from '../log.ts';
import { rpc, startLocalChain, type LocalChain } from './chain.ts';
import { startChangeNowSimulator, type ChangeNowSimulator } from './changenow/index.ts';

export interface LocalOutside {
  readonly rpcUrl: string;
  readonly chainId: number;
  readonly changenowUrl: string;
  readonly simulator?: ChangeNowSimulator;
  readonly chain?: LocalChain;
  stop(): Promise<void>;
}

/** 1,000 ETH: enough for any local run. */
const LOCAL_FUNDING_WEI = 10n ** 21n;

export async function startLocalOutside(options: {
  rpcUrl?: string;
  chainId: number;
  changenowUrl?: string;
  chainPort: number;
  changenowPort: number;
  changenowApiKey: string;
  hostPrivateKey: `0x${string}`;
  stateDir?: string;
  logger: Logger;
}): Promise<LocalOutside> {
  let chain: LocalChain | undefined;
  let simulator: ChangeNowSimulator | undefined;
  try {
    let rpcUrl = options.rpcUrl;
    let chainId = options.chainId;
    if (rpcUrl === undefined) {
      chain = await startLocalChain({
        port: options.chainPort,
        ...(options.stateDir && { statePath: `${options.stateDir}/anvil-state.json`, pidFile: `${options.stateDir}/anvil.pid` }),
      });
      rpcUrl = chain.rpcUrl;
      chainId = chain.chainId;
      const host = privateKeyToAccount(options.hostPrivateKey).address;
      await rpc(rpcUrl, 'anvil_setBalance', [host, `0x${LOCAL_FUNDING_WEI.toString(16)}`]);
      options.logger.warn({ event: 'local_chain_started', rpcUrl, chainId, hostAddress: host }, 'LOCAL RUN: started anvil as the chain and funded the host wallet');
    }
    let changenowUrl = options.changenowUrl;
    if (changenowUrl === undefined) {
      simulator = await startChangeNowSimulator({ port: options.changenowPort, apiKey: options.changenowApiKey, rpcUrl, stepMs: 2_000 });
      changenowUrl = simulator.url;
      options.logger.warn({ event: 'local_changenow_started', url: changenowUrl }, 'LOCAL RUN: started the ChangeNow simulator');
    }
    const started = { chain, simulator };
    return {
      rpcUrl,
      chainId,
      changenowUrl,
      ...(simulator && { simulator }),
      ...(chain && { chain }),
      async stop() {
        await started.simulator?.stop();
        await started.chain?.stop();
      },
    };
  } catch (error) {
    await simulator?.stop().catch(() => undefined);
    await chain?.stop().catch(() => undefined);
    throw error;
  }
}
