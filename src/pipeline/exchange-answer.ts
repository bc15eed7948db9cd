/**
 * ChangeNow's answer compared with what payrail asked, before any money follows it: an exchange that would pay out
 * to another address, take another amount, or swap other currencies is never funded. Every comparison names both
 * values, so the review says what differed. What passes is kept as the Payin that a transfer then funds.
 */
import type { CreatedExchange, ExchangeStatus } from '../integrations/changenow/index.ts';
import { normaliseAmount } from '../integrations/changenow/amount.ts';
import { formatUnits, withinTolerance, type Percent } from '../money/index.ts';

export interface ExchangeAsk {
  readonly fromCurrency: string;
  readonly fromNetwork: string;
  readonly toCurrency: string;
  readonly toNetwork: string;
  /** Plain decimal text, as sent. */
  readonly fromAmount: string;
  readonly payoutAddress: string;
  readonly refundAddress: string;
}

/**
 * The exchange a conversion or payout pays: ChangeNow's id, its deposit address, and what it estimated arrives at the
 * far end (USDT for a conversion, the owner's currency for a payout).
 */
export interface Payin {
  readonly id: string;
  readonly payinAddress: string;
  readonly toAmount: string | null;
}

/** An exchange found again by payrail's id (a crash before it was recorded); it may name no estimate. */
export function foundPayin(found: ExchangeStatus): Payin {
  return { id: found.id, payinAddress: found.payinAddress, toAmount: found.expectedAmountTo };
}

/** An exchange just created at payrail's request. */
export function createdPayin(created: CreatedExchange): Payin {
  return { id: created.id, payinAddress: created.payinAddress, toAmount: created.toAmount };
}

/** EVM addresses are compared without regard to their checksum letter case; every other format exactly. */
function sameAddress(a: string, b: string): boolean {
  const hex = /^0x[0-9a-fA-F]{40}$/;
  return hex.test(a) && hex.test(b) ? a.toLowerCase() === b.toLowerCase() : a === b;
}

/**
 * The same amount as far as a double can tell: ChangeNow writes amounts through a float formatter, so an 18-decimal
 * request (a batch of wei amounts) comes back rounded to about 16 significant digits. Within 2^-52 of the larger,
 * relative; anything further apart is another amount.
 */
function sameAmount(a: string, b: string): boolean {
  const left = normaliseAmount(a);
  const right = normaliseAmount(b);
  if (left === null || right === null) return false;
  const scale = Math.max(fractionDigits(left), fractionDigits(right));
  const x = scaled(left, scale);
  const y = scaled(right, scale);
  const larger = x > y ? x : y;
  const difference = x > y ? x - y : y - x;
  return difference * 2n ** 52n <= larger;
}

function fractionDigits(plain: string): number {
  const dot = plain.indexOf('.');
  return dot < 0 ? 0 : plain.length - dot - 1;
}

/** A plain decimal as a whole number of 10^-scale units (scale at least its own fraction digits). */
function scaled(plain: string, scale: number): bigint {
  const [whole = '0', fraction = ''] = plain.split('.');
  return BigInt(whole + fraction.padEnd(scale, '0'));
}

type Check = readonly [field: string, asked: string, answered: string | null, same: (a: string, b: string) => boolean];

function firstMismatch(checks: readonly Check[]): string | null {
  const wrong = checks.filter(([, asked, answered, same]) => answered !== null && !same(asked, answered));
  if (wrong.length === 0) return null;
  return wrong.map(([field, asked, answered]) => `${field} ${answered ?? 'none'} (asked ${asked})`).join(', ');
}

const sameText = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/** The create answer: payout address and amount always; currencies, networks and refund address when echoed. */
export function createdMismatch(ask: ExchangeAsk, created: CreatedExchange): string | null {
  return firstMismatch([
    ['payoutAddress', ask.payoutAddress, created.payoutAddress, sameAddress],
    ['fromAmount', ask.fromAmount, created.fromAmount, sameAmount],
    ['refundAddress', ask.refundAddress, created.refundAddress, sameAddress],
    ['fromCurrency', ask.fromCurrency, created.fromCurrency, sameText],
    ['fromNetwork', ask.fromNetwork, created.fromNetwork, sameText],
    ['toCurrency', ask.toCurrency, created.toCurrency, sameText],
    ['toNetwork', ask.toNetwork, created.toNetwork, sameText],
  ]);
}

/**
 * An exchange found again by payrail's id (a crash between ChangeNow creating it and payrail recording it), or read
 * at its end: it must pay the asked address, for the asked amount. At its end, `sentAmount` (what the chain shows
 * payrail sent) is compared with the amount ChangeNow says it received.
 */
export function statusMismatch(
  ask: Pick<ExchangeAsk, 'payoutAddress' | 'fromAmount'>,
  status: ExchangeStatus,
  sentAmount?: string,
): string | null {
  return firstMismatch([
    ['payoutAddress', ask.payoutAddress, status.payoutAddress, sameAddress],
    ['expectedAmountFrom', ask.fromAmount, status.expectedAmountFrom, sameAmount],
    // At the end ChangeNow must say what it received: a finished exchange without amountFrom is not checked blind.
    ...(sentAmount === undefined ? [] : [['amountFrom', sentAmount, status.amountFrom ?? 'none', sameAmount] as const]),
  ]);
}

const NO_SLIPPAGE: Percent = { numerator: 0n, denominator: 1n, text: '0' };

/**
 * At the end: an exchange that finished further below the estimate recorded at its creation than CHANGENOW_MAX_SLIPPAGE
 * allows. Null when amountTo is at least estimate × (100 − p) / 100; otherwise both values and that limit, in
 * `currency`. No rounding decides: both amounts are taken as whole numbers of their finest common decimal place and
 * compared exactly, so an amountTo equal to the limit passes and one smallest unit below it does not. The limit is
 * named exactly (it has at most the estimate's decimals plus the percent's plus two).
 */
export function belowEstimate(
  estimate: string,
  amountTo: string,
  currency: string,
  maxSlippage: Percent = NO_SLIPPAGE,
): string | null {
  const expected = normaliseAmount(estimate);
  const actual = normaliseAmount(amountTo);
  if (expected === null || actual === null) throw new Error(`not amounts: estimate ${estimate}, amountTo ${amountTo}`);
  const scale = Math.max(fractionDigits(expected), fractionDigits(actual));
  const e = scaled(expected, scale);
  if (withinTolerance(e, scaled(actual, scale), maxSlippage)) return null;
  // 100 × denominator is a power of ten: the limit's decimals are the scale's plus its digits.
  const hundred = 100n * maxSlippage.denominator;
  const limit = formatUnits(e * (hundred - maxSlippage.numerator), scale + hundred.toString().length - 1);
  const unit = currency.toUpperCase();
  return `amountTo ${actual} ${unit}, estimate ${expected} ${unit}, lowest accepted ${limit} ${unit} (CHANGENOW_MAX_SLIPPAGE ${maxSlippage.text} %)`;
}
