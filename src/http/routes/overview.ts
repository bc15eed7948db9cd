import type { FastifyInstance, onRequestAsyncHookHandler } from 'fastify';
import { z } from 'zod';
import type { Db } from '../../db/index.ts';
import { readOverview, WINDOW_HOURS_DEFAULT, WINDOW_HOURS_MAX } from '../../overview/index.ts';
import { route, shapes } from '../openapi/index.ts';

export interface OverviewRouteDeps {
  db: Db;
  requireAdmin: onRequestAsyncHookHandler;
}

const overviewQuery = z
  .object({
    hours: z.coerce.number().int().min(1).max(WINDOW_HOURS_MAX).default(WINDOW_HOURS_DEFAULT),
  })
  .strict();

/** GET /api/overview: everything the dashboard shows, in one read (src/overview), behind the admin token. */
// eslint-disable-next-line @typescript-eslint/require-await -- a Fastify plugin: registration waits for the promise it returns
export async function overviewRoutes(app: FastifyInstance, deps: OverviewRouteDeps): Promise<void> {
  app.addHook('onRequest', deps.requireAdmin);
  // Requests for the same window that arrive while a read is running share it: dashboards refreshing together cost
  // the database one read. Nothing is kept after it: a page reloading after an action must see that action.
  const running = new Map<number, ReturnType<typeof readOverview>>();

  route(app, {
    method: 'GET',
    path: '/api/overview',
    tag: 'overview',
    auth: 'admin',
    summary: 'What the dashboard and `payrail status` show, from one consistent read',
    query: overviewQuery,
    responses: {
      200: {
        description: 'The picture.',
        schema: shapes.overview,
        headers: { 'cache-control': '`no-store`: never kept by a browser or a proxy.' },
      },
      400: {
        description: '`hours` is not a whole number from 1 to the limit, or an unknown parameter.',
        schema: shapes.errorBody,
      },
    },
    handler: async ({ query: { hours } }, _request, reply) => {
      let read = running.get(hours);
      if (read === undefined) {
        const started = readOverview(deps.db, { windowHours: hours });
        running.set(hours, started);
        const forget = () => void (running.get(hours) === started && running.delete(hours));
        started.then(forget, forget);
        read = started;
      }
      const overview = await read;
      // Balances and alerts: never kept by a browser or a proxy.
      return reply.header('cache-control', 'no-store').send(overview);
    },
  });
}
