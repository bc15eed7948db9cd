/**
 * What a payout test reads back from its world, straight from the tables and the simulator rather than the API: the
 * channel's payouts, their exchanges at ChangeNow and transfers on chain, the ledger's balances and journals, and the
 * alerts logged about them.
 */
import { expect } from 'vitest';
import { checkLedger } from '../../src/ledger/index.ts';
import { rpc } from '../../src/simulators/index.ts';
import type { TestDatabase } from './db.ts';
import { worldTest, type WorldOptions } from './fixtures.ts';
import type { Outside } from './outside.ts';
import type { LogSink } from './payrail.ts';

export interface PayoutRow {
  payout_id: string;
  kind: string;
  status: string;
  reason: string | null;
  asset: string;
  amount: string;
  exchange_id: string | null;
  payin_address: string | null;
  transfer_id: string | null;
  attempts: number;
  last_error: string | null;
  top_ups: number;
  hold_until: Date | null;
  amount_out: string | null;
  poll_deadline_at: Date | null;
  created_at: Date;
  completed_at: Date | null;
}

export interface PayoutTransferRow {
  transfer_id: string;
  status: string;
  tx_hash: string | null;
  nonce: string | null;
  to_address: string;
  amount: string;
}

/** The alerts logged about one payout: its own, its transfer's (`ref` is the payout id), its conversion's. */
export function alertsFor(logs: LogSink, ref: string): string[] {
  return logs.lines
    .filter((l) => l.event === 'alert' && (l.payoutId === ref || l.ref === ref || l.conversionId === ref))
    .map((l) => String(l.alert));
}

export function distinct(names: string[]): string[] {
  return [...new Set(names)].sort();
}

export function payoutState({ db, outside }: { db: TestDatabase; outside: Outside }) {
  async function payoutsOf(channelId: string): Promise<PayoutRow[]> {
    const { rows } = await db.pool.query<PayoutRow>(
      `select payout_id, kind, status, reason, asset, amount::text, exchange_id, payin_address, transfer_id, attempts, last_error, top_ups, hold_until,
              amount_out, poll_deadline_at, created_at, completed_at
       from payouts where channel_id = $1 order by created_at`,
      [channelId],
    );
    return rows;
  }

  return {
    payoutsOf,

    /** The channel's payout, expecting it to have just one. */
    onlyPayout: async (channelId: string): Promise<PayoutRow> => {
      const rows = await payoutsOf(channelId);
      expect(rows).toHaveLength(1);
      return rows[0] as PayoutRow;
    },

    hasPayout: async (channelId: string, status: string): Promise<boolean> => {
      return (await payoutsOf(channelId)).some((p) => p.status === status);
    },

    /** The exchanges ChangeNow holds for a payout (or conversion) id. */
    exchangesFor: (ref: string) => {
      return [...outside.sim.exchanges.values()].filter((e) => e.userId === ref);
    },

    transfersFor: async (payoutId: string): Promise<PayoutTransferRow[]> => {
      const { rows } = await db.pool.query<PayoutTransferRow>(
        "select transfer_id, status, tx_hash, nonce::text, to_address, amount::text from chain_transfers where purpose = 'payout' and ref = $1",
        [payoutId],
      );
      return rows;
    },

    /** The channel's ledger balances by `<account>/<asset>`, with `channel` standing for `channel:<id>`. */
    balances: async (channelId: string): Promise<Record<string, string>> => {
      const { rows } = await db.pool.query<{ code: string; asset: string; balance: string }>(
        'select code, asset, balance::text from ledger_accounts where code like $1',
        [`channel:${channelId}%`],
      );
      return Object.fromEntries(
        rows.map((r) => [`${r.code.replace(`channel:${channelId}`, 'channel')}/${r.asset}`, r.balance]),
      );
    },

    /** The kinds of the journals booked under `ref` or one of its sub-refs (`<ref>:…`), in order. */
    journalKinds: async (ref: string): Promise<string[]> => {
      const { rows } = await db.pool.query<{ kind: string }>(
        "select kind from ledger_journals where ref = $1 or ref like $1 || ':%' order by id",
        [ref],
      );
      return rows.map((r) => r.kind);
    },

    expectLedgerClean: async (): Promise<void> => {
      expect((await checkLedger(db.db)).problems).toEqual([]);
    },

    conversionsDone: async (paymentIds: string[]): Promise<boolean> => {
      const { rows } = await db.pool.query<{ conversion_status: string }>(
        'select conversion_status from payments where payment_id = any($1::numeric[])',
        [paymentIds],
      );
      return rows.length === paymentIds.length && rows.every((r) => r.conversion_status === 'completed');
    },

    /** How many transactions the host wallet has sent (its next nonce). */
    hostNonce: async (): Promise<number> => {
      return Number.parseInt(
        String(await rpc(outside.chain.rpcUrl, 'eth_getTransactionCount', [outside.hostAddress, 'latest'])),
        16,
      );
    },
  };
}

export type PayoutState = ReturnType<typeof payoutState>;

/**
 * The `test` of a file that follows payouts through the world: worldTest's, its payrails logging into `logs`, with
 * payoutState's readers as fixtures and `alertsFor` reading the test's `logs` (or those given).
 */
export function payoutTest(options: Omit<WorldOptions, 'logs'> = {}) {
  return (
    worldTest({ ...options, logs: true })
      .extend('state', ({ world }) => payoutState(world))
      /** A new instant channel paying out in `payoutCurrency` on `payoutNetwork` to `walletAddress`. */
      .extend(
        'instant',
        ({ channel }) =>
          (payoutCurrency: string, payoutNetwork: string, walletAddress: string) =>
            channel({ payoutStrategy: 'instant', payoutCurrency, payoutNetwork, walletAddress }),
      )
      .extend('payoutsOf', ({ state }) => state.payoutsOf)
      .extend('onlyPayout', ({ state }) => state.onlyPayout)
      .extend('hasPayout', ({ state }) => state.hasPayout)
      .extend('exchangesFor', ({ state }) => state.exchangesFor)
      .extend('transfersFor', ({ state }) => state.transfersFor)
      .extend('balances', ({ state }) => state.balances)
      .extend('journalKinds', ({ state }) => state.journalKinds)
      .extend('expectLedgerClean', ({ state }) => state.expectLedgerClean)
      .extend('conversionsDone', ({ state }) => state.conversionsDone)
      .extend('hostNonce', ({ state }) => state.hostNonce)
      .extend(
        'alertsFor',
        ({ logs }) =>
          (ref: string, from: LogSink = logs) =>
            alertsFor(from, ref),
      )
  );
}
