import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
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
import { described, route, shapes } from '../openapi/index.ts';
import { actorOf } from './admin/shared.ts';

export interface EventRouteDeps {
  db: Db;
  requireAdmin: onRequestAsyncHookHandler;
  self: SelfAddresses;
}

const eventType = z.enum(EVENT_TYPES);
const eventsQuery = z
  .object({
    after: described(
      "An earlier answer's `next`: the events after it. Absent: from the first event.",
      z
        .string()
        .refine((s) => decodeCursor(s) !== null, 'must be a cursor from an earlier answer')
        .optional(),
    ),
    type: described(
      `Event types, comma-separated: ${EVENT_TYPES.join(', ')}. Absent: every type.`,
      z
        .string()
        .transform((s) => s.split(','))
        .pipe(z.array(eventType).min(1))
        .optional(),
    ),
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
  eventFeedRoute(app, deps);
  endpointRoutes(app, deps);
  deliveryRoutes(app, deps);
}

const bad = (description: string) => ({ description, schema: shapes.errorBody });
const endpointNotFound = { description: 'No such webhook endpoint.', schema: shapes.errorBody };

/** GET /api/events: the feed a platform pulls. */
function eventFeedRoute(app: FastifyInstance, deps: EventRouteDeps): void {
  // Pulling (and replaying: start again from any earlier cursor). `next` is where to continue; with no new events it
  // is the cursor given, so a poller keeps asking with it.
  route(app, {
    method: 'GET',
    path: '/api/events',
    tag: 'events',
    auth: 'admin',
    summary: 'The business events in commit order, with a cursor to resume or replay',
    description:
      '`type` is a comma-separated list of event types. `next` is where to continue; with no new events it is the cursor given.',
    query: eventsQuery,
    responses: {
      200: {
        description: 'The events after the cursor, and where to continue.',
        schema: z.object({ events: z.array(shapes.event), next: z.string() }),
      },
      400: bad('Not a cursor from an earlier answer, an unknown event type, a bad limit, or an unknown parameter.'),
    },
    handler: async ({ query }) => {
      const after = query.after === undefined ? START : (decodeCursor(query.after) ?? START);
      const rows = await readEvents(deps.db, { after, types: query.type, limit: query.limit });
      const last = rows[rows.length - 1];
      return { events: rows.map(toBody), next: encodeCursor(last ? { txid: last.txid, seq: last.seq } : after) };
    },
  });
}

/** The webhook endpoints: register, list, read, delete. */
function endpointRoutes(app: FastifyInstance, deps: EventRouteDeps): void {
  registerEndpointRoute(app, deps);
  listEndpointsRoute(app, deps);
  readEndpointRoute(app, deps);
  deleteEndpointRoute(app, deps);
}

function registerEndpointRoute(app: FastifyInstance, deps: EventRouteDeps): void {
  route(app, {
    method: 'POST',
    path: '/api/webhook-endpoints',
    tag: 'events',
    auth: 'admin',
    summary: 'Register a webhook endpoint; its secret is in this answer only',
    body: { schema: endpointBody, required: true },
    responses: {
      201: {
        description: 'Registered: the endpoint with the secret its deliveries are signed with, never shown again.',
        schema: shapes.webhookEndpoint.extend({ secret: z.string() }),
      },
      400: bad('A bad field, or a URL refused (not http(s), payrail itself, a port fetch refuses...).'),
    },
    handler: async ({ body }, request, reply) => registerEndpoint(app, deps, body, request, reply),
  });
}

/** 201 with the endpoint and its secret; 400 naming why a URL is refused. */
async function registerEndpoint(
  app: FastifyInstance,
  deps: EventRouteDeps,
  body: z.output<typeof endpointBody>,
  request: FastifyRequest,
  reply: FastifyReply,
) {
  let url: URL;
  try {
    url = checkEndpointUrl(body.url, { ...deps.self, port: listeningPort(app, deps.self.port) });
  } catch (error) {
    if (error instanceof EndpointRefused) return reply.code(400).send({ error: error.message });
    throw error;
  }
  const created = await createEndpoint(deps.db, {
    url: url.toString(),
    eventTypes: body.eventTypes,
    actor: actorOf(request),
  });
  request.log.info(
    { event: 'webhook_endpoint_created', endpointId: created.endpoint.id, eventTypes: created.endpoint.eventTypes },
    'webhook endpoint registered',
  );
  // The secret is in this answer only: it is never shown again.
  return reply.code(201).send({ ...created.endpoint, secret: created.secret });
}

function listEndpointsRoute(app: FastifyInstance, deps: EventRouteDeps): void {
  route(app, {
    method: 'GET',
    path: '/api/webhook-endpoints',
    tag: 'events',
    auth: 'admin',
    summary: 'The webhook endpoints, deleted ones last',
    responses: {
      200: { description: 'The endpoints.', schema: z.object({ endpoints: z.array(shapes.webhookEndpoint) }) },
    },
    handler: async () => ({ endpoints: await listEndpoints(deps.db) }),
  });
}

function readEndpointRoute(app: FastifyInstance, deps: EventRouteDeps): void {
  route(app, {
    method: 'GET',
    path: '/api/webhook-endpoints/:endpointId',
    tag: 'events',
    auth: 'admin',
    summary: 'One webhook endpoint',
    params: endpointParams,
    responses: {
      200: { description: 'The endpoint.', schema: shapes.webhookEndpoint },
      400: bad('Not an endpoint id.'),
      404: endpointNotFound,
    },
    handler: async ({ params: { endpointId } }, _request, reply) => {
      const endpoint = await getEndpoint(deps.db, endpointId);
      return endpoint ?? reply.code(404).send({ error: `webhook endpoint ${endpointId} not found` });
    },
  });
}

function deleteEndpointRoute(app: FastifyInstance, deps: EventRouteDeps): void {
  route(app, {
    method: 'DELETE',
    path: '/api/webhook-endpoints/:endpointId',
    tag: 'events',
    auth: 'admin',
    summary: 'Delete a webhook endpoint: its deliveries stop, its history stays readable',
    params: endpointParams,
    responses: {
      200: { description: 'Deleted.', schema: z.object({ deleted: z.literal(true) }) },
      400: bad('Not an endpoint id.'),
      404: endpointNotFound,
    },
    handler: async ({ params: { endpointId } }, request, reply) => {
      if (!(await deleteEndpoint(deps.db, endpointId, actorOf(request))))
        return reply.code(404).send({ error: `webhook endpoint ${endpointId} not found` });
      request.log.info({ event: 'webhook_endpoint_deleted', endpointId }, 'webhook endpoint deleted');
      return { deleted: true };
    },
  });
}

/** An endpoint's deliveries, and a failed one delivered again. */
function deliveryRoutes(app: FastifyInstance, deps: EventRouteDeps): void {
  route(app, {
    method: 'GET',
    path: '/api/webhook-endpoints/:endpointId/deliveries',
    tag: 'events',
    auth: 'admin',
    summary: "The endpoint's deliveries, newest event first, each with its last attempts",
    params: endpointParams,
    query: deliveriesQuery,
    responses: {
      200: { description: 'The deliveries.', schema: z.object({ deliveries: z.array(shapes.delivery) }) },
      400: bad('Not an endpoint id, a bad `status` or `limit`, or an unknown parameter.'),
      404: endpointNotFound,
    },
    handler: async ({ params: { endpointId }, query }, _request, reply) => {
      const deliveries = await listDeliveries(deps.db, endpointId, query);
      return deliveries === null
        ? reply.code(404).send({ error: `webhook endpoint ${endpointId} not found` })
        : { deliveries };
    },
  });

  route(app, {
    method: 'POST',
    path: '/api/webhook-endpoints/:endpointId/deliveries/:eventId/retry',
    tag: 'events',
    auth: 'admin',
    summary: 'Deliver a failed delivery again',
    params: deliveryParams,
    responses: {
      200: { description: 'Queued again.', schema: z.object({ retried: z.literal(true) }) },
      400: bad('Not an endpoint id or not an event id.'),
      404: { description: 'No delivery of this event to this endpoint.', schema: shapes.errorBody },
      409: { description: 'The delivery has not failed.', schema: shapes.errorBody },
    },
    handler: async ({ params: { endpointId, eventId } }, request, reply) => {
      const result = await retryDelivery(deps.db, { endpointId, eventId, actor: actorOf(request) });
      if (result === 'not_found')
        return reply.code(404).send({ error: `delivery of event ${eventId} to endpoint ${endpointId} not found` });
      if (result === 'not_failed')
        return reply.code(409).send({ error: `cannot retry the delivery of event ${eventId}: it has not failed` });
      request.log.info({ event: 'event_delivery_retried', endpointId, eventId }, 'failed event delivery retried');
      return { retried: true };
    },
  });
}

/** The port actually listened on (PORT=0 picks one at start); the configured one before the server listens. */
function listeningPort(app: FastifyInstance, configured: number): number {
  const address = app.server.address();
  return typeof address === 'object' && address !== null ? address.port : configured;
}
