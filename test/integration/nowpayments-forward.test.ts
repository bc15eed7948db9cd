/**
 * The NOWPayments simulator's forwarding of paid outcomes on a real chain (anvil), as a local run uses it: forwards
 * that overlap each become their own mined transaction, the merchant's wallet receives exactly their sum, and a
 * forward the node refuses does not leave its hot wallet stuck behind a nonce gap.
 */
import { createPublicClient, http, type Address } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalChain, type LocalChain } from '../../src/simulators/chain.ts';
import { startOutcomeForwarder } from '../../src/simulators/nowpayments/index.ts';
import { freePort } from '../support/ports.ts';

let chain: LocalChain;

beforeAll(async () => {
  chain = await startLocalChain({ port: await freePort() });
});

afterAll(async () => {
  await chain?.stop();
});

const client = () => createPublicClient({ transport: http(chain.rpcUrl) });
const freshMerchant = (): Address => privateKeyToAccount(generatePrivateKey()).address;

describe('NOWPayments outcome forwarding', () => {
  it('forwards side by side: one mined transaction each, the merchant receiving exactly their sum', async () => {
    const merchant = freshMerchant();
    const forwarder = await startOutcomeForwarder(chain.rpcUrl, merchant, { wallets: 3 });
    // Amounts as NOWPayments states them, 8 decimals of ETH: 10^10 wei steps, all different.
    const amounts = Array.from({ length: 25 }, (_, i) => BigInt(i + 1) * 1_234_567n * 10n ** 10n);
    await Promise.all(amounts.map((wei) => forwarder.forward(wei)));

    const expected = amounts.reduce((sum, wei) => sum + wei, 0n);
    expect(await client().getBalance({ address: merchant })).toBe(expected);
    const sent = await Promise.all(
      forwarder.addresses.map((address) => client().getTransactionCount({ address, blockTag: 'pending' })),
    );
    expect(sent.reduce((sum, n) => sum + n, 0)).toBe(amounts.length);
    // Spread over the hot wallets, not all from one.
    expect(sent.filter((n) => n > 0).length).toBeGreaterThan(1);
  });

  it('a forward the node refuses fails alone: the next one from the same wallet is mined', async () => {
    const merchant = freshMerchant();
    const forwarder = await startOutcomeForwarder(chain.rpcUrl, merchant, { wallets: 1 });
    await forwarder.forward(10n ** 16n);
    // More than the hot wallet holds: refused at submission, its nonce not used.
    await expect(forwarder.forward(10n ** 25n)).rejects.toThrow();
    await forwarder.forward(3n * 10n ** 16n);
    expect(await client().getBalance({ address: merchant })).toBe(4n * 10n ** 16n);
    const [hot] = forwarder.addresses as [Address];
    expect(await client().getTransactionCount({ address: hot, blockTag: 'pending' })).toBe(2);
  });
});
