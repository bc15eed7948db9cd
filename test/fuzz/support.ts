/**
 * Shared pieces of the HTTP fuzz suites: a raw HTTP client (duplicate headers, exact bytes), a stand-in worker
 * heartbeat so GET /health can answer 200 from a web-only process, generators of hostile text, and every way of
 * sending the admin token right and wrong.
 */
import http from 'node:http';
import fc from 'fast-check';
import { sql } from 'kysely';
import { expect } from 'vitest';
import type { TestDatabase } from '../support/db.ts';
import { ADMIN_TOKEN } from '../support/payrail.ts';

/** FUZZ_RUNS overrides every property's run count (the defaults keep the fuzz suite under a minute on two cores). */
export const RUNS = Number(process.env.FUZZ_RUNS ?? '') || undefined;

/**
 * fast-check parameters: a fresh seed each run (printed with the failing path on failure), or FUZZ_SEED (and
 * FUZZ_PATH) to replay one.
 */
export function fuzzParams<T>(numRuns: number): fc.Parameters<T> {
  const seed = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
  const path = process.env.FUZZ_PATH;
  return { numRuns: RUNS ?? numRuns, ...(seed !== undefined && { seed }), ...(path !== undefined && { path }) };
}

export interface RawRequest {
  method: string;
  path: string;
  /** Header pairs in order; a name may repeat (sent as separate header lines). */
  headers: Array<[string, string]>;
  body?: Buffer | string;
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: any;
}

/** One request over a fresh connection, exactly as given (node's fetch would merge repeated headers and fix bytes). */
export function send(baseUrl: string, request: RawRequest): Promise<RawResponse> {
  const url = new URL(baseUrl);
  // Raw header lists get no defaults from node: Host is required by HTTP/1.1 (and by node's server).
  const flat: string[] = ['host', url.host];
  for (const [name, value] of request.headers) flat.push(name, value);
  const body =
    request.body === undefined
      ? undefined
      : Buffer.isBuffer(request.body)
        ? request.body
        : Buffer.from(request.body, 'utf8');
  // Like fetch: a POST or PUT without a body says so (content-length: 0); node would otherwise send it chunked.
  const length = body?.length ?? (['POST', 'PUT', 'PATCH', 'DELETE'].includes(request.method) ? 0 : undefined);
  if (length !== undefined && !request.headers.some(([n]) => n.toLowerCase() === 'content-length'))
    flat.push('content-length', String(length));
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: url.hostname, port: url.port, method: request.method, path: request.path, headers: flat, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * A web-only payrail has no worker, and /health counts workers: a stand-in heartbeat row, renewed before each
 * check, lets /health answer 200 when the process and its database are fine.
 */
export async function expectHealthy(baseUrl: string, db: TestDatabase): Promise<void> {
  await sql`insert into worker_heartbeats (worker_id, hostname, pid) values ('fuzz-stand-in', 'fuzz', ${process.pid})
    on conflict (worker_id) do update set last_seen_at = now()`.execute(db.db);
  const health = await send(baseUrl, { method: 'GET', path: '/health', headers: [] });
  expect(health.status, health.text).toBe(200);
}

/** Characters that break naive code: NUL, lone surrogates, bidi overrides, BOM, line separators, quotes, escapes. */
export const NASTY_CHARS = [
  '\u0000',
  '\u0001',
  '\u001f',
  '\u007f',
  '\ud800',
  '\udbff',
  '\udc00',
  '\udfff',
  '\u202e',
  '\u202d',
  '\u200f',
  '\u061c',
  '\u2066',
  '\ufeff',
  '\ufffe',
  '\uffff',
  '\u2028',
  '\u2029',
  '"',
  '\\',
  '/',
  '%',
  '%00',
  '\r\n',
  '\t',
  '\u{1f4a9}',
  '\u0430',
  '\uff11',
  'e\u0301',
  '$',
  '{',
  '}',
  '[',
  ']',
  ':',
  ',',
  '|',
  '-',
];

/** Any text, weighted toward the hostile: unicode of every plane, lone surrogates, RTL, NUL, JSON syntax. */
export const nastyString = (maxLength = 40): fc.Arbitrary<string> =>
  fc.string({
    unit: fc.oneof(
      { arbitrary: fc.constantFrom(...NASTY_CHARS), weight: 2 },
      { arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }), weight: 2 },
      { arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }), weight: 3 },
    ),
    maxLength,
  });

/**
 * A JSON body for a write: valid (most often), one known field set to another value, one known field left out, or an
 * unknown field added: the near misses a handler's validation must refuse field by field.
 */
export const bodyVariants = (
  valid: fc.Arbitrary<Record<string, unknown>>,
  fields: readonly string[],
  fieldValue: fc.Arbitrary<unknown>,
): fc.Arbitrary<Record<string, unknown>> =>
  fc.oneof(
    { arbitrary: valid, weight: 4 },
    {
      arbitrary: fc.tuple(valid, fc.constantFrom(...fields), fieldValue).map(([b, k, v]) => ({ ...b, [k]: v })),
      weight: 5,
    },
    {
      arbitrary: fc
        .tuple(valid, fc.constantFrom(...fields))
        .map(([b, k]) => Object.fromEntries(Object.entries(b).filter(([key]) => key !== k))),
      weight: 1,
    },
    {
      arbitrary: fc.tuple(valid, nastyString(10), fc.jsonValue({ maxDepth: 1 })).map(([b, k, v]) => ({ ...b, [k]: v })),
      weight: 1,
    },
  );

/** JSON number text a lossless parser keeps as written: exponents, negative zero, far past any float's range. */
export const numberText: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '0',
    '-0',
    '-0.0',
    '0.0',
    '1e-7',
    '1E+400',
    '1e400',
    '-1e400',
    '4.87e-3',
    '487E-5',
    '1E0',
    '0e0',
    '1.5',
    '-1',
    '9007199254740993',
    '0.1',
    '1e-400',
    '123456789012345678901',
    '99999999999999999999',
  ),
  fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }).map(String),
  fc
    .tuple(fc.bigInt({ min: 0n, max: 10n ** 35n }), fc.bigInt({ min: 0n, max: 10n ** 35n }))
    .map(([i, f]) => `${i}.${f}`),
  fc
    .tuple(fc.integer({ min: -9, max: 9 }), fc.integer({ min: -500, max: 500 }), fc.constantFrom('e', 'E', 'e+', 'E-'))
    .map(([m, e, s]) => `${m}${s}${Math.abs(e)}`),
  fc.integer({ min: 1, max: 400 }).map((n) => '9'.repeat(n)),
  fc.integer({ min: 1, max: 400 }).map((n) => `0.${'0'.repeat(n)}1`),
);

/** Raw JSON text of one hostile value (never `undefined`): numbers as written, strings, nesting, the odd literal. */
export const jsonValueText: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: numberText, weight: 4 },
  { arbitrary: nastyString().map((s) => JSON.stringify(s)), weight: 3 },
  { arbitrary: numberText.map((n) => JSON.stringify(n)), weight: 2 },
  {
    arbitrary: fc.constantFrom(
      'null',
      'true',
      'false',
      '{}',
      '[]',
      '""',
      '" "',
      '"\\u0000"',
      '"\\ud800"',
      '"\\udc00x"',
      '{"__proto__":{"x":1}}',
      '{"constructor":{"prototype":{"x":1}}}',
    ),
    weight: 2,
  },
  { arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)), weight: 1 },
  { arbitrary: fc.integer({ min: 1, max: 200 }).map((n) => `${'['.repeat(n)}${']'.repeat(n)}`), weight: 1 },
  { arbitrary: fc.integer({ min: 1, max: 2000 }).map((n) => JSON.stringify('x'.repeat(n * 10))), weight: 1 },
);

/** A JSON object written by hand from [key, value text] pairs: keys may repeat, values keep their exact text. */
export function objectText(pairs: ReadonlyArray<readonly [string, string]>, space = ''): string {
  return `{${space}${pairs.map(([k, v]) => `${JSON.stringify(k)}${space}:${space}${v}`).join(`,${space}`)}${space}}`;
}

/** Header values node will put on the wire: tab, printable ASCII and Latin-1 (CR, LF and NUL are refused by the client). */
export const headerText = (maxLength: number): fc.Arbitrary<string> =>
  fc.string({
    unit: fc
      .oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0xa0, max: 0xff }), fc.constant(9))
      .map((c) => String.fromCharCode(c)),
    maxLength,
  });

/** Whitespace JSON allows between tokens. */
export const jsonSpace = fc.constantFrom('', '', '', ' ', '\n', '\t', ' \r\n ');

/** Ways of sending the bearer token: the right one (some odd but accepted spellings) and every way of getting it wrong. */
export type Auth =
  | 'valid'
  | 'none'
  | 'wrong'
  | 'scheme-lowercase'
  | 'basic'
  | 'double-space'
  | 'padded'
  | 'suffix'
  | 'prefix'
  | 'token-only'
  | 'dup-valid-wrong'
  | 'dup-wrong-valid'
  | 'name-case'
  | 'comma'
  | 'empty'
  | 'bearer-only';
export const WRONG_AUTH: Auth[] = [
  'none',
  'wrong',
  'scheme-lowercase',
  'basic',
  'double-space',
  'suffix',
  'prefix',
  'token-only',
  'dup-wrong-valid',
  'comma',
  'empty',
  'bearer-only',
];
export const RIGHT_AUTH: Auth[] = ['valid', 'valid', 'valid', 'padded', 'dup-valid-wrong', 'name-case'];

export function authHeaders(auth: Auth, noise: string): Array<[string, string]> {
  const h = (v: string): [string, string] => ['authorization', v];
  switch (auth) {
    case 'valid':
      return [h(`Bearer ${ADMIN_TOKEN}`)];
    case 'none':
      return [];
    case 'wrong':
      return [h(`Bearer ${noise.replace(/\s/g, '') || 'x'}`)];
    case 'scheme-lowercase':
      return [h(`bearer ${ADMIN_TOKEN}`)];
    case 'basic':
      return [h(`Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}`)];
    case 'double-space':
      return [h(`Bearer  ${ADMIN_TOKEN}`)];
    case 'padded':
      return [h(` Bearer ${ADMIN_TOKEN}\t`)];
    case 'suffix':
      return [h(`Bearer ${ADMIN_TOKEN}x`)];
    case 'prefix':
      return [h(`Bearer x${ADMIN_TOKEN}`)];
    case 'token-only':
      return [h(ADMIN_TOKEN)];
    // node keeps the first of repeated Authorization headers and drops the rest.
    case 'dup-valid-wrong':
      return [h(`Bearer ${ADMIN_TOKEN}`), h('Bearer wrong')];
    case 'dup-wrong-valid':
      return [h('Bearer wrong'), h(`Bearer ${ADMIN_TOKEN}`)];
    case 'name-case':
      return [['AUTHORIZATION', `Bearer ${ADMIN_TOKEN}`]];
    case 'comma':
      return [h(`Bearer ${ADMIN_TOKEN}, Bearer ${ADMIN_TOKEN}`)];
    case 'empty':
      return [h('')];
    case 'bearer-only':
      return [h('Bearer')];
  }
}

/** Whether encodeURIComponent takes the text (a lone surrogate it refuses): a path segment or query part sent as is. */
export const encodable = (s: string): boolean => {
  try {
    encodeURIComponent(s);
    return true;
  } catch {
    return false;
  }
};

/**
 * What fastify's JSON parser refuses as prototype poisoning (onProtoPoisoning / onConstructorPoisoning: 'error'), in
 * a value as it reaches the server: sent as JSON, so read back from its JSON text.
 */
export function isPoisoned(node: unknown): boolean {
  if (node === null || typeof node !== 'object') return false;
  if (Array.isArray(node)) return node.some(isPoisoned);
  const o = JSON.parse(JSON.stringify(node)) as Record<string, unknown>;
  if (Object.hasOwn(o, '__proto__')) return true;
  const c = Object.hasOwn(o, 'constructor') ? o.constructor : undefined;
  if (c !== null && typeof c === 'object' && Object.hasOwn(c, 'prototype')) return true;
  return Object.values(o).some(isPoisoned);
}
