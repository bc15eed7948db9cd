/**
 * A worker-only process has no web app, yet its job and ChangeNow metrics live only in its memory: it serves them on
 * a port of its own, with nothing else on it.
 */
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/index.ts';
import { metricsRoutes } from './routes/metrics.ts';

export interface MetricsServer {
  readonly url: string;
  close(): Promise<void>;
}

export async function startMetricsServer(options: {
  metrics: Metrics;
  port: number;
  host: string;
  token?: string;
  logger: Logger;
}): Promise<MetricsServer> {
  const app = Fastify({
    loggerInstance: options.logger.child({ component: 'metrics-http' }),
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
  }) as unknown as FastifyInstance;
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ error: `no route for ${request.method} ${request.url.split('?')[0]}` }),
  );
  await app.register(async (scope) =>
    metricsRoutes(scope, { metrics: options.metrics, ...(options.token !== undefined && { token: options.token }) }),
  );
  try {
    await app.listen({ port: options.port, host: options.host });
  } catch (error) {
    await app.close().catch(() => undefined);
    throw error;
  }
  const address = app.server.address();
  const url =
    address && typeof address === 'object'
      ? `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
      : '';
  return { url, close: () => app.close() };
}
