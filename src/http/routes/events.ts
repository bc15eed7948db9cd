import type { FastifyInstance, onRequestAsyncHookHandler } from 'fastify';
import { z } from 'zod';
import { DELIVERY_STATES } from '../../db/schema.ts';
import type { Db } from '../../db/index.ts';
import {
  checkEndpointUrl,
  createEndpoint,
  decodeCursor,
  deleteEndpoint,
  encodeCursor,
  EndpointRefused,
  EVENT_TYPES,
  getEndpoint,
  listDeliveries,
  listEndpoints,
  readEvents,
  retryDelivery,
  START,
  toBody,
  type SelfAddresses,
} from '../../events/index.ts';

export interface EventRouteDeps {
  db: Db;
  requireAdmin: onRequestAsyncHookHandler;
  self: SelfAddresses;
}

const eventType = z.enum(EVENT_TYPES);
const eventsQuery = z
  .object({
    after: z
      .string()
      .refine((s) => decodeCursor(s) !== null, 'must be a cursor from an earlier answer')
      .optional(),
    type: z
      .string()
      .transform((s) => s.split(','))
      .pipe(z.array(eventType).min(1))
      .optional(),
    limit: z.coerce.number().int().min(1).max(1_000).default(100),
  })
  .strict();
const endpointBody = z
  .object({
    url: z.string().min(1).max(2_048),
    eventTypes: z
      .array(eventType)
      .min(1)
      .max(EVENT_TYPES.length * 2),
  })
  .strict();
const endpointParams = z.object({ endpointId: z.uuid('must be an endpoint id') }).strict();
const deliveryParams = z.object({
  endpointId: z.uuid('must be an endpoint id'),
  eventId: z.uuid('must be an event id'),
});
const deliveriesQuery = z
  .object({ status: z.enum(DELIVERY_STATES).optional(), limit: z.coerce.number().int().min(1).max(500).default(100) })
  .strict();

/** GET /api/events and the webhook endpoints, behind the admin token. */
// eslint-disable-next-line @typescript-eslint/require-await -- a Fastify plugin: registration waits for the promise it returns
export async function eventRoutes(app: FastifyInstance, deps: EventRouteDeps): Promise<void> {
  app.addHook('onRequest', deps.requireAdmin);

  // Pulling (and replaying: start again from any earlier cursor). `next` is where to continue; with no new events it
  // is the cursor given, so a poller keeps asking with it.
  app.get('/api/events', async (request) => {
    const query = eventsQuery.parse(request.query);
    const after = query.after === undefined ? START : (decodeCursor(query.after) ?? START);
    const rows = await readEvents(deps.db, { after, types: query.type, limit: query.limit });
    const last = rows[rows.length - 1];
    return { events: rows.map(toBody), next: encodeCursor(last ? { txid: last.txid, seq: last.seq } : after) };
  });

  app.post('/api/webhook-endpoints', async (request, reply) => {
    const body = endpointBody.parse(request.body);
    let url: URL;
    try {
      // The port actually listened on (PORT=0 picks one at start).
      const address = app.server.address();
      const port = typeof address === 'object' && address !== null ? address.port : deps.self.port;
      url = checkEndpointUrl(body.url, { ...deps.self, port });
    } catch (error) {
      if (error instanceof EndpointRefused) return reply.code(400).send({ error: error.message });
      throw error;
    }
    const created = await createEndpoint(deps.db, {
      url: url.toString(),
      eventTypes: body.eventTypes,
      actor: request.actor ?? 'unknown',
    });
    request.log.info(
      { event: 'webhook_endpoint_created', endpointId: created.endpoint.id, eventTypes: created.endpoint.eventTypes },
      'webhook endpoint registered',
    );
    // The secret is in this answer only: it is never shown again.
    return reply.code(201).send({ ...created.endpoint, secret: created.secret });
  });

  app.get('/api/webhook-endpoints', async () => ({ endpoints: await listEndpoints(deps.db) }));

  app.get('/api/webhook-endpoints/:endpointId', async (request, reply) => {
    const { endpointId } = endpointParams.parse(request.params);
    const endpoint = await getEndpoint(deps.db, endpointId);
    return endpoint ?? reply.code(404).send({ error: `webhook endpoint ${endpointId} not found` });
  });

  app.delete('/api/webhook-endpoints/:endpointId', async (request, reply) => {
    const { endpointId } = endpointParams.parse(request.params);
    if (!(await deleteEndpoint(deps.db, endpointId, request.actor ?? 'unknown')))
      return reply.code(404).send({ error: `webhook endpoint ${endpointId} not found` });
    request.log.info({ event: 'webhook_endpoint_deleted', endpointId }, 'webhook endpoint deleted');
    return { deleted: true };
  });

  app.get('/api/webhook-endpoints/:endpointId/deliveries', async (request, reply) => {
    const { endpointId } = endpointParams.parse(request.params);
    const query = deliveriesQuery.parse(request.query);
    const deliveries = await listDeliveries(deps.db, endpointId, query);
    return deliveries === null
      ? reply.code(404).send({ error: `webhook endpoint ${endpointId} not found` })
      : { deliveries };
  });

  app.post('/api/webhook-endpoints/:endpointId/deliveries/:eventId/retry', async (request, reply) => {
    const { endpointId, eventId } = deliveryParams.parse(request.params);
    const result = await retryDelivery(deps.db, { endpointId, eventId, actor: request.actor ?? 'unknown' });
    if (result === 'not_found')
      return reply.code(404).send({ error: `delivery of event ${eventId} to endpoint ${endpointId} not found` });
    if (result === 'not_failed')
      return reply.code(409).send({ error: `cannot retry the delivery of event ${eventId}: it has not failed` });
    request.log.info({ event: 'event_delivery_retried', endpointId, eventId }, 'failed event delivery retried');
    return { retried: true };
  });
}
