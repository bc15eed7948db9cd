import { describe, expect, it } from 'vitest';
import { createdMismatch, statusMismatch, type ExchangeAsk } from '../../src/pipeline/exchange-answer.ts';
import type { CreatedExchange, ExchangeStatus } from '../../src/integrations/changenow/index.ts';

const ask: ExchangeAsk = {
  fromCurrency: 'eth', fromNetwork: 'eth', toCurrency: 'usdt', toNetwork: 'eth',
  fromAmount: '0.049372846120993817',
  payoutAddress: '0x8ba1f109551bD432803012645Ac136ddd64DBA72',
  refundAddress: '0x8ba1f109551bD432803012645Ac136ddd64DBA72',
};
const created = (over: Partial<CreatedExchange>): CreatedExchange => ({
  id: 'x1', payinAddress: '0x1111111111111111111111111111111111111111', payoutAddress: ask.payoutAddress, fromAmount: ask.fromAmount, toAmount: '148.1',
  payinExtraId: null, fromCurrency: null, toCurrency: null, fromNetwork: null, toNetwork: null, refundAddress: null, ...over,
});

describe('ChangeNow answers against the request', () => {
  it('takes an amount echoed through a float formatter (17 significant digits round-tripped through a double) as the same', () => {
    // What JSON.stringify(0.049372846120993817) writes: the nearest double, shortest form.
    expect(createdMismatch(ask, created({ fromAmount: '0.04937284612099382' }))).toBeNull();
    expect(createdMismatch(ask, created({ fromAmount: '0.0493728461209938' }))).toBe('fromAmount 0.0493728461209938 (asked 0.049372846120993817)');
    expect(createdMismatch(ask, created({ fromAmount: '0.098745692241987634' }))).toMatch(/^fromAmount 0\.098745692241987634 \(asked/);
  });

  it('compares EVM addresses without regard to letter case, every other format exactly, and names each difference', () => {
    expect(createdMismatch(ask, created({ payoutAddress: ask.payoutAddress.toLowerCase() }))).toBeNull();
    expect(createdMismatch({ ...ask, payoutAddress: 'TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7' }, created({ payoutAddress: 'TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7'.toLowerCase() }))).toMatch(/^payoutAddress/);
    expect(createdMismatch(ask, created({ toNetwork: 'bsc', refundAddress: '0x2222222222222222222222222222222222222222' }))).toBe(
      'refundAddress 0x2222222222222222222222222222222222222222 (asked 0x8ba1f109551bD432803012645Ac136ddd64DBA72), toNetwork bsc (asked eth)',
    );
  });

  it('at the end, a finished exchange must say what it received', () => {
    const status = { payoutAddress: ask.payoutAddress, expectedAmountFrom: ask.fromAmount, amountFrom: null } as unknown as ExchangeStatus;
    expect(statusMismatch(ask, status)).toBeNull();
    expect(statusMismatch(ask, status, ask.fromAmount)).toBe(`amountFrom none (asked ${ask.fromAmount})`);
    expect(statusMismatch(ask, { ...status, amountFrom: ask.fromAmount }, ask.fromAmount)).toBeNull();
  });
});
