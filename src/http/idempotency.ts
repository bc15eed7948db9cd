/**
 * Idempotency-Key on the admin API's writes (POST, PUT, PATCH, DELETE): a retried call carrying the key the first one
 * carried answers what the first one answered, instead of acting twice.
 *
 * - The key is 1 to 255 printable ASCII characters, sent once; anything else is a 400 and nothing is stored. Without
 *   the header nothing here happens.
 * - Keys belong to the admin token's name (request.actor, set by bearerAuth), so two people's keys never collide.
 * - A request is the method, the URL path and the raw body bytes as received (sha256): the same key with another
 *   request is a 422 naming the key. Bodies are compared byte for byte, never reparsed: JSON that means the same but is
 *   spelled differently is another request.
 * - The first copy inserts an in-flight row, runs the handler, and stores the answer (status, content type, body) when
 *   it is 2xx or 4xx. A 5xx is not stored: the row goes, so a retry acts again (every action is a guarded state
 *   transition, so trying again is safe). Copies that find the row in flight wait for the answer (up to waitMs), then
 *   answer 409 with Retry-After.
 * - A row in flight for longer than ABANDONED_AFTER belongs to a process that died mid-request: the next copy takes it
 *   over (a conditional UPDATE on the attempt id, so one copy wins). A stored answer is kept for KEPT_FOR; after that
 *   the key acts anew.
 *
 * Expired rows are deleted by the next keyed request rather than by a worker cron: admin writes come at a person's
 * pace, so the table holds a handful of rows and the delete (on an index) costs nothing; the web role needs no worker
 * for it; and correctness never depends on the cleanup, since an expired row is treated as absent when read.
 */
import { createHash, randomUUID, type Hash } from 'node:crypto';
import { Transform } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { sql } from 'kysely';
import type { Db } from '../db/index.ts';

export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key';
export const REPLAYED_HEADER = 'idempotent-replayed';
/** A stored answer is replayed for this long after the request that acted began; then the key is forgotten. */
export const KEPT_FOR = '24 hours';
/** Longer than any admin handler runs: a row still in flight after this has lost its process. */
export const ABANDONED_AFTER = '60 seconds';
const DEFAULT_WAIT_MS = 10_000;
const DEFAULT_POLL_MS = 100;
// The copy that gets the 409 waits again (up to waitMs) when it retries: no reason to hold it back long.
const RETRY_AFTER_SECONDS = 1;

// Space to tilde. Node has already refused control characters in a header value, except tab.
const KEY_RE = /^[\x20-\x7e]{1,255}$/;
const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
export const IN_PROGRESS_ERROR = 'a request with this Idempotency-Key is still in progress';

export interface IdempotencyOptions {
  db: Db;
  /** How long a copy waits for the copy holding its key to answer before its 409. */
  waitMs?: number;
  /** How often a waiting copy looks at the row. */
  pollMs?: number;
}

interface Keyed {
  key: string;
  /** sha256 over method, path and the body bytes as they stream in; complete once the body is parsed. */
  hash: Hash;
}

interface Held {
  actor: string;
  key: string;
  attempt: string;
}

interface StoredRow {
  fingerprint: string;
  attempt: string;
  response_status: number | null;
  response_content_type: string | null;
  response_body: Buffer | null;
  expired: boolean;
  abandoned: boolean;
}

type Claim =
  | { kind: 'acting'; tookOver?: 'abandoned' | 'expired' }
  | { kind: 'answered'; row: StoredRow }
  | { kind: 'other_request' }
  | { kind: 'in_flight' }
  /** The row changed between our reads (removed, taken over): look again. */
  | { kind: 'changed' };

/** The fingerprint's hash with method and path in; the body's bytes follow. NUL separates what cannot contain one. */
function requestHash(method: string, path: string): Hash {
  return createHash('sha256').update(method).update('\0').update(path).update('\0');
}

/** What a request is, for comparing a key's copies: sha256 (hex) of method, URL path (no query) and body bytes. */
export function requestFingerprint(method: string, path: string, body: Uint8Array | string = ''): string {
  return requestHash(method, path).update(body).digest('hex');
}

const pathOf = (request: FastifyRequest): string => request.url.split('?')[0] ?? request.url;

/** The key, undefined when absent, or the reason it is refused. */
function readKey(request: FastifyRequest): { key?: string; error?: string } {
  const raw = request.raw.rawHeaders;
  let sent = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === IDEMPOTENCY_KEY_HEADER) sent += 1;
  if (sent === 0) return {};
  // Node joins repeated unknown headers with ", ": two keys would read as one that neither copy sent.
  if (sent > 1) return { error: 'Idempotency-Key must be sent once' };
  const key = request.headers[IDEMPOTENCY_KEY_HEADER];
  if (typeof key !== 'string' || !KEY_RE.test(key))
    return { error: 'Idempotency-Key must be 1 to 255 printable ASCII characters' };
  return { key };
}

/** Passes the body through unchanged, hashing its bytes on the way to the parser. */
function hashing(payload: NodeJS.ReadableStream, hash: Hash): Transform & { receivedEncodedLength: number } {
  const tee: Transform & { receivedEncodedLength: number } = Object.assign(
    new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        // fastify checks this against Content-Length and bodyLimit.
        tee.receivedEncodedLength += chunk.length;
        done(null, chunk);
      },
    }),
    { receivedEncodedLength: 0 },
  );
  // pipe() does not forward errors: the parser listens on our stream, so a broken upload must end it.
  payload.on('error', (error: Error) => tee.destroy(error));
  payload.pipe(tee);
  return tee;
}

/** One scope's settings, and its requests that carry a key: keyed until the body is parsed, held until answered. */
interface Scope {
  db: Db;
  waitMs: number;
  pollMs: number;
  keyed: WeakMap<FastifyRequest, Keyed>;
  held: WeakMap<FastifyRequest, Held>;
}

/** Adds the Idempotency-Key hooks to `app`'s scope: every write route in it honours the header. */
export function idempotencyKeys(app: FastifyInstance, options: IdempotencyOptions): void {
  const scope: Scope = {
    db: options.db,
    waitMs: options.waitMs ?? DEFAULT_WAIT_MS,
    pollMs: options.pollMs ?? DEFAULT_POLL_MS,
    keyed: new WeakMap(),
    held: new WeakMap(),
  };
  // After onRequest (the token is checked, request.actor set), before the body is read: the body's bytes are hashed as
  // they arrive, exactly as sent.
  app.addHook('preParsing', (request, reply, payload) => hashBody(scope, request, reply, payload));
  // The body is parsed (a body the parser refused never gets here, and nothing is stored for it).
  app.addHook('preHandler', (request, reply) => reserve(scope, request, reply));
  // Root onSend hooks (the secret scrubber) ran already: what is stored is what the client got.
  app.addHook('onSend', (request, reply, payload) => store(scope, request, reply, payload));
}

/** A write's key read (400 for a bad one), and its body passed on through the hash; anything else passes untouched. */
async function hashBody(
  scope: Scope,
  request: FastifyRequest,
  reply: FastifyReply,
  payload: NodeJS.ReadableStream,
): Promise<Transform | undefined> {
  if (!WRITES.has(request.method)) return undefined;
  const { key, error } = readKey(request);
  if (error !== undefined) {
    await reply.code(400).send({ error });
    return undefined;
  }
  if (key === undefined) return undefined;
  const hash = requestHash(request.method, pathOf(request));
  scope.keyed.set(request, { key, hash });
  return hashing(payload, hash);
}

/** The key taken for this request, or its answer given instead: replayed, 422 or 409. */
async function reserve(scope: Scope, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const keyedRequest = scope.keyed.get(request);
  if (keyedRequest === undefined) return;
  scope.keyed.delete(request);
  const mine: Held = { actor: request.actor ?? 'unknown', key: keyedRequest.key, attempt: randomUUID() };
  const fingerprint = keyedRequest.hash.digest('hex');
  const deadline = Date.now() + scope.waitMs;
  await forgetExpired(scope.db);
  for (;;) {
    const claim = await claimKey(scope.db, mine, fingerprint);
    if (await settle(scope, request, reply, { mine, claim, deadline })) return;
  }
}

/** What one look at the key means for this request: true once it acts or is answered, false to look again. */
async function settle(
  scope: Scope,
  request: FastifyRequest,
  reply: FastifyReply,
  { mine, claim, deadline }: { mine: Held; claim: Claim; deadline: number },
): Promise<boolean> {
  switch (claim.kind) {
    case 'acting':
      scope.held.set(request, mine);
      if (claim.tookOver === 'abandoned') logTakenOver(request, mine);
      return true;
    case 'answered':
      await replay(request, reply, claim.row, mine);
      return true;
    case 'other_request':
      await reply.code(422).send({
        error: `Idempotency-Key ${JSON.stringify(mine.key)} was used with another request (method, path or body differ): use a new key for a new request`,
      });
      return true;
    case 'in_flight':
      return waitOrGiveUp(scope.pollMs, reply, deadline);
    case 'changed':
      return false;
  }
}

function logTakenOver(request: FastifyRequest, { actor, key }: Held): void {
  request.log.warn(
    { event: 'idempotency_key_taken_over', actor, key, method: request.method, path: pathOf(request) },
    `the request holding this Idempotency-Key stopped answering for ${ABANDONED_AFTER}: acting again`,
  );
}

/** Another copy is acting on the key: wait a poll for its answer, or past the deadline answer 409 (true). */
async function waitOrGiveUp(pollMs: number, reply: FastifyReply, deadline: number): Promise<boolean> {
  if (Date.now() + pollMs > deadline) {
    await reply.code(409).header('retry-after', String(RETRY_AFTER_SECONDS)).send({ error: IN_PROGRESS_ERROR });
    return true;
  }
  await sleep(pollMs);
  return false;
}

/** The answer kept for the key (2xx, 4xx), or the key released (5xx); either way the client gets it unchanged. */
async function store(scope: Scope, request: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
  const holding = scope.held.get(request);
  if (holding === undefined) return payload;
  scope.held.delete(request);
  const status = reply.statusCode;
  const body = answerBytes(payload);
  try {
    if (body !== undefined && ((status >= 200 && status < 300) || (status >= 400 && status < 500)))
      await keepAnswer(scope.db, request, reply, holding, body);
    // A 5xx (or an answer that cannot be kept): the key is released, so a retry acts again.
    else await releaseKey(scope.db, holding);
  } catch (error) {
    // The client still gets its answer; the row stays in flight and is taken over once abandoned.
    request.log.error(
      { event: 'idempotency_store_failed', actor: holding.actor, key: holding.key, err: error },
      'could not store the answer for an Idempotency-Key',
    );
  }
  return payload;
}

/** The answer's bytes as sent; undefined for one that is not bytes yet (a stream), which cannot be kept. */
function answerBytes(payload: unknown): Buffer | undefined {
  if (Buffer.isBuffer(payload)) return payload;
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8');
  if (payload === null || payload === undefined) return Buffer.alloc(0);
  return undefined;
}

async function keepAnswer(db: Db, request: FastifyRequest, reply: FastifyReply, holding: Held, body: Buffer) {
  const contentType = reply.getHeader('content-type');
  const stored = await db
    .updateTable('idempotency_keys')
    .set({
      response_status: reply.statusCode,
      response_content_type: typeof contentType === 'string' ? contentType : null,
      response_body: body,
      completed_at: sql<Date>`now()`,
    })
    // Only the attempt holding the row: a copy that took it over since keeps its own answer.
    .where('actor', '=', holding.actor)
    .where('key', '=', holding.key)
    .where('attempt', '=', holding.attempt)
    .where('response_status', 'is', null)
    .executeTakeFirst();
  if (stored.numUpdatedRows === 0n)
    request.log.warn(
      { event: 'idempotency_answer_not_kept', actor: holding.actor, key: holding.key, status: reply.statusCode },
      'another copy took this Idempotency-Key over while this request ran: its answer is the one kept',
    );
}

async function releaseKey(db: Db, holding: Held): Promise<void> {
  await db
    .deleteFrom('idempotency_keys')
    .where('actor', '=', holding.actor)
    .where('key', '=', holding.key)
    .where('attempt', '=', holding.attempt)
    .execute();
}

async function forgetExpired(db: Db): Promise<void> {
  await db
    .deleteFrom('idempotency_keys')
    .where('created_at', '<=', sql<Date>`now() - ${KEPT_FOR}::interval`)
    .execute();
}

/** One look at the key: take it (new, expired or abandoned), or find its answer, another request, or a copy running. */
async function claimKey(db: Db, mine: Held, fingerprint: string): Promise<Claim> {
  const inserted = await db
    .insertInto('idempotency_keys')
    .values({ actor: mine.actor, key: mine.key, fingerprint, attempt: mine.attempt })
    .onConflict((conflict) => conflict.columns(['actor', 'key']).doNothing())
    .returning('attempt')
    .executeTakeFirst();
  if (inserted) return { kind: 'acting' };

  // Ages are read from the database's clock: every web process measures them the same way.
  const row: StoredRow | undefined = await db
    .selectFrom('idempotency_keys')
    .select([
      'fingerprint',
      'attempt',
      'response_status',
      'response_content_type',
      'response_body',
      sql<boolean>`created_at <= now() - ${KEPT_FOR}::interval`.as('expired'),
      sql<boolean>`created_at <= now() - ${ABANDONED_AFTER}::interval`.as('abandoned'),
    ])
    .where('actor', '=', mine.actor)
    .where('key', '=', mine.key)
    .executeTakeFirst();
  if (row === undefined) return { kind: 'changed' };
  if (row.expired) return takeOver(db, mine, fingerprint, row, 'expired');
  if (row.fingerprint !== fingerprint) return { kind: 'other_request' };
  if (row.response_status !== null) return { kind: 'answered', row };
  if (row.abandoned) return takeOver(db, mine, fingerprint, row, 'abandoned');
  return { kind: 'in_flight' };
}

/** The row as it was read becomes ours, unless another copy took it or its request answered since. */
async function takeOver(
  db: Db,
  mine: Held,
  fingerprint: string,
  seen: StoredRow,
  why: 'abandoned' | 'expired',
): Promise<Claim> {
  let update = db
    .updateTable('idempotency_keys')
    .set({
      fingerprint,
      attempt: mine.attempt,
      created_at: sql<Date>`now()`,
      completed_at: null,
      response_status: null,
      response_content_type: null,
      response_body: null,
    })
    .where('actor', '=', mine.actor)
    .where('key', '=', mine.key)
    .where('attempt', '=', seen.attempt);
  if (why === 'abandoned') update = update.where('response_status', 'is', null);
  const taken = await update.executeTakeFirst();
  return taken.numUpdatedRows === 1n ? { kind: 'acting', tookOver: why } : { kind: 'changed' };
}

async function replay(
  request: FastifyRequest,
  reply: FastifyReply,
  row: StoredRow,
  who: { actor: string; key: string },
): Promise<void> {
  const status = row.response_status as number;
  request.log.info(
    {
      event: 'idempotent_replay',
      actor: who.actor,
      key: who.key,
      method: request.method,
      path: pathOf(request),
      status,
    },
    'answered from the Idempotency-Key: not acted again',
  );
  reply.code(status).header(REPLAYED_HEADER, 'true');
  if (row.response_content_type !== null) reply.header('content-type', row.response_content_type);
  await reply.send(row.response_body ?? Buffer.alloc(0));
}
