import type { FastifyInstance, onRequestAsyncHookHandler } from 'fastify';
import { z } from 'zod';
import { getAlert, listAlerts, resolveAlertByHand } from '../../alerts/index.ts';
import type { Db } from '../../db/index.ts';
import { route, shapes } from '../openapi/index.ts';

export interface AlertRouteDeps {
  db: Db;
  requireAdmin: onRequestAsyncHookHandler;
  /** ALERT_WEBHOOK_URL is set: a resolution by hand is sent too. */
  notify: boolean;
}

const listQuery = z
  .object({
    state: z.enum(['open', 'resolved', 'all']).default('open'),
    limit: z.coerce.number().int().min(1).max(500).default(100),
  })
  .strict();
const alertParams = z
  .object({ alertId: z.string().regex(/^[1-9][0-9]{0,18}$/, 'must be an alert id such as 42') })
  .strict();
// The note goes into the audit log (jsonb): no U+0000, no unpaired surrogate.
// eslint-disable-next-line no-control-regex -- U+0000 is matched on purpose: PostgreSQL text and jsonb cannot hold it
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const resolveBody = z
  .object({
    note: z
      .string()
      .trim()
      .min(1)
      .max(500)
      .refine((s) => !UNSTORABLE.test(s), 'must not contain NUL or unpaired surrogate characters')
      .optional(),
  })
  .strict();

/** GET /api/alerts and POST /api/alerts/:id/resolve, behind the admin token. */
// eslint-disable-next-line @typescript-eslint/require-await -- a Fastify plugin: registration waits for the promise it returns
export async function alertRoutes(app: FastifyInstance, deps: AlertRouteDeps): Promise<void> {
  // Before the body is read: without a valid token the answer is 401 whatever was sent.
  app.addHook('onRequest', deps.requireAdmin);

  const notFound = { description: 'No such alert.', schema: shapes.errorBody };
  route(app, {
    method: 'GET',
    path: '/api/alerts',
    tag: 'alerts',
    auth: 'admin',
    summary: 'Stored alerts, the last seen first',
    query: listQuery,
    responses: {
      200: { description: 'The alerts.', schema: z.object({ alerts: z.array(shapes.alert) }) },
      400: { description: 'A bad `state` or `limit`, or an unknown parameter.', schema: shapes.errorBody },
    },
    handler: async ({ query }) => ({ alerts: await listAlerts(deps.db, query) }),
  });

  route(app, {
    method: 'GET',
    path: '/api/alerts/:alertId',
    tag: 'alerts',
    auth: 'admin',
    summary: 'One alert',
    params: alertParams,
    responses: {
      200: { description: 'The alert.', schema: shapes.alert },
      400: { description: 'Not an alert id.', schema: shapes.errorBody },
      404: notFound,
    },
    handler: async ({ params: { alertId } }, _request, reply) => {
      const alert = await getAlert(deps.db, alertId);
      if (!alert) return reply.code(404).send({ error: `alert ${alertId} not found` });
      return alert;
    },
  });

  route(app, {
    method: 'POST',
    path: '/api/alerts/:alertId/resolve',
    tag: 'alerts',
    auth: 'admin',
    summary: 'Resolve (acknowledge) an alert by hand; recorded in the audit log',
    params: alertParams,
    body: { schema: resolveBody, required: false, description: 'An optional note for the audit log.' },
    responses: {
      200: { description: 'The alert, resolved.', schema: shapes.alert },
      400: { description: 'Not an alert id, or a bad note.', schema: shapes.errorBody },
      404: notFound,
      409: {
        description: 'Already resolved: the alert as it is.',
        schema: z.object({ error: z.string(), alert: shapes.alert }),
      },
    },
    handler: async ({ params: { alertId }, body: { note } }, request, reply) => {
      const actor = request.actor ?? 'unknown';
      const result = await resolveAlertByHand(deps.db, alertId, actor, {
        notify: deps.notify,
        ...(note !== undefined && { note }),
      });
      if (result.outcome === 'not_found') return reply.code(404).send({ error: `alert ${alertId} not found` });
      if (result.outcome === 'already_resolved')
        return reply.code(409).send({ error: `alert ${alertId} is already resolved`, alert: result.alert });
      request.log.warn(
        { event: 'alert_resolved_by_hand', alertId, rule: result.alert.rule, subject: result.alert.subject, actor },
        'alert resolved by hand',
      );
      return result.alert;
    },
  });
}
