export { buildHttpApp, type HttpDeps } from './app.ts';
export type { AdminToken } from './auth.ts';
