/**
 * Property-based fuzzing of the admin API over real HTTP, against a real database holding channels, payments (one
 * kept for an unknown channel), and payouts and conversions seeded in every state a person can act on.
 *
 * Requests: PUT /api/channels/:id, GET /api/channels/:id, GET /api/payments/:id, GET /api/payouts?…,
 * GET /api/payouts/:id, POST /api/payouts/:id/:action (retry | cancel | approve | resolve and anything else),
 * GET /api/conversions?…, GET /api/conversions/:id, POST /api/conversions/:id/:action (retry and anything else), with
 * known, near-valid and hostile ids (percent-encoded unicode, malformed escapes, huge numbers), random query strings
 * (duplicate and unknown parameters), bodies valid, one field off, or garbage (raw JSON with duplicate keys,
 * __proto__, deep nesting, wrong content types, oversized), and every way of getting the bearer token wrong.
 *
 * Properties:
 *   - without a valid token: 401 for every admin route (whatever the body), a router 404 elsewhere; never a 2xx,
 *     never a handler's answer, and nothing written;
 *   - with the token: never a 5xx; a 4xx writes nothing; a GET writes nothing; a 2xx is correct (what was read is
 *     what the database holds, what was written is what was asked, kept in the audit log under the token's name);
 *   - the process keeps answering (GET /health 200 after every property) and the ledger checks out at the end.
 *
 * A failure prints fast-check's seed and path; replay with FUZZ_SEED=<seed> FUZZ_PATH=<path>.
 */
import fc from 'fast-check';
import { getAddress } from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONVERSION_STATES, PAYOUT_STATES } from '../../src/db/index.ts';
import { checkLedger } from '../../src/ledger/index.ts';
import { sendIpn } from '../support/api-seed.ts';
import { createChannelPair } from '../support/channels.ts';
import { createTestDatabase, fingerprint, type TestDatabase } from '../support/db.ts';
import { seeder, type Seeder, type SeedTransfer } from '../support/seed.ts';
// The platform routes' suite builds its requests from these same pieces: each suite names the ones it uses.
import {
  askedIn,
  auditSince,
  badUrl,
  bodyOf,
  drawnFrom,
  fixed,
  GET,
  limitOf,
  nearId,
  pathOf,
  pathSegment,
  POST,
  route,
  sendWatched,
  SLIPS,
  under,
  valueOf,
  type Body,
  type Query,
  type Rendered,
  type Segment,
} from '../support/fuzz-requests.ts';
import { ipnBody } from '../support/ipn.ts';
import { logSink, startTestPayrail, type LogSink, type TestPayrail } from '../support/payrail.ts';
import {
  expectHealthy,
  fuzzParams,
  isPoisoned,
  headerText,
  jsonValueText,
  bodyVariants,
  nastyString,
  numberText,
  objectText,
  RIGHT_AUTH,
  WRONG_AUTH,
  type Auth,
  type RawResponse,
} from './support.ts';

const WALLET = '0x8ba1f109551bD432803012645Ac136ddd64DBA72';
const TRON_WALLET = 'TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7';
const INSTANT = '-1005000000001';
const THRESHOLD = '-1005000000002';
/** Has a finished payment kept for review as unknown_channel until a PUT registers it. */
const LATE = '-1005000000003';
const CHANNEL_ID_RE = /^-?[1-9][0-9]{0,19}$/;
const PAYMENT_ID_RE = /^[1-9][0-9]{0,19}$/;
const PAYOUT_ID_RE = /^p[ob]_[0-9a-f]{16}$/;
const CONVERSION_ID_RE = /^conv_[0-9a-f]{16}$/;
const ACTIONS = ['retry', 'cancel', 'approve', 'resolve'] as const;
/** The name ADMIN_TOKEN's actions are recorded under. */
const ACTOR = 'admin';

let db: TestDatabase;
let payrail: TestPayrail;
let logs: LogSink;
const paymentIds: string[] = [];
const payoutIds: string[] = [];
const conversionIds: string[] = [];
const channelIds = [INSTANT, THRESHOLD, LATE];

// --- seeding --------------------------------------------------------------------------------------------------------

let nextPaymentId = 8_200_000_000;

async function pay(channelId: string): Promise<string> {
  const body = ipnBody({ payment_id: nextPaymentId++, order_id: `PGP-1|${channelId}` });
  expect([200, 202]).toContain(await sendIpn(payrail, body));
  paymentIds.push(String(body.payment_id));
  return String(body.payment_id);
}

type TransferState = Extract<SeedTransfer, 'confirmed' | 'broadcast' | 'failed'>;

let seed: Seeder;

async function seedPayout(status: (typeof PAYOUT_STATES)[number], transfer?: TransferState): Promise<string> {
  const { id } = await seed.payout(status, transfer ? { transfer } : {});
  payoutIds.push(id);
  return id;
}

async function seedConversion(
  status: 'sent' | 'completed' | 'needs_review',
  transfer?: TransferState,
): Promise<string> {
  const { id } = await seed.conversion(status, transfer ? { transfer } : {});
  conversionIds.push(id);
  return id;
}

// --- generators -----------------------------------------------------------------------------------------------------

const RAW_SEGMENTS = [
  '..',
  '.',
  '%',
  '%ZZ',
  '%0',
  '%00',
  '%2F',
  '%2f..%2f',
  '%ED%A0%80',
  '%C0%AF',
  '%E2%80%AE',
  '%FF',
  ';',
  '*',
  "'",
  '@',
  '~',
  '%25',
  '%%',
  '%u0041',
  'a%2Fb',
  '%20',
  '+',
  '-1%00',
  '1%0A',
];
const segment = (values: fc.Arbitrary<string>) => pathSegment(values, RAW_SEGMENTS, 6);

const digits = (minLength: number, maxLength: number) =>
  fc.string({ unit: fc.constantFrom(...'0123456789'), minLength, maxLength });
const nearNumbers = fc.constantFrom(
  '0',
  '-0',
  '00',
  '01',
  '1e5',
  '1E+400',
  '1.5',
  '+1',
  ' 1',
  '1 ',
  '0x10',
  'NaN',
  'Infinity',
  '１',
  '١',
  '123456789012345678901',
  '99999999999999999999',
  '-99999999999999999999',
  '-999999999999999999999',
  '',
);
const channelIdValue = fc.oneof(
  { arbitrary: fc.constantFrom(INSTANT, THRESHOLD, LATE), weight: 8 },
  {
    arbitrary: fc
      .tuple(fc.constantFrom('-', ''), fc.constantFrom(...'123456789'), digits(0, 19))
      .map(([s, a, b]) => s + a + b),
    weight: 2,
  },
  { arbitrary: nearNumbers, weight: 2 },
  { arbitrary: nastyString(24), weight: 1 },
);
const paymentIdValue = () =>
  fc.oneof(
    { arbitrary: drawnFrom(paymentIds).map((id) => id ?? '1'), weight: 4 },
    { arbitrary: fc.tuple(fc.constantFrom(...'123456789'), digits(0, 19)).map(([a, b]) => a + b), weight: 2 },
    { arbitrary: nearNumbers, weight: 2 },
    { arbitrary: nastyString(24), weight: 1 },
  );
const hex16 = fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 16, maxLength: 16 });
const payoutIdValue = () =>
  fc.oneof(
    {
      arbitrary: drawnFrom(payoutIds).map((id) => id ?? 'po_0000000000000000'),
      weight: 6,
    },
    { arbitrary: hex16.map((h) => `po_${h}`), weight: 1 },
    { arbitrary: hex16.map((h) => `pb_${h}`), weight: 1 },
    {
      arbitrary: nearId(payoutIds, 'po_0000000000000000', {
        ...SLIPS,
        prefix: (id) => `px${id.slice(2)}`,
        space: (id) => ` ${id}`,
        nul: (id) => `${id}\u0000`,
        rtl: (id) => `\u202e${id}`,
      }),
      weight: 2,
    },
    { arbitrary: nastyString(24), weight: 1 },
  );
const conversionIdValue = () =>
  fc.oneof(
    {
      arbitrary: drawnFrom(conversionIds).map((id) => id ?? 'conv_0000000000000000'),
      weight: 6,
    },
    { arbitrary: hex16.map((h) => `conv_${h}`), weight: 1 },
    {
      arbitrary: nearId(conversionIds, 'conv_0000000000000000', {
        ...SLIPS,
        payout: (id) => `po_${id.slice(5)}`,
        space: (id) => ` ${id}`,
        nul: (id) => `${id}\u0000`,
      }),
      weight: 2,
    },
    { arbitrary: nastyString(24), weight: 1 },
  );
const conversionActionValue = fc.oneof(
  { arbitrary: fc.constant('retry'), weight: 6 },
  { arbitrary: fc.constantFrom('RETRY', 'retry ', 'resolve', 'cancel', 'approve', '', 'retry;cancel'), weight: 2 },
  { arbitrary: nastyString(10), weight: 1 },
);
const conversionQuery = fc.uniqueArray(
  fc.oneof(
    {
      arbitrary: fc
        .oneof(
          fc.constantFrom(...CONVERSION_STATES),
          fc.constantFrom('NEEDS_REVIEW', 'sent ', 'cancelled', ''),
          nastyString(8),
        )
        .map((v): [string, string] => ['status', v]),
      weight: 3,
    },
    {
      arbitrary: fc
        .oneof(
          fc.integer({ min: 1, max: 500 }).map(String),
          fc.constantFrom('501', '0', '-1', '1e2', '1.5', 'abc', '', 'NaN'),
        )
        .map((v): [string, string] => ['limit', v]),
      weight: 3,
    },
    {
      arbitrary: fc.tuple(fc.constantFrom('channelId', 'kind', '__proto__', 'status[]', ''), nastyString(8)),
      weight: 1,
    },
  ),
  { maxLength: 3, selector: ([k]) => k },
);
const actionValue = fc.oneof(
  { arbitrary: fc.constantFrom(...ACTIONS), weight: 6 },
  {
    arbitrary: fc.constantFrom('RETRY', 'Cancel', 'approve ', 'delete', 'resolve\u0000', 'refund', '', 'retry;cancel'),
    weight: 1,
  },
  { arbitrary: nastyString(10), weight: 1 },
);

/** Query parameters as [name, value] pairs: mostly the four known ones with plausible values, sometimes repeated, odd or hostile. */
const queryPair: fc.Arbitrary<[string, string]> = fc.oneof(
  { arbitrary: channelIdValue.map((v): [string, string] => ['channelId', v]), weight: 3 },
  {
    arbitrary: fc
      .oneof(fc.constantFrom(...PAYOUT_STATES), fc.constantFrom('PENDING', 'pending ', 'paid', ''), nastyString(8))
      .map((v): [string, string] => ['status', v]),
    weight: 3,
  },
  {
    arbitrary: fc
      .constantFrom('instant', 'threshold', 'batch', 'Instant', '')
      .map((v): [string, string] => ['kind', v]),
    weight: 2,
  },
  {
    arbitrary: fc
      .oneof(
        fc.integer({ min: 1, max: 500 }).map(String),
        fc.constantFrom(
          '501',
          '0',
          '-1',
          '1e2',
          '1.5',
          '0x10',
          ' 7',
          'abc',
          '',
          '1E+400',
          'Infinity',
          'NaN',
          '99999999999999999999',
        ),
      )
      .map((v): [string, string] => ['limit', v]),
    weight: 3,
  },
  {
    arbitrary: fc.tuple(
      fc.constantFrom('offset', '__proto__', 'constructor', 'limit[]', 'status[0]', 'channelId.x', ''),
      nastyString(8),
    ),
    weight: 1,
  },
);
const query = fc.oneof(
  { arbitrary: fc.uniqueArray(queryPair, { maxLength: 4, selector: ([k]) => k }), weight: 5 },
  { arbitrary: fc.array(queryPair, { maxLength: 5 }), weight: 1 },
);

/** A valid channel input, then the generator's chance to change one thing. */
const validChannel = fc.constantFrom<Record<string, unknown>>(
  { payoutStrategy: 'instant', payoutCurrency: 'eth', payoutNetwork: 'eth', walletAddress: WALLET },
  { payoutStrategy: 'instant', payoutCurrency: 'ETH', payoutNetwork: 'Eth', walletAddress: WALLET.toLowerCase() },
  {
    payoutStrategy: 'threshold',
    thresholdUsd: '100.00',
    payoutCurrency: 'usdt',
    payoutNetwork: 'eth',
    walletAddress: WALLET,
  },
  {
    payoutStrategy: 'threshold',
    thresholdUsd: '0.01',
    payoutCurrency: 'usdt',
    payoutNetwork: 'trx',
    walletAddress: TRON_WALLET,
  },
  {
    payoutStrategy: 'instant',
    thresholdUsd: null,
    payoutCurrency: 'usdc',
    payoutNetwork: 'base',
    walletAddress: WALLET.toUpperCase().replace('0X', '0x'),
  },
);
const CHANNEL_FIELDS = ['payoutStrategy', 'thresholdUsd', 'payoutCurrency', 'payoutNetwork', 'walletAddress'];
const channelFieldValue = fc.oneof(
  fc.constantFrom(
    'instant',
    'threshold',
    'INSTANT',
    'weekly',
    '',
    '1e2',
    '-1',
    '0',
    '0.001',
    '100.001',
    '99999999999999999',
    '999999999999999.99',
    '1e-7',
    '-0',
    '1E+400',
    '١٠٠',
    'usdt',
    'eth',
    'trx',
    'sol',
    'USDT',
    'u',
    'x'.repeat(13),
  ),
  fc.constantFrom(
    `${WALLET} `,
    ` ${WALLET}`,
    `${WALLET}\u0000`,
    WALLET.replace('8ba1', '8BA1'),
    '0x0000000000000000000000000000000000000000',
    WALLET.replace('0x', '0x\u202e'),
    WALLET.replace('a', 'а'),
    TRON_WALLET.slice(0, -1),
    `${TRON_WALLET}\u0000`,
    'T'.repeat(34),
    'x'.repeat(129),
  ),
  numberText.map(Number),
  fc.jsonValue({ maxDepth: 2 }),
  nastyString(40),
);
const channelBody = bodyVariants(validChannel, CHANNEL_FIELDS, channelFieldValue);
/** Notes of every kind: NUL, lone surrogates, RTL, blank, at and over the 500-character limit. */
const note = fc.oneof(
  nastyString(40),
  fc.constantFrom(
    '\u0000',
    'a\u0000b',
    '\ud800',
    'x\udc00',
    '\u202eevil',
    ' ',
    '\t\n',
    'ok',
    'x'.repeat(500),
    'x'.repeat(501),
    ` ${'x'.repeat(500)} `,
  ),
  fc.integer({ min: 1, max: 700 }).map((n) => 'é'.repeat(n)),
);
const resolutionBody = fc.oneof(
  fc.record({ outcome: fc.constant('paid'), note }, { requiredKeys: ['outcome'] }),
  fc.record(
    {
      outcome: fc.constant('returned'),
      amount: fc.oneof(
        fc.constantFrom(
          '0',
          '0.0',
          '0.001',
          '0.000000000000000001',
          '0.0000000000000000001',
          '1',
          '12.5',
          '1e-7',
          '-1',
          '1.',
          '.5',
          '00.1',
          '1'.repeat(31),
          '1'.repeat(30),
          '0.0047239',
          '0.0047240',
          '',
        ),
        numberText.map(Number),
      ),
      txHash: fc.constantFrom(`0x${'ab'.repeat(32)}`, `0x${'AB'.repeat(32)}`, '0x12', `${'ab'.repeat(32)}`, ''),
      note,
    },
    { requiredKeys: ['outcome'] },
  ),
  fc.record(
    { outcome: fc.constantFrom('PAID', 'lost', '', 'returned '), amount: fc.constant('1') },
    { requiredKeys: ['outcome'] },
  ),
  fc
    .tuple(fc.constantFrom('paid', 'returned'), nastyString(8), fc.jsonValue({ maxDepth: 1 }))
    .map(([outcome, k, v]) => ({ outcome, amount: '0.001', [k]: v })),
);

const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/json; charset=utf-16',
  'application/merge-patch+json',
  'garbage',
  '',
  'APPLICATION/JSON',
];
const rawJson = fc.oneof(
  fc.constantFrom(
    '{"outcome":"paid","outcome":"returned","amount":"0.001"}',
    '{"outcome":"returned","amount":"0.001","amount":"1e400"}',
    '{"payoutStrategy":"instant","payoutStrategy":"threshold","payoutCurrency":"eth","payoutNetwork":"eth","walletAddress":"0x8ba1f109551bD432803012645Ac136ddd64DBA72"}',
    '{"__proto__":{"outcome":"paid"}}',
    '{"outcome":"paid","__proto__":{"note":"x"}}',
    '{"constructor":{"prototype":{"outcome":"paid"}}}',
    '{"outcome":"paid","note":"\\u0000"}',
    '{"outcome":"paid","note":"\\ud800"}',
    '{"outcome":"paid"',
    '{"outcome":"paid"}}',
    '{"outcome":"paid"}{"outcome":"paid"}',
    'null',
    '[]',
    '"paid"',
    '1E+400',
    '-0',
    '',
    ' ',
    '\ufeff{"outcome":"paid"}',
    'outcome=paid',
  ),
  fc
    .dictionary(
      fc.oneof(fc.constantFrom('outcome', 'amount', 'note', ...CHANNEL_FIELDS), nastyString(8)),
      jsonValueText,
      { maxKeys: 6 },
    )
    .map((d) => objectText(Object.entries(d))),
  fc.integer({ min: 1, max: 20_000 }).map((n) => `${'['.repeat(n)}${']'.repeat(n)}`),
  fc.integer({ min: 60_000, max: 80_000 }).map((n) => JSON.stringify({ outcome: 'paid', note: 'x'.repeat(n) })),
);
const body = (typed: fc.Arbitrary<unknown>): fc.Arbitrary<Body> =>
  fc.oneof(
    { arbitrary: fc.constant({ kind: 'none' as const }), weight: 1 },
    { arbitrary: typed.map((value) => ({ kind: 'json' as const, value })), weight: 8 },
    { arbitrary: fc.jsonValue({ maxDepth: 3 }).map((value) => ({ kind: 'json' as const, value })), weight: 1 },
    {
      arbitrary: fc.record({
        kind: fc.constant('raw' as const),
        text: rawJson,
        contentType: fc.option(fc.constantFrom(...CONTENT_TYPES)),
      }),
      weight: 2,
    },
  );

type Route =
  | 'put-channel'
  | 'get-channel'
  | 'get-payment'
  | 'list-payouts'
  | 'get-payout'
  | 'payout-action'
  | 'list-conversions'
  | 'get-conversion'
  | 'conversion-action'
  | 'supported-pairs'
  | 'elsewhere';

interface AdminRequest {
  route: Route;
  method: string;
  segments: Segment[];
  query: Query;
  body: Body;
}

const fixedPath = (...names: string[]): fc.Arbitrary<Segment[]> => fc.constant(fixed(...names));

const adminRequest = (): fc.Arbitrary<AdminRequest> =>
  fc.oneof(
    route('put-channel', fc.constant('PUT'), under('channels', segment(channelIdValue)), { body: body(channelBody) }),
    route('get-channel', GET, under('channels', segment(channelIdValue))),
    route('get-payment', fc.constantFrom('GET', 'HEAD'), under('payments', segment(paymentIdValue()))),
    route('list-payouts', GET, fixedPath('api', 'payouts'), { query }),
    route('get-payout', GET, under('payouts', segment(payoutIdValue()))),
    {
      arbitrary: route('payout-action', POST, under('payouts', segment(payoutIdValue()), segment(actionValue)), {
        body: body(resolutionBody),
      }),
      weight: 4,
    },
    route('list-conversions', GET, fixedPath('api', 'conversions'), { query: conversionQuery }),
    route('get-conversion', GET, under('conversions', segment(conversionIdValue()))),
    {
      arbitrary: route(
        'conversion-action',
        POST,
        under('conversions', segment(conversionIdValue()), segment(conversionActionValue)),
        { body: body(fc.jsonValue({ maxDepth: 2 })) },
      ),
      weight: 3,
    },
    route('supported-pairs', GET, fixedPath('api', 'supported-pairs')),
    // Anywhere else: other methods on admin paths, paths one segment off, unknown paths.
    route(
      'elsewhere',
      fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'),
      fc.oneof(
        fixedPath('api', 'payouts', 'po_0123456789abcdef', 'cancel', 'x'),
        fixedPath('api', 'conversions', 'conv_0123456789abcdef', 'retry', 'x'),
        fixedPath('api', 'channels'),
        fixedPath('api'),
        fixedPath('API', 'payouts'),
        fc
          .array(segment(nastyString(12)), { maxLength: 4 })
          .map((s): Segment[] => [{ value: 'api' }, ...s, { value: 'zz' }]),
      ),
      { body: body(fc.jsonValue({ maxDepth: 2 })) },
    ).filter((r) => isRouted(r.method, r.segments) === false),
  );

/**
 * Would fastify route this method and these segments to an admin handler (before looking at the values)? Undefined
 * when a segment is empty: whether the router takes "" for a parameter is its business.
 */
function isRouted(method: string, segments: Segment[]): boolean | undefined {
  const text = segments.map((s) => ('value' in s ? s.value : s.raw));
  if (text.some((t) => t === '')) return undefined;
  const get = method === 'GET' || method === 'HEAD';
  const [a, b, c, d] = text;
  if (a !== 'api') return false;
  if (text.length === 2) return get && (b === 'payouts' || b === 'conversions' || b === 'supported-pairs');
  if (text.length === 3)
    return (
      (b === 'channels' && (get || method === 'PUT')) ||
      (get && (b === 'payments' || b === 'payouts' || b === 'conversions'))
    );
  if (text.length === 4)
    return (
      method === 'POST' &&
      (b === 'payouts' || b === 'conversions' || b === 'payments') &&
      c !== undefined &&
      d !== undefined
    );
  return false;
}

const render = (r: AdminRequest): Rendered => ({ path: pathOf(r.segments, r.query), ...bodyOf(r.body) });

// --- the model's checks ---------------------------------------------------------------------------------------------

const WRITE_KEYS = (f: Record<string, string | number>) => Object.keys(f);

const sendAdmin = (r: AdminRequest, auth: Auth, noise: string) =>
  sendWatched({ url: payrail.url, logs, written: () => fingerprint(db) }, r.method, render(r), auth, noise);

/** Payouts and conversions as the model reads them: an id's shape, their table, the answer's id field. */
const PAYOUTS = { idRe: PAYOUT_ID_RE, table: 'payouts', idKey: 'payoutId' } as const;
const CONVERSIONS = { idRe: CONVERSION_ID_RE, table: 'conversions', idKey: 'conversionId' } as const;

/** A payout's or conversion's status as the database holds it; undefined when there is none. */
async function storedStatus(table: 'payouts' | 'conversions', id: string): Promise<string | undefined> {
  const key = table === 'payouts' ? 'payout_id' : 'conversion_id';
  const { rows } = await db.pool.query<{ status: string }>(`select status from ${table} where ${key} = $1`, [id]);
  return rows[0]?.status;
}

/** With the token: the answer is right for what was asked, and a 2xx wrote exactly what it should. */
async function checkAuthorized(
  r: AdminRequest,
  response: RawResponse,
  before: Record<string, string | number>,
  after: Record<string, string | number>,
): Promise<void> {
  const context = `${r.method} ${render(r).path} → ${response.status} ${response.text.slice(0, 300)}`;
  expect(response.status, context).toBeGreaterThanOrEqual(200);
  if (response.status >= 400 || r.method === 'GET' || r.method === 'HEAD') {
    for (const k of WRITE_KEYS(before)) expect(after[k], `${k}: ${context}`).toEqual(before[k]);
  }
  // The router refuses the path before any route, or the 404 fallback, sees it.
  if (badUrl(r.segments)) return void expect(response.status, context).toBe(400);
  if (r.route === 'elsewhere') {
    expect([404, ...(r.body.kind === 'none' ? [] : [400, 413, 415])], context).toContain(response.status);
    return;
  }
  const param = valueOf(r.segments[2]);
  const json = response.json;
  // A request with a body can be refused for it before any route looks at its parameters.
  const bodyRefusals = r.body.kind === 'none' ? [] : [400, 413, 415];
  const refusedFor = (status: number) => expect([status, ...bodyRefusals], context).toContain(response.status);
  /** The payout or conversion the answer shows: the one asked for, in the state the database holds. */
  const expectShown = (idKey: 'payoutId' | 'conversionId', status: string) =>
    expect({ [idKey]: json[idKey], status: json.status }, context).toEqual({ [idKey]: param, status });
  /** A list's answer: 200 and no longer than the limit asked, or 400 (a parameter refused); its items, none for a 400. */
  const listed = (key: 'payouts' | 'conversions'): any[] => {
    expect([200, 400], context).toContain(response.status);
    if (response.status !== 200) return [];
    expect(json[key].length, context).toBeLessThanOrEqual(limitOf(askedIn(r.query), 100));
    return json[key];
  };
  /** One audit entry since `before`, under the token's name. */
  const expectAudited = async (entry: Record<string, unknown>) => {
    expect(after.audit_log, context).toBe((before.audit_log as number) + 1);
    const [audit] = await auditSince(db, before);
    expect(audit, context).toMatchObject({ actor: ACTOR, ...entry });
  };
  switch (r.route) {
    case 'get-channel':
    case 'put-channel': {
      if (param !== undefined && !CHANNEL_ID_RE.test(param)) refusedFor(400);
      if (r.route === 'get-channel') {
        if (response.status === 200) expect(json.channelId, context).toBe(param ?? json.channelId);
        if (param !== undefined && CHANNEL_ID_RE.test(param)) {
          const exists = (await db.pool.query('select 1 from channels where channel_id = $1', [param])).rowCount === 1;
          expect(response.status, context).toBe(exists ? 200 : 404);
        }
        return;
      }
      if (response.status < 300) await checkChannelSaved(r, response, before, after, context);
      return;
    }
    case 'get-payment': {
      if (param === undefined) return;
      if (!PAYMENT_ID_RE.test(param)) return void expect(response.status, context).toBe(400);
      const exists = (await db.pool.query('select 1 from payments where payment_id = $1', [param])).rowCount === 1;
      expect(response.status, context).toBe(exists ? 200 : 404);
      if (exists && r.method === 'GET') expect(json.paymentId, context).toBe(param);
      return;
    }
    case 'get-payout':
    case 'get-conversion': {
      const { idRe, table, idKey } = r.route === 'get-payout' ? PAYOUTS : CONVERSIONS;
      if (param === undefined) return;
      if (!idRe.test(param)) return void expect(response.status, context).toBe(400);
      const status = await storedStatus(table, param);
      expect(response.status, context).toBe(status ? 200 : 404);
      if (status) expectShown(idKey, status);
      return;
    }
    case 'list-payouts': {
      // What it listed matches what it was asked for (the parameters payrail accepted were single values).
      const asked = askedIn(r.query);
      for (const p of listed('payouts')) {
        if (asked.channelId !== undefined) expect(p.channelId, context).toBe(asked.channelId);
        if (asked.status !== undefined) expect(p.status, context).toBe(asked.status);
        if (asked.kind !== undefined) expect(p.kind, context).toBe(asked.kind);
      }
      return;
    }
    case 'payout-action': {
      const action = valueOf(r.segments[3]);
      if (param === undefined || action === undefined) return;
      if (!PAYOUT_ID_RE.test(param) || !(ACTIONS as readonly string[]).includes(action)) return void refusedFor(400);
      const status = await storedStatus('payouts', param);
      if (!status) return void expect([400, 404, 413, 415], context).toContain(response.status);
      if (response.status >= 300) return void expect([400, 409, 413, 415], context).toContain(response.status);
      // Done: the payout as it now stands, and one audit entry under the token's name saying what changed.
      expect(response.status, context).toBe(200);
      expectShown('payoutId', status);
      await expectAudited({ action: `payout.${action}`, subject: param, details: { to: status } });
      return;
    }
    case 'list-conversions': {
      const asked = askedIn(r.query);
      for (const c of listed('conversions')) {
        if (asked.status !== undefined) expect(c.status, context).toBe(asked.status);
        expect(c.amountEth, context).toMatch(/^(0|[1-9][0-9]*)(\.[0-9]+)?$/);
      }
      return;
    }
    case 'conversion-action': {
      const action = valueOf(r.segments[3]);
      if (param === undefined || action === undefined) return;
      if (!CONVERSION_ID_RE.test(param) || action !== 'retry') return void refusedFor(400);
      const status = await storedStatus('conversions', param);
      if (!status) return void expect([404, ...bodyRefusals], context).toContain(response.status);
      if (response.status >= 300) return void expect([409, ...bodyRefusals], context).toContain(response.status);
      // Retried out of review: back to sent (its ETH at ChangeNow) or failed (its ETH never left), audited.
      expect(response.status, context).toBe(200);
      expectShown('conversionId', status);
      expect(['sent', 'failed'], context).toContain(status);
      await expectAudited({
        action: 'conversion.retry',
        subject: param,
        details: { from: 'needs_review', to: status },
      });
      return;
    }
    case 'supported-pairs':
      expect(response.status, context).toBe(200);
      expect(json.pairs.length, context).toBeGreaterThan(0);
      return;
  }
}

/** A saved channel is the input as asked (normalized), recorded in the audit log; its kept payments are released. */
async function checkChannelSaved(
  r: AdminRequest,
  response: RawResponse,
  before: Record<string, string | number>,
  after: Record<string, string | number>,
  context: string,
): Promise<void> {
  const channelId = valueOf(r.segments[2]);
  expect([200, 201], context).toContain(response.status);
  expect(r.body.kind, context).toBe('json');
  if (channelId === undefined || r.body.kind !== 'json') return;
  const input = r.body.value as Record<string, any>;
  const isEvm = /^0x[0-9a-fA-F]{40}$/.test(input.walletAddress);
  const expected = {
    channelId,
    payoutStrategy: input.payoutStrategy,
    thresholdUsd: input.payoutStrategy === 'threshold' ? (response.json.thresholdUsd as string) : null,
    payoutCurrency: String(input.payoutCurrency).toLowerCase(),
    payoutNetwork: String(input.payoutNetwork).toLowerCase(),
    walletAddress: isEvm ? getAddress(input.walletAddress.toLowerCase()) : input.walletAddress,
  };
  expect(response.json, context).toMatchObject(expected);
  if (expected.thresholdUsd !== null) {
    // The threshold as sent, to the cent (trailing zeros aside).
    const [int, fraction = ''] = String(input.thresholdUsd).split('.');
    expect(expected.thresholdUsd, context).toBe(`${int}.${fraction.replace(/0+$/, '').padEnd(2, '0')}`);
  }
  const { rows } = await db.pool.query(
    'select payout_strategy, payout_currency, payout_network, wallet_address from channels where channel_id = $1',
    [channelId],
  );
  expect(rows[0], context).toEqual({
    payout_strategy: expected.payoutStrategy,
    payout_currency: expected.payoutCurrency,
    payout_network: expected.payoutNetwork,
    wallet_address: expected.walletAddress,
  });
  expect(after.channels, context).toBe((before.channels as number) + (response.status === 201 ? 1 : 0));
  const [audit] = await auditSince(db, before);
  expect(audit, context).toMatchObject({
    actor: ACTOR,
    action: response.status === 201 ? 'channel.create' : 'channel.update',
    subject: `channel:${channelId}`,
  });
  const kept = await db.pool.query(
    `select count(*)::int as n from payments where channel_id = $1 and review_reason = 'unknown_channel'`,
    [channelId],
  );
  expect(kept.rows[0].n, `payments still kept for ${channelId}: ${context}`).toBe(0);
  if (!channelIds.includes(channelId)) channelIds.push(channelId);
}

// --- payout actions: a model of what each action may do from each state ------------------------------------------

/** The states a person can find a payout in, as seeded (a direct ETH payout, so retry restarts it from pending). */
const SEED_STATES = [
  ['pending'],
  ['held'],
  ['awaiting_approval'],
  ['exchange_requested'],
  ['exchange_created', 'broadcast'],
  ['sent', 'broadcast'],
  ['needs_review'],
  ['needs_review', 'failed'],
  ['needs_review', 'confirmed'],
  ['completed'],
  ['failed'],
  ['cancelled'],
] as const satisfies ReadonlyArray<readonly [(typeof PAYOUT_STATES)[number], TransferState?]>;
type SeedState = (typeof SEED_STATES)[number];

const AMOUNT_RE = /^(0|[1-9][0-9]{0,29})(\.[0-9]{1,18})?$/;
/** What the audit log and a text column can store: no NUL, no unpaired surrogate. */
const STORABLE = (s: string) =>
  // eslint-disable-next-line no-control-regex -- U+0000 is matched on purpose: PostgreSQL text and jsonb cannot hold it
  !/\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);

/**
 * The resolution body's contract: {"outcome":"paid"} or {"outcome":"returned","amount":"<decimal>","txHash":"0x…"},
 * an optional note; the hash may be left out only when nothing came back (amount 0).
 */
function resolution(
  value: unknown,
): { outcome: 'paid' } | { outcome: 'returned'; amount: string; txHash?: string } | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const b = value as Record<string, unknown>;
  const allowed =
    b.outcome === 'paid'
      ? ['outcome', 'note']
      : b.outcome === 'returned'
        ? ['outcome', 'amount', 'txHash', 'note']
        : undefined;
  if (!allowed || Object.keys(b).some((k) => !allowed.includes(k))) return undefined;
  if (b.note !== undefined) {
    if (typeof b.note !== 'string') return undefined;
    const trimmed = b.note.trim();
    if (trimmed.length < 1 || trimmed.length > 500 || !STORABLE(trimmed)) return undefined;
  }
  if (b.outcome === 'paid') return { outcome: 'paid' };
  if (typeof b.amount !== 'string' || !AMOUNT_RE.test(b.amount)) return undefined;
  if (b.txHash === undefined) return wei(b.amount) === 0n ? { outcome: 'returned', amount: b.amount } : undefined;
  return typeof b.txHash === 'string' && /^0x[0-9a-fA-F]{64}$/.test(b.txHash)
    ? { outcome: 'returned', amount: b.amount, txHash: b.txHash }
    : undefined;
}

function wei(text: string): bigint {
  const [int = '0', fraction = ''] = text.split('.');
  return BigInt(int + fraction.padEnd(18, '0'));
}

/** The model: the status an action leads to from a state, or 409 where it is refused; 400 for a bad resolution. */
function expectedAction(
  state: SeedState,
  action: (typeof ACTIONS)[number],
  body: unknown,
): { status: 200; to: string } | { status: 400 | 409 } {
  const [status, transfer] = state;
  if (action === 'resolve') {
    const r = resolution(body);
    if (!r) return { status: 400 };
    if (status !== 'needs_review' || transfer !== 'confirmed') return { status: 409 };
    if (r.outcome === 'paid') return { status: 200, to: 'completed' };
    // A named transaction must have brought exactly that amount back (read on chain): a made-up one never did.
    if (r.txHash !== undefined) return { status: 409 };
    return { status: 200, to: 'failed' };
  }
  if (action === 'approve') return status === 'awaiting_approval' ? { status: 200, to: 'pending' } : { status: 409 };
  if (action === 'cancel') {
    const cancellable = ['pending', 'held', 'awaiting_approval', 'exchange_requested', 'needs_review'].includes(status);
    return cancellable && transfer !== 'confirmed' && transfer !== 'broadcast'
      ? { status: 200, to: 'cancelled' }
      : { status: 409 };
  }
  // retry
  if (status === 'held') return { status: 200, to: 'pending' };
  if (['pending', 'exchange_requested', 'exchange_created', 'sent'].includes(status))
    return { status: 200, to: status };
  if (status === 'needs_review' && transfer === undefined) return { status: 200, to: 'pending' };
  return { status: 409 };
}

/** Bodies an action may carry: none, a resolution (valid or one field off), any JSON at all. */
const actionBody = fc.oneof(
  { arbitrary: fc.constant<Body>({ kind: 'none' }), weight: 1 },
  { arbitrary: resolutionBody.map((value): Body => ({ kind: 'json', value })), weight: 6 },
  { arbitrary: fc.jsonValue({ maxDepth: 2 }).map((value): Body => ({ kind: 'json', value })), weight: 1 },
);

// --- the suite ------------------------------------------------------------------------------------------------------

describe('the admin API under fuzzing', () => {
  beforeAll(async () => {
    db = await createTestDatabase();
    seed = seeder({ db, pay, instantChannel: INSTANT, thresholdChannel: THRESHOLD, wallet: WALLET });
    logs = logSink();
    // Web only: no worker runs the jobs actions queue, so payouts stay in the states the fuzzing put them in.
    payrail = await startTestPayrail(db, { roles: { web: true, worker: false }, logs });
    await createChannelPair(payrail, { threshold: [THRESHOLD, 'usdt'], instant: [INSTANT, 'eth'] }, WALLET);
    await pay(THRESHOLD);
    await pay(LATE);
    for (const status of [
      'pending',
      'held',
      'awaiting_approval',
      'exchange_requested',
      'completed',
      'failed',
      'cancelled',
    ] as const) {
      await seedPayout(status);
      await seedPayout(status);
    }
    for (let i = 0; i < 3; i++) {
      await seedPayout('needs_review');
      await seedPayout('needs_review', 'confirmed');
      await seedPayout('needs_review', 'failed');
    }
    await seedPayout('sent', 'broadcast');
    await seedPayout('exchange_created', 'broadcast');
    for (let i = 0; i < 3; i++) {
      await seedConversion('needs_review');
      await seedConversion('needs_review', 'failed');
      await seedConversion('needs_review', 'confirmed');
      await seedConversion('needs_review', 'broadcast');
    }
    await seedConversion('sent', 'confirmed');
    await seedConversion('completed', 'confirmed');
    expect((await checkLedger(db.db)).problems).toEqual([]);
    await expectHealthy(payrail.url, db);
  });

  afterAll(async () => {
    await payrail?.stop();
    await db?.close();
  });

  it('without a valid bearer token: 401 on every admin route whatever the body, a router 404 elsewhere, and nothing written', async () => {
    await fc.assert(
      fc.asyncProperty(adminRequest(), fc.constantFrom(...WRONG_AUTH), headerText(30), async (r, auth, noise) => {
        const { response, before, after } = await sendAdmin(r, auth, noise);
        const context = `${auth}: ${r.method} ${render(r).path} → ${response.status} ${response.text.slice(0, 200)}`;
        expect(after, context).toEqual(before);
        const routed = isRouted(r.method, r.segments);
        // A malformed escape in the path is refused by the router before any route is chosen.
        if (badUrl(r.segments)) return void expect(response.status, context).toBe(400);
        if (routed === true || (routed === undefined && response.status !== 404)) {
          expect(response.status, context).toBe(401);
          expect(response.headers['www-authenticate'], context).toBe('Bearer');
        } else if (response.status === 404) {
          // Not an admin route: the router's 404, never a handler's ("payout … not found" would mean it ran).
          if (r.method !== 'HEAD') expect(response.json?.error, context).toMatch(/^no route for /);
        } else {
          // The not-found handler runs after the body is read, so a body can be refused first (no handler ran).
          expect(r.body.kind, context).not.toBe('none');
          expect([400, 413, 415], context).toContain(response.status);
        }
      }),
      fuzzParams(250),
    );
    await expectHealthy(payrail.url, db);
  });

  it('with the token: never a 5xx, a 4xx or a GET writes nothing, a 2xx is correct and audited', async () => {
    await fc.assert(
      fc.asyncProperty(adminRequest(), fc.constantFrom(...RIGHT_AUTH), async (r, auth) => {
        const { response, before, after } = await sendAdmin(r, auth, '');
        await checkAuthorized(r, response, before, after);
      }),
      fuzzParams(300),
    );
    await expectHealthy(payrail.url, db);
  });

  it('payout actions on a fresh payout in every state: exactly the transition the model allows, or 409 / 400 and nothing written', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...SEED_STATES),
        fc.constantFrom(...ACTIONS),
        actionBody,
        async (state, action, b) => {
          const [status, transfer] = state;
          const payoutId = await seedPayout(status, transfer);
          const r: AdminRequest = {
            route: 'payout-action',
            method: 'POST',
            segments: [{ value: 'api' }, { value: 'payouts' }, { value: payoutId }, { value: action }],
            query: [],
            body: b,
          };
          const { response, before, after } = await sendAdmin(r, 'valid', '');
          const value = b.kind === 'json' ? b.value : undefined;
          // JSON bodies with a __proto__ key, or a constructor key holding a prototype, are refused by the parser.
          const poisoned = b.kind === 'json' && isPoisoned(JSON.parse(JSON.stringify(b.value) ?? 'null'));
          const expected = poisoned ? { status: 400 as const } : expectedAction(state, action, value);
          const context = `${status}${transfer ? `+${transfer}` : ''} ${action} ${JSON.stringify(value)?.slice(0, 200)} → ${response.status} ${response.text.slice(0, 200)}`;
          expect(response.status, context).toBe(expected.status);
          await checkAuthorized(r, response, before, after);
          if (expected.status === 200) {
            expect(response.json.status, context).toBe(expected.to);
            // Funds that went back to the channel or left the books did so in exactly one journal.
            const kind =
              expected.to === 'cancelled' || expected.to === 'failed'
                ? 'payout_returned'
                : expected.to === 'completed'
                  ? 'payout_completed'
                  : undefined;
            if (kind)
              expect(
                (
                  await db.pool.query('select count(*)::int as n from ledger_journals where kind = $1 and ref = $2', [
                    kind,
                    payoutId,
                  ])
                ).rows[0].n,
                context,
              ).toBe(1);
          }
        },
      ),
      fuzzParams(120),
    );
    await expectHealthy(payrail.url, db);
  });

  // Regressions found by fuzzing (each was a 500 after the action ran and rolled back): a resolution note the audit
  // log (jsonb) or the payout's reason (text) cannot hold.
  it.each([
    ['a NUL character', 'paid by hand\u0000'],
    ['an unpaired high surrogate', 'paid \ud800'],
    ['an unpaired low surrogate', '\udc00'],
  ])('regression: a resolve note with %s is a 400 and writes nothing', async (_name, text) => {
    const payoutId = await seedPayout('needs_review', 'confirmed');
    for (const value of [
      { outcome: 'paid', note: text },
      { outcome: 'returned', amount: '0', note: text },
    ]) {
      const { response, before, after } = await sendAdmin(
        {
          route: 'payout-action',
          method: 'POST',
          segments: [{ value: 'api' }, { value: 'payouts' }, { value: payoutId }, { value: 'resolve' }],
          query: [],
          body: { kind: 'json', value },
        },
        'valid',
        '',
      );
      expect(response.status, response.text).toBe(400);
      expect(response.json.error).toMatch(/^note: must not contain NUL or unpaired surrogate characters/);
      expect(after).toEqual(before);
    }
    // A storable note still resolves it.
    const ok = await payrail.request('POST', `/api/payouts/${payoutId}/resolve`, {
      body: { outcome: 'paid', note: 'paid by hand, checked on chain \u202e\u{1f4a9}' },
    });
    expect(ok.status).toBe(200);
    expect(ok.body.status).toBe('completed');
  });

  // Regression found by fuzzing (seed 93164681): a resolve naming a transaction while the chain's node does not answer
  // was a 500; it is a 409 saying so, and nothing is written.
  it.each([
    ['pending', undefined, '0'],
    ['needs_review', 'confirmed', '0.001'],
  ] as const)(
    'regression: a resolve naming a transaction, the node silent, a %s payout: 409, nothing written',
    async (status, transfer, amount) => {
      const payoutId = await seedPayout(status, transfer);
      const { response, before, after } = await sendAdmin(
        {
          route: 'payout-action',
          method: 'POST',
          segments: [{ value: 'api' }, { value: 'payouts' }, { value: payoutId }, { value: 'resolve' }],
          query: [],
          body: { kind: 'json', value: { outcome: 'returned', amount, txHash: `0x${'ab'.repeat(32)}` } },
        },
        'valid',
        '',
      );
      expect(response.status, response.text).toBe(409);
      expect(response.json.error).toMatch(/the chain could not be read \(.*\): nothing was booked, try again$/);
      expect(after).toEqual(before);
    },
  );

  // Regression found by fuzzing: the token was checked after the body was read and parsed, so an unauthenticated
  // request with a malformed, oversized or unsupported body got 400 / 413 / 415 instead of 401.
  it.each([
    ['malformed JSON', 'application/json', '{"outcome":"paid"'],
    ['an unsupported content type', 'application/x-www-form-urlencoded', 'outcome=paid'],
    ['a __proto__ key', 'application/json', '{"__proto__":{"outcome":"paid"}}'],
    ['an oversized body', 'application/json', JSON.stringify({ outcome: 'paid', note: 'x'.repeat(70_000) })],
  ])('regression: without a token, a body with %s gets 401 and writes nothing', async (_name, contentType, text) => {
    const r: AdminRequest = {
      route: 'payout-action',
      method: 'POST',
      segments: [{ value: 'api' }, { value: 'payouts' }, { value: payoutIds[0] as string }, { value: 'resolve' }],
      query: [],
      body: { kind: 'raw', text, contentType },
    };
    const { response, before, after } = await sendAdmin(r, 'none', '');
    expect(response.status, response.text).toBe(401);
    expect(response.headers['www-authenticate']).toBe('Bearer');
    expect(after).toEqual(before);
  });

  it('afterwards: the ledger checks out and every payout still open holds its reservation', async () => {
    expect((await checkLedger(db.db)).problems).toEqual([]);
    const { rows } = await db.pool.query(
      `select coalesce(sum(amount), 0)::text as reserved from payouts where channel_id = $1 and status not in ('completed', 'failed', 'cancelled')`,
      [INSTANT],
    );
    const balance = await db.pool.query(
      `select coalesce(sum(balance), 0)::text as b from ledger_accounts where code = $1 and asset = 'eth'`,
      [`channel:${INSTANT}:payout`],
    );
    expect(balance.rows[0].b).toBe(rows[0].reserved);
    await expectHealthy(payrail.url, db);
  });
});
