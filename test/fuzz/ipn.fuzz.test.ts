/**
 * Property-based fuzzing of POST /webhooks/nowpayments over real HTTP, against a real database.
 *
 * Three generators: valid IPNs (any key order, whitespace, amounts at every magnitude the spec allows, numbers or
 * strings, extra fields of hostile unicode, header spellings NOWPayments may use), near-valid IPNs (one field or key
 * mutated, then signed with the real secret, so validation after the signature is what decides), and garbage (random
 * bytes and JSON, deep nesting, oversized bodies, wrong content types, missing / wrong / duplicated signatures).
 *
 * Every request is judged by an independent model of the IPN contract (`judge` below) and must get:
 *   - never a 5xx, and the process keeps answering (GET /health 200 after every property);
 *   - a 4xx that writes nothing at all (payments, ledger, audit log, channels, payouts, jobs: counts and row
 *     versions, so an update shows as well as an insert);
 *   - a 2xx only for a correctly signed, valid IPN, and then an exact recording: a first finished IPN for a
 *     registered channel credits exactly net = gross − floor(gross × 3%), once, in a balanced journal.
 *
 * A failure prints fast-check's seed and path; replay with FUZZ_SEED=<seed> FUZZ_PATH=<path> (FUZZ_RUNS=<n> changes
 * the run count). A 5xx fails with the error payrail logged for it.
 */
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { isLosslessNumber, parse } from 'lossless-json';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalIpnJson, signIpn } from '../../src/integrations/nowpayments/index.ts';
import { checkLedger } from '../../src/ledger/index.ts';
import { createChannelPair } from '../support/channels.ts';
import { createTestDatabase, fingerprint, type TestDatabase } from '../support/db.ts';
import { IPN_SECRET, logSink, startTestPayrail, type LogSink, type TestPayrail } from '../support/payrail.ts';
import {
  expectHealthy,
  fuzzParams,
  headerText,
  jsonSpace,
  jsonValueText,
  nastyString,
  numberText,
  objectText,
  send,
  type RawRequest,
  type RawResponse,
} from './support.ts';

const execFileAsync = promisify(execFile);

const WALLET = '0x8ba1f109551bD432803012645Ac136ddd64DBA72';
const INSTANT = '-1004000000001';
const THRESHOLD = '-1004000000002';
/** Never registered: its IPNs are kept for review (202). */
const UNREGISTERED = '-1004000000999';
const REGISTERED: ReadonlyMap<string, 'instant' | 'threshold'> = new Map([
  [INSTANT, 'instant'],
  [THRESHOLD, 'threshold'],
]);
/** PLATFORM_FEE_PERCENT's default, as the test payrail runs. */
const FEE_PERCENT = 3n;
const WEBHOOK = '/webhooks/nowpayments';
/** WEBHOOK_BODY_LIMIT_BYTES' default. */
const BODY_LIMIT = 65_536;
const ETH_DECIMALS = 18;

// NOWPayments' statuses written out here, not imported from src: the fuzz models the API independently of the code.
const STATUSES = [
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
type Status = (typeof STATUSES)[number];
const SCHEMA_KEYS = [
  'payment_id',
  'invoice_id',
  'payment_status',
  'order_id',
  'pay_currency',
  'pay_amount',
  'actually_paid',
  'price_amount',
  'price_currency',
  'outcome_amount',
  'outcome_currency',
] as const;
const REQUIRED_KEYS = SCHEMA_KEYS.filter((k) => k !== 'invoice_id');

// --- the model: what the IPN contract accepts, written from the spec, not from the implementation -------------------

const ID_RE = /^[1-9][0-9]{0,19}$/;
const ORDER_RE = /^PGP-([1-9][0-9]{0,19})\|(-?[1-9][0-9]{0,19})$/;
const CURRENCY_RE = /^[a-zA-Z0-9]{2,20}$/;
/** A non-negative plain decimal: no sign, no exponent, no leading zero, at most 30 digits each side. */
const PLAIN_RE = /^(0|[1-9][0-9]{0,29})(\.[0-9]{1,30})?$/;

interface ValidIpn {
  paymentId: string;
  status: Status;
  orderId: string;
  userId: string;
  channelId: string;
  outcomeAmount: string;
  amounts: { pay_amount: string; actually_paid: string; price_amount: string };
  currencies: { pay_currency: string; price_currency: string };
  /** Lower-cased: any currency code is kept; only eth is credited. */
  outcomeCurrency: string;
  /** outcome_amount in wei; null for an outcome currency payrail does not credit. */
  gross: bigint | null;
}

/** `unknown`: either answer is right; `ipn` is what a 2xx must then have recorded. */
type Judgement =
  | { verdict: 'valid'; ipn: ValidIpn }
  | { verdict: 'invalid'; why: string }
  | { verdict: 'unknown'; why: string; ipn?: ValidIpn };

/** ETH amount text in wei; trailing zeros past 18 decimals are harmless, any other digit there is not. */
function weiOf(text: string): bigint | undefined {
  const [int = '', fraction = ''] = text.split('.');
  const significant = fraction.replace(/0+$/, '');
  if (significant.length > ETH_DECIMALS) return undefined;
  return BigInt(int + significant.padEnd(ETH_DECIMALS, '0'));
}

/** How deep arrays and objects nest in JSON text (brackets inside strings do not count). */
function nesting(raw: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '[' || c === '{') max = Math.max(max, ++depth);
    else if (c === ']' || c === '}') depth--;
  }
  return max;
}

/** Nesting no sender needs: past it, refusing and accepting are both right (how deep payrail gets depends on its stack). */
const MODEL_MAX_NESTING = 512;

/**
 * The IPN contract, as a model: JSON object, the eleven fields with their formats, ETH only, finished means paid.
 * A body nested deeper than any IPN is valid or not by the same rules, but payrail may also refuse it for its depth.
 */
function judge(raw: string): Judgement {
  const judgement = judgeContract(raw);
  if (judgement.verdict === 'valid' && nesting(raw) > MODEL_MAX_NESTING)
    return { verdict: 'unknown', why: 'nested deeper than any IPN', ipn: judgement.ipn };
  return judgement;
}

function judgeContract(raw: string): Judgement {
  let body: unknown;
  try {
    body = parse(raw);
  } catch (error) {
    // Too deep for this process's stack: whether payrail parses it depends on its stack, so either answer is fine.
    if (error instanceof RangeError) return { verdict: 'unknown', why: 'nesting too deep to judge here' };
    return { verdict: 'invalid', why: `not JSON (${(error as Error).message})` };
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body) || isLosslessNumber(body))
    return { verdict: 'invalid', why: 'not a JSON object' };
  const b = body as Record<string, unknown>;
  const field = (k: string): unknown => (Object.hasOwn(b, k) ? b[k] : undefined);
  const numberOrString = (v: unknown): string | undefined =>
    isLosslessNumber(v) ? v.value : typeof v === 'string' ? v : undefined;
  const invalid = (why: string): Judgement => ({ verdict: 'invalid', why });

  const paymentId = numberOrString(field('payment_id'));
  if (paymentId === undefined || !ID_RE.test(paymentId)) return invalid('payment_id');
  const invoice = field('invoice_id');
  if (invoice !== undefined && invoice !== null) {
    const text = numberOrString(invoice);
    if (text === undefined || !ID_RE.test(text)) return invalid('invoice_id');
  }
  const status = field('payment_status');
  if (typeof status !== 'string' || !(STATUSES as readonly string[]).includes(status)) return invalid('payment_status');
  const orderId = field('order_id');
  const order = typeof orderId === 'string' ? ORDER_RE.exec(orderId) : null;
  if (typeof orderId !== 'string' || !order) return invalid('order_id');
  const currencies: Record<string, string> = {};
  for (const k of ['pay_currency', 'price_currency', 'outcome_currency']) {
    const v = field(k);
    if (typeof v !== 'string' || !CURRENCY_RE.test(v)) return invalid(k);
    currencies[k] = v.toLowerCase();
  }
  const amounts: Record<string, string> = {};
  for (const k of ['pay_amount', 'actually_paid', 'price_amount', 'outcome_amount']) {
    const text = numberOrString(field(k));
    if (text === undefined || !PLAIN_RE.test(text)) return invalid(k);
    amounts[k] = text;
  }
  // Another outcome currency is signed money all the same: kept for review, its amount only a plain decimal.
  const foreign = currencies.outcome_currency !== 'eth';
  const gross = foreign ? null : weiOf(amounts.outcome_amount as string);
  if (gross === undefined) return invalid('outcome_amount: more than 18 decimals');
  if (status === 'finished' && gross === 0n) return invalid('finished with a zero outcome_amount');
  return {
    verdict: 'valid',
    ipn: {
      paymentId,
      status: status as Status,
      orderId,
      userId: order[1] as string,
      channelId: order[2] as string,
      outcomeAmount: amounts.outcome_amount as string,
      amounts: {
        pay_amount: amounts.pay_amount as string,
        actually_paid: amounts.actually_paid as string,
        price_amount: amounts.price_amount as string,
      },
      currencies: {
        pay_currency: currencies.pay_currency as string,
        price_currency: currencies.price_currency as string,
      },
      outcomeCurrency: currencies.outcome_currency as string,
      gross,
    },
  };
}

/** Decimal texts equal as numbers ("0.10" = "0.1"); both are plain decimals. */
function sameDecimal(a: string, b: string): boolean {
  const norm = (t: string) => (t.includes('.') ? t.replace(/0+$/, '').replace(/\.$/, '') : t);
  return norm(a) === norm(b);
}

// --- generators -----------------------------------------------------------------------------------------------------

const DIGITS = [...'0123456789'];
const digits = (minLength: number, maxLength: number) =>
  fc.string({ unit: fc.constantFrom(...DIGITS), minLength, maxLength });
const integerPart = fc.oneof(
  fc.constant('0'),
  fc.integer({ min: 1, max: 100 }).map(String),
  fc.tuple(fc.constantFrom(...'123456789'), digits(0, 29)).map(([a, b]) => a + b),
);
/** A plain decimal with at most `significant` fraction digits, padded with trailing zeros up to 30 in all. */
const plainDecimal = (significant: number) =>
  fc.tuple(integerPart, digits(0, significant), fc.integer({ min: 0, max: 30 })).map(([int, fraction, zeros]) => {
    const all = (fraction + '0'.repeat(zeros)).slice(0, 30);
    return all ? `${int}.${all}` : int;
  });
const telegramId = fc.oneof(
  fc.integer({ min: 1, max: 9_999_999 }).map(String),
  fc.tuple(fc.constantFrom(...'123456789'), digits(0, 19)).map(([a, b]) => a + b),
);
/** A currency code as written: case varies (the contract lowercases it). */
const currencyCode = (code: string) =>
  fc.constantFrom(code, code.toUpperCase(), code[0]!.toUpperCase() + code.slice(1));

interface IpnSpec {
  channel: string;
  userId: string;
  status: Status;
  outcome: string;
  invoice: 'absent' | 'null' | 'number' | 'string';
  outcomeCurrency: string;
  payCurrency: string;
  priceCurrency: string;
  payAmount: string;
  actuallyPaid: string;
  priceAmount: string;
  /** Which amounts and ids are sent as JSON strings instead of numbers (bit mask). */
  asStrings: number;
  extras: Array<[string, string]>;
  /** Seed of the key order. */
  order: number;
  space: string;
}

const extraKey = nastyString(12).filter((k) => !(SCHEMA_KEYS as readonly string[]).includes(k));

const ipnSpec: fc.Arbitrary<IpnSpec> = fc
  .record({
    channel: fc.constantFrom(INSTANT, INSTANT, THRESHOLD, THRESHOLD, UNREGISTERED),
    userId: telegramId,
    status: fc.oneof(
      { arbitrary: fc.constant('finished'), weight: 4 },
      { arbitrary: fc.constantFrom(...STATUSES), weight: 1 },
    ),
    outcome: plainDecimal(ETH_DECIMALS),
    invoice: fc.constantFrom('absent', 'null', 'number', 'string'),
    outcomeCurrency: currencyCode('eth'),
    payCurrency: fc.oneof(currencyCode('eth'), fc.stringMatching(/^[a-zA-Z0-9]{2,20}$/)),
    priceCurrency: fc.oneof(currencyCode('usd'), fc.stringMatching(/^[a-zA-Z0-9]{2,20}$/)),
    payAmount: plainDecimal(30),
    actuallyPaid: plainDecimal(30),
    priceAmount: plainDecimal(30),
    asStrings: fc.nat(63),
    extras: fc.array(fc.tuple(extraKey, jsonValueText), { maxLength: 4 }),
    order: fc.nat(),
    space: jsonSpace,
  })
  // A finished payment must have been paid something: zero is the contract's refusal, not a valid IPN.
  .filter((s) => s.status !== 'finished' || weiOf(s.outcome) !== 0n);

/** The fixture's fields that are not part of the contract, kept so bodies look like what NOWPayments sends. */
const FIXTURE_EXTRAS: Array<[string, string]> = [
  ['pay_address', '"0x4a2B8f7cE21c0fE1d5C6b0B1e6A0aB3f9c8D7e21"'],
  ['actually_paid_at_fiat', '14.98'],
  ['order_description', '"Premium tier, 30 days"'],
  ['purchase_id', '"5810376153"'],
  ['fee', '{"currency":"eth","depositFee":0.00002,"withdrawalFee":0.00006,"serviceFee":0}'],
];

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle<T>(items: T[], seed: number): T[] {
  const random = mulberry32(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/** The spec's [key, raw JSON value] pairs, in the spec's key order. */
function ipnPairs(spec: IpnSpec, paymentId: string): Array<[string, string]> {
  const bit = (n: number) => (spec.asStrings & (1 << n)) !== 0;
  const num = (text: string, asString: boolean) => (asString ? JSON.stringify(text) : text);
  const pairs: Array<[string, string]> = [
    ['payment_id', num(paymentId, bit(0))],
    ['payment_status', JSON.stringify(spec.status)],
    ['order_id', JSON.stringify(`PGP-${spec.userId}|${spec.channel}`)],
    ['pay_currency', JSON.stringify(spec.payCurrency)],
    ['pay_amount', num(spec.payAmount, bit(1))],
    ['actually_paid', num(spec.actuallyPaid, bit(2))],
    ['price_amount', num(spec.priceAmount, bit(3))],
    ['price_currency', JSON.stringify(spec.priceCurrency)],
    ['outcome_amount', num(spec.outcome, bit(4))],
    ['outcome_currency', JSON.stringify(spec.outcomeCurrency)],
    ...FIXTURE_EXTRAS,
  ];
  if (spec.invoice === 'null') pairs.push(['invoice_id', 'null']);
  if (spec.invoice === 'number') pairs.push(['invoice_id', '4522471936']);
  if (spec.invoice === 'string') pairs.push(['invoice_id', '"4522471936"']);
  // Extra keys are unique among themselves (a repeated key is the near-valid generator's business).
  const seen = new Set<string>();
  for (const [k, v] of spec.extras) {
    if (seen.has(k) || pairs.some(([p]) => p === k)) continue;
    seen.add(k);
    pairs.push([k, v]);
  }
  return shuffle(pairs, spec.order);
}

/** HMAC-SHA512 over exact text (for bodies that cannot be canonicalized). */
function hmac(text: string, secret = IPN_SECRET): string {
  return createHmac('sha512', secret).update(text, 'utf8').digest('hex');
}

/** The signature NOWPayments would send for this body text, or undefined when it has no canonical form. */
function realSignature(raw: string, secret = IPN_SECRET): string | undefined {
  try {
    return signIpn(canonicalIpnJson(parse(raw)), secret);
  } catch {
    return undefined;
  }
}

/** Content types a sender may use; payrail reads the body as text whatever the type. */
const GOOD_CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'text/plain',
  'application/octet-stream',
  'application/x-www-form-urlencoded',
  'APPLICATION/JSON',
  'application/json; charset=latin1',
  'application/json; charset=utf-16',
];
const BAD_CONTENT_TYPES = [
  '',
  'garbage',
  ';;;',
  'application/json, text/plain',
  '*/*',
  'application/',
  '/json',
  'multipart/form-data; boundary=zzz',
  'application/jsonp',
  'text/plain; charset=\u00ff',
  'application/json;;charset',
];
const contentType: fc.Arbitrary<string | null> = fc.oneof(
  { arbitrary: fc.constant(null), weight: 1 },
  { arbitrary: fc.constantFrom(...GOOD_CONTENT_TYPES), weight: 4 },
  { arbitrary: fc.constantFrom(...BAD_CONTENT_TYPES), weight: 2 },
  { arbitrary: headerText(40), weight: 1 },
);
const isGoodContentType = (ct: string | null) => ct === null || GOOD_CONTENT_TYPES.includes(ct);

// --- the harness ----------------------------------------------------------------------------------------------------

let db: TestDatabase;
let payrail: TestPayrail;
/** payrail's log, so a 5xx fails with the error payrail logged for it. */
let logs: LogSink;
let nextPaymentId = 8_100_000_000;
const freshPaymentId = () => String(nextPaymentId++);

interface Attempt {
  request: RawRequest;
  /** The body text as payrail will read it (UTF-8, malformed sequences replaced). */
  raw: string;
  /** True when exactly one signature header carries the body's real signature. */
  signatureValid: boolean;
  /** False when the content type is one payrail may refuse (415) before reading the body. */
  contentTypeGood: boolean;
}

/** `expectedSignature`: the body's real signature when this process cannot compute it (nesting too deep for its stack). */
function attempt(
  body: Buffer | string,
  headers: Array<[string, string]>,
  contentTypeValue: string | null,
  expectedSignature?: string,
): Attempt {
  const buffer = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  const raw = buffer.toString('utf8');
  const all: Array<[string, string]> =
    contentTypeValue === null ? [...headers] : [['content-type', contentTypeValue], ...headers];
  const sigs = all
    .filter(([n]) => n.toLowerCase() === 'x-nowpayments-sig')
    .map(([, v]) => v.replace(/^[ \t]+|[ \t]+$/g, ''));
  const expected = expectedSignature ?? realSignature(raw);
  const signatureValid = expected !== undefined && sigs.length === 1 && (sigs[0] as string).toLowerCase() === expected;
  return {
    request: { method: 'POST', path: WEBHOOK, headers: all, body: buffer },
    raw,
    signatureValid,
    contentTypeGood: isGoodContentType(contentTypeValue),
  };
}

async function paymentRow(paymentId: string): Promise<Record<string, any> | undefined> {
  const { rows } = await db.pool.query('select * from payments where payment_id = $1', [paymentId]);
  return rows[0];
}

async function journalOf(paymentId: string): Promise<Array<{ code: string; amount: string }>> {
  const { rows } = await db.pool.query(
    `select a.code, e.amount::text as amount from ledger_entries e join ledger_accounts a on a.id = e.account_id
       join ledger_journals j on j.id = e.journal_id where j.kind = 'payment_received' and j.ref = $1 order by a.code`,
    [paymentId],
  );
  return rows;
}

/** A credited payment's row and journal agree with each other and with the fee rule; an uncredited one has no journal. */
async function expectConsistentCredit(row: Record<string, any>): Promise<void> {
  const journal = await journalOf(row.payment_id);
  if (row.credited_at === null) {
    expect(journal, `payment ${row.payment_id} not credited but has a journal`).toEqual([]);
    return;
  }
  const gross = BigInt(row.gross_amount);
  const fee = (gross * FEE_PERCENT) / 100n;
  expect(gross, 'gross = outcome_amount in wei').toBe(weiOf(row.outcome_amount));
  expect(BigInt(row.fee_amount)).toBe(fee);
  expect(BigInt(row.net_amount)).toBe(gross - fee);
  const shard = String(BigInt(row.payment_id) % 16n).padStart(2, '0');
  expect(journal).toEqual(
    [
      { code: `channel:${row.channel_id}`, amount: String(gross - fee) },
      ...(fee > 0n ? [{ code: `platform:fees#${shard}`, amount: String(fee) }] : []),
      { code: `world:nowpayments#${shard}`, amount: String(-gross) },
    ].filter((e) => e.amount !== '0'),
  );
}

type Expectation = 'accept' | 'reject' | 'either';

/**
 * Sends one attempt and checks it against the model: never 5xx; a 4xx writes nothing; a 2xx is a correct recording.
 * `accept` and `reject` pin the class of answer; `either` is for inputs the model cannot decide (deep nesting).
 */
async function exercise(a: Attempt): Promise<RawResponse> {
  const judgement = judge(a.raw);
  // The limit counts the bytes sent (not the text they decode to, where a malformed byte becomes three).
  const tooLarge = (a.request.body as Buffer).length > BODY_LIMIT;
  let expectation: Expectation;
  if (tooLarge || !a.signatureValid || judgement.verdict === 'invalid') expectation = 'reject';
  else if (judgement.verdict === 'valid' && a.contentTypeGood) expectation = 'accept';
  else expectation = 'either';

  const valid = judgement.verdict === 'invalid' ? undefined : judgement.ipn;
  const existed = valid ? (await paymentRow(valid.paymentId)) !== undefined : false;
  const before = await fingerprint(db);
  const logged = logs.lines.length;
  const response = await send(payrail.url, a.request);
  if (response.status >= 500) {
    const failure = logs.lines.slice(logged).find((l) => l.event === 'request_failed') as
      { err?: { message?: string; stack?: string } } | undefined;
    expect.fail(
      `${response.status} ${response.text}: ${failure?.err?.stack?.split('\n').slice(0, 8).join(' | ') ?? 'no error logged'}`,
    );
  }
  const context = `${response.status} ${response.text.slice(0, 300)} (expected ${expectation}${judgement.verdict === 'invalid' ? `: ${judgement.why}` : ''})`;
  expect(response.status, context).toBeLessThan(500);
  expect(response.status, context).toBeGreaterThanOrEqual(200);

  if (response.status >= 400) {
    expect(expectation, context).not.toBe('accept');
    expect(await fingerprint(db), `a ${response.status} wrote something`).toEqual(before);
    if (tooLarge) expect([413, 415], context).toContain(response.status);
    return response;
  }
  expect(expectation, context).not.toBe('reject');
  expect([200, 202], context).toContain(response.status);
  // A 2xx means the model found a valid IPN (an undecided one must at least parse as one here).
  expect(valid, context).toBeDefined();
  await expectRecorded(valid as ValidIpn, response, existed, before);
  return response;
}

async function expectRecorded(
  ipn: ValidIpn,
  response: RawResponse,
  existed: boolean,
  before: Record<string, string | number>,
): Promise<void> {
  const after = await fingerprint(db);
  const row = await paymentRow(ipn.paymentId);
  expect(row, `accepted payment ${ipn.paymentId} has no row`).toBeDefined();
  if (!row) return;
  expect(response.json).toMatchObject({ paymentId: ipn.paymentId, status: row.status });
  expect(response.json.outcome === 'review').toBe(response.status === 202);
  // Nothing outside the payment, its journal and its job is ever touched by an IPN.
  for (const k of [
    'channels',
    'channels_versions',
    'payouts',
    'payouts_versions',
    'audit_log',
    'audit_log_versions',
    'chain_transfers',
    'chain_transfers_versions',
  ])
    expect(after[k], k).toEqual(before[k]);
  await expectConsistentCredit(row);

  if (existed) {
    // A later copy: counted, never a second payment or a second credit.
    expect(after.payments).toBe(before.payments);
    expect(after.ipn_count).toBe((before.ipn_count as number) + 1);
    expect((after.ledger_journals as number) - (before.ledger_journals as number)).toBeLessThanOrEqual(1);
    return;
  }

  const strategy = REGISTERED.get(ipn.channelId);
  // PARTIAL_PAYMENTS is review here (the default).
  const reason =
    ipn.gross === null
      ? `foreign_outcome_currency: ${ipn.outcomeCurrency}`
      : !strategy
        ? 'unknown_channel'
        : ipn.status === 'partially_paid'
          ? 'partially_paid'
          : null;
  const credited = ipn.status === 'finished' && reason === null;
  expect(response.json.outcome).toBe(reason === null ? 'recorded' : 'review');
  expect(response.json.reviewReason ?? null).toBe(reason);
  expect(row).toMatchObject({
    status: ipn.status,
    order_id: ipn.orderId,
    user_id: ipn.userId,
    channel_id: ipn.channelId,
    outcome_currency: ipn.outcomeCurrency,
    ...ipn.currencies,
    ipn_count: 1,
  });
  expect(
    sameDecimal(row.outcome_amount, ipn.outcomeAmount),
    `outcome_amount ${row.outcome_amount} vs ${ipn.outcomeAmount}`,
  ).toBe(true);
  for (const [k, v] of Object.entries(ipn.amounts)) expect(sameDecimal(row[k], v), `${k} ${row[k]} vs ${v}`).toBe(true);
  expect(after.payments).toBe((before.payments as number) + 1);

  if (credited && ipn.gross !== null) {
    // The credit: exactly net = gross − floor(gross × 3%), in one balanced journal.
    const fee = (ipn.gross * FEE_PERCENT) / 100n;
    expect(row.credited_at).not.toBeNull();
    expect({
      gross: row.gross_amount,
      fee: row.fee_amount,
      net: row.net_amount,
      strategy: row.payout_strategy,
      asset: row.asset,
    }).toEqual({
      gross: String(ipn.gross),
      fee: String(fee),
      net: String(ipn.gross - fee),
      strategy,
      asset: 'eth',
    });
    expect(after.ledger_journals).toBe((before.ledger_journals as number) + 1);
    expect(after.ledger_entries).toBe((before.ledger_entries as number) + (fee > 0n ? 3 : 2));
    expect(after.jobs).toBe((before.jobs as number) + (strategy === 'instant' ? 1 : 0));
    if (strategy === 'threshold') expect(row.conversion_status).toBe('pending');
  } else {
    expect(row.credited_at).toBeNull();
    expect(after.ledger_journals).toBe(before.ledger_journals);
    expect(after.ledger_entries).toBe(before.ledger_entries);
    expect(after.jobs).toBe(before.jobs);
  }
}

// --- near-valid: one mutation of a valid IPN ------------------------------------------------------------------------

type Mutation =
  | { kind: 'set'; key: string; value: string }
  | { kind: 'set-deep'; key: string; deep: Deep }
  | { kind: 'delete'; key: string }
  | { kind: 'duplicate'; key: string; value: string | null }
  | { kind: 'rename'; key: string; to: string }
  | { kind: 'wrap'; how: 'array' | 'string' | 'nested' | 'trailing' | 'bom' | 'truncate' };

const quoted = (arb: fc.Arbitrary<string>) => arb.map((s) => JSON.stringify(s));
/** Values one step from valid, per field. */
const nearValue: Record<string, fc.Arbitrary<string>> = {
  payment_id: fc.oneof(
    numberText,
    quoted(numberText),
    fc.constantFrom(
      '0',
      '"0"',
      '"01"',
      '-5077125051',
      '5077125051.0',
      '5e9',
      '123456789012345678901',
      '"12345678901234567890"',
      '12345678901234567890',
      'true',
      'null',
      '"\\u0031"',
      '" 1"',
    ),
  ),
  invoice_id: fc.oneof(numberText, quoted(numberText), fc.constantFrom('null', '0', '"x"', '1.5', 'true', '{}', '[]')),
  payment_status: fc.oneof(
    quoted(fc.constantFrom(...STATUSES)),
    quoted(
      fc.constantFrom(
        'FINISHED',
        'finished ',
        ' finished',
        'finishe',
        'Finished',
        'finished\u0000',
        '\u202efinished',
        'fіnished',
        'paid',
        '',
      ),
    ),
    quoted(nastyString(12)),
    fc.constantFrom('1', 'null', '["finished"]'),
  ),
  order_id: fc.oneof(
    fc
      .tuple(
        fc.constantFrom('PGP-', 'pgp-', 'PGP', 'PGP--', 'PGP-0', ' PGP-', 'PGP-\u202e'),
        telegramId,
        fc.constantFrom('|', '||', '/', '|+', '|-0', '| ', '|\u0000'),
        fc.constantFrom(INSTANT, THRESHOLD, UNREGISTERED, '1', '-1', '123456789012345678901', '1e5', '１'),
        fc.constantFrom('', '', '|x', ' ', '\n', '\u0000'),
      )
      .map((parts) => JSON.stringify(parts.join(''))),
    fc
      .tuple(telegramId, fc.constantFrom(INSTANT, THRESHOLD, UNREGISTERED))
      .map(([u, c]) => JSON.stringify(`PGP-${u}|${c}`)),
    quoted(nastyString(30)),
    fc.constantFrom('6271402111', 'null'),
  ),
  pay_currency: fc.oneof(
    quoted(fc.constantFrom('eth', 'ETH', 'e', 'x'.repeat(21), 'et h', 'eth\u0000', 'еth', '')),
    quoted(nastyString(22)),
    fc.constantFrom('1', 'null'),
  ),
  price_currency: fc.oneof(
    quoted(fc.constantFrom('usd', 'USD', 'u', 'x'.repeat(20), 'x'.repeat(21), 'us$', '')),
    quoted(nastyString(22)),
  ),
  outcome_currency: fc.oneof(
    quoted(fc.constantFrom('eth', 'ETH', 'usdt', 'usdc', 'usd', 'btc', 'weth', 'eth ', 'еth', 'ethereum', '')),
    quoted(nastyString(8)),
    fc.constantFrom('null', '1'),
  ),
  outcome_amount: fc.oneof(
    numberText,
    quoted(numberText),
    plainDecimal(30),
    quoted(plainDecimal(30)),
    fc.constantFrom(
      '0.0048700000000000001',
      '0.000000000000000001',
      '0.0000000000000000001',
      '0.100000000000000000000000000000',
      '0.1000000000000000000000000000000',
      '-0',
      '"-0"',
      '"+1"',
      '" 1"',
      '"1 "',
      '"1."',
      '".5"',
      '"0x10"',
      '"1_000"',
      '"١"',
      'NaN',
      'Infinity',
      '"Infinity"',
    ),
  ),
};
for (const k of ['pay_amount', 'actually_paid', 'price_amount'])
  nearValue[k] = nearValue.outcome_amount as fc.Arbitrary<string>;

/**
 * Deep nesting, from shallow to far beyond any stack, closed or not, as a compact description (counterexamples stay
 * readable) rendered by `deepText`. A closed one is already in canonical form (single keys, no spaces), which lets
 * the garbage generator sign bodies too deep for this process to canonicalize.
 */
interface Deep {
  depth: number;
  shape: 'array' | 'object' | 'mixed';
  closed: boolean;
}
const deep: fc.Arbitrary<Deep> = fc.record({
  depth: fc.oneof(fc.integer({ min: 1, max: 3_000 }), fc.integer({ min: 3_000, max: 32_000 })),
  shape: fc.constantFrom('array', 'object', 'mixed'),
  closed: fc.boolean(),
});

function deepText({ depth, shape, closed }: Deep): string {
  const open =
    shape === 'array'
      ? '['.repeat(depth)
      : shape === 'object'
        ? '{"a":'.repeat(depth)
        : '[{"a":'.repeat(Math.ceil(depth / 2));
  const close =
    shape === 'array' ? ']'.repeat(depth) : shape === 'object' ? '}'.repeat(depth) : '}]'.repeat(Math.ceil(depth / 2));
  const leaf = shape === 'array' ? '' : '1';
  return open + leaf + (closed ? close : close.slice(1));
}

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  {
    arbitrary: fc
      .constantFrom(...SCHEMA_KEYS)
      .chain((key) => (nearValue[key] as fc.Arbitrary<string>).map((value) => ({ kind: 'set' as const, key, value }))),
    weight: 8,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('set' as const),
      key: fc.constantFrom(...SCHEMA_KEYS, 'fee', 'order_description', '__proto__', 'constructor'),
      value: jsonValueText,
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('set-deep' as const),
      key: fc.constantFrom('deep', 'fee', '__proto__', 'outcome_amount'),
      deep,
    }),
    weight: 2,
  },
  { arbitrary: fc.record({ kind: fc.constant('delete' as const), key: fc.constantFrom(...SCHEMA_KEYS) }), weight: 2 },
  {
    arbitrary: fc.record({
      kind: fc.constant('duplicate' as const),
      key: fc.constantFrom(...SCHEMA_KEYS),
      value: fc.option(fc.oneof(jsonValueText, fc.constantFrom('"finished"', '"waiting"', '"eth"', '0.00487', '1'))),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('rename' as const),
      key: fc.constantFrom(...REQUIRED_KEYS),
      to: fc.constantFrom(
        'Payment_id',
        'payment_id ',
        'payment-id',
        'paymentId',
        'outcome_amount\u0000',
        'outcome_amount\u200b',
        'order_іd',
        '__proto__',
        'constructor',
        '',
      ),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('wrap' as const),
      how: fc.constantFrom('array', 'string', 'nested', 'trailing', 'bom', 'truncate'),
    }),
    weight: 1,
  },
);

function applyMutation(pairs: Array<[string, string]>, m: Mutation, space: string): string {
  const out = pairs.map(([k, v]) => [k, v] as [string, string]);
  const index = m.kind === 'wrap' ? -1 : out.findIndex(([k]) => k === m.key);
  switch (m.kind) {
    case 'set':
    case 'set-deep': {
      const value = m.kind === 'set' ? m.value : deepText(m.deep);
      if (index >= 0) out[index] = [m.key, value];
      else out.push([m.key, value]);
      break;
    }
    case 'delete':
      if (index >= 0) out.splice(index, 1);
      break;
    case 'duplicate': {
      const value = m.value ?? (index >= 0 ? (out[index] as [string, string])[1] : 'null');
      out.splice(Math.max(0, index) + 1, 0, [m.key, value]);
      break;
    }
    case 'rename':
      if (index >= 0) out[index] = [m.to, (out[index] as [string, string])[1]];
      break;
    case 'wrap': {
      const text = objectText(out, space);
      if (m.how === 'array') return `[${text}]`;
      if (m.how === 'string') return JSON.stringify(text);
      if (m.how === 'nested') return `{"data":${text}}`;
      if (m.how === 'trailing') return `${text},`;
      if (m.how === 'bom') return `\ufeff${text}`;
      return text.slice(0, -1);
    }
  }
  return objectText(out, space);
}

// --- garbage: anything, with any headers ----------------------------------------------------------------------------

type GarbageBody =
  | { kind: 'bytes'; bytes: number[] }
  | { kind: 'text'; text: string }
  | { kind: 'json'; text: string }
  | { kind: 'object'; pairs: Array<[string, string]> }
  | { kind: 'ipn'; spec: IpnSpec }
  | { kind: 'deep'; deep: Deep; inIpn: boolean }
  | { kind: 'huge'; size: number; inIpn: boolean }
  | { kind: 'fixed'; text: string };

const garbageBody: fc.Arbitrary<GarbageBody> = fc.oneof(
  fc.record({
    kind: fc.constant('bytes' as const),
    bytes: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 200 }),
  }),
  fc.record({ kind: fc.constant('text' as const), text: nastyString(200) }),
  fc.record({ kind: fc.constant('json' as const), text: fc.json({ maxDepth: 4 }) }),
  fc.record({
    kind: fc.constant('object' as const),
    pairs: fc.array(fc.tuple(fc.oneof(fc.constantFrom(...SCHEMA_KEYS), nastyString(10)), jsonValueText), {
      maxLength: 14,
    }),
  }),
  { arbitrary: fc.record({ kind: fc.constant('ipn' as const), spec: ipnSpec }), weight: 3 },
  fc.record({ kind: fc.constant('deep' as const), deep, inIpn: fc.boolean() }),
  fc.record({
    kind: fc.constant('huge' as const),
    size: fc.integer({ min: BODY_LIMIT - 64, max: 90_000 }),
    inIpn: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('fixed' as const),
    text: fc.constantFrom(
      '',
      ' ',
      'null',
      'true',
      '0',
      '-0',
      '1E+400',
      '""',
      '[]',
      '{}',
      '{"":""}',
      'payment_id=1&payment_status=finished',
      '{"a":1,"a":2}',
      '{"__proto__":{"payment_status":"finished"}}',
      '\u0000',
      '\ufeff{}',
      '{"a":"\\ud800"}',
      '{"a":"\\u0000"}',
      '{"a":1}{"b":2}',
      '{"a":1e999999999}',
    ),
  }),
);

type SignatureHeader =
  | 'none'
  | 'empty'
  | 'valid'
  | 'valid-upper'
  | 'valid-padded'
  | 'valid-name-case'
  | 'random-hex'
  | 'random-text'
  | 'other-secret'
  | 'raw-hmac'
  | 'other-body'
  | 'truncated'
  | 'extended'
  | 'dup-valid-invalid'
  | 'dup-invalid-valid'
  | 'dup-valid-valid'
  | 'comma-joined'
  | 'sha256-length';

const signatureHeader = fc.constantFrom<SignatureHeader>(
  'none',
  'empty',
  'valid',
  'valid',
  'valid',
  'valid-upper',
  'valid-padded',
  'valid-name-case',
  'random-hex',
  'random-text',
  'other-secret',
  'raw-hmac',
  'other-body',
  'truncated',
  'extended',
  'dup-valid-invalid',
  'dup-invalid-valid',
  'dup-valid-valid',
  'comma-joined',
  'sha256-length',
);

function garbageText(body: GarbageBody, paymentId: string): Buffer | string {
  switch (body.kind) {
    case 'bytes':
      return Buffer.from(body.bytes);
    case 'text':
    case 'json':
    case 'fixed':
      return body.text;
    case 'object':
      return objectText(body.pairs);
    case 'ipn':
      return objectText(ipnPairs(body.spec, paymentId));
    case 'deep':
      return body.inIpn
        ? objectText([...ipnPairs(BASE_SPEC, paymentId), ['deep', deepText(body.deep)]])
        : deepText(body.deep);
    case 'huge': {
      if (!body.inIpn) return 'x'.repeat(body.size);
      const base = objectText(ipnPairs(BASE_SPEC, paymentId));
      return objectText([
        ...ipnPairs(BASE_SPEC, paymentId),
        ['padding', JSON.stringify('p'.repeat(Math.max(0, body.size - base.length - 14)))],
      ]);
    }
  }
}

function signatureHeaders(kind: SignatureHeader, raw: string, noise: string, known?: string): Array<[string, string]> {
  const real = known ?? realSignature(raw) ?? hmac(raw);
  const other = hmac(`${raw}x`);
  const h = (v: string): [string, string] => ['x-nowpayments-sig', v];
  switch (kind) {
    case 'none':
      return [];
    case 'empty':
      return [h('')];
    case 'valid':
      return [h(real)];
    case 'valid-upper':
      return [h(real.toUpperCase())];
    case 'valid-padded':
      return [h(` \t${real}  `)];
    case 'valid-name-case':
      return [['X-NOWPayments-Sig', real]];
    case 'random-hex':
      return [h(createHmac('sha512', noise).digest('hex'))];
    case 'random-text':
      return [h(noise)];
    case 'other-secret':
      return [
        h(
          realSignature(raw, 'another-ipn-secret-0123456789abcdef') ?? hmac(raw, 'another-ipn-secret-0123456789abcdef'),
        ),
      ];
    case 'raw-hmac':
      return [h(hmac(raw))];
    case 'other-body':
      return [h(other)];
    case 'truncated':
      return [h(real.slice(0, 127))];
    case 'extended':
      return [h(`${real}0`)];
    case 'dup-valid-invalid':
      return [h(real), h(other)];
    case 'dup-invalid-valid':
      return [h(other), h(real)];
    case 'dup-valid-valid':
      return [h(real), ['X-Nowpayments-Sig', real]];
    case 'comma-joined':
      return [h(`${real}, ${real}`)];
    case 'sha256-length':
      return [h(real.slice(0, 64))];
  }
}

/**
 * The real signature of BASE_SPEC's body with a "deep" key, computed without recursing into the nesting (which is
 * already canonical when closed): payrail's stack, not this process's, decides how deep it gets.
 */
function deepSignature(paymentId: string, deep: string): string {
  const canonical = canonicalIpnJson(parse(objectText([...ipnPairs(BASE_SPEC, paymentId), ['deep', '"@@DEEP@@"']])));
  return signIpn(canonical.replace('"@@DEEP@@"', deep), IPN_SECRET);
}

const BASE_SPEC: IpnSpec = {
  channel: INSTANT,
  userId: '6271402111',
  status: 'finished',
  outcome: '0.00487',
  invoice: 'number',
  outcomeCurrency: 'eth',
  payCurrency: 'eth',
  priceCurrency: 'usd',
  payAmount: '0.00495',
  actuallyPaid: '0.00495',
  priceAmount: '15',
  asStrings: 0,
  extras: [],
  order: 0,
  space: '',
};

// --- the suite ------------------------------------------------------------------------------------------------------

describe('POST /webhooks/nowpayments under fuzzing', () => {
  beforeAll(async () => {
    db = await createTestDatabase();
    // Web only: no worker runs jobs, so what intake wrote stays exactly as written.
    logs = logSink();
    payrail = await startTestPayrail(db, { roles: { web: true, worker: false }, logs });
    await createChannelPair(payrail, { threshold: [THRESHOLD, 'eth'], instant: [INSTANT, 'eth'] }, WALLET);
    await expectHealthy(payrail.url, db);
  });

  afterAll(async () => {
    await payrail?.stop();
    await db?.close();
  });

  // Regression (found by the garbage property): a validly signed IPN nested ~2,500 objects deep got a 500. The
  // parser and the canonicalizer managed the depth, but the walk that tells JSON numbers from strings, with larger
  // frames while not yet optimized, overflowed the stack outside any catch. It must run while that code is cold,
  // hence first in this file, before any other IPN.
  it('regression: validly signed IPNs nested 2,000 to 3,500 levels deep get a 4xx or an exact 2xx, never a 5xx', async () => {
    for (let depth = 2_000; depth <= 3_500; depth += 100) {
      for (const shape of ['object', 'array', 'mixed'] as const) {
        const paymentId = freshPaymentId();
        const text = deepText({ depth, shape, closed: true });
        const raw = objectText([...ipnPairs(BASE_SPEC, paymentId), ['deep', text]]);
        const known = deepSignature(paymentId, text);
        await exercise(attempt(raw, signatureHeaders('valid', raw, '', known), 'application/json', known));
      }
    }
    await expectHealthy(payrail.url, db);
  });

  // The same bug without JIT timing: interpreter-only, the walk overflowed at ~2,250 levels while the parser and the
  // canonicalizer still managed; readIpn must return a refusal there, never throw.
  it('regression (deterministic, node --jitless): readIpn refuses signed bodies nested up to 8,000 objects deep, never throws', async () => {
    const child = await execFileAsync(
      process.execPath,
      ['--jitless', '--import', 'tsx', fileURLToPath(new URL('./deep-ipn.child.ts', import.meta.url))],
      { encoding: 'utf8' },
    );
    const results = JSON.parse(child.stdout.trim().split('\n').pop() as string) as Record<string, string>;
    expect(Object.entries(results).filter(([, r]) => r.startsWith('threw'))).toEqual([]);
    // The range reaches depths where the stack runs out: otherwise it would prove nothing.
    expect(Object.values(results).some((r) => r.includes('Maximum call stack size exceeded'))).toBe(true);
  });

  it('valid signed IPNs (any key order, spacing, number or string amounts, extra unicode fields) are recorded exactly, and a replay credits nothing', async () => {
    await fc.assert(
      fc.asyncProperty(
        ipnSpec,
        fc.constantFrom(...GOOD_CONTENT_TYPES, null),
        fc.constantFrom<SignatureHeader>('valid', 'valid', 'valid-upper', 'valid-padded', 'valid-name-case'),
        fc.boolean(),
        async (spec, ct, sig, replay) => {
          const raw = objectText(ipnPairs(spec, freshPaymentId()), spec.space);
          fc.pre(Buffer.byteLength(raw, 'utf8') <= BODY_LIMIT);
          const a = attempt(raw, signatureHeaders(sig, raw, ''), ct);
          expect(a.signatureValid).toBe(true);
          expect(judge(a.raw).verdict).toBe('valid');
          const first = await exercise(a);
          expect([200, 202]).toContain(first.status);
          if (replay) {
            const again = await exercise(a);
            expect(again.json).toMatchObject({
              paymentId: first.json.paymentId,
              outcome: first.json.outcome === 'review' ? 'review' : 'unchanged',
            });
          }
        },
      ),
      fuzzParams(150),
    );
    await expectHealthy(payrail.url, db);
  });

  it('near-valid IPNs (one field, key or framing mutated), signed with the real secret: a 4xx writes nothing, a 2xx is exact', async () => {
    await fc.assert(
      fc.asyncProperty(ipnSpec, mutation, fc.constantFrom(...GOOD_CONTENT_TYPES), async (spec, m, ct) => {
        const raw = applyMutation(ipnPairs(spec, freshPaymentId()), m, spec.space);
        await exercise(attempt(raw, signatureHeaders('valid', raw, ''), ct));
      }),
      fuzzParams(300),
    );
    await expectHealthy(payrail.url, db);
  });

  it('garbage bodies with any content type and missing, wrong, duplicated or valid signatures: 4xx and nothing written unless valid', async () => {
    await fc.assert(
      fc.asyncProperty(garbageBody, signatureHeader, contentType, headerText(140), async (body, sig, ct, noise) => {
        const paymentId = freshPaymentId();
        const payload = garbageText(body, paymentId);
        const raw = (Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8')).toString('utf8');
        const known = body.kind === 'deep' && body.inIpn ? deepSignature(paymentId, deepText(body.deep)) : undefined;
        await exercise(attempt(payload, signatureHeaders(sig, raw, noise, known), ct, known));
      }),
      fuzzParams(300),
    );
    await expectHealthy(payrail.url, db);
  });

  it('afterwards: every channel holds exactly the nets of its credited payments, and the ledger checks out', async () => {
    const { rows } = await db.pool.query(
      `select channel_id, sum(net_amount)::text as nets from payments where credited_at is not null group by channel_id`,
    );
    for (const { channel_id, nets } of rows) {
      const balance = await db.pool.query(
        `select coalesce(sum(balance), 0)::text as b from ledger_accounts where code = $1 and asset = 'eth'`,
        [`channel:${channel_id}`],
      );
      expect(balance.rows[0].b, `channel ${channel_id}`).toBe(nets);
    }
    expect(rows.length).toBeGreaterThan(0);
    const report = await checkLedger(db.db);
    expect(report.problems).toEqual([]);
    await expectHealthy(payrail.url, db);
  });
});
