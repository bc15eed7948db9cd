/**
 * The transfer aggregate where the chain and payrail's own jobs race it: a lagging node hiding a receipt seen before, a
 * person's cancel racing a running bump, a receipt read just before a reorganisation, a pending outside transaction
 * that the pool forgets, a token that moves less than asked, a transfer released by an earlier version, a request the
 * worker could not carry out. Each on anvil (and the RPC proxy), checked on chain.
 */
import type { Hex } from 'viem';
import { jobWithKeyExists, removeJobs } from '../../src/jobs/index.ts';
import { describe, expect, it } from 'vitest';
import type { ChainWallet } from '../../src/integrations/wallet/index.ts';
import { applyTransferAction, confirmTransfer, sendTransfer } from '../../src/pipeline/transfer/index.ts';
import { NONCE_TAKEN_RECHECK_MS } from '../../src/pipeline/transfer/confirm.ts';
import { rpc } from '../../src/simulators/index.ts';
import {
  dropAllPending,
  dropTransaction,
  mineBlocks,
  pausePool,
  reorg,
  resumeMining,
  takeNonce,
} from '../../src/simulators/chain-faults.ts';
import { freshAddress, useTransferWorld } from '../support/transfers.ts';
import { eventually } from '../support/outside.ts';

const t = useTransferWorld();
const { rig, chainNonce } = t;

describe('a lagging node that hides a receipt', () => {
  it('seen mined before: the block is still there, so nothing is undone, never_sent is refused, and it is booked once the node catches up', async () => {
    const r = await rig({ viaProxy: true, policy: { confirmations: 2 } });
    const to = freshAddress();
    const id = await r.intent('lag', 1_000_000n, { to });
    await sendTransfer(r.deps, r.hooks, id);
    await confirmTransfer(r.deps, r.hooks, id);
    const seen = await r.row(id);
    expect(seen.block_hash).not.toBeNull();

    t.proxy.setFaults({ lagging: true }); // receipts and lookups answer null; the nonce count is honest
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'broadcast', block_hash: seen.block_hash });
    await applyTransferAction(t.db.db, id, 'resolve', 'alice', { outcome: 'never_sent' });
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'broadcast', requested_action: null });
    expect((await r.row(id)).last_error).toMatch(/refused/);

    t.proxy.setFaults({});
    await mineBlocks(t.outside.chain.rpcUrl, 1);
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
    expect(r.confirmed).toHaveLength(1);
    expect(r.failed).toEqual([]);
    expect(await t.outside.balanceOf(to)).toBe(1_000_000n);
  });

  it('never seen mined: the nonce is used by one of our own versions, so it is not sent to review', async () => {
    const r = await rig({ viaProxy: true });
    const to = freshAddress();
    t.proxy.setFaults({ lagging: true });
    const id = await r.intent('lag-from-start', 5_000n, { to });
    await sendTransfer(r.deps, r.hooks, id);
    await confirmTransfer(r.deps, r.hooks, id);
    await new Promise((resolve) => setTimeout(resolve, NONCE_TAKEN_RECHECK_MS));
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'broadcast', nonce_taken_seen_at: null });
    t.proxy.setFaults({});
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
    expect(await t.outside.balanceOf(to)).toBe(5_000n);
  });
});

describe("a person's cancel and a running bump", () => {
  it('a confirm job that looked before the cancel bumps the cancel, never the payment: nothing reaches the receiver', async () => {
    const r = await rig({ policy: { bumpAfterMs: 0 } });
    const to = freshAddress();
    await pausePool(t.outside.chain.rpcUrl);
    const id = await r.intent('cancel-race', 77_777n, { to });
    await sendTransfer(r.deps, r.hooks, id);
    // Job A (graphile starts a second job of the same key while the first holds its lock) reaches the bump with its
    // snapshot "the latest version is the payment"; its fee read waits until job B has carried out the cancel.
    let reached!: () => void;
    const atFees = new Promise<void>((resolve) => (reached = resolve));
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slowWallet: ChainWallet = {
      ...r.wallet,
      fees: async () => {
        reached();
        await gate;
        return r.wallet.fees();
      },
    };
    const jobA = confirmTransfer({ ...r.deps, wallet: slowWallet }, r.hooks, id);
    await atFees;
    await applyTransferAction(t.db.db, id, 'cancel', 'carol');
    await confirmTransfer(r.deps, r.hooks, id);
    expect((await r.kinds(id)).at(-1)).toBe('cancel');
    release();
    await jobA;
    expect((await r.kinds(id)).slice(1).every((k) => k === 'cancel')).toBe(true);
    await resumeMining(t.outside.chain.rpcUrl);
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'failed', last_error: 'cancelled' });
    expect(await t.outside.balanceOf(to)).toBe(0n);
  });
});

describe('a receipt read just before a reorganisation', () => {
  it("is not booked: its block is no longer the chain's at that height; sent again and booked once", async () => {
    const r = await rig({ policy: { confirmations: 2 } });
    const to = freshAddress();
    const id = await r.intent('stale-receipt', 424_242n, { to });
    await sendTransfer(r.deps, r.hooks, id);
    let armed = true;
    // Between the receipt read and the head read the chain reorganises (or the head comes from another node).
    const racingWallet: ChainWallet = {
      ...r.wallet,
      blockAt: async (tag) => {
        if (armed && tag === 'latest') {
          armed = false;
          await reorg(t.outside.chain.rpcUrl, 1);
          await mineBlocks(t.outside.chain.rpcUrl, 1);
        }
        return r.wallet.blockAt(tag);
      },
    };
    await confirmTransfer({ ...r.deps, wallet: racingWallet }, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'broadcast' });
    expect(r.confirmed).toEqual([]);
    await confirmTransfer(r.deps, r.hooks, id); // its block is gone: the same bytes again
    // anvil mines a sent transaction at once, but under load its block can land a moment after the send's answer.
    await eventually('the same bytes mined again', async () => (await t.outside.balanceOf(to)) === 424_242n, 5_000);
    await mineBlocks(t.outside.chain.rpcUrl, 1);
    await confirmTransfer(r.deps, r.hooks, id);
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'confirmed', nonce: '0' });
    expect(r.confirmed).toHaveLength(1);
    expect(await t.outside.balanceOf(to)).toBe(424_242n);
  });
});

describe('an outside transaction pending at the next nonce, then forgotten by the pool', () => {
  it('the first nonce comes from mined transactions only: ours takes nonce 0 and is mined, no gap', async () => {
    const r = await rig();
    await pausePool(t.outside.chain.rpcUrl);
    const theirs = await takeNonce(t.outside.chain.rpcUrl, r.hostKey); // an operator's wallet app, pending at nonce 0
    const to = freshAddress();
    const id = await r.intent('gap', 1_000n, { to });
    await sendTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ nonce: '0' });
    await dropTransaction(t.outside.chain.rpcUrl, theirs); // pools forget
    await resumeMining(t.outside.chain.rpcUrl);
    await confirmTransfer(r.deps, r.hooks, id); // unknown to the node: the same bytes again
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'confirmed', nonce: '0' });
    expect(await t.outside.balanceOf(to)).toBe(1_000n);
    expect(await chainNonce(r.wallet.address)).toBe(1);
  });
});

/**
 * A token whose `transfer(to, value)` emits Transfer(caller, to, value - 1) and returns 2^256-1 (truthy), whose
 * balanceOf answers 2^256-1: a fee-on-transfer token (Tether's own basisPointsRate does this when switched on).
 *   PUSH1 1 PUSH1 0x24 CALLDATALOAD SUB PUSH0 MSTORE  PUSH1 4 CALLDATALOAD CALLER PUSH32 <Transfer> PUSH1 0x20 PUSH0 LOG3
 *   PUSH0 NOT PUSH0 MSTORE PUSH1 0x20 PUSH0 RETURN
 */
const FEE_TOKEN: Hex = ('0x6001602435035f5260043533' +
  '7fddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef' +
  '60205fa35f195f5260205ff3') as Hex;

describe('a mined token transfer that moved less than asked', () => {
  it('goes to review; a person resolving it with its own hash confirms it with that finding, and its owner moves on', async () => {
    const token = freshAddress();
    await rpc(t.outside.chain.rpcUrl, 'anvil_setCode', [token, FEE_TOKEN]);
    const r = await rig({ usdtContract: token });
    const id = await r.intent('fee-token', 1_000_000n, { asset: 'usdt' });
    await sendTransfer(r.deps, r.hooks, id);
    await confirmTransfer(r.deps, r.hooks, id);
    const row = await r.row(id);
    expect(row).toMatchObject({ status: 'needs_review' });
    expect(row.reason).toMatch(/moved 999999 units/);
    await expect(applyTransferAction(t.db.db, id, 'cancel', 'dave')).rejects.toThrow(/mined in block/);
    await applyTransferAction(t.db.db, id, 'resolve', 'dave', { outcome: 'mined', txHash: row.tx_hash as string });
    await confirmTransfer(r.deps, r.hooks, id);
    const resolved = await r.row(id);
    expect(resolved).toMatchObject({ status: 'confirmed', requested_action: null });
    expect(resolved.reason).toMatch(/accepted by dave as mined: the token moved 999999 units/);
    expect(r.confirmed).toHaveLength(1);
  });
});

describe('a transfer released by an earlier version of payrail (no nonce, its old bytes unknown)', () => {
  it('waits in review: bump, cancel and never_sent are refused; retry signs it afresh', async () => {
    const r = await rig();
    const to = freshAddress();
    const id = await r.intent('legacy', 4_321n, { to });
    // As migration 014 leaves a row the old code released after a refused broadcast, its send job long gone.
    await t.db.pool.query(
      "update chain_transfers set status = 'needs_review', attempts = 1, reason = 'released by an earlier version' where transfer_id = $1",
      [id],
    );
    await t.db.db.transaction().execute((trx) => removeJobs(trx, [`transfer_send:${id}`]));
    await expect(applyTransferAction(t.db.db, id, 'bump', 'erin')).rejects.toThrow(/not bumped|no nonce/);
    await expect(applyTransferAction(t.db.db, id, 'cancel', 'erin')).rejects.toThrow(/no nonce/);
    // Refused up front, as the worker would: with no nonce the chain cannot show it unused. Nothing is recorded.
    await expect(applyTransferAction(t.db.db, id, 'resolve', 'erin', { outcome: 'never_sent' })).rejects.toThrow(
      /no nonce on record/,
    );
    expect(await r.row(id)).toMatchObject({ status: 'needs_review', requested_action: null, last_error: null });
    expect((await t.db.pool.query('select count(*)::int as n from audit_log where subject = $1', [id])).rows[0].n).toBe(
      0,
    );
    expect(await applyTransferAction(t.db.db, id, 'retry', 'erin')).toMatchObject({
      from: 'needs_review',
      to: 'intent',
    });
    // Its send job is queued with it: nothing waits for the reconciler.
    expect(await jobWithKeyExists(t.db.db, `transfer_send:${id}`)).toBe(true);
    await sendTransfer(r.deps, r.hooks, id);
    await confirmTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({ status: 'confirmed', nonce: '0' });
    expect(await t.outside.balanceOf(to)).toBe(4_321n);
  });
});

describe('a request the worker could not carry out', () => {
  it('blocks other requests while fresh, and is replaced (audited) once stale', async () => {
    const r = await rig();
    await pausePool(t.outside.chain.rpcUrl);
    const id = await r.intent('stale-request', 9n);
    await sendTransfer(r.deps, r.hooks, id);
    await applyTransferAction(t.db.db, id, 'bump', 'frank');
    await expect(applyTransferAction(t.db.db, id, 'cancel', 'frank')).rejects.toThrow(/still being carried out/);
    await t.db.pool.query(
      "update chain_transfers set requested_at = now() - interval '11 minutes' where transfer_id = $1",
      [id],
    );
    expect(await applyTransferAction(t.db.db, id, 'cancel', 'frank')).toMatchObject({ requested: 'cancel' });
    const audit = await t.db.pool.query('select details from audit_log where subject = $1 order by id', [id]);
    expect(audit.rows.at(-1).details.replacing).toMatchObject({ action: 'bump', by: 'frank' });
  });
});

describe('a transfer waiting behind a lower nonce of ours that the pool forgot', () => {
  it("is not bumped (it cannot be mined first); the forgotten one's own check sends it again; both are mined", async () => {
    const r = await rig({ policy: { bumpAfterMs: 0 } });
    await pausePool(t.outside.chain.rpcUrl);
    const first = await r.intent('gap-first', 11n);
    await sendTransfer(r.deps, r.hooks, first);
    const second = await r.intent('gap-second', 22n);
    await sendTransfer(r.deps, r.hooks, second);
    expect((await r.row(second)).nonce).toBe('1');
    await dropTransaction(t.outside.chain.rpcUrl, (await r.row(first)).tx_hash as Hex);
    await confirmTransfer(r.deps, r.hooks, second);
    expect(await r.kinds(second)).toEqual(['transfer']);
    await confirmTransfer(r.deps, r.hooks, first); // unknown to the node: replaced (bumpAfterMs 0) or sent again
    await resumeMining(t.outside.chain.rpcUrl);
    await confirmTransfer(r.deps, r.hooks, first);
    // anvil forgets the later nonce with the earlier one: the second is sent again by its next look, then mined.
    await confirmTransfer(r.deps, r.hooks, second);
    await confirmTransfer(r.deps, r.hooks, second);
    expect(await r.row(first)).toMatchObject({ status: 'confirmed', nonce: '0' });
    expect(await r.row(second)).toMatchObject({ status: 'confirmed', nonce: '1' });
    expect(await chainNonce(r.wallet.address)).toBe(2);
  });
});

describe('transfers waiting behind a lower nonce of ours that the chain does not mine', () => {
  it('the farther from the chain’s next nonce, the less often they look; a booking brings the lowest ones’ looks forward, never one in its retry backoff', async () => {
    const r = await rig({ policy: { bumpAfterMs: 3_600_000 } });
    const url = t.outside.chain.rpcUrl;
    const key = (id: string) => `transfer_confirm:${id}`;
    const job = async (id: string) =>
      (
        await t.db.pool.query<{ in_s: string; priority: number; attempts: number }>(
          'select extract(epoch from run_at - now()) as in_s, priority, attempts from graphile_worker.jobs where key = $1',
          [key(id)],
        )
      ).rows[0];
    const lookIn = async (id: string) => Number((await job(id))?.in_s);
    // Two mined first: distances count from the chain's next nonce (2), not from 0.
    for (const ref of ['mined-0', 'mined-1']) {
      const id = await r.intent(ref, 7n);
      await sendTransfer(r.deps, r.hooks, id);
      await confirmTransfer(r.deps, r.hooks, id);
    }
    await pausePool(url);
    // Nonce 2, then 31 payouts (a signing batch, and the set a booking settles), then three conversions (no set takes
    // them: each is looked at by its own job), at 32, 33 and 34 above the chain's next nonce.
    const lowest = await r.intent('stuck', 31n);
    const payouts: string[] = [];
    for (let i = 1; i <= 31; i++) payouts.push(await r.intent(`behind-${i}`, 100n + BigInt(i)));
    const conversions: string[] = [];
    for (let i = 32; i <= 34; i++)
      conversions.push(await r.intent(`behind-${i}`, 100n + BigInt(i), { purpose: 'conversion' }));
    const [c32, c33, c34] = conversions as [string, string, string];
    await sendTransfer(r.deps, r.hooks, lowest);
    await sendTransfer(r.deps, r.hooks, c32);
    expect((await r.row(lowest)).nonce).toBe('2');
    expect(await Promise.all(conversions.map(async (id) => (await r.row(id)).nonce))).toEqual(['34', '35', '36']);

    // The lowest waits behind nothing of ours: it keeps 5 s, to be sent again or replaced in time.
    await confirmTransfer(r.deps, r.hooks, lowest);
    expect(await lookIn(lowest)).toBeLessThanOrEqual(5);
    // The nearest 32 behind it look every 5 s, the next 32 every 10 s; looks again at priority 0.
    for (const id of [payouts[0] as string, payouts[30] as string, c32]) {
      await confirmTransfer(r.deps, r.hooks, id);
      expect(await lookIn(id)).toBeGreaterThan(4);
      expect(await lookIn(id)).toBeLessThanOrEqual(5);
    }
    for (const id of [c33, c34]) {
      await confirmTransfer(r.deps, r.hooks, id);
      expect(await lookIn(id)).toBeGreaterThan(8);
      expect(await lookIn(id)).toBeLessThanOrEqual(10);
      expect((await job(id))?.priority).toBe(0);
    }
    for (const id of [lowest, ...payouts, ...conversions])
      expect(await r.row(id)).toMatchObject({ status: 'broadcast' });
    // Standing in for waiters hundreds of nonces back (a minute away), one of them in its retry backoff.
    await t.db.pool.query(
      "select graphile_worker.reschedule_jobs(array(select id from graphile_worker.jobs where key = any($1)), run_at => now() + interval '1 minute')",
      [[key(c33), key(c34)]],
    );
    await t.db.pool.query(
      'select graphile_worker.reschedule_jobs(array(select id from graphile_worker.jobs where key = $1), attempts => 1)',
      [key(c34)],
    );

    await resumeMining(url);
    await eventually('all mined', async () => (await chainNonce(r.wallet.address)) === 37);
    // The lowest's booking settles the 31 payouts with it, and brings forward the looks of the lowest still waiting:
    // c33's (its attempts kept); c32 looks within 5 s anyway, and c34 keeps the schedule of a job that failed.
    await confirmTransfer(r.deps, r.hooks, lowest);
    for (const id of [lowest, ...payouts]) expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
    expect(await lookIn(c32)).toBeGreaterThan(0);
    expect(await lookIn(c33)).toBeLessThanOrEqual(0);
    expect((await job(c33))?.attempts).toBe(0);
    expect(await lookIn(c34)).toBeGreaterThan(50);
    expect((await job(c34))?.attempts).toBe(1);
    for (const id of [c32, c33]) await confirmTransfer(r.deps, r.hooks, id);
    expect(await lookIn(c34)).toBeGreaterThan(50);
    await confirmTransfer(r.deps, r.hooks, c34);
    for (const id of [lowest, ...payouts, ...conversions])
      expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
    expect(r.confirmed).toHaveLength(37);
    expect(new Set(r.confirmed).size).toBe(37);
  });

  it('a look that first sees the lowest mined, not deep enough yet, already brings the waiting ones’ looks forward', async () => {
    const r = await rig({ policy: { bumpAfterMs: 3_600_000, confirmations: 2 } });
    const url = t.outside.chain.rpcUrl;
    const key = (id: string) => `transfer_confirm:${id}`;
    const lookIn = async (id: string) =>
      Number(
        (
          await t.db.pool.query<{ in_s: string }>(
            'select extract(epoch from run_at - now()) as in_s from graphile_worker.jobs where key = $1',
            [key(id)],
          )
        ).rows[0]?.in_s,
      );
    await pausePool(url);
    const lowest = await r.intent('stuck-deep', 41n);
    const behind = await r.intent('behind-deep', 42n, { purpose: 'conversion' });
    await sendTransfer(r.deps, r.hooks, lowest);
    // Standing in for a waiter far behind, its look a minute away.
    await t.db.pool.query(
      "select graphile_worker.reschedule_jobs(array(select id from graphile_worker.jobs where key = $1), run_at => now() + interval '1 minute')",
      [key(behind)],
    );
    try {
      await mineBlocks(url, 1);
      await confirmTransfer(r.deps, r.hooks, lowest);
    } finally {
      await resumeMining(url);
    }
    // Seen mined one block deep of two: not booked, but every nonce below the chain's count is used now.
    expect(await r.row(lowest)).toMatchObject({ status: 'broadcast' });
    expect((await r.row(lowest)).block_number).not.toBeNull();
    expect(await lookIn(behind)).toBeLessThanOrEqual(0);
    await mineBlocks(url, 1);
    for (const id of [lowest, behind]) await confirmTransfer(r.deps, r.hooks, id);
    for (const id of [lowest, behind]) expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
  });

  it('behind a lower nonce a person must look at (in review), a waiter keeps its distance’s cadence and is not replaced', async () => {
    const r = await rig({ policy: { bumpAfterMs: 0 } });
    const url = t.outside.chain.rpcUrl;
    await pausePool(url);
    const lowest = await r.intent('in-review', 51n);
    const behind = await r.intent('behind-review', 52n);
    await sendTransfer(r.deps, r.hooks, lowest);
    await t.db.pool.query(
      "update chain_transfers set status = 'needs_review', reason = 'test: a person looks at it' where transfer_id = $1",
      [lowest],
    );
    try {
      await confirmTransfer(r.deps, r.hooks, behind);
      expect(await r.kinds(behind)).toEqual(['transfer']);
    } finally {
      await resumeMining(url);
    }
  });
});

describe('a transfer the host wallet cannot pay yet', () => {
  it('waits unsigned; a person cancels it: it fails before anything is signed, its owner is told, no nonce used', async () => {
    const r = await rig();
    const id = await r.intent('unpayable', 10n ** 30n);
    await expect(sendTransfer(r.deps, r.hooks, id)).rejects.toThrow(/balance too low/);
    expect(await applyTransferAction(t.db.db, id, 'cancel', 'gina')).toMatchObject({
      from: 'intent',
      to: 'intent',
      requested: 'cancel',
    });
    await sendTransfer(r.deps, r.hooks, id);
    expect(await r.row(id)).toMatchObject({
      status: 'failed',
      last_error: 'cancelled',
      nonce: null,
      requested_action: null,
    });
    expect(r.failed.map((f) => f.failure.code)).toEqual(['cancelled']);
    expect(await r.versions(id)).toEqual([]);
    const next = await r.intent('after-unpayable', 5n);
    await sendTransfer(r.deps, r.hooks, next);
    expect(await r.row(next)).toMatchObject({ nonce: '0' });
  });
});

describe('a pool that forgot several transfers of ours', () => {
  it('the ones waiting behind the lowest are handed to the node again without a bump: once it is mined, all are', async () => {
    const r = await rig({ policy: { bumpAfterMs: 60_000 } });
    const url = t.outside.chain.rpcUrl;
    await pausePool(url);
    const ids: string[] = [];
    for (const amount of [1_001n, 1_002n, 1_003n]) {
      const id = await r.intent(`forgotten-${amount}`, amount);
      await sendTransfer(r.deps, r.hooks, id);
      ids.push(id);
    }
    await dropAllPending(url);
    // Behind a backlog of checks the waiters' come first; the lowest's own check sends it again last.
    for (const id of [ids[2], ids[1], ids[0]] as string[]) await confirmTransfer(r.deps, r.hooks, id);
    await mineBlocks(url, 1);
    expect(await chainNonce(r.wallet.address)).toBe(3);
    await resumeMining(url);
    for (const id of ids) await confirmTransfer(r.deps, r.hooks, id);
    for (const id of ids) expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
    for (const id of ids) expect(await r.kinds(id)).toEqual(['transfer']);
  });
});
