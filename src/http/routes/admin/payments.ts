import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { applyPaymentAction, getPayment, PAYMENT_ACTIONS, PaymentActionRefused } from '../../../pipeline/index.ts';
import { actorOf, note, notFound, refused, type AdminDeps } from './shared.ts';

const paymentParams = z.object({
  paymentId: z.string().regex(/^[1-9][0-9]{0,19}$/, 'must be a NOWPayments payment id'),
});
const paymentActionParams = paymentParams.extend({ action: z.enum(PAYMENT_ACTIONS) }).strict();
// The exact review reason the person acted on (what the dashboard showed): the action is refused if it changed since.
const paymentActionBody = z.object({ note, expectedReason: z.string().min(1).max(2000).optional() }).strict();

/** GET /api/payments/:paymentId, and the decisions on a payment intake kept for review. */
export function paymentRoutes(app: FastifyInstance, deps: AdminDeps): void {
  app.get('/api/payments/:paymentId', async (request, reply) => {
    const { paymentId } = paymentParams.parse(request.params);
    return (await getPayment(deps.db, paymentId)) ?? notFound(reply, `payment ${paymentId}`);
  });

  // credit / ignore / reverse / recheck a payment intake kept for review; each only from a reason where it is safe.
  app.post('/api/payments/:paymentId/:action', async (request, reply) => {
    const { paymentId, action } = paymentActionParams.parse(request.params);
    const { note: text, expectedReason } = paymentActionBody.parse(request.body ?? {});
    const actor = actorOf(request);
    try {
      const result = await applyPaymentAction(deps.db, paymentId, action, actor, deps.intake, text, expectedReason);
      if (!result) return notFound(reply, `payment ${paymentId}`);
      request.log.warn(
        { event: 'payment_action', action, paymentId, actor, reason: result.reason, credited: result.credited },
        'payment in review decided by hand',
      );
      if (result.credited === 'threshold') deps.onThresholdCredit?.();
      return await getPayment(deps.db, paymentId);
    } catch (error) {
      if (error instanceof PaymentActionRefused) return refused(reply, action, `payment ${paymentId}`, error);
      throw error;
    }
  });
}
