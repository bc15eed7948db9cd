/**
 * What we accept from ChangeNow v2, as zod schemas over lossless-json output (every JSON number is a LosslessNumber
 * carrying its source text). Amounts become canonical plain decimal strings; unknown fields are dropped; a field we
 * rely on that is missing or malformed fails the whole response.
 */
import { isLosslessNumber, type LosslessNumber } from 'lossless-json';
import { z } from 'zod';
import { normaliseAmount } from './amount.ts';

export const EXCHANGE_STATUSES = [
  'new',
  'waiting',
  'confirming',
  'exchanging',
  'sending',
  'finished',
  'failed',
  'refunded',
  'verifying',
  'expired',
] as const;
export type ExchangeStatusName = (typeof EXCHANGE_STATUSES)[number];

export interface Estimate {
  fromAmount: string;
  toAmount: string;
  depositFee: string | null;
  withdrawalFee: string | null;
  /** Present for fixed-rate estimates: pass it to createExchange to lock the rate. */
  rateId: string | null;
  validUntil: string | null;
}

export interface CreatedExchange {
  id: string;
  payinAddress: string;
  payoutAddress: string;
  fromAmount: string;
  toAmount: string;
  /** Memo/tag the deposit must carry (XRP, XLM, TON…); null when the pay-in network needs none. */
  payinExtraId: string | null;
  /** Echoes of the request, when ChangeNow sends them (null when it does not): compared with what was asked. */
  fromCurrency: string | null;
  toCurrency: string | null;
  fromNetwork: string | null;
  toNetwork: string | null;
  refundAddress: string | null;
}

export interface ExchangeStatus {
  id: string;
  status: ExchangeStatusName;
  /** Actual amounts: null until ChangeNow knows them (amountTo stays null until the swap has finished). */
  amountFrom: string | null;
  amountTo: string | null;
  expectedAmountFrom: string | null;
  expectedAmountTo: string | null;
  payinAddress: string;
  payoutAddress: string;
  payinHash: string | null;
  payoutHash: string | null;
  refundHash: string | null;
  userId: string | null;
  /** Echo of the payload given at creation; JSON numbers in it come back as their source text (strings). */
  payload: Record<string, unknown> | null;
  updatedAt: string | null;
}

const amount = z
  .custom<LosslessNumber | string>((value) => isLosslessNumber(value) || typeof value === 'string', {
    message: 'must be a number',
  })
  .transform((value, ctx): string => {
    const text = typeof value === 'string' ? value : value.value;
    const normalised = normaliseAmount(text);
    if (normalised === null) {
      ctx.addIssue({ code: 'custom', message: `must be a non-negative decimal amount (got ${clip(text)})` });
      return z.NEVER;
    }
    return normalised;
  });

/** Missing and null both mean "not known": normalised to null. */
function orNull<T extends z.ZodType>(schema: T) {
  return schema.nullish().transform((value) => value ?? null);
}

const text = z.string().min(1, 'must not be empty');
/** Optional strings where ChangeNow sometimes sends "" for "none". */
const optionalText = orNull(z.string()).transform((value) => (value === '' ? null : value));

export const estimateSchema = z.object({
  fromAmount: amount,
  toAmount: amount,
  depositFee: orNull(amount),
  withdrawalFee: orNull(amount),
  rateId: optionalText,
  validUntil: optionalText,
}) satisfies z.ZodType<Estimate, unknown>;

export const createdExchangeSchema = z.object({
  id: text,
  payinAddress: text,
  payoutAddress: text,
  fromAmount: amount,
  toAmount: amount,
  payinExtraId: optionalText,
  fromCurrency: optionalText,
  toCurrency: optionalText,
  fromNetwork: optionalText,
  toNetwork: optionalText,
  refundAddress: optionalText,
}) satisfies z.ZodType<CreatedExchange, unknown>;

export const exchangeStatusSchema = z.object({
  id: text,
  status: z.enum(EXCHANGE_STATUSES),
  amountFrom: orNull(amount),
  amountTo: orNull(amount),
  expectedAmountFrom: orNull(amount),
  expectedAmountTo: orNull(amount),
  payinAddress: text,
  payoutAddress: text,
  payinHash: optionalText,
  payoutHash: optionalText,
  refundHash: optionalText,
  userId: optionalText,
  payload: orNull(
    z.record(z.string(), z.unknown()).transform((record) => numbersToText(record) as Record<string, unknown>),
  ),
  updatedAt: optionalText,
}) satisfies z.ZodType<ExchangeStatus, unknown>;

/** A count: a non-negative whole JSON number (its text, never through a float beyond the safe range). */
const count = z
  .custom<LosslessNumber>((value) => isLosslessNumber(value), { message: 'must be a number' })
  .transform((value, ctx): number => {
    const parsed = /^(0|[1-9][0-9]{0,14})$/.test(value.value) ? Number(value.value) : null;
    if (parsed === null) {
      ctx.addIssue({ code: 'custom', message: `must be a non-negative whole number (got ${clip(value.value)})` });
      return z.NEVER;
    }
    return parsed;
  });

/** GET /v2/exchanges: `{ count, exchanges }`, each exchange in the by-id shape. */
export const exchangeListSchema = z
  .object({
    count,
    exchanges: z.array(exchangeStatusSchema),
  })
  .superRefine((list, ctx) => {
    // `count` may be the total over every page, never fewer than the exchanges on this one.
    if (list.count < list.exchanges.length) {
      ctx.addIssue({
        code: 'custom',
        path: ['count'],
        message: `says ${list.count} but ${list.exchanges.length} exchanges were listed`,
      });
    }
  });

/** The `{ error, message }` body ChangeNow sends with 4xx answers. */
export const errorBodySchema = z.object({
  error: z
    .string()
    .nullish()
    .transform((value) => value ?? null),
  message: z
    .string()
    .nullish()
    .transform((value) => value ?? null),
});

/** Replaces LosslessNumbers by their source text, so callers never see lossless-json types. */
function numbersToText(value: unknown): unknown {
  if (isLosslessNumber(value)) return value.value;
  if (Array.isArray(value)) return value.map(numbersToText);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, numbersToText(inner)]));
  }
  return value;
}

export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => `${issue.path.join('.') || 'body'}: ${issue.message}`)
    .join('; ');
}

function clip(value: string): string {
  return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
}
