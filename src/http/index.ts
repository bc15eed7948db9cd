export { buildHttpApp, type HttpDeps } from './app.ts';
export type { AdminToken } from './auth.ts';
export { startMetricsServer, type MetricsServer } from './metrics-server.ts';
