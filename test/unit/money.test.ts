import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AmountError,
  formatUnits,
  parsePercent,
  parseUnits,
  splitFee,
  withinTolerance,
} from '../../src/money/index.ts';

describe('parseUnits', () => {
  it.each([
    ['0.00487', 18, 4_870_000_000_000_000n],
    ['1', 18, 10n ** 18n],
    ['0', 6, 0n],
    ['435.499999', 6, 435_499_999n],
    ['100.00', 2, 10_000n],
    ['1.50000', 2, 150n], // trailing zeros beyond the precision change nothing
    ['123456789012345678901234567890', 0, 123456789012345678901234567890n],
  ])('parses %s with %i decimals exactly', (text, decimals, expected) => {
    expect(parseUnits(text, decimals)).toBe(expected);
  });

  it.each([
    ['-1', 'negative'],
    ['1e-3', 'exponent'],
    ['4.87E-3', 'exponent'],
    ['0.0000000000000000001', 'more decimals'],
    ['01', 'plain decimal'],
    ['1.', 'plain decimal'],
    ['.5', 'plain decimal'],
    [' 1', 'plain decimal'],
    ['1,5', 'plain decimal'],
    ['NaN', 'plain decimal'],
    ['Infinity', 'plain decimal'],
    ['0x10', 'plain decimal'],
    ['1234567890123456789012345678901', 'implausibly large'],
  ])('refuses %s', (text, reason) => {
    expect(() => parseUnits(text, 18)).toThrow(AmountError);
    expect(() => parseUnits(text, 18)).toThrow(reason);
  });

  it('round-trips through formatUnits', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 30n - 1n }), fc.integer({ min: 0, max: 18 }), (units, decimals) => {
        expect(parseUnits(formatUnits(units, decimals), decimals)).toBe(units);
      }),
    );
  });
});

describe('formatUnits', () => {
  it('formats trimmed or fixed', () => {
    expect(formatUnits(4_870_000_000_000_000n, 18)).toBe('0.00487');
    expect(formatUnits(10_000n, 2)).toBe('100');
    expect(formatUnits(10_000n, 2, { fixed: true })).toBe('100.00');
    expect(formatUnits(1n, 18)).toBe('0.000000000000000001');
    expect(formatUnits(-150n, 2)).toBe('-1.5');
    expect(formatUnits(0n, 6)).toBe('0');
  });
});

describe('parsePercent', () => {
  it('holds the percentage as an exact fraction', () => {
    expect(parsePercent('3')).toMatchObject({ numerator: 3n, denominator: 1n });
    expect(parsePercent('2.5')).toMatchObject({ numerator: 25n, denominator: 10n });
    expect(parsePercent('0.125')).toMatchObject({ numerator: 125n, denominator: 1000n });
    expect(parsePercent('0')).toMatchObject({ numerator: 0n });
  });

  it.each(['100', '-1', '3%', '1e1', '2.1234567', '', ' 3', 'abc'])('refuses %j', (text) => {
    expect(() => parsePercent(text)).toThrow(AmountError);
  });
});

describe('splitFee', () => {
  it('takes 3% of 0.00487 ETH, rounded down in wei', () => {
    const gross = parseUnits('0.00487', 18);
    const { fee, net } = splitFee(gross, parsePercent('3'));
    expect(fee).toBe(146_100_000_000_000n);
    expect(net).toBe(4_723_900_000_000_000n);
  });

  it('rounds the fee down: the remainder stays with the channel', () => {
    expect(splitFee(1n, parsePercent('3'))).toEqual({ fee: 0n, net: 1n });
    expect(splitFee(34n, parsePercent('3'))).toEqual({ fee: 1n, net: 33n }); // 1.02 → 1
    expect(splitFee(33n, parsePercent('3'))).toEqual({ fee: 0n, net: 33n }); // 0.99 → 0
  });

  const percent = fc
    .tuple(fc.integer({ min: 0, max: 99 }), fc.integer({ min: 0, max: 999_999 }), fc.integer({ min: 0, max: 6 }))
    .map(([whole, frac, digits]) =>
      parsePercent(digits === 0 ? String(whole) : `${whole}.${String(frac).padStart(6, '0').slice(0, digits)}`),
    );

  it('property: fee + net == gross, nothing negative, fee never above the exact percentage', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 36n }), percent, (gross, p) => {
        const { fee, net } = splitFee(gross, p);
        expect(fee + net).toBe(gross);
        expect(fee >= 0n && net >= 0n).toBe(true);
        // fee <= gross * p / 100 exactly, and it is the largest such integer (rounding goes down by less than 1 unit)
        expect(fee * p.denominator * 100n <= gross * p.numerator).toBe(true);
        expect((fee + 1n) * p.denominator * 100n > gross * p.numerator).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('property: splitting never creates money across many payments', () => {
    fc.assert(
      fc.property(
        fc.array(fc.bigInt({ min: 1n, max: 10n ** 20n }), { minLength: 1, maxLength: 50 }),
        percent,
        (grosses, p) => {
          let total = 0n;
          let parts = 0n;
          for (const g of grosses) {
            const { fee, net } = splitFee(g, p);
            total += g;
            parts += fee + net;
          }
          expect(parts).toBe(total);
        },
      ),
    );
  });

  it('refuses a negative gross', () => {
    expect(() => splitFee(-1n, parsePercent('3'))).toThrow(AmountError);
  });
});

describe('withinTolerance', () => {
  it('takes a shortfall up to the percent of what was expected, exactly, and nothing short without one', () => {
    const two = parsePercent('2');
    expect(withinTolerance(1_000n, 980n, two)).toBe(true);
    expect(withinTolerance(1_000n, 979n, two)).toBe(false);
    expect(withinTolerance(1_000n, 1_000n, undefined)).toBe(true);
    expect(withinTolerance(1_000n, 1_001n, undefined)).toBe(true);
    expect(withinTolerance(1_000n, 999n, undefined)).toBe(false);
    expect(withinTolerance(10n ** 18n, 10n ** 18n - 5n * 10n ** 15n, parsePercent('0.5'))).toBe(true);
    expect(withinTolerance(10n ** 18n, 10n ** 18n - 5n * 10n ** 15n - 1n, parsePercent('0.5'))).toBe(false);
  });
});
