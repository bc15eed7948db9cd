/**
 * Bad webhook requests: every row is refused with a 4xx and writes nothing at all (not a payment, not a ledger row,
 * not a job, not even an ipn_count increment). Bodies meant to be refused by validation are correctly signed, so
 * the refusal proves the validation, not the signature check, caught them.
 */
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChannel } from '../support/channels.ts';
import { createTestDatabase, rowCounts, type TestDatabase } from '../support/db.ts';
import { CHANNEL_ID, ipnBody, signed } from '../support/ipn.ts';
import { IPN_SECRET, startTestPayrail, type TestPayrail } from '../support/payrail.ts';

const WALLET = '0x8ba1f109551bD432803012645Ac136ddd64DBA72';
const ORDER_ID = `PGP-6271402111|${CHANNEL_ID}`;
const JSON_HEADERS = { 'content-type': 'application/json' };

interface BuiltRequest {
  raw: string;
  headers: Record<string, string>;
}

interface BadRow {
  name: string;
  /** Builds the request; `paymentId` is fresh for every row. */
  build: (paymentId: number) => BuiltRequest;
  status: number;
  /** Substring expected in the response's `error` field. */
  error?: string;
}

/** HMAC-SHA512 over exact text, for bodies `signed()` cannot canonicalize (it parses first). */
function hmac(text: string, secret = IPN_SECRET): string {
  return createHmac('sha512', secret).update(text, 'utf8').digest('hex');
}

/** The finished fixture with a fresh payment id and the given fields replaced. */
function body(paymentId: number, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return ipnBody({ payment_id: paymentId, order_id: ORDER_ID, ...overrides });
}

function without(paymentId: number, key: string): Record<string, unknown> {
  const b = body(paymentId);
  delete b[key];
  return b;
}

/** Signed correctly (canonical form, right secret): only validation can refuse it. */
function validlySigned(value: Record<string, unknown> | string): BuiltRequest {
  return signed(value, IPN_SECRET);
}

/** Exactly this text, signed as it stands: for what signed() cannot canonicalize, or must not. */
function signedAsIs(raw: string): BuiltRequest {
  return { raw, headers: { ...JSON_HEADERS, 'x-nowpayments-sig': hmac(raw) } };
}

/** The body's JSON text sent with this x-nowpayments-sig header, whatever it is. */
function sentWithSignature(paymentId: number, signature: string): BuiltRequest {
  return { raw: JSON.stringify(body(paymentId)), headers: { ...JSON_HEADERS, 'x-nowpayments-sig': signature } };
}

/** Raw JSON text with outcome_amount written exactly as `amountText` (e.g. an exponent). */
function withOutcomeText(paymentId: number, amountText: string): string {
  const raw = JSON.stringify(body(paymentId));
  const replaced = raw.replace('"outcome_amount":0.00487', `"outcome_amount":${amountText}`);
  if (replaced === raw) throw new Error('fixture changed: outcome_amount not found');
  return replaced;
}

/** Refused by validation alone: the body, properly signed, with these fields changed. */
function badFields(name: string, fields: Record<string, unknown>, error: string): BadRow {
  return { name, build: (id) => validlySigned(body(id, fields)), status: 400, error };
}

/** Refused by validation alone: the body, properly signed, without this field. */
function missing(field: string, error: string): BadRow {
  return { name: `missing ${field}`, build: (id) => validlySigned(without(id, field)), status: 400, error };
}

/** Refused by validation alone: the body, properly signed, with outcome_amount written exactly as `amountText`. */
function badOutcomeText(name: string, amountText: string, error: string): BadRow {
  return { name, build: (id) => validlySigned(withOutcomeText(id, amountText)), status: 400, error };
}

const ORDER_ID_ERROR = 'order_id: must look like PGP-{userId}|{channelId}';
const SIGNATURE_ERROR = 'invalid x-nowpayments-sig signature';
const STATUS_ERROR =
  'payment_status: Invalid option: expected one of "waiting"|"confirming"|"confirmed"|"sending"|"partially_paid"|"finished"|"failed"|"refunded"|"expired"';
const PLAIN_DECIMAL_ERROR = 'must be a non-negative plain decimal (no sign, no exponent)';

const rows: BadRow[] = [
  // --- signature -----------------------------------------------------------------------------------------------
  {
    name: 'missing signature header',
    build: (id) => ({ raw: JSON.stringify(body(id)), headers: { ...JSON_HEADERS } }),
    status: 401,
    error: 'missing x-nowpayments-sig header',
  },
  {
    name: 'empty signature header',
    build: (id) => sentWithSignature(id, ''),
    status: 401,
    error: 'missing x-nowpayments-sig header',
  },
  {
    name: 'wrong signature (well-formed hex, wrong value)',
    build: (id) => sentWithSignature(id, 'ab'.repeat(64)),
    status: 401,
    error: SIGNATURE_ERROR,
  },
  {
    name: 'signature made with another secret',
    build: (id) => signed(body(id), 'another-ipn-secret-0123456789abcdef'),
    status: 401,
    error: SIGNATURE_ERROR,
  },
  {
    name: 'signature for a different body (other payment id)',
    build: (id) => ({ raw: JSON.stringify(body(id)), headers: validlySigned(body(id + 1_000_000)).headers }),
    status: 401,
    error: SIGNATURE_ERROR,
  },
  {
    name: 'body changed after signing (one digit of outcome_amount)',
    build: (id) => {
      const { raw, headers } = validlySigned(body(id));
      return { raw: raw.replace('"outcome_amount":0.00487', '"outcome_amount":0.00488'), headers };
    },
    status: 401,
    error: SIGNATURE_ERROR,
  },
  {
    name: 'signature over the unsorted body text (not the canonical, key-sorted form)',
    build: (id) => signedAsIs(JSON.stringify(body(id))),
    status: 401,
    error: SIGNATURE_ERROR,
  },
  {
    name: 'signature too short (64 hex chars, a SHA-256 length)',
    build: (id) => {
      const { raw, headers } = validlySigned(body(id));
      return {
        raw,
        headers: { ...headers, 'x-nowpayments-sig': (headers['x-nowpayments-sig'] as string).slice(0, 64) },
      };
    },
    status: 401,
    error: SIGNATURE_ERROR,
  },
  {
    name: 'signature too long (right signature plus one hex char)',
    build: (id) => {
      const { raw, headers } = validlySigned(body(id));
      return { raw, headers: { ...headers, 'x-nowpayments-sig': `${headers['x-nowpayments-sig'] as string}0` } };
    },
    status: 401,
    error: SIGNATURE_ERROR,
  },
  {
    name: 'signature not hex (128 chars)',
    build: (id) => sentWithSignature(id, 'z'.repeat(128)),
    status: 401,
    error: SIGNATURE_ERROR,
  },

  // --- not a JSON object ---------------------------------------------------------------------------------------
  {
    name: 'body not JSON',
    build: () => signedAsIs('payment_id=1&payment_status=finished'),
    status: 400,
    error: "body is not valid JSON: JSON value expected but got 'p' at position 0",
  },
  {
    name: 'body truncated JSON',
    build: (id) => signedAsIs(JSON.stringify(body(id)).slice(0, -1)),
    status: 400,
    error: "body is not valid JSON: Quoted object key or end of object '}' expected but reached end of input",
  },
  {
    name: 'empty body',
    build: () => signedAsIs(''),
    status: 400,
    error: 'body is not valid JSON: JSON value expected but reached end of input at position 0',
  },
  {
    name: 'JSON array body',
    build: (id) => validlySigned(JSON.stringify([body(id)])),
    status: 400,
    error: 'body must be a JSON object',
  },
  {
    name: 'JSON string body',
    build: () => validlySigned(JSON.stringify('finished')),
    status: 400,
    error: 'body must be a JSON object',
  },
  {
    name: 'JSON null body',
    build: () => validlySigned('null'),
    status: 400,
    error: 'body must be a JSON object',
  },
  {
    name: 'JSON number body',
    build: () => validlySigned('5077125051'),
    status: 400,
  },
  {
    name: 'duplicate keys (payment_id twice with different values)',
    build: (id) => {
      const rest = JSON.stringify(body(id)).replace(/^\{"payment_id":\d+,/, '');
      return signedAsIs(`{"payment_id":${id},"payment_id":${id + 1},${rest}`);
    },
    status: 400,
    error: "body is not valid JSON: Duplicate key 'payment_id'",
  },

  // --- required fields -----------------------------------------------------------------------------------------
  missing('payment_id', 'payment_id: Invalid input'),
  missing('order_id', 'order_id: Invalid input: expected string, received undefined'),
  missing('outcome_amount', 'outcome_amount: Invalid input'),
  missing('outcome_currency', 'outcome_currency: Invalid input: expected string, received undefined'),
  missing('payment_status', STATUS_ERROR),

  // --- payment_id ----------------------------------------------------------------------------------------------
  badFields('payment_id as a boolean', { payment_id: true }, 'payment_id: Invalid input'),
  {
    name: 'payment_id negative',
    build: (id) => validlySigned(body(id, { payment_id: -id })),
    status: 400,
    error: 'payment_id: must be a positive integer',
  },
  badFields('payment_id zero', { payment_id: 0 }, 'payment_id: must be a positive integer'),
  badFields('payment_id with decimals (1.5)', { payment_id: 1.5 }, 'payment_id: must be a positive integer'),
  {
    name: 'payment_id with 21 digits',
    build: (id) =>
      validlySigned(JSON.stringify(body(id)).replace(`"payment_id":${id}`, '"payment_id":123456789012345678901')),
    status: 400,
    error: 'payment_id: must be a positive integer',
  },
  badFields('payment_id as a non-numeric string', { payment_id: 'abc' }, 'payment_id: must be a positive integer'),

  // --- outcome_amount ------------------------------------------------------------------------------------------
  badFields('outcome_amount negative', { outcome_amount: -0.00487 }, `outcome_amount: ${PLAIN_DECIMAL_ERROR}`),
  badFields(
    'outcome_amount zero with status finished',
    { outcome_amount: 0 },
    'outcome_amount: a finished payment must have a positive outcome_amount',
  ),
  badOutcomeText('outcome_amount in exponent notation (4.87e-3)', '4.87e-3', `outcome_amount: ${PLAIN_DECIMAL_ERROR}`),
  badOutcomeText('outcome_amount in exponent notation (487E-5)', '487E-5', `outcome_amount: ${PLAIN_DECIMAL_ERROR}`),
  badOutcomeText(
    'outcome_amount with 19 decimals (ETH has 18)',
    '0.0048700000000000001',
    'outcome_amount: amount has more decimals than the asset allows (18)',
  ),
  badOutcomeText(
    'outcome_amount with 40 integer digits',
    '1234567890123456789012345678901234567890',
    `outcome_amount: ${PLAIN_DECIMAL_ERROR}`,
  ),
  badFields('outcome_amount as a string "abc"', { outcome_amount: 'abc' }, `outcome_amount: ${PLAIN_DECIMAL_ERROR}`),
  badFields(
    'outcome_amount as a string with a sign "-1"',
    { outcome_amount: '-1' },
    `outcome_amount: ${PLAIN_DECIMAL_ERROR}`,
  ),
  badFields('outcome_amount as an object', { outcome_amount: { value: '0.00487' } }, 'outcome_amount: Invalid input'),
  badFields('outcome_amount null', { outcome_amount: null }, 'outcome_amount: Invalid input'),

  // --- payment_status ------------------------------------------------------------------------------------------
  badFields('unknown payment_status "paid"', { payment_status: 'paid' }, STATUS_ERROR),
  badFields('payment_status in upper case "FINISHED"', { payment_status: 'FINISHED' }, STATUS_ERROR),

  // --- order_id ------------------------------------------------------------------------------------------------
  badFields('order_id "PGP-123" (no channel)', { order_id: 'PGP-123' }, ORDER_ID_ERROR),
  badFields('order_id "PGP-abc|-100123" (user id not a number)', { order_id: 'PGP-abc|-100123' }, ORDER_ID_ERROR),
  badFields('order_id "PGP-1|-100123|x" (trailing part)', { order_id: 'PGP-1|-100123|x' }, ORDER_ID_ERROR),
  badFields('order_id "ORDER-1|-100123" (wrong prefix)', { order_id: 'ORDER-1|-100123' }, ORDER_ID_ERROR),
  badFields('order_id "PGP-01|-100123" (leading zero)', { order_id: 'PGP-01|-100123' }, ORDER_ID_ERROR),
  badFields('order_id "PGP-1|-0100123" (channel id with leading zero)', { order_id: 'PGP-1|-0100123' }, ORDER_ID_ERROR),
  badFields('order_id as a number', { order_id: 6271402111 }, 'order_id: Invalid input: expected string'),

  // --- outcome_currency ----------------------------------------------------------------------------------------
  // A signed outcome in a currency payrail does not credit (doge, usdt) is kept for review, not refused:
  // intake-review.test.ts. What is not a currency code at all is refused.
  badFields(
    'outcome_currency not a currency code "e-th"',
    { outcome_currency: 'e-th' },
    'outcome_currency: must be a currency code',
  ),

  // --- size and depth ------------------------------------------------------------------------------------------
  {
    name: 'oversized body (70,000-char padding field, properly signed)',
    build: (id) => validlySigned(body(id, { padding: 'x'.repeat(70_000) })),
    status: 413,
    error: 'Request body is too large',
  },
  {
    // 100,000 bytes: over the 64 KiB limit, so it is refused before anything parses it.
    name: 'deeply nested JSON (100,000 levels of "[")',
    build: () => signedAsIs('['.repeat(100_000)),
    status: 413,
    error: 'Request body is too large',
  },
  {
    // Within the body limit: the parser itself must refuse it (stack exhaustion is caught, not a 500).
    name: 'deeply nested JSON within the body limit (30,000 levels, closed)',
    build: (id) => {
      const deep = `"deep":${'['.repeat(30_000)}${']'.repeat(30_000)},"order_description"`;
      return signedAsIs(JSON.stringify(body(id)).replace('"order_description"', deep));
    },
    status: 400,
    error: 'body is not valid JSON: Maximum call stack size exceeded',
  },
];

describe('POST /webhooks/nowpayments refuses bad input and writes nothing', () => {
  let db: TestDatabase;
  let payrail: TestPayrail;
  let nextPaymentId = 7_100_000_001;

  beforeAll(async () => {
    db = await createTestDatabase();
    // Web only: a worker would take the valid payment's conversion job mid-test and change the job count under the assertions.
    payrail = await startTestPayrail(db, { roles: { web: true, worker: false } });

    await createChannel(payrail, CHANNEL_ID, {
      payoutStrategy: 'threshold',
      thresholdUsd: '100.00',
      payoutCurrency: 'usdt',
      payoutNetwork: 'eth',
      walletAddress: WALLET,
    });

    // One valid finished IPN, so every table a refusal could touch already has rows.
    const valid = signed(body(nextPaymentId++), IPN_SECRET);
    const accepted = await payrail.request('POST', '/webhooks/nowpayments', {
      raw: valid.raw,
      headers: valid.headers,
      token: null,
    });
    expect(accepted.status).toBe(200);
    expect(accepted.body).toMatchObject({ outcome: 'recorded', status: 'finished' });
    expect(await rowCounts(db)).toMatchObject({
      payments: 1,
      channels: 1,
      ledger_journals: 1,
      ledger_entries: 3,
      audit_log: 1,
      ipn_count: 1,
    });
  });

  afterAll(async () => {
    await payrail?.stop();
    await db?.close();
  });

  it('has at least 24 rows', () => {
    expect(rows.length).toBeGreaterThanOrEqual(24);
    expect(new Set(rows.map((r) => r.name)).size).toBe(rows.length);
  });

  // lossless-json parses a top-level number into a LosslessNumber object: the guard must still call it what it is.
  it('a bare JSON number body is refused as "body must be a JSON object"', async () => {
    const request = validlySigned('5077125052');
    const response = await payrail.request('POST', '/webhooks/nowpayments', {
      raw: request.raw,
      headers: request.headers,
      token: null,
    });
    expect(response.status).toBe(400);
    expect(response.body).toEqual({ error: 'body must be a JSON object' });
  });

  it.each(rows)('$name → $status', async (row) => {
    const request = row.build(nextPaymentId++);
    const before = await rowCounts(db);
    const response = await payrail.request('POST', '/webhooks/nowpayments', {
      raw: request.raw,
      headers: request.headers,
      token: null,
    });
    expect(response.status).toBe(row.status);
    expect(response.body).toEqual({ error: expect.any(String) });
    if (row.error !== undefined) expect(response.body.error).toContain(row.error);
    expect(await rowCounts(db)).toEqual(before);
  });
});
