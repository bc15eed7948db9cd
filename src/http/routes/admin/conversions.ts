import type { FastifyInstance } from 'fastify';
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
import { actorOf, listLimit, note, notFound, refused, requiredNote, txHash, type AdminDeps } from './shared.ts';

const conversionQuery = z
  .object({
    status: z.enum(CONVERSION_STATES).optional(),
    limit: listLimit,
  })
  .strict();
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
  app.get('/api/conversions', async (request) => {
    const query = conversionQuery.parse(request.query);
    return { conversions: await listConversions(deps.db, { ...query }) };
  });

  app.get('/api/conversions/:conversionId', async (request, reply) => {
    const { conversionId } = conversionParams.parse(request.params);
    return (await getConversion(deps.db, conversionId)) ?? notFound(reply, `conversion ${conversionId}`);
  });

  // retry; resolve (received / returned / lost), confirmed on chain before anything is booked.
  app.post('/api/conversions/:conversionId/:action', async (request, reply) => {
    const { conversionId, action } = conversionActionParams.parse(request.params);
    const resolution = action === 'resolve' ? conversionResolutionBody.parse(request.body ?? {}) : undefined;
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
  });
}
