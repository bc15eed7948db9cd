import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Db } from '../../db/index.ts';
import type { Logger } from '../../log.ts';
import { PAYMENT_STATUSES, readIpn } from '../../integrations/nowpayments/index.ts';
import { observeIntakeGroup } from '../../metrics/intake.ts';
import {
  createIntakeBatcher,
  recordIpn,
  type IntakeBatcher,
  type IntakeOutcome,
  type IntakeResult,
  type IntakeSettings,
} from '../../pipeline/index.ts';
import { addressMatcher, sourceKey, type AddressRange } from '../net.ts';
import { described, route, shapes } from '../openapi/index.ts';
import { createRateLimiter } from '../rate-limit.ts';

export interface WebhookDeps {
  db: Db;
  ipnSecret: string;
  intake: IntakeSettings;
  /** ALERT_WEBHOOK_URL is set: intake's alerts (a payment kept for review) are sent there too. */
  notifyAlerts?: boolean;
  bodyLimitBytes: number;
  /** Called after a threshold channel's credit committed: asks for a conversion check soon. */
  onThresholdCredit?: () => void;
  /** Requests per minute per source address, in this process. Absent or 0: no limit. */
  rateLimitPerMinute?: number;
  /** Sources IPNs are taken from (request.ip: the client behind a trusted proxy). Absent or empty: any. */
  allowedSources?: readonly AddressRange[];
  /** Told of every answer, refusals included: its HTTP status and, when intake took the IPN, intake's outcome (metrics). */
  onAnswered?: (answer: { status: number; outcome: IntakeOutcome | null }) => void;
}

// NOWPayments sends amounts as JSON numbers; they are read from the raw text without rounding (never as floats).
const numberOrText = z.union([z.number(), z.string()]);
/**
 * What the IPN reader takes, for the document: the body is read by readIpn after the signature over its bytes, with
 * IPN_SCHEMA (whose JSON numbers are lossless objects no JSON Schema can show). A unit test holds the two to the same
 * fields, each required or not alike.
 */
export const IPN_DOCUMENTED_BODY = z.looseObject({
  payment_id: numberOrText,
  invoice_id: numberOrText.nullish(),
  parent_payment_id: numberOrText.nullish(),
  payment_status: z.enum(PAYMENT_STATUSES),
  order_id: described('PGP-{userId}|{channelId}: the Telegram user and the channel paid into.', z.string()),
  pay_currency: z.string(),
  pay_amount: numberOrText,
  actually_paid: numberOrText,
  price_amount: numberOrText,
  price_currency: z.string(),
  outcome_amount: numberOrText,
  outcome_currency: z.string(),
});
const ipnAnswer = z.object({
  paymentId: z.string(),
  status: z.enum(PAYMENT_STATUSES),
  outcome: z.enum(['recorded', 'advanced', 'unchanged', 'review']),
  reviewReason: z.string().optional(),
});

/**
 * POST /webhooks/nowpayments. The raw body is kept as text (the signature covers it and amounts are parsed from it
 * losslessly), so this scope replaces the JSON parser for every content type.
 */
// eslint-disable-next-line @typescript-eslint/require-await -- a Fastify plugin: registration waits for the promise it returns
export async function webhookRoutes(app: FastifyInstance, deps: WebhookDeps): Promise<void> {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: deps.bodyLimitBytes }, (_request, body, done) =>
    done(null, body),
  );
  // Reported from onResponse, the one place every answer passes: the guard's 403 and 429 and the body limit's 413
  // never reach the handler.
  const outcomes = new WeakMap<FastifyRequest, IntakeOutcome>();
  // The IPNs that arrive while one is in the database go together in the next call (group commit). Requests wait for
  // their group, and the server's close waits for its requests, so nothing is left queued when the pool closes.
  const batcher = createIntakeBatcher(deps.db, { logger: app.log as Logger, onGroup: observeIntakeGroup });
  reportAnswers(app, deps, outcomes);
  ipnRoute(app, deps, { batcher, outcomes });
}

/** What the scope's requests share: the group commit, and each request's intake outcome for its report. */
interface IpnScope {
  batcher: IntakeBatcher;
  outcomes: WeakMap<FastifyRequest, IntakeOutcome>;
}

function reportAnswers(app: FastifyInstance, deps: WebhookDeps, outcomes: IpnScope['outcomes']): void {
  const onAnswered = deps.onAnswered;
  if (onAnswered)
    app.addHook('onResponse', async (request, reply) =>
      onAnswered({ status: reply.statusCode, outcome: outcomes.get(request) ?? null }),
    );
}

const ipnAnswers = {
  200: { description: 'Recorded, advanced, or unchanged (a repeat or an earlier status).', schema: ipnAnswer },
  202: { description: 'Kept for review: a person decides (`reviewReason`).', schema: ipnAnswer },
  400: { description: 'Malformed: not JSON, not an object, or a field that is wrong.', schema: shapes.errorBody },
  401: { description: 'No x-nowpayments-sig, or a signature that does not match.', schema: shapes.errorBody },
  403: { description: 'The source address is not in NOWPAYMENTS_ALLOWED_IPS.', schema: shapes.errorBody },
  413: { description: 'Larger than WEBHOOK_BODY_LIMIT_BYTES.', schema: shapes.errorBody },
  429: {
    description: 'The source is over WEBHOOK_RATE_LIMIT.',
    schema: shapes.errorBody,
    headers: { 'retry-after': 'Seconds to wait.' },
  },
};

// Its answers resemble the admin routes' only in form: the IPN's statuses, guard and raw body are its own.
function ipnRoute(app: FastifyInstance, deps: WebhookDeps, scope: IpnScope): void {
  route(app, {
    method: 'POST',
    path: '/webhooks/nowpayments',
    tag: 'intake',
    auth: 'ipn',
    summary: "NOWPayments' payment notification (IPN)",
    rawBody: {
      mediaType: 'application/json',
      description:
        'The IPN as NOWPayments sends it; its signature covers these bytes, and amounts are read from the text exactly.',
      schema: IPN_DOCUMENTED_BODY,
    },
    responses: ipnAnswers,
    // The source allowlist, then the rate limit, before the body is read; the signature, then the fields, after.
    onRequest: sourceGuard(deps),
    handler: async (_input, request, reply) => takeIpn(deps, scope, request, reply),
  });
}

/** Signature and fields checked (readIpn: 401 or 400, logged), then recorded: 200, or 202 when kept for review. */
async function takeIpn(deps: WebhookDeps, scope: IpnScope, request: FastifyRequest, reply: FastifyReply) {
  const raw = typeof request.body === 'string' ? request.body : '';
  const signature = request.headers['x-nowpayments-sig'];
  const reading = readIpn(raw, typeof signature === 'string' ? signature : undefined, deps.ipnSecret);
  if (!reading.ok) {
    request.log.warn({ event: 'ipn_rejected', status: reading.status, reason: reading.error }, 'IPN rejected');
    return reply.code(reading.status).send({ error: reading.error });
  }
  // The app's loggerInstance is pino, so each request's logger is a pino child (fastify types it more loosely).
  const result = await recordIpn(
    deps.db,
    reading.ipn,
    deps.intake,
    { logger: request.log as Logger, notify: deps.notifyAlerts === true },
    scope.batcher,
  );
  scope.outcomes.set(request, result.outcome);
  if (result.credited === 'threshold') deps.onThresholdCredit?.();
  logTaken(request.log, result);
  return reply.code(result.outcome === 'review' ? 202 : 200).send({
    paymentId: result.paymentId,
    status: result.status,
    outcome: result.outcome,
    ...(result.reviewReason && { reviewReason: result.reviewReason }),
  });
}

/** One kept for review is a warning: a person has to decide. */
function logTaken(log: FastifyBaseLogger, result: IntakeResult): void {
  const line = {
    event: 'ipn_accepted',
    paymentId: result.paymentId,
    status: result.status,
    outcome: result.outcome,
    credited: result.credited,
    confirming: result.confirming,
    reviewReason: result.reviewReason,
  };
  if (result.outcome === 'review') log.warn(line, 'IPN kept for review');
  else log.info(line, 'IPN accepted');
}

/**
 * Runs before the body is read: a source outside the allowlist gets 403, a source over its rate 429 with
 * Retry-After; neither reaches the database. The allowlist comes first, so sources it refuses never take a place in
 * the limiter's memory. Refusals are logged once per source and burst (a flood must not become a log flood).
 */
function sourceGuard(deps: WebhookDeps) {
  const allowed =
    deps.allowedSources !== undefined && deps.allowedSources.length > 0
      ? addressMatcher(deps.allowedSources)
      : undefined;
  const limit = deps.rateLimitPerMinute ?? 0;
  const limiter = limit > 0 ? createRateLimiter({ perMinute: limit }) : undefined;
  const refusalLogGate = createRateLimiter({ perMinute: 1 });
  return async function guard(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
    const source = request.ip;
    if (allowed && !allowed(source)) {
      if (refusalLogGate.take(sourceKey(source)).allowed) {
        // A forwarded-for header that was not believed is the usual cause behind a proxy: TRUSTED_PROXY unset or wrong.
        const forwardedIgnored =
          request.headers['x-forwarded-for'] !== undefined && source === request.socket.remoteAddress;
        request.log.warn(
          { event: 'ipn_source_refused', source, forwardedIgnored },
          'IPN from an address outside NOWPAYMENTS_ALLOWED_IPS refused',
        );
      }
      return reply.code(403).send({ error: 'source address not allowed' });
    }
    if (limiter) {
      const decision = limiter.take(sourceKey(source));
      if (!decision.allowed) {
        if (decision.first)
          request.log.warn(
            { event: 'ipn_rate_limited', source: sourceKey(source), perMinute: limit },
            'IPN source over WEBHOOK_RATE_LIMIT',
          );
        return reply
          .code(429)
          .header('retry-after', String(decision.retryAfterSeconds))
          .send({ error: `too many requests: at most ${limit} per minute per source` });
      }
    }
    return undefined;
  };
}
