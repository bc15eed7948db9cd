/**
 * The two reads every admin resource has: its list (filters and a limit in the query) and one by its id (404 naming
 * it). Declared here once, so a resource states only what differs: its path, names, filters, words and reads.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { route, shapes } from '../openapi/index.ts';
import { notFound } from './admin/shared.ts';

const adminGet = (read: { path: string; tag: string; summary: string }) =>
  ({ method: 'GET', path: read.path, tag: read.tag, auth: 'admin', summary: read.summary }) as const;

export interface ListRead<T> {
  readonly path: string;
  readonly tag: string;
  readonly summary: string;
  readonly description?: string;
  readonly query: z.ZodType<T>;
  /** The answer's one key, holding the items: `{ payouts: [...] }`. */
  readonly key: string;
  readonly item: z.ZodType;
  /** The 200's description in the document. */
  readonly listed: string;
  /** The 400's description: which filter can be wrong. */
  readonly badQuery: string;
  readonly list: (query: T) => Promise<unknown[]>;
}

/** GET `path`: `{ [key]: items }`, as `list` reads them for the parsed query. Behind the admin token. */
export function listRoute<T>(app: FastifyInstance, read: ListRead<T>): void {
  route(app, {
    ...adminGet(read),
    ...(read.description !== undefined && { description: read.description }),
    query: read.query,
    responses: {
      200: { description: read.listed, schema: z.object({ [read.key]: z.array(read.item) }) },
      400: { description: read.badQuery, schema: shapes.errorBody },
    },
    handler: async ({ query }) => ({ [read.key]: await read.list(query) }),
  });
}

export interface OneRead<K extends string> {
  /** Ends in `:<id>`. */
  readonly path: string;
  readonly tag: string;
  readonly summary: string;
  readonly params: z.ZodType<Record<K, string>>;
  /** The path parameter that names it. */
  readonly id: K;
  /** What it is, in the document and the 404: `payout` (`payout po_0123456789abcdef not found`). */
  readonly noun: string;
  readonly item: z.ZodType;
  /** The 400's description: what a good id looks like. */
  readonly badId: string;
  /** Undefined or null: there is no such one. */
  readonly get: (id: string) => Promise<unknown>;
}

/** GET `path`: the one `get` finds by the id in the path, or 404 naming it. Behind the admin token. */
export function oneRoute<K extends string>(app: FastifyInstance, read: OneRead<K>): void {
  route(app, {
    ...adminGet(read),
    params: read.params,
    responses: {
      200: { description: `The ${read.noun}.`, schema: read.item },
      400: { description: read.badId, schema: shapes.errorBody },
      404: { description: `No such ${read.noun}.`, schema: shapes.errorBody },
    },
    handler: async ({ params }, _request, reply) => {
      const id = params[read.id];
      return (await read.get(id)) ?? notFound(reply, `${read.noun} ${id}`);
    },
  });
}
