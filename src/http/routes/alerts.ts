import type { FastifyInstance, onRequestAsyncHookHandler } from 'fastify';
import { z } from 'zod';
import { getAlert, listAlerts, resolveAlertByHand } from '../../alerts/index.ts';
import type { Db } from '../../db/index.ts';
import { route, shapes } from '../openapi/index.ts';
import { actorOf, listLimit, note, notFound } from './admin/shared.ts';
import { listRoute, oneRoute } from './reads.ts';

export interface AlertRouteDeps {
  db: Db;
  requireAdmin: onRequestAsyncHookHandler;
  /** ALERT_WEBHOOK_URL is set: a resolution by hand is sent too. */
  notify: boolean;
}

const listQuery = z
  .object({
    state: z.enum(['open', 'resolved', 'all']).default('open'),
    limit: listLimit,
  })
  .strict();
const alertParams = z
  .object({ alertId: z.string().regex(/^[1-9][0-9]{0,18}$/, 'must be an alert id such as 42') })
  .strict();
// The note goes into the audit log (jsonb): the admin actions' note, which refuses what jsonb cannot hold.
const resolveBody = z.object({ note }).strict();

/** GET /api/alerts and POST /api/alerts/:id/resolve, behind the admin token. */
// eslint-disable-next-line @typescript-eslint/require-await -- a Fastify plugin: registration waits for the promise it returns
export async function alertRoutes(app: FastifyInstance, deps: AlertRouteDeps): Promise<void> {
  // Before the body is read: without a valid token the answer is 401 whatever was sent.
  app.addHook('onRequest', deps.requireAdmin);

  listRoute(app, {
    path: '/api/alerts',
    tag: 'alerts',
    summary: 'Stored alerts, the last seen first',
    query: listQuery,
    key: 'alerts',
    item: shapes.alert,
    listed: 'The alerts.',
    badQuery: 'A bad `state` or `limit`, or an unknown parameter.',
    list: (query) => listAlerts(deps.db, query),
  });

  oneRoute(app, {
    path: '/api/alerts/:alertId',
    tag: 'alerts',
    summary: 'One alert',
    params: alertParams,
    id: 'alertId',
    noun: 'alert',
    item: shapes.alert,
    badId: 'Not an alert id.',
    get: (alertId) => getAlert(deps.db, alertId),
  });

  // Declared in full, unlike the reads (./reads.ts): a write's answers, refusals and log lines are its own.
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
      404: { description: 'No such alert.', schema: shapes.errorBody },
      409: {
        description: 'Already resolved: the alert as it is.',
        schema: z.object({ error: z.string(), alert: shapes.alert }),
      },
    },
    handler: async ({ params: { alertId }, body: { note } }, request, reply) => {
      const actor = actorOf(request);
      const result = await resolveAlertByHand(deps.db, alertId, actor, {
        notify: deps.notify,
        ...(note !== undefined && { note }),
      });
      if (result.outcome === 'not_found') return notFound(reply, `alert ${alertId}`);
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
