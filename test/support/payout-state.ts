/**
 * What a payout test reads back from its world: straight from the tables and the simulator (payoutTest: the channel's
 * payouts, their exchanges at ChangeNow and transfers on chain, the ledger's balances and journals, and the alerts
 * logged about them), or as an operator sees it through the admin API (payoutApiTest).
 */
import { expect } from 'vitest';
import { checkLedger } from '../../src/ledger/index.ts';
import { rpc } from '../../src/simulators/index.ts';
import type { TestDatabase } from './db.ts';
import { worldTest, type TestApp, type WorldOptions } from './fixtures.ts';
import { eventually, type Outside } from './outside.ts';
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

/** A new instant channel's body, paying out `payoutCurrency` on `payoutNetwork` to `walletAddress`. */
export function instantBody(payoutCurrency: string, payoutNetwork: string, walletAddress: string) {
  return { payoutStrategy: 'instant', payoutCurrency, payoutNetwork, walletAddress };
}

/**
 * Waits until the payout `read` returns is in `status`, and returns it as it is then. When it does not get there, the
 * error says where it ended up instead: a payout that went elsewhere is the finding.
 */
export async function untilStatus<T extends { status?: string; reason?: string | null }>(
  label: string,
  read: () => Promise<T>,
  status: string,
  timeoutMs = 45_000,
): Promise<T> {
  let last: T | undefined;
  try {
    await eventually(`payout ${label} ${status}`, async () => (last = await read()).status === status, timeoutMs);
  } catch (error) {
    throw new Error(`${(error as Error).message} (last: ${last?.status}, ${last?.reason ?? 'no reason'})`, {
      cause: error,
    });
  }
  return read();
}

/** `expectLedgerClean`: the ledger's own consistency check finds nothing wrong. */
export function expectLedgerCleanOn(db: TestDatabase) {
  return async (): Promise<void> => {
    expect((await checkLedger(db.db)).problems).toEqual([]);
  };
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

  /** The audit rows about `subject` (a payout id, `channel:<id>`, …), in order. */
  function auditOf(subject: string) {
    return db.db
      .selectFrom('audit_log')
      .select(['actor', 'action', 'subject', 'details'])
      .where('subject', '=', subject)
      .orderBy('id')
      .execute();
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

    expectLedgerClean: expectLedgerCleanOn(db),

    /** The payout each of the payments is part of, as `{ payout_id }` rows (null: free for the next batch). */
    payoutLinks: async (paymentIds: string[]): Promise<Array<{ payout_id: string | null }>> => {
      const { rows } = await db.pool.query<{ payout_id: string | null }>(
        'select payout_id from payments where payment_id = any($1::numeric[])',
        [paymentIds],
      );
      return rows;
    },

    conversionsDone: async (paymentIds: string[]): Promise<boolean> => {
      const { rows } = await db.pool.query<{ conversion_status: string }>(
        'select conversion_status from payments where payment_id = any($1::numeric[])',
        [paymentIds],
      );
      return rows.length === paymentIds.length && rows.every((r) => r.conversion_status === 'completed');
    },

    auditOf,

    /** The payout's audit trail is this one action by `actor`, with these details, and nothing else. */
    expectOnlyAction: async (
      payoutId: string,
      actor: string,
      action: string,
      details: Record<string, unknown>,
    ): Promise<void> => {
      expect(await auditOf(payoutId)).toEqual([{ actor, action, subject: payoutId, details }]);
    },

    /** Queues the payout's run once more, without a job key as a duplicate delivery has none; returns the job's id. */
    runAgain: async (payoutId: string): Promise<string> => {
      const { rows } = await db.pool.query<{ id: string }>(
        "select (graphile_worker.add_job('payout_run', json_build_object('payoutId', $1::text), max_attempts => 25)).id::text as id",
        [payoutId],
      );
      return rows[0]!.id;
    },

    /** From here blocks are mined by hand: what is sent waits in anvil's pool (until `mineHeld`). */
    holdBlocks: async (): Promise<void> => {
      await rpc(outside.chain.rpcUrl, 'evm_setAutomine', [false]);
    },

    /** Mines what waits in the pool, and goes back to mining each transaction as it comes. */
    mineHeld: async (): Promise<void> => {
      await rpc(outside.chain.rpcUrl, 'evm_mine', []);
      await rpc(outside.chain.rpcUrl, 'evm_setAutomine', [true]);
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

/** `instant`: a new instant channel paying out in `payoutCurrency` on `payoutNetwork` to `walletAddress`. */
export function instantOn(channel: (body: Record<string, unknown>) => Promise<string>) {
  return (payoutCurrency: string, payoutNetwork: string, walletAddress: string): Promise<string> =>
    channel(instantBody(payoutCurrency, payoutNetwork, walletAddress));
}

/** `paidInstant`: saves a new instant channel (as `instant`) and sends it one finished payment; returns its id. */
function paidInstantOn(
  instant: ReturnType<typeof instantOn>,
  pay: (channelId: string) => Promise<string>,
): ReturnType<typeof instantOn> {
  return async (payoutCurrency, payoutNetwork, walletAddress) => {
    const id = await instant(payoutCurrency, payoutNetwork, walletAddress);
    await pay(id);
    return id;
  };
}

/** `payoutIn`: the channel's one payout, once it has reached `status` (a state it stays in until someone acts). */
function payoutInOf<P extends { status?: string }>(payoutsOf: (channelId: string) => Promise<P[]>) {
  return async (channelId: string, status: string, timeoutMs = 45_000): Promise<P> => {
    await eventually(
      `a payout of ${channelId} ${status}`,
      async () => (await payoutsOf(channelId)).some((p) => p.status === status),
      timeoutMs,
    );
    const payouts = await payoutsOf(channelId);
    expect(payouts).toHaveLength(1);
    return payouts[0] as P;
  };
}

/**
 * The `test` of a file that follows payouts through the world: worldTest's, its payrails logging into `logs`, with
 * payoutState's readers as fixtures and `alertsFor` reading the test's `logs` (or those given).
 */
export function payoutTest(options: Omit<WorldOptions, 'logs'> = {}) {
  return (
    worldTest({ ...options, logs: true })
      .extend('state', ({ world }) => payoutState(world))
      .extend('instant', ({ channel }) => instantOn(channel))
      .extend('payoutsOf', ({ state }) => state.payoutsOf)
      .extend('onlyPayout', ({ state }) => state.onlyPayout)
      .extend('hasPayout', ({ state }) => state.hasPayout)
      .extend('exchangesFor', ({ state }) => state.exchangesFor)
      .extend('transfersFor', ({ state }) => state.transfersFor)
      .extend('balances', ({ state }) => state.balances)
      .extend('journalKinds', ({ state }) => state.journalKinds)
      .extend('expectLedgerClean', ({ state }) => state.expectLedgerClean)
      .extend('payoutLinks', ({ state }) => state.payoutLinks)
      .extend('conversionsDone', ({ state }) => state.conversionsDone)
      .extend('hostNonce', ({ state }) => state.hostNonce)
      .extend('holdBlocks', ({ state }) => state.holdBlocks)
      .extend('mineHeld', ({ state }) => state.mineHeld)
      .extend('runAgain', ({ state }) => state.runAgain)
      .extend('auditOf', ({ state }) => state.auditOf)
      .extend('expectOnlyAction', ({ state }) => state.expectOnlyAction)
      .extend('paidInstant', ({ instant, pay }) => paidInstantOn(instant, pay))
      .extend('payoutIn', ({ payoutsOf }) => payoutInOf(payoutsOf))
      .extend(
        'alertsFor',
        ({ logs }) =>
          (ref: string, from: LogSink = logs) =>
            alertsFor(from, ref),
      )
      /**
       * Pays the channel once with the host wallet emptied just after the forward, and waits until its payout (in
       * `status`, when given) has alerted host_wallet_insufficient: its transfer waits for funds until `app.refillHost`.
       */
      .extend(
        'payWithHostDrained',
        ({ app, pay, logs, state }) =>
          async (channelId: string, status?: string): Promise<void> => {
            await pay(channelId, { afterForward: app.drainHost });
            await eventually(`the payout of ${channelId} waiting for the host wallet`, async () => {
              const [payout] = await state.payoutsOf(channelId);
              return (
                payout !== undefined &&
                (status === undefined || payout.status === status) &&
                alertsFor(logs, payout.payout_id).includes('host_wallet_insufficient')
              );
            });
          },
      )
      /** The payout's one alert is `alert`, and no other kind was raised in the test. */
      .extend('expectOnlyAlert', ({ logs }) => (payoutId: string, alert: string): void => {
        expect(alertsFor(logs, payoutId)).toEqual([alert]);
        expect(distinct(logs.alerts())).toEqual([alert]);
      })
  );
}

/** A payout as the admin API shows it (camelCase, amounts as decimal strings). */
export type ApiPayout = Record<string, any>;

/** `getPayout`: GET /api/payouts/:id, expecting it found; the payout as the admin API shows it. */
export function getPayoutOn({ app }: { app: TestApp }) {
  return async (payoutId: string): Promise<ApiPayout> => {
    const res = await app.payrail.request('GET', `/api/payouts/${payoutId}`);
    expect(res.status).toBe(200);
    return res.body;
  };
}

/** `act`: POST /api/payouts/:id/:action as `token`'s holder (the default admin token when undefined, none when null). */
export function actOn({ app }: { app: TestApp }) {
  return (payoutId: string, action: string, token?: string | null, body?: unknown) =>
    app.payrail.request('POST', `/api/payouts/${payoutId}/${action}`, { token, ...(body !== undefined && { body }) });
}

/**
 * The `test` of a file that drives payouts as an operator does, through the admin API: worldTest's, its payrails
 * logging into `logs`, with the payouts read and acted on over HTTP and what they moved read from the ledger, the
 * simulator and the chain_transfers table.
 */
export function payoutApiTest(options: Omit<WorldOptions, 'logs'> = {}) {
  return (
    worldTest({ ...options, logs: true })
      .extend('instant', ({ channel }) => instantOn(channel))
      .extend('payoutsOf', ({ app }) => async (channelId: string): Promise<ApiPayout[]> => {
        const res = await app.payrail.request('GET', `/api/payouts?channelId=${channelId}`);
        expect(res.status).toBe(200);
        return res.body.payouts;
      })
      .extend('getPayout', ({ app }) => getPayoutOn({ app }))
      .extend('paidInstant', ({ instant, pay }) => paidInstantOn(instant, pay))
      .extend('payoutIn', ({ payoutsOf }) => payoutInOf(payoutsOf))
      /** Waits for the payout to reach `status` (saying where it ended up when it does not), and reads it then. */
      .extend(
        'reaches',
        ({ getPayout }) =>
          (payoutId: string, status: string, timeoutMs?: number): Promise<ApiPayout> =>
            untilStatus(payoutId, () => getPayout(payoutId), status, timeoutMs),
      )
      .extend('act', ({ app }) => actOn({ app }))
      /** The channel's available balance and the part set aside in its payout, from the ledger's balance rows. */
      .extend('balances', ({ db }) => async (channelId: string, asset: 'eth' | 'usdt') => {
        const rows = await db.db
          .selectFrom('ledger_accounts')
          .select(['code', 'balance'])
          .where('code', 'in', [`channel:${channelId}`, `channel:${channelId}:payout`])
          .where('asset', '=', asset)
          .execute();
        const of = (code: string) => BigInt(rows.find((r) => r.code === code)?.balance ?? '0');
        return { available: of(`channel:${channelId}`), reserved: of(`channel:${channelId}:payout`) };
      })
      .extend('auditOf', ({ world }) => payoutState(world).auditOf)
      .extend('expectOnlyAction', ({ world }) => payoutState(world).expectOnlyAction)
      /** The exchanges ChangeNow holds for a payout id. */
      .extend('exchangesOf', ({ outside }) => (payoutId: string) => {
        return [...outside.sim.exchanges.values()].filter((e) => e.userId === payoutId);
      })
      .extend('transfersOf', ({ db }) => (payoutId: string) => {
        return db.db
          .selectFrom('chain_transfers')
          .select(['transfer_id', 'status', 'to_address', 'amount', 'created_at'])
          .where('purpose', '=', 'payout')
          .where('ref', '=', payoutId)
          .execute();
      })
      /** Nothing of the payout reached ChangeNow or the chain: no exchange, no transfer. */
      .extend('expectNothingSent', ({ exchangesOf, transfersOf }) => async (payoutId: string): Promise<void> => {
        expect(exchangesOf(payoutId)).toEqual([]);
        expect(await transfersOf(payoutId)).toEqual([]);
      })
      .extend('expectLedgerClean', ({ db }) => expectLedgerCleanOn(db))
  );
}
