/**
 * A transfer test's world: anvil with its outside (test/support/outside.ts), an RPC proxy in front of it that can
 * misbehave, a database, and a fresh funded host wallet per case (its own nonces) whose transfer steps are driven by
 * hand, the owner's hooks recording what they were told.
 */
import type { Address, Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { createChainWallet, type ChainWallet } from '../../src/integrations/wallet/index.ts';
import { createLogger } from '../../src/log.ts';
import type { StageDeps, TransferPolicy } from '../../src/pipeline/index.ts';
import {
  createTransfer,
  type TransferFailure,
  type TransferHooksByPurpose,
} from '../../src/pipeline/transfer/index.ts';
import { rpc, startRpcProxy, type RpcProxy } from '../../src/simulators/index.ts';
import { resumeMining } from '../../src/simulators/chain-faults.ts';
import { mintLocalUsdt } from '../../src/simulators/usdt/index.ts';
import { createTestDatabase, type TestDatabase } from './db.ts';
import { startOutside, type Outside } from './outside.ts';

export const GWEI = 10n ** 9n;
/**
 * A run waits at most 2 s for a new version's receipt: anvil mines on arrival, but a loaded machine can answer the
 * receipt a moment after the send returned (a case that then looked once found nothing). A case that keeps a version
 * unmined (a paused pool) pays that wait once per version.
 */
export const POLICY: TransferPolicy = {
  bumpAfterMs: 60_000,
  maxFeePerGasWei: 300n * GWEI,
  confirmations: 1,
  receiptWaitMs: 2_000,
};

export interface TransferWorld {
  outside: Outside;
  proxy: RpcProxy;
  db: TestDatabase;
  /** Undoes the faults a case set: the proxy answers normally and the chain mines again. */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

export async function startTransferWorld(): Promise<TransferWorld> {
  const outside = await startOutside();
  const proxy = await startRpcProxy({ upstream: outside.chain.rpcUrl });
  const db = await createTestDatabase();
  return {
    outside,
    proxy,
    db,
    async reset() {
      proxy.setFaults({});
      await resumeMining(outside.chain.rpcUrl);
    },
    async stop() {
      await proxy.stop();
      await db.close();
      await outside.stop();
    },
  };
}

/**
 * What the transfer steps read when a test drives them by hand: the database, the wallet and the transfer settings;
 * the exchange and the conversion and payout settings are never read by them.
 */
export function handDrivenDeps(
  db: TestDatabase,
  wallet: ChainWallet,
  transfer: { policy: TransferPolicy; confirmDeadlineMs: number; usdtContract?: Address },
): StageDeps {
  return {
    db: db.db,
    runLocks: db.runLocks,
    exchange: undefined as never,
    wallet,
    hostAddress: wallet.address,
    usdtContract: transfer.usdtContract,
    settings: {
      minUsdCents: 0n,
      maxWaitMs: 0,
      maxPayments: 1,
      pollIntervalMs: 1,
      pollDeadlineMs: 1,
      transferConfirmDeadlineMs: transfer.confirmDeadlineMs,
      transfer: transfer.policy,
      payoutMaxAttempts: 1,
      payoutApprovalAboveUsdCents: null,
    },
    logger: createLogger({ level: 'silent' }),
  };
}

export interface Rig {
  deps: StageDeps;
  wallet: ChainWallet;
  hostKey: Hex;
  hooks: TransferHooksByPurpose;
  confirmed: string[];
  failed: Array<{ ref: string; failure: TransferFailure }>;
  intent(
    ref: string,
    amount: bigint,
    options?: { to?: Address; asset?: 'eth' | 'usdt'; purpose?: 'conversion' | 'payout' },
  ): Promise<string>;
  row(id: string): Promise<Record<string, unknown>>;
  versions(id: string): Promise<Array<{ version: number; kind: string; tx_hash: string }>>;
  kinds(id: string): Promise<string[]>;
  /** The gas booked for the transfer (its network_fee journal), or null when none is. */
  gasBooked(id: string): Promise<bigint | null>;
}

/** A fresh funded host wallet with USDT (minted by another key, so its first nonce is 0), directly or through the proxy. */
export async function rig(
  world: TransferWorld,
  options: { viaProxy?: boolean; policy?: Partial<TransferPolicy>; usdtContract?: Address } = {},
): Promise<Rig> {
  const { outside, proxy, db } = world;
  const hostKey = generatePrivateKey();
  const address = privateKeyToAccount(hostKey).address;
  await rpc(outside.chain.rpcUrl, 'anvil_setBalance', [address, `0x${(10n ** 20n).toString(16)}`]);
  await mintLocalUsdt(outside.chain.rpcUrl, outside.usdt, outside.hostKey, address, 10n ** 12n);
  const wallet = createChainWallet({
    rpcUrl: options.viaProxy ? proxy.url : outside.chain.rpcUrl,
    privateKey: hostKey,
    chainId: outside.chain.chainId,
    timeoutMs: 3_000,
  });
  const deps = handDrivenDeps(db, wallet, {
    policy: { ...POLICY, ...options.policy },
    confirmDeadlineMs: 600_000,
    usdtContract: options.usdtContract ?? outside.usdt,
  });
  const confirmed: string[] = [];
  const failed: Array<{ ref: string; failure: TransferFailure }> = [];
  const record = {
    onConfirmed: async (_trx: unknown, t: { ref: string }) => void confirmed.push(t.ref),
    onFailed: async (_trx: unknown, t: { ref: string }, failure: TransferFailure) =>
      void failed.push({ ref: t.ref, failure }),
  };
  const versions = (id: string) =>
    db.db
      .selectFrom('chain_transfer_versions')
      .select(['version', 'kind', 'tx_hash'])
      .where('transfer_id', '=', id)
      .orderBy('version')
      .execute();
  return {
    deps,
    wallet,
    hostKey,
    hooks: { conversion: record, payout: record },
    confirmed,
    failed,
    versions,
    intent: (ref, amount, o = {}) =>
      db.db.transaction().execute((trx) =>
        createTransfer(trx, {
          purpose: o.purpose ?? 'payout',
          ref: `${address}:${ref}`,
          asset: o.asset ?? 'eth',
          from: address,
          to: o.to ?? freshAddress(),
          amount,
        }),
      ),
    row: async (id) =>
      db.db.selectFrom('chain_transfers').selectAll().where('transfer_id', '=', id).executeTakeFirstOrThrow(),
    kinds: async (id) => (await versions(id)).map((v) => v.kind),
    async gasBooked(id) {
      const { rows } = await db.pool.query<{ amount: string }>(
        "select e.amount::text as amount from ledger_entries e join ledger_journals j on j.id = e.journal_id join ledger_accounts a on a.id = e.account_id where j.kind = 'network_fee' and j.ref = $1 and a.code = 'world:ethereum'",
        [id],
      );
      return rows[0] ? BigInt(rows[0].amount) : null;
    },
  };
}

export function freshAddress(): Address {
  return privateKeyToAccount(generatePrivateKey()).address;
}

/** What a mined transaction cost in gas, from its receipt on anvil. */
export async function receiptGas(world: TransferWorld, hash: string): Promise<bigint> {
  const receipt = (await rpc(world.outside.chain.rpcUrl, 'eth_getTransactionReceipt', [hash])) as {
    gasUsed: Hex;
    effectiveGasPrice: Hex;
  } | null;
  if (!receipt) throw new Error(`no receipt for ${hash}`);
  return BigInt(receipt.gasUsed) * BigInt(receipt.effectiveGasPrice);
}

/** The host wallet's mined transaction count. */
export async function chainNonce(world: TransferWorld, address: string): Promise<number> {
  return Number(
    BigInt((await rpc(world.outside.chain.rpcUrl, 'eth_getTransactionCount', [address, 'latest'])) as string),
  );
}

/** The world for one test file: started before its cases, reset after each, stopped at its end. */
export function useTransferWorld() {
  let world: TransferWorld | undefined;
  beforeAll(async () => {
    world = await startTransferWorld();
  });
  afterEach(async () => world?.reset());
  afterAll(async () => world?.stop());
  const current = (): TransferWorld => {
    if (!world) throw new Error('the transfer world is not started (used outside a test?)');
    return world;
  };
  return {
    get outside() {
      return current().outside;
    },
    get proxy() {
      return current().proxy;
    },
    get db() {
      return current().db;
    },
    rig: (options?: Parameters<typeof rig>[1]) => rig(current(), options),
    receiptGas: (hash: string) => receiptGas(current(), hash),
    chainNonce: (address: string) => chainNonce(current(), address),
  };
}
