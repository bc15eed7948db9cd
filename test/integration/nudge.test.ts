/**
 * The conversion nudge after intake: a waiting check keeps its place in the queue. Re-queuing it at every nudge
 * sent it to the back of a busy queue each second, so no conversion ran while intake lasted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { createConversionNudger } from '../../src/pipeline/index.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { eventually } from '../support/outside.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => db?.close());

async function nudgeJobs() {
  const { rows } = await db.pool.query<{ id: string; run_at: Date }>(
    "select id::text, run_at from graphile_worker._private_jobs where key = 'conversion_batch:nudge'",
  );
  return rows;
}

describe('conversion nudge', () => {
  it('nudges while a check waits leave it one job with its original run_at', async () => {
    const nudge = createConversionNudger(db.db, createLogger({ level: 'silent' }), 50);
    nudge();
    await eventually('the first check queued', async () => (await nudgeJobs()).length === 1);
    const [first] = await nudgeJobs();
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 80));
      nudge();
    }
    await new Promise((r) => setTimeout(r, 150));
    const after = await nudgeJobs();
    expect(after).toHaveLength(1);
    expect(after[0]!.id).toBe(first!.id);
    expect(after[0]!.run_at.getTime()).toBe(first!.run_at.getTime());
  });
});
