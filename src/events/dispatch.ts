/**
 * Delivering events to webhook endpoints, at least once and in order per subject:
 * 1. fan-out: each endpoint's events past its position (read as src/events/read.ts reads them) get a delivery row;
 * 2. for each subject, only the oldest pending delivery may be sent, so a payment's `payment.credited` never
 *    overtakes its `payment.received`, while other subjects go on past a failing one;
 * 3. a delivery is claimed (its next attempt pushed past the request's timeout) before it is sent, so a second
 *    dispatcher never sends it at the same time; a 2xx answer delivers it, anything else schedules the next attempt;
 * 4. a delivery still failing when its retry window ends is given up (`failed`), which lets its subject's later events
 *    go, and stays visible with its attempts until a person retries it.
 * Receivers dedupe by event id: a delivery whose answer was lost is sent again.
 */
import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/index.ts';
import type { Logger } from '../log.ts';
import { readEvents, toBody, type Position } from './read.ts';
import { SIGNATURE_HEADER, signEvent } from './signature.ts';

export interface DispatchSettings {
  /** Delay before the second attempt; later ones grow from it (see retryDelayMs). */
  readonly retryMinDelayMs: number;
  /** How long a delivery is retried before it is given up. */
  readonly retryWindowMs: number;
  /** Per attempt: connect, send, and the receiver's whole answer. */
  readonly timeoutMs: number;
  /** How often a run looks for new events while endpoints exist. */
  readonly pollIntervalMs: number;
}

export interface DispatchDeps {
  readonly db: Kysely<Database>;
  readonly logger: Logger;
  readonly settings: DispatchSettings;
  /** Removes secret values from an error before it is stored (an error may quote a URL with a token). */
  readonly scrub?: ((text: string) => string) | undefined;
}

/** Events fanned out per endpoint per run: a large backlog is worked through over several runs. */
const FAN_OUT_BATCH = 1_000;
/**
 * Subjects sent to per endpoint per run, and at once: a run spends at most two attempt timeouts on an endpoint that
 * never answers, and endpoints are served side by side, so a dead receiver does not hold up the others.
 */
const PARALLEL_SENDS = 8;
const HEADS_PER_RUN = PARALLEL_SENDS * 2;
const PARALLEL_ENDPOINTS = 4;

/** Multiples of the first delay: 10 s, 30 s, 1 min, 5 min, 15 min, 30 min, 1 h, 2 h, then every 4 h (at 10 s). */
const BACKOFF = [1, 3, 6, 30, 90, 180, 360, 720, 1_440] as const;

function retryDelayMs(attempts: number, minDelayMs: number): number {
  const step = BACKOFF[Math.min(Math.max(attempts, 1), BACKOFF.length) - 1] as number;
  return step * minDelayMs;
}

interface Endpoint {
  id: string;
  url: string;
  secret: string;
  event_types: string[];
  cursor_txid: string;
  cursor_seq: string;
}

export interface DispatchSummary {
  readonly fannedOut: number;
  readonly delivered: number;
  readonly failedAttempts: number;
  readonly givenUp: number;
  /** When the next run should look again; null when no endpoint exists (the cron starts one later). */
  readonly nextRunAt: Date | null;
}

export async function dispatchEvents(deps: DispatchDeps): Promise<DispatchSummary> {
  const endpoints = await deps.db
    .selectFrom('webhook_endpoints')
    .select(['id', 'url', 'secret', 'event_types', 'cursor_txid', 'cursor_seq'])
    .where('deleted_at', 'is', null)
    .execute();
  const results = await mapLimit(endpoints, PARALLEL_ENDPOINTS, (endpoint) => serveEndpoint(deps, endpoint));
  const sum = (pick: (r: EndpointRun) => number) => results.reduce((total, r) => total + pick(r), 0);
  const summary = {
    fannedOut: sum((r) => r.fannedOut),
    delivered: sum((r) => r.delivered),
    failedAttempts: sum((r) => r.failedAttempts),
    givenUp: sum((r) => r.givenUp),
  };
  if (endpoints.length === 0) return { ...summary, nextRunAt: null };
  const poll = new Date(Date.now() + deps.settings.pollIntervalMs);
  const due = results.map((r) => r.nextDue).filter((d): d is Date => d !== null && d < poll);
  return { ...summary, nextRunAt: due.length > 0 ? new Date(Math.min(...due.map((d) => d.getTime()))) : poll };
}

interface EndpointRun {
  fannedOut: number;
  delivered: number;
  failedAttempts: number;
  givenUp: number;
  nextDue: Date | null;
}

async function serveEndpoint(deps: DispatchDeps, endpoint: Endpoint): Promise<EndpointRun> {
  const fannedOut = await fanOut(deps.db, endpoint);
  const givenUp = await giveUpExpired(deps, endpoint.id);
  const heads = await claimHeads(deps, endpoint.id);
  const results = await mapLimit(heads, PARALLEL_SENDS, (head) => attempt(deps, endpoint, head));
  return {
    fannedOut,
    givenUp,
    delivered: results.filter((ok) => ok).length,
    failedAttempts: results.filter((ok) => !ok).length,
    nextDue: await nextAttemptAt(deps.db, endpoint.id),
  };
}

/** Delivery rows for the endpoint's new events; its position moves past every event read, wanted or not. */
async function fanOut(db: Kysely<Database>, endpoint: Endpoint): Promise<number> {
  let total = 0;
  let position: Position = { txid: endpoint.cursor_txid, seq: endpoint.cursor_seq };
  for (;;) {
    const events = await readEvents(db, { after: position, limit: FAN_OUT_BATCH });
    if (events.length === 0) return total;
    const last = events[events.length - 1] as (typeof events)[number];
    const wanted = events.filter((e) => endpoint.event_types.includes(e.type));
    await db.transaction().execute(async (trx) => {
      if (wanted.length > 0) {
        await trx
          .insertInto('webhook_deliveries')
          .values(wanted.map((e) => ({ endpoint_id: endpoint.id, event_seq: e.seq, subject: e.subject })))
          .onConflict((oc) => oc.doNothing())
          .execute();
      }
      // Only forward: a concurrent fan-out that got further is not moved back.
      await trx
        .updateTable('webhook_endpoints')
        .set({ cursor_txid: last.txid, cursor_seq: last.seq })
        .where('id', '=', endpoint.id)
        .where(sql<boolean>`(cursor_txid, cursor_seq) < (${last.txid}::xid8, ${last.seq}::bigint)`)
        .execute();
    });
    total += wanted.length;
    position = { txid: last.txid, seq: last.seq };
    if (events.length < FAN_OUT_BATCH) return total;
  }
}

/** Pending deliveries whose window ended are given up, so their subjects' later events can go. */
async function giveUpExpired(deps: DispatchDeps, endpointId: string): Promise<number> {
  const rows = await deps.db
    .updateTable('webhook_deliveries')
    .set({ status: 'failed', failed_at: sql`now()` })
    .where('endpoint_id', '=', endpointId)
    .where('status', '=', 'pending')
    .where('attempts', '>', 0)
    .where(sql<boolean>`first_attempt_at <= now() - ${deps.settings.retryWindowMs} * interval '1 millisecond'`)
    .where(sql<boolean>`next_attempt_at <= now()`)
    .returning(['event_seq', 'attempts', 'last_error', 'last_status'])
    .execute();
  for (const row of rows) {
    deps.logger.warn(
      {
        event: 'event_delivery_given_up',
        endpointId,
        eventSeq: row.event_seq,
        attempts: row.attempts,
        lastStatus: row.last_status,
        lastError: row.last_error,
      },
      'event delivery given up after its retry window: retry it once the endpoint answers',
    );
  }
  return rows.length;
}

interface Head {
  event_seq: string;
  attempts: number;
}

/**
 * The oldest pending delivery of each subject, if due, claimed by pushing its next attempt past this attempt's
 * timeout: a dispatcher that dies mid-send leaves it to be tried again then, and no other sends it meanwhile.
 */
async function claimHeads(deps: DispatchDeps, endpointId: string): Promise<Head[]> {
  const leaseMs = deps.settings.timeoutMs * 2;
  const result = await sql<Head>`
    with heads as (
      select distinct on (subject) endpoint_id, event_seq, next_attempt_at
      from webhook_deliveries
      where endpoint_id = ${endpointId}::uuid and status = 'pending'
      order by subject, event_seq
    ), due as (
      select endpoint_id, event_seq from heads where next_attempt_at <= now() order by event_seq limit ${HEADS_PER_RUN}
    )
    update webhook_deliveries d
    set next_attempt_at = now() + ${leaseMs} * interval '1 millisecond'
    from due
    where d.endpoint_id = due.endpoint_id and d.event_seq = due.event_seq
      and d.status = 'pending' and d.next_attempt_at <= now()
    returning d.event_seq::text as event_seq, d.attempts`.execute(deps.db);
  return result.rows.sort((a, b) => (BigInt(a.event_seq) < BigInt(b.event_seq) ? -1 : 1));
}

/** One attempt at one delivery; true when the receiver took it. */
async function attempt(deps: DispatchDeps, endpoint: Endpoint, head: Head): Promise<boolean> {
  const event = await readEvent(deps.db, head.event_seq);
  const body = JSON.stringify(toBody(event));
  const started = Date.now();
  const { statusCode, error } = await post(endpoint, event, body, deps.settings.timeoutMs);
  const outcome: Outcome = {
    ok: error === null,
    attempts: head.attempts + 1,
    statusCode,
    durationMs: Date.now() - started,
    stored: error === null ? null : (deps.scrub?.(error) ?? error),
  };
  await recordAttempt(deps, endpoint.id, head, outcome);
  logAttempt(deps.logger, endpoint.id, event, outcome);
  return outcome.ok;
}

type DeliveredEvent = Awaited<ReturnType<typeof readEvent>>;

interface Outcome {
  ok: boolean;
  attempts: number;
  statusCode: number | null;
  durationMs: number;
  /** The error as stored and logged (scrubbed), null when delivered. */
  stored: string | null;
}

async function readEvent(db: Kysely<Database>, seq: string) {
  return db
    .selectFrom('events')
    .select(['seq', 'id', 'type', 'subject', 'data', 'created_at'])
    .where('seq', '=', seq)
    .executeTakeFirstOrThrow();
}

/** The receiver's status code, and why the attempt failed (null when it answered 2xx). */
async function post(
  endpoint: Endpoint,
  event: DeliveredEvent,
  body: string,
  timeoutMs: number,
): Promise<{ statusCode: number | null; error: string | null }> {
  let statusCode: number | null = null;
  try {
    const response = await fetch(endpoint.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'payrail-events',
        [SIGNATURE_HEADER]: signEvent(endpoint.secret, body),
        'payrail-event-id': event.id,
        'payrail-event-type': event.type,
      },
      body,
      // A redirect would send the event somewhere nobody registered.
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
    statusCode = response.status;
    await response.body?.cancel().catch(() => undefined);
    return { statusCode, error: statusCode < 200 || statusCode > 299 ? `HTTP ${statusCode}` : null };
  } catch (caught) {
    return { statusCode, error: reason(caught) };
  }
}

/** The attempt's row and the delivery's new state, together. */
async function recordAttempt(deps: DispatchDeps, endpointId: string, head: Head, outcome: Outcome): Promise<void> {
  await deps.db.transaction().execute(async (trx) => {
    await trx
      .insertInto('webhook_attempts')
      .values({
        endpoint_id: endpointId,
        event_seq: head.event_seq,
        status_code: outcome.statusCode,
        error: outcome.stored,
        duration_ms: outcome.durationMs,
      })
      .execute();
    await trx
      .updateTable('webhook_deliveries')
      .set({
        attempts: outcome.attempts,
        first_attempt_at: sql`coalesce(first_attempt_at, now())`,
        last_attempt_at: sql`now()`,
        last_status: outcome.statusCode,
        last_error: outcome.stored,
        ...(outcome.ok
          ? { status: 'delivered', delivered_at: sql`now()` }
          : {
              next_attempt_at: sql`now() + ${retryDelayMs(outcome.attempts, deps.settings.retryMinDelayMs)} * interval '1 millisecond'`,
            }),
      })
      .where('endpoint_id', '=', endpointId)
      .where('event_seq', '=', head.event_seq)
      .where('status', '=', 'pending')
      // Still this run's claim: a later run that took the delivery over (after the lease) writes its own outcome.
      .where('attempts', '=', head.attempts)
      .execute();
  });
}

function logAttempt(logger: Logger, endpointId: string, event: DeliveredEvent, outcome: Outcome): void {
  const fields = {
    endpointId,
    eventId: event.id,
    eventType: event.type,
    attempts: outcome.attempts,
    statusCode: outcome.statusCode,
    durationMs: outcome.durationMs,
  };
  if (outcome.ok) logger.info({ event: 'event_delivered', ...fields }, 'event delivered');
  else logger.warn({ event: 'event_delivery_failed', ...fields, error: outcome.stored }, 'event delivery failed');
}

async function nextAttemptAt(db: Kysely<Database>, endpointId: string): Promise<Date | null> {
  const result = await sql<{ due: Date | null }>`
    select min(next_attempt_at) as due from (
      select distinct on (subject) next_attempt_at from webhook_deliveries
      where endpoint_id = ${endpointId}::uuid and status = 'pending'
      order by subject, event_seq) heads`.execute(db);
  return result.rows[0]?.due ?? null;
}

function reason(error: unknown): string {
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) return 'timeout';
  const cause = (error as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  // Never the URL: fetch's own messages name the problem, not the address.
  return typeof cause?.message === 'string' ? cause.message.slice(0, 200) : 'network error';
}

async function mapLimit<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  });
  await Promise.all(lanes);
  return results;
}
