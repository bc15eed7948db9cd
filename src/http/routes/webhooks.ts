import type { FastifyInstance } from 'fastify';
import type { Db } from '../../db/index.ts';
import { readIpn } from '../../integrations/nowpayments/index.ts';
import { recordIpn, type IntakeSettings } from '../../pipeline/index.ts';

export interface WebhookDeps {
  db: Db;
  ipnSecret: string;
  intake: IntakeSettings;
  bodyLimitBytes: number;
  /** Called after a threshold channel's credit committed: asks for a conversion check soon. */
  onThresholdCredit?: () => void;
}

/**
 * POST /webhooks/nowpayments. The raw body is kept as text (the signature covers it and amounts are parsed from it
 * losslessly), so this scope replaces the JSON parser for every content type.
 */
export async function webhookRoutes(app: FastifyInstance, deps: WebhookDeps): Promise<void> {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: deps.bodyLimitBytes }, (_request, body, done) => done(null, body));

  app.post('/webhooks/nowpayments', async (request, reply) => {
    const raw = typeof request.body === 'string' ? request.body : '';
    const signature = request.headers['x-nowpayments-sig'];
    const reading = readIpn(raw, typeof signature === 'string' ? signature : undefined, deps.ipnSecret);
    if (!reading.ok) {
      request.log.warn({ event: 'ipn_rejected', status: reading.status, reason: reading.error }, 'IPN rejected');
      return reply.code(reading.status).send({ error: reading.error });
    }
    const result = await recordIpn(deps.db, reading.ipn, deps.intake);
    if (result.credited === 'threshold') deps.onThresholdCredit?.();
    const log = { event: 'ipn_accepted', paymentId: result.paymentId, status: result.status, outcome: result.outcome, credited: result.credited, reviewReason: result.reviewReason };
    if (result.outcome === 'review') request.log.warn(log, 'IPN kept for review');
    else request.log.info(log, 'IPN accepted');
    return reply.code(result.outcome === 'review' ? 202 : 200).send({
      paymentId: result.paymentId,
      status: result.status,
      outcome: result.outcome,
      ...(result.reviewReason && { reviewReason: result.reviewReason }),
    });
  });
}
