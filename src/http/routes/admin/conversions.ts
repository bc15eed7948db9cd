import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import {
  applyConversionAction,
  CONVERSION_STATES,
  ConversionActionRefused,
  ConversionResolveRefused,
  getConversion,
  listConversions,
  resolveConversion,
} from '../../../pipeline/index.ts';
import { route, shapes } from '../../openapi/index.ts';
import { listRoute, oneRoute } from '../reads.ts';
import { actionAnswers, resolveBody } from './actions.ts';
import { actorOf, note, notFound, refused, requiredNote, statusQuery, txHash, type AdminDeps } from './shared.ts';

const conversionQuery = statusQuery(CONVERSION_STATES);
const conversionParams = z
  .object({
    conversionId: z.string().regex(/^conv_[0-9a-f]{16}$/, 'must be a conversion id such as conv_0123456789abcdef'),
  })
  .strict();
const conversionActionParams = conversionParams.extend({ action: z.enum(['retry', 'resolve']) }).strict();
const conversionResolutionBody = z.discriminatedUnion('outcome', [
  // The USDT that arrived, as a decimal string (never a JSON number), with the transaction that brought it.
  z
    .object({
      outcome: z.literal('received'),
      amount: z.string().regex(/^(0|[1-9][0-9]{0,29})(\.[0-9]{1,6})?$/, 'must be a decimal string such as "12.5"'),
      txHash,
      note,
    })
    .strict(),
  z.object({ outcome: z.literal('returned'), txHash, note }).strict(),
  // Booking a loss needs a person's reason.
  z.object({ outcome: z.literal('lost'), note: requiredNote }).strict(),
]);

/** The conversions' list and detail, a retry, and a resolve confirmed on chain. */
export function conversionRoutes(app: FastifyInstance, deps: AdminDeps): void {
  listConversionsRoute(app, deps);
  readConversionRoute(app, deps);
  conversionActionRoute(app, deps);
}

function listConversionsRoute(app: FastifyInstance, deps: AdminDeps): void {
  listRoute(app, {
    path: '/api/conversions',
    tag: 'conversions',
    summary: 'Conversions (ETH → USDT batches), newest first',
    description: '`?status=needs_review` is their review queue.',
    query: conversionQuery,
    key: 'conversions',
    item: shapes.conversion,
    listed: 'The conversions.',
    badQuery: 'A bad status or limit, or an unknown parameter.',
    list: (query) => listConversions(deps.db, { ...query }),
  });
}

function readConversionRoute(app: FastifyInstance, deps: AdminDeps): void {
  oneRoute(app, {
    path: '/api/conversions/:conversionId',
    tag: 'conversions',
    summary: 'One conversion',
    params: conversionParams,
    id: 'conversionId',
    noun: 'conversion',
    item: shapes.conversion,
    badId: 'Not a conversion id.',
    get: (conversionId) => getConversion(deps.db, conversionId),
  });
}

// retry; resolve (received / returned / lost), confirmed on chain before anything is booked.
// Declared here, unlike the reads (../reads.ts): a write's words, refusals and log lines are its own; only the form
// of its answers is shared (./actions.ts).
function conversionActionRoute(app: FastifyInstance, deps: AdminDeps): void {
  route(app, {
    method: 'POST',
    path: '/api/conversions/:conversionId/:action',
    tag: 'conversions',
    auth: 'admin',
    summary: 'Retry a conversion in review, or resolve it with what became of its ETH (confirmed on chain)',
    params: conversionActionParams,
    body: resolveBody(conversionResolutionBody, 'For resolve only (received, returned or lost); retry ignores a body.'),
    responses: actionAnswers('conversion', shapes.conversion, {
      badRequest: 'Not a conversion id, an unknown action, or a bad resolution.',
      notSafe: 'Not safe from its state, or the chain disagrees with the resolution: the reason.',
    }),
    handler: async ({ params, body: resolution }, request, reply) =>
      actOnConversion(deps, params, resolution, request, reply),
  });
}

/** The conversion as it is after the action; 404 for no such conversion, 409 (the reason) when it is refused. */
async function actOnConversion(
  deps: AdminDeps,
  { conversionId, action }: z.output<typeof conversionActionParams>,
  resolution: z.output<typeof conversionResolutionBody> | undefined,
  request: FastifyRequest,
  reply: FastifyReply,
) {
  const actor = actorOf(request);
  try {
    const result = resolution
      ? await resolveConversion(deps.db, deps.chain, conversionId, resolution, actor)
      : await applyConversionAction(deps.db, conversionId, 'retry', actor, { pollDeadlineMs: deps.pollDeadlineMs });
    if (!result) return notFound(reply, `conversion ${conversionId}`);
    request.log.warn(
      { event: 'conversion_action', action, conversionId, actor, from: result.from, to: result.to },
      'conversion changed by hand',
    );
    return await getConversion(deps.db, conversionId);
  } catch (error) {
    if (error instanceof ConversionActionRefused || error instanceof ConversionResolveRefused)
      return refused(reply, action, `conversion ${conversionId}`, error);
    throw error;
  }
}
