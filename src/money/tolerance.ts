import type { Percent } from './fee.ts';

/** True when `actual` falls short of `expected` by at most `tolerance` percent of it (never short: always true). */
export function withinTolerance(expected: bigint, actual: bigint, tolerance: Percent | undefined): boolean {
  const short = expected - actual;
  if (short <= 0n) return true;
  if (!tolerance) return false;
  return short * 100n * tolerance.denominator <= expected * tolerance.numerator;
}
