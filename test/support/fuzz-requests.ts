/**
 * The requests the admin API fuzz suites make, from the path to the wire: a path of segments (a value percent-encoded,
 * or raw text put in the path as it is), query pairs and a body; their bytes; and sending them with the token spelt
 * right or wrong, what was written read before and after, a 5xx failed at once with the error payrail logged for it.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import { authHeaders, encodable, send, type Auth, type RawResponse } from '../fuzz/support.ts';
import { fingerprint, type TestDatabase } from './db.ts';
import type { LogSink } from './payrail.ts';

/** A path segment: `value` percent-encoded as a URI component, or `raw` text put in the path as it is. */
export type Segment = { value: string } | { raw: string };
export type Query = Array<[string, string]>;
export type Body =
  { kind: 'none' } | { kind: 'json'; value: unknown } | { kind: 'raw'; text: string; contentType: string | null };
/** Counts and row versions by name: two equal ones mean nothing was written. */
export type Written = Record<string, string | number>;

export interface Rendered {
  path: string;
  headers: Array<[string, string]>;
  body: Buffer | undefined;
}

/** One of `values` (those encodeURIComponent takes) `valueWeight` times in `valueWeight + 1`, else one of `raws`. */
export const pathSegment = (
  values: fc.Arbitrary<string>,
  raws: readonly string[],
  valueWeight: number,
): fc.Arbitrary<Segment> =>
  fc.oneof(
    { arbitrary: values.filter(encodable).map((value) => ({ value })), weight: valueWeight },
    { arbitrary: fc.constantFrom(...raws).map((raw) => ({ raw })), weight: 1 },
  );

/** One of `list` as it stands when drawn (the suite adds to it as it runs); undefined while it is empty. */
export const drawnFrom = <T>(list: readonly T[]): fc.Arbitrary<T | undefined> =>
  fc.nat(1000).map((i) => list[i % Math.max(1, list.length)]);

/** A seeded id one step off, as a person pasting ids gets it wrong: each way by name, with what it does to the id. */
export const nearId = (
  ids: readonly string[],
  fallback: string,
  ways: Record<string, (id: string) => string>,
): fc.Arbitrary<string> =>
  fc
    .tuple(drawnFrom(ids), fc.constantFrom(...Object.keys(ways)))
    .map(([seeded, how]) => ways[how]!(seeded ?? fallback));

/** The slips any id may suffer: its case changed, a character short, one too many. */
export const SLIPS = {
  upper: (id: string) => id.toUpperCase(),
  short: (id: string) => id.slice(0, -1),
  long: (id: string) => `${id}0`,
};

export const fixed = (...names: string[]): Segment[] => names.map((value) => ({ value }));

/** The decoded value of a segment, when the model knows it exactly (raw segments are left to the router). */
export const valueOf = (s: Segment | undefined): string | undefined =>
  s !== undefined && 'value' in s ? s.value : undefined;

/** A path with a percent-escape that does not decode (to UTF-8) is refused by the router: 400 FST_ERR_BAD_URL. */
export function badUrl(segments: Segment[]): boolean {
  return segments.some((s) => {
    if ('value' in s) return false;
    try {
      decodeURIComponent(s.raw);
      return false;
    } catch {
      return true;
    }
  });
}

/** The query parameters actually sent (text that cannot be percent-encoded, such as a lone surrogate, is left out). */
export const sentQuery = (query: Query): Query => query.filter(([k, v]) => encodable(k) && encodable(v));

/** The parameters sent, by name, as a route that answered 200 read them (each sent once). */
export const askedIn = (query: Query): Record<string, string> => Object.fromEntries(sentQuery(query));

/** The most a list answers with: the limit asked, or the route's own. */
export const limitOf = (asked: Record<string, string>, byDefault: number): number =>
  asked.limit === undefined ? byDefault : Number(asked.limit);

/** What a request sends unless its route is given more: no query, no body. */
export const NO_QUERY = fc.constant<Query>([]);
export const NO_BODY = fc.constant<Body>({ kind: 'none' });
export const GET = fc.constant('GET');
export const POST = fc.constant('POST');

/** A request to one route, by the route's name: its method and path, with no query and no body unless given. */
export const route = <R extends string>(
  name: R,
  method: fc.Arbitrary<string>,
  segments: fc.Arbitrary<Segment[]>,
  sent: { query?: fc.Arbitrary<Query>; body?: fc.Arbitrary<Body> } = {},
) =>
  fc.record({
    route: fc.constant(name),
    method,
    segments,
    query: sent.query ?? NO_QUERY,
    body: sent.body ?? NO_BODY,
  });

/** /api/<collection>, then the segments generated (an id, an action). */
export const under = (collection: string, ...rest: Array<fc.Arbitrary<Segment>>): fc.Arbitrary<Segment[]> =>
  fc.tuple(...rest).map((s): Segment[] => [...fixed('api', collection), ...s]);

export function pathOf(segments: Segment[], query: Query): string {
  const path = `/${segments.map((s) => ('value' in s ? encodeURIComponent(s.value) : s.raw)).join('/')}`;
  const q = sentQuery(query).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  return q.length > 0 ? `${path}?${q.join('&')}` : path;
}

/** A body's bytes and its content type (a raw body may go without one). */
export function bodyOf(body: Body): Omit<Rendered, 'path'> {
  if (body.kind === 'none') return { headers: [], body: undefined };
  if (body.kind === 'json')
    return {
      headers: [['content-type', 'application/json']],
      body: Buffer.from(JSON.stringify(body.value) ?? 'null', 'utf8'),
    };
  return {
    headers: body.contentType === null ? [] : [['content-type', body.contentType]],
    body: Buffer.from(body.text, 'utf8'),
  };
}

/** Where the suite's requests go: the process, its log, and what counts as written. */
export interface Target {
  url: string;
  logs: LogSink;
  written: () => Promise<Written>;
}

export async function sendWatched(
  target: Target,
  method: string,
  { path, headers, body }: Rendered,
  auth: Auth,
  noise: string,
): Promise<{ response: RawResponse; before: Written; after: Written }> {
  const before = await target.written();
  const logged = target.logs.lines.length;
  const response = await send(target.url, {
    method,
    path,
    headers: [...authHeaders(auth, noise), ...headers],
    ...(body !== undefined && { body }),
  });
  if (response.status >= 500) {
    const failure = target.logs.lines.slice(logged).find((l) => l.event === 'request_failed') as
      { err?: { stack?: string } } | undefined;
    expect.fail(
      `${method} ${path} → ${response.status} ${response.text}: ${failure?.err?.stack?.split('\n').slice(0, 6).join(' | ') ?? 'no error logged'}`,
    );
  }
  const after = await target.written();
  return { response, before, after };
}

/** The audit log's entries since `before` was read, newest first. */
export async function auditSince(db: TestDatabase, before: Written) {
  const { rows } = await db.pool.query(
    'select actor, action, subject, details from audit_log order by id desc limit $1',
    [((await fingerprint(db)).audit_log as number) - (before.audit_log as number)],
  );
  return rows;
}
