/**
 * Exchanges as ChangeNow writes them. Amounts leave as JSON numbers, as ChangeNow sends them, written from exact
 * decimals (never a float), and arrive read from their source text.
 */
import { isLosslessNumber, LosslessNumber } from 'lossless-json';
import type { SimExchange } from './model.ts';
import { Decimal } from './pricing.ts';

/** A JSON number written from exact decimal text. */
export function num(text: string): LosslessNumber {
  return new LosslessNumber(text);
}

function numOrNull(text: string | null): LosslessNumber | null {
  return text === null ? null : num(text);
}

/** The exact text of a JSON amount: a number's source text (exponent form made plain, exactly) or a numeric string. */
export function amountText(value: unknown): string | null {
  const raw = isLosslessNumber(value) ? value.value : typeof value === 'string' ? value : null;
  if (raw === null || !/^(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]{1,3})?$/.test(raw)) return null;
  return new Decimal(raw).toFixed();
}

/** An exchange as by-id and the list answer it. */
export function exchangeView(ex: SimExchange) {
  return {
    id: ex.id,
    status: ex.status,
    actionsAvailable: false,
    fromCurrency: ex.fromCurrency,
    fromNetwork: ex.fromNetwork,
    toCurrency: ex.toCurrency,
    toNetwork: ex.toNetwork,
    expectedAmountFrom: num(ex.expectedAmountFrom),
    expectedAmountTo: num(ex.expectedAmountTo),
    amountFrom: numOrNull(ex.amountFrom),
    amountTo: numOrNull(ex.amountTo),
    payinAddress: ex.payinAddress,
    payoutAddress: ex.payoutAddress,
    payinHash: ex.payinHash,
    payoutHash: ex.payoutHash,
    refundHash: ex.refundHash,
    refundAddress: ex.refundAddress,
    createdAt: ex.createdAt,
    updatedAt: ex.updatedAt,
    depositReceivedAt: ex.depositReceivedAt === null ? null : new Date(ex.depositReceivedAt).toISOString(),
    userId: ex.userId,
    payload: ex.payload,
  };
}

/** A new exchange as its creation answers it. */
export function createdView(ex: SimExchange) {
  return {
    id: ex.id,
    fromAmount: num(ex.expectedAmountFrom),
    toAmount: num(ex.expectedAmountTo),
    flow: 'standard',
    type: 'direct',
    payinAddress: ex.payinAddress,
    payoutAddress: ex.payoutAddress,
    payinExtraId: null,
    payoutExtraId: null,
    fromCurrency: ex.fromCurrency,
    toCurrency: ex.toCurrency,
    refundAddress: ex.refundAddress,
    refundExtraId: null,
    fromNetwork: ex.fromNetwork,
    toNetwork: ex.toNetwork,
  };
}
