/**
 * A worker whose ETH_RPC_URL serves another chain than CHAIN_ID must not start: its key would sign transfers for a
 * network nobody chose. Against a real anvil (chain 31337): CHAIN_ID 5 stops the start with a message naming both
 * ids, and the same configuration with the right id starts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startLocalChain, type LocalChain } from '../../src/simulators/index.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { startTestPayrail } from '../support/payrail.ts';

let db: TestDatabase;
let chain: LocalChain;

/** A worker's settings against the local chain, with the chain id it is told to expect. */
function onChain(chainId: string) {
  // No token contract is deployed: the start reads none, and a refused start must not get that far.
  return { ETH_RPC_URL: chain.rpcUrl, CHAIN_ID: chainId, USDT_CONTRACT: `0x${'11'.repeat(20)}` };
}

beforeAll(async () => {
  db = await createTestDatabase();
  chain = await startLocalChain({ port: await freePort() });
});

afterAll(async () => {
  await chain?.stop();
  await db?.close();
});

describe('the chain a worker signs for', () => {
  it('stops the start when ETH_RPC_URL serves another chain than CHAIN_ID, and starts on the right one', async () => {
    expect(chain.chainId).toBe(31337);
    const worker = { web: false, worker: true };
    await expect(startTestPayrail(db, { roles: worker, env: onChain('5') })).rejects.toThrow(
      'ETH_RPC_URL serves chain 31337, but CHAIN_ID is 5',
    );

    const payrail = await startTestPayrail(db, { roles: worker, env: onChain('31337') });
    await payrail.stop();
  });
});
