/**
 * The outside world of a chaos run, all on 127.0.0.1 and in this process: anvil (the host wallet funded by a real
 * transfer from an operator's key, the simulator's treasury funded, LocalUSDT deployed and minted to the treasury),
 * NOWPayments' key forwarding payments' outcomes to the host wallet, a block ticker, the JSON-RPC proxy the payrail
 * processes use (src/simulators/rpc-proxy.ts: lost answers, a lagging node, refusals, down), and the ChangeNow
 * simulator (reading anvil directly, paying finished exchanges out on it). The pattern of test/support/outside.ts,
 * with every key drawn from the run's seed but the operator's and NOWPayments' (fresh: they only send, and drawing
 * them would change every seed's plan). The simulator, the faults and the checks talk to anvil directly.
 */
import { createPublicClient, erc20Abi, http, parseGwei, type Address, type Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { createChainWallet, type ChainWallet } from '../src/integrations/wallet/index.ts';
import { makeContractWallet, pausePool, resumeMining } from '../src/simulators/chain-faults.ts';
import {
  rpc,
  startChainSender,
  startChangeNowSimulator,
  startLocalChain,
  startNowPaymentsSimulator,
  startRpcProxy,
  type ChangeNowSimulator,
  type LocalChain,
  type NowPaymentsSimulator,
  type RpcProxy,
} from '../src/simulators/index.ts';
import { blacklistLocalUsdt, deployLocalUsdt, mintLocalUsdt } from '../src/simulators/usdt/index.ts';
import { freePort, sleep } from './net.ts';
import type { Rng } from './rng.ts';

/** A block about every second, as a chain makes them whether or not anyone sends: confirmations accrue when traffic stops. */
const TICK_MS = 1_000;
/** What the operator puts on the host wallet before the run: gas for every transfer, and ETH for every direct payout. */
const HOST_FUNDING_WEI = 10n ** 22n;
/** NOWPayments' key: enough ETH for every outcome of any run, and its gas. */
const FORWARDER_FUNDING_WEI = 10n ** 24n;
/** Far above anything the chain asks before the faults start: the block mined for a batch takes all of it. */
const FORWARD_MAX_FEE_WEI = parseGwei('1000');
/** anvil's own suggestion on a quiet chain: forwards do not move the tips payrail is offered. */
const FORWARD_TIP_WEI = parseGwei('1');
/** Forwards sent into the held pool and mined as one block (21,000 gas each: far under the block's gas limit). */
const FORWARD_BATCH_MAX = 64;

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

/** One JSON-RPC batch of reads: each call's result in order; any error throws. */
async function rpcBatch(
  rpcUrl: string,
  calls: ReadonlyArray<{ method: string; params: unknown[] }>,
  timeoutMs = 10_000,
): Promise<unknown[]> {
  const res = await fetch(rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(calls.map((c, id) => ({ jsonrpc: '2.0', id, ...c }))),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const answers = new Map(
    ((await res.json()) as Array<{ id: number; result?: unknown; error?: { message: string } }>).map((a) => [a.id, a]),
  );
  return calls.map((c, id) => {
    const answer = answers.get(id);
    if (!answer || answer.error) throw new Error(`${c.method}: ${answer?.error?.message ?? 'no answer in the batch'}`);
    return answer.result;
  });
}

/**
 * NOWPayments' key: sends each amount to `to`, in order, and returns once all are mined. A default run forwards ~1,900
 * outcomes: startChainSender (viem's sendTransaction and receipt wait, about eight calls a send) takes 11 ms a send on
 * an idle anvil, 21 s for those. Here, FORWARD_BATCH_MAX at a time: signed locally at nonces counted here, sent one
 * call each into the held pool, mined as one block (evm_mine), their receipts read in one batch: ~3 s for 1,900. Not
 * with automine: anvil 1.x, handed a transaction while it automines the one before, can leave it queued at the
 * account's next nonce for good (seen in 1 of 5 runs of 1,900 sends; foundry-rs/foundry#10122 is the like). Funded
 * with anvil_setBalance, as startChainSender's keys are.
 */
async function startForwarder(
  rpcUrl: string,
  chainId: number,
  ticker: BlockTicker,
): Promise<(to: Address, weis: readonly bigint[]) => Promise<Hex[]>> {
  const account = privateKeyToAccount(generatePrivateKey());
  await rpc(rpcUrl, 'anvil_setBalance', [account.address, `0x${FORWARDER_FUNDING_WEI.toString(16)}`]);
  let nonce = 0;
  return async (to, weis) => {
    const hashes: Hex[] = [];
    for (let start = 0; start < weis.length; start += FORWARD_BATCH_MAX) {
      const batch: Hex[] = [];
      await ticker.hold();
      try {
        for (const wei of weis.slice(start, start + FORWARD_BATCH_MAX)) {
          const rawTx = await account.signTransaction({
            chainId,
            type: 'eip1559',
            nonce,
            to,
            value: wei,
            gas: 21_000n,
            maxFeePerGas: FORWARD_MAX_FEE_WEI,
            maxPriorityFeePerGas: FORWARD_TIP_WEI,
          });
          batch.push((await rpc(rpcUrl, 'eth_sendRawTransaction', [rawTx])) as Hex);
          nonce++;
        }
        await rpc(rpcUrl, 'evm_mine', []);
      } finally {
        await ticker.release();
      }
      const receipts = (await rpcBatch(
        rpcUrl,
        batch.map((hash) => ({ method: 'eth_getTransactionReceipt', params: [hash] })),
      )) as Array<{ status: Hex } | null>;
      const unmined = batch.filter((_, i) => receipts[i]?.status !== '0x1');
      if (unmined.length > 0)
        throw new Error(
          `forwards not mined (or reverted) in the block mined for them: ${unmined.slice(0, 5).join(', ')}${unmined.length > 5 ? ', …' : ''}`,
        );
      hashes.push(...batch);
    }
    return hashes;
  };
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
  /** NOWPayments' API as payrail's credits are confirmed with it: it knows the run's real payments, not forged ones. */
  nowpaymentsApi: NowPaymentsSimulator;
  nowpaymentsApiKey: string;
  hostKey: Hex;
  hostAddress: Address;
  /** The operator's transfer that funded the host wallet, mined `confirmations` deep before startWorld returns. */
  hostFundingTx: Hex;
  /** The host wallet, read-only, on anvil directly (the deposit and the ledger = chain check). */
  hostReader: ChainWallet;
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
  /**
   * NOWPayments forwarding payments' outcomes: one transaction from its key to the host wallet per amount, in order;
   * resolves with their hashes once all are mined. It holds the chain for each batch: meant for before the faults
   * (a fault holding the chain at the same time, or emptying the pool under a forward, would break it; nothing would
   * send a dropped forward again). A reorg re-includes them: it drops only the host wallet's own transactions.
   */
  forwardToHost(weis: readonly bigint[]): Promise<Hex[]>;
  stop(): Promise<void>;
}

/** `confirmations`: CHAIN_CONFIRMATIONS of the run, so the host wallet's funding can be booked as soon as it starts. */
export async function startWorld(rng: Rng, options: { confirmations: number }): Promise<World> {
  const chainPort = await freePort();
  const chain = await startLocalChain({ port: chainPort });
  const stops: Array<() => Promise<void>> = [() => chain.stop()];
  try {
    const funded = await fundChain(rng, chain, options.confirmations);
    const { proxy, ticker, forward } = await startChainAccess(chain, stops);
    const simulators = await startSimulators(rng, chain, funded, stops);
    return {
      chain,
      proxy,
      ticker,
      ...simulators,
      hostKey: funded.hostKey,
      hostAddress: funded.hostAddress,
      hostFundingTx: funded.hostFundingTx,
      hostReader: createChainWallet({
        rpcUrl: chain.rpcUrl,
        address: funded.hostAddress,
        chainId: chain.chainId,
        timeoutMs: 10_000,
      }),
      usdt: funded.usdt,
      outsideTxs: [],
      ...chainReadsAndChanges(chain, funded),
      forwardToHost: (weis) => forward(funded.hostAddress, weis),
      async stop() {
        for (const stop of stops) await stop().catch(() => undefined);
      },
    };
  } catch (error) {
    for (const stop of stops) await stop().catch(() => undefined);
    throw error;
  }
}

/** What the chain holds before payrail starts: the keys drawn from the seed, and what the operator put on it. */
interface FundedChain {
  hostKey: Hex;
  hostAddress: Address;
  treasuryKey: Hex;
  hostFundingTx: Hex;
  usdt: Address;
}

async function fundChain(rng: Rng, chain: LocalChain, confirmations: number): Promise<FundedChain> {
  const hostKey = rng.hex32();
  const hostAddress = privateKeyToAccount(hostKey).address;
  const treasuryKey = rng.hex32();
  const treasury = privateKeyToAccount(treasuryKey).address;
  await rpc(chain.rpcUrl, 'anvil_setBalance', [treasury, `0x${(10n ** 22n).toString(16)}`]);
  // The host wallet is funded as an operator would, by a transfer the run books as capital (recordDeposit): the
  // ledger then accounts for every wei the host wallet holds. Mined deep enough now, before any fault can touch it.
  const hostFundingTx = await (await startChainSender(chain.rpcUrl)).send(hostAddress, HOST_FUNDING_WEI);
  await rpc(chain.rpcUrl, 'anvil_mine', [`0x${confirmations.toString(16)}`]);
  const usdt = await deployLocalUsdt(chain.rpcUrl, treasuryKey);
  await mintLocalUsdt(chain.rpcUrl, usdt, treasuryKey, treasury, 10n ** 15n);
  return { hostKey, hostAddress, treasuryKey, hostFundingTx, usdt };
}

/** The proxy payrail's processes reach the chain through, the block ticker, and NOWPayments' forwarding key. */
async function startChainAccess(
  chain: LocalChain,
  stops: Array<() => Promise<void>>,
): Promise<{
  proxy: RpcProxy;
  ticker: BlockTicker;
  forward: (to: Address, weis: readonly bigint[]) => Promise<Hex[]>;
}> {
  const proxy = await startRpcProxy({ upstream: chain.rpcUrl });
  stops.unshift(() => proxy.stop());
  const ticker = new BlockTicker(chain.rpcUrl);
  const forward = await startForwarder(chain.rpcUrl, chain.chainId, ticker);
  // Stopped first, and left with automine on, so nothing else waits on a held pool on the way out.
  stops.unshift(async () => {
    await ticker.stop();
    if (ticker.isHeld) await ticker.release();
  });
  return { proxy, ticker, forward };
}

async function startSimulators(
  rng: Rng,
  chain: LocalChain,
  funded: FundedChain,
  stops: Array<() => Promise<void>>,
): Promise<Pick<World, 'sim' | 'simApiKey' | 'nowpaymentsApi' | 'nowpaymentsApiKey'>> {
  const simApiKey = `chaos-sim-key-${rng.int(1e8, 1e9 - 1)}`;
  const sim = await startChangeNowSimulator({
    port: 0,
    apiKey: simApiKey,
    rpcUrl: chain.rpcUrl,
    stepMs: 0,
    tokens: { usdt: funded.usdt },
    treasuryKey: funded.treasuryKey,
  });
  stops.unshift(() => sim.stop());
  // NOWPayments' API: every credit is confirmed with it (NOWPAYMENTS_API_KEY set), as a deployment should run.
  const nowpaymentsApiKey = `chaos-np-key-${rng.int(1e8, 1e9 - 1)}`;
  const nowpaymentsApi = await startNowPaymentsSimulator({ port: 0, apiKey: nowpaymentsApiKey });
  stops.unshift(() => nowpaymentsApi.stop());
  return { sim, simApiKey, nowpaymentsApi, nowpaymentsApiKey };
}

/** The reads of anvil the checks make directly, and the changes the faults make to it. */
function chainReadsAndChanges(
  chain: LocalChain,
  funded: FundedChain,
): Pick<World, 'ethBalance' | 'usdtBalance' | 'nonce' | 'minedTx' | 'makeContractWallet' | 'blacklistUsdt'> {
  const { usdt, treasuryKey } = funded;
  const client = createPublicClient({ transport: http(chain.rpcUrl) });
  return {
    ethBalance: (address) => client.getBalance({ address: address as Address }),
    usdtBalance: (address) =>
      client.readContract({ address: usdt, abi: erc20Abi, functionName: 'balanceOf', args: [address as Address] }),
    nonce: (address) => client.getTransactionCount({ address: address as Address }),
    async minedTx(hash) {
      const tx = (await rpc(chain.rpcUrl, 'eth_getTransactionByHash', [hash])) as {
        nonce: Hex;
        blockNumber: Hex | null;
      } | null;
      return tx?.blockNumber ? { nonce: Number(tx.nonce), blockNumber: Number(tx.blockNumber) } : null;
    },
    makeContractWallet: (address) => makeContractWallet(chain.rpcUrl, address as Address),
    blacklistUsdt: (address) => blacklistLocalUsdt(chain.rpcUrl, usdt, treasuryKey, address as Address, true),
  };
}
