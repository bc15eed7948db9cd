import type { FastifyInstance } from 'fastify';
import { channelRoutes } from './channels.ts';
import { conversionRoutes } from './conversions.ts';
import { exportRoutes } from './exports.ts';
import { invoiceRoutes } from './invoices.ts';
import { paymentRoutes } from './payments.ts';
import { payoutRoutes } from './payouts.ts';
import type { AdminDeps } from './shared.ts';
import { transferRoutes } from './transfers.ts';

export type { AdminDeps } from './shared.ts';

/** The admin API: every route behind the bearer token, one module per aggregate. */
// eslint-disable-next-line @typescript-eslint/require-await -- a Fastify plugin: registration waits for the promise it returns
export async function adminRoutes(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  // onRequest, before the body is read: without a valid token the answer is 401 whatever the body (a malformed or
  // oversized body from anyone used to get its 400/413/415 first, and was buffered and parsed unauthenticated).
  app.addHook('onRequest', deps.requireAdmin);
  channelRoutes(app, deps);
  paymentRoutes(app, deps);
  payoutRoutes(app, deps);
  conversionRoutes(app, deps);
  transferRoutes(app, deps);
  exportRoutes(app, deps);
  invoiceRoutes(app, deps);
}
