import { describe, expect, it } from 'vitest';
import {
  belowEstimate,
  createdMismatch,
  statusMismatch,
  type ExchangeAsk,
} from '../../src/pipeline/exchange-answer.ts';
import { parsePercent } from '../../src/money/index.ts';
import type { CreatedExchange, ExchangeStatus } from '../../src/integrations/changenow/index.ts';

const ask: ExchangeAsk = {
  fromCurrency: 'eth',
  fromNetwork: 'eth',
  toCurrency: 'usdt',
  toNetwork: 'eth',
  fromAmount: '0.049372846120993817',
  payoutAddress: '0x8ba1f109551bD432803012645Ac136ddd64DBA72',
  refundAddress: '0x8ba1f109551bD432803012645Ac136ddd64DBA72',
};
const created = (over: Partial<CreatedExchange>): CreatedExchange => ({
  id: 'x1',
  payinAddress: '0x1111111111111111111111111111111111111111',
  payoutAddress: ask.payoutAddress,
  fromAmount: ask.fromAmount,
  toAmount: '148.1',
  payinExtraId: null,
  fromCurrency: null,
  toCurrency: null,
  fromNetwork: null,
  toNetwork: null,
  refundAddress: null,
  ...over,
});

describe('ChangeNow answers against the request', () => {
  it('takes an amount echoed through a float formatter (17 significant digits round-tripped through a double) as the same', () => {
    // What JSON.stringify(0.049372846120993817) writes: the nearest double, shortest form.
    expect(createdMismatch(ask, created({ fromAmount: '0.04937284612099382' }))).toBeNull();
    expect(createdMismatch(ask, created({ fromAmount: '0.0493728461209938' }))).toBe(
      'fromAmount 0.0493728461209938 (asked 0.049372846120993817)',
    );
    expect(createdMismatch(ask, created({ fromAmount: '0.098745692241987634' }))).toMatch(
      /^fromAmount 0\.098745692241987634 \(asked/,
    );
  });

  it('compares EVM addresses without regard to letter case, every other format exactly, and names each difference', () => {
    expect(createdMismatch(ask, created({ payoutAddress: ask.payoutAddress.toLowerCase() }))).toBeNull();
    expect(
      createdMismatch(
        { ...ask, payoutAddress: 'TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7' },
        created({ payoutAddress: 'TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7'.toLowerCase() }),
      ),
    ).toMatch(/^payoutAddress/);
    expect(
      createdMismatch(ask, created({ toNetwork: 'bsc', refundAddress: '0x2222222222222222222222222222222222222222' })),
    ).toBe(
      'refundAddress 0x2222222222222222222222222222222222222222 (asked 0x8ba1f109551bD432803012645Ac136ddd64DBA72), toNetwork bsc (asked eth)',
    );
  });

  it('at the end, a finished exchange must say what it received', () => {
    const status = {
      payoutAddress: ask.payoutAddress,
      expectedAmountFrom: ask.fromAmount,
      amountFrom: null,
    } as unknown as ExchangeStatus;
    expect(statusMismatch(ask, status)).toBeNull();
    expect(statusMismatch(ask, status, ask.fromAmount)).toBe(`amountFrom none (asked ${ask.fromAmount})`);
    expect(statusMismatch(ask, { ...status, amountFrom: ask.fromAmount }, ask.fromAmount)).toBeNull();
  });
});

describe('a finished exchange against its estimate (CHANGENOW_MAX_SLIPPAGE)', () => {
  const three = parsePercent('3');

  it('accepts an amountTo at the limit exactly and refuses one smallest unit below it, naming both values and the limit', () => {
    // 13.1717 × 0.97 = 12.776549: no rounding involved.
    expect(belowEstimate('13.1717', '12.776549', 'usdt', three)).toBeNull();
    expect(belowEstimate('13.1717', '12.776548', 'usdt', three)).toBe(
      'amountTo 12.776548 USDT, estimate 13.1717 USDT, lowest accepted 12.776549 USDT (CHANGENOW_MAX_SLIPPAGE 3 %)',
    );
    expect(belowEstimate('13.1717', '13.5', 'usdt', three)).toBeNull();
    expect(belowEstimate('13.1717', '13.1717', 'usdt')).toBeNull();
  });

  it('compares exactly whatever the digits: a limit finer than the currency is named in full, never rounded to pass', () => {
    // 100 × (1 − 0.125 / 100) = 99.875: an amountTo must reach it, not a rounding of it.
    const eighth = parsePercent('0.125');
    expect(belowEstimate('100', '99.875', 'btc', eighth)).toBeNull();
    expect(belowEstimate('100', '99.87499999999999', 'btc', eighth)).toBe(
      'amountTo 99.87499999999999 BTC, estimate 100 BTC, lowest accepted 99.875 BTC (CHANGENOW_MAX_SLIPPAGE 0.125 %)',
    );
    // 0.0033 × 0.97 = 0.003201 exactly; an amount echoed with exponent notation is read exactly too.
    expect(belowEstimate('0.0033', '3.201e-3', 'eth', three)).toBeNull();
    expect(belowEstimate('13.1717', '12.7765489', 'usdt', three)).toMatch(
      /^amountTo 12\.7765489 USDT, estimate 13\.1717 USDT, lowest accepted 12\.776549 USDT/,
    );
  });

  it('with no allowance (0, or unset) anything below the estimate is refused', () => {
    expect(belowEstimate('13.1717', '13.171699', 'usdt', parsePercent('0'))).toBe(
      'amountTo 13.171699 USDT, estimate 13.1717 USDT, lowest accepted 13.1717 USDT (CHANGENOW_MAX_SLIPPAGE 0 %)',
    );
    expect(belowEstimate('13.1717', '13.171699', 'usdt')).toMatch(/CHANGENOW_MAX_SLIPPAGE 0 %\)$/);
  });
});
