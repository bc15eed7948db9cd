/**
 * A route declared once: fastify gets the handler, and the OpenAPI document gets the operation, from the same
 * declaration. The handler is handed its params, query and body parsed by exactly the schemas the document shows, so
 * the description cannot say one thing while the validation does another.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler, RouteOptions } from 'fastify';
import type { z } from 'zod';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

/**
 * Who may call: `admin`, the admin bearer token (the scope's onRequest hook checks it); `metrics`, METRICS_TOKEN's
 * bearer token; `ipn`, NOWPayments' signature over the body (x-nowpayments-sig); `none`, anyone.
 */
export type Auth = 'admin' | 'metrics' | 'ipn' | 'none';

export interface Answer {
  readonly description: string;
  /** A JSON body of this shape. */
  readonly schema?: z.ZodType;
  /** A body that is not JSON, by its media type (text/csv, text/html...). Neither this nor schema: no body. */
  readonly mediaType?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface BodySpec<B extends z.ZodType, P> {
  readonly schema: B;
  /**
   * Whether a request must carry a body. Optional: a missing body is read as `{}` (so the schema's own messages name
   * the fields it needs); required: it is read as it is, and a missing one is refused as such.
   */
  readonly required: boolean;
  /** Read only when this holds for the parsed params (one action of several takes a body); the others ignore it. */
  readonly when?: (params: P) => boolean;
  /** What the body is for, in the document. */
  readonly description?: string;
}

/** A body fastify hands over unparsed (the IPN, whose signature covers its bytes): described, never parsed here. */
export interface RawBodySpec {
  readonly mediaType: string;
  readonly description: string;
  readonly schema?: z.ZodType;
}

type Parsed<S> = S extends z.ZodType ? z.output<S> : undefined;

export interface Input<P, Q, B> {
  readonly params: Parsed<P>;
  readonly query: Parsed<Q>;
  readonly body: Parsed<B>;
}

export interface RouteSpec<
  P extends z.ZodType | undefined,
  Q extends z.ZodType | undefined,
  B extends z.ZodType | undefined,
> {
  readonly method: HttpMethod;
  /** fastify's form, `:name` for a path parameter; the document shows `{name}`. */
  readonly path: string;
  readonly summary: string;
  readonly description?: string;
  readonly tag: string;
  readonly auth: Auth;
  readonly params?: P;
  readonly query?: Q;
  readonly body?: B extends z.ZodType ? BodySpec<B, Parsed<P>> : never;
  readonly rawBody?: RawBodySpec;
  /** Request headers the route reads, by name: what each is for. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Every answer the handler gives on purpose, by status. */
  readonly responses: Readonly<Record<number, Answer>>;
  /** Runs before the body is read (a token check, a source guard). */
  readonly onRequest?: onRequestAsyncHookHandler;
  readonly handler: (input: Input<P, Q, B>, request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
}

/** The part of a route the document is built from. */
export type Operation = Omit<
  RouteSpec<z.ZodType | undefined, z.ZodType | undefined, z.ZodType | undefined>,
  'handler' | 'onRequest'
>;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The declaration a route was registered from (see route()): what the OpenAPI document shows of it. */
    operation?: Operation;
  }
}

/** The operation a route was registered with, as onRoute hooks see its options; undefined for any other route. */
export function operationOf(options: Pick<RouteOptions, 'config'>): Operation | undefined {
  return options.config?.operation;
}

/**
 * Registers the route on `app` and records it for the document. Parsing runs params, then query, then body; the
 * first that fails throws its ZodError, which the app's error handler answers 400 naming the field.
 */
export function route<
  P extends z.ZodType | undefined = undefined,
  Q extends z.ZodType | undefined = undefined,
  B extends z.ZodType | undefined = undefined,
>(app: FastifyInstance, spec: RouteSpec<P, Q, B>): void {
  const { handler, onRequest, ...operation } = spec;
  const body = spec.body as BodySpec<z.ZodType, Parsed<P>> | undefined;
  app.route({
    method: spec.method,
    url: spec.path,
    config: { operation: operation as Operation },
    ...(onRequest && { onRequest }),
    handler: async (request, reply) => {
      const params = (spec.params ? spec.params.parse(request.params) : undefined) as Parsed<P>;
      const query = (spec.query ? spec.query.parse(request.query) : undefined) as Parsed<Q>;
      const read = body !== undefined && (body.when === undefined || body.when(params));
      const parsed = (
        read ? body.schema.parse(body.required ? request.body : (request.body ?? {})) : undefined
      ) as Parsed<B>;
      return handler({ params, query, body: parsed }, request, reply);
    },
  });
}
