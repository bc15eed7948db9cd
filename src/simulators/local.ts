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

interface LocalOutsideOptions {
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
}

/** What this run started, recorded as soon as each is up: a later failure stops them all. */
interface Started {
  chain?: LocalChain;
  simulator?: ChangeNowSimulator;
  nowpayments?: NowPaymentsSimulator;
}

/** The chain payrail talks to: the configured one, or anvil started here with its host wallet and LocalUSDT. */
interface ChainSetup {
  rpcUrl: string;
  chainId: number;
  usdtContract?: `0x${string}`;
  treasuryKey?: `0x${string}`;
  fundingTxHash?: `0x${string}`;
}

export async function startLocalOutside(options: LocalOutsideOptions): Promise<LocalOutside> {
  const started: Started = {};
  try {
    const setup: ChainSetup =
      options.rpcUrl === undefined
        ? await startOwnChain(options, started)
        : { rpcUrl: options.rpcUrl, chainId: options.chainId };
    const changenowUrl = options.changenowUrl ?? (await startOwnChangeNow(options, setup, started));
    const nowpaymentsUrl =
      options.nowpayments && options.nowpayments.url === undefined
        ? await startOwnNowPayments(options, options.nowpayments, setup.rpcUrl, started)
        : options.nowpayments?.url;
    const { chain, simulator, nowpayments } = started;
    return {
      rpcUrl: setup.rpcUrl,
      chainId: setup.chainId,
      ...(setup.usdtContract && { usdtContract: setup.usdtContract }),
      changenowUrl,
      ...(simulator && { simulator }),
      ...(nowpaymentsUrl && { nowpaymentsUrl }),
      ...(nowpayments && { nowpayments }),
      ...(chain && { chain }),
      ...(setup.fundingTxHash && { fundingTxHash: setup.fundingTxHash }),
      stop: () => stopAll(started),
    };
  } catch (error) {
    await started.nowpayments?.stop().catch(() => undefined);
    await started.simulator?.stop().catch(() => undefined);
    await started.chain?.stop().catch(() => undefined);
    throw error;
  }
}

async function stopAll(started: Started): Promise<void> {
  await started.nowpayments?.stop();
  await started.simulator?.stop();
  await started.chain?.stop();
}

async function startOwnChain(options: LocalOutsideOptions, started: Started): Promise<ChainSetup> {
  const chain = await startLocalChain({
    port: options.chainPort,
    ...(options.stateDir && {
      statePath: `${options.stateDir}/anvil-state.json`,
      pidFile: `${options.stateDir}/anvil.pid`,
    }),
  });
  started.chain = chain;
  const rpcUrl = chain.rpcUrl;
  const host = privateKeyToAccount(options.hostPrivateKey).address;
  // Funded by a real transfer (as an operator would), once: a restarted local run keeps its chain and its books,
  // and the ledger's record of that deposit keeps agreeing with the chain.
  let fundingTxHash: `0x${string}` | undefined;
  if (BigInt(String(await rpc(rpcUrl, 'eth_getBalance', [host, 'latest']))) === 0n) {
    fundingTxHash = await (await startChainSender(rpcUrl)).send(host, LOCAL_FUNDING_WEI);
  }
  const { treasuryKey, usdtContract } = await ensureTreasuryUsdt(rpcUrl, options.hostPrivateKey);
  options.logger.warn(
    { event: 'local_chain_started', rpcUrl, chainId: chain.chainId, hostAddress: host, usdtContract },
    'LOCAL RUN: started anvil as the chain, funded the host wallet, deployed LocalUSDT',
  );
  return { rpcUrl, chainId: chain.chainId, usdtContract, treasuryKey, ...(fundingTxHash && { fundingTxHash }) };
}

/**
 * The simulator's treasury pays conversions out in LocalUSDT on this chain; its key is derived from the host key so a
 * restarted local run finds the same token (deployed at the treasury's first nonce).
 */
async function ensureTreasuryUsdt(
  rpcUrl: string,
  hostPrivateKey: `0x${string}`,
): Promise<{ treasuryKey: `0x${string}`; usdtContract: `0x${string}` }> {
  const treasuryKey = keccak256(concat([hostPrivateKey, toHex('payrail-local-treasury')]));
  const treasury = privateKeyToAccount(treasuryKey).address;
  await rpc(rpcUrl, 'anvil_setBalance', [treasury, `0x${LOCAL_FUNDING_WEI.toString(16)}`]);
  const usdtContract = getContractAddress({ from: treasury, nonce: 0n });
  if ((await rpc(rpcUrl, 'eth_getCode', [usdtContract, 'latest'])) === '0x') {
    const deployed = await deployLocalUsdt(rpcUrl, treasuryKey);
    if (deployed.toLowerCase() !== usdtContract.toLowerCase())
      throw new Error(`LocalUSDT deployed at ${deployed}, expected ${usdtContract}`);
    await mintLocalUsdt(rpcUrl, usdtContract, treasuryKey, treasury, LOCAL_TREASURY_USDT);
  }
  return { treasuryKey, usdtContract };
}

async function startOwnChangeNow(options: LocalOutsideOptions, setup: ChainSetup, started: Started): Promise<string> {
  const { usdtContract, treasuryKey } = setup;
  const simulator = await startChangeNowSimulator({
    port: options.changenowPort,
    apiKey: options.changenowApiKey,
    rpcUrl: setup.rpcUrl,
    stepMs: 2_000,
    ...(usdtContract && treasuryKey && { tokens: { usdt: usdtContract }, treasuryKey }),
  });
  started.simulator = simulator;
  options.logger.warn(
    { event: 'local_changenow_started', url: simulator.url },
    'LOCAL RUN: started the ChangeNow simulator',
  );
  return simulator.url;
}

async function startOwnNowPayments(
  options: LocalOutsideOptions,
  np: NonNullable<LocalOutsideOptions['nowpayments']>,
  rpcUrl: string,
  started: Started,
): Promise<string> {
  // A paid invoice's outcome reaches the host wallet as NOWPayments forwards it, on the chain started here only:
  // on a configured chain there is no faucet to pay it from.
  const host = privateKeyToAccount(options.hostPrivateKey).address;
  const forwarder = started.chain ? await startOutcomeForwarder(rpcUrl, host) : undefined;
  const nowpayments = await startNowPaymentsSimulator({
    port: np.port,
    apiKey: np.apiKey,
    ...(np.ipnSecret !== undefined && { ipnSecret: np.ipnSecret }),
    ...(forwarder && { forwardOutcome: (wei: bigint) => forwarder.forward(wei) }),
    ...(options.stateDir && {
      statePath: `${options.stateDir}/nowpayments-payments.jsonl`,
      invoicesPath: `${options.stateDir}/nowpayments-invoices.jsonl`,
    }),
  });
  started.nowpayments = nowpayments;
  options.logger.warn(
    { event: 'local_nowpayments_started', url: nowpayments.url },
    'LOCAL RUN: started the NOWPayments API simulator (payments are credited once it confirms them: register each with POST /sim/payments, or pay an invoice with POST /sim/invoices/:id/pay)',
  );
  return nowpayments.url;
}
