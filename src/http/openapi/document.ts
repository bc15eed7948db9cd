/**
 * The OpenAPI 3.1 document, built from the operations the app registered (route.ts): paths, parameters and bodies from
 * the schemas the handlers parse with, answers from the shapes they send. Schemas are JSON Schema 2020-12, OpenAPI
 * 3.1's own dialect; shapes named in the registry (registry.ts) appear once under components and are referred to.
 */
import { createRequire } from 'node:module';
import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import { IDEMPOTENCY_KEY_HEADER } from '../idempotency.ts';
import { apiSchemas } from './registry.ts';
import type { Answer, Operation } from './route.ts';
import { errorBody } from './shapes.ts';

type Json = Record<string, unknown>;

/** package.json's version, read where it lies beside src/ (or dist/ once built): both are two levels above this. */
const VERSION = (createRequire(import.meta.url)('../../../package.json') as { version: string }).version;

export interface DocumentOptions {
  /** Operations whose writes take an Idempotency-Key (registered in a scope with idempotencyKeys). */
  readonly idempotent?: (operation: Operation) => boolean;
}

const WRITES = new Set(['POST', 'PUT', 'DELETE']);

const TAGS: Record<string, string> = {
  intake: "NOWPayments' payment notifications",
  channels: 'Channels: how and where each owner is paid, statements',
  payments: 'Payments and the decisions on those kept for review',
  conversions: 'ETH → USDT conversions through ChangeNow',
  payouts: 'Payouts to channel owners',
  transfers: "The host wallet's on-chain transfers",
  checkout: 'NOWPayments invoices',
  exports: 'CSV exports for accounting',
  alerts: 'Stored alerts',
  events: 'Business events and the webhook endpoints they are delivered to',
  overview: "The operator's picture",
  operations: 'Health checks, metrics, this description',
  dashboard: "The operator dashboard's page and assets",
};

/** Answers the app gives on any route: its error handler's body for an error no handler answers itself. */
const DEFAULT_ANSWER: Answer = {
  description:
    "An error the route does not answer itself, in the app's error body: a request fastify refuses before the handler " +
    '(body too large 413, media type not accepted 415, malformed JSON 400), or an unexpected failure (500).',
  schema: errorBody,
};

const TOKEN_REFUSED: Answer = {
  description: 'No bearer token, or not a valid one.',
  schema: errorBody,
  headers: { 'www-authenticate': 'Always `Bearer`.' },
};

const IDEMPOTENCY_ANSWERS: Readonly<Record<number, Answer>> = {
  400: { description: 'Idempotency-Key malformed, or sent more than once.', schema: errorBody },
  409: {
    description: 'A request with this Idempotency-Key is still in progress: try again after Retry-After.',
    schema: errorBody,
    headers: { 'retry-after': 'Seconds to wait.' },
  },
  422: { description: 'This Idempotency-Key was used for another request (method, path or body).', schema: errorBody },
};

export function openApiDocument(operations: readonly Operation[], options: DocumentOptions = {}): Json {
  const components: Record<string, Json> = {};
  const convert = converter(components);
  const paths: Record<string, Record<string, Json>> = {};
  const schemes = new Set<string>();
  const tags = new Set<string>();
  const operationIds = new Set<string>();
  for (const op of operations) {
    const path = op.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const keyed = WRITES.has(op.method) && op.auth === 'admin' && options.idempotent?.(op) === true;
    const operationId = idOf(op);
    if (operationIds.has(operationId)) throw new Error(`two operations are ${operationId} in the OpenAPI document`);
    operationIds.add(operationId);
    tags.add(op.tag);
    const security = securityOf(op);
    for (const requirement of security) for (const name of Object.keys(requirement)) schemes.add(name);
    (paths[path] ??= {})[op.method.toLowerCase()] = operationOf(op, { operationId, keyed, security }, convert);
  }

  return {
    openapi: '3.1.0',
    info: {
      title: 'payrail',
      version: VERSION,
      description:
        'Payment-to-payout engine: NOWPayments IPN intake, exact ledger, conversion and payouts through ChangeNow. ' +
        'Every amount is a decimal string (never a JSON number). Described from the schemas the handlers validate with.',
    },
    // No `servers`: OpenAPI then takes a single server at `/`, relative to where this document was fetched from, so it
    // describes the server that serves it whatever its address (a relative url here fails the 3.1 schema's uri format).
    tags: [...tags].map((name) => ({ name, ...(TAGS[name] !== undefined && { description: TAGS[name] }) })),
    paths,
    components: { schemas: sortedKeys(components), securitySchemes: securitySchemesOf(schemes) },
  };
}

type Convert = (schema: z.ZodType, io: 'input' | 'output') => Json;

/** A zod schema as JSON Schema; the named shapes it holds are put in `components` and referred to. */
function converter(components: Record<string, Json>): Convert {
  return (schema, io) => {
    const {
      $schema: _dialect,
      $defs,
      ...rest
    } = z.toJSONSchema(schema, {
      target: 'draft-2020-12',
      io,
      metadata: apiSchemas,
      unrepresentable: 'throw',
      cycles: 'throw',
    }) as Json;
    for (const [name, def] of Object.entries(($defs ?? {}) as Record<string, Json>)) {
      const shown = toComponents(def);
      // One name, one shape: the same schema converted twice gives the same def.
      if (components[name] !== undefined && !isDeepStrictEqual(components[name], shown))
        throw new Error(`two different schemas are named ${name} in the OpenAPI document`);
      components[name] = shown;
    }
    return toComponents(rest);
  };
}

/** One path's operation object: parameters, body, answers and who may call. */
function operationOf(
  op: Operation,
  { operationId, keyed, security }: { operationId: string; keyed: boolean; security: Json[] },
  convert: Convert,
): Json {
  const parameters = [
    ...parametersOf(op.params, 'path', convert),
    ...parametersOf(op.query, 'query', convert),
    ...headerParametersOf(op, keyed),
  ];
  const requestBody = requestBodyOf(op, convert);
  const responses = responsesOf(op, keyed, convert);
  // A strict query schema refuses what it does not name: worth saying, since most HTTP APIs ignore such parameters.
  const strictQuery = op.query !== undefined && convert(op.query, 'input').additionalProperties === false;
  const description = [op.description, strictQuery ? 'An unknown query parameter is refused (400).' : undefined]
    .filter((text) => text !== undefined)
    .join(' ');
  return {
    operationId,
    summary: op.summary,
    ...(description !== '' && { description }),
    tags: [op.tag],
    security,
    ...(parameters.length > 0 && { parameters }),
    ...(requestBody && { requestBody }),
    responses,
  };
}

/** The headers an operation reads: its own, the IPN's signature, and Idempotency-Key where writes take one. */
function headerParametersOf(op: Operation, keyed: boolean): Json[] {
  return [
    ...Object.entries({
      ...(op.auth === 'ipn' && {
        'x-nowpayments-sig': "HMAC-SHA512 of the body's JSON with its keys sorted, keyed with NOWPAYMENTS_IPN_SECRET.",
      }),
      ...op.headers,
    }).map(([name, description]) => ({
      name,
      in: 'header',
      required: op.auth === 'ipn' && name === 'x-nowpayments-sig',
      description,
      schema: { type: 'string' },
    })),
    ...(keyed
      ? [
          {
            name: IDEMPOTENCY_KEY_HEADER,
            in: 'header',
            required: false,
            description:
              'A retried request carrying the key the first one carried answers what the first one answered (for 24 hours) instead of acting twice.',
            schema: { type: 'string', pattern: '^[\\x20-\\x7e]{1,255}$' },
          },
        ]
      : []),
  ];
}

function requestBodyOf(op: Operation, convert: Convert): Json | undefined {
  if (op.body)
    return {
      required: op.body.required,
      ...(op.body.description !== undefined && { description: op.body.description }),
      content: { 'application/json': { schema: convert(op.body.schema, 'input') } },
    };
  if (op.rawBody)
    return {
      required: true,
      description: op.rawBody.description,
      content: { [op.rawBody.mediaType]: op.rawBody.schema ? { schema: convert(op.rawBody.schema, 'input') } : {} },
    };
  return undefined;
}

/** The route's own answers, then those the app adds: 401 behind a token, Idempotency-Key's, and the default. */
function responsesOf(op: Operation, keyed: boolean, convert: Convert): Json {
  const answers = new Map<string, Answer[]>();
  const add = (status: string, answer: Answer) => answers.set(status, [...(answers.get(status) ?? []), answer]);
  for (const [status, answer] of Object.entries(op.responses)) add(status, answer);
  if (op.auth === 'admin' || op.auth === 'metrics') add('401', TOKEN_REFUSED);
  if (keyed) for (const [status, answer] of Object.entries(IDEMPOTENCY_ANSWERS)) add(status, answer);
  add('default', DEFAULT_ANSWER);
  return Object.fromEntries([...answers].map(([status, list]) => [status, responseOf(list, convert)]));
}

function securityOf(op: Operation): Json[] {
  if (op.auth === 'admin') return [{ adminToken: [] }];
  if (op.auth === 'metrics') return [{ metricsToken: [] }];
  return [];
}

/** The schemes some operation uses, and only those. */
function securitySchemesOf(schemes: ReadonlySet<string>): Record<string, Json> {
  const securitySchemes: Record<string, Json> = {};
  if (schemes.has('adminToken'))
    securitySchemes.adminToken = {
      type: 'http',
      scheme: 'bearer',
      description:
        'ADMIN_TOKEN, or one of ADMIN_TOKENS: every change is audited under the name of the token that made it.',
    };
  if (schemes.has('metricsToken'))
    securitySchemes.metricsToken = { type: 'http', scheme: 'bearer', description: 'METRICS_TOKEN.' };
  return securitySchemes;
}

/** `#/$defs/X` as zod writes it, for the document's `#/components/schemas/X`. */
function toComponents(schema: Json): Json {
  return JSON.parse(JSON.stringify(schema).replaceAll('"#/$defs/', '"#/components/schemas/')) as Json;
}

function sortedKeys<T>(record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => a.localeCompare(b)));
}

/** e.g. GET /api/channels/:channelId/statement → getApiChannelsChannelIdStatement. */
function idOf(op: Operation): string {
  const words = op.path
    .split(/[^A-Za-z0-9]+/)
    .filter((w) => w !== '')
    .map((w) => w[0]!.toUpperCase() + w.slice(1));
  return op.method.toLowerCase() + (words.length > 0 ? words.join('') : 'Root');
}

/** One parameter per property of an object schema: its JSON Schema, and whether it is required. */
function parametersOf(schema: z.ZodType | undefined, where: 'path' | 'query', convert: Convert): Json[] {
  if (schema === undefined) return [];
  const object = convert(schema, 'input');
  const properties = (object.properties ?? {}) as Record<string, Json>;
  const required = new Set((object.required ?? []) as string[]);
  return Object.entries(properties).map(([name, property]) => {
    const { description, ...rest } = property;
    return {
      name,
      in: where,
      // A path parameter is always required; a query one only when it has no default.
      required: where === 'path' || required.has(name),
      ...(description !== undefined && { description }),
      schema: rest,
    };
  });
}

function responseOf(answers: Answer[], convert: Convert): Json {
  const description = answers.map((a) => a.description).join(' Or: ');
  const json = answers.flatMap((a) => (a.schema ? [convert(a.schema, 'output')] : []));
  const unique = json.filter((s, i) => json.findIndex((t) => isDeepStrictEqual(s, t)) === i);
  const content: Record<string, Json> = {};
  if (unique.length === 1) content['application/json'] = { schema: unique[0] };
  if (unique.length > 1) content['application/json'] = { schema: { anyOf: unique } };
  for (const a of answers) if (a.mediaType !== undefined) content[a.mediaType] = { schema: { type: 'string' } };
  const headers = Object.fromEntries(
    answers.flatMap((a) =>
      Object.entries(a.headers ?? {}).map(([name, text]) => [name, { description: text, schema: { type: 'string' } }]),
    ),
  );
  return {
    description,
    ...(Object.keys(content).length > 0 && { content }),
    ...(Object.keys(headers).length > 0 && { headers }),
  };
}
