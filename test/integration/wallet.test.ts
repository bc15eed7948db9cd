import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { createPublicClient, http, type Hex } from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChainWallet, ChainUnavailableError, type ChainWallet } from '../../src/integrations/wallet/index.ts';
import { startLocalChain, type LocalChain } from '../../src/simulators/chain.ts';
import { freePort } from '../support/ports.ts';

let chain: LocalChain;
let wallet: ChainWallet;
const recipient = privateKeyToAccount(generatePrivateKey()).address;

async function rpc(method: string, params: unknown[]) {
  const res = await fetch(chain.rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  return ((await res.json()) as { result: unknown }).result;
}

beforeAll(async () => {
  chain = await startLocalChain({ port: await freePort() });
  const key: Hex = generatePrivateKey();
  wallet = createChainWallet({ rpcUrl: chain.rpcUrl, privateKey: key, chainId: chain.chainId, timeoutMs: 5_000 });
  await rpc('anvil_setBalance', [wallet.address, '0xDE0B6B3A7640000']); // 1 ETH
});
afterAll(async () => chain?.stop());

describe('host wallet on anvil', () => {
  it('signs before broadcasting: the hash is known before the network sees the transaction', async () => {
    const nonce = await wallet.pendingNonce();
    const signed = await wallet.sign(
      { to: recipient, asset: { kind: 'native' }, amount: 10n ** 15n, nonce },
      await wallet.fees(),
    );
    expect(await wallet.lookup(signed.hash)).toEqual({ state: 'unknown' });
    expect(await wallet.broadcast(signed.rawTx)).toEqual({ ok: true });
    const found = await wallet.waitMined(signed.hash, 10_000);
    expect(found).toMatchObject({ state: 'mined', success: true });
    const client = createPublicClient({ transport: http(chain.rpcUrl) });
    expect(await client.getBalance({ address: recipient })).toBe(10n ** 15n);
  });

  it('a second broadcast of a mined transaction sends nothing more', async () => {
    const nonce = await wallet.pendingNonce();
    const signed = await wallet.sign(
      { to: recipient, asset: { kind: 'native' }, amount: 1n, nonce },
      await wallet.fees(),
    );
    await wallet.broadcast(signed.rawTx);
    expect(await wallet.waitMined(signed.hash, 10_000)).toMatchObject({ state: 'mined' });
    const again = await wallet.broadcast(signed.rawTx);
    // Either the node recognises it or refuses the spent nonce: in no case is value sent twice.
    expect(again.ok || (!again.ok && again.reason === 'nonce_too_low')).toBe(true);
    const client = createPublicClient({ transport: http(chain.rpcUrl) });
    expect(await client.getBalance({ address: recipient })).toBe(10n ** 15n + 1n);
  });

  it('reads what a mined transaction sent in ETH to an address (refund checks), and null for an unknown hash', async () => {
    const nonce = await wallet.pendingNonce();
    const signed = await wallet.sign(
      { to: recipient, asset: { kind: 'native' }, amount: 12_345n, nonce },
      await wallet.fees(),
    );
    expect(await wallet.nativeReceived(signed.hash, recipient)).toBeNull();
    await wallet.broadcast(signed.rawTx);
    await wallet.waitMined(signed.hash, 10_000);
    expect(await wallet.nativeReceived(signed.hash, recipient)).toBe(12_345n);
    // Sent to someone else: nothing for this address.
    expect(await wallet.nativeReceived(signed.hash, wallet.address)).toBe(0n);
  });

  it('reports a transfer it cannot pay for instead of sending it', async () => {
    const nonce = await wallet.pendingNonce();
    const signed = await wallet.sign(
      { to: recipient, asset: { kind: 'native' }, amount: 10n ** 19n, nonce },
      await wallet.fees(),
    );
    const result = await wallet.broadcast(signed.rawTx);
    expect(result).toMatchObject({ ok: false, reason: 'insufficient_funds' });
    expect(await wallet.pendingNonce()).toBe(nonce);
  });

  it('refuses to price (and so sign) a transaction for a chain other than the one configured', async () => {
    const wrong = createChainWallet({
      rpcUrl: chain.rpcUrl,
      privateKey: generatePrivateKey(),
      chainId: 1,
      timeoutMs: 5_000,
    });
    await expect(wrong.fees()).rejects.toThrow(/serves chain 31337, not chain 1/);
  });

  it('an unreachable RPC is a ChainUnavailableError, not a verdict about the transaction', async () => {
    const dead = createChainWallet({
      rpcUrl: `http://127.0.0.1:${await freePort()}`,
      privateKey: generatePrivateKey(),
      chainId: 31337,
      timeoutMs: 1_000,
    });
    await expect(dead.pendingNonce()).rejects.toBeInstanceOf(ChainUnavailableError);
    await expect(dead.lookup(`0x${'ab'.repeat(32)}`)).rejects.toBeInstanceOf(ChainUnavailableError);
  });
});
