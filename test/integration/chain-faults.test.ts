import {
  createPublicClient,
  createWalletClient,
  http,
  keccak256,
  parseEventLogs,
  parseGwei,
  type Address,
  type Hex,
} from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startLocalChain, rpc, type LocalChain } from '../../src/simulators/chain.ts';
import { startRpcProxy, type RpcProxy } from '../../src/simulators/rpc-proxy.ts';
import {
  blacklistLocalUsdt,
  deployLocalUsdt,
  localUsdtAbi,
  mintLocalUsdt,
  setLocalUsdtReturnFalse,
} from '../../src/simulators/usdt/index.ts';
import { chainFaultsOn } from '../support/chain-faults.ts';
import { freePort } from '../support/ports.ts';
import { viemChain } from '../support/wallet-app.ts';

const WAIT_MS = 10_000;
let chain: LocalChain;
let proxy: RpcProxy;
const onChain = chainFaultsOn(() => chain.rpcUrl);

beforeAll(async () => {
  chain = await startLocalChain({ port: await freePort() });
  proxy = await startRpcProxy({ upstream: chain.rpcUrl });
});
afterAll(async () => {
  await proxy?.stop();
  await chain?.stop();
});
afterEach(async () => {
  proxy.setFaults({});
  await onChain.resumeMining();
});

/** viem clients for a fresh funded key, talking to `url` (anvil itself unless a test goes through the proxy). */
async function funded(url = chain.rpcUrl) {
  const key = generatePrivateKey();
  const account = privateKeyToAccount(key);
  await rpc(chain.rpcUrl, 'anvil_setBalance', [account.address, `0x${(10n ** 20n).toString(16)}`]);
  const local = viemChain(chain, url);
  // No retries: a lost answer must reach the test as the error a client sees, not be papered over by a resend.
  const transport = http(url, { timeout: WAIT_MS, retryCount: 0 });
  return {
    key,
    account,
    client: createPublicClient({ chain: local, transport }),
    wallet: createWalletClient({ account, chain: local, transport }),
  };
}

const anvil = () => createPublicClient({ transport: http(chain.rpcUrl, { timeout: WAIT_MS }), pollingInterval: 50 });
const stranger = (): Address => privateKeyToAccount(generatePrivateKey()).address;

async function signTransfer(
  from: Awaited<ReturnType<typeof funded>>,
  to: Address,
  valueWei: bigint,
  nonce?: number,
): Promise<Hex> {
  const n = nonce ?? (await anvil().getTransactionCount({ address: from.account.address, blockTag: 'pending' }));
  const fee = (await onChain.baseFee()) * 2n + parseGwei('1');
  return from.wallet.signTransaction({
    to,
    value: valueWei,
    nonce: n,
    gas: 21_000n,
    maxFeePerGas: fee,
    maxPriorityFeePerGas: parseGwei('1'),
  });
}

async function post(url: string, body: unknown): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(WAIT_MS),
  });
}

describe('RPC proxy faults', () => {
  it('forwards calls unchanged without faults and counts them per method', async () => {
    const before = proxy.calls('eth_chainId');
    const { client } = await funded(proxy.url);
    expect(await client.getChainId()).toBe(chain.chainId);
    expect(proxy.calls('eth_chainId')).toBe(before + 1);
  });

  it('dropSendAnswers: the node takes the transaction, the client gets no answer', async () => {
    const sender = await funded(proxy.url);
    const to = stranger();
    const raw = await signTransfer(sender, to, 1_000n);
    proxy.setFaults({ dropSendAnswers: 1 });
    const sendsBefore = proxy.calls('eth_sendRawTransaction');
    await expect(sender.wallet.sendRawTransaction({ serializedTransaction: raw })).rejects.toThrow();
    expect(proxy.calls('eth_sendRawTransaction')).toBe(sendsBefore + 1);
    const receipt = await anvil().waitForTransactionReceipt({ hash: hashOf(raw), timeout: WAIT_MS });
    expect(receipt.status).toBe('success');
    expect(await anvil().getBalance({ address: to })).toBe(1_000n);
    // One answer only: the next send is answered.
    const next = await signTransfer(sender, to, 1n);
    expect(await sender.wallet.sendRawTransaction({ serializedTransaction: next })).toBe(hashOf(next));
  });

  it('dropSendAnswers in a batch: everything is forwarded and the connection dies', async () => {
    const sender = await funded();
    const raw = await signTransfer(sender, stranger(), 5n);
    proxy.setFaults({ dropSendAnswers: 1 });
    const batch = [
      { jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] },
      { jsonrpc: '2.0', id: 2, method: 'eth_sendRawTransaction', params: [raw] },
    ];
    await expect(post(proxy.url, batch)).rejects.toThrow();
    expect((await anvil().waitForTransactionReceipt({ hash: hashOf(raw), timeout: WAIT_MS })).status).toBe('success');
  });

  it('lagging: a mined hash is unknown through the proxy, for all hashes or only the listed ones', async () => {
    const sender = await funded();
    const first = await sender.wallet.sendTransaction({ to: stranger(), value: 1n });
    const second = await sender.wallet.sendTransaction({ to: stranger(), value: 1n });
    await anvil().waitForTransactionReceipt({ hash: second, timeout: WAIT_MS });
    const viaProxy = (await funded(proxy.url)).client;

    proxy.setFaults({ lagging: true });
    expect(await rpc(proxy.url, 'eth_getTransactionReceipt', [first])).toBeNull();
    expect(await rpc(proxy.url, 'eth_getTransactionByHash', [first])).toBeNull();
    expect(await rpc(chain.rpcUrl, 'eth_getTransactionReceipt', [first])).not.toBeNull();

    proxy.setFaults({ lagging: [first.toUpperCase().replace('0X', '0x')] });
    await expect(viaProxy.getTransactionReceipt({ hash: first })).rejects.toThrow(/could not be found/);
    expect((await viaProxy.getTransactionReceipt({ hash: second })).status).toBe('success');
    const answers = (await (
      await post(proxy.url, [
        { jsonrpc: '2.0', id: 1, method: 'eth_getTransactionReceipt', params: [first] },
        { jsonrpc: '2.0', id: 2, method: 'eth_getTransactionReceipt', params: [second] },
      ])
    ).json()) as { id: number; result: unknown }[];
    expect(answers.map((a) => a.id)).toEqual([1, 2]);
    expect(answers[0]?.result).toBeNull();
    expect(answers[1]?.result).not.toBeNull();
  });

  it('refuseSends: an error answer, and nothing reaches the node', async () => {
    const sender = await funded(proxy.url);
    const raw = await signTransfer(sender, stranger(), 1n);
    const nonce = await anvil().getTransactionCount({ address: sender.account.address, blockTag: 'pending' });
    proxy.setFaults({ refuseSends: 'insufficient funds for gas * price + value' });
    await expect(sender.wallet.sendRawTransaction({ serializedTransaction: raw })).rejects.toThrow(
      /insufficient funds/,
    );
    expect(await rpc(chain.rpcUrl, 'eth_getTransactionByHash', [hashOf(raw)])).toBeNull();
    expect(await anvil().getTransactionCount({ address: sender.account.address, blockTag: 'pending' })).toBe(nonce);
  });

  it('down: every call answers 503; setFaults({}) brings it back', async () => {
    proxy.setFaults({ down: true });
    expect((await post(proxy.url, { jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] })).status).toBe(503);
    proxy.setFaults({});
    expect(await rpc(proxy.url, 'eth_chainId', [])).toBe(`0x${chain.chainId.toString(16)}`);
  });

  it('answers 413 to a body over the bound, without forwarding it', async () => {
    const res = await post(proxy.url, {
      jsonrpc: '2.0',
      id: 1,
      method: 'eth_chainId',
      params: ['x'.repeat(2 * 1024 * 1024)],
    });
    expect(res.status).toBe(413);
  });
});

describe('receivers that are contracts', () => {
  it('a contract wallet: a 21,000-gas transfer is mined as a failure, an estimated one succeeds', async () => {
    const sender = await funded();
    const safe = stranger();
    await onChain.makeContractWallet(safe);
    const plain = await sender.wallet.sendTransaction({ to: safe, value: 1_000n, gas: 21_000n });
    const failed = await anvil().waitForTransactionReceipt({ hash: plain, timeout: WAIT_MS });
    expect(failed.status).toBe('reverted');
    expect(failed.gasUsed).toBe(21_000n);
    expect(await anvil().getBalance({ address: safe })).toBe(0n);

    const gas = await anvil().estimateGas({ account: sender.account.address, to: safe, value: 1_000n });
    expect(gas).toBeGreaterThan(21_000n);
    const estimated = await sender.wallet.sendTransaction({ to: safe, value: 1_000n, gas });
    expect((await anvil().waitForTransactionReceipt({ hash: estimated, timeout: WAIT_MS })).status).toBe('success');
    expect(await anvil().getBalance({ address: safe })).toBe(1_000n);
  });

  it('a rejecting wallet: eth_estimateGas fails', async () => {
    const sender = await funded();
    const wall = stranger();
    await onChain.makeRejectingWallet(wall);
    await expect(anvil().estimateGas({ account: sender.account.address, to: wall, value: 1n })).rejects.toThrow(
      /revert/i,
    );
  });
});

describe('fees and the pool', () => {
  it('a base fee spike is in the next block, then falls by EIP-1559 (12.5 % per empty block)', async () => {
    await onChain.spikeBaseFee(parseGwei('100'));
    expect(await onChain.baseFee()).toBe(parseGwei('100'));
    await onChain.mineBlocks(1);
    expect(await onChain.baseFee()).toBe(parseGwei('87.5'));
  });

  it('anvil evicts a waiting transaction whose max fee falls under a spiked base fee (geth would keep it)', async () => {
    const sender = await funded();
    await onChain.pausePool();
    const raw = await signTransfer(sender, stranger(), 1n);
    const hash = await sender.wallet.sendRawTransaction({ serializedTransaction: raw });
    // signTransfer offers 2 × base fee + 1 gwei: the spike goes just past it.
    await onChain.spikeBaseFee((await onChain.baseFee()) * 2n + parseGwei('2'));
    expect(await rpc(chain.rpcUrl, 'eth_getTransactionByHash', [hash])).toBeNull();
    expect(await anvil().getTransactionCount({ address: sender.account.address, blockTag: 'pending' })).toBe(0);
  });

  it('a paused pool keeps a transaction pending until blocks are mined', async () => {
    const sender = await funded();
    await onChain.pausePool();
    const hash = await sender.wallet.sendTransaction({ to: stranger(), value: 1n });
    expect(await rpc(chain.rpcUrl, 'eth_getTransactionReceipt', [hash])).toBeNull();
    expect((await anvil().getTransaction({ hash })).blockNumber).toBeNull();
    await onChain.mineBlocks(1);
    expect((await anvil().getTransactionReceipt({ hash })).status).toBe('success');

    const later = await sender.wallet.sendTransaction({ to: stranger(), value: 1n });
    await onChain.resumeMining();
    expect((await anvil().waitForTransactionReceipt({ hash: later, timeout: WAIT_MS })).status).toBe('success');
  });

  it('a dropped transaction vanishes: unknown, never mined, its nonce free again', async () => {
    const sender = await funded();
    await onChain.pausePool();
    const hash = await sender.wallet.sendTransaction({ to: stranger(), value: 1n });
    expect(await onChain.dropTransaction(hash)).toBe(true);
    expect(await onChain.dropTransaction(hash)).toBe(false);
    expect(await rpc(chain.rpcUrl, 'eth_getTransactionByHash', [hash])).toBeNull();
    await onChain.mineBlocks(2);
    expect(await rpc(chain.rpcUrl, 'eth_getTransactionReceipt', [hash])).toBeNull();
    expect(await anvil().getTransactionCount({ address: sender.account.address, blockTag: 'pending' })).toBe(0);

    const a = await sender.wallet.sendTransaction({ to: stranger(), value: 1n, nonce: 0 });
    const b = await sender.wallet.sendTransaction({ to: stranger(), value: 1n, nonce: 1 });
    await onChain.dropAllPending();
    await onChain.mineBlocks(1);
    for (const h of [a, b]) expect(await rpc(chain.rpcUrl, 'eth_getTransactionByHash', [h])).toBeNull();
    expect(await rpc(chain.rpcUrl, 'txpool_status', [])).toEqual({ pending: '0x0', queued: '0x0' });
  });

  it("anvil's refusals: a replacement that does not raise the max fee, a spent nonce", async () => {
    const sender = await funded();
    await onChain.pausePool();
    const first = await signTransfer(sender, stranger(), 1n, 0);
    await sender.wallet.sendRawTransaction({ serializedTransaction: first });
    const same = await signTransfer(sender, stranger(), 2n, 0);
    await expect(rpc(chain.rpcUrl, 'eth_sendRawTransaction', [same])).rejects.toThrow(
      /replacement transaction underpriced/,
    );
    await expect(rpc(chain.rpcUrl, 'eth_sendRawTransaction', [first])).rejects.toThrow(/transaction already imported/);
    await onChain.mineBlocks(1);
    await expect(rpc(chain.rpcUrl, 'eth_sendRawTransaction', [first])).rejects.toThrow(/nonce too low/);
  });
});

describe('reorganisations and a shared key', () => {
  it('reorg: a mined transaction leaves the chain, the height stays, the blocks change', async () => {
    const sender = await funded();
    const to = stranger();
    const hash = await sender.wallet.sendTransaction({ to, value: 7n });
    const mined = await anvil().waitForTransactionReceipt({ hash, timeout: WAIT_MS });
    const height = await anvil().getBlockNumber();
    await onChain.reorg(1);
    expect(await anvil().getBlockNumber()).toBe(height);
    expect((await anvil().getBlock({ blockNumber: mined.blockNumber })).hash).not.toBe(mined.blockHash);
    expect(await rpc(chain.rpcUrl, 'eth_getTransactionReceipt', [hash])).toBeNull();
    expect(await rpc(chain.rpcUrl, 'eth_getTransactionByHash', [hash])).toBeNull();
    expect(await anvil().getBalance({ address: to })).toBe(0n);
    expect(await anvil().getTransactionCount({ address: sender.account.address, blockTag: 'pending' })).toBe(0);
  });

  it('reorg with reinclude: the transaction comes back in another block', async () => {
    const sender = await funded();
    const raw = await signTransfer(sender, stranger(), 3n);
    const hash = await sender.wallet.sendRawTransaction({ serializedTransaction: raw });
    const before = await anvil().waitForTransactionReceipt({ hash, timeout: WAIT_MS });
    await onChain.mineBlocks(1);
    await onChain.reorg(2, [{ rawTx: raw, blockOffset: 1 }]);
    const after = await anvil().getTransactionReceipt({ hash });
    expect(after.status).toBe('success');
    expect(after.blockNumber).toBe(before.blockNumber + 1n);
    expect(after.blockHash).not.toBe(before.blockHash);
  });

  it('takeNonce: another holder of the key uses the next nonce, and ours is spent', async () => {
    const sender = await funded();
    const ours = await signTransfer(sender, stranger(), 1n, 0);
    const taken = await onChain.takeNonce(sender.key);
    expect((await anvil().waitForTransactionReceipt({ hash: taken, timeout: WAIT_MS })).status).toBe('success');
    expect(await anvil().getTransactionCount({ address: sender.account.address })).toBe(1);
    await expect(rpc(chain.rpcUrl, 'eth_sendRawTransaction', [ours])).rejects.toThrow(/nonce too low/);
  });

  it('takeNonce at a given nonce replaces our waiting transaction', async () => {
    const sender = await funded();
    await onChain.pausePool();
    const ours = await sender.wallet.sendRawTransaction({
      serializedTransaction: await signTransfer(sender, stranger(), 1n, 0),
    });
    const taken = await onChain.takeNonce(sender.key, {
      nonce: 0,
      maxFeePerGasWei: (await onChain.baseFee()) * 2n + parseGwei('2'),
    });
    await onChain.mineBlocks(1);
    expect((await anvil().getTransactionReceipt({ hash: taken })).status).toBe('success');
    expect(await rpc(chain.rpcUrl, 'eth_getTransactionReceipt', [ours])).toBeNull();
  });
});

describe('LocalUSDT misbehaving like real tokens', () => {
  /** A token, an owner holding 1,000,000 units, a stranger to pay, and a transfer whose revert is mined (fixed gas). */
  async function tokenSetup() {
    const owner = await funded();
    const token = await deployLocalUsdt(chain.rpcUrl, owner.key);
    await mintLocalUsdt(chain.rpcUrl, token, owner.key, owner.account.address, 1_000_000n);
    const to = stranger();
    const call = { address: token, abi: localUsdtAbi } as const;
    const transfer = async (units: bigint) => {
      const hash = await owner.wallet.writeContract({
        ...call,
        functionName: 'transfer',
        args: [to, units],
        gas: 100_000n,
      });
      return anvil().waitForTransactionReceipt({ hash, timeout: WAIT_MS });
    };
    const balanceOf = (who: Address) => anvil().readContract({ ...call, functionName: 'balanceOf', args: [who] });
    const simulate = (units: bigint) =>
      anvil().simulateContract({
        ...call,
        account: owner.account.address,
        functionName: 'transfer',
        args: [to, units],
      });
    return { owner, token, to, call, transfer, balanceOf, simulate };
  }

  it('a blacklisted sender or receiver makes transfers revert; off the list they move again', async () => {
    const { owner, token, to, call, transfer, balanceOf, simulate } = await tokenSetup();
    await blacklistLocalUsdt(chain.rpcUrl, token, owner.key, to, true);
    expect(await anvil().readContract({ ...call, functionName: 'isBlackListed', args: [to] })).toBe(true);
    expect((await transfer(10n)).status).toBe('reverted');
    await blacklistLocalUsdt(chain.rpcUrl, token, owner.key, to, false);
    await blacklistLocalUsdt(chain.rpcUrl, token, owner.key, owner.account.address, true);
    await expect(simulate(10n)).rejects.toThrow(/blacklisted/);
    expect((await transfer(10n)).status).toBe('reverted');
    await blacklistLocalUsdt(chain.rpcUrl, token, owner.key, owner.account.address, false);
    expect((await transfer(10n)).status).toBe('success');
    expect(await balanceOf(to)).toBe(10n);
  });

  it('returnFalse: transfer succeeds as a transaction, returns false, moves nothing and logs no Transfer', async () => {
    const { owner, token, to, transfer, balanceOf, simulate } = await tokenSetup();
    await setLocalUsdtReturnFalse(chain.rpcUrl, token, owner.key, true);
    expect((await simulate(10n)).result).toBe(false);
    const quiet = await transfer(10n);
    expect(quiet.status).toBe('success');
    expect(parseEventLogs({ abi: localUsdtAbi, eventName: 'Transfer', logs: quiet.logs })).toEqual([]);
    expect(await balanceOf(to)).toBe(0n);
    expect(await balanceOf(owner.account.address)).toBe(1_000_000n);

    await setLocalUsdtReturnFalse(chain.rpcUrl, token, owner.key, false);
    const moved = await transfer(10n);
    expect(parseEventLogs({ abi: localUsdtAbi, eventName: 'Transfer', logs: moved.logs })).toHaveLength(1);
    expect(await balanceOf(to)).toBe(10n);
  });
});

/** A signed transaction's hash, known before any node sees it. */
function hashOf(raw: Hex): Hex {
  return keccak256(raw);
}
