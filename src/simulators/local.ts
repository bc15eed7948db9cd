/**
 * The outside world of a local run: anvil as the chain (host wallet funded), the ChangeNow simulator reading it, and
 * the NOWPayments API simulator that confirms credits. Started by `payrail start` when ETH_RPC_URL /
 * CHANGENOW_API_URL / NOWPAYMENTS_API_URL are not set (only on a local run).
 */
import { concat, getContractAddress, keccak256, toHex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { deployLocalUsdt, mintLocalUsdt } from './usdt/index.ts';
import type { Logger } from '../log.ts';
import { rpc, startLocalChain, type LocalChain } from './chain.ts';
import { startChainSender } from './chain-sender.ts';
import { startChangeNowSimulator, type ChangeNowSimulator } from './changenow/index.ts';
import { startNowPaymentsSimulator, startOutcomeForwarder, type NowPaymentsSimulator } from './nowpayments/index.ts';

export interface LocalOutside {
  readonly rpcUrl: string;
  /** LocalUSDT, when payrail deployed it on its own local chain. */
  readonly usdtContract?: `0x${string}`;
  readonly chainId: number;
  readonly changenowUrl: string;
  readonly simulator?: ChangeNowSimulator;
  /** The NOWPayments API payrail confirms credits with: the one configured, or the simulator started here. */
  readonly nowpaymentsUrl?: string;
  readonly nowpayments?: NowPaymentsSimulator;
  readonly chain?: LocalChain;
  /** The transaction that funded the host wallet on a fresh local chain: payrail books it as the operator's capital. */
  readonly fundingTxHash?: `0x${string}`;
  stop(): Promise<void>;
}

/** 1,000 ETH: enough for any local run. */
const LOCAL_FUNDING_WEI = 10n ** 21n;
/** 1,000,000,000 LocalUSDT for the simulator to pay conversions with. */
const LOCAL_TREASURY_USDT = 10n ** 15n;

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
  /**
   * The NOWPayments API: its simulator is started on `port` with `apiKey` unless `url` is given. Absent: none. With
   * `ipnSecret`, its invoices can be paid (POST /sim/invoices/:id/pay): signed IPNs, the outcome forwarded on the
   * local chain first.
   */
  nowpayments?: { url?: string; port: number; apiKey: string; ipnSecret?: string };
}): Promise<LocalOutside> {
  let chain: LocalChain | undefined;
  let simulator: ChangeNowSimulator | undefined;
  let nowpayments: NowPaymentsSimulator | undefined;
  try {
    let rpcUrl = options.rpcUrl;
    let chainId = options.chainId;
    let usdtContract: `0x${string}` | undefined;
    let treasuryKey: `0x${string}` | undefined;
    let fundingTxHash: `0x${string}` | undefined;
    if (rpcUrl === undefined) {
      chain = await startLocalChain({
        port: options.chainPort,
        ...(options.stateDir && {
          statePath: `${options.stateDir}/anvil-state.json`,
          pidFile: `${options.stateDir}/anvil.pid`,
        }),
      });
      rpcUrl = chain.rpcUrl;
      chainId = chain.chainId;
      const host = privateKeyToAccount(options.hostPrivateKey).address;
      // Funded by a real transfer (as an operator would), once: a restarted local run keeps its chain and its books,
      // and the ledger's record of that deposit keeps agreeing with the chain.
      if (BigInt(String(await rpc(rpcUrl, 'eth_getBalance', [host, 'latest']))) === 0n) {
        fundingTxHash = await (await startChainSender(rpcUrl)).send(host, LOCAL_FUNDING_WEI);
      }
      // The simulator's treasury pays conversions out in LocalUSDT on this chain; its key is derived from the host
      // key so a restarted local run finds the same token (deployed at the treasury's first nonce).
      treasuryKey = keccak256(concat([options.hostPrivateKey, toHex('payrail-local-treasury')]));
      const treasury = privateKeyToAccount(treasuryKey).address;
      await rpc(rpcUrl, 'anvil_setBalance', [treasury, `0x${LOCAL_FUNDING_WEI.toString(16)}`]);
      usdtContract = getContractAddress({ from: treasury, nonce: 0n });
      if ((await rpc(rpcUrl, 'eth_getCode', [usdtContract, 'latest'])) === '0x') {
        const deployed = await deployLocalUsdt(rpcUrl, treasuryKey);
        if (deployed.toLowerCase() !== usdtContract.toLowerCase())
          throw new Error(`LocalUSDT deployed at ${deployed}, expected ${usdtContract}`);
        await mintLocalUsdt(rpcUrl, usdtContract, treasuryKey, treasury, LOCAL_TREASURY_USDT);
      }
      options.logger.warn(
        { event: 'local_chain_started', rpcUrl, chainId, hostAddress: host, usdtContract },
        'LOCAL RUN: started anvil as the chain, funded the host wallet, deployed LocalUSDT',
      );
    }
    let changenowUrl = options.changenowUrl;
    if (changenowUrl === undefined) {
      simulator = await startChangeNowSimulator({
        port: options.changenowPort,
        apiKey: options.changenowApiKey,
        rpcUrl,
        stepMs: 2_000,
        ...(usdtContract && treasuryKey && { tokens: { usdt: usdtContract }, treasuryKey }),
      });
      changenowUrl = simulator.url;
      options.logger.warn(
        { event: 'local_changenow_started', url: changenowUrl },
        'LOCAL RUN: started the ChangeNow simulator',
      );
    }
    let nowpaymentsUrl = options.nowpayments?.url;
    if (options.nowpayments && nowpaymentsUrl === undefined) {
      // A paid invoice's outcome reaches the host wallet as NOWPayments forwards it, on the chain started here only:
      // on a configured chain there is no faucet to pay it from.
      const host = privateKeyToAccount(options.hostPrivateKey).address;
      const forwarder = chain ? await startOutcomeForwarder(rpcUrl, host) : undefined;
      nowpayments = await startNowPaymentsSimulator({
        port: options.nowpayments.port,
        apiKey: options.nowpayments.apiKey,
        ...(options.nowpayments.ipnSecret !== undefined && { ipnSecret: options.nowpayments.ipnSecret }),
        ...(forwarder && { forwardOutcome: (wei: bigint) => forwarder.forward(wei) }),
        ...(options.stateDir && {
          statePath: `${options.stateDir}/nowpayments-payments.jsonl`,
          invoicesPath: `${options.stateDir}/nowpayments-invoices.jsonl`,
        }),
      });
      nowpaymentsUrl = nowpayments.url;
      options.logger.warn(
        { event: 'local_nowpayments_started', url: nowpaymentsUrl },
        'LOCAL RUN: started the NOWPayments API simulator (payments are credited once it confirms them: register each with POST /sim/payments, or pay an invoice with POST /sim/invoices/:id/pay)',
      );
    }
    const started = { chain, simulator, nowpayments };
    return {
      rpcUrl,
      chainId,
      ...(usdtContract && { usdtContract }),
      changenowUrl,
      ...(simulator && { simulator }),
      ...(nowpaymentsUrl && { nowpaymentsUrl }),
      ...(nowpayments && { nowpayments }),
      ...(chain && { chain }),
      ...(fundingTxHash && { fundingTxHash }),
      async stop() {
        await started.nowpayments?.stop();
        await started.simulator?.stop();
        await started.chain?.stop();
      },
    };
  } catch (error) {
    await nowpayments?.stop().catch(() => undefined);
    await simulator?.stop().catch(() => undefined);
    await chain?.stop().catch(() => undefined);
    throw error;
  }
}
