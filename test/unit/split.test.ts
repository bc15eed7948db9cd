import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { splitProportionally } from '../../src/money/index.ts';
import { usdtPerEth } from '../../src/pipeline/conversion/settle.ts';

describe('splitProportionally (largest remainder)', () => {
  it('shares 84,030,200 units among six equal weights: remainder to the first', () => {
    expect(splitProportionally(84_030_200n, Array(6).fill(1n))).toEqual([
      14005034n,
      14005034n,
      14005033n,
      14005033n,
      14005033n,
      14005033n,
    ]);
  });

  it('gives the remainder to the largest fractions, not to the largest weights', () => {
    // exact: 10 * [1, 2, 3] / 6 = [1.67, 3.33, 5] → floors [1, 3, 5] and one unit left for the 0.67 fraction
    expect(splitProportionally(10n, [1n, 2n, 3n])).toEqual([2n, 3n, 5n]);
  });

  it('refuses what cannot be split', () => {
    expect(() => splitProportionally(1n, [])).toThrow();
    expect(() => splitProportionally(1n, [0n, 1n])).toThrow();
    expect(() => splitProportionally(-1n, [1n])).toThrow();
  });

  it('property: sums exactly, no share negative, each within one unit of its exact proportion', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 10n ** 30n }),
        fc.array(fc.bigInt({ min: 1n, max: 10n ** 24n }), { minLength: 1, maxLength: 60 }),
        (total, weights) => {
          const shares = splitProportionally(total, weights);
          const sumWeights = weights.reduce((a, b) => a + b, 0n);
          expect(shares.reduce((a, b) => a + b, 0n)).toBe(total);
          shares.forEach((share, i) => {
            expect(share >= 0n).toBe(true);
            // |share - total*w/W| < 1  ⇔  |share*W - total*w| < W
            const diff = share * sumWeights - total * (weights[i] as bigint);
            expect((diff < 0n ? -diff : diff) < sumWeights).toBe(true);
          });
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('usdtPerEth', () => {
  it('is USDT per ETH with 12 decimals, rounded down', () => {
    expect(usdtPerEth(435_500_000n, 145_500_000_000_000_000n)).toBe('2993.127147766323');
    expect(usdtPerEth(3_000_000_000n, 10n ** 18n)).toBe('3000');
  });
});
