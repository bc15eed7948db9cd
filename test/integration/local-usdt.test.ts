import { createPublicClient, erc20Abi, http } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChainWallet } from '../../src/integrations/wallet/index.ts';
import { deployLocalUsdt, mintLocalUsdt } from '../../src/simulators/usdt/index.ts';
import { startOutside, type Outside } from '../support/outside.ts';

let outside: Outside;
beforeAll(async () => {
  outside = await startOutside();
});
afterAll(async () => outside?.stop());

describe('LocalUSDT on anvil', () => {
  it('deploys with 6 decimals; the host wallet sends it as an ERC-20 transfer, signed before broadcast', async () => {
    const token = await deployLocalUsdt(outside.chain.rpcUrl, outside.hostKey);
    const client = createPublicClient({ transport: http(outside.chain.rpcUrl) });
    expect(await client.readContract({ address: token, abi: erc20Abi, functionName: 'decimals' })).toBe(6);
    await mintLocalUsdt(outside.chain.rpcUrl, token, outside.hostKey, outside.hostAddress, 1_000_000_000n);

    const wallet = createChainWallet({
      rpcUrl: outside.chain.rpcUrl,
      privateKey: outside.hostKey,
      chainId: outside.chain.chainId,
      timeoutMs: 10_000,
    });
    expect(await wallet.balance({ kind: 'erc20', contract: token })).toBe(1_000_000_000n);
    const owner = privateKeyToAccount(generatePrivateKey()).address;
    const signed = await wallet.sign(
      { to: owner, asset: { kind: 'erc20', contract: token }, amount: 42_015_101n, nonce: await wallet.pendingNonce() },
      await wallet.fees(),
    );
    expect(await wallet.broadcast(signed.rawTx)).toEqual({ ok: true });
    expect(await wallet.waitMined(signed.hash, 10_000)).toMatchObject({ state: 'mined', success: true });
    expect(await client.readContract({ address: token, abi: erc20Abi, functionName: 'balanceOf', args: [owner] })).toBe(
      42_015_101n,
    );
    expect(await wallet.balance({ kind: 'erc20', contract: token })).toBe(957_984_899n);
  });

  it('a token transfer beyond the balance reverts on chain: nothing moves', async () => {
    const token = await deployLocalUsdt(outside.chain.rpcUrl, outside.hostKey);
    const wallet = createChainWallet({
      rpcUrl: outside.chain.rpcUrl,
      privateKey: outside.hostKey,
      chainId: outside.chain.chainId,
      timeoutMs: 10_000,
    });
    const signed = await wallet.sign(
      {
        to: outside.hostAddress,
        asset: { kind: 'erc20', contract: token },
        amount: 1n,
        nonce: await wallet.pendingNonce(),
      },
      await wallet.fees(),
    );
    await wallet.broadcast(signed.rawTx);
    expect(await wallet.waitMined(signed.hash, 10_000)).toMatchObject({ state: 'mined', success: false });
  });
});
