/**
 * Host wallet transfers on a chain that behaves like mainnet (anvil, and an RPC proxy in front of it), driven step by
 * step without a worker: a lost broadcast answer behind a lagging node, a fee spike under a waiting transfer, a nonce
 * taken by someone else, a cancel, contract wallets, tokens that revert or return false, confirmations and
 * reorganisations. Each case checks what reached the receiver on chain, not only payrail's rows.
 */
import { encodeAbiParameters, keccak256 } from 'viem';
import { createChainWallet } from '../../src/integrations/wallet/index.ts';
import { recordDeposit, recordWithdrawal } from '../../src/treasury/index.ts';
import { describe, expect, it } from 'vitest';
import { jobWithKeyExists } from '../../src/jobs/index.ts';
import { applyTransferAction, confirmTransfer, sendTransfer } from '../../src/pipeline/transfer/index.ts';
import { NONCE_TAKEN_RECHECK_MS } from '../../src/pipeline/transfer/confirm.ts';
import { rpc, startChainSender } from '../../src/simulators/index.ts';
import { setLocalUsdtReturnFalse } from '../../src/simulators/usdt/index.ts';
import { freshAddress, GWEI, useTransferWorld, type Rig } from '../support/transfers.ts';
import { eventually } from '../support/outside.ts';
import { chainFaultsOn } from '../support/chain-faults.ts';
import { walletApp } from '../support/wallet-app.ts';

const t = useTransferWorld();
const { rig, receiptGas, chainNonce } = t;
const onChain = chainFaultsOn(() => t.outside.chain.rpcUrl);
/** The alert `rule` raised about `subject`, resolved or not; undefined when there is none. */
const alertOf = (rule: string, subject: string) =>
  t.db.db
    .selectFrom('alerts')
    .select(['rule', 'subject'])
    .where('rule', '=', rule)
    .where('subject', '=', subject)
    .executeTakeFirst();

/** A transfer signed and broadcast while the node mines nothing: it waits in the pool for what the test does next. */
async function waitingTransfer(r: Rig, ...intent: Parameters<Rig['intent']>): Promise<string> {
  await onChain.pausePool();
  const id = await r.intent(...intent);
  await sendTransfer(r.deps, r.hooks, id);
  return id;
}

describe('a broadcast whose answer is lost', () => {
  it('is never signed again at another nonce, whatever a lagging node and a refusing node say: the receiver is paid once', async () => {
    const r = await rig({ viaProxy: true });
    const to = freshAddress();
    const id = await r.intent('lost-answer', 1_000_000n, { to });
    // The node takes the transaction (anvil mines it at once) but the answer never comes back.
    t.proxy.setFaults({ dropSendAnswers: 1 });
    await sendTransfer(r.deps, r.hooks, id);
    await eventually(
      'mined although its answer was lost',
      async () => (await t.outside.balanceOf(to)) === 1_000_000n,
      5_000,
    );
    const first = await r.row(id);
    expect(first).toMatchObject({ status: 'broadcast', nonce: '0' });
    // A lagging node knows neither the transaction nor its receipt, and a re-broadcast is refused for lack of funds:
    // the old code took that as "never sent", released the nonce and signed again at nonce 1.
    t.proxy.setFaults({ lagging: true, refuseSends: 'Insufficient funds for gas * price + value' });
    await sendTransfer(r.deps, r.hooks, id);
    await confirmTransfer(r.deps, r.hooks, id).catch(() => undefined);
    expect(await r.row(id)).toMatchObject({ status: 'broadcast', nonce: '0', tx_hash: first.tx_hash });
    expect(await r.versions(id)).toHaveLength(1);

    t.proxy.setFaults({});
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'confirmed', nonce: '0' });
    expect(await t.outside.balanceOf(to)).toBe(1_000_000n);
    expect(await chainNonce(r.wallet.address)).toBe(1);
    expect(r.confirmed).toHaveLength(1);
    expect(await r.gasBooked(id)).toBe(await receiptGas(first.tx_hash as string));
  });

  it('a broadcast that never reached the node after the release: the confirm step sends the stored bytes, once', async () => {
    const r = await rig();
    const to = freshAddress();
    const id = await r.intent('unsent', 777n, { to });
    // The connection drops before the call leaves (or the process dies there): released, nothing on the node.
    r.deps.wallet = {
      ...r.wallet,
      broadcast: async () => {
        throw new Error('socket hang up');
      },
    };
    await sendTransfer(r.deps, r.hooks, id);
    r.deps.wallet = r.wallet;
    expect(await r.row(id)).toMatchObject({ status: 'broadcast' });
    expect(await t.outside.balanceOf(to)).toBe(0n);
    await confirmTransfer(r.deps, r.hooks, id); // unknown to the node: the same bytes go again
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'confirmed', nonce: '0' });
    expect(await t.outside.balanceOf(to)).toBe(777n);
  });
});

describe('fees that move under a waiting transfer', () => {
  it('a 10x base fee spike: one replacement at the same nonce is mined, the receiver is paid once, the real gas is booked', async () => {
    const r = await rig({ policy: { bumpAfterMs: 0 } });
    const to = freshAddress();
    const id = await waitingTransfer(r, 'spike', 5_000n, { to });
    const [v1] = await r.versions(id);
    // The spike outbids the waiting version (anvil drops it from its pool; geth would keep it waiting).
    await onChain.spikeBaseFee((await onChain.baseFee()) * 10n);
    await confirmTransfer(r.deps, r.hooks, id);
    const versions = await r.versions(id);
    expect(versions.map((v) => v.kind)).toEqual(['transfer', 'transfer']);
    const fees = await t.db.db
      .selectFrom('chain_transfer_versions')
      .select(['max_fee_per_gas', 'max_priority_fee_per_gas'])
      .where('transfer_id', '=', id)
      .orderBy('version')
      .execute();
    const [f1, f2] = fees as [
      { max_fee_per_gas: string; max_priority_fee_per_gas: string },
      { max_fee_per_gas: string; max_priority_fee_per_gas: string },
    ];
    // Both fees at least 10 % higher (the nodes' rule), and above the new base fee.
    expect(BigInt(f2.max_fee_per_gas) * 10n).toBeGreaterThanOrEqual(BigInt(f1.max_fee_per_gas) * 11n);
    expect(BigInt(f2.max_priority_fee_per_gas) * 10n).toBeGreaterThanOrEqual(BigInt(f1.max_priority_fee_per_gas) * 11n);
    expect(BigInt(f2.max_fee_per_gas)).toBeGreaterThan(await onChain.baseFee());

    await onChain.mineBlocks(1);
    await confirmTransfer(r.deps, r.hooks, id);
    const done = await r.row(id);
    expect(done).toMatchObject({ status: 'confirmed', nonce: '0', tx_hash: versions[1]?.tx_hash });
    expect(await t.outside.balanceOf(to)).toBe(5_000n);
    expect(await r.gasBooked(id)).toBe(await receiptGas(versions[1]?.tx_hash as string));
    expect(v1?.tx_hash).not.toBe(versions[1]?.tx_hash);
    expect(r.confirmed).toHaveLength(1);
  });

  it('at TRANSFER_MAX_FEE_GWEI it is not bumped: one version, an alert, and it waits', async () => {
    const r = await rig({ policy: { bumpAfterMs: 0 } });
    // A ceiling just above what the first version offers: the minimum 10 % bump would pass it.
    r.deps.settings.transfer.maxFeePerGasWei = (await r.wallet.fees()).maxFeePerGas + 1n;
    const id = await waitingTransfer(r, 'ceiling', 9n);
    await confirmTransfer(r.deps, r.hooks, id);
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.versions(id)).toHaveLength(1);
    const alert = await alertOf('transfer_fee_ceiling', id);
    expect(alert).toBeDefined();
    await onChain.resumeMining();
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
  });
});

describe('transfers signed behind a nonce the chain does not mine', () => {
  it("only the one at the wallet's next nonce waits for its receipt; those behind it look once and come back later", async () => {
    // A receipt wait long enough that the runs for the two behind end well within it, however busy the machine.
    const r = await rig({ policy: { receiptWaitMs: 5_000 } });
    await onChain.pausePool();
    const ids = [await r.intent('behind0', 1n), await r.intent('behind1', 2n), await r.intent('behind2', 3n)];
    // One send signs the three at nonces 0, 1, 2 and broadcasts them; nothing is mined.
    await sendTransfer(r.deps, r.hooks, ids[0] as string);
    const hashes = await Promise.all(ids.map(async (id) => (await r.versions(id))[0]?.tx_hash as string));
    const looks = new Map<string, number>();
    r.deps.wallet = {
      ...r.wallet,
      receipt: async (hash) => {
        looks.set(hash, (looks.get(hash) ?? 0) + 1);
        return r.wallet.receipt(hash);
      },
    };
    // Those behind first, while their versions are new (a run waits only until receiptWaitMs after the signing).
    for (const id of [...ids].reverse()) await confirmTransfer(r.deps, r.hooks, id);
    r.deps.wallet = r.wallet;

    // Behind nonce 0, 1 and 2 cannot be mined first: a run waiting for them would only hold a worker slot. Nonce 0 is
    // the chain's next: its run waits for the receipt (receiptWaitMs), looking again and again.
    expect([looks.get(hashes[1] as string), looks.get(hashes[2] as string)]).toEqual([1, 1]);
    expect(looks.get(hashes[0] as string)).toBeGreaterThan(1);
    for (const id of ids) {
      expect(await r.row(id)).toMatchObject({ status: 'broadcast' });
      expect(await jobWithKeyExists(t.db.db, `transfer_confirm:${id}`)).toBe(true);
    }

    await onChain.resumeMining();
    for (const id of ids) await confirmTransfer(r.deps, r.hooks, id);
    for (const id of ids) expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
    expect(r.confirmed).toHaveLength(3);
  });
});

describe('a nonce taken by a transaction payrail did not sign', () => {
  it("is seen twice, goes to review with an alert, is never re-signed; resolved as never sent it fails and the funds are the owner's again", async () => {
    const r = await rig();
    const to = freshAddress();
    const id = await waitingTransfer(r, 'taken', 4_242n, { to });
    // An operator's wallet app uses the same key and nonce, paying more: the node keeps theirs, and mines it.
    const theirs = await onChain.takeNonce(r.hostKey, { nonce: 0, maxFeePerGasWei: 200n * GWEI });
    await onChain.mineBlocks(1);
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'broadcast' });
    expect((await r.row(id)).nonce_taken_seen_at).not.toBeNull();
    await new Promise((resolve) => setTimeout(resolve, NONCE_TAKEN_RECHECK_MS));
    await confirmTransfer(r.deps, r.hooks, id);
    const review = await r.row(id);
    expect(review).toMatchObject({ status: 'needs_review', nonce: '0' });
    expect(review.reason).toMatch(/nonce 0 was used by a transaction payrail did not sign/);
    expect(await alertOf('transfer_nonce_taken', id)).toBeDefined();
    expect(await r.versions(id)).toHaveLength(1);

    // Their transaction did not pay our receiver: resolving with it is refused by what the chain shows.
    await applyTransferAction(t.db.db, id, 'resolve', 'alice', { outcome: 'mined', txHash: theirs });
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'needs_review', requested_action: null });
    expect((await r.row(id)).last_error).toMatch(/resolve_mined requested by alice refused: .* sent 0 wei/);

    await applyTransferAction(t.db.db, id, 'resolve', 'alice', { outcome: 'never_sent' });
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'failed', last_error: 'never_sent' });
    expect(r.failed.map((f) => f.failure.code)).toEqual(['never_sent']);
    expect(await t.outside.balanceOf(to)).toBe(0n);
    const audit = await t.db.db.selectFrom('audit_log').select(['actor', 'action']).where('subject', '=', id).execute();
    expect(audit.map((a) => a.action)).toEqual(['transfer.resolve', 'transfer.resolve']);
  });

  it('a payment re-sent from a wallet app is booked once: as the transfer (resolve mined) or as a withdrawal, never both', async () => {
    const r = await rig();
    const url = t.outside.chain.rpcUrl;
    // The platform's capital, deposited for real, so a withdrawal could be booked against it.
    const funding = await (await startChainSender(url)).send(r.wallet.address, 10n ** 18n);
    const chain = {
      wallet: createChainWallet({
        rpcUrl: url,
        address: r.wallet.address,
        chainId: t.outside.chain.chainId,
        timeoutMs: 5_000,
      }),
      usdtContract: t.outside.usdt,
      confirmations: 1 as const,
    };
    await recordDeposit(t.db.db, chain, { txHash: funding, asset: 'eth', actor: 'ops' });
    const to = freshAddress();
    const id = await waitingTransfer(r, 'resent', 7_777n, { to });
    const app = walletApp(t.outside.chain, r.hostKey);
    const theirs = await app.sendTransaction({
      to,
      value: 7_777n,
      nonce: 0,
      gas: 21_000n,
      maxFeePerGas: 200n * GWEI,
      maxPriorityFeePerGas: 200n * GWEI,
    });
    await onChain.mineBlocks(1);
    await onChain.resumeMining();

    // Named in a resolve request: it is that transfer's, not a withdrawal.
    await applyTransferAction(t.db.db, id, 'resolve', 'alice', { outcome: 'mined', txHash: theirs });
    const withdraw = () => recordWithdrawal(t.db.db, chain, { txHash: theirs, from: 'capital', actor: 'ops' });
    await expect(withdraw()).rejects.toThrow(/named in a transfer's resolve request/);
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'confirmed', tx_hash: theirs });
    await expect(withdraw()).rejects.toThrow(/a transfer payrail booked itself/);

    // The other order: booked as a withdrawal first, a resolve naming it is refused.
    const other = await r.intent('resent-2', 8_888n, { to });
    await onChain.pausePool();
    await sendTransfer(r.deps, r.hooks, other);
    // Paying more than payrail ever offers (its fees follow recent blocks' tips, up to its ceiling).
    const second = await app.sendTransaction({
      to,
      value: 8_888n,
      nonce: 1,
      gas: 21_000n,
      maxFeePerGas: 1_000n * GWEI,
      maxPriorityFeePerGas: 1_000n * GWEI,
    });
    await onChain.mineBlocks(1);
    await onChain.resumeMining();
    expect((await recordWithdrawal(t.db.db, chain, { txHash: second, from: 'capital', actor: 'ops' })).booked).toBe(
      true,
    );
    await applyTransferAction(t.db.db, other, 'resolve', 'alice', { outcome: 'mined', txHash: second });
    await confirmTransfer(r.deps, r.hooks, other);
    expect((await r.row(other)).last_error).toMatch(/booked as an operator's withdrawal already/);
    expect(await r.row(other)).toMatchObject({ status: 'broadcast' });
  });

  it('resolve as never sent is refused while the nonce is unused: a version could still be mined', async () => {
    const r = await rig();
    const id = await waitingTransfer(r, 'unused', 5n);
    await applyTransferAction(t.db.db, id, 'resolve', 'bob', { outcome: 'never_sent' });
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'broadcast' });
    expect((await r.row(id)).last_error).toMatch(/not used yet/);
    await onChain.resumeMining();
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
  });
});

describe('a person cancels a waiting transfer', () => {
  it('a zero-value self-transfer at the nonce is mined instead: the transfer fails as cancelled, its gas is booked, nothing reached the receiver', async () => {
    const r = await rig();
    const to = freshAddress();
    const id = await waitingTransfer(r, 'cancel', 31_337n, { to });
    const accepted = await applyTransferAction(t.db.db, id, 'cancel', 'carol');
    expect(accepted).toMatchObject({ from: 'broadcast', to: 'broadcast', requested: 'cancel' });
    // A second request while the first is carried out is refused.
    await expect(applyTransferAction(t.db.db, id, 'bump', 'carol')).rejects.toThrow(/still being carried out/);
    await confirmTransfer(r.deps, r.hooks, id);
    expect((await r.versions(id)).map((v) => v.kind)).toEqual(['transfer', 'cancel']);
    await onChain.mineBlocks(1);
    await confirmTransfer(r.deps, r.hooks, id);
    const row = await r.row(id);
    expect(row).toMatchObject({ status: 'failed', last_error: 'cancelled' });
    expect(r.failed.map((f) => f.failure.code)).toEqual(['cancelled']);
    expect(await t.outside.balanceOf(to)).toBe(0n);
    expect(await r.gasBooked(id)).toBe(await receiptGas(row.tx_hash as string));
    // Nothing more can be asked of an ended transfer.
    await expect(applyTransferAction(t.db.db, id, 'cancel', 'carol')).rejects.toThrow(/cannot be cancelled/);
  });
});

describe('receivers and tokens as they are', () => {
  it('an owner whose address is a contract wallet is paid in ETH: the gas is estimated for the real call', async () => {
    const r = await rig();
    const to = freshAddress();
    await onChain.makeContractWallet(to);
    const id = await r.intent('contract', 123_456n, { to });
    await sendTransfer(r.deps, r.hooks, id);
    await confirmTransfer(r.deps, r.hooks, id);
    const row = await r.row(id);
    expect(row).toMatchObject({ status: 'confirmed' });
    expect(BigInt(row.gas_limit as string)).toBeGreaterThan(21_000n);
    expect(await t.outside.balanceOf(to)).toBe(123_456n);
  });

  it('a receiver that refuses ETH fails the transfer before anything is signed: no nonce used, an alert', async () => {
    const r = await rig();
    const to = freshAddress();
    await onChain.makeRejectingWallet(to);
    const id = await r.intent('rejecting', 10n, { to });
    await sendTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({
      status: 'failed',
      last_error: 'estimate_failed',
      nonce: null,
      tx_hash: null,
    });
    expect(r.failed.map((f) => f.failure.code)).toEqual(['estimate_failed']);
    expect(await r.versions(id)).toEqual([]);
    expect(await alertOf('transfer_estimate_failed', id)).toBeDefined();
    // The next transfer takes nonce 0.
    const next = await r.intent('after-rejecting', 10n);
    await sendTransfer(r.deps, r.hooks, next);
    expect(await r.row(next)).toMatchObject({ nonce: '0' });
  });

  it('a token that returns false moves nothing: mined, no Transfer log, the transfer fails with its gas booked', async () => {
    const r = await rig();
    const to = freshAddress();
    await setLocalUsdtReturnFalse(t.outside.chain.rpcUrl, t.outside.usdt, r.hostKey, true);
    try {
      const id = await r.intent('return-false', 2_000_000n, { to, asset: 'usdt' });
      await sendTransfer(r.deps, r.hooks, id);
      await confirmTransfer(r.deps, r.hooks, id);
      const row = await r.row(id);
      expect(row).toMatchObject({ status: 'failed', last_error: 'token_not_moved' });
      expect(await t.outside.usdtBalanceOf(to)).toBe(0n);
      expect(await r.gasBooked(id)).toBe(await receiptGas(row.tx_hash as string));
    } finally {
      await setLocalUsdtReturnFalse(t.outside.chain.rpcUrl, t.outside.usdt, r.hostKey, false);
    }
  });

  it('a token transfer that reverts once mined (the receiver blacklisted after the estimate) fails with its gas booked', async () => {
    const r = await rig();
    const to = freshAddress();
    const id = await waitingTransfer(r, 'blacklisted', 3_000_000n, { to, asset: 'usdt' });
    // Tether's blacklist (LocalUSDT's isBlackListed, storage slot 3), set between the estimate and the block.
    const slot = keccak256(encodeAbiParameters([{ type: 'address' }, { type: 'uint256' }], [to, 3n]));
    await rpc(t.outside.chain.rpcUrl, 'anvil_setStorageAt', [t.outside.usdt, slot, `0x${'1'.padStart(64, '0')}`]);
    await onChain.mineBlocks(1);
    await confirmTransfer(r.deps, r.hooks, id);
    const row = await r.row(id);
    expect(row).toMatchObject({ status: 'failed', last_error: 'reverted' });
    expect(await t.outside.usdtBalanceOf(to)).toBe(0n);
    expect(await r.gasBooked(id)).toBe(await receiptGas(row.tx_hash as string));
    expect(r.failed.map((f) => f.failure.code)).toEqual(['reverted']);
  });
});

describe('blocks that are not final at once', () => {
  it('is booked only at CHAIN_CONFIRMATIONS deep; a reorganisation that removes its block sends the same bytes again and books it once', async () => {
    const r = await rig({ policy: { confirmations: 3 } });
    const to = freshAddress();
    const id = await r.intent('reorg', 8_888n, { to });
    await sendTransfer(r.deps, r.hooks, id);
    await confirmTransfer(r.deps, r.hooks, id);
    const seen = await r.row(id);
    expect(seen).toMatchObject({ status: 'broadcast' });
    expect(seen.block_number).not.toBeNull();
    expect(r.confirmed).toEqual([]);

    // Its block leaves the chain; on anvil its transaction vanishes with it.
    await onChain.reorg(1);
    expect(await t.outside.balanceOf(to)).toBe(0n);
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'broadcast', block_number: null });
    // Sent again: anvil mines it at once, though under load a moment after the send's answer.
    await eventually('sent again and mined', async () => (await t.outside.balanceOf(to)) === 8_888n, 5_000);
    expect(await alertOf('transfer_reorged', id)).toBeDefined();

    await confirmTransfer(r.deps, r.hooks, id);
    expect(r.confirmed).toEqual([]);
    await onChain.mineBlocks(2);
    await confirmTransfer(r.deps, r.hooks, id);
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'confirmed', tx_hash: seen.tx_hash });
    expect(r.confirmed).toHaveLength(1);
    expect(await t.outside.balanceOf(to)).toBe(8_888n);
    const journals = await t.db.db.selectFrom('ledger_journals').select('kind').where('ref', '=', id).execute();
    expect(journals).toEqual([{ kind: 'network_fee' }]);
  });
});
