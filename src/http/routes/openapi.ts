import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { route } from '../openapi/index.ts';

// The document's own shape is the OpenAPI 3.1 schema's; only what a reader looks for first is named here.
const openApiDocument = z.looseObject({
  openapi: z.literal('3.1.0'),
  info: z.looseObject({ title: z.string(), version: z.string() }),
  paths: z.record(z.string(), z.record(z.string(), z.unknown())),
});

/**
 * GET /api/openapi.json: the OpenAPI 3.1 description of every route this server registered. Public, as the dashboard's
 * page is: it holds no data, and a client needs it before it holds a token.
 */
// eslint-disable-next-line @typescript-eslint/require-await -- a Fastify plugin: registration waits for the promise it returns
export async function openApiRoutes(app: FastifyInstance, describe: () => Record<string, unknown>): Promise<void> {
  route(app, {
    method: 'GET',
    path: '/api/openapi.json',
    tag: 'operations',
    auth: 'none',
    summary: 'This description: every route of this server, its parameters, bodies and answers',
    responses: { 200: { description: 'The OpenAPI 3.1 document.', schema: openApiDocument } },
    handler: () => Promise.resolve(describe()),
  });
}
