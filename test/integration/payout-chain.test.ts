/**
 * Payouts through the worker on a chain that behaves like mainnet: an owner whose address is a contract wallet, a fee
 * spike under a waiting payout, a reorganisation of the payout's block, a receiver that refuses ETH; and the transfer
 * admin API (list, detail with every signed version, actions refused where unsafe).
 */
import { describe, expect } from 'vitest';
import { rpc } from '../../src/simulators/index.ts';
import { chainFaultsOn } from '../support/chain-faults.ts';
import { worldFirst, worldTest } from '../support/fixtures.ts';
import { eventually } from '../support/outside.ts';
import { expectLedgerCleanOn, instantBody } from '../support/payout-state.ts';
import { NET_WEI } from '../support/payout-steps.ts';
import { freshWallet } from '../support/payouts.ts';

// Each test below lists the fixtures it uses (vitest sets up only those), so those lists repeat from test to test.
const it = worldFirst(
  worldTest({ firstPaymentId: 9_300_000_000, firstChannel: 1_003_300_000_001 })
    .extend('onChain', { scope: 'file' }, ({ outside }) => chainFaultsOn(outside.chain.rpcUrl))
    /** Saves a new instant channel paying out ETH to `wallet` and sends it one finished payment; returns its id. */
    .extend('paidInstantEth', ({ channel, pay }) => async (wallet: string): Promise<string> => {
      const id = await channel(instantBody('eth', 'eth', wallet));
      await pay(id);
      return id;
    })
    .extend('payoutOf', ({ app }) => async (channelId: string): Promise<Record<string, any> | undefined> => {
      const payouts = (await app.payrail.request('GET', `/api/payouts?channelId=${channelId}`)).body.payouts as Array<
        Record<string, any>
      >;
      return payouts[0];
    })
    /** Waits until the channel's payout is in `status`. */
    .extend('payoutReaches', ({ payoutOf }) => async (channelId: string, status: string): Promise<void> => {
      await eventually(`the payout ${status}`, async () => (await payoutOf(channelId))?.status === status);
    })
    .extend(
      'transferOf',
      ({ app, db, payoutOf }) =>
        async (channelId: string): Promise<Record<string, any> | undefined> => {
          const payout = await payoutOf(channelId);
          const row =
            payout &&
            (await db.db
              .selectFrom('chain_transfers')
              .select('transfer_id')
              .where('purpose', '=', 'payout')
              .where('ref', '=', payout.payoutId)
              .executeTakeFirst());
          if (!row) return undefined;
          return (await app.payrail.request('GET', `/api/transfers/${row.transfer_id}`)).body as Record<string, any>;
        },
    )
    .extend('receiptGas', ({ outside }) => async (hash: string): Promise<bigint> => {
      const receipt = (await rpc(outside.chain.rpcUrl, 'eth_getTransactionReceipt', [hash])) as {
        gasUsed: string;
        effectiveGasPrice: string;
      };
      return BigInt(receipt.gasUsed) * BigInt(receipt.effectiveGasPrice);
    })
    .extend('journalsOf', ({ db }) => async (ref: string): Promise<string[]> => {
      return (
        await db.db.selectFrom('ledger_journals').select('kind').where('ref', '=', ref).orderBy('id').execute()
      ).map((j) => j.kind);
    })
    /** The channel's payout booked once as paid, and its transfer's gas once as a network fee. */
    .extend('expectBookedOnce', ({ journalsOf, payoutOf, transferOf }) => async (channelId: string): Promise<void> => {
      const payout = await payoutOf(channelId);
      const transfer = await transferOf(channelId);
      expect(await journalsOf(payout!.payoutId)).toEqual(['payout_reserved', 'payout_completed']);
      expect(await journalsOf(transfer!.transferId)).toEqual(['network_fee']);
    })
    .extend('expectLedgerClean', ({ db }) => expectLedgerCleanOn(db)),
);

describe('payouts on the chain as it behaves', () => {
  it('an instant ETH payout to a contract wallet completes: its gas is estimated for the real call', async ({
    outside,
    onChain,
    start,
    paidInstantEth,
    payoutReaches,
    transferOf,
    expectLedgerClean,
  }) => {
    await start();
    const wallet = freshWallet();
    await onChain.makeContractWallet(wallet as `0x${string}`);
    const id = await paidInstantEth(wallet);
    await payoutReaches(id, 'completed');
    expect(await outside.balanceOf(wallet)).toBe(NET_WEI);
    const transfer = await transferOf(id);
    expect(BigInt(transfer!.gasLimit)).toBeGreaterThan(21_000n);
    await expectLedgerClean();
  });

  it('a 10x fee spike under a waiting payout: one mined replacement, one payout, the real gas booked', async ({
    outside,
    onChain,
    start,
    paidInstantEth,
    payoutReaches,
    transferOf,
    receiptGas,
    expectBookedOnce,
    expectLedgerClean,
  }) => {
    await start({ TRANSFER_BUMP_AFTER: '1s' });
    await onChain.pausePool();
    const wallet = freshWallet();
    const id = await paidInstantEth(wallet);
    await eventually('the transfer released', async () => (await transferOf(id))?.status === 'broadcast');
    await onChain.spikeBaseFee((await onChain.baseFee()) * 10n);
    await eventually('a replacement signed', async () => ((await transferOf(id))?.versions?.length ?? 0) >= 2);
    await onChain.resumeMining();
    await payoutReaches(id, 'completed');
    const transfer = await transferOf(id);
    expect(transfer).toMatchObject({ status: 'confirmed', nonce: expect.any(String) });
    const mined = transfer!.versions.find((v: { txHash: string }) => v.txHash === transfer!.txHash);
    expect(mined.version).toBeGreaterThanOrEqual(2);
    expect(BigInt(mined.maxFeePerGasWei)).toBeGreaterThan(BigInt(transfer!.versions[0].maxFeePerGasWei));
    expect(BigInt(transfer!.gasCostWei)).toBe(await receiptGas(transfer!.txHash));
    expect(await outside.balanceOf(wallet)).toBe(NET_WEI);
    await expectBookedOnce(id);
    await expectLedgerClean();
  });

  it("a reorganisation of the payout's block: sent again, booked once at CHAIN_CONFIRMATIONS deep", async ({
    outside,
    onChain,
    start,
    paidInstantEth,
    payoutOf,
    payoutReaches,
    transferOf,
    expectBookedOnce,
  }) => {
    const payrail = await start({ CHAIN_CONFIRMATIONS: '3' });
    const wallet = freshWallet();
    const id = await paidInstantEth(wallet);
    await eventually(
      'the transfer mined, not yet deep enough',
      async () => (await transferOf(id))?.blockNumber != null,
    );
    const first = await transferOf(id);
    expect(first).toMatchObject({ status: 'broadcast' });
    expect((await payoutOf(id))?.status).toBe('sent');

    await onChain.reorg(1);
    expect(await outside.balanceOf(wallet)).toBe(0n);
    // Noticed, sent again with the same bytes, mined again in the new chain.
    await eventually(
      'the payout paid again on the new chain',
      async () => (await outside.balanceOf(wallet)) === NET_WEI,
    );
    await eventually('the transfer seen mined again', async () => {
      const t = await transferOf(id);
      return t?.blockNumber != null && t.blockHash !== first!.blockHash;
    });
    expect((await payoutOf(id))?.status).toBe('sent');
    await onChain.mineBlocks(2);
    await payoutReaches(id, 'completed');
    const transfer = await transferOf(id);
    expect(transfer).toMatchObject({ status: 'confirmed', txHash: first!.txHash });
    expect(transfer!.versions).toHaveLength(1);
    expect(await outside.balanceOf(wallet)).toBe(NET_WEI);
    await expectBookedOnce(id);
    const alerts = await payrail.request('GET', '/api/alerts?state=all');
    expect(JSON.stringify(alerts.body)).toContain('transfer_reorged');
  });

  it('a receiver that refuses ETH: the payout goes to review before anything is signed, and cancel returns the funds', async ({
    onChain,
    start,
    paidInstantEth,
    payoutOf,
    payoutReaches,
    transferOf,
    journalsOf,
    expectLedgerClean,
  }) => {
    const payrail = await start();
    const wallet = freshWallet();
    await onChain.makeRejectingWallet(wallet as `0x${string}`);
    const id = await paidInstantEth(wallet);
    await payoutReaches(id, 'needs_review');
    const payout = await payoutOf(id);
    expect(payout!.reason).toMatch(/gas estimate failed/);
    const transfer = await transferOf(id);
    expect(transfer).toMatchObject({ status: 'failed', lastError: 'estimate_failed', nonce: null, versions: [] });
    const cancelled = await payrail.request('POST', `/api/payouts/${payout!.payoutId}/cancel`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.status).toBe('cancelled');
    expect(await journalsOf(payout!.payoutId)).toEqual(['payout_reserved', 'payout_returned']);
    await expectLedgerClean();
  });
});

describe('a payout whose transfer is in review', () => {
  it("is not retried (409 naming the transfer): the transfer's own retry puts it back to watching, and the payout completes from its outcome", async ({
    outside,
    onChain,
    db,
    start,
    paidInstantEth,
    payoutOf,
    payoutReaches,
    transferOf,
  }) => {
    const payrail = await start();
    await onChain.pausePool();
    const wallet = freshWallet();
    const id = await paidInstantEth(wallet);
    await eventually('the transfer released', async () => (await transferOf(id))?.status === 'broadcast');
    const transfer = await transferOf(id);
    // As the confirm step leaves it when it sees the nonce taken (test/integration/transfer-chain.test.ts).
    await db.pool.query(
      "update chain_transfers set status = 'needs_review', reason = 'nonce 0 looked taken' where transfer_id = $1",
      [transfer!.transferId],
    );
    const payout = await payoutOf(id);
    const retried = await payrail.request('POST', `/api/payouts/${payout!.payoutId}/retry`);
    expect(retried.status).toBe(409);
    expect(retried.body.error).toMatch(new RegExp(`its transfer ${transfer!.transferId} is in review`));
    const cancelled = await payrail.request('POST', `/api/payouts/${payout!.payoutId}/cancel`);
    expect(cancelled.status).toBe(409);

    const back = await payrail.request('POST', `/api/transfers/${transfer!.transferId}/retry`);
    expect(back.status).toBe(200);
    expect(back.body.status).toBe('broadcast');
    await onChain.resumeMining();
    await payoutReaches(id, 'completed');
    expect(await outside.balanceOf(wallet)).toBe(NET_WEI);
    const audit = await db.db
      .selectFrom('audit_log')
      .select(['action', 'actor'])
      .where('subject', '=', transfer!.transferId)
      .execute();
    expect(audit).toEqual([{ action: 'transfer.retry', actor: 'admin' }]);
  });
});

describe('the transfer admin API', () => {
  it('lists by state, shows every version, and refuses what is unsafe (409), malformed (400) or unknown (404)', async ({
    db,
    start,
    paidInstantEth,
    payoutReaches,
    transferOf,
  }) => {
    const payrail = await start();
    const wallet = freshWallet();
    const id = await paidInstantEth(wallet);
    await payoutReaches(id, 'completed');
    const transfer = await transferOf(id);
    expect(transfer!.versions).toEqual([
      expect.objectContaining({ version: 1, kind: 'transfer', txHash: transfer!.txHash, gasLimit: '21000' }),
    ]);

    const confirmed = await payrail.request('GET', '/api/transfers?status=confirmed');
    expect(confirmed.status).toBe(200);
    expect(confirmed.body.transfers.map((t: { transferId: string }) => t.transferId)).toContain(transfer!.transferId);
    expect(confirmed.body.transfers.every((t: { status: string }) => t.status === 'confirmed')).toBe(true);

    for (const action of ['bump', 'cancel', 'retry']) {
      const refused = await payrail.request('POST', `/api/transfers/${transfer!.transferId}/${action}`);
      expect(refused.status).toBe(409);
    }
    const resolved = await payrail.request('POST', `/api/transfers/${transfer!.transferId}/resolve`, {
      body: { outcome: 'never_sent' },
    });
    expect(resolved.status).toBe(409);
    expect(
      (
        await payrail.request('POST', `/api/transfers/${transfer!.transferId}/resolve`, {
          body: { outcome: 'mined', txHash: '0x12' },
        })
      ).status,
    ).toBe(400);
    expect((await payrail.request('POST', `/api/transfers/${transfer!.transferId}/resolve`, { body: {} })).status).toBe(
      400,
    );
    expect((await payrail.request('GET', '/api/transfers/tr_0000000000000000')).status).toBe(404);
    expect((await payrail.request('GET', '/api/transfers/nope')).status).toBe(400);
    expect((await payrail.request('GET', '/api/transfers?status=lost')).status).toBe(400);
    expect((await payrail.request('GET', '/api/transfers', { token: null })).status).toBe(401);
    const audit = await db.db
      .selectFrom('audit_log')
      .select('action')
      .where('subject', '=', transfer!.transferId)
      .execute();
    expect(audit).toEqual([]);
  });
});
