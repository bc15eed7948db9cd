import Fastify, { LogController, type FastifyInstance } from 'fastify';
import { ZodError } from 'zod';
import { ChannelInputError } from '../channels/index.ts';
import { createScrubber, type Logger } from '../log.ts';
import { bearerAuth, type AdminToken } from './auth.ts';
import { idempotencyKeys } from './idempotency.ts';
import { addressMatcher, type AddressRange } from './net.ts';
import { openApiDocument, operationOf, type Operation } from './openapi/index.ts';
import { adminRoutes, type AdminDeps } from './routes/admin/index.ts';
import { eventRoutes, type EventRouteDeps } from './routes/events.ts';
import { alertRoutes, type AlertRouteDeps } from './routes/alerts.ts';
import { dashboardRoutes } from './routes/dashboard.ts';
import { healthRoutes, type HealthDeps } from './routes/health.ts';
import { metricsRoutes, type MetricsRouteDeps } from './routes/metrics.ts';
import { openApiRoutes } from './routes/openapi.ts';
import { overviewRoutes } from './routes/overview.ts';
import { webhookRoutes, type WebhookDeps } from './routes/webhooks.ts';

export interface HttpDeps {
  logger: Logger;
  adminTokens: readonly AdminToken[];
  webhook: WebhookDeps;
  health: HealthDeps;
  admin: Omit<AdminDeps, 'requireAdmin'>;
  /** GET /api/alerts, POST /api/alerts/:id/resolve (admin token); absent: no such routes. */
  alerts?: Omit<AlertRouteDeps, 'requireAdmin'>;
  /** GET /api/events and /api/webhook-endpoints (admin token); absent: no such routes. */
  events?: Omit<EventRouteDeps, 'requireAdmin'>;
  /**
   * The reverse proxies whose X-Forwarded-For is believed: behind one of them request.ip is the client it names;
   * from any other address the header is ignored and the socket's address is the source. Absent or empty: no proxy.
   */
  trustedProxies?: readonly AddressRange[];
  /** Values scrubbed from every response body, whatever put them there (an error message carrying an URL, say). */
  secrets?: readonly string[];
  /** GET /metrics; absent: no such route. */
  metrics?: MetricsRouteDeps;
}

export async function buildHttpApp(deps: HttpDeps): Promise<FastifyInstance> {
  const app = createFastify(deps);
  const operations = recordOperations(app);
  // The operations registered where idempotencyKeys runs: their writes take an Idempotency-Key.
  const keyed = new WeakSet<Operation>();
  if (deps.secrets !== undefined && deps.secrets.length > 0) scrubResponses(app, deps.secrets);
  setErrorAnswers(app);
  await registerServiceRoutes(app, deps);
  await registerAdminRoutes(app, deps, keyed);
  // The page and its assets are public (they hold no data); everything they show comes from /api/overview.
  await app.register(async (scope) => dashboardRoutes(scope));
  // Built once, on the first request: every route is registered by then, this one included.
  let document: Record<string, unknown> | undefined;
  await app.register(async (scope) =>
    openApiRoutes(scope, () => (document ??= openApiDocument(operations, { idempotent: (op) => keyed.has(op) }))),
  );
  return app;
}

function createFastify(deps: HttpDeps): FastifyInstance {
  const proxies = deps.trustedProxies ?? [];
  // fastify walks X-Forwarded-For from the right while this says the hop is a trusted proxy, starting with the
  // socket's own address: a client that is not one of our proxies cannot put an address of its choice in request.ip.
  const isTrustedProxy = addressMatcher(proxies);
  return Fastify({
    trustProxy: proxies.length > 0 ? (address: string) => isTrustedProxy(address) : false,
    loggerInstance: deps.logger.child({ component: 'http' }),
    // Our routes log the events that matter with their ids; per-request access lines would drown them.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024,
    // Admin JSON bodies never carry numbers we trust: amounts are strings, checked by zod.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    return503OnClosing: true,
  }) as unknown as FastifyInstance;
}

// Every route declared with its description (openapi/route.ts) is recorded as fastify registers it, in this scope or
// any below; fastify's HEAD copies of GET routes carry the same declaration and are left out.
function recordOperations(app: FastifyInstance): Operation[] {
  const operations: Operation[] = [];
  app.addHook('onRoute', (options) => {
    const operation = operationOf(options);
    if (operation && options.method === operation.method) operations.push(operation);
  });
  return operations;
}

/** Idempotency-Key handling for the routes of `scope`, their operations recorded in `keyed`. */
function withKeys(scope: FastifyInstance, db: HttpDeps['admin']['db'], keyed: WeakSet<Operation>): void {
  idempotencyKeys(scope, { db });
  scope.addHook('onRoute', (options) => {
    const operation = operationOf(options);
    if (operation) keyed.add(operation);
  });
}

function scrubResponses(app: FastifyInstance, secrets: readonly string[]): void {
  const scrub = createScrubber(secrets);
  // Serialized bodies are strings by now. The CSV exports stream (a string scrub cannot see them): they carry no
  // free text where a secret could travel, only ids, amounts, states and times.
  app.addHook('onSend', async (_request, _reply, payload) => (typeof payload === 'string' ? scrub(payload) : payload));
}

/** Bad input and other 4xx answer their message; anything else is logged and answers a bare 500. */
function setErrorAnswers(app: FastifyInstance): void {
  app.setErrorHandler((error, request, reply) => {
    if (error instanceof ZodError) {
      return reply
        .code(400)
        .send({ error: error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ') });
    }
    if (error instanceof ChannelInputError) return reply.code(400).send({ error: error.message });
    const status = (error as { statusCode?: number }).statusCode;
    if (status !== undefined && status >= 400 && status < 500)
      return reply.code(status).send({ error: (error as Error).message });
    request.log.error({ event: 'request_failed', err: error, url: request.url }, 'request failed');
    return reply.code(500).send({ error: 'internal error' });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ error: `no route for ${request.method} ${request.url.split('?')[0]}` }),
  );
}

/** /health, /metrics and the NOWPayments IPN: none takes the admin token. */
async function registerServiceRoutes(app: FastifyInstance, deps: HttpDeps): Promise<void> {
  await app.register(async (scope) => healthRoutes(scope, deps.health));
  const metrics = deps.metrics;
  if (metrics) await app.register(async (scope) => metricsRoutes(scope, metrics));
  await app.register(async (scope) => webhookRoutes(scope, deps.webhook));
}

async function registerAdminRoutes(app: FastifyInstance, deps: HttpDeps, keyed: WeakSet<Operation>): Promise<void> {
  // Admin writes honour an Idempotency-Key: a retried call answers what the first answered instead of acting twice.
  await app.register(async (scope) => {
    withKeys(scope, deps.admin.db, keyed);
    await adminRoutes(scope, { ...deps.admin, requireAdmin: bearerAuth(deps.adminTokens) });
  });
  const alerts = deps.alerts;
  if (alerts)
    await app.register(async (scope) => {
      withKeys(scope, alerts.db, keyed);
      await alertRoutes(scope, { ...alerts, requireAdmin: bearerAuth(deps.adminTokens) });
    });
  const events = deps.events;
  if (events)
    await app.register(async (scope) => {
      withKeys(scope, events.db, keyed);
      await eventRoutes(scope, { ...events, requireAdmin: bearerAuth(deps.adminTokens) });
    });
  await app.register(async (scope) =>
    overviewRoutes(scope, { db: deps.admin.db, requireAdmin: bearerAuth(deps.adminTokens) }),
  );
}
