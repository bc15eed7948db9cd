/**
 * A send signs the host wallet's other queued intents with its own (src/pipeline/transfer/sign-batch.ts), driven step
 * by step on anvil: every transfer of the batch at the next nonce, each once, its own send job gone; what the wallet
 * holds counted across the batch; and whatever a person or the chain said about a companion (a cancel, a receiver that
 * refuses, a send job out of attempts) left to that transfer's own send, without a gap in the nonces.
 */
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import type { ChainWallet } from '../../src/integrations/wallet/index.ts';
import { parseTransaction, type Hex } from 'viem';
import type { MinedReceipt } from '../../src/integrations/wallet/index.ts';
import { accounts, postJournal } from '../../src/ledger/index.ts';
import { confirmCompanions } from '../../src/pipeline/transfer/confirm-set.ts';
import type { Transfer, TransferHooks } from '../../src/pipeline/transfer/model.ts';
import { settleMined } from '../../src/pipeline/transfer/settle.ts';
import { jobWithKeyExists } from '../../src/jobs/index.ts';
import { checkLedger } from '../../src/ledger/index.ts';
import {
  applyTransferAction,
  BROADCAST_WINDOW,
  confirmTransfer,
  sendTransfer,
  TransferNotReady,
} from '../../src/pipeline/transfer/index.ts';
import { makeRejectingWallet } from '../../src/simulators/chain-faults.ts';
import { rpc } from '../../src/simulators/index.ts';
import { checkLedgerAgainstChain } from '../../src/treasury/index.ts';
import { eventually } from '../support/outside.ts';
import { freshAddress, useTransferWorld, type Rig } from '../support/transfers.ts';

const t = useTransferWorld();
const ETH = 10n ** 18n;

async function signedNonces(r: Rig, ids: readonly string[]): Promise<Array<string | null>> {
  return Promise.all(ids.map(async (id) => (await r.row(id)).nonce as string | null));
}

/**
 * The rig's wallet with `meanwhile` done at the nonce read, the last network read before the signing commit: what
 * another run or a person does between a send's reads and its commit.
 */
function atNonceRead(r: Rig, meanwhile: () => Promise<unknown>): ChainWallet {
  return {
    ...r.wallet,
    nonceAt: async (block) => {
      await meanwhile();
      return r.wallet.nonceAt(block);
    },
  };
}

async function confirmAll(r: Rig, ids: readonly string[]): Promise<void> {
  for (const id of ids) await confirmTransfer(r.deps, r.hooks, id);
}

describe('a send takes the wallet’s queued intents with it', () => {
  it('signs them at the next nonces in one commit, each once: their own send jobs are removed, their steps send nothing more', async () => {
    const r = await rig();
    const to = [freshAddress(), freshAddress(), freshAddress(), freshAddress(), freshAddress()];
    const ids = [
      await r.intent('b0', 1_000n, { to: to[0] }),
      await r.intent('b1', 2_000n, { to: to[1], asset: 'usdt' }),
      await r.intent('b2', 3_000n, { to: to[2] }),
      await r.intent('b3', 4_000n, { to: to[3], asset: 'usdt' }),
      await r.intent('b4', 5_000n, { to: to[4] }),
    ];
    await sendTransfer(r.deps, r.hooks, ids[2] as string);

    // The job's own transfer first, then the others oldest first.
    expect(await signedNonces(r, ids)).toEqual(['1', '2', '0', '3', '4']);
    for (const id of ids) {
      expect(await r.row(id)).toMatchObject({ status: 'broadcast' });
      expect(await r.versions(id)).toHaveLength(1);
      expect(await jobWithKeyExists(t.db.db, `transfer_confirm:${id}`)).toBe(true);
    }
    for (const id of ids.filter((_, i) => i !== 2))
      expect(await jobWithKeyExists(t.db.db, `transfer_send:${id}`)).toBe(false);

    // Their jobs run anyway (one was already taken when the batch removed it): nothing is signed again.
    for (const id of ids) await sendTransfer(r.deps, r.hooks, id);
    await confirmAll(r, ids);
    for (const id of ids) {
      expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
      expect(await r.versions(id)).toHaveLength(1);
    }
    expect(await t.chainNonce(r.wallet.address)).toBe(5);
    expect(await t.outside.balanceOf(to[0] as string)).toBe(1_000n);
    expect(await t.outside.balanceOf(to[2] as string)).toBe(3_000n);
    expect(await t.outside.balanceOf(to[4] as string)).toBe(5_000n);
    expect(await t.outside.usdtBalanceOf(to[1] as string)).toBe(2_000n);
    expect(await t.outside.usdtBalanceOf(to[3] as string)).toBe(4_000n);
    expect(r.confirmed).toHaveLength(5);
  });

  it('counts what the batch may spend: a transfer the balances no longer cover waits for its own send, which reports it', async () => {
    // The rig's wallet holds 100 ETH and 10^12 USDT units.
    const r = await rig();
    const own = await r.intent('own', 60n * ETH);
    const usdtFits = await r.intent('usdt-fits', 600_000_000_000n, { asset: 'usdt' });
    const usdtShort = await r.intent('usdt-short', 600_000_000_000n, { asset: 'usdt' });
    const ethShort = await r.intent('eth-short', 60n * ETH);
    const ethFits = await r.intent('eth-fits', ETH);
    await sendTransfer(r.deps, r.hooks, own);

    expect(await signedNonces(r, [own, usdtFits, ethFits])).toEqual(['0', '1', '2']);
    for (const id of [usdtShort, ethShort]) {
      expect(await r.row(id)).toMatchObject({ status: 'intent', nonce: null, tx_hash: null });
      expect(await jobWithKeyExists(t.db.db, `transfer_send:${id}`)).toBe(true);
    }
    await confirmAll(r, [own, usdtFits, ethFits]);
    // Their own sends find the wallet short, say so and leave no gap.
    await expect(sendTransfer(r.deps, r.hooks, usdtShort)).rejects.toBeInstanceOf(TransferNotReady);
    await expect(sendTransfer(r.deps, r.hooks, ethShort)).rejects.toBeInstanceOf(TransferNotReady);
    const alerts = await t.db.db
      .selectFrom('alerts')
      .select('subject')
      .where('rule', '=', 'host_wallet_insufficient')
      .execute();
    expect(alerts.map((a) => a.subject).sort()).toEqual(['eth', 'usdt']);
    expect(await t.chainNonce(r.wallet.address)).toBe(3);
  });
});

describe('what a person or the chain said about a companion', () => {
  it('a cancel, a receiver that refuses, a send job out of attempts: each stays out, the others go without a gap', async () => {
    const r = await rig();
    const refusing = freshAddress();
    await makeRejectingWallet(t.outside.chain.rpcUrl, refusing);
    const own = await r.intent('own', 10n);
    const cancelled = await r.intent('cancelled', 11n);
    const refused = await r.intent('refused', 12n, { to: refusing });
    const outOfAttempts = await r.intent('out-of-attempts', 13n);
    const plain = await r.intent('plain', 14n);
    await applyTransferAction(t.db.db, cancelled, 'cancel', 'carol');
    await sql`select graphile_worker.permanently_fail_jobs(array(
        select id from graphile_worker.jobs where key = ${`transfer_send:${outOfAttempts}`}), 'gave up')`.execute(
      t.db.db,
    );
    await sendTransfer(r.deps, r.hooks, own);

    expect(await signedNonces(r, [own, plain])).toEqual(['0', '1']);
    for (const id of [cancelled, refused, outOfAttempts])
      expect(await r.row(id)).toMatchObject({ status: 'intent', nonce: null });

    // Each one's own send decides it as it would have alone.
    await sendTransfer(r.deps, r.hooks, cancelled);
    await sendTransfer(r.deps, r.hooks, refused);
    expect(await r.row(cancelled)).toMatchObject({ status: 'failed', last_error: 'cancelled', nonce: null });
    expect(await r.row(refused)).toMatchObject({ status: 'failed', last_error: 'estimate_failed', nonce: null });
    // A person's retry of the job out of attempts is what sends it: at the next nonce.
    await sendTransfer(r.deps, r.hooks, outOfAttempts);
    expect(await r.row(outOfAttempts)).toMatchObject({ status: 'broadcast', nonce: '2' });
    await confirmAll(r, [own, plain, outOfAttempts]);
    expect(await t.chainNonce(r.wallet.address)).toBe(3);
  });

  it('a companion cancelled between the reads and the commit is left out under its row lock: no gap', async () => {
    const r = await rig();
    const own = await r.intent('own', 20n);
    const late = await r.intent('cancelled-late', 21n);
    const plain = await r.intent('plain', 22n);
    r.deps.wallet = atNonceRead(r, () => applyTransferAction(t.db.db, late, 'cancel', 'carol'));
    await sendTransfer(r.deps, r.hooks, own);
    r.deps.wallet = r.wallet;

    expect(await signedNonces(r, [own, plain, late])).toEqual(['0', '1', null]);
    expect(await jobWithKeyExists(t.db.db, `transfer_send:${late}`)).toBe(true);
    await sendTransfer(r.deps, r.hooks, late);
    expect(await r.row(late)).toMatchObject({ status: 'failed', last_error: 'cancelled' });
    await confirmAll(r, [own, plain]);
    expect(await t.chainNonce(r.wallet.address)).toBe(2);
  });

  it('the job’s own transfer cancelled before the commit: nothing is signed, the companions keep their jobs', async () => {
    const r = await rig();
    const own = await r.intent('own', 30n);
    const other = await r.intent('other', 31n);
    r.deps.wallet = atNonceRead(r, () => applyTransferAction(t.db.db, own, 'cancel', 'carol'));
    await expect(sendTransfer(r.deps, r.hooks, own)).rejects.toBeInstanceOf(TransferNotReady);
    r.deps.wallet = r.wallet;

    expect(await signedNonces(r, [own, other])).toEqual([null, null]);
    expect(await jobWithKeyExists(t.db.db, `transfer_send:${other}`)).toBe(true);
    await sendTransfer(r.deps, r.hooks, own);
    expect(await r.row(own)).toMatchObject({ status: 'failed', last_error: 'cancelled' });
    await sendTransfer(r.deps, r.hooks, other);
    expect(await signedNonces(r, [other])).toEqual(['0']);
  });
});

describe('runs that meet', () => {
  it('a send whose transfer another run’s batch signed meanwhile ends without an error: one version, its confirm queued', async () => {
    const r = await rig();
    const own = await r.intent('own', 40n);
    const other = await r.intent('other', 41n);
    // The other transfer's job (delivered while this one stalls) signs both first.
    r.deps.wallet = atNonceRead(r, () => sendTransfer({ ...r.deps, wallet: r.wallet }, r.hooks, other));
    await sendTransfer(r.deps, r.hooks, own);
    r.deps.wallet = r.wallet;

    expect(await signedNonces(r, [other, own])).toEqual(['0', '1']);
    for (const id of [own, other]) expect(await r.versions(id)).toHaveLength(1);
    expect(await jobWithKeyExists(t.db.db, `transfer_confirm:${own}`)).toBe(true);
    await confirmAll(r, [own, other]);
    expect(await t.chainNonce(r.wallet.address)).toBe(2);
  });

  it('a batch is broadcast in nonce order, a window at a time; once the node has not answered one, no lane starts another, and the confirm steps send them', async () => {
    const r = await rig();
    const count = BROADCAST_WINDOW + 3;
    const to = Array.from({ length: count }, () => freshAddress());
    const ids: string[] = [];
    for (const [i, address] of to.entries()) ids.push(await r.intent(`n${i}`, 50n + BigInt(i), { to: address }));
    const started: number[] = [];
    let inFlight = 0;
    let mostInFlight = 0;
    r.deps.wallet = {
      ...r.wallet,
      broadcast: async (rawTx) => {
        const nonce = parseTransaction(rawTx).nonce as number;
        started.push(nonce);
        inFlight += 1;
        mostInFlight = Math.max(mostInFlight, inFlight);
        try {
          // The lowest nonce's call fails at once; the others are answered later, each by a lane that could go on.
          if (nonce === 0) {
            await new Promise((resolve) => setTimeout(resolve, 1));
            throw new Error('socket hang up');
          }
          await new Promise((resolve) => setTimeout(resolve, 20));
          return await r.wallet.broadcast(rawTx);
        } finally {
          inFlight -= 1;
        }
      },
    };
    await sendTransfer(r.deps, r.hooks, ids[0] as string);
    r.deps.wallet = r.wallet;

    expect(started).toEqual(Array.from({ length: BROADCAST_WINDOW }, (_, i) => i));
    expect(mostInFlight).toBe(BROADCAST_WINDOW);
    expect(await signedNonces(r, ids)).toEqual(ids.map((_, i) => String(i)));
    expect(await t.chainNonce(r.wallet.address)).toBe(0);
    // Each confirm step sends its stored bytes if the node does not know them; the node mines them by nonce.
    await confirmAll(r, ids);
    await confirmAll(r, ids);
    for (const id of ids) expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
    for (const id of ids) expect(await r.versions(id)).toHaveLength(1);
    expect(await t.outside.balanceOf(to[count - 1] as string)).toBe(50n + BigInt(count - 1));
  });

  it('a node that refuses a nonce ahead of the ones it holds (no queue) raises no alert: the confirm steps send it again behind them', async () => {
    const r = await rig({ viaProxy: true });
    t.proxy.setFaults({ refuseGaps: true });
    const to = Array.from({ length: BROADCAST_WINDOW }, () => freshAddress());
    const ids: string[] = [];
    for (const [i, address] of to.entries()) ids.push(await r.intent(`g${i}`, 70n + BigInt(i), { to: address }));
    // The lowest nonce reaches the node last: every other one arrives with a gap before it.
    r.deps.wallet = {
      ...r.wallet,
      broadcast: async (rawTx) => {
        if (parseTransaction(rawTx).nonce === 0) await new Promise((resolve) => setTimeout(resolve, 50));
        return r.wallet.broadcast(rawTx);
      },
    };
    const refusedBefore = t.proxy.gapsRefused();
    await sendTransfer(r.deps, r.hooks, ids[0] as string);
    r.deps.wallet = r.wallet;
    expect(t.proxy.gapsRefused() - refusedBefore).toBe(BROADCAST_WINDOW - 1);
    expect(await t.chainNonce(r.wallet.address)).toBe(1);

    await confirmAll(r, ids);
    await confirmAll(r, ids);
    for (const id of ids) expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
    for (const id of ids) expect(await r.versions(id)).toHaveLength(1);
    for (const [i, address] of to.entries()) expect(await t.outside.balanceOf(address)).toBe(70n + BigInt(i));
    const refused = await t.db.db
      .selectFrom('alerts')
      .select('subject')
      .where('rule', '=', 'transfer_refused')
      .where('subject', 'in', ids)
      .execute();
    expect(refused).toEqual([]);
  });
});

describe('a confirm run settles the wallet’s other mined transfers with its own', () => {
  it('each once, from its own receipt, its gas booked and its confirm job removed; one not mined yet, one a person asked something of and one whose job is out of attempts are left to their own jobs', async () => {
    const r = await rig();
    const to = [freshAddress(), freshAddress(), freshAddress(), freshAddress(), freshAddress()];
    const ids = [
      await r.intent('c0', 60n, { to: to[0] }),
      await r.intent('c1', 61n, { to: to[1], asset: 'usdt' }),
      await r.intent('c2', 62n, { to: to[2] }),
      await r.intent('asked', 63n, { to: to[3] }),
      await r.intent('out-of-attempts', 64n, { to: to[4] }),
    ];
    await sendTransfer(r.deps, r.hooks, ids[0] as string);
    const [own, c1, c2, asked, outOfAttempts] = ids as [string, string, string, string, string];
    // Mined, as all of them are, but a person asked for a cancel: its own run carries that out.
    await applyTransferAction(t.db.db, asked, 'cancel', 'carol');
    await sql`select graphile_worker.permanently_fail_jobs(array(
        select id from graphile_worker.jobs where key = ${`transfer_confirm:${outOfAttempts}`}), 'gave up')`.execute(
      t.db.db,
    );
    // Signed while the chain mines nothing: broadcast, not mined.
    await rpc(t.outside.chain.rpcUrl, 'evm_setAutomine', [false]);
    const unmined = await r.intent('unmined', 65n);
    try {
      await sendTransfer(r.deps, r.hooks, unmined);
      await confirmTransfer(r.deps, r.hooks, own);
    } finally {
      await rpc(t.outside.chain.rpcUrl, 'evm_setAutomine', [true]);
    }

    for (const id of [own, c1, c2]) {
      expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
      expect(await r.gasBooked(id)).toBe(await t.receiptGas((await r.row(id)).tx_hash as string));
    }
    // The run's own job is completed by the queue when the run returns (called by hand here); the others' are gone.
    for (const id of [c1, c2]) expect(await jobWithKeyExists(t.db.db, `transfer_confirm:${id}`)).toBe(false);
    const refs = async (of: readonly string[]) => Promise.all(of.map(async (id) => (await r.row(id)).ref as string));
    expect([...r.confirmed].sort()).toEqual((await refs([own, c1, c2])).sort());
    for (const id of [asked, outOfAttempts, unmined]) {
      expect(await r.row(id)).toMatchObject({ status: 'broadcast' });
      expect(await r.gasBooked(id)).toBeNull();
      expect(await jobWithKeyExists(t.db.db, `transfer_confirm:${id}`)).toBe(true);
    }
    expect(await t.outside.usdtBalanceOf(to[1] as string)).toBe(61n);

    // Their own runs settle them as they would have alone; nothing is booked twice.
    await rpc(t.outside.chain.rpcUrl, 'evm_mine', []);
    for (const id of [asked, unmined, c1]) await confirmTransfer(r.deps, r.hooks, id);
    for (const id of [asked, unmined]) expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
    expect(r.confirmed).toHaveLength(5);
    expect(new Set(r.confirmed).size).toBe(5);
    expect((await checkLedger(t.db.db)).ok).toBe(true);
  });
  it('a set and a single settlement at once wait for each other in one order only: the owners’ accounts, then the gas', async () => {
    const r = await rig();
    // The gas rows exist before world:payees (as in a deployment, whose first conversion books gas first).
    const first = await r.intent('gas-first', 100n);
    await sendTransfer(r.deps, r.hooks, first);
    await confirmTransfer(r.deps, r.hooks, first);
    const own = await r.intent('set-own', 101n);
    const companion = await r.intent('set-companion', 102n);
    const single = await r.intent('single', 103n);
    await sendTransfer(r.deps, r.hooks, own);
    // The single one's job is not queued (it runs elsewhere), so the set leaves it to that run.
    await sql`select graphile_worker.permanently_fail_jobs(array(
        select id from graphile_worker.jobs where key = ${`transfer_confirm:${single}`}), 'runs elsewhere')`.execute(
      t.db.db,
    );

    // Each owner books a completion on world:payees, as a direct payout does; the single one then waits, holding it.
    let holding!: () => void;
    const held = new Promise<void>((resolve) => (holding = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const completing: TransferHooks = {
      onConfirmed: async (trx, transfer) => {
        await postJournal(trx, {
          kind: 'test_completed',
          ref: transfer.transfer_id,
          entries: [
            {
              account: { code: `world:test-owner-${transfer.transfer_id}`, asset: 'eth', allowNegative: true },
              amount: -1n,
            },
            { account: accounts.payees('eth'), amount: 1n },
          ],
        });
        if (transfer.transfer_id === single) {
          holding();
          await released;
        }
      },
      onFailed: async () => undefined,
    };
    const hooks = { conversion: completing, payout: completing };
    // world:payees exists after the gas rows: a set locking all its rows in id order at once would take the gas
    // rows first, then wait for world:payees while the single one, holding it, waits for the gas rows.
    await t.db.db.transaction().execute((trx) =>
      postJournal(trx, {
        kind: 'test_completed',
        ref: `${own}:setup`,
        entries: [
          { account: { code: 'world:test-setup', asset: 'eth', allowNegative: true }, amount: -1n },
          { account: accounts.payees('eth'), amount: 1n },
        ],
      }),
    );
    const { rows: ids } = await sql<{ code: string; id: string }>`
      select code, id::text from ledger_accounts where asset = 'eth'
        and code in ('world:payees', 'world:ethereum', 'platform:network_costs')`.execute(t.db.db);
    const id = (code: string) => BigInt(ids.find((row) => row.code === code)?.id ?? '-1');
    expect(id('world:payees')).toBeGreaterThan(id('world:ethereum'));
    expect(id('world:payees')).toBeGreaterThan(id('platform:network_costs'));
    const singleRow = (await r.row(single)) as unknown as Transfer;
    const receipt = (await r.wallet.receipt(singleRow.tx_hash as Hex)) as MinedReceipt;
    const settling = t.db.db.transaction().execute((trx) =>
      settleMined(trx, hooks, single, {
        version: { tx_hash: singleRow.tx_hash as string, raw_tx: singleRow.raw_tx as string },
        receipt,
        outcome: { status: 'confirmed' },
      }),
    );
    // Settled without ever holding (a failure before its hook): the test fails here instead of waiting for it.
    await Promise.race([
      held,
      settling.then(() => {
        throw new Error('the single settlement ended without booking its owner first');
      }),
    ]);
    let set: Promise<void>;
    try {
      set = confirmCompanions(r.deps, hooks, (await r.row(own)) as unknown as Transfer, r.deps.logger);
      // The set reaches the end of its first group and waits there for world:payees.
      await eventually('the set waits for a row lock at the end of its group', async () => {
        const { rows } = await sql<{ n: number }>`
          select count(*)::int as n from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock'
            and query like '%payrail_ledger_group_end%'`.execute(t.db.db);
        return rows[0]?.n === 1;
      });
    } finally {
      release();
    }
    expect(await settling).toBe(true);
    await set;

    for (const id of [companion, single]) {
      expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
      expect(await r.gasBooked(id)).toBe(await t.receiptGas((await r.row(id)).tx_hash as string));
    }
    expect((await checkLedger(t.db.db)).ok).toBe(true);
  });

  it('a set whose transaction fails keeps nothing of it: each companion is confirmed by its own job, once', async () => {
    const r = await rig();
    const ids = [await r.intent('f0', 70n), await r.intent('f1', 71n), await r.intent('f2', 72n)];
    const [own, c1, c2] = ids as [string, string, string];
    await sendTransfer(r.deps, r.hooks, own);
    const refused = (await r.row(c2)).ref as string;
    const hooks = {
      ...r.hooks,
      payout: {
        ...r.hooks.payout,
        onConfirmed: async (trx: Parameters<Rig['hooks']['payout']['onConfirmed']>[0], transfer: Transfer) => {
          if (transfer.ref === refused) throw new Error('the owner could not book it');
          await r.hooks.payout.onConfirmed(trx, transfer);
        },
      },
    };
    await confirmTransfer(r.deps, hooks, own);

    expect(await r.row(own)).toMatchObject({ status: 'confirmed' });
    for (const id of [c1, c2]) {
      expect(await r.row(id)).toMatchObject({ status: 'broadcast' });
      expect(await r.gasBooked(id)).toBeNull();
      expect(await jobWithKeyExists(t.db.db, `transfer_confirm:${id}`)).toBe(true);
    }
    for (const id of [c1, c2]) await confirmTransfer(r.deps, r.hooks, id);
    for (const id of ids) expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
    // The hook recorded c1 inside the failed set too (the rig's hooks only count calls): the books hold each once.
    for (const id of ids) expect(await r.gasBooked(id)).toBe(await t.receiptGas((await r.row(id)).tx_hash as string));
    expect((await checkLedger(t.db.db)).ok).toBe(true);
  });
});

describe('the order the worker takes them in', () => {
  const priorityOf = async (key: string) =>
    (await t.db.pool.query<{ priority: number }>('select priority from graphile_worker.jobs where key = $1', [key]))
      .rows[0]?.priority;

  it('the wallet’s sends and a conversion’s first look go ahead of the per-payment jobs; its looks again, and a payout’s looks, do not', async () => {
    const r = await rig();
    const payout = await r.intent('po', 70n);
    const conversion = await r.intent('cv', 71n, { purpose: 'conversion' });
    expect(await priorityOf(`transfer_send:${payout}`)).toBe(-1);
    expect(await priorityOf(`transfer_send:${conversion}`)).toBe(-1);

    // Signed while the chain mines nothing: the confirm runs find them unmined and queue a look again later.
    await rpc(t.outside.chain.rpcUrl, 'evm_setAutomine', [false]);
    try {
      await sendTransfer(r.deps, r.hooks, payout);
      expect(await signedNonces(r, [payout, conversion])).toEqual(['0', '1']);
      expect(await priorityOf(`transfer_confirm:${conversion}`)).toBe(-1);
      expect(await priorityOf(`transfer_confirm:${payout}`)).toBe(0);
      for (const id of [conversion, payout]) await confirmTransfer(r.deps, r.hooks, id);
      for (const id of [conversion, payout]) expect(await r.row(id)).toMatchObject({ status: 'broadcast' });
      // A few conversions' looks again ahead of everything, each waiting out a node that hangs, could hold every slot.
      const later = await t.db.pool.query<{ key: string; priority: number; later: boolean }>(
        'select key, priority, run_at > now() as later from graphile_worker.jobs where key = any($1) order by key',
        [[`transfer_confirm:${conversion}`, `transfer_confirm:${payout}`].sort()],
      );
      expect(later.rows).toEqual(
        [conversion, payout]
          .map((id) => `transfer_confirm:${id}`)
          .sort()
          .map((key) => ({ key, priority: 0, later: true })),
      );
    } finally {
      await rpc(t.outside.chain.rpcUrl, 'evm_setAutomine', [true]);
    }
    await rpc(t.outside.chain.rpcUrl, 'evm_mine', []);
    await confirmAll(r, [payout, conversion]);
    for (const id of [payout, conversion]) expect(await r.row(id)).toMatchObject({ status: 'confirmed' });
    expect([...r.confirmed].sort()).toEqual([(await r.row(conversion)).ref, (await r.row(payout)).ref].sort());
  });
});

describe('the ledger against the chain while a transfer is in flight', () => {
  it('a broadcast transfer mined before its confirm step looked is counted: its gas as the chain shows it', async () => {
    const r = await rig();
    const side = { wallet: r.wallet, usdtContract: t.outside.usdt };
    const gasNotBooked = async () =>
      (await checkLedgerAgainstChain(t.db.db, side)).assets.find((a) => a.asset === 'eth')!.gasNotBooked;
    const before = await gasNotBooked();
    const id = await r.intent('in-flight', 80n);
    await sendTransfer(r.deps, r.hooks, id);
    const row = await r.row(id);
    expect(row).toMatchObject({ status: 'broadcast', block_number: null });
    expect((await gasNotBooked()) - before).toBe(await t.receiptGas(row.tx_hash as string));
  });
});

function rig(options?: { viaProxy?: boolean }): Promise<Rig> {
  return t.rig(options);
}
