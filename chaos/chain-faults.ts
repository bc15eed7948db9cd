/**
 * The chain's misbehaviour as chaos faults (shared/REALITY.md, Ethereum), built on src/simulators/chain-faults.ts:
 * a fee spike under waiting transfers, a pool that forgets, a short reorganisation, and a nonce taken by another
 * holder of the host key (then resolved through the admin API, as an operator would). Each holds the chain (no
 * ticks, no automine) only as long as it needs, and always gives it back.
 *
 * Pool holds stay well under the simulator treasury's 15 s receipt wait: a payout of its that waited longer would be
 * sent again at its next nonce (a simulator artefact, not payrail's), and both would be mined on release.
 */
import type { Hex } from 'viem';
import { baseFee, dropAllPending, reorg, spikeBaseFee, takeNonce } from '../src/simulators/chain-faults.ts';
import { rpc } from '../src/simulators/index.ts';
import { admin, type AdminApi } from './admin.ts';
import { sleep } from './net.ts';
import type { World } from './world.ts';

/** Longest wait, with the chain held, for a host transfer to arrive in the pool. */
const PENDING_WAIT_MS = 8_000;
/** Longest wait for a host transaction among the last blocks before a reorganisation. */
const HOST_TX_WAIT_MS = 8_000;
/** How long an operator watches a transfer whose nonce was taken before resolving it (it needs two looks 10 s apart). */
const REVIEW_WAIT_MS = 45_000;
const RESOLVED_WAIT_MS = 20_000;

interface PoolTx {
  hash: Hex;
  nonce: number;
  maxFeePerGas: bigint;
}

interface BlockTx {
  hash: Hex;
  from: string;
  nonce: number;
  /** Its block's place among the reorganised blocks, 0 the oldest. */
  offset: number;
}

/** The host wallet's mined and pending transaction counts, read from anvil. */
async function hostCounts(world: World): Promise<{ latest: number; pending: number }> {
  const [latest, pending] = await Promise.all(
    ['latest', 'pending'].map(async (tag) =>
      Number(await rpc(world.chain.rpcUrl, 'eth_getTransactionCount', [world.hostAddress, tag])),
    ),
  );
  return { latest: latest as number, pending: pending as number };
}

/** Waits (bounded) until a host transaction waits in the pool; the nonce it waits at, or null. */
async function waitForHostPending(world: World, boundMs: number): Promise<number | null> {
  const deadline = Date.now() + boundMs;
  for (;;) {
    const { latest, pending } = await hostCounts(world);
    if (pending > latest) return latest;
    if (Date.now() > deadline) return null;
    await sleep(100);
  }
}

/** The host wallet's transactions in anvil's pool (ready and queued). */
async function hostPool(world: World): Promise<PoolTx[]> {
  const content = (await rpc(world.chain.rpcUrl, 'txpool_content', [])) as Record<
    'pending' | 'queued',
    Record<string, Record<string, { hash: Hex; nonce: Hex; maxFeePerGas?: Hex; gasPrice?: Hex }>>
  >;
  const host = world.hostAddress.toLowerCase();
  const txs: PoolTx[] = [];
  for (const part of [content.pending, content.queued]) {
    for (const [sender, byNonce] of Object.entries(part ?? {})) {
      if (sender.toLowerCase() !== host) continue;
      for (const tx of Object.values(byNonce))
        txs.push({
          hash: tx.hash,
          nonce: Number(tx.nonce),
          maxFeePerGas: BigInt(tx.maxFeePerGas ?? tx.gasPrice ?? '0x0'),
        });
    }
  }
  return txs.sort((a, b) => a.nonce - b.nonce);
}

async function known(world: World, hash: Hex): Promise<boolean> {
  return (await rpc(world.chain.rpcUrl, 'eth_getTransactionByHash', [hash])) !== null;
}

/**
 * fee_spike: with the chain held and a host transfer waiting, the base fee jumps to 10 × the most any waiting host
 * transaction offers (anvil's own base fee is near zero after a run of empty blocks, so ×10 of it would outbid
 * nothing), at most half of payrail's fee ceiling so its replacements can still reach it. anvil evicts what the spike
 * outbids (geth would keep it waiting): payrail must replace it at the same nonce. Held `holdMs` more, then released.
 */
export async function feeSpike(world: World, holdMs: number, ceilingWei: bigint): Promise<string> {
  await world.ticker.hold();
  try {
    const nonce = await waitForHostPending(world, PENDING_WAIT_MS);
    const pool = await hostPool(world);
    const base = await baseFee(world.chain.rpcUrl);
    const top = pool.reduce((max, tx) => (tx.maxFeePerGas > max ? tx.maxFeePerGas : max), base);
    const spike = top * 10n > ceilingWei / 2n ? ceilingWei / 2n : top * 10n;
    await spikeBaseFee(world.chain.rpcUrl, spike);
    const evicted = (await Promise.all(pool.map((tx) => known(world, tx.hash)))).filter((k) => !k).length;
    await sleep(holdMs);
    const waiting = `${pool.length} host transaction(s) in the pool${nonce === null ? ` (none ready within ${PENDING_WAIT_MS / 1000} s)` : `, the next at nonce ${nonce}`}`;
    return `base fee ${base} → ${spike} wei/gas with ${waiting}, ${evicted} evicted; pool held ${holdMs} ms more`;
  } finally {
    await world.ticker.release();
  }
}

/** pool_dropped: with the chain held and (if one comes) a host transfer waiting, the pool forgets everything pending. */
export async function poolDropped(world: World, holdMs: number): Promise<string> {
  await world.ticker.hold();
  try {
    const nonce = await waitForHostPending(world, PENDING_WAIT_MS);
    const host = await hostPool(world);
    const status = (await rpc(world.chain.rpcUrl, 'txpool_status', [])) as { pending: Hex; queued: Hex };
    await dropAllPending(world.chain.rpcUrl);
    await sleep(holdMs);
    const all = Number(status.pending) + Number(status.queued);
    return `pool forgot ${all} pending transaction(s), ${host.length} of the host wallet${nonce === null ? ` (none ready within ${PENDING_WAIT_MS / 1000} s)` : `, the next at nonce ${nonce}`}; held ${holdMs} ms more`;
  } finally {
    await world.ticker.release();
  }
}

/** The transactions of blocks head-depth+1..head, in chain order. */
async function blockTxs(world: World, head: number, depth: number): Promise<BlockTx[]> {
  const txs: BlockTx[] = [];
  for (let offset = 0; offset < depth; offset++) {
    const block = (await rpc(world.chain.rpcUrl, 'eth_getBlockByNumber', [
      `0x${(head - depth + 1 + offset).toString(16)}`,
      true,
    ])) as { transactions: Array<{ hash: Hex; from: string; nonce: Hex }> };
    for (const tx of block.transactions)
      txs.push({ hash: tx.hash, from: tx.from.toLowerCase(), nonce: Number(tx.nonce), offset });
  }
  return txs;
}

/**
 * reorg: the last `depth` blocks (1–3, under CHAIN_CONFIRMATIONS=4, so nothing in them is booked yet) are replaced.
 * Every transaction in them comes back in the block at the same place, in the same order (each sender's nonces
 * stay in order), except the host wallet's from some nonce on (`pick` chooses which; possibly none): those leave
 * the chain for good, and so do the host's transactions waiting in the pool above them, so no nonce gap is left
 * (anvil would otherwise include or discard them out of order). payrail must send the same bytes again. A
 * transaction a nonce_taken fault sent is never dropped (the nonce check counts it). Waits (bounded) for a host
 * transaction among those blocks first, so the reorganisation touches payrail's transfers.
 */
export async function reorgBlocks(world: World, depth: number, pick: number): Promise<string> {
  const host = world.hostAddress.toLowerCase();
  const deadline = Date.now() + HOST_TX_WAIT_MS;
  let head: number;
  let txs: BlockTx[];
  for (;;) {
    await world.ticker.hold();
    try {
      head = Number(await rpc(world.chain.rpcUrl, 'eth_blockNumber', []));
      depth = Math.min(depth, head);
      txs = await blockTxs(world, head, depth);
    } catch (error) {
      await world.ticker.release();
      throw error;
    }
    if (txs.some((tx) => tx.from === host) || Date.now() > deadline) break;
    await world.ticker.release();
    await sleep(250);
  }
  try {
    const hostTxs = txs.filter((tx) => tx.from === host).sort((a, b) => a.nonce - b.nonce);
    const outside = new Set(world.outsideTxs.map((o) => o.hash.toLowerCase()));
    const firstDroppable = hostTxs.reduce((at, tx, i) => (outside.has(tx.hash.toLowerCase()) ? i + 1 : at), 0);
    const cut = firstDroppable + (pick % (hostTxs.length - firstDroppable + 1));
    const dropped = hostTxs.slice(cut);
    const dropFrom = dropped[0]?.nonce;
    const droppedHashes = new Set(dropped.map((tx) => tx.hash));
    let poolDropped = 0;
    if (dropFrom !== undefined) {
      for (const tx of await hostPool(world)) {
        if (tx.nonce > dropFrom && (await rpc(world.chain.rpcUrl, 'anvil_dropTransaction', [tx.hash])) !== null)
          poolDropped++;
      }
    }
    const kept = txs.filter((tx) => !droppedHashes.has(tx.hash));
    const reinclude = await Promise.all(
      kept.map(async (tx) => {
        const rawTx = (await rpc(world.chain.rpcUrl, 'eth_getRawTransactionByHash', [tx.hash])) as Hex | null;
        if (!rawTx) throw new Error(`reorg: no raw transaction for ${tx.hash}`);
        return { rawTx, blockOffset: tx.offset };
      }),
    );
    const before = await hostCounts(world);
    await reorg(world.chain.rpcUrl, depth, reinclude);
    const after = await hostCounts(world);
    const expected = dropFrom ?? before.latest;
    if (after.latest !== expected)
      throw new Error(`reorg: the host wallet counts ${after.latest} transactions after it, expected ${expected}`);
    const gone = (await Promise.all(kept.map((tx) => known(world, tx.hash)))).filter((k) => !k).length;
    if (gone > 0) throw new Error(`reorg: ${gone} re-included transaction(s) are unknown after it`);
    return `last ${depth} block(s) up to ${head} reorganised: ${txs.length} transaction(s), ${hostTxs.length} of the host wallet; ${
      dropped.length === 0
        ? 'all re-included'
        : `host nonces ${dropFrom}..${dropped.at(-1)?.nonce} dropped (${poolDropped} waiting above them dropped from the pool), the rest re-included`
    }`;
  } finally {
    await world.ticker.release();
  }
}

interface TransferView {
  transferId: string;
  status: string;
  nonce: string | null;
  reason: string | null;
  lastError: string | null;
  requested: unknown;
  purpose: string;
  ref: string;
}

/** Polls a transfer (bounded) until `done` holds; the last view seen. */
async function watchTransfer(
  api: AdminApi,
  transferId: string,
  boundMs: number,
  done: (t: TransferView) => boolean,
): Promise<TransferView | undefined> {
  const deadline = Date.now() + boundMs;
  let last: TransferView | undefined;
  for (;;) {
    const { status, json } = await admin(api, 'GET', `/api/transfers/${transferId}`);
    if (status === 200) last = json as TransferView;
    if ((last && done(last)) || Date.now() > deadline) return last;
    await sleep(1_000);
  }
}

/**
 * nonce_taken: with the chain held and a host transfer waiting, another holder of the key replaces it at its nonce,
 * paying more than payrail ever offers (`feeWei`, above TRANSFER_MAX_FEE_GWEI, so payrail's bumps cannot win it back).
 * Released, the outside transaction is mined and payrail's transfer never can be: the fault is over. The operator's
 * part goes on beside the next faults (`followUp`, awaited before the settle): once payrail has put the transfer in
 * review (two looks 10 s apart, ~20–35 s), resolve it through the admin API as never sent.
 */
export async function nonceTaken(
  world: World,
  api: AdminApi,
  feeWei: bigint,
  followUp: (work: Promise<string>) => void,
): Promise<string> {
  let nonce: number | null;
  let hash: Hex;
  let transfer: TransferView | undefined;
  await world.ticker.hold();
  try {
    nonce = await waitForHostPending(world, PENDING_WAIT_MS);
    if (nonce === null) return `no host transfer pending within ${PENDING_WAIT_MS / 1000} s: no nonce taken`;
    hash = await takeNonce(world.chain.rpcUrl, world.hostKey, { nonce, maxFeePerGasWei: feeWei });
    world.outsideTxs.push({ nonce, hash });
  } finally {
    await world.ticker.release();
  }
  // Which transfer lost its nonce, read as an operator would (after the release: the pool is held only for the take).
  const at = String(nonce);
  for (const status of ['broadcast', 'needs_review', 'signed']) {
    const { json } = await admin(api, 'GET', `/api/transfers?status=${status}&limit=500`);
    transfer ??= (json as { transfers?: TransferView[] }).transfers?.find((t) => t.nonce === at);
  }
  const what = `nonce ${nonce} taken by ${hash.slice(0, 10)}… from transfer ${transfer?.transferId ?? '(none found at it)'}`;
  if (transfer) followUp(resolveNeverSent(api, transfer));
  return what;
}

/** The operator's part of nonce_taken: wait for the transfer in review, resolve it as never sent, see it carried out. */
async function resolveNeverSent(api: AdminApi, transfer: TransferView): Promise<string> {
  const what = `transfer ${transfer.transferId} (nonce ${transfer.nonce})`;
  const review = await watchTransfer(api, transfer.transferId, REVIEW_WAIT_MS, (t) => t.status !== 'broadcast');
  if (review?.status !== 'needs_review')
    return `${what}; not in review within ${REVIEW_WAIT_MS / 1000} s (${review?.status ?? 'unread'}), left as it is`;
  let answer = await admin(api, 'POST', `/api/transfers/${transfer.transferId}/resolve`, {
    outcome: 'never_sent',
    note: 'chaos nonce_taken',
  });
  for (let i = 0; answer.status === 409 && i < 5; i++) {
    await sleep(1_000);
    answer = await admin(api, 'POST', `/api/transfers/${transfer.transferId}/resolve`, {
      outcome: 'never_sent',
      note: 'chaos nonce_taken',
    });
  }
  if (answer.status !== 202)
    return `${what}; in review, resolve as never_sent answered ${answer.status}: ${JSON.stringify(answer.json).slice(0, 200)}`;
  // Carried out by a worker: done when the transfer left review, or the request was cleared as refused.
  const end = await watchTransfer(
    api,
    transfer.transferId,
    RESOLVED_WAIT_MS,
    (t) => t.status !== 'needs_review' || (t.requested === null && (t.lastError ?? '').includes('refused')),
  );
  return `${what}; in review, resolved as never_sent: ${end?.status ?? 'unread'}${end?.lastError ? ` (${end.lastError})` : ''}`;
}
