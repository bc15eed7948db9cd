/**
 * The world most integration tests run payrail in, as vitest fixtures: anvil and the ChangeNow simulator
 * (test/support/outside.ts) and a fresh database with the host wallet's funding booked as capital, one per file; a
 * payrail per test on them (or one for the whole file), started with the file's settings; its channels and finished
 * IPNs. After a test its payrail stops, the world's faults are undone and a drained host wallet is refilled; after the
 * file's last test, ledger = chain (`check-ledger --chain`) and the file's own end checks.
 */
import { test as base } from 'vitest';
import { rpc } from '../../src/simulators/index.ts';
import { createTestDatabase, type TestDatabase } from './db.ts';
import { bookHostFunding, expectLedgerEqualsChain } from './ledger-chain.ts';
import { resetFaults, startOutside, type Outside } from './outside.ts';
import { logSink, startTestPayrail, type LogSink, type TestPayrail } from './payrail.ts';
import { saveChannel, sendFinished } from './payouts.ts';

export interface World {
  outside: Outside;
  db: TestDatabase;
}

/** How one file runs its payrail. */
export interface WorldOptions {
  /** The file's payrail settings, over the outside world's (a test's own go over these). */
  env?: Record<string, string>;
  /** The NOWPayments payment id `pay` sends first, counting up. */
  firstPaymentId?: number;
  /** The channel `channel` saves first, as `-<n>`, counting up. */
  firstChannel?: number;
  /**
   * The file's own checks once its last test is done, after ledger = chain and before the world stops. Here rather
   * than in an afterAll: a failing afterAll would leave the world running (vitest skips file fixtures' teardown then).
   */
  atEnd?: (world: World) => Promise<void>;
  /**
   * One payrail for the whole file instead of one per test (these options for it, the file's env): started before the
   * first test, the `payrail` of every test, stopped after the last one, before ledger = chain. `start` is refused.
   */
  filePayrail?: StartOptions;
  /** Each test's payrails log into the test's `logs` (unless started with their own), for tests that read alerts. */
  logs?: boolean;
}

/** What `start` takes besides env: a payrail's roles, where its logs go, a crash point. */
export type StartOptions = Omit<NonNullable<Parameters<typeof startTestPayrail>[1]>, 'env' | 'outside'>;

/**
 * A payrail per test: started on demand, one at a time (or several side by side), stopped (and the world's faults
 * undone, the host wallet refilled) after the test; or the file's one payrail (WorldOptions.filePayrail).
 */
export interface TestApp {
  /** Starts the test's payrail (stopping those it started before, if any) with the file's env and `env` on top. */
  start: (env?: Record<string, string>, options?: StartOptions) => Promise<TestPayrail>;
  /**
   * Starts one more payrail beside those running (two workers racing, say), on the same terms as `start`; `payrail`
   * stays the one `start` gave.
   */
  startAnother: (env?: Record<string, string>, options?: StartOptions) => Promise<TestPayrail>;
  /** Stops every payrail the test started (an outage that outlives its process); `start` may follow. */
  stop: () => Promise<void>;
  /** The payrail `start` gave last, or the file's one. */
  readonly payrail: TestPayrail;
  /** What the test's payrails logged (with WorldOptions.logs; those started with `logs` of their own aside). */
  readonly logs: LogSink;
  /**
   * Empties the host wallet on chain (a wallet short of ETH). What was taken goes back on top of whatever arrived
   * meanwhile by `refillHost`, or after the test whatever happened, so the chain ends holding what the ledger says.
   */
  drainHost: () => Promise<void>;
  /** Puts back what `drainHost` took; nothing when the wallet is not drained. */
  refillHost: () => Promise<void>;
  /** Saves a channel under the file's next id on the test's payrail, expecting it saved; returns the id. */
  channel: (body: Record<string, unknown>) => Promise<string>;
  /** A signed finished IPN for the channel under the file's next payment id, its outcome forwarded first (sendFinished). */
  pay: (channelId: string, options?: Parameters<typeof sendFinished>[3]) => Promise<string>;
  /** The file's next channel id, for a channel the test saves itself (`channel` draws from the same count). */
  nextChannelId: () => string;
  /** The file's next payment id, for an IPN the test builds itself (`pay` draws from the same count). */
  nextPaymentId: () => number;
}

async function startWorld(): Promise<World> {
  const outside = await startOutside();
  let db: TestDatabase | undefined;
  try {
    db = await createTestDatabase();
    await bookHostFunding(db, outside);
    return { outside, db };
  } catch (error) {
    await db?.close();
    await outside.stop();
    throw error;
  }
}

/** Once every payrail of the file is stopped (nothing moves any more) and before the chain stops. */
async function stopWorld(world: World, atEnd?: (world: World) => Promise<void>): Promise<void> {
  const { outside, db } = world;
  try {
    await expectLedgerEqualsChain(db, outside);
    await atEnd?.(world);
  } finally {
    try {
      await db.close();
    } finally {
      await outside.stop();
    }
  }
}

/**
 * The `test` of a file that runs payrail in the world: `world`, `outside` and `db` for the file; for each test `app`,
 * with `start`, `payrail`, `channel`, `pay` and `nextPaymentId` at hand. A file adds its own helpers with `.extend`.
 */
export function worldTest(options: WorldOptions = {}) {
  let nextPaymentId = options.firstPaymentId ?? 9_000_000_000;
  let nextChannel = options.firstChannel ?? 1_003_000_000_001;
  let built = false;
  const test = base
    // vitest reads a fixture's dependencies from its first parameter's pattern: this one has none.
    // eslint-disable-next-line no-empty-pattern
    .extend('world', { scope: 'file' }, async ({}, { onCleanup }) => {
      // A second world in one file is a fixture reached through two `test`s (see worldFirst), never what was meant.
      if (built) throw new Error('the world of this file is already built: use one `test` for its cases and hooks');
      built = true;
      const world = await startWorld();
      onCleanup(() => stopWorld(world, options.atEnd));
      return world;
    })
    .extend('outside', { scope: 'file' }, ({ world }) => world.outside)
    .extend('db', { scope: 'file' }, ({ world }) => world.db)
    .extend('filePayrail', { scope: 'file' }, async ({ world }, { onCleanup }) => {
      if (!options.filePayrail) return undefined;
      const payrail = await startTestPayrail(world.db, {
        ...options.filePayrail,
        outside: world.outside,
        env: { ...world.outside.env, ...options.env },
      });
      onCleanup(() => payrail.stop());
      return payrail;
    })
    .extend('app', ({ world, filePayrail }, { onCleanup }): TestApp => {
      const { outside, db } = world;
      let current: TestPayrail | undefined = filePayrail;
      let running: TestPayrail[] = [];
      let drained: bigint | undefined;
      const logs = logSink();
      const started = (): TestPayrail => {
        if (!current) throw new Error('no payrail started in this test (call start first)');
        return current;
      };
      const stopAll = async () => {
        const all = running;
        running = [];
        if (!filePayrail) current = undefined;
        for (const payrail of all) await payrail.stop();
      };
      const launch = async (env: Record<string, string>, startOptions: StartOptions) => {
        if (filePayrail) throw new Error("this file's tests share one payrail (filePayrail): nothing to start");
        const payrail = await startTestPayrail(db, {
          ...(options.logs && { logs }),
          ...startOptions,
          outside,
          env: { ...outside.env, ...options.env, ...env },
        });
        running.push(payrail);
        return payrail;
      };
      const setHostBalance = (wei: bigint) =>
        rpc(outside.chain.rpcUrl, 'anvil_setBalance', [outside.hostAddress, `0x${wei.toString(16)}`]);
      const refillHost = async () => {
        if (drained === undefined) return;
        await setHostBalance((await outside.balanceOf(outside.hostAddress)) + drained);
        drained = undefined;
      };
      onCleanup(async () => {
        await stopAll();
        current = undefined;
        await resetFaults(outside);
        await refillHost();
      });
      return {
        start: async (env = {}, startOptions = {}) => {
          await stopAll();
          current = await launch(env, startOptions);
          return current;
        },
        startAnother: async (env = {}, startOptions = {}) => {
          started();
          return launch(env, startOptions);
        },
        stop: stopAll,
        get payrail() {
          return started();
        },
        logs,
        drainHost: async () => {
          if (drained !== undefined) throw new Error('the host wallet is drained already');
          drained = await outside.balanceOf(outside.hostAddress);
          await setHostBalance(0n);
        },
        refillHost,
        channel: (body) => saveChannel(started(), `-${nextChannel++}`, body),
        pay: (channelId, payOptions) => sendFinished(started(), nextPaymentId++, channelId, payOptions),
        nextChannelId: () => `-${nextChannel++}`,
        nextPaymentId: () => nextPaymentId++,
      };
    })
    .extend('start', ({ app }) => app.start)
    /** The test's payrail as it is when the test begins: the file's one (filePayrail); otherwise use `start`'s. */
    .extend('payrail', ({ app }) => app.payrail)
    .extend('logs', ({ app }) => app.logs)
    .extend('channel', ({ app }) => app.channel)
    .extend('pay', ({ app }) => app.pay)
    .extend('nextPaymentId', ({ app }) => app.nextPaymentId);
  return test;
}

/**
 * Builds the file's world (and its one payrail, if it has one) in a beforeAll, under the hook timeout, rather than in
 * its first test's own time. Give it the `test` the file's cases use: each `.extend` keeps file fixtures of its own, so
 * a world built through another would be a second one.
 */
export function worldFirst<
  T extends { beforeAll(listener: (context: { world: World; filePayrail: TestPayrail | undefined }) => unknown): void },
>(test: T): T {
  test.beforeAll(({ world, filePayrail }) => void [world, filePayrail]);
  return test;
}
