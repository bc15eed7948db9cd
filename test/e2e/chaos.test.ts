/**
 * A short chaos run (chaos/run.ts) as part of the suite: a few hundred payments through one web and two worker
 * processes, with faults injected (worker SIGKILL, PostgreSQL restart, ChangeNow down/5xx/401/slow, RPC refused, a
 * failed or refunded exchange), then every check of the run: nothing lost, nothing paid twice, ledger and chain
 * agreeing, no job failed for good without an alert. A fixed seed, so a failure here replays with `npm run chaos`.
 */
import { describe, expect, it } from 'vitest';
import { runChaos } from '../../chaos/run.ts';

const SEED = Number(process.env.CHAOS_SEED ?? 20261128);

describe('chaos', () => {
  it(`survives faults with nothing lost or paid twice (seed ${SEED})`, async () => {
    const lines: string[] = [];
    const result = await runChaos(
      { seed: SEED, payments: 200, channels: 8, workers: 2, faults: 5, concurrency: 8, settleTimeoutMs: 90_000 },
      (line) => lines.push(line),
    );
    if (result.violations.length > 0) process.stderr.write(`${lines.join('\n')}\n`);
    expect(result.violations).toEqual([]);
  }, 240_000);
});
