/**
 * Run locks (src/pipeline/run-lock.ts) on a real database: one run per key at a time, released after the run whatever
 * it did, and held on connections apart from the ones the run works on, so that more running steps than working
 * connections wait their turn instead of stopping the process.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPool, type DatabaseHandle } from '../../src/db/index.ts';
import { createLogger } from '../../src/log.ts';
import { RunLocked, withRunLock } from '../../src/pipeline/run-lock.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
/** Two working connections, as a process whose jobs outnumber its DATABASE_POOL_MAX. */
let small: DatabaseHandle;

beforeAll(async () => {
  db = await createTestDatabase();
  small = openPool(db.url, {
    max: 2,
    applicationName: 'payrail-test-small',
    logger: createLogger({ level: 'silent' }),
    runLockMax: 6,
  });
});
afterAll(async () => {
  await small?.close();
  await db?.close();
});

/** A step's work: a transaction on the working pool, while its run lock is held. */
async function work(handle: DatabaseHandle, ms: number): Promise<number> {
  return handle.db.transaction().execute(async (trx) => {
    const { rows } = await sql<{ n: number }>`select 1 as n from pg_sleep(${ms / 1000})`.execute(trx);
    return rows[0]?.n ?? 0;
  });
}

describe('run locks', () => {
  it('six steps at once on two working connections all finish: their locks do not take the connections they work on', async () => {
    const runs = Array.from({ length: 6 }, (_, i) =>
      withRunLock(small.runLocks, `payout:test-${i}`, async () => (await work(small, 50)) + (await work(small, 10))),
    );
    expect(await Promise.all(runs)).toEqual([2, 2, 2, 2, 2, 2]);
  });

  it('one run per key at a time: a second run of the key is refused while the first holds it, and may run after', async () => {
    let release!: () => void;
    let locked!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const taken = new Promise<void>((resolve) => (locked = resolve));
    const first = withRunLock(small.runLocks, 'conversion_exchange:one', async () => {
      locked();
      await held;
      return 'first';
    });
    await taken;
    await expect(withRunLock(small.runLocks, 'conversion_exchange:one', async () => 'second')).rejects.toBeInstanceOf(
      RunLocked,
    );
    expect(await withRunLock(small.runLocks, 'conversion_exchange:other', async () => 'other')).toBe('other');
    release();
    expect(await first).toBe('first');
    await expect(
      withRunLock(small.runLocks, 'conversion_exchange:one', async () => {
        throw new Error('the run failed');
      }),
    ).rejects.toThrow('the run failed');
    // Released after a failed run too.
    expect(await withRunLock(small.runLocks, 'conversion_exchange:one', async () => 'again')).toBe('again');
  });
});
