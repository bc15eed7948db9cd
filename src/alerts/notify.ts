/**
 * The alert webhook: one signed JSON POST per alert change (firing, resolved) to ALERT_WEBHOOK_URL, from the
 * alert_notify job queued with that change. A non-2xx answer, a timeout or a network error fails the job, and the
 * queue retries it with its backoff; a delivery can therefore arrive twice, and carries a stable delivery id
 * (x-payrail-delivery: <alertId>:<state>) for the receiver to drop the repeat. Deliveries run one at a time on their
 * own queue (NOTIFY_QUEUE), and an alert resolved before its firing delivery went out is sent as resolved only.
 *
 * Signature: x-payrail-signature = "sha256=" + hex HMAC-SHA256(ALERT_WEBHOOK_SECRET, timestamp + "." + body), with
 * the unix-seconds timestamp in x-payrail-timestamp (a receiver refuses old ones, so a captured request cannot be
 * replayed later).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Db } from '../db/index.ts';
import type { Logger } from '../log.ts';
import { toView, type AlertState } from './store.ts';

export interface WebhookSettings {
  /** From configuration only: nothing else is ever a destination. */
  url: string;
  secret: string;
  timeoutMs: number;
}

/** Long enough for a slow receiver, short enough that a hung one does not hold its queue's one slot for long. */
export const WEBHOOK_TIMEOUT_MS = 10_000;
/** How old a signed timestamp verifyAlertSignature accepts by default. */
const DEFAULT_TOLERANCE_SECONDS = 300;

export interface AlertPayload {
  id: string;
  rule: string;
  subject: string;
  severity: string;
  message: string;
  details: Record<string, unknown>;
  state: AlertState;
  firstSeenAt: string;
  lastSeenAt: string;
  resolvedAt: string | null;
}

export function signAlertBody(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`, 'utf8').digest('hex')}`;
}

/** For receivers (and tests): the signature matches the raw body and timestamp, and the timestamp is recent. */
export function verifyAlertSignature(input: {
  secret: string;
  body: string;
  timestamp: string | undefined;
  signature: string | undefined;
  toleranceSeconds?: number;
  nowSeconds?: number;
}): boolean {
  const { timestamp, signature } = input;
  if (timestamp === undefined || signature === undefined || !/^[0-9]{1,12}$/.test(timestamp)) return false;
  const now = input.nowSeconds ?? Math.floor(Date.now() / 1_000);
  if (Math.abs(now - Number(timestamp)) > (input.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS)) return false;
  const expected = Buffer.from(signAlertBody(input.secret, timestamp, input.body), 'utf8');
  const given = Buffer.from(signature, 'utf8');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export interface NotifyDeps {
  db: Db;
  logger: Logger;
  /** Unset: ALERT_WEBHOOK_URL is not configured (a job queued while it was is dropped). */
  webhook?: WebhookSettings | undefined;
  /** Removes secret values from the body before it leaves (details may quote an outside error). */
  scrub?: ((text: string) => string) | undefined;
}

export class WebhookDeliveryError extends Error {
  override name = 'WebhookDeliveryError';
}

/** alert_notify: throws on any failure, so the queue retries. */
export async function deliverAlert(deps: NotifyDeps, alertId: string, state: AlertState): Promise<void> {
  const log = deps.logger.child({ alertId, state });
  if (!deps.webhook) {
    log.warn({ event: 'alert_notify_dropped' }, 'ALERT_WEBHOOK_URL is no longer configured: delivery dropped');
    return;
  }
  const row = await deps.db.selectFrom('alerts').selectAll().where('id', '=', alertId).executeTakeFirst();
  if (!row) {
    log.warn({ event: 'alert_notify_dropped' }, 'alert not found: delivery dropped');
    return;
  }
  // An alert already resolved is not sent as firing. Its resolution queued its own delivery in the same transaction,
  // which is waiting, running or done (a firing delivery that failed waits for its retry while later ones go), and
  // carries the same evidence. Sent after the resolution, the firing would leave the alert open on the receiver's
  // side for ever; sent before it, it pages someone for what is already over. The only resolutions without a
  // delivery are those made while no webhook was configured, or of a rule never sent: silence suits those too.
  if (state === 'firing' && row.resolved_at !== null) {
    log.info(
      { event: 'alert_notify_dropped', rule: row.rule, subject: row.subject },
      'alert already resolved: firing delivery dropped, the resolution is sent instead',
    );
    return;
  }
  const view = toView(row);
  const payload: AlertPayload = {
    id: view.id,
    rule: view.rule,
    subject: view.subject,
    severity: view.severity,
    message: view.message,
    details: view.details,
    state,
    firstSeenAt: view.firstSeenAt,
    lastSeenAt: view.lastSeenAt,
    resolvedAt: view.resolvedAt,
  };
  const json = JSON.stringify(payload);
  const body = deps.scrub ? deps.scrub(json) : json;
  const timestamp = String(Math.floor(Date.now() / 1_000));
  let response: Response;
  try {
    response = await fetch(deps.webhook.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-payrail-timestamp': timestamp,
        'x-payrail-signature': signAlertBody(deps.webhook.secret, timestamp, body),
        'x-payrail-delivery': `${alertId}:${state}`,
      },
      body,
      // A redirect would send the alert somewhere that is not configuration.
      redirect: 'manual',
      signal: AbortSignal.timeout(deps.webhook.timeoutMs),
    });
  } catch (error) {
    // Never the URL in the message: it may carry a token, and the message is stored with the job.
    throw new WebhookDeliveryError(`alert webhook unreachable: ${reason(error)}`);
  }
  await response.body?.cancel().catch(() => undefined);
  if (response.status < 200 || response.status > 299)
    throw new WebhookDeliveryError(`alert webhook answered HTTP ${response.status}`);
  log.info(
    { event: 'alert_notified', rule: view.rule, subject: view.subject, status: response.status },
    'alert sent to the webhook',
  );
}

function reason(error: unknown): string {
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) return 'timeout';
  const cause = (error as { cause?: { code?: unknown } } | null)?.cause;
  return typeof cause?.code === 'string' ? cause.code : 'network error';
}
