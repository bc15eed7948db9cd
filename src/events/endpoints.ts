/**
 * Webhook endpoints the platform registers: a URL, the event types it wants, and a secret payrail generates and shows
 * once. An endpoint starts at "now": it receives the events committed after it was registered (older ones are in
 * GET /api/events). Deleting one stops its deliveries; its history stays readable.
 */
import { randomBytes } from 'node:crypto';
import { recordAudit } from '../db/index.ts';
import ipaddr from 'ipaddr.js';
import { sql, type Kysely } from 'kysely';
import type { Database, DeliveryState } from '../db/index.ts';
import { enqueueDispatch } from './dispatch-job.ts';
import { currentHorizon } from './read.ts';
import type { EventType } from './types.ts';

export interface EndpointView {
  readonly id: string;
  readonly url: string;
  readonly eventTypes: readonly string[];
  readonly createdBy: string;
  readonly createdAt: string;
  readonly deletedAt: string | null;
  readonly deliveries: { readonly pending: number; readonly delivered: number; readonly failed: number };
}

export class EndpointRefused extends Error {
  override name = 'EndpointRefused';
}

/** Where payrail itself answers: an endpoint there would deliver payrail's events to payrail. */
export interface SelfAddresses {
  /** Port of payrail's own HTTP server: any loopback or unspecified host on it is payrail. */
  readonly port: number;
  /** PUBLIC_URL, when set: its origin is payrail. */
  readonly publicUrl?: string | undefined;
}

/**
 * Ports fetch refuses to call (the WHATWG "bad ports": mail, FTP, IRC...): an endpoint on one could never be
 * delivered to.
 */
const BLOCKED_PORTS = new Set([
  1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109, 110,
  111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532,
  540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061,
  6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
]);

/** The host as a name or address, without the brackets of an IPv6 literal or a trailing root dot. */
function bareHost(url: URL): string {
  return url.hostname
    .toLowerCase()
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '');
}

/** This host names this machine: a loopback or unspecified address (IPv4-mapped ones too), or localhost. */
function isLocalHost(host: string): boolean {
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (!ipaddr.isValid(host)) return false;
  let address = ipaddr.parse(host);
  if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress())
    address = (address as ipaddr.IPv6).toIPv4Address();
  return ['loopback', 'unspecified'].includes(address.range());
}

/**
 * The URL as it will be called, or a refusal saying what is wrong with it. Names that resolve to payrail (a DNS name
 * of this machine) are not caught: the check is against what the URL says, and payrail's own routes would refuse an
 * unsigned event anyway.
 */
export function checkEndpointUrl(text: string, self: SelfAddresses): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new EndpointRefused('url: not a URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new EndpointRefused('url: must be http or https');
  // fetch refuses both: such an endpoint could never receive anything, and its credentials would be shown back.
  if (url.username !== '' || url.password !== '') throw new EndpointRefused('url: must not carry a user or password');
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
  if (BLOCKED_PORTS.has(port)) throw new EndpointRefused(`url: port ${port} is one HTTP clients refuse to call`);
  const host = bareHost(url);
  const publicHost = self.publicUrl === undefined ? undefined : bareHost(new URL(self.publicUrl));
  if ((isLocalHost(host) && port === self.port) || host === publicHost)
    throw new EndpointRefused('url: points at payrail itself');
  return url;
}

export async function createEndpoint(
  db: Kysely<Database>,
  input: { url: string; eventTypes: readonly EventType[]; actor: string },
): Promise<{ endpoint: EndpointView; secret: string }> {
  const secret = `whsec_${randomBytes(32).toString('base64url')}`;
  const eventTypes = [...new Set(input.eventTypes)].sort();
  const id = await db.transaction().execute(async (trx) => {
    const start = await currentHorizon(trx);
    const row = await trx
      .insertInto('webhook_endpoints')
      .values({
        url: input.url,
        event_types: eventTypes,
        secret,
        created_by: input.actor,
        cursor_txid: start.txid,
        cursor_seq: start.seq,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    await recordAudit(trx, {
      actor: input.actor,
      action: 'webhook_endpoint.create',
      subject: row.id,
      details: { url: input.url, eventTypes },
    });
    await enqueueDispatch(trx);
    return row.id;
  });
  return { endpoint: (await getEndpoint(db, id)) as EndpointView, secret };
}

export async function deleteEndpoint(db: Kysely<Database>, id: string, actor: string): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const row = await trx
      .updateTable('webhook_endpoints')
      .set({ deleted_at: sql`now()` })
      .where('id', '=', id)
      .where('deleted_at', 'is', null)
      .returning('url')
      .executeTakeFirst();
    if (!row) return false;
    await recordAudit(trx, { actor, action: 'webhook_endpoint.delete', subject: id, details: { url: row.url } });
    return true;
  });
}

const VIEW_COLUMNS = sql`e.id::text as id, e.url, e.event_types, e.created_by, e.created_at, e.deleted_at,
  (select count(*) from webhook_deliveries d where d.endpoint_id = e.id and d.status = 'pending')::int as pending,
  (select count(*) from webhook_deliveries d where d.endpoint_id = e.id and d.status = 'delivered')::int as delivered,
  (select count(*) from webhook_deliveries d where d.endpoint_id = e.id and d.status = 'failed')::int as failed`;

interface ViewRow {
  id: string;
  url: string;
  event_types: string[];
  created_by: string;
  created_at: Date;
  deleted_at: Date | null;
  pending: number;
  delivered: number;
  failed: number;
}

// Row to answer, field by field like the pipeline's views: alike in form only, each maps its own table.
function toView(row: ViewRow): EndpointView {
  return {
    id: row.id,
    url: row.url,
    eventTypes: row.event_types,
    createdBy: row.created_by,
    createdAt: row.created_at.toISOString(),
    deletedAt: row.deleted_at?.toISOString() ?? null,
    deliveries: { pending: row.pending, delivered: row.delivered, failed: row.failed },
  };
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function getEndpoint(db: Kysely<Database>, id: string): Promise<EndpointView | null> {
  if (!UUID_RE.test(id)) return null;
  const result = await sql<ViewRow>`select ${VIEW_COLUMNS} from webhook_endpoints e where e.id = ${id}::uuid`.execute(
    db,
  );
  const row = result.rows[0];
  return row ? toView(row) : null;
}

export async function listEndpoints(db: Kysely<Database>): Promise<EndpointView[]> {
  const result = await sql<ViewRow>`select ${VIEW_COLUMNS} from webhook_endpoints e
    order by e.deleted_at is not null, e.created_at desc`.execute(db);
  return result.rows.map(toView);
}

export interface AttemptView {
  readonly at: string;
  readonly statusCode: number | null;
  readonly error: string | null;
  readonly durationMs: number;
}

export interface DeliveryView {
  readonly eventId: string;
  readonly eventType: string;
  readonly subject: string;
  readonly status: DeliveryState;
  readonly attempts: number;
  readonly nextAttemptAt: string | null;
  readonly deliveredAt: string | null;
  readonly failedAt: string | null;
  readonly lastStatus: number | null;
  readonly lastError: string | null;
  readonly recentAttempts: readonly AttemptView[];
}

/** The endpoint's deliveries, newest event first, each with its last attempts. */
export async function listDeliveries(
  db: Kysely<Database>,
  endpointId: string,
  options: { status?: DeliveryState | undefined; limit: number },
): Promise<DeliveryView[] | null> {
  if ((await getEndpoint(db, endpointId)) === null) return null;
  const rows = await db
    .selectFrom('webhook_deliveries as d')
    .innerJoin('events as e', 'e.seq', 'd.event_seq')
    .select([
      'd.event_seq',
      'e.id as event_id',
      'e.type',
      'd.subject',
      'd.status',
      'd.attempts',
      'd.next_attempt_at',
      'd.delivered_at',
      'd.failed_at',
      'd.last_status',
      'd.last_error',
    ])
    .where('d.endpoint_id', '=', endpointId)
    .$if(options.status !== undefined, (q) => q.where('d.status', '=', options.status as DeliveryState))
    .orderBy('d.event_seq', 'desc')
    .limit(options.limit)
    .execute();
  const attempts =
    rows.length === 0
      ? []
      : await db
          .selectFrom('webhook_attempts')
          .select(['event_seq', 'attempted_at', 'status_code', 'error', 'duration_ms'])
          .where('endpoint_id', '=', endpointId)
          .where(
            'event_seq',
            'in',
            rows.map((r) => r.event_seq),
          )
          .orderBy('id', 'desc')
          .execute();
  return rows.map((r) => ({
    eventId: r.event_id,
    eventType: r.type,
    subject: r.subject,
    status: r.status,
    attempts: r.attempts,
    nextAttemptAt: r.status === 'pending' ? r.next_attempt_at.toISOString() : null,
    deliveredAt: r.delivered_at?.toISOString() ?? null,
    failedAt: r.failed_at?.toISOString() ?? null,
    lastStatus: r.last_status,
    lastError: r.last_error,
    recentAttempts: attempts
      .filter((a) => a.event_seq === r.event_seq)
      .slice(0, 5)
      .map((a) => ({
        at: a.attempted_at.toISOString(),
        statusCode: a.status_code,
        error: a.error,
        durationMs: a.duration_ms,
      })),
  }));
}

/**
 * A delivery given up after the retry window goes back to pending, first in its subject's line again: the way out
 * once the receiver is fixed. Refused (false) for a delivery that is not failed or an endpoint that was deleted.
 */
export async function retryDelivery(
  db: Kysely<Database>,
  input: { endpointId: string; eventId: string; actor: string },
): Promise<'retried' | 'not_found' | 'not_failed'> {
  if (!UUID_RE.test(input.endpointId) || !UUID_RE.test(input.eventId)) return 'not_found';
  return db.transaction().execute(async (trx) => {
    const found = await trx
      .selectFrom('webhook_deliveries as d')
      .innerJoin('events as e', 'e.seq', 'd.event_seq')
      .innerJoin('webhook_endpoints as w', 'w.id', 'd.endpoint_id')
      .select(['d.event_seq', 'd.status', 'w.deleted_at'])
      .where('d.endpoint_id', '=', input.endpointId)
      .where('e.id', '=', input.eventId)
      .forUpdate('d')
      .executeTakeFirst();
    if (!found || found.deleted_at !== null) return 'not_found';
    if (found.status !== 'failed') return 'not_failed';
    await trx
      .updateTable('webhook_deliveries')
      // A fresh window and backoff: the receiver is meant to be fixed now.
      .set({ status: 'pending', failed_at: null, next_attempt_at: sql`now()`, attempts: 0, first_attempt_at: null })
      .where('endpoint_id', '=', input.endpointId)
      .where('event_seq', '=', found.event_seq)
      .where('status', '=', 'failed')
      .execute();
    await recordAudit(trx, {
      actor: input.actor,
      action: 'webhook_delivery.retry',
      subject: `${input.endpointId}:${input.eventId}`,
      details: {},
    });
    await enqueueDispatch(trx);
    return 'retried';
  });
}
