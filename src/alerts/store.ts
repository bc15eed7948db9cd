/**
 * Stored alerts. One open row per (rule, subject), guaranteed by the partial unique index: opening is an insert that
 * becomes a touch (last_seen_at, message, details) when the row is already open, so any number of concurrent raisers
 * and evaluators end with one open alert. Each opening and each resolution queues its webhook delivery in the same
 * transaction, and only when a webhook is configured.
 */
import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import { recordAudit } from '../db/index.ts';
import type { AlertSeverity, AlertsTable, Database } from '../db/index.ts';
import { enqueue } from '../jobs/index.ts';
import type { Logger } from '../log.ts';
import { STATE_RULES } from './rules.ts';
import { cleanDetails, cleanText, shortError } from './text.ts';

export interface AlertInput {
  /** snake_case, e.g. host_wallet_low. */
  rule: string;
  /** What the alert is about: a payout id, a task name, an asset. One open alert per rule and subject. */
  subject: string;
  severity: AlertSeverity;
  message: string;
  /** Evidence: ids, ages, amounts as strings. */
  details?: Record<string, unknown>;
}

export interface StoreOptions {
  /** ALERT_WEBHOOK_URL is set: queue a delivery for each opening and resolution. */
  notify: boolean;
}

export type AlertState = 'firing' | 'resolved';

/**
 * Attempts of one delivery before the alert_webhook_failed alert. graphile-worker waits exp(min(attempts, 10))
 * seconds after each failed attempt: e^1 + ... + e^9 = 12,817 s, about 3 h 34 min between the first attempt and the
 * tenth (plus each attempt's own time, up to WEBHOOK_TIMEOUT_MS, and any wait behind other deliveries).
 */
export const NOTIFY_MAX_ATTEMPTS = 10;

/**
 * Every delivery runs on this one named queue, one at a time: a receiver that hangs holds one worker slot (for
 * WEBHOOK_TIMEOUT_MS per attempt), never the slots payment jobs need, and deliveries leave in the order they were
 * queued. A failed attempt does not block the queue (the job waits for its retry while the next one runs), so a
 * retried delivery can still arrive after a later one: see deliverAlert.
 */
export const NOTIFY_QUEUE = 'alert_notify';

/** Rules whose alerts are never sent to the webhook (its own failure): neither their opening nor any resolution. */
function isSilentRule(rule: string): boolean {
  return STATE_RULES.some((r) => r.name === rule && r.notify === false);
}

export type AlertRow = Selectable<AlertsTable>;

export interface AlertView {
  readonly id: string;
  readonly rule: string;
  readonly subject: string;
  readonly severity: AlertSeverity;
  readonly message: string;
  readonly details: Record<string, unknown>;
  readonly state: 'open' | 'resolved';
  readonly firstSeenAt: string;
  readonly lastSeenAt: string;
  readonly resolvedAt: string | null;
  /** The admin who resolved it by hand; null when its condition cleared (or it went quiet) on its own. */
  readonly resolvedBy: string | null;
}

export function toView(row: AlertRow): AlertView {
  return {
    id: row.id,
    rule: row.rule,
    subject: row.subject,
    severity: row.severity,
    message: row.message,
    details: row.details,
    state: row.resolved_at === null ? 'open' : 'resolved',
    firstSeenAt: row.first_seen_at.toISOString(),
    lastSeenAt: row.last_seen_at.toISOString(),
    resolvedAt: row.resolved_at?.toISOString() ?? null,
    resolvedBy: row.resolved_by,
  };
}

/** Runs `work` in the caller's transaction, or in a new one. */
export function inTransaction<T>(db: Kysely<Database>, work: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
  return db.isTransaction ? work(db as Transaction<Database>) : db.transaction().execute(work);
}

export function enqueueNotify(trx: Transaction<Database>, alertId: string, state: AlertState): Promise<void> {
  // One delivery job per (alert, state), however often this is called; the receiver dedupes retries by the same key.
  return enqueue(
    trx,
    'alert_notify',
    { alertId, state },
    {
      jobKey: `alert_notify:${alertId}:${state}`,
      jobKeyMode: 'unsafe_dedupe',
      queueName: NOTIFY_QUEUE,
      maxAttempts: NOTIFY_MAX_ATTEMPTS,
    },
  );
}

export function cleanSubject(subject: string): string {
  return cleanText(subject, 200) || '-';
}

export interface TouchOptions extends StoreOptions {
  /**
   * Set (state alerts, by the evaluator): an open alert with the same severity, message and evidence is left as it
   * is unless its last_seen_at is at least this old. Unset (events): always touched, since an event alert's
   * last_seen_at decides when it goes quiet.
   */
  unchangedTouchEveryMs?: number;
}

/**
 * Opens the alert, or touches the open one. `opened` is true when this call created the row; null when an open alert
 * was left as it was (see unchangedTouchEveryMs).
 */
export async function openOrTouch(
  trx: Transaction<Database>,
  alert: AlertInput,
  options: TouchOptions,
): Promise<{ id: string; opened: boolean } | null> {
  const details = JSON.stringify(cleanDetails(alert.details));
  const every = options.unchangedTouchEveryMs;
  // Each touch writes a new row version and index entries (last_seen_at is indexed): skipped when nothing changed.
  const touch =
    every === undefined
      ? sql`true`
      : sql`alerts.severity is distinct from excluded.severity or alerts.message is distinct from excluded.message
        or alerts.details is distinct from excluded.details or alerts.last_seen_at <= now() - ${every} * interval '1 millisecond'`;
  const result = await sql<{ id: string; opened: boolean }>`
    insert into alerts (rule, subject, severity, message, details)
    values (${alert.rule}, ${cleanSubject(alert.subject)}, ${alert.severity}, ${cleanText(alert.message)}, ${details}::jsonb)
    on conflict (rule, subject) where resolved_at is null
    do update set last_seen_at = now(), severity = excluded.severity, message = excluded.message, details = excluded.details
      where ${touch}
    returning id::text as id, (xmax = 0) as opened`.execute(trx);
  const row = result.rows[0];
  if (!row) return null;
  if (row.opened && options.notify) await enqueueNotify(trx, row.id, 'firing');
  return row;
}

/** Resolves these alerts if still open (the condition cleared, or the event went quiet); returns those it resolved. */
export async function resolveOpen(
  trx: Transaction<Database>,
  ids: readonly string[],
  options: StoreOptions,
): Promise<AlertRow[]> {
  if (ids.length === 0) return [];
  const rows = await trx
    .updateTable('alerts')
    .set({ resolved_at: sql`now()` })
    .where('id', 'in', ids)
    .where('resolved_at', 'is', null)
    .returningAll()
    .execute();
  if (options.notify) for (const row of rows) await enqueueNotify(trx, row.id, 'resolved');
  return rows;
}

export interface RaiseOptions extends Partial<StoreOptions> {
  /** The caller's logger (its bound ids stay on the line). */
  logger: Logger;
  /** The caller wrote the alert's log line itself: store only. */
  logged?: boolean;
}

/**
 * An alert raised where something happened (a refusal, a failed check). It writes the structured log line operators
 * and tests look for ({event: 'alert', alert: rule, ...details}) and stores the alert. Given a transaction it writes
 * in it (and a failure is the caller's); given the pool, a failure to store is logged, never thrown: the alert was
 * logged, and the step that raised it must go on as it would have.
 */
export async function raiseAlert(db: Kysely<Database>, alert: AlertInput, options: RaiseOptions): Promise<void> {
  if (options.logged !== true) logAlert(options.logger, alert);
  const store = { notify: options.notify === true };
  if (db.isTransaction) {
    await openOrTouch(db as Transaction<Database>, alert, store);
    return;
  }
  try {
    await db.transaction().execute((trx) => openOrTouch(trx, alert, store));
  } catch (error) {
    options.logger.warn(
      { event: 'alert_store_failed', alert: alert.rule, err: shortError(error) },
      'the alert was logged but could not be stored',
    );
  }
}

/** Stores an event alert without logging it (the caller logged it its own way). */
export function storeEventAlert(db: Kysely<Database>, alert: AlertInput, options: StoreOptions): Promise<void> {
  return inTransaction(db, async (trx) => void (await openOrTouch(trx, alert, options)));
}

function logAlert(logger: Logger, alert: AlertInput): void {
  // Fields the logger already carries (a child's conversionId, say) are not written twice on the line.
  const bound = logger.bindings() as Record<string, unknown>;
  const fields: Record<string, unknown> = { event: 'alert', alert: alert.rule, subject: alert.subject };
  for (const [key, value] of Object.entries(alert.details ?? {})) if (bound[key] !== value) fields[key] = value;
  if (alert.severity === 'critical') logger.error(fields, alert.message);
  else logger.warn(fields, alert.message);
}

export type AlertListState = 'open' | 'resolved' | 'all';

export async function listAlerts(
  db: Kysely<Database>,
  filter: { state: AlertListState; limit: number },
): Promise<AlertView[]> {
  let query = db
    .selectFrom('alerts')
    .selectAll()
    .orderBy('last_seen_at', 'desc')
    .orderBy('id', 'desc')
    .limit(filter.limit);
  if (filter.state === 'open') query = query.where('resolved_at', 'is', null);
  if (filter.state === 'resolved') query = query.where('resolved_at', 'is not', null);
  return (await query.execute()).map(toView);
}

export async function getAlert(db: Kysely<Database>, id: string): Promise<AlertView | null> {
  const row = await db.selectFrom('alerts').selectAll().where('id', '=', id).executeTakeFirst();
  return row ? toView(row) : null;
}

export type HandResolution =
  | { outcome: 'resolved'; alert: AlertView }
  | { outcome: 'not_found' }
  | { outcome: 'already_resolved'; alert: AlertView };

/**
 * A person resolves an open alert: recorded with their name, in the audit log, and sent to the webhook (unless its
 * rule never is: alert_webhook_failed was never sent, and its resolution would go to the failing webhook). A state
 * alert resolved while its condition still holds stays resolved (acknowledged) until the condition clears once;
 * see evaluate.ts.
 */
export async function resolveAlertByHand(
  db: Kysely<Database>,
  id: string,
  actor: string,
  options: StoreOptions & { note?: string },
): Promise<HandResolution> {
  return inTransaction(db, async (trx) => {
    const row = await trx.selectFrom('alerts').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
    if (!row) return { outcome: 'not_found' };
    if (row.resolved_at !== null) return { outcome: 'already_resolved', alert: toView(row) };
    const resolved = await trx
      .updateTable('alerts')
      .set({ resolved_at: sql`now()`, resolved_by: actor })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    // As every hand action: its audit row in the transaction that carries it out.
    await recordAudit(trx, {
      actor,
      action: 'alert.resolve',
      subject: `alert:${id}`,
      details: {
        rule: row.rule,
        subject: row.subject,
        severity: row.severity,
        ...(options.note !== undefined && { note: options.note }),
      },
    });
    if (options.notify && !isSilentRule(row.rule)) await enqueueNotify(trx, id, 'resolved');
    return { outcome: 'resolved', alert: toView(resolved) };
  });
}
