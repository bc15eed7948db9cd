/**
 * The ChangeNow v2 client against a real local HTTP server serving canned answers (test/fixtures/changenow-v2.json):
 * exact amounts, the request as sent on the wire, and the transient/permanent classification of every failure.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ChangeNowError,
  createChangeNowClient,
  normaliseAmount,
  type ChangeNowClient,
} from '../../src/integrations/changenow/index.ts';
import { changeNowFailure } from '../support/changenow-failure.ts';
import { ethToUsdtEstimate, ethToUsdtExchange } from '../support/changenow-requests.ts';
import { freePort } from '../support/ports.ts';

const API_KEY = 'cn-test-key-5f1d9a7c3e0b42d8';
/** Raw fixture text: parsing it with JSON.parse would already lose 435.49999999999994. */
const FIXTURE_TEXT = readFileSync(new URL('../fixtures/changenow-v2.json', import.meta.url), 'utf8');
const fixtureKeys = Object.keys(JSON.parse(FIXTURE_TEXT) as Record<string, unknown>);

/** The exact source text of one top-level fixture entry (its value is an object). */
function fixture(name: string): string {
  const start = FIXTURE_TEXT.indexOf(`"${name}": {`);
  if (start < 0 || !fixtureKeys.includes(name)) throw new Error(`no fixture ${name}`);
  const open = FIXTURE_TEXT.indexOf('{', start);
  let depth = 0;
  for (let i = open; i < FIXTURE_TEXT.length; i++) {
    if (FIXTURE_TEXT[i] === '{') depth++;
    if (FIXTURE_TEXT[i] === '}' && --depth === 0) return FIXTURE_TEXT.slice(open, i + 1);
  }
  throw new Error(`unterminated fixture ${name}`);
}

interface Recorded {
  method: string;
  url: URL;
  headers: http.IncomingHttpHeaders;
  body: string;
}

interface Answer {
  status?: number;
  body?: string;
  contentType?: string;
  /** Accept the request and never answer. */
  hang?: boolean;
}

let server: http.Server;
let baseUrl: string;
let answer: Answer = {};
const requests: Recorded[] = [];
/** Every ChangeNowError the tests saw (each is checked for the key as it is caught, and again at the end). */
const seenErrors: ChangeNowError[] = [];

function respond(next: Answer): void {
  answer = next;
}

function client(overrides: Partial<Parameters<typeof createChangeNowClient>[0]> = {}): ChangeNowClient {
  return createChangeNowClient({
    baseUrl,
    apiKey: API_KEY,
    connectTimeoutMs: 2000,
    responseTimeoutMs: 5000,
    ...overrides,
  });
}

/** The one request the client sent, checked for its method, its path and payrail's API key. */
function onlyRequest(method: string, pathname: string): Recorded {
  const [request] = requests as [Recorded];
  expect(request.method).toBe(method);
  expect(request.url.pathname).toBe(pathname);
  expect(request.headers['x-changenow-api-key']).toBe(API_KEY);
  return request;
}

async function failure(promise: Promise<unknown>): Promise<ChangeNowError> {
  const error = await changeNowFailure(promise, API_KEY);
  // Whatever the failure, the key never reaches the error's text, its stack included.
  expect(String(error.stack)).not.toContain(API_KEY);
  seenErrors.push(error);
  return error;
}

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      requests.push({
        method: req.method ?? '',
        url: new URL(req.url ?? '/', 'http://local'),
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      });
      if (answer.hang) return;
      res.writeHead(answer.status ?? 200, { 'content-type': answer.contentType ?? 'application/json' });
      res.end(answer.body ?? '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(() => {
  requests.length = 0;
  answer = {};
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** A 200 whose body payrail cannot read: transient, as asking again may get a whole answer. */
function malformedAt(endpoint: string) {
  return { kind: 'transient', code: 'malformed_response', httpStatus: 200, endpoint };
}

describe('ChangeNow client: happy paths', () => {
  it('estimate: GET /v2/exchange/estimated-amount with the key header and query, exact amounts back', async () => {
    respond({ body: fixture('estimate') });
    const estimate = await client().estimate(ethToUsdtEstimate);
    expect(estimate).toEqual({
      fromAmount: '0.1455',
      toAmount: '435.49999999999994',
      depositFee: '0',
      withdrawalFee: '1',
      rateId: null,
      validUntil: null,
    });

    expect(requests).toHaveLength(1);
    const request = onlyRequest('GET', '/v2/exchange/estimated-amount');
    expect(Object.fromEntries(request.url.searchParams)).toEqual({
      fromCurrency: 'eth',
      toCurrency: 'usdt',
      fromAmount: '0.1455',
      fromNetwork: 'eth',
      toNetwork: 'eth',
      flow: 'standard',
      type: 'direct',
    });
  });

  it('estimate: a fixed-rate reverse estimate asks for a rate id and returns it', async () => {
    respond({
      body: '{"fromAmount":0.15,"toAmount":435,"rateId":"r-123","validUntil":"2026-11-28T18:20:00.000Z","depositFee":null}',
    });
    const estimate = await client().estimate({
      ...ethToUsdtEstimate,
      fromAmount: undefined,
      toAmount: '435',
      flow: 'fixed-rate',
      type: 'reverse',
    });
    expect(estimate).toEqual({
      fromAmount: '0.15',
      toAmount: '435',
      depositFee: null,
      withdrawalFee: null,
      rateId: 'r-123',
      validUntil: '2026-11-28T18:20:00.000Z',
    });
    const params = (requests[0] as Recorded).url.searchParams;
    expect(params.get('toAmount')).toBe('435');
    expect(params.has('fromAmount')).toBe(false);
    expect(params.get('flow')).toBe('fixed-rate');
    expect(params.get('type')).toBe('reverse');
    expect(params.get('useRateId')).toBe('true');
  });

  it('createExchange: POST /v2/exchange with fromAmount as the exact JSON number text', async () => {
    respond({ body: fixture('create') });
    const created = await client().createExchange({
      ...ethToUsdtExchange,
      refundAddress: '0x1111111111111111111111111111111111111111',
    });
    expect(created).toEqual({
      id: 'ff1441c86e178b',
      payinAddress: '0xf29568fa162015486e5323b74f9a1cd041fe1bab',
      payoutAddress: '0x8ba1f109551bD432803012645Ac136ddd64DBA72',
      fromAmount: '0.1455',
      toAmount: '435.49999999999994',
      payinExtraId: null,
      // The request's echoes, compared with it before the exchange is funded.
      fromCurrency: 'eth',
      fromNetwork: 'eth',
      toCurrency: 'usdt',
      toNetwork: 'eth',
      refundAddress: null,
    });

    const request = onlyRequest('POST', '/v2/exchange');
    expect(request.headers['content-type']).toBe('application/json');
    expect(request.body).toContain('"fromAmount":0.1455');
    expect(request.body).not.toContain('"fromAmount":"');
    expect(JSON.parse(request.body)).toEqual({
      fromCurrency: 'eth',
      toCurrency: 'usdt',
      fromNetwork: 'eth',
      toNetwork: 'eth',
      fromAmount: 0.1455,
      address: '0x8ba1f109551bD432803012645Ac136ddd64DBA72',
      refundAddress: '0x1111111111111111111111111111111111111111',
      userId: 'conv_01J',
      payload: { conversionId: 'conv_01J' },
      flow: 'standard',
      type: 'direct',
    });
  });

  it('createExchange: an amount a float would mangle goes out digit for digit', async () => {
    respond({ body: fixture('create') });
    await client().createExchange({ ...ethToUsdtExchange, fromAmount: '12345678901234567890.123456789012345678' });
    expect((requests[0] as Recorded).body).toContain('"fromAmount":12345678901234567890.123456789012345678,');
  });

  it('getExchange: GET /v2/exchange/by-id, waiting with amountTo null', async () => {
    respond({ body: fixture('byIdWaiting') });
    const status = await client().getExchange('ff1441c86e178b');
    expect(status).toEqual({
      id: 'ff1441c86e178b',
      status: 'waiting',
      amountFrom: null,
      amountTo: null,
      expectedAmountFrom: '0.1455',
      expectedAmountTo: '435.49999999999994',
      payinAddress: '0xf29568fa162015486e5323b74f9a1cd041fe1bab',
      payoutAddress: '0x8ba1f109551bD432803012645Ac136ddd64DBA72',
      payinHash: null,
      payoutHash: null,
      refundHash: null,
      userId: 'conv_01J',
      payload: { conversionId: 'conv_01J' },
      updatedAt: '2026-11-28T18:03:34.335Z',
    });
    const request = onlyRequest('GET', '/v2/exchange/by-id');
    expect(request.url.searchParams.get('id')).toBe('ff1441c86e178b');
  });

  it('getExchange: finished with the actual amounts and hashes', async () => {
    respond({ body: fixture('byIdFinished') });
    const status = await client().getExchange('ff1441c86e178b');
    expect(status.status).toBe('finished');
    expect(status.amountFrom).toBe('0.1455');
    expect(status.amountTo).toBe('435.499999');
    expect(status.expectedAmountTo).toBe('435.49999999999994');
    expect(status.payoutHash).toBe(`0x${'ab'.repeat(32)}`);
    expect(status.updatedAt).toBe('2026-11-28T18:09:51.102Z');
  });

  it('keeps a base path given in baseUrl', async () => {
    respond({ body: fixture('byIdWaiting') });
    await client({ baseUrl: `${baseUrl}/proxy/` }).getExchange('ff1441c86e178b');
    expect((requests[0] as Recorded).url.pathname).toBe('/proxy/v2/exchange/by-id');
  });
});

describe('ChangeNow client: amount text', () => {
  it('normalises exponent amounts in a response exactly', async () => {
    // The happy path's estimate again on purpose: only how the amounts are written differs, and what they become.
    respond({ body: '{"fromAmount":1e-7,"toAmount":4.35e+2,"depositFee":1.5E-3,"withdrawalFee":0.000}' });
    const estimate = await client().estimate(ethToUsdtEstimate);
    expect(estimate).toMatchObject({
      fromAmount: '0.0000001',
      toAmount: '435',
      depositFee: '0.0015',
      withdrawalFee: '0',
    });
  });

  it.each([
    ['0.1455', '0.1455'],
    ['435.49999999999994', '435.49999999999994'],
    ['1e-7', '0.0000001'],
    ['4.35e+2', '435'],
    ['4.35e2', '435'],
    ['1.5E3', '1500'],
    ['123e-2', '1.23'],
    ['0.00123e3', '1.23'],
    ['1e0', '1'],
    ['12.3400', '12.34'],
    ['0.0', '0'],
    ['0', '0'],
    ['100', '100'],
  ])('normaliseAmount(%s) = %s', (text, expected) => {
    expect(normaliseAmount(text)).toBe(expected);
  });

  it.each([
    '-1',
    '-0.5',
    '-1e-7',
    'NaN',
    'Infinity',
    '',
    '.5',
    '01',
    '1.',
    '1e',
    '0x10',
    ' 1',
    '1e999999999',
    '1e-40',
    '1e31',
  ])('normaliseAmount refuses %j', (text) => {
    expect(normaliseAmount(text)).toBeNull();
  });

  it.each([
    ['a negative amount', '{"fromAmount":-0.1455,"toAmount":435}'],
    ['a NaN string', '{"fromAmount":"NaN","toAmount":435}'],
    ['a boolean amount', '{"fromAmount":true,"toAmount":435}'],
    ['a missing amount', '{"fromAmount":0.1455}'],
  ])('refuses %s as a transient malformed response', async (_name, body) => {
    respond({ body });
    const error = await failure(client().estimate(ethToUsdtEstimate));
    expect(error).toMatchObject(malformedAt('estimate'));
  });

  it('refuses an amount that is not a plain decimal before sending anything', async () => {
    for (const fromAmount of ['1e-7', '-1', '0.1,5', '']) {
      const error = await failure(client().createExchange({ ...ethToUsdtExchange, fromAmount }));
      expect(error).toMatchObject({ kind: 'permanent', code: 'invalid_request', httpStatus: null, endpoint: 'create' });
    }
    expect(requests).toHaveLength(0);
  });
});

describe('ChangeNow client: error classification', () => {
  it('401 → permanent unauthorized, with ChangeNow’s message', async () => {
    respond({ status: 401, body: fixture('errorUnauthorized') });
    const error = await failure(client().estimate(ethToUsdtEstimate));
    expect(error).toMatchObject({ kind: 'permanent', code: 'unauthorized', httpStatus: 401, endpoint: 'estimate' });
    expect(error.message).toContain('Invalid api key');
  });

  it('403 → permanent unauthorized', async () => {
    respond({ status: 403, body: '<html>Forbidden</html>', contentType: 'text/html' });
    expect(await failure(client().getExchange('ff1441c86e178b'))).toMatchObject({
      kind: 'permanent',
      code: 'unauthorized',
      httpStatus: 403,
      endpoint: 'by-id',
    });
  });

  it('400 pair_is_inactive → permanent pair_is_inactive', async () => {
    respond({ status: 400, body: fixture('errorInactivePair') });
    const error = await failure(client().estimate(ethToUsdtEstimate));
    expect(error).toMatchObject({ kind: 'permanent', code: 'pair_is_inactive', httpStatus: 400, endpoint: 'estimate' });
    expect(error.message).toContain('Pair is inactive');
  });

  it.each([
    [400, 'deposit_too_small', 'Amount is less than minimal: 0.01'],
    [400, 'not_valid_address', 'Invalid address'],
    [422, 'out_of_range', 'Amount is out of range'],
    [404, 'exchange_not_found', 'Exchange not found'],
  ])('%i %s → permanent with that code', async (status, code, message) => {
    respond({ status, body: JSON.stringify({ error: code, message }) });
    const error = await failure(client().createExchange(ethToUsdtExchange));
    expect(error).toMatchObject({ kind: 'permanent', code, httpStatus: status, endpoint: 'create' });
    expect(error.message).toContain(message);
  });

  it.each([
    [400, '<html>Bad Request</html>', 'http_400'],
    [404, '', 'http_404'],
    [409, '{"error":"conflict","message":"x"}', 'http_409'],
    [302, '', 'http_302'],
  ])('%i without a usable reason → permanent %s', async (status, body, code) => {
    respond({ status, body });
    expect(await failure(client().estimate(ethToUsdtEstimate))).toMatchObject({
      kind: 'permanent',
      code,
      httpStatus: status,
    });
  });

  it.each([429, 500, 502, 503, 504])('%i → transient', async (status) => {
    respond({
      status,
      body: status === 502 ? '<html><body>502 Bad Gateway</body></html>' : '{"error":"internal","message":"try later"}',
      contentType: status === 502 ? 'text/html' : 'application/json',
    });
    const error = await failure(client().estimate(ethToUsdtEstimate));
    expect(error).toMatchObject({
      kind: 'transient',
      code: `http_${status}`,
      httpStatus: status,
      endpoint: 'estimate',
    });
  });

  it('a 200 with a gateway page or truncated JSON → transient malformed_response', async () => {
    for (const body of ['<html><body>502 Bad Gateway</body></html>', '{"fromAmount":0.1455,"toAm', '']) {
      respond({ body });
      const error = await failure(client().estimate(ethToUsdtEstimate));
      expect(error).toMatchObject(malformedAt('estimate'));
    }
  });

  it('an unknown exchange status → transient malformed_response', async () => {
    respond({ body: fixture('byIdWaiting').replace('"waiting"', '"teleporting"') });
    expect(await failure(client().getExchange('ff1441c86e178b'))).toMatchObject({
      kind: 'transient',
      code: 'malformed_response',
    });
  });

  it('by-id answering for another exchange → transient malformed_response', async () => {
    respond({ body: fixture('byIdWaiting') });
    expect(await failure(client().getExchange('aaaaaaaaaaaaaa'))).toMatchObject({
      kind: 'transient',
      code: 'malformed_response',
      endpoint: 'by-id',
    });
  });

  it('a server that accepts but never answers → transient timeout', async () => {
    respond({ hang: true });
    const error = await failure(client({ responseTimeoutMs: 300 }).getExchange('ff1441c86e178b'));
    expect(error).toMatchObject({ kind: 'transient', code: 'timeout', httpStatus: null, endpoint: 'by-id' });
    expect(requests).toHaveLength(1);
  });

  it('a body that stops half way → transient timeout', async () => {
    const slow = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '500' });
      res.write('{"fromAmount":0.1455,');
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    try {
      const port = (slow.address() as AddressInfo).port;
      const error = await failure(
        client({ baseUrl: `http://127.0.0.1:${port}`, responseTimeoutMs: 300 }).estimate(ethToUsdtEstimate),
      );
      expect(error).toMatchObject({ kind: 'transient', code: 'timeout' });
    } finally {
      slow.closeAllConnections();
      await new Promise<void>((resolve) => slow.close(() => resolve()));
    }
  });

  it('a connection reset mid-response → transient network', async () => {
    const rude = http.createServer((req) => req.socket.destroy());
    await new Promise<void>((resolve) => rude.listen(0, '127.0.0.1', resolve));
    try {
      const port = (rude.address() as AddressInfo).port;
      const error = await failure(client({ baseUrl: `http://127.0.0.1:${port}` }).createExchange(ethToUsdtExchange));
      expect(error).toMatchObject({ kind: 'transient', code: 'network', httpStatus: null, endpoint: 'create' });
    } finally {
      await new Promise<void>((resolve) => rude.close(() => resolve()));
    }
  });

  it('a closed port → transient network (connection refused)', async () => {
    const port = await freePort();
    const error = await failure(client({ baseUrl: `http://127.0.0.1:${port}` }).estimate(ethToUsdtEstimate));
    expect(error).toMatchObject({ kind: 'transient', code: 'network', httpStatus: null, endpoint: 'estimate' });
    expect(error.message).toContain('ECONNREFUSED');
  });

  it('refuses a malformed request without sending it', async () => {
    const cn = client();
    expect(await failure(cn.getExchange('../../admin'))).toMatchObject({ kind: 'permanent', code: 'invalid_request' });
    expect(await failure(cn.estimate({ ...ethToUsdtEstimate, fromAmount: undefined }))).toMatchObject({
      code: 'invalid_request',
    });
    expect(await failure(cn.estimate({ ...ethToUsdtEstimate, toAmount: '1' }))).toMatchObject({
      code: 'invalid_request',
    });
    expect(await failure(cn.estimate({ ...ethToUsdtEstimate, fromCurrency: 'eth&flow=x' }))).toMatchObject({
      code: 'invalid_request',
    });
    expect(requests).toHaveLength(0);
  });
});

describe('ChangeNow client: listExchanges', () => {
  /** Two exchanges of one userId in the by-id shape, the second under another id, with a float-mangled amount. */
  const listBody = (count = 2) =>
    `{"count":${count},"exchanges":[${fixture('byIdFinished')},${fixture('byIdWaiting').replace('"ff1441c86e178b"', '"0a1b2c3d4e5f60"')}]}`;

  it('GET /v2/exchanges?userId=… with the key header, exact amounts back in the by-id shape', async () => {
    respond({ body: listBody() });
    const exchanges = await client().listExchanges({ userId: 'conv_01J' });
    expect(
      exchanges.map((exchange) => [
        exchange.id,
        exchange.status,
        exchange.amountFrom,
        exchange.amountTo,
        exchange.expectedAmountTo,
      ]),
    ).toEqual([
      ['ff1441c86e178b', 'finished', '0.1455', '435.499999', '435.49999999999994'],
      ['0a1b2c3d4e5f60', 'waiting', null, null, '435.49999999999994'],
    ]);
    expect(exchanges[1]).toMatchObject({
      userId: 'conv_01J',
      payload: { conversionId: 'conv_01J' },
      payinAddress: '0xf29568fa162015486e5323b74f9a1cd041fe1bab',
    });

    const request = onlyRequest('GET', '/v2/exchanges');
    expect(Object.fromEntries(request.url.searchParams)).toEqual({ userId: 'conv_01J' });
  });

  it('an empty list is an empty array; a count over every page is accepted', async () => {
    respond({ body: '{"count":0,"exchanges":[]}' });
    expect(await client().listExchanges({ userId: 'conv_none' })).toEqual([]);
    respond({ body: listBody(7) });
    expect(await client().listExchanges({ userId: 'conv_01J' })).toHaveLength(2);
  });

  it('a userId with reserved characters travels encoded', async () => {
    respond({ body: '{"count":0,"exchanges":[]}' });
    await client().listExchanges({ userId: 'conv 01&x=1' });
    expect((requests[0] as Recorded).url.searchParams.get('userId')).toBe('conv 01&x=1');
    expect([...(requests[0] as Recorded).url.searchParams.keys()]).toEqual(['userId']);
  });

  it('an exchange of another userId (a filter the server ignored) → transient malformed_response', async () => {
    respond({ body: listBody() });
    expect(await failure(client().listExchanges({ userId: 'conv_other' }))).toMatchObject(malformedAt('list'));
  });

  it.each([
    ['no exchanges array', '{"count":0}'],
    ['a malformed exchange', '{"count":1,"exchanges":[{"id":"ff1441c86e178b","status":"teleporting"}]}'],
    [
      'a count below the listed exchanges',
      `{"count":1,"exchanges":[${fixture('byIdWaiting')},${fixture('byIdFinished')}]}`,
    ],
    ['a fractional count', '{"count":1.5,"exchanges":[]}'],
    ['a bare array', `[${fixture('byIdWaiting')}]`],
  ])('%s → transient malformed_response', async (_name, body) => {
    respond({ body });
    expect(await failure(client().listExchanges({ userId: 'conv_01J' }))).toMatchObject(malformedAt('list'));
  });

  it('classifies HTTP failures like the other calls', async () => {
    respond({ status: 401, body: fixture('errorUnauthorized') });
    expect(await failure(client().listExchanges({ userId: 'conv_01J' }))).toMatchObject({
      kind: 'permanent',
      code: 'unauthorized',
      httpStatus: 401,
      endpoint: 'list',
    });
    respond({ status: 503, body: '{"error":"internal","message":"try later"}' });
    expect(await failure(client().listExchanges({ userId: 'conv_01J' }))).toMatchObject({
      kind: 'transient',
      code: 'http_503',
      endpoint: 'list',
    });
    respond({ hang: true });
    expect(await failure(client({ responseTimeoutMs: 300 }).listExchanges({ userId: 'conv_01J' }))).toMatchObject({
      kind: 'transient',
      code: 'timeout',
      endpoint: 'list',
    });
  });

  it('refuses a missing or empty userId without sending anything', async () => {
    const cn = client();
    for (const userId of ['', '   ', 'x'.repeat(201)]) {
      expect(await failure(cn.listExchanges({ userId }))).toMatchObject({
        kind: 'permanent',
        code: 'invalid_request',
        httpStatus: null,
        endpoint: 'list',
      });
    }
    expect(await failure(cn.listExchanges({} as { userId: string }))).toMatchObject({
      code: 'invalid_request',
      endpoint: 'list',
    });
    expect(requests).toHaveLength(0);
  });
});

describe('ChangeNow client: the API key', () => {
  it('is scrubbed even when the server echoes it back', async () => {
    respond({ status: 401, body: JSON.stringify({ error: 'unauthorized', message: `Invalid api key ${API_KEY}` }) });
    const error = await failure(client().estimate(ethToUsdtEstimate));
    expect(error.message).not.toContain(API_KEY);
    expect(error.message).toContain('[redacted]');
  });

  it('never appears in any error message of this file', () => {
    for (const error of seenErrors) {
      expect(error.message).not.toContain(API_KEY);
      expect(String(error.stack)).not.toContain(API_KEY);
    }
  });
});

describe('ChangeNow client: injected fetch', () => {
  it('sends the same request through it and reads the body losslessly', async () => {
    const seen: { url: string; init: RequestInit | undefined }[] = [];
    const fakeFetch = (async (input: string | URL | Request, init?: RequestInit) => {
      seen.push({ url: input instanceof Request ? input.url : String(input), init });
      return new Response(fixture('create'), { status: 200, headers: { 'content-type': 'application/json' } });
    }) as typeof fetch;
    const created = await client({ baseUrl: 'https://api.example.test', fetch: fakeFetch }).createExchange(
      ethToUsdtExchange,
    );
    expect(created.toAmount).toBe('435.49999999999994');
    expect(seen[0]?.url).toBe('https://api.example.test/v2/exchange');
    expect((seen[0]?.init?.headers as Record<string, string>)['x-changenow-api-key']).toBe(API_KEY);
    expect(seen[0]?.init?.body).toContain('"fromAmount":0.1455');
  });

  it('enforces the response deadline even if fetch ignores its signal', async () => {
    const neverFetch = (() => new Promise<Response>(() => undefined)) as typeof fetch;
    const error = await failure(client({ fetch: neverFetch, responseTimeoutMs: 300 }).getExchange('ff1441c86e178b'));
    expect(error).toMatchObject({ kind: 'transient', code: 'timeout', endpoint: 'by-id' });
  });

  it('classifies a fetch network failure as transient', async () => {
    const refusedFetch = (async () => {
      throw new TypeError('fetch failed', {
        cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }),
      });
    }) as typeof fetch;
    const error = await failure(client({ fetch: refusedFetch }).estimate(ethToUsdtEstimate));
    expect(error).toMatchObject({ kind: 'transient', code: 'network' });
    expect(error.message).toContain('ECONNREFUSED');
  });
});
