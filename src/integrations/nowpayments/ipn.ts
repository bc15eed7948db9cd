/**
 * The NOWPayments IPN at the edge: raw body → lossless JSON → signature → zod schema → a typed Ipn. Nothing past
 * this file sees untyped input, and no amount ever becomes a JavaScript number.
 */
import { isLosslessNumber, parse } from 'lossless-json';
import { z } from 'zod';
import {
  AmountError,
  decimalsOf,
  INTAKE_ASSETS,
  isAssetCode,
  isPlainDecimal,
  parseUnits,
  type AssetCode,
} from '../../money/index.ts';
import { canonicalIpnJson, signatureMatches } from './signature.ts';

export const PAYMENT_STATUSES = [
  'waiting',
  'confirming',
  'confirmed',
  'sending',
  'partially_paid',
  'finished',
  'failed',
  'refunded',
  'expired',
] as const;
export type IpnStatus = (typeof PAYMENT_STATUSES)[number];

export interface Ipn {
  readonly paymentId: string;
  readonly invoiceId: string | null;
  readonly status: IpnStatus;
  readonly orderId: string;
  readonly userId: string;
  readonly channelId: string;
  readonly payCurrency: string;
  readonly payAmount: string;
  readonly actuallyPaid: string;
  readonly priceAmount: string;
  readonly priceCurrency: string;
  readonly outcomeAmount: string;
  /** As NOWPayments names it: any currency its account pays out in, not only those payrail credits. */
  readonly outcomeCurrency: string;
  /** The asset payrail credits this outcome as, or null when it credits none (the IPN is kept for review). */
  readonly outcomeAsset: AssetCode | null;
  /** outcome_amount in the outcome asset's smallest unit; null with outcomeAsset. */
  readonly outcomeUnits: bigint | null;
  /** A repeated deposit to the same pay address: the payment it followed. */
  readonly parentPaymentId: string | null;
  /** The body as received, re-serialized without loss (for the payment's record). */
  readonly json: string;
}

export type IpnReading = { ok: true; ipn: Ipn } | { ok: false; status: 400 | 401; error: string };

/** A JSON number as its exact source text. */
class JsonNumber {
  constructor(readonly text: string) {}
}

/** The user part of an order id: a Telegram user id. */
export const ORDER_USER_ID_RE = /^[1-9][0-9]{0,19}$/;
/** The channel part of an order id: a Telegram chat id, usually negative. */
export const ORDER_CHANNEL_ID_RE = /^-?[1-9][0-9]{0,19}$/;
/** `PGP-{userId}|{channelId}`: a Telegram user id and a (usually negative) channel id. */
const ORDER_ID_RE = new RegExp(
  `^PGP-(${ORDER_USER_ID_RE.source.slice(1, -1)})\\|(${ORDER_CHANNEL_ID_RE.source.slice(1, -1)})$`,
);

/**
 * The order id payrail reads back from every IPN of a payment, for a payment by `userId` to `channelId`: written here,
 * next to the parser, so what checkout sends NOWPayments is always what intake accepts.
 */
export function orderIdFor(userId: string, channelId: string): string {
  const orderId = `PGP-${userId}|${channelId}`;
  if (!ORDER_USER_ID_RE.test(userId) || !ORDER_CHANNEL_ID_RE.test(channelId) || !ORDER_ID_RE.test(orderId))
    throw new Error(`no order id for user ${JSON.stringify(userId)} and channel ${JSON.stringify(channelId)}`);
  return orderId;
}

const numberText = z.union([z.instanceof(JsonNumber).transform((n) => n.text), z.string()]);
const decimal = numberText.refine(isPlainDecimal, {
  message: 'must be a non-negative plain decimal (no sign, no exponent)',
});
const integerId = numberText.refine((t) => /^[1-9][0-9]{0,19}$/.test(t), { message: 'must be a positive integer' });
const currency = z
  .string()
  .regex(/^[a-zA-Z0-9]{2,20}$/, 'must be a currency code')
  .transform((s) => s.toLowerCase());

/** The IPN's fields as readIpn validates them (exported so the API description's copy is held to the same fields). */
export const IPN_SCHEMA = z.object({
  payment_id: integerId,
  invoice_id: integerId.nullish(),
  parent_payment_id: integerId.nullish(),
  payment_status: z.enum(PAYMENT_STATUSES),
  order_id: z.string().regex(ORDER_ID_RE, 'must look like PGP-{userId}|{channelId}'),
  pay_currency: currency,
  pay_amount: decimal,
  actually_paid: decimal,
  price_amount: decimal,
  price_currency: currency,
  outcome_amount: decimal,
  outcome_currency: currency,
});

export function readIpn(rawBody: string, signature: string | undefined, secret: string): IpnReading {
  if (signature === undefined || signature.length === 0)
    return { ok: false, status: 401, error: 'missing x-nowpayments-sig header' };
  const signed = readSignedBody(rawBody, signature, secret);
  if (!signed.ok) return signed;
  const fields = readFields(signed.parsed);
  if (!fields.ok) return fields;
  const outcome = readOutcome(fields.body);
  if (!outcome.ok) return outcome;
  return { ok: true, ipn: toIpn(fields.body, outcome, signed.canonical) };
}

type Refusal = Extract<IpnReading, { ok: false }>;
type IpnFields = z.infer<typeof IPN_SCHEMA>;

/** The body as a JSON object and its canonical text, once the signature over that text is verified. */
function readSignedBody(
  rawBody: string,
  signature: string,
  secret: string,
): Refusal | { ok: true; parsed: object; canonical: string } {
  let parsed: unknown;
  try {
    parsed = parse(rawBody);
  } catch (error) {
    return { ok: false, status: 400, error: `body is not valid JSON: ${(error as Error).message}` };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed) || isLosslessNumber(parsed))
    return { ok: false, status: 400, error: 'body must be a JSON object' };
  // Each step below keeps its own try: the signature check sits between them, and each refusal names its step.
  let canonical: string;
  try {
    canonical = canonicalIpnJson(parsed);
  } catch (error) {
    return { ok: false, status: 400, error: `body cannot be canonicalized: ${(error as Error).message}` };
  }
  if (!signatureMatches(signature, canonical, secret))
    return { ok: false, status: 401, error: 'invalid x-nowpayments-sig signature' };
  return { ok: true, parsed, canonical };
}

/** The signed body held to IPN_SCHEMA. */
function readFields(parsed: object): Refusal | { ok: true; body: IpnFields } {
  let schemaInput: unknown;
  try {
    schemaInput = toSchemaInput(parsed);
  } catch (error) {
    // A signed body nested deeply enough to exhaust the stack here (this walk's frames are larger than the parser's
    // and the canonicalizer's while the code is not yet optimized) is refused like one the parser gives up on; left
    // uncaught it was a 500.
    return { ok: false, status: 400, error: `body cannot be read: ${(error as Error).message}` };
  }
  const result = IPN_SCHEMA.safeParse(schemaInput);
  if (!result.success) {
    const reason = result.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ');
    return { ok: false, status: 400, error: reason };
  }
  const body = result.data;
  if (body.parent_payment_id === body.payment_id)
    return { ok: false, status: 400, error: 'parent_payment_id: a payment cannot be its own parent' };
  return { ok: true, body };
}

type Outcome = Pick<Ipn, 'outcomeAsset' | 'outcomeUnits'>;

function readOutcome(body: IpnFields): Refusal | ({ ok: true } & Outcome) {
  // A signed outcome in a currency payrail does not credit is still a payment NOWPayments holds for us: it is kept
  // (for review) rather than refused, or NOWPayments stops resending it and the money goes unrecorded.
  const outcomeAsset =
    isAssetCode(body.outcome_currency) && INTAKE_ASSETS.includes(body.outcome_currency) ? body.outcome_currency : null;
  if (outcomeAsset === null) return { ok: true, outcomeAsset, outcomeUnits: null };
  let outcomeUnits: bigint;
  try {
    outcomeUnits = parseUnits(body.outcome_amount, decimalsOf(outcomeAsset));
  } catch (error) {
    if (error instanceof AmountError) return { ok: false, status: 400, error: `outcome_amount: ${error.message}` };
    throw error;
  }
  if (body.payment_status === 'finished' && outcomeUnits === 0n) {
    return {
      ok: false,
      status: 400,
      error: 'outcome_amount: a finished payment must have a positive outcome_amount',
    };
  }
  return { ok: true, outcomeAsset, outcomeUnits };
}

function toIpn(body: IpnFields, outcome: Outcome, canonical: string): Ipn {
  const order = ORDER_ID_RE.exec(body.order_id) as RegExpExecArray;
  return {
    paymentId: body.payment_id,
    invoiceId: body.invoice_id ?? null,
    status: body.payment_status,
    orderId: body.order_id,
    userId: order[1] as string,
    channelId: order[2] as string,
    payCurrency: body.pay_currency,
    payAmount: body.pay_amount,
    actuallyPaid: body.actually_paid,
    priceAmount: body.price_amount,
    priceCurrency: body.price_currency,
    outcomeAmount: body.outcome_amount,
    outcomeCurrency: body.outcome_currency,
    outcomeAsset: outcome.outcomeAsset,
    outcomeUnits: outcome.outcomeUnits,
    parentPaymentId: body.parent_payment_id ?? null,
    json: canonical,
  };
}

/** Replaces lossless numbers with JsonNumber so the schema can tell a JSON number from a JSON string. */
function toSchemaInput(value: unknown): unknown {
  if (isLosslessNumber(value)) return new JsonNumber(value.value);
  if (Array.isArray(value)) return value.map(toSchemaInput);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toSchemaInput(v)]));
  }
  return value;
}
