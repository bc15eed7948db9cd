import type { FastifyInstance, onRequestAsyncHookHandler } from 'fastify';
import { z } from 'zod';
import type { Db } from '../../db/index.ts';
import { readOverview, WINDOW_HOURS_DEFAULT, WINDOW_HOURS_MAX } from '../../overview/index.ts';

export interface OverviewRouteDeps {
  db: Db;
  requireAdmin: onRequestAsyncHookHandler;
}

const overviewQuery = z.object({
  hours: z.coerce.number().int().min(1).max(WINDOW_HOURS_MAX).default(WINDOW_HOURS_DEFAULT),
}).strict();

/** GET /api/overview: everything the dashboard shows, in one read (src/overview), behind the admin token. */
export async function overviewRoutes(app: FastifyInstance, deps: OverviewRouteDeps): Promise<void> {
  app.addHook('onRequest', deps.requireAdmin);

  app.get('/api/overview', async (request, reply) => {
    const { hours } = overviewQuery.parse(request.query);
    const overview = await readOverview(deps.db, { windowHours: hours });
    // Balances and alerts: never kept by a browser or a proxy.
    return reply.header('cache-control', 'no-store').send(overview);
  });
}
