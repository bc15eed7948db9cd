/**
 * Host wallet transfers on anvil, driven directly (no worker): concurrent sends get distinct, gap-free nonces; a
 * transfer the wallet cannot pay is held before signing and leaves no gap; a repeated step sends nothing twice.
 */
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChainWallet } from '../../src/integrations/wallet/index.ts';
import type { StageDeps } from '../../src/pipeline/index.ts';
import {
  confirmTransfer,
  createTransfer,
  sendTransfer,
  TransferNotReady,
  type TransferHooksByPurpose,
} from '../../src/pipeline/transfer/index.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { startOutside, type Outside } from '../support/outside.ts';
import { handDrivenDeps } from '../support/transfers.ts';

let outside: Outside;
let db: TestDatabase;
let deps: StageDeps;
const confirmed: string[] = [];
const hooks: TransferHooksByPurpose = {
  conversion: { onConfirmed: async (_trx, t) => void confirmed.push(t.ref), onFailed: async () => undefined },
  payout: { onConfirmed: async (_trx, t) => void confirmed.push(t.ref), onFailed: async () => undefined },
};
const recipient = privateKeyToAccount(generatePrivateKey()).address;

beforeAll(async () => {
  outside = await startOutside();
  db = await createTestDatabase();
  const wallet = createChainWallet({
    rpcUrl: outside.chain.rpcUrl,
    privateKey: outside.hostKey,
    chainId: outside.chain.chainId,
    timeoutMs: 10_000,
  });
  deps = handDrivenDeps(db, wallet, {
    policy: { bumpAfterMs: 60_000, maxFeePerGasWei: 300n * 10n ** 9n, confirmations: 1, receiptWaitMs: 15_000 },
    confirmDeadlineMs: 60_000,
  });
});
afterAll(async () => {
  await db?.close();
  await outside?.stop();
});

async function intent(ref: string, amount: bigint): Promise<string> {
  return db.db
    .transaction()
    .execute((trx) =>
      createTransfer(trx, { purpose: 'conversion', ref, asset: 'eth', from: deps.hostAddress, to: recipient, amount }),
    );
}

describe('host wallet transfers', () => {
  it('ten concurrent sends: nonces 0..9, each once, all confirmed, the recipient gets exactly the sum', async () => {
    const ids = await Promise.all(Array.from({ length: 10 }, (_, i) => intent(`t${i}`, 1_000n + BigInt(i))));
    // Racing senders (as if the per-wallet queue were bypassed): one may sign at a time, the others are told to
    // come back, as their jobs would be retried.
    let pending = ids;
    for (let round = 0; round < 50 && pending.length > 0; round++) {
      const results = await Promise.allSettled(pending.map((id) => sendTransfer(deps, hooks, id)));
      for (const r of results) if (r.status === 'rejected' && !(r.reason instanceof TransferNotReady)) throw r.reason;
      pending = pending.filter((_, i) => results[i]?.status === 'rejected');
    }
    expect(pending).toEqual([]);
    await Promise.all(ids.map((id) => confirmTransfer(deps, hooks, id)));
    const rows = await db.db.selectFrom('chain_transfers').select(['nonce', 'status']).orderBy('nonce').execute();
    expect(rows.map((r) => r.nonce)).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect(new Set(rows.map((r) => r.status))).toEqual(new Set(['confirmed']));
    expect(await outside.balanceOf(recipient)).toBe(10_045n);
    expect(confirmed.sort()).toEqual(ids.map((_, i) => `t${i}`).sort());
  });

  it('the same intent twice is one transfer; running its steps again sends nothing more', async () => {
    const first = await intent('once', 7n);
    expect(await intent('once', 7n)).toBe(first);
    await sendTransfer(deps, hooks, first);
    await sendTransfer(deps, hooks, first);
    await confirmTransfer(deps, hooks, first);
    await sendTransfer(deps, hooks, first);
    await confirmTransfer(deps, hooks, first);
    expect(await outside.balanceOf(recipient)).toBe(10_052n);
    const { rows } = await db.pool.query("select count(*)::int as n from chain_transfers where ref = 'once'");
    expect(rows[0].n).toBe(1);
  });

  it('a transfer the wallet cannot pay is held before signing: no nonce used, the next transfer goes through', async () => {
    const tooBig = await intent('too-big', 10n ** 30n);
    await expect(sendTransfer(deps, hooks, tooBig)).rejects.toBeInstanceOf(TransferNotReady);
    const held = await db.db
      .selectFrom('chain_transfers')
      .select(['status', 'nonce', 'tx_hash'])
      .where('ref', '=', 'too-big')
      .executeTakeFirstOrThrow();
    expect(held).toEqual({ status: 'intent', nonce: null, tx_hash: null });

    const next = await intent('after', 3n);
    await sendTransfer(deps, hooks, next);
    await confirmTransfer(deps, hooks, next);
    const sent = await db.db
      .selectFrom('chain_transfers')
      .select(['status', 'nonce'])
      .where('ref', '=', 'after')
      .executeTakeFirstOrThrow();
    expect(sent).toEqual({ status: 'confirmed', nonce: '11' });
    expect(await deps.wallet.pendingNonce()).toBe(12);
  });
});
