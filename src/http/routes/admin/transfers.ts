import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { TRANSFER_STATES } from '../../../db/index.ts';
import {
  applyTransferAction,
  getTransfer,
  listTransfers,
  TransferActionRefused,
} from '../../../pipeline/transfer/index.ts';
import { route, shapes } from '../../openapi/index.ts';
import { listRoute, oneRoute } from '../reads.ts';
import { actionAnswers, resolveBody } from './actions.ts';
import { actorOf, note, notFound, refused, statusQuery, txHash, type AdminDeps } from './shared.ts';

const transferQuery = statusQuery(TRANSFER_STATES);
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
  listTransfersRoute(app, deps);
  readTransferRoute(app, deps);
  transferActionRoute(app, deps);
}

function listTransfersRoute(app: FastifyInstance, deps: AdminDeps): void {
  listRoute(app, {
    path: '/api/transfers',
    tag: 'transfers',
    summary: 'Host-wallet transfers, newest first',
    description: '`?status=needs_review` is their review queue.',
    query: transferQuery,
    key: 'transfers',
    item: shapes.transfer,
    listed: 'The transfers (without their versions).',
    badQuery: 'A bad status or limit, or an unknown parameter.',
    list: (query) => listTransfers(deps.db, { ...query }),
  });
}

function readTransferRoute(app: FastifyInstance, deps: AdminDeps): void {
  oneRoute(app, {
    path: '/api/transfers/:transferId',
    tag: 'transfers',
    summary: 'One transfer, with every signed version',
    params: transferParams,
    id: 'transferId',
    noun: 'transfer',
    item: shapes.transfer,
    badId: 'Not a transfer id.',
    get: (transferId) => getTransfer(deps.db, transferId),
  });
}

// bump / cancel / resolve are carried out by a worker (it holds the key and reads the chain): 202 with the request;
// retry takes a transfer out of review at once.
// Declared here, unlike the reads (../reads.ts): a write's words, refusals and log lines are its own; only the form
// of its answers is shared (./actions.ts).
function transferActionRoute(app: FastifyInstance, deps: AdminDeps): void {
  route(app, {
    method: 'POST',
    path: '/api/transfers/:transferId/:action',
    tag: 'transfers',
    auth: 'admin',
    summary: 'Act on a transfer: bump, cancel, resolve (carried out by a worker) or retry',
    params: transferActionParams,
    body: resolveBody(
      transferResolutionBody,
      'For resolve only (mined, or never sent); the other actions ignore a body.',
    ),
    responses: {
      ...actionAnswers('transfer', shapes.transfer, {
        done: 'Retried: the transfer as it is now.',
        badRequest: 'Not a transfer id, an unknown action, or a bad resolution.',
        notSafe: 'Not safe from its state: the reason.',
      }),
      202: {
        description: 'Asked for: a worker carries it out. The transfer with the request.',
        schema: shapes.transfer,
      },
    },
    handler: async ({ params, body: resolution }, request, reply) =>
      actOnTransfer(deps, params, resolution, request, reply),
  });
}

/** The transfer with the request (202) or as it is now (200); 404 for no such transfer, 409 when refused. */
async function actOnTransfer(
  deps: AdminDeps,
  { transferId, action }: z.output<typeof transferActionParams>,
  resolution: z.output<typeof transferResolutionBody> | undefined,
  request: FastifyRequest,
  reply: FastifyReply,
) {
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
}
