/**
 * Idempotency-Key on the admin API's writes (src/http/idempotency.ts), over real HTTP against a real database: the
 * same key and request answers the stored answer (status, body, content type) without acting again; another request
 * under the key is a 422; a malformed key is a 400 with nothing stored; copies sent at once act once; a 5xx is not
 * kept; keys belong to the token's name; a key is forgotten after 24 hours; a row abandoned in flight is taken over.
 * Copies waiting on one another run on the hooks alone, on a route the test holds open, with a short wait.
 */
import http from 'node:http';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearerAuth } from '../../src/http/auth.ts';
import { IN_PROGRESS_ERROR, idempotencyKeys, requestFingerprint } from '../../src/http/idempotency.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { ipnBody, signed } from '../support/ipn.ts';
import { ADMIN_TOKEN, IPN_SECRET, startTestPayrail, type TestPayrail } from '../support/payrail.ts';
import { seeder, type Seeder } from '../support/seed.ts';

const ALICE = 'alice-admin-token-0123456789';
const WALLET = '0x8ba1f109551bD432803012645Ac136ddd64DBA72';
const INSTANT = '-1007100000001';
const THRESHOLD = '-1007100000002';

let nextChannel = 1_007_200_000_001;
/** A channel no test has used yet. */
const freshChannel = () => `-${nextChannel++}`;

const channelBody = (thresholdUsd = '100.00') =>
  JSON.stringify({
    payoutStrategy: 'threshold',
    thresholdUsd,
    payoutCurrency: 'usdt',
    payoutNetwork: 'eth',
    walletAddress: WALLET,
  });

interface Answer {
  status: number;
  text: string;
  contentType: string | null;
  replayed: string | null;
  retryAfter: string | null;
}

async function call(
  baseUrl: string,
  method: string,
  path: string,
  options: { key?: string; token?: string; body?: string } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { authorization: `Bearer ${options.token ?? ADMIN_TOKEN}` };
  if (options.key !== undefined) headers['idempotency-key'] = options.key;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(baseUrl + path, {
    method,
    headers,
    ...(options.body !== undefined && { body: options.body }),
  });
  return {
    status: response.status,
    text: await response.text(),
    contentType: response.headers.get('content-type'),
    replayed: response.headers.get('idempotent-replayed'),
    retryAfter: response.headers.get('retry-after'),
  };
}

let db: TestDatabase;

async function keyRows(key: string): Promise<Array<{ actor: string; status: number | null }>> {
  const { rows } = await db.pool.query<{ actor: string; status: number | null }>(
    'select actor, response_status as status from idempotency_keys where key = $1 order by actor',
    [key],
  );
  return rows;
}

async function keyCount(): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>('select count(*)::int as n from idempotency_keys');
  return rows[0]!.n;
}

async function audits(subject: string): Promise<Array<{ actor: string; action: string }>> {
  const { rows } = await db.pool.query<{ actor: string; action: string }>(
    'select actor, action from audit_log where subject = $1 order by id',
    [subject],
  );
  return rows;
}

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.close();
});

describe('Idempotency-Key on the admin API', () => {
  let payrail: TestPayrail;
  let seed: Seeder;
  let nextPaymentId = 9_710_000_000;
  const put = (channelId: string, options: { key?: string; token?: string; body?: string } = {}) =>
    call(payrail.url, 'PUT', `/api/channels/${channelId}`, { body: channelBody(), ...options });

  beforeAll(async () => {
    // Web only: no worker takes jobs away or moves payouts between a request and what the test reads after it.
    payrail = await startTestPayrail(db, {
      roles: { web: true, worker: false },
      env: { ADMIN_TOKENS: `alice:${ALICE}` },
    });
    const pay = async (channelId: string) => {
      const body = ipnBody({ payment_id: nextPaymentId++, order_id: `PGP-1|${channelId}` });
      const { raw, headers } = signed(body, IPN_SECRET);
      const res = await payrail.request('POST', '/webhooks/nowpayments', { raw, headers, token: null });
      expect([200, 202]).toContain(res.status);
      return String(body.payment_id);
    };
    seed = seeder({ db, pay, instantChannel: INSTANT, thresholdChannel: THRESHOLD, wallet: WALLET });
    const instant = JSON.stringify({
      payoutStrategy: 'instant',
      payoutCurrency: 'eth',
      payoutNetwork: 'eth',
      walletAddress: WALLET,
    });
    expect((await put(INSTANT, { body: instant })).status).toBe(201);
  });

  afterAll(async () => {
    await payrail?.stop();
  });

  it('the same key and body answer the stored answer, byte for byte, and the channel is saved (and audited) once', async () => {
    const channelId = freshChannel();
    // Any printable ASCII, spaces and punctuation included, up to 255 characters.
    const key = `retry me: ${'~'.repeat(200)} "quoted" {}`;
    const first = await put(channelId, { key });
    expect(first.status).toBe(201);
    expect(first.replayed).toBeNull();
    expect(JSON.parse(first.text)).toMatchObject({ channelId, thresholdUsd: '100.00' });

    const again = await put(channelId, { key });
    expect(again).toEqual({ ...first, replayed: 'true' });
    expect(await audits(`channel:${channelId}`)).toEqual([{ actor: 'admin', action: 'channel.create' }]);
    expect(await keyRows(key)).toEqual([{ actor: 'admin', status: 201 }]);

    // Without the header a write acts as it always did.
    expect((await put(channelId)).status).toBe(200);
    expect(await audits(`channel:${channelId}`)).toHaveLength(2);
  });

  it('a payout action under a key is applied once: its copy answers the same 200, not a 409 from the new state', async () => {
    const { id: payoutId } = await seed.payout('awaiting_approval');
    const path = `/api/payouts/${payoutId}/cancel`;
    const first = await call(payrail.url, 'POST', path, { key: 'cancel-1' });
    expect(first.status).toBe(200);
    expect(JSON.parse(first.text)).toMatchObject({ payoutId, status: 'cancelled' });

    const again = await call(payrail.url, 'POST', path, { key: 'cancel-1' });
    expect(again).toEqual({ ...first, replayed: 'true' });
    expect(await audits(payoutId)).toEqual([{ actor: 'admin', action: 'payout.cancel' }]);
    // The same call under a new key acts, and the action is refused from where the payout is now.
    expect((await call(payrail.url, 'POST', path, { key: 'cancel-2' })).status).toBe(409);
  });

  it('a 4xx is stored and replayed too (the alerts routes honour keys as well)', async () => {
    const first = await call(payrail.url, 'POST', '/api/alerts/987654/resolve', { key: 'no-such-alert' });
    expect(first.status).toBe(404);
    const again = await call(payrail.url, 'POST', '/api/alerts/987654/resolve', { key: 'no-such-alert' });
    expect(again).toEqual({ ...first, replayed: 'true' });
  });

  it('an alert resolved under a key is resolved once; its copy answers the resolved alert again', async () => {
    const { rows } = await db.pool.query<{ id: string }>(
      `insert into alerts (rule, subject, severity, message) values ('idempotency_test', 'one', 'warning', 'test')
       returning id`,
    );
    const path = `/api/alerts/${rows[0]!.id}/resolve`;
    const body = JSON.stringify({ note: 'looked at it' });
    const first = await call(payrail.url, 'POST', path, { key: 'resolve-1', body });
    expect(first.status).toBe(200);
    const again = await call(payrail.url, 'POST', path, { key: 'resolve-1', body });
    expect(again).toEqual({ ...first, replayed: 'true' });
    expect(await audits(`alert:${rows[0]!.id}`)).toEqual([{ actor: 'admin', action: 'alert.resolve' }]);
  });

  it('the same key with another body, another path or another method is a 422 naming the key, and nothing acts', async () => {
    const channelId = freshChannel();
    expect((await put(channelId, { key: 'one-request' })).status).toBe(201);
    const other = freshChannel();
    const refusals = [
      await put(channelId, { key: 'one-request', body: channelBody('250.00') }),
      // Means the same JSON, spelled with other whitespace: the body is compared byte for byte.
      await put(channelId, { key: 'one-request', body: channelBody().replace(/,/g, ', ') }),
      await put(other, { key: 'one-request' }),
      await call(payrail.url, 'POST', `/api/channels/${channelId}/payout`, { key: 'one-request' }),
    ];
    for (const refusal of refusals) {
      expect(refusal.status).toBe(422);
      expect(JSON.parse(refusal.text)).toEqual({
        error:
          'Idempotency-Key "one-request" was used with another request (method, path or body differ): use a new key for a new request',
      });
    }
    expect(await audits(`channel:${channelId}`)).toHaveLength(1);
    expect(await audits(`channel:${other}`)).toEqual([]);
    expect(await keyRows('one-request')).toEqual([{ actor: 'admin', status: 201 }]);
  });

  it.each([
    { name: 'empty', key: '' },
    { name: '256 characters', key: 'k'.repeat(256) },
    { name: 'a tab inside', key: 'tab\there' },
    { name: 'a non-ASCII character', key: 'caf\u00e9' },
  ])('a key that is $name: 400, nothing stored, nothing done', async ({ key }) => {
    const channelId = freshChannel();
    const before = await keyCount();
    const answer = await put(channelId, { key });
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.text)).toEqual({ error: 'Idempotency-Key must be 1 to 255 printable ASCII characters' });
    expect(await keyCount()).toBe(before);
    expect(await audits(`channel:${channelId}`)).toEqual([]);
  });

  it('a key sent twice: 400, nothing stored, nothing done', async () => {
    const channelId = freshChannel();
    const before = await keyCount();
    const body = channelBody();
    const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const request = http.request(
        `${payrail.url}/api/channels/${channelId}`,
        {
          method: 'PUT',
          headers: {
            authorization: `Bearer ${ADMIN_TOKEN}`,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            // Two header lines: Node would show them as the one value "a, b".
            'idempotency-key': ['a', 'b'],
          },
        },
        (response) => {
          let text = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => (text += chunk));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, text }));
        },
      );
      request.on('error', reject);
      request.end(body);
    });
    expect(answer).toEqual({ status: 400, text: JSON.stringify({ error: 'Idempotency-Key must be sent once' }) });
    expect(await keyCount()).toBe(before);
    expect(await audits(`channel:${channelId}`)).toEqual([]);
  });

  it('a bad key without a valid token is a 401: the token is checked first', async () => {
    const answer = await put(freshChannel(), { key: '', token: 'wrong-token-0123456789' });
    expect(answer.status).toBe(401);
  });

  it('a GET ignores the header', async () => {
    const answer = await call(payrail.url, 'GET', `/api/channels/${INSTANT}`, { key: '' });
    expect(answer.status).toBe(200);
    expect(answer.replayed).toBeNull();
  });

  it('five copies sent at once act once: every answer is the first one, or the 409 of a copy that gave up waiting', async () => {
    const channelId = freshChannel();
    const answers = await Promise.all(Array.from({ length: 5 }, () => put(channelId, { key: 'all-at-once' })));
    expect(await audits(`channel:${channelId}`)).toEqual([{ actor: 'admin', action: 'channel.create' }]);
    const acted = answers.filter((a) => a.status === 201 && a.replayed === null);
    expect(acted).toHaveLength(1);
    for (const answer of answers) {
      if (answer.status === 409) {
        expect(JSON.parse(answer.text)).toEqual({ error: IN_PROGRESS_ERROR });
        expect(answer.retryAfter).not.toBeNull();
      } else {
        expect(answer).toEqual({ ...acted[0], replayed: answer === acted[0] ? null : 'true' });
      }
    }
    expect(await keyRows('all-at-once')).toEqual([{ actor: 'admin', status: 201 }]);
  });

  it('a 5xx is not stored: the row goes, and a retry under the same key acts', async () => {
    const channelId = freshChannel();
    // The save's audit row fails: the handler's transaction rolls back and the answer is a 500.
    await db.pool.query(`create function idempotency_test_refuse() returns trigger language plpgsql as $$
      begin raise exception 'refused for the test'; end $$`);
    await db.pool.query(`create trigger idempotency_test_refuse before insert on audit_log
      for each row execute function idempotency_test_refuse()`);
    let failed: Answer;
    try {
      failed = await put(channelId, { key: 'fails-once' });
    } finally {
      await db.pool.query('drop trigger idempotency_test_refuse on audit_log');
      await db.pool.query('drop function idempotency_test_refuse()');
    }
    expect(failed.status).toBe(500);
    expect(await keyRows('fails-once')).toEqual([]);

    const retried = await put(channelId, { key: 'fails-once' });
    expect(retried.status).toBe(201);
    expect(retried.replayed).toBeNull();
    expect(await audits(`channel:${channelId}`)).toEqual([{ actor: 'admin', action: 'channel.create' }]);
  });

  it("keys belong to the token's name: the same key from two people is two requests", async () => {
    const channelId = freshChannel();
    const mine = await put(channelId, { key: 'shared-key' });
    expect(mine.status).toBe(201);
    // Another body under the same key: for alice's tokens it is a new key, not a 422.
    const hers = await put(channelId, { key: 'shared-key', token: ALICE, body: channelBody('300.00') });
    expect(hers.status).toBe(200);
    expect(hers.replayed).toBeNull();
    expect(await audits(`channel:${channelId}`)).toEqual([
      { actor: 'admin', action: 'channel.create' },
      { actor: 'alice', action: 'channel.update' },
    ]);
    // Each replays their own answer.
    expect(await put(channelId, { key: 'shared-key' })).toEqual({ ...mine, replayed: 'true' });
    expect(await put(channelId, { key: 'shared-key', token: ALICE, body: channelBody('300.00') })).toEqual({
      ...hers,
      replayed: 'true',
    });
    expect(await keyRows('shared-key')).toEqual([
      { actor: 'admin', status: 201 },
      { actor: 'alice', status: 200 },
    ]);
  });

  it('after 24 hours the key is forgotten: the same request acts anew, and expired rows are deleted', async () => {
    const channelId = freshChannel();
    expect((await put(channelId, { key: 'day-old' })).status).toBe(201);
    await db.pool.query(
      "update idempotency_keys set created_at = created_at - interval '25 hours', completed_at = completed_at - interval '25 hours' where key = 'day-old'",
    );
    // Another key's expired row, left by nobody since: the next keyed request deletes it.
    await db.pool.query(
      `insert into idempotency_keys (actor, key, fingerprint, attempt, created_at, completed_at, response_status, response_body)
       values ('alice', 'long-gone', $1, gen_random_uuid(), now() - interval '30 hours', now() - interval '30 hours', 200, '\\x7b7d')`,
      ['0'.repeat(64)],
    );
    const anew = await put(channelId, { key: 'day-old' });
    expect(anew.status).toBe(200);
    expect(anew.replayed).toBeNull();
    expect(await audits(`channel:${channelId}`)).toEqual([
      { actor: 'admin', action: 'channel.create' },
      { actor: 'admin', action: 'channel.update' },
    ]);
    expect(await keyRows('day-old')).toEqual([{ actor: 'admin', status: 200 }]);
    expect(await keyRows('long-gone')).toEqual([]);
  });

  it("a row left in flight by a process that died is taken over after a minute, and the retry's answer kept", async () => {
    const channelId = freshChannel();
    const path = `/api/channels/${channelId}`;
    const body = channelBody();
    // What a process that died mid-request leaves: the row in flight, nothing done.
    await db.pool.query(
      `insert into idempotency_keys (actor, key, fingerprint, attempt, created_at)
       values ('admin', 'orphaned', $1, gen_random_uuid(), now() - interval '61 seconds')`,
      [requestFingerprint('PUT', path, body)],
    );
    const retried = await put(channelId, { key: 'orphaned', body });
    expect(retried.status).toBe(201);
    expect(retried.replayed).toBeNull();
    expect(await audits(`channel:${channelId}`)).toHaveLength(1);
    expect(await keyRows('orphaned')).toEqual([{ actor: 'admin', status: 201 }]);
    expect(await put(channelId, { key: 'orphaned', body })).toEqual({ ...retried, replayed: 'true' });
  });
});

interface Deferred<T = void> {
  promise: Promise<T>;
  resolve(value: T): void;
}

function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe('copies waiting on one another (the hooks alone, on a route the test holds open)', () => {
  let app: FastifyInstance;
  let url: string;
  /** Each run of the handler, in order: when it started, and what it waits for before answering. */
  const runs: Array<{ started: Deferred; finish: Deferred }> = [];
  let ran = 0;
  const nextRun = () => {
    const run = { started: deferred(), finish: deferred() };
    runs.push(run);
    return run;
  };
  const post = (key: string) => call(url, 'POST', '/api/held', { key, body: '{"x":1}' });

  beforeAll(async () => {
    app = Fastify();
    app.addHook('onRequest', bearerAuth([{ name: 'admin', token: ADMIN_TOKEN }]));
    idempotencyKeys(app, { db: db.db, waitMs: 600, pollMs: 20 });
    app.post('/api/held', async (_request, reply) => {
      const run = ++ran;
      const held = runs[run - 1];
      held?.started.resolve();
      await held?.finish.promise;
      return reply.code(201).send({ run });
    });
    url = await app.listen({ port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    await app?.close();
  });

  it('a copy that finds the first in flight waits, then answers what the first answered', async () => {
    const run = nextRun();
    const first = post('waits');
    await run.started.promise;
    const copy = post('waits');
    // The copy is polling by now; the first answers.
    await new Promise((r) => setTimeout(r, 100));
    run.finish.resolve();
    const [a, b] = await Promise.all([first, copy]);
    expect(a.status).toBe(201);
    expect(b).toEqual({ ...a, replayed: 'true' });
    expect(ran).toBe(runs.length);
  });

  it('a copy still waiting when its wait ends: 409 with Retry-After, and the first still answers and is kept', async () => {
    const run = nextRun();
    const first = post('slow');
    await run.started.promise;
    const copy = await post('slow');
    expect(copy.status).toBe(409);
    expect(JSON.parse(copy.text)).toEqual({ error: IN_PROGRESS_ERROR });
    expect(Number(copy.retryAfter)).toBeGreaterThan(0);
    run.finish.resolve();
    const a = await first;
    expect(a.status).toBe(201);
    expect(await post('slow')).toEqual({ ...a, replayed: 'true' });
    expect(ran).toBe(runs.length);
  });

  it('a copy takes over a row in flight for over a minute; the late first answer is not the one kept', async () => {
    const stuck = nextRun();
    const takeover = nextRun();
    const first = post('stuck');
    await stuck.started.promise;
    await db.pool.query(
      "update idempotency_keys set created_at = now() - interval '61 seconds' where actor = 'admin' and key = 'stuck'",
    );
    const second = post('stuck');
    await takeover.started.promise;
    takeover.finish.resolve();
    const b = await second;
    expect(b.status).toBe(201);
    stuck.finish.resolve();
    const a = await first;
    // The first still gets its own answer; the stored one is the copy's, which took the key over.
    expect(a.status).toBe(201);
    expect(JSON.parse(a.text)).not.toEqual(JSON.parse(b.text));
    expect(await post('stuck')).toEqual({ ...b, replayed: 'true' });
  });
});
