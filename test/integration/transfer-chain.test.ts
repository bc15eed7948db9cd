/**
 * Host wallet transfers on a chain that behaves like mainnet (anvil, and an RPC proxy in front of it), driven step by
 * step without a worker: a lost broadcast answer behind a lagging node, a fee spike under a waiting transfer, a nonce
 * taken by someone else, a cancel, contract wallets, tokens that revert or return false, confirmations and
 * reorganisations. Each case checks what reached the receiver on chain, not only payrail's rows.
 */
import { encodeAbiParameters, keccak256, type Address, type Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createChainWallet, type ChainWallet } from '../../src/integrations/wallet/index.ts';
import { createLogger } from '../../src/log.ts';
import type { StageDeps, TransferPolicy } from '../../src/pipeline/index.ts';
import { applyTransferAction, confirmTransfer, createTransfer, sendTransfer, type TransferFailure, type TransferHooksByPurpose } from '../../src/pipeline/transfer/index.ts';
import { NONCE_TAKEN_RECHECK_MS } from '../../src/pipeline/transfer/confirm.ts';
import { rpc, startRpcProxy, type RpcProxy } from '../../src/simulators/index.ts';
import { baseFee, makeContractWallet, makeRejectingWallet, mineBlocks, pausePool, reorg, resumeMining, spikeBaseFee, takeNonce } from '../../src/simulators/chain-faults.ts';
import { mintLocalUsdt, setLocalUsdtReturnFalse } from '../../src/simulators/usdt/index.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { startOutside, type Outside } from '../support/outside.ts';

let outside: Outside;
let proxy: RpcProxy;
let db: TestDatabase;

beforeAll(async () => {
  outside = await startOutside();
  proxy = await startRpcProxy({ upstream: outside.chain.rpcUrl });
  db = await createTestDatabase();
});
afterEach(async () => {
  proxy.setFaults({});
  await resumeMining(outside.chain.rpcUrl);
});
afterAll(async () => {
  await proxy?.stop();
  await db?.close();
  await outside?.stop();
});

const GWEI = 10n ** 9n;
// No wait for a receipt inside a run: each case mines (or not) before it looks.
const POLICY: TransferPolicy = { bumpAfterMs: 60_000, maxFeePerGasWei: 300n * GWEI, confirmations: 1, receiptWaitMs: 0 };

interface Rig {
  deps: StageDeps;
  wallet: ChainWallet;
  hostKey: Hex;
  hooks: TransferHooksByPurpose;
  confirmed: string[];
  failed: Array<{ ref: string; failure: TransferFailure }>;
  intent(ref: string, amount: bigint, options?: { to?: Address; asset?: 'eth' | 'usdt' }): Promise<string>;
  row(id: string): Promise<Record<string, unknown>>;
  versions(id: string): Promise<Array<{ version: number; kind: string; tx_hash: string }>>;
  gasBooked(id: string): Promise<bigint | null>;
}

/** A fresh funded host wallet (its own nonces), reached directly or through the proxy. */
async function rig(options: { viaProxy?: boolean; policy?: Partial<TransferPolicy> } = {}): Promise<Rig> {
  const hostKey = generatePrivateKey();
  const address = privateKeyToAccount(hostKey).address;
  await rpc(outside.chain.rpcUrl, 'anvil_setBalance', [address, `0x${(10n ** 20n).toString(16)}`]);
  // Minted by another key, so the fresh wallet's first nonce is 0.
  await mintLocalUsdt(outside.chain.rpcUrl, outside.usdt, outside.hostKey, address, 10n ** 12n);
  const wallet = createChainWallet({ rpcUrl: options.viaProxy ? proxy.url : outside.chain.rpcUrl, privateKey: hostKey, chainId: outside.chain.chainId, timeoutMs: 3_000 });
  const deps: StageDeps = {
    db: db.db,
    exchange: undefined as never,
    wallet,
    hostAddress: wallet.address,
    usdtContract: outside.usdt,
    settings: {
      minUsdCents: 0n, maxWaitMs: 0, maxPayments: 1, pollIntervalMs: 1, pollDeadlineMs: 1, transferConfirmDeadlineMs: 600_000,
      transfer: { ...POLICY, ...options.policy }, payoutMaxAttempts: 1, payoutApprovalAboveUsdCents: null,
    },
    logger: createLogger({ level: 'silent' }),
  };
  const confirmed: string[] = [];
  const failed: Array<{ ref: string; failure: TransferFailure }> = [];
  const record = { onConfirmed: async (_trx: unknown, t: { ref: string }) => void confirmed.push(t.ref), onFailed: async (_trx: unknown, t: { ref: string }, failure: TransferFailure) => void failed.push({ ref: t.ref, failure }) };
  const hooks: TransferHooksByPurpose = { conversion: record, payout: record };
  return {
    deps, wallet, hostKey, hooks, confirmed, failed,
    intent: (ref, amount, o = {}) =>
      db.db.transaction().execute((trx) => createTransfer(trx, { purpose: 'payout', ref: `${address}:${ref}`, asset: o.asset ?? 'eth', from: address, to: o.to ?? freshAddress(), amount })),
    row: async (id) => db.db.selectFrom('chain_transfers').selectAll().where('transfer_id', '=', id).executeTakeFirstOrThrow() as unknown as Promise<Record<string, unknown>>,
    versions: (id) => db.db.selectFrom('chain_transfer_versions').select(['version', 'kind', 'tx_hash']).where('transfer_id', '=', id).orderBy('version').execute(),
    async gasBooked(id) {
      const { rows } = await db.pool.query<{ amount: string }>(
        "select e.amount::text as amount from ledger_entries e join ledger_journals j on j.id = e.journal_id join ledger_accounts a on a.id = e.account_id where j.kind = 'network_fee' and j.ref = $1 and a.code = 'world:ethereum'",
        [id],
      );
      return rows[0] ? BigInt(rows[0].amount) : null;
    },
  };
}

function freshAddress(): Address {
  return privateKeyToAccount(generatePrivateKey()).address;
}

async function receiptGas(hash: string): Promise<bigint> {
  const receipt = (await rpc(outside.chain.rpcUrl, 'eth_getTransactionReceipt', [hash])) as { gasUsed: Hex; effectiveGasPrice: Hex } | null;
  if (!receipt) throw new Error(`no receipt for ${hash}`);
  return BigInt(receipt.gasUsed) * BigInt(receipt.effectiveGasPrice);
}

async function chainNonce(address: string): Promise<number> {
  return Number(BigInt((await rpc(outside.chain.rpcUrl, 'eth_getTransactionCount', [address, 'latest'])) as string));
}

describe('a broadcast whose answer is lost', () => {
  it('is never signed again at another nonce, whatever a lagging node and a refusing node say: the receiver is paid once', async () => {
    const r = await rig({ viaProxy: true });
    const to = freshAddress();
    const id = await r.intent('lost-answer', 1_000_000n, { to });
    // The node takes the transaction (anvil mines it at once) but the answer never comes back.
    proxy.setFaults({ dropSendAnswers: 1 });
    await sendTransfer(r.deps, r.hooks, id);
    expect(await outside.balanceOf(to)).toBe(1_000_000n);
    const first = await r.row(id);
    expect(first).toMatchObject({ status: 'broadcast', nonce: '0' });
    // A lagging node knows neither the transaction nor its receipt, and a re-broadcast is refused for lack of funds:
    // the old code took that as "never sent", released the nonce and signed again at nonce 1.
    proxy.setFaults({ lagging: true, refuseSends: 'Insufficient funds for gas * price + value' });
    await sendTransfer(r.deps, r.hooks, id);
    await confirmTransfer(r.deps, r.hooks, id).catch(() => undefined);
    expect(await r.row(id)).toMatchObject({ status: 'broadcast', nonce: '0', tx_hash: first.tx_hash });
    expect(await r.versions(id)).toHaveLength(1);

    proxy.setFaults({});
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'confirmed', nonce: '0' });
    expect(await outside.balanceOf(to)).toBe(1_000_000n);
    expect(await chainNonce(r.wallet.address)).toBe(1);
    expect(r.confirmed).toHaveLength(1);
    expect(await r.gasBooked(id)).toBe(await receiptGas(first.tx_hash as string));
  });

  it('a broadcast that never reached the node after the release: the confirm step sends the stored bytes, once', async () => {
    const r = await rig();
    const to = freshAddress();
    const id = await r.intent('unsent', 777n, { to });
    // The connection drops before the call leaves (or the process dies there): released, nothing on the node.
    r.deps.wallet = { ...r.wallet, broadcast: async () => { throw new Error('socket hang up'); } };
    await sendTransfer(r.deps, r.hooks, id);
    r.deps.wallet = r.wallet;
    expect(await r.row(id)).toMatchObject({ status: 'broadcast' });
    expect(await outside.balanceOf(to)).toBe(0n);
    await confirmTransfer(r.deps, r.hooks, id); // unknown to the node: the same bytes go again
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'confirmed', nonce: '0' });
    expect(await outside.balanceOf(to)).toBe(777n);
  });
});

describe('fees that move under a waiting transfer', () => {
  it('a 10x base fee spike: one replacement at the same nonce is mined, the receiver is paid once, the real gas is booked', async () => {
    const r = await rig({ policy: { bumpAfterMs: 0 } });
    const to = freshAddress();
    await pausePool(outside.chain.rpcUrl);
    const id = await r.intent('spike', 5_000n, { to });
    await sendTransfer(r.deps, r.hooks, id);
    const [v1] = await r.versions(id);
    // The spike outbids the waiting version (anvil drops it from its pool; geth would keep it waiting).
    await spikeBaseFee(outside.chain.rpcUrl, (await baseFee(outside.chain.rpcUrl)) * 10n);
    await confirmTransfer(r.deps, r.hooks, id);
    const versions = await r.versions(id);
    expect(versions.map((v) => v.kind)).toEqual(['transfer', 'transfer']);
    const fees = await db.db.selectFrom('chain_transfer_versions').select(['max_fee_per_gas', 'max_priority_fee_per_gas']).where('transfer_id', '=', id).orderBy('version').execute();
    const [f1, f2] = fees as [{ max_fee_per_gas: string; max_priority_fee_per_gas: string }, { max_fee_per_gas: string; max_priority_fee_per_gas: string }];
    // Both fees at least 10 % higher (the nodes' rule), and above the new base fee.
    expect(BigInt(f2.max_fee_per_gas) * 10n).toBeGreaterThanOrEqual(BigInt(f1.max_fee_per_gas) * 11n);
    expect(BigInt(f2.max_priority_fee_per_gas) * 10n).toBeGreaterThanOrEqual(BigInt(f1.max_priority_fee_per_gas) * 11n);
    expect(BigInt(f2.max_fee_per_gas)).toBeGreaterThan(await baseFee(outside.chain.rpcUrl));

    await mineBlocks(outside.chain.rpcUrl, 1);
    await confirmTransfer(r.deps, r.hooks, id);
    const done = await r.row(id);
    expect(done).toMatchObject({ status: 'confirmed', nonce: '0', tx_hash: versions[1]?.tx_hash });
    expect(await outside.balanceOf(to)).toBe(5_000n);
    expect(await r.gasBooked(id)).toBe(await receiptGas(versions[1]?.tx_hash as string));
    expect(v1?.tx_hash).not.toBe(versions[1]?.tx_hash);
    expect(r.confirmed).toHaveLength(1);
  });

  it('at TRANSFER_MAX_FEE_GWEI it is not bumped: one version, an alert, and it waits', async () => {
    const r = await rig({ policy: { bumpAfterMs: 0 } });
    // A ceiling just above what the first version offers: the minimum 10 % bump would pass it.
    r.deps.settings.transfer.maxFeePerGasWei = (await r.wallet.fees()).maxFeePerGas + 1n;
    await pausePool(outside.chain.rpcUrl);
    const id = await r.intent('ceiling', 9n);
    await sendTransfer(r.deps, r.hooks, id);
    await confirmTransfer(r.deps, r.hooks, id);
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.versions(id)).toHaveLength(1);
    const alert = await db.db.selectFrom('alerts').select(['rule', 'subject']).where('rule', '=', 'transfer_fee_ceiling').where('subject', '=', id).executeTakeFirst();
    expect(alert).toBeDefined();
    await resumeMining(outside.chain.rpcUrl);
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
  });
});

describe('a nonce taken by a transaction payrail did not sign', () => {
  it('is seen twice, goes to review with an alert, is never re-signed; resolved as never sent it fails and the funds are the owner\'s again', async () => {
    const r = await rig();
    const to = freshAddress();
    await pausePool(outside.chain.rpcUrl);
    const id = await r.intent('taken', 4_242n, { to });
    await sendTransfer(r.deps, r.hooks, id);
    // An operator's wallet app uses the same key and nonce, paying more: the node keeps theirs, and mines it.
    const theirs = await takeNonce(outside.chain.rpcUrl, r.hostKey, { nonce: 0, maxFeePerGasWei: 200n * GWEI });
    await mineBlocks(outside.chain.rpcUrl, 1);
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'broadcast' });
    expect((await r.row(id)).nonce_taken_seen_at).not.toBeNull();
    await new Promise((resolve) => setTimeout(resolve, NONCE_TAKEN_RECHECK_MS));
    await confirmTransfer(r.deps, r.hooks, id);
    const review = await r.row(id);
    expect(review).toMatchObject({ status: 'needs_review', nonce: '0' });
    expect(review.reason).toMatch(/nonce 0 was used by a transaction payrail did not sign/);
    expect(await db.db.selectFrom('alerts').select('rule').where('rule', '=', 'transfer_nonce_taken').where('subject', '=', id).executeTakeFirst()).toBeDefined();
    expect(await r.versions(id)).toHaveLength(1);

    // Their transaction did not pay our receiver: resolving with it is refused by what the chain shows.
    await applyTransferAction(db.db, id, 'resolve', 'alice', { outcome: 'mined', txHash: theirs });
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'needs_review', requested_action: null });
    expect((await r.row(id)).last_error).toMatch(/resolve_mined requested by alice refused: .* sent 0 wei/);

    await applyTransferAction(db.db, id, 'resolve', 'alice', { outcome: 'never_sent' });
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'failed', last_error: 'never_sent' });
    expect(r.failed.map((f) => f.failure.code)).toEqual(['never_sent']);
    expect(await outside.balanceOf(to)).toBe(0n);
    const audit = await db.db.selectFrom('audit_log').select(['actor', 'action']).where('subject', '=', id).execute();
    expect(audit.map((a) => a.action)).toEqual(['transfer.resolve', 'transfer.resolve']);
  });

  it('resolve as never sent is refused while the nonce is unused: a version could still be mined', async () => {
    const r = await rig();
    await pausePool(outside.chain.rpcUrl);
    const id = await r.intent('unused', 5n);
    await sendTransfer(r.deps, r.hooks, id);
    await applyTransferAction(db.db, id, 'resolve', 'bob', { outcome: 'never_sent' });
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'broadcast' });
    expect((await r.row(id)).last_error).toMatch(/not used yet/);
    await resumeMining(outside.chain.rpcUrl);
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
  });
});

describe('a person cancels a waiting transfer', () => {
  it('a zero-value self-transfer at the nonce is mined instead: the transfer fails as cancelled, its gas is booked, nothing reached the receiver', async () => {
    const r = await rig();
    const to = freshAddress();
    await pausePool(outside.chain.rpcUrl);
    const id = await r.intent('cancel', 31_337n, { to });
    await sendTransfer(r.deps, r.hooks, id);
    const accepted = await applyTransferAction(db.db, id, 'cancel', 'carol');
    expect(accepted).toMatchObject({ from: 'broadcast', to: 'broadcast', requested: 'cancel' });
    // A second request while the first is carried out is refused.
    await expect(applyTransferAction(db.db, id, 'bump', 'carol')).rejects.toThrow(/still being carried out/);
    await confirmTransfer(r.deps, r.hooks, id);
    expect((await r.versions(id)).map((v) => v.kind)).toEqual(['transfer', 'cancel']);
    await mineBlocks(outside.chain.rpcUrl, 1);
    await confirmTransfer(r.deps, r.hooks, id);
    const row = await r.row(id);
    expect(row).toMatchObject({ status: 'failed', last_error: 'cancelled' });
    expect(r.failed.map((f) => f.failure.code)).toEqual(['cancelled']);
    expect(await outside.balanceOf(to)).toBe(0n);
    expect(await r.gasBooked(id)).toBe(await receiptGas(row.tx_hash as string));
    // Nothing more can be asked of an ended transfer.
    await expect(applyTransferAction(db.db, id, 'cancel', 'carol')).rejects.toThrow(/cannot be cancelled/);
  });
});

describe('receivers and tokens as they are', () => {
  it('an owner whose address is a contract wallet is paid in ETH: the gas is estimated for the real call', async () => {
    const r = await rig();
    const to = freshAddress();
    await makeContractWallet(outside.chain.rpcUrl, to);
    const id = await r.intent('contract', 123_456n, { to });
    await sendTransfer(r.deps, r.hooks, id);
    await confirmTransfer(r.deps, r.hooks, id);
    const row = await r.row(id);
    expect(row).toMatchObject({ status: 'confirmed' });
    expect(BigInt(row.gas_limit as string)).toBeGreaterThan(21_000n);
    expect(await outside.balanceOf(to)).toBe(123_456n);
  });

  it('a receiver that refuses ETH fails the transfer before anything is signed: no nonce used, an alert', async () => {
    const r = await rig();
    const to = freshAddress();
    await makeRejectingWallet(outside.chain.rpcUrl, to);
    const id = await r.intent('rejecting', 10n, { to });
    await sendTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'failed', last_error: 'estimate_failed', nonce: null, tx_hash: null });
    expect(r.failed.map((f) => f.failure.code)).toEqual(['estimate_failed']);
    expect(await r.versions(id)).toEqual([]);
    expect(await db.db.selectFrom('alerts').select('rule').where('rule', '=', 'transfer_estimate_failed').where('subject', '=', id).executeTakeFirst()).toBeDefined();
    // The next transfer takes nonce 0.
    const next = await r.intent('after-rejecting', 10n);
    await sendTransfer(r.deps, r.hooks, next);
    expect(await r.row(next)).toMatchObject({ nonce: '0' });
  });

  it('a token that returns false moves nothing: mined, no Transfer log, the transfer fails with its gas booked', async () => {
    const r = await rig();
    const to = freshAddress();
    await setLocalUsdtReturnFalse(outside.chain.rpcUrl, outside.usdt, r.hostKey, true);
    try {
      const id = await r.intent('return-false', 2_000_000n, { to, asset: 'usdt' });
      await sendTransfer(r.deps, r.hooks, id);
      await confirmTransfer(r.deps, r.hooks, id);
      const row = await r.row(id);
      expect(row).toMatchObject({ status: 'failed', last_error: 'token_not_moved' });
      expect(await outside.usdtBalanceOf(to)).toBe(0n);
      expect(await r.gasBooked(id)).toBe(await receiptGas(row.tx_hash as string));
    } finally {
      await setLocalUsdtReturnFalse(outside.chain.rpcUrl, outside.usdt, r.hostKey, false);
    }
  });

  it('a token transfer that reverts once mined (the receiver blacklisted after the estimate) fails with its gas booked', async () => {
    const r = await rig();
    const to = freshAddress();
    await pausePool(outside.chain.rpcUrl);
    const id = await r.intent('blacklisted', 3_000_000n, { to, asset: 'usdt' });
    await sendTransfer(r.deps, r.hooks, id);
    // Tether's blacklist (LocalUSDT's isBlackListed, storage slot 3), set between the estimate and the block.
    const slot = keccak256(encodeAbiParameters([{ type: 'address' }, { type: 'uint256' }], [to, 3n]));
    await rpc(outside.chain.rpcUrl, 'anvil_setStorageAt', [outside.usdt, slot, `0x${'1'.padStart(64, '0')}`]);
    await mineBlocks(outside.chain.rpcUrl, 1);
    await confirmTransfer(r.deps, r.hooks, id);
    const row = await r.row(id);
    expect(row).toMatchObject({ status: 'failed', last_error: 'reverted' });
    expect(await outside.usdtBalanceOf(to)).toBe(0n);
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
    await reorg(outside.chain.rpcUrl, 1);
    expect(await outside.balanceOf(to)).toBe(0n);
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'broadcast', block_number: null });
    expect(await outside.balanceOf(to)).toBe(8_888n); // sent again (anvil mines it at once)
    expect(await db.db.selectFrom('alerts').select('rule').where('rule', '=', 'transfer_reorged').where('subject', '=', id).executeTakeFirst()).toBeDefined();

    await confirmTransfer(r.deps, r.hooks, id);
    expect(r.confirmed).toEqual([]);
    await mineBlocks(outside.chain.rpcUrl, 2);
    await confirmTransfer(r.deps, r.hooks, id);
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'confirmed', tx_hash: seen.tx_hash });
    expect(r.confirmed).toHaveLength(1);
    expect(await outside.balanceOf(to)).toBe(8_888n);
    const journals = await db.db.selectFrom('ledger_journals').select('kind').where('ref', '=', id).execute();
    expect(journals).toEqual([{ kind: 'network_fee' }]);
  });
});
