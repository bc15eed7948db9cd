import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { applyPaymentAction, getPayment, PAYMENT_ACTIONS, PaymentActionRefused } from '../../../pipeline/index.ts';
import { route, shapes } from '../../openapi/index.ts';
import { oneRoute } from '../reads.ts';
import { actionAnswers } from './actions.ts';
import { actorOf, note, notFound, refused, type AdminDeps } from './shared.ts';

const paymentParams = z.object({
  paymentId: z.string().regex(/^[1-9][0-9]{0,19}$/, 'must be a NOWPayments payment id'),
});
const paymentActionParams = paymentParams.extend({ action: z.enum(PAYMENT_ACTIONS) }).strict();
// The exact review reason the person acted on (what the dashboard showed): the action is refused if it changed since.
const paymentActionBody = z.object({ note, expectedReason: z.string().min(1).max(2000).optional() }).strict();

/** GET /api/payments/:paymentId, and the decisions on a payment intake kept for review. */
export function paymentRoutes(app: FastifyInstance, deps: AdminDeps): void {
  oneRoute(app, {
    path: '/api/payments/:paymentId',
    tag: 'payments',
    summary: 'One payment',
    params: paymentParams,
    id: 'paymentId',
    noun: 'payment',
    item: shapes.payment,
    badId: 'Not a NOWPayments payment id.',
    get: (paymentId) => getPayment(deps.db, paymentId),
  });

  // credit / ignore / reverse / recheck a payment intake kept for review; each only from a reason where it is safe.
  // Declared here, unlike the reads (../reads.ts): a write's words, refusals and log lines are its own; only the form
  // of its answers is shared (./actions.ts).
  route(app, {
    method: 'POST',
    path: '/api/payments/:paymentId/:action',
    tag: 'payments',
    auth: 'admin',
    summary: 'Decide on a payment kept for review: credit, ignore, reverse or recheck',
    description:
      'Each action only from a review reason where it is safe (docs/architecture.md, Payments in review). ' +
      '`expectedReason`: the exact review reason acted on; when the payment holds another by then, 409 and nothing is done.',
    params: paymentActionParams,
    body: { schema: paymentActionBody, required: false },
    responses: actionAnswers('payment', shapes.payment, {
      badRequest: 'Not a payment id, an unknown action, or a bad body.',
      notSafe: 'Not safe from its review reason or where its money is, or its reason changed: the reason.',
    }),
    handler: async ({ params: { paymentId, action }, body: { note: text, expectedReason } }, request, reply) => {
      const actor = actorOf(request);
      try {
        const result = await applyPaymentAction(deps.db, paymentId, action, actor, deps.intake, text, expectedReason);
        if (!result) return notFound(reply, `payment ${paymentId}`);
        request.log.warn(
          { event: 'payment_action', action, paymentId, actor, reason: result.reason, credited: result.credited },
          'payment in review decided by hand',
        );
        if (result.credited === 'threshold' || result.toConversion) deps.onThresholdCredit?.();
        return await getPayment(deps.db, paymentId);
      } catch (error) {
        if (error instanceof PaymentActionRefused) return refused(reply, action, `payment ${paymentId}`, error);
        throw error;
      }
    },
  });
}
