import type { FastifyInstance } from 'fastify';
import type { Db } from '../../db/index.ts';
import type { Metrics } from '../../metrics/index.ts';
import { bearerAuth } from '../auth.ts';
import { route } from '../openapi/index.ts';

export interface MetricsRouteDeps {
  metrics: Metrics;
  /** Given: the database's figures are part of the scrape (web processes). Absent: this process's own only. */
  db?: Db;
  /** Set: the scrape needs `Authorization: Bearer <token>`. Unset: open (bind it to a private network). */
  token?: string;
}

/** GET /metrics in Prometheus text format. */
// eslint-disable-next-line @typescript-eslint/require-await -- a Fastify plugin: registration waits for the promise it returns
export async function metricsRoutes(app: FastifyInstance, deps: MetricsRouteDeps): Promise<void> {
  const requireToken = deps.token === undefined ? undefined : bearerAuth([{ name: 'metrics', token: deps.token }]);
  route(app, {
    method: 'GET',
    path: '/metrics',
    tag: 'operations',
    // As this server is configured: the document tells a scraper whether it must present METRICS_TOKEN.
    auth: requireToken ? 'metrics' : 'none',
    summary: 'Prometheus text format',
    responses: {
      200: {
        description: 'The scrape.',
        mediaType: 'text/plain',
        headers: { 'cache-control': '`no-store`: never kept by a browser or a proxy.' },
      },
    },
    ...(requireToken && { onRequest: requireToken }),
    handler: async (_input, request, reply) => {
      const text = await deps.metrics.render({ ...(deps.db && { db: deps.db }), logger: request.log });
      return reply.header('content-type', deps.metrics.contentType).header('cache-control', 'no-store').send(text);
    },
  });
}
