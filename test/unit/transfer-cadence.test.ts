/**
 * How often a transfer waiting behind a lower nonce of ours looks again (src/pipeline/transfer/model.ts): by how far
 * it is from the chain's next nonce, a set's worth of waiters per step, up to a minute.
 */
import { describe, expect, it } from 'vitest';
import {
  CONFIRM_RECHECK_MS,
  CONFIRM_SET_MAX,
  WAITING_RECHECK_MAX_MS,
  waitingRecheckMs,
} from '../../src/pipeline/transfer/model.ts';

describe('waitingRecheckMs', () => {
  it('the nearest set every 5 s, each next set 5 s more, never more than a minute', () => {
    expect(CONFIRM_SET_MAX).toBe(32);
    expect([1, 32, 33, 64, 65, 352, 353, 10_000].map(waitingRecheckMs)).toEqual([
      5_000, 5_000, 10_000, 10_000, 15_000, 55_000, 60_000, 60_000,
    ]);
    expect(waitingRecheckMs(1)).toBe(CONFIRM_RECHECK_MS);
    expect(waitingRecheckMs(Number.MAX_SAFE_INTEGER)).toBe(WAITING_RECHECK_MAX_MS);
  });
});
