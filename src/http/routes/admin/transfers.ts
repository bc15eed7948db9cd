import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { TRANSFER_STATES } from '../../../db/index.ts';
import {
  applyTransferAction,
  getTransfer,
  listTransfers,
  TransferActionRefused,
} from '../../../pipeline/transfer/index.ts';
import { actorOf, listLimit, note, notFound, refused, txHash, type AdminDeps } from './shared.ts';

const transferQuery = z
  .object({
    status: z.enum(TRANSFER_STATES).optional(),
    limit: listLimit,
  })
  .strict();
const transferParams = z
  .object({ transferId: z.string().regex(/^tr_[0-9a-f]{16}$/, 'must be a transfer id such as tr_0123456789abcdef') })
  .strict();
const transferActionParams = transferParams.extend({ action: z.enum(['bump', 'cancel', 'resolve', 'retry']) }).strict();
const transferResolutionBody = z.discriminatedUnion('outcome', [
  z.object({ outcome: z.literal('mined'), txHash, note }).strict(),
  z.object({ outcome: z.literal('never_sent'), note }).strict(),
]);

/** The host wallet's on-chain transfers: list, detail, and the actions a person asks for. */
export function transferRoutes(app: FastifyInstance, deps: AdminDeps): void {
  app.get('/api/transfers', async (request) => {
    const query = transferQuery.parse(request.query);
    return { transfers: await listTransfers(deps.db, { ...query }) };
  });

  app.get('/api/transfers/:transferId', async (request, reply) => {
    const { transferId } = transferParams.parse(request.params);
    return (await getTransfer(deps.db, transferId)) ?? notFound(reply, `transfer ${transferId}`);
  });

  // bump / cancel / resolve are carried out by a worker (it holds the key and reads the chain): 202 with the request;
  // retry takes a transfer out of review at once.
  app.post('/api/transfers/:transferId/:action', async (request, reply) => {
    const { transferId, action } = transferActionParams.parse(request.params);
    const resolution = action === 'resolve' ? transferResolutionBody.parse(request.body ?? {}) : undefined;
    const actor = actorOf(request);
    try {
      const result = await applyTransferAction(deps.db, transferId, action, actor, resolution);
      if (!result) return notFound(reply, `transfer ${transferId}`);
      const { from, to, requested } = result;
      request.log.warn(
        { event: 'transfer_action', action, transferId, actor, from, to, requested },
        'transfer action by hand',
      );
      return reply.code(requested === null ? 200 : 202).send(await getTransfer(deps.db, transferId));
    } catch (error) {
      if (error instanceof TransferActionRefused) return refused(reply, action, `transfer ${transferId}`, error);
      throw error;
    }
  });
}
