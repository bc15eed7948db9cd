/**
 * Property-based fuzzing of the admin API's platform routes over real HTTP: checkout (POST /api/invoices, against the
 * NOWPayments simulator), the event stream (GET /api/events), webhook endpoints and their deliveries, the channel
 * statement and the accounting exports, and the Idempotency-Key header on every write among them. The database holds
 * channels (one without a wallet), credited payments and their events, two endpoints (one deleted) and deliveries in
 * every state.
 *
 * Requests: known, near-valid and hostile ids (uuids one character off, percent-encoded unicode, malformed escapes),
 * random queries (cursors real, forged and broken; bounds on and off the calendar; duplicate and unknown parameters),
 * bodies valid, one field off or garbage, keys valid, reused, malformed or repeated, and every way of getting the bearer
 * token wrong.
 *
 * Properties:
 *   - without a valid token: 401 on every route, whatever the body or key, and nothing written (no row, no key, no
 *     invoice asked of NOWPayments);
 *   - with the token: never a 5xx; a GET writes nothing; a 4xx writes nothing but the answer kept under its key (which
 *     is the answer given); a 2xx is what was asked (the invoice with the channel, user and price asked and payrail's
 *     order id, at NOWPayments and in the database; the endpoint with the url and types asked, its secret shown in that
 *     answer and never in a GET); a key sent again with the same request answers the same, with another one 422;
 *   - the process keeps answering, and the ledger checks out at the end.
 *
 * A failure prints fast-check's seed and path; replay with FUZZ_SEED=<seed> FUZZ_PATH=<path>.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkLedger } from '../../src/ledger/index.ts';
import { startNowPaymentsSimulator, type NowPaymentsSimulator } from '../../src/simulators/index.ts';
import { EVENT_TYPES } from '../../src/events/index.ts';
import { sendIpn } from '../support/api-seed.ts';
import { createChannelPair } from '../support/channels.ts';
import { createTestDatabase, fingerprint, tableVersions, type TestDatabase } from '../support/db.ts';
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
  NO_BODY,
  NO_QUERY,
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
import { seeder } from '../support/seed.ts';
import { IPN_SECRET, logSink, startTestPayrail, type LogSink, type TestPayrail } from '../support/payrail.ts';
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

const API_KEY = 'test-nowpayments-api-key-0123456789';
const WALLET = '0x8ba1f109551bD432803012645Ac136ddd64DBA72';
const INSTANT = '-1005100000001';
const THRESHOLD = '-1005100000002';
/** Saved outside the API with no wallet: checkout must refuse it (409). */
const WALLETLESS = '-1005100000003';
const UNKNOWN = '-1005199999999';
const CHANNEL_ID_RE = /^-?[1-9][0-9]{0,19}$/;
const USER_ID_RE = /^[1-9][0-9]{0,19}$/;
const PRICE_RE = /^(0|[1-9][0-9]{0,8})(\.[0-9]{1,2})?$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const KEY_RE = /^[\x20-\x7e]{1,255}$/;
const ACTOR = 'admin';

let db: TestDatabase;
let payrail: TestPayrail;
let nowpayments: NowPaymentsSimulator;
let logs: LogSink;
const endpointIds: string[] = [];
const eventIds: string[] = [];
/** Every seeded delivery as [endpoint id, event id]. */
const deliveries: Array<[string, string]> = [];
const eventCursors: string[] = [];
/** A real page.next of INSTANT's statement (limit=1): forged cursors are made from it. */
let statementCursor = '';

// --- seeding --------------------------------------------------------------------------------------------------------

let nextPaymentId = 8_300_000_000;

async function pay(channelId: string): Promise<string> {
  const body = ipnBody({ payment_id: nextPaymentId++, order_id: `PGP-7|${channelId}` });
  expect([200, 202]).toContain(await sendIpn(payrail, body));
  return String(body.payment_id);
}

// --- what "nothing written" covers ----------------------------------------------------------------------------------

/**
 * fingerprint's tables, and those of these routes (invoices, endpoints, deliveries, attempts, keys, events), with what
 * NOWPayments was asked: two equal ones mean nothing was written anywhere.
 */
async function written(): Promise<Record<string, string | number>> {
  const { rows } = await db.pool.query(`select
      ${tableVersions('invoices', 't.invoice_id')},
      ${tableVersions('webhook_endpoints', 't.id')},
      ${tableVersions('webhook_deliveries', 't.endpoint_id, t.event_seq')},
      ${tableVersions('webhook_attempts', 't.id')},
      ${tableVersions('events', 't.seq')},
      ${tableVersions('idempotency_keys', 't.actor, t.key')}`);
  return {
    ...(await fingerprint(db)),
    ...(rows[0] as Record<string, string | number>),
    nowpaymentsInvoiceCalls: nowpayments.invoiceCalls(),
    nowpaymentsInvoices: nowpayments.invoices.size,
  };
}

const IDEMPOTENCY = ['idempotency_keys', 'idempotency_keys_versions'];
const without = (f: Record<string, string | number>, keys: string[]) =>
  Object.fromEntries(Object.entries(f).filter(([k]) => !keys.includes(k)));

// --- generators -----------------------------------------------------------------------------------------------------

const RAW_SEGMENTS = ['%', '%ZZ', '%00', '%2F', '%ED%A0%80', '%C0%AF', '%E2%80%AE', '%FF', ';', '*', '%25', '%20', '+'];
const segment = (values: fc.Arbitrary<string>) => pathSegment(values, RAW_SEGMENTS, 8);

/** A known endpoint's id one step off: what a person pasting ids gets wrong. */
const uuidNear = nearId(endpointIds, '00000000-0000-0000-0000-000000000000', {
  ...SLIPS,
  braces: (id) => `{${id}}`,
  nohyphen: (id) => id.replaceAll('-', ''),
  nul: (id) => `${id}\u0000`,
});
const endpointIdValue = () =>
  fc.oneof(
    { arbitrary: drawnFrom(endpointIds).map((id) => id ?? randomUUID()), weight: 8 },
    { arbitrary: fc.uuid(), weight: 2 },
    {
      arbitrary: fc.constantFrom('00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-4fff-bfff-ffffffffffff'),
      weight: 1,
    },
    { arbitrary: uuidNear, weight: 2 },
    { arbitrary: nastyString(40), weight: 1 },
  );
const eventIdValue = () =>
  fc.oneof(
    { arbitrary: drawnFrom(eventIds).map((id) => id ?? randomUUID()), weight: 8 },
    { arbitrary: fc.uuid(), weight: 2 },
    { arbitrary: fc.constantFrom('1', '0', 'null', ''), weight: 1 },
    { arbitrary: nastyString(40), weight: 1 },
  );
const channelIdValue = fc.oneof(
  { arbitrary: fc.constantFrom(INSTANT, THRESHOLD, WALLETLESS, UNKNOWN), weight: 8 },
  {
    arbitrary: fc.constantFrom('0', '-0', '01', '1e5', ' 1', '١', '99999999999999999999', '-999999999999999999999'),
    weight: 2,
  },
  { arbitrary: nastyString(24), weight: 1 },
);

const limitValue = fc.oneof(
  fc.integer({ min: 1, max: 1000 }).map(String),
  fc.constantFrom('0', '-1', '1001', '1e2', '1.5', '0x10', ' 7', 'abc', '', 'NaN', '1E+400', '99999999999999999999'),
);
/** Times on and off the calendar, with and without a zone, at and past what the database holds. */
const timeValue = fc.oneof(
  {
    arbitrary: fc
      .tuple(
        fc.date({ min: new Date('1900-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true }),
        fc.constantFrom('date', 'iso', 'seconds', 'offset'),
      )
      .map(([d, how]) => {
        const iso = d.toISOString();
        if (how === 'date') return iso.slice(0, 10);
        if (how === 'seconds') return `${iso.slice(0, 19)}Z`;
        if (how === 'offset') return `${iso.slice(0, 19)}+05:30`;
        return iso;
      }),
    weight: 4,
  },
  {
    arbitrary: fc.constantFrom(
      '2026-01-01',
      '1970-01-01T00:00:00.000Z',
      '9999-12-31',
      '9999-12-31T23:59:59-23:59',
      '0001-01-01',
      '0000-01-01',
      '1000-01-01T00:00:00Z',
      '2026-02-29',
      '2024-02-29',
      '2026-02-30',
      '2026-13-01',
      '2026-01-01T24:00:00Z',
      '2026-01-01T23:60:00Z',
      '2026-01-01T00:00:00',
      '2026-01-01T00:00:00.1234Z',
      '2026-01-01T00:00:00+99:99',
      '2026-01-01T00:00:00+24:00',
      '2026-01-01 00:00:00Z',
      '+275760-09-13',
      '20260101',
      'now',
      '',
    ),
    weight: 2,
  },
  { arbitrary: nastyString(20), weight: 1 },
);

/** A statement cursor: the real one, one field of it forged, or garbage. */
const statementAfter = () =>
  fc.oneof(
    { arbitrary: fc.constant(null).map(() => statementCursor), weight: 3 },
    {
      arbitrary: fc
        .tuple(
          fc.constantFrom('v', 'channel', 'from', 'to', 'asked', 'at', 'journal'),
          fc.oneof(
            fc.constantFrom(
              '2026-13-45T99:99:99.999999Z',
              '0000-01-01T00:00:00.000000Z',
              '9999-12-31T23:59:59.999999Z',
              '9999999999999999999',
              '9223372036854775807',
              '9223372036854775808',
              '1',
              INSTANT,
              UNKNOWN,
              '2000-01-01T00:00:00.000Z',
              '+275760-09-13T00:00:00.000Z',
            ),
            fc.jsonValue({ maxDepth: 1 }),
          ),
        )
        .map(([k, v]) => {
          if (statementCursor === '') return '';
          const body = JSON.parse(Buffer.from(statementCursor, 'base64url').toString('utf8')) as Record<
            string,
            unknown
          >;
          return Buffer.from(JSON.stringify({ ...body, [k]: v })).toString('base64url');
        }),
      weight: 4,
    },
    { arbitrary: fc.constantFrom('', 'e30', 'bnVsbA', '!!!', 'x'.repeat(513)), weight: 1 },
    { arbitrary: nastyString(30), weight: 1 },
  );

const eventsCursor = () =>
  fc.oneof(
    { arbitrary: drawnFrom(eventCursors).map((cursor) => cursor ?? '0.0'), weight: 4 },
    {
      arbitrary: fc.constantFrom(
        '0.0',
        '0.1',
        '1.2.3',
        '18446744073709551615.9223372036854775807',
        '18446744073709551616.0',
        '0.9223372036854775808',
        '99999999999999999999.0',
        '-1.0',
        '1.',
        '.1',
        '１.0',
        '',
      ),
      weight: 2,
    },
    { arbitrary: nastyString(20), weight: 1 },
  );

const typeList = fc.oneof(
  {
    arbitrary: fc.uniqueArray(fc.constantFrom(...EVENT_TYPES), { minLength: 1, maxLength: 4 }).map((t) => t.join(',')),
    weight: 4,
  },
  {
    arbitrary: fc.constantFrom(
      '',
      ',',
      'payment.credited,',
      'PAYMENT.CREDITED',
      'payment.*',
      'payment',
      'payment.credited ,payout.opened',
    ),
    weight: 2,
  },
  { arbitrary: nastyString(16), weight: 1 },
);

const pairs = (...known: Array<fc.Arbitrary<[string, string]>>): fc.Arbitrary<Query> => {
  const pair = fc.oneof(...known.map((arbitrary) => ({ arbitrary, weight: 4 })), {
    arbitrary: fc.tuple(fc.constantFrom('offset', '__proto__', 'constructor', 'limit[]', 'x', ''), nastyString(8)),
    weight: 1,
  });
  return fc.oneof(
    { arbitrary: fc.uniqueArray(fc.oneof(...known), { maxLength: 2, selector: ([k]) => k }), weight: 4 },
    { arbitrary: fc.uniqueArray(pair, { maxLength: 4, selector: ([k]) => k }), weight: 3 },
    { arbitrary: fc.array(pair, { maxLength: 4 }), weight: 1 },
  );
};
const as =
  (name: string) =>
  (v: string): [string, string] => [name, v];

const rawBody = fc.record({
  kind: fc.constant('raw' as const),
  text: fc.oneof(
    fc.constantFrom(
      '{"channelId":"-1005100000001","channelId":"-1005100000002","userId":"1","priceUsd":"1.00"}',
      '{"url":"https://a.example/","eventTypes":["payment.credited"],"url":"ftp://x"}',
      '{"__proto__":{"priceUsd":"1.00"}}',
      '{"constructor":{"prototype":{"x":1}}}',
      '{"priceUsd":"1.00"',
      'null',
      '[]',
      '',
      '\ufeff{}',
      'priceUsd=1',
    ),
    fc
      .dictionary(
        fc.oneof(fc.constantFrom('channelId', 'userId', 'priceUsd', 'url', 'eventTypes'), nastyString(8)),
        jsonValueText,
        {
          maxKeys: 5,
        },
      )
      .map((d) => objectText(Object.entries(d))),
    fc.integer({ min: 60_000, max: 80_000 }).map((n) => JSON.stringify({ url: `https://a.example/${'x'.repeat(n)}` })),
  ),
  contentType: fc.option(
    fc.constantFrom(
      'application/json',
      'text/plain',
      'application/x-www-form-urlencoded',
      'garbage',
      'APPLICATION/JSON',
    ),
  ),
});
const body = (typed: fc.Arbitrary<unknown>): fc.Arbitrary<Body> =>
  fc.oneof(
    { arbitrary: fc.constant<Body>({ kind: 'none' }), weight: 1 },
    { arbitrary: typed.map((value): Body => ({ kind: 'json', value })), weight: 8 },
    { arbitrary: fc.jsonValue({ maxDepth: 2 }).map((value): Body => ({ kind: 'json', value })), weight: 1 },
    { arbitrary: rawBody, weight: 2 },
  );

const PRICES = ['9.99', '9.9', '1', '0.01', '100000', '100000.00', '123456.7', '42.00', '0.1'];
const validInvoice = fc.record(
  {
    channelId: fc.constantFrom(INSTANT, INSTANT, THRESHOLD, WALLETLESS, UNKNOWN),
    userId: fc.oneof(fc.constantFrom('6271402111', '1', '99999999999999999999'), fc.bigInt(1n, 10n ** 12n).map(String)),
    priceUsd: fc.oneof(
      fc.constantFrom(...PRICES),
      fc.integer({ min: 1, max: 10_000_000 }).map((c) => `${c / 100}`),
    ),
    description: fc.constantFrom('Premium, 30 days', 'x'.repeat(500), ' trimmed ', 'é\u{1f4a9}\u202e'),
    successUrl: fc.constantFrom('https://t.me/example_bot', 'http://example.com/back?x=1'),
  },
  { requiredKeys: ['channelId', 'userId', 'priceUsd'] },
);
const INVOICE_FIELDS = ['channelId', 'userId', 'priceUsd', 'description', 'successUrl'];
const invoiceFieldValue = fc.oneof(
  fc.constantFrom(
    '0',
    '0.00',
    '-1',
    '9.999',
    '1e3',
    ' 9.99',
    '9.',
    '.5',
    '01.00',
    '100000.01',
    '999999999.99',
    '1000000000',
    '١',
    '1|-1003',
    '012',
    '1'.repeat(21),
    '',
    ' ',
    '\u0000',
    'a\ud800',
    'x'.repeat(501),
    'javascript:alert(1)',
    'ftp://example.com',
    'https://',
    `https://example.com/${'x'.repeat(2000)}`,
    '-1005100000001',
  ),
  numberText.map(Number),
  fc.jsonValue({ maxDepth: 1 }),
  nastyString(30),
);
const invoiceBody = bodyVariants(validInvoice, INVOICE_FIELDS, invoiceFieldValue);

const endpointUrl = fc.oneof(
  {
    arbitrary: fc.constantFrom(
      'https://hooks.example.com/payrail',
      'http://127.0.0.1:8080/events',
      'https://hooks.example.com:8443/a?b=c#d',
      'HTTPS://Hooks.Example.COM/Path',
      'http://[::1]:9999/',
      'https://xn--e1afmkfd.example/',
      'https://пример.example/hook',
    ),
    weight: 4,
  },
  {
    arbitrary: fc.constantFrom(
      'ftp://hooks.example.com/',
      'javascript:alert(1)',
      'https://user:pass@hooks.example.com/',
      'http://hooks.example.com:25/',
      'http://localhost:0/',
      'https://',
      'hooks.example.com',
      '/relative',
      'http://[::ffff:127.0.0.1]:1/',
      'http://0.0.0.0:6000/',
      '',
      `https://hooks.example.com/${'x'.repeat(2100)}`,
    ),
    weight: 2,
  },
  { arbitrary: fc.constant('self'), weight: 1 },
  { arbitrary: nastyString(40), weight: 1 },
);
const endpointTypes = fc.oneof(
  { arbitrary: fc.array(fc.constantFrom(...EVENT_TYPES), { minLength: 1, maxLength: 6 }), weight: 4 },
  { arbitrary: fc.array(fc.constantFrom(...EVENT_TYPES), { minLength: 24, maxLength: 26 }), weight: 1 },
  {
    arbitrary: fc.oneof(
      fc.constant([]),
      fc.constant(['payment.*']),
      fc.constant(['PAYMENT.CREDITED']),
      fc.constant('payment.credited'),
      fc.array(nastyString(12), { minLength: 1, maxLength: 2 }),
    ),
    weight: 1,
  },
);
const endpointBody = fc.oneof(
  { arbitrary: fc.record({ url: endpointUrl, eventTypes: endpointTypes }), weight: 6 },
  {
    arbitrary: fc
      .tuple(
        fc.record({ url: endpointUrl, eventTypes: endpointTypes }),
        fc.constantFrom('url', 'eventTypes'),
        fc.jsonValue({ maxDepth: 1 }),
      )
      .map(([b, k, v]) => ({ ...b, [k]: v })),
    weight: 1,
  },
  {
    arbitrary: fc
      .tuple(fc.record({ url: endpointUrl, eventTypes: endpointTypes }), nastyString(8), fc.jsonValue({ maxDepth: 1 }))
      .map(([b, k, v]) => ({ ...b, [k]: v })),
    weight: 1,
  },
);

/** The Idempotency-Key headers sent: none, one from a small pool (so keys come back), or malformed ones. */
type Key = { kind: 'none' } | { kind: 'valid'; key: string } | { kind: 'bad'; headers: Array<[string, string]> };
const keyPool = fc.nat(11).map((i) => `fuzz-key-${i}`);
const keySpec: fc.Arbitrary<Key> = fc.oneof(
  { arbitrary: fc.constant<Key>({ kind: 'none' }), weight: 3 },
  { arbitrary: keyPool.map((key): Key => ({ kind: 'valid', key })), weight: 3 },
  {
    arbitrary: fc.oneof(
      fc.constantFrom<Key>(
        { kind: 'bad', headers: [['idempotency-key', '']] },
        { kind: 'bad', headers: [['idempotency-key', 'x'.repeat(256)]] },
        { kind: 'bad', headers: [['idempotency-key', 'caf\u00e9']] },
        { kind: 'bad', headers: [['idempotency-key', 'a\tb']] },
        {
          kind: 'bad',
          headers: [
            ['idempotency-key', 'fuzz-key-1'],
            ['idempotency-key', 'fuzz-key-1'],
          ],
        },
        {
          kind: 'bad',
          headers: [
            ['Idempotency-Key', 'fuzz-key-2'],
            ['IDEMPOTENCY-KEY', 'fuzz-key-3'],
          ],
        },
      ),
      headerText(20)
        // HTTP strips the spaces and tabs around a header's value: the key is what is left.
        .filter((t) => !KEY_RE.test(t.replace(/^[ \t]+|[ \t]+$/g, '')))
        .map((t): Key => ({ kind: 'bad', headers: [['idempotency-key', t]] })),
    ),
    weight: 1,
  },
);

type Route =
  | 'create-invoice'
  | 'list-events'
  | 'create-endpoint'
  | 'list-endpoints'
  | 'get-endpoint'
  | 'delete-endpoint'
  | 'list-deliveries'
  | 'retry-delivery'
  | 'statement'
  | 'export';

interface Request {
  route: Route;
  method: string;
  segments: Segment[];
  query: Query;
  body: Body;
  key: Key;
}
const NO_KEY = fc.constant<Key>({ kind: 'none' });

/** A request to one route: its method and path, with no query, body or key unless given. */
const keyedRoute = (
  name: Route,
  method: fc.Arbitrary<string>,
  segments: fc.Arbitrary<Segment[]>,
  sent: Parameters<typeof route>[3] & { key?: fc.Arbitrary<Key> } = {},
) => fc.tuple(route(name, method, segments, sent), sent.key ?? NO_KEY).map(([r, key]) => ({ ...r, key }));

const request = (): fc.Arbitrary<Request> =>
  fc
    .oneof(
      {
        arbitrary: keyedRoute('create-invoice', POST, fc.constant(fixed('api', 'invoices')), {
          body: body(invoiceBody),
          key: keySpec,
        }),
        weight: 6,
      },
      {
        arbitrary: keyedRoute('list-events', GET, fc.constant(fixed('api', 'events')), {
          query: pairs(eventsCursor().map(as('after')), typeList.map(as('type')), limitValue.map(as('limit'))),
          key: fc.oneof(NO_KEY, keySpec),
        }),
        weight: 2,
      },
      {
        arbitrary: keyedRoute('create-endpoint', POST, fc.constant(fixed('api', 'webhook-endpoints')), {
          body: body(endpointBody),
          key: keySpec,
        }),
        weight: 4,
      },
      keyedRoute('list-endpoints', GET, fc.constant(fixed('api', 'webhook-endpoints'))),
      {
        // The method is chosen with the route, below.
        arbitrary: fc.record({
          route: fc.constantFrom<Route>('get-endpoint', 'delete-endpoint'),
          method: fc.constant(''),
          segments: under('webhook-endpoints', segment(endpointIdValue())),
          query: NO_QUERY,
          body: NO_BODY,
          key: keySpec,
        }),
        weight: 3,
      },
      keyedRoute(
        'list-deliveries',
        GET,
        under('webhook-endpoints', segment(endpointIdValue()), fc.constant({ value: 'deliveries' })),
        {
          query: pairs(
            fc
              .constantFrom('pending', 'delivered', 'failed', 'pending', 'delivered', 'failed', 'FAILED', '')
              .map(as('status')),
            limitValue.map(as('limit')),
          ),
        },
      ),
      {
        arbitrary: keyedRoute(
          'retry-delivery',
          POST,
          fc
            .oneof(
              fc.tuple(segment(endpointIdValue()), segment(eventIdValue())),
              // A seeded delivery, so a retry finds one failed (or not) as often as not.
              drawnFrom(deliveries).map((seeded): [Segment, Segment] => {
                const [e, v] = seeded ?? [randomUUID(), randomUUID()];
                return [{ value: e }, { value: v }];
              }),
            )
            .map(([e, v]): Segment[] => [
              ...fixed('api', 'webhook-endpoints'),
              e,
              { value: 'deliveries' },
              v,
              { value: 'retry' },
            ]),
          { body: fc.oneof(NO_BODY, body(fc.jsonValue({ maxDepth: 1 }))), key: keySpec },
        ),
        weight: 3,
      },
      {
        arbitrary: keyedRoute(
          'statement',
          GET,
          under('channels', segment(channelIdValue), fc.constant({ value: 'statement' })),
          {
            query: pairs(
              timeValue.map(as('from')),
              timeValue.map(as('to')),
              fc.constantFrom('json', 'csv', 'json', 'csv', 'CSV', 'xml', '').map(as('format')),
              limitValue.map(as('limit')),
              statementAfter().map(as('after')),
            ),
          },
        ),
        weight: 4,
      },
      {
        arbitrary: keyedRoute(
          'export',
          GET,
          fc
            .constantFrom('payments', 'payouts', 'ledger')
            .map((name): Segment[] => [...fixed('api', 'exports'), { value: `${name}.csv` }]),
          { query: pairs(timeValue.map(as('from')), timeValue.map(as('to'))) },
        ),
        weight: 2,
      },
    )
    .map((r): Request =>
      r.method === ''
        ? {
            ...r,
            method: r.route === 'get-endpoint' ? 'GET' : 'DELETE',
            key: r.route === 'get-endpoint' ? { kind: 'none' } : r.key,
            // The first endpoint stays, so its failed deliveries can be retried all along (the second is deleted).
            segments: r.segments.map((s) =>
              r.route === 'delete-endpoint' && valueOf(s) === endpointIds[0] ? { value: endpointIds[1] ?? '' } : s,
            ),
          }
        : r,
    );

// --- sending --------------------------------------------------------------------------------------------------------

const selfUrl = () => `${payrail.url}/hook`;

/** The body as sent: an endpoint asked for at 'self' is one at this payrail. */
const sentBody = (r: Request): Body =>
  r.route === 'create-endpoint' && r.body.kind === 'json' && isRecord(r.body.value) && r.body.value.url === 'self'
    ? { kind: 'json', value: { ...r.body.value, url: selfUrl() } }
    : r.body;

/** The request's bytes, its key's headers first. */
function render(r: Request): Rendered {
  const keyHeaders: Array<[string, string]> =
    r.key.kind === 'valid' ? [['idempotency-key', r.key.key]] : r.key.kind === 'bad' ? r.key.headers : [];
  const { headers, body } = bodyOf(sentBody(r));
  return { path: pathOf(r.segments, r.query), headers: [...keyHeaders, ...headers], body };
}

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

const sendPlatform = (r: Request, auth: Auth, noise: string) =>
  sendWatched({ url: payrail.url, logs, written }, r.method, render(r), auth, noise);

// --- the model ------------------------------------------------------------------------------------------------------

/** What a key was first used for, and the answer kept for it (while its row is there). */
interface Kept {
  method: string;
  path: string;
  body: string;
  status: number;
  text: string;
}
const kept = new Map<string, Kept>();
const keyRow = async (key: string) =>
  (
    await db.pool.query<{ response_status: number | null; response_body: Buffer | null }>(
      'select response_status, response_body from idempotency_keys where actor = $1 and key = $2',
      [ACTOR, key],
    )
  ).rows[0];

const cents = (text: string): bigint => {
  const [int = '0', fraction = ''] = text.split('.');
  return BigInt(int + fraction.padEnd(2, '0'));
};
// eslint-disable-next-line no-control-regex -- U+0000 is matched on purpose: PostgreSQL text cannot hold it
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** The invoice body's contract: the status it must get (before NOWPayments is asked), undefined when not modelled. */
function expectedInvoice(value: unknown): 201 | 400 | 404 | 409 | undefined {
  if (!isRecord(value)) return 400;
  if (Object.keys(value).some((k) => !INVOICE_FIELDS.includes(k))) return 400;
  const { channelId, userId, priceUsd, description, successUrl } = value;
  if (typeof channelId !== 'string' || !CHANNEL_ID_RE.test(channelId)) return 400;
  if (typeof userId !== 'string' || !USER_ID_RE.test(userId)) return 400;
  if (typeof priceUsd !== 'string' || !PRICE_RE.test(priceUsd)) return 400;
  if (cents(priceUsd) <= 0n || cents(priceUsd) > 10_000_000n) return 400;
  if (description !== undefined) {
    if (typeof description !== 'string') return 400;
    const trimmed = description.trim();
    if (trimmed.length < 1 || trimmed.length > 500 || UNSTORABLE.test(trimmed)) return 400;
  }
  if (successUrl !== undefined) {
    if (typeof successUrl !== 'string' || successUrl.length > 2000) return 400;
    if (!/^https?:\/\/[^/\s]+/i.test(successUrl)) return successUrl.startsWith('http') ? undefined : 400;
  }
  if (channelId === UNKNOWN || ![INSTANT, THRESHOLD, WALLETLESS].includes(channelId)) return 404;
  if (channelId === WALLETLESS) return 409;
  return 201;
}

/** With the token: the answer is right for what was asked, and it wrote exactly what it should. */
async function checkAuthorized(
  r: Request,
  response: RawResponse,
  before: Record<string, string | number>,
  after: Record<string, string | number>,
): Promise<void> {
  const { path, body } = render(r);
  const context = `${r.method} ${path} ${JSON.stringify(r.key)} ${body?.toString('utf8').slice(0, 200) ?? ''} → ${response.status} ${response.text.slice(0, 300)}`;
  expect(response.status, context).toBeGreaterThanOrEqual(200);

  // A secret is in the answer that created its endpoint (and that answer replayed under its key), nowhere else.
  if (r.method === 'GET') {
    const { rows } = await db.pool.query<{ secret: string }>('select secret from webhook_endpoints');
    for (const { secret } of rows) expect(response.text.includes(secret), `a secret shown: ${context}`).toBe(false);
  }

  // The router answers a path it cannot place (an empty or raw segment moved it) before any route or key is looked at.
  const routerMiss = response.status === 404 && /^no route for /.test(String(response.json?.error));
  if (routerMiss) {
    expect(
      r.segments.some((s) => !('value' in s) || s.value === ''),
      context,
    ).toBe(true);
    return void expect(after, `written: ${context}`).toEqual(before);
  }
  if (badUrl(r.segments)) {
    expect(response.status, context).toBe(400);
    return void expect(after, `written: ${context}`).toEqual(before);
  }
  const parsed = r.body.kind === 'json' ? r.body.value : undefined;
  // What fastify's parser refuses before any hook past preParsing runs: no key is claimed for it. A raw body may be
  // refused by the parser or by the route (it parses, duplicate keys and all): the key table tells which.
  const parserRefusal =
    [400, 413, 415].includes(response.status) &&
    ((r.body.kind === 'json' && isPoisoned(parsed)) ||
      (r.body.kind === 'raw' && after.idempotency_keys_versions === before.idempotency_keys_versions));

  // Idempotency: a key seen before answers what it answered, or 422 for another request; a refused key stores nothing.
  const pathOnly = path.split('?')[0] as string;
  const bodyText = body?.toString('utf8') ?? '';
  const writes = r.method !== 'GET';
  if (r.key.kind === 'bad' && writes) {
    expect(response.status, context).toBe(400);
    expect(response.json?.error, context).toMatch(/^Idempotency-Key must be/);
  }
  if (r.key.kind === 'valid' && writes) {
    const first = kept.get(r.key.key);
    // A body the parser refuses (its content type, say) never reaches the key, whatever the key holds.
    if (
      first &&
      (await keyRow(r.key.key)) &&
      !(parserRefusal && response.headers['idempotent-replayed'] === undefined)
    ) {
      if (first.method === r.method && first.path === pathOnly && first.body === bodyText) {
        expect(response.headers['idempotent-replayed'], `not replayed: ${context}`).toBe('true');
        expect({ status: response.status, text: response.text }, `replay: ${context}`).toEqual({
          status: first.status,
          text: first.text,
        });
        return void expect(after, `a replay wrote: ${context}`).toEqual(before);
      }
      expect(response.status, `another request under a used key: ${context}`).toBe(422);
      expect(response.json.error, context).toMatch(/was used with another request/);
      return void expect(after, `a 422 wrote: ${context}`).toEqual(before);
    }
    const row = await keyRow(r.key.key);
    if (row && !kept.has(r.key.key)) {
      // What is kept is exactly the answer given, so a retry gets this answer and no other.
      expect(row.response_status, context).toBe(response.status);
      expect(row.response_body?.toString('utf8'), context).toBe(response.text);
      kept.set(r.key.key, {
        method: r.method,
        path: pathOnly,
        body: bodyText,
        status: response.status,
        text: response.text,
      });
    }
  }
  if (r.key.kind !== 'valid' || !writes || parserRefusal)
    expect(after.idempotency_keys_versions, `a key stored: ${context}`).toBe(before.idempotency_keys_versions);
  else if (after.idempotency_keys !== before.idempotency_keys)
    expect(after.idempotency_keys, context).toBe((before.idempotency_keys as number) + 1);

  if (response.status >= 400 || !writes)
    expect(without(after, IDEMPOTENCY), `written: ${context}`).toEqual(without(before, IDEMPOTENCY));
  if (r.key.kind === 'bad' && writes) return;

  const json = response.json;
  const bodyRefusals = r.body.kind === 'none' ? [] : [400, 413, 415];
  // A raw body that was taken is JSON after all (duplicate keys: the last one counts): it is checked as such.
  const value = r.body.kind === 'raw' && response.status < 300 ? (JSON.parse(r.body.text) as unknown) : parsed;
  switch (r.route) {
    case 'create-invoice': {
      if (r.body.kind !== 'json' && response.status >= 300)
        return void expect([400, 413, 415], context).toContain(response.status);
      const expected = expectedInvoice(value);
      if (expected !== undefined && !isPoisoned(value)) expect(response.status, context).toBe(expected);
      if (response.status !== 201) {
        expect(after.nowpaymentsInvoiceCalls, `NOWPayments asked: ${context}`).toBe(before.nowpaymentsInvoiceCalls);
        return;
      }
      const input = value as Record<string, string>;
      const priceUsd = `${cents(input.priceUsd as string) / 100n}.${String(cents(input.priceUsd as string) % 100n).padStart(2, '0')}`;
      const orderId = `PGP-${input.userId}|${input.channelId}`;
      expect(json, context).toEqual({
        invoiceId: expect.stringMatching(/^[1-9][0-9]*$/),
        invoiceUrl: `${nowpayments.url}/payment/?iid=${json.invoiceId}`,
        orderId,
        channelId: input.channelId,
        userId: input.userId,
        priceUsd,
      });
      const { rows } = await db.pool.query(
        `select channel_id, user_id, price_usd::text as price_usd, order_id, description, success_url, created_by
         from invoices where invoice_id = $1`,
        [json.invoiceId],
      );
      expect(rows, context).toEqual([
        {
          channel_id: input.channelId,
          user_id: input.userId,
          price_usd: priceUsd,
          order_id: orderId,
          description: input.description?.trim() ?? null,
          success_url: input.successUrl ?? null,
          created_by: ACTOR,
        },
      ]);
      // NOWPayments was asked once, for exactly this: payrail's order id and the price to the cent, in USD.
      expect(after.nowpaymentsInvoiceCalls, context).toBe((before.nowpaymentsInvoiceCalls as number) + 1);
      expect(after.invoices, context).toBe((before.invoices as number) + 1);
      const asked = nowpayments.invoices.get(json.invoiceId);
      expect(asked?.order_id, context).toBe(orderId);
      expect(cents(String(asked?.price_amount)), context).toBe(cents(priceUsd));
      expect(asked?.price_currency, context).toBe('usd');
      return;
    }
    case 'create-endpoint': {
      if (r.body.kind !== 'json' && response.status >= 300)
        return void expect([400, 413, 415], context).toContain(response.status);
      const input = isRecord(value) ? value : {};
      const types = input.eventTypes;
      const shapeOk =
        isRecord(value) &&
        Object.keys(value).every((k) => k === 'url' || k === 'eventTypes') &&
        typeof input.url === 'string' &&
        Array.isArray(types) &&
        types.length >= 1 &&
        types.length <= EVENT_TYPES.length * 2 &&
        types.every((t) => (EVENT_TYPES as readonly unknown[]).includes(t));
      if (!shapeOk || input.url === 'self') return void expect(response.status, context).toBe(400);
      if (input.url === 'https://hooks.example.com/payrail') expect(response.status, context).toBe(201);
      if (response.status !== 201) return void expect(response.status, context).toBe(400);
      const url = new URL(input.url as string);
      expect(['http:', 'https:'], context).toContain(url.protocol);
      expect(url.username + url.password, context).toBe('');
      const eventTypes = [...new Set(types as string[])].sort();
      expect(json, context).toMatchObject({
        id: expect.stringMatching(UUID_RE),
        url: url.toString(),
        eventTypes,
        createdBy: ACTOR,
        deletedAt: null,
        secret: expect.stringMatching(/^whsec_[A-Za-z0-9_-]{43}$/),
      });
      const { rows } = await db.pool.query(
        'select url, event_types, secret, created_by, deleted_at from webhook_endpoints where id = $1',
        [json.id],
      );
      expect(rows, context).toEqual([
        { url: url.toString(), event_types: eventTypes, secret: json.secret, created_by: ACTOR, deleted_at: null },
      ]);
      expect(after.webhook_endpoints, context).toBe((before.webhook_endpoints as number) + 1);
      const [audit] = await auditSince(db, before);
      expect(audit, context).toMatchObject({ actor: ACTOR, action: 'webhook_endpoint.create', subject: json.id });
      if (!endpointIds.includes(json.id)) endpointIds.push(json.id);
      return;
    }
    case 'list-endpoints': {
      expect(response.status, context).toBe(200);
      const { rows } = await db.pool.query<{ id: string }>('select id::text as id from webhook_endpoints');
      expect(json.endpoints.map((e: { id: string }) => e.id).sort(), context).toEqual(rows.map((x) => x.id).sort());
      for (const e of json.endpoints) expect(e, context).not.toHaveProperty('secret');
      return;
    }
    case 'get-endpoint':
    case 'delete-endpoint': {
      const id = valueOf(r.segments[2]);
      if (id === undefined) return;
      if (!UUID_RE.test(id)) return void expect([400, 404], context).toContain(response.status);
      const row = (
        await db.pool.query<{ deleted_at: Date | null }>('select deleted_at from webhook_endpoints where id = $1', [id])
      ).rows[0];
      if (r.route === 'get-endpoint') {
        // An id of a shape no endpoint has may be refused as such (400) rather than looked up.
        if (!row) return void expect([400, 404], context).toContain(response.status);
        expect(response.status, context).toBe(200);
        if (row) {
          expect(json.id, context).toBe(id.toLowerCase());
          expect(json, context).not.toHaveProperty('secret');
        }
        return;
      }
      const wasOpen = before.webhook_endpoints_versions !== after.webhook_endpoints_versions;
      if (response.status === 200) {
        expect(json, context).toEqual({ deleted: true });
        expect(wasOpen && row?.deleted_at !== null, context).toBe(true);
        const [audit] = await auditSince(db, before);
        expect({ ...audit, subject: String(audit?.subject).toLowerCase() }, context).toMatchObject({
          actor: ACTOR,
          action: 'webhook_endpoint.delete',
          subject: id.toLowerCase(),
        });
      } else expect([400, 404], context).toContain(response.status);
      return;
    }
    case 'list-deliveries': {
      const id = valueOf(r.segments[2]);
      if (id === undefined) return;
      if (!UUID_RE.test(id)) return void expect(response.status, context).toBe(400);
      const exists = (await db.pool.query('select 1 from webhook_endpoints where id = $1', [id])).rowCount === 1;
      if (!exists) return void expect([400, 404], context).toContain(response.status);
      if (response.status !== 200) return void expect(response.status, context).toBe(400);
      const asked = askedIn(r.query);
      expect(json.deliveries.length, context).toBeLessThanOrEqual(limitOf(asked, 100));
      for (const d of json.deliveries) if (asked.status !== undefined) expect(d.status, context).toBe(asked.status);
      return;
    }
    case 'retry-delivery': {
      const [endpointId, eventId] = [valueOf(r.segments[2]), valueOf(r.segments[4])];
      if (endpointId === undefined || eventId === undefined) return;
      if (!UUID_RE.test(endpointId) || !UUID_RE.test(eventId))
        return void expect([400, ...bodyRefusals], context).toContain(response.status);
      const row = (
        await db.pool.query<{ status: string; deleted_at: Date | null }>(
          `select d.status, w.deleted_at from webhook_deliveries d join events e on e.seq = d.event_seq
           join webhook_endpoints w on w.id = d.endpoint_id where d.endpoint_id = $1 and e.id = $2`,
          [endpointId, eventId],
        )
      ).rows[0];
      if (!row || row.deleted_at !== null)
        return void expect([404, ...bodyRefusals], context).toContain(response.status);
      if (response.status !== 200) return void expect([409, ...bodyRefusals], context).toContain(response.status);
      // It had failed: now pending again, a fresh window, audited under the token's name.
      expect(json, context).toEqual({ retried: true });
      expect(row.status, context).toBe('pending');
      const [audit] = await auditSince(db, before);
      expect({ ...audit, subject: String(audit?.subject).toLowerCase() }, context).toMatchObject({
        actor: ACTOR,
        action: 'webhook_delivery.retry',
        subject: `${endpointId.toLowerCase()}:${eventId.toLowerCase()}`,
      });
      return;
    }
    case 'list-events': {
      expect([200, 400], context).toContain(response.status);
      if (response.status !== 200) return;
      const asked = askedIn(r.query);
      expect(json.events.length, context).toBeLessThanOrEqual(limitOf(asked, 100));
      const types = asked.type?.split(',');
      for (const e of json.events) if (types) expect(types, context).toContain(e.type);
      expect(json.next, context).toMatch(/^[0-9]{1,20}\.[0-9]{1,19}$/);
      if (!eventCursors.includes(json.next)) eventCursors.push(json.next);
      return;
    }
    case 'statement': {
      const channelId = valueOf(r.segments[2]);
      if (channelId === undefined) return;
      if (!CHANNEL_ID_RE.test(channelId)) return void expect(response.status, context).toBe(400);
      if (response.status !== 200) return void expect([400, 404], context).toContain(response.status);
      expect([INSTANT, THRESHOLD, WALLETLESS], context).toContain(channelId);
      const asked = askedIn(r.query);
      if (asked.format === 'csv') {
        expect(response.headers['content-type'], context).toMatch(/^text\/csv/);
        expect(response.text, context).toMatch(/^asset,kind,id,time,amount,available,reserved/);
        return;
      }
      expect(json.channelId ?? channelId, context).toBe(channelId);
      expect(json.page.lines, context).toBeLessThanOrEqual(limitOf(asked, 200));
      return;
    }
    case 'export': {
      expect([200, 400], context).toContain(response.status);
      if (response.status !== 200) return;
      expect(response.headers['content-type'], context).toMatch(/^text\/csv/);
      expect(response.headers['payrail-range-to'], context).toMatch(/^\d{4}-\d{2}-\d{2}T/);
      return;
    }
  }
}

// --- the suite ------------------------------------------------------------------------------------------------------

describe('the admin API platform routes under fuzzing', () => {
  beforeAll(async () => {
    db = await createTestDatabase();
    nowpayments = await startNowPaymentsSimulator({ port: 0, apiKey: API_KEY, ipnSecret: IPN_SECRET });
    // Seeded first by a payrail without NOWPayments' API key, which credits a finished IPN at once (with the key a
    // credit waits for a worker to confirm it with the API).
    payrail = await startTestPayrail(db, { roles: { web: true, worker: false } });
    await createChannelPair(payrail, { threshold: [THRESHOLD, 'usdt'], instant: [INSTANT, 'eth'] }, WALLET);
    await db.pool.query(
      `insert into channels (channel_id, payout_strategy, payout_currency, payout_network, wallet_address)
       values ($1, 'instant', 'eth', 'eth', '')`,
      [WALLETLESS],
    );
    await pay(THRESHOLD);
    // Payouts with their credited payments and ledger journals: lines for the statements and rows for the exports.
    const seed = seeder({ db, pay, instantChannel: INSTANT, thresholdChannel: THRESHOLD, wallet: WALLET });
    for (const status of ['completed', 'pending', 'failed', 'completed'] as const) await seed.payout(status);
    await payrail.stop();
    logs = logSink();
    // Web only: no worker delivers events or runs jobs, so deliveries stay in the states seeded.
    payrail = await startTestPayrail(db, {
      roles: { web: true, worker: false },
      logs,
      env: { NOWPAYMENTS_API_KEY: API_KEY, NOWPAYMENTS_API_URL: nowpayments.url },
    });
    for (const [url, types] of [
      ['https://hooks.example.com/a', ['payment.credited', 'payout.completed']],
      ['https://hooks.example.com/b', ['payment.received']],
    ] as const) {
      const created = await payrail.request('POST', '/api/webhook-endpoints', { body: { url, eventTypes: types } });
      expect(created.status).toBe(201);
      endpointIds.push(created.body.id as string);
    }
    // Deliveries in every state to both endpoints (the second then deleted): a retry finds failed, pending, delivered.
    const { rows: events } = await db.pool.query<{ seq: string; id: string; subject: string }>(
      'select seq::text as seq, id::text as id, subject from events order by seq',
    );
    expect(events.length).toBeGreaterThanOrEqual(6);
    for (const [i, e] of events.entries()) {
      eventIds.push(e.id);
      const status = (['failed', 'pending', 'delivered'] as const)[i % 3];
      for (const endpointId of endpointIds) {
        deliveries.push([endpointId, e.id]);
        await db.pool.query(
          `insert into webhook_deliveries (endpoint_id, event_seq, subject, status, attempts, failed_at, delivered_at)
           values ($1, $2, $3, $4, 3, case when $4 = 'failed' then now() end, case when $4 = 'delivered' then now() end)`,
          [endpointId, e.seq, e.subject, status],
        );
      }
    }
    expect((await payrail.request('DELETE', `/api/webhook-endpoints/${endpointIds[1]}`)).status).toBe(200);
    const page = await payrail.request('GET', `/api/channels/${INSTANT}/statement?limit=1`);
    expect(page.status).toBe(200);
    expect(page.body.page.next).toEqual(expect.any(String));
    statementCursor = page.body.page.next as string;
    const stream = await payrail.request('GET', '/api/events?limit=3');
    expect(stream.status).toBe(200);
    eventCursors.push(stream.body.next as string);
    expect((await checkLedger(db.db)).problems).toEqual([]);
    await expectHealthy(payrail.url, db);
  });

  afterAll(async () => {
    await payrail?.stop();
    await nowpayments?.stop();
    await db?.close();
  });

  it('without a valid bearer token: 401 on every route whatever the body or key, and nothing written', async () => {
    await fc.assert(
      fc.asyncProperty(request(), fc.constantFrom(...WRONG_AUTH), headerText(30), async (r, auth, noise) => {
        const { response, before, after } = await sendPlatform(r, auth, noise);
        const context = `${auth}: ${r.method} ${render(r).path} → ${response.status} ${response.text.slice(0, 200)}`;
        expect(after, context).toEqual(before);
        if (badUrl(r.segments)) return void expect(response.status, context).toBe(400);
        // An empty id leaves the path to the router (another route, or none): it must not answer either.
        if (r.segments.some((s) => 'value' in s && s.value === '') && response.status === 404)
          return void expect(response.json?.error, context).toMatch(/^no route for /);
        expect(response.status, context).toBe(401);
        expect(response.headers['www-authenticate'], context).toBe('Bearer');
      }),
      fuzzParams(200),
    );
    await expectHealthy(payrail.url, db);
  });

  it('with the token: never a 5xx, a GET or a 4xx writes nothing but its key, a 2xx is what was asked, keys replay', async () => {
    await fc.assert(
      fc.asyncProperty(request(), fc.constantFrom(...RIGHT_AUTH), async (r, auth) => {
        const { response, before, after } = await sendPlatform(r, auth, '');
        await checkAuthorized(r, response, before, after);
      }),
      fuzzParams(300),
    );
    await expectHealthy(payrail.url, db);
  });

  it('a write sent twice under a fresh key answers the same without acting again; the key with another request is 422', async () => {
    const writes = request().filter(
      (r) =>
        r.method !== 'GET' &&
        !badUrl(r.segments) &&
        r.body.kind !== 'raw' &&
        r.segments.every((s) => 'value' in s && s.value !== ''),
    );
    await fc.assert(
      fc.asyncProperty(writes, writes, async (first, other) => {
        const key = `fresh-${randomUUID()}`;
        const keyed = { ...first, key: { kind: 'valid', key } as Key };
        const once = await sendPlatform(keyed, 'valid', '');
        await checkAuthorized(keyed, once.response, once.before, once.after);
        const stored = await keyRow(key);
        const again = await sendPlatform(keyed, 'valid', '');
        const context = `${keyed.method} ${render(keyed).path} ${render(keyed).body?.toString('utf8').slice(0, 200) ?? ''} → ${once.response.status} ${once.response.text.slice(0, 200)}; again → ${again.response.status} ${again.response.text.slice(0, 200)}`;
        if (stored) {
          expect({ status: again.response.status, text: again.response.text }, context).toEqual({
            status: once.response.status,
            text: once.response.text,
          });
          expect(again.response.headers['idempotent-replayed'], context).toBe('true');
          expect(again.response.headers['content-type'], context).toBe(once.response.headers['content-type']);
          expect(again.after, `the replay wrote: ${context}`).toEqual(again.before);
        } else {
          // Refused before the key was read (a body the parser would not take): nothing kept, the copy refused alike.
          expect([400, 413, 415], context).toContain(once.response.status);
          expect(again.response.status, context).toBe(once.response.status);
        }
        const otherKeyed = { ...other, key: { kind: 'valid', key } as Key };
        const sameRequest =
          render(otherKeyed).path.split('?')[0] === render(keyed).path.split('?')[0] &&
          otherKeyed.method === keyed.method &&
          (render(otherKeyed).body?.toString('utf8') ?? '') === (render(keyed).body?.toString('utf8') ?? '');
        if (!stored || sameRequest) return;
        const third = await sendPlatform(otherKeyed, 'valid', '');
        const context3 = `${context}; other ${otherKeyed.method} ${render(otherKeyed).path} → ${third.response.status} ${third.response.text.slice(0, 200)}`;
        // Only a body the parser refuses gets past a used key with its own 400.
        if (third.response.status === 400 && otherKeyed.body.kind === 'json' && isPoisoned(otherKeyed.body.value))
          return void expect(third.after, context3).toEqual(third.before);
        expect(third.response.status, context3).toBe(422);
        expect(third.after, `the 422 wrote: ${context3}`).toEqual(third.before);
      }),
      fuzzParams(80),
    );
    await expectHealthy(payrail.url, db);
  });

  it('afterwards: the ledger checks out, and no secret is in any GET of the endpoints', async () => {
    expect((await checkLedger(db.db)).problems).toEqual([]);
    const { rows } = await db.pool.query<{ secret: string }>('select secret from webhook_endpoints');
    const list = await payrail.request('GET', '/api/webhook-endpoints');
    for (const { secret } of rows) expect(JSON.stringify(list.body)).not.toContain(secret);
    await expectHealthy(payrail.url, db);
  });
});
