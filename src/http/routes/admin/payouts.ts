import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { CHANNEL_ID_RE } from '../../../channels/index.ts';
import { PAYOUT_STATES } from '../../../db/index.ts';
import {
  applyPayoutAction,
  getPayout,
  listPayouts,
  PayoutActionInvalid,
  PayoutActionRefused,
} from '../../../pipeline/index.ts';
import { route, shapes } from '../../openapi/index.ts';
import { listRoute, oneRoute } from '../reads.ts';
import { actionAnswers, resolveBody } from './actions.ts';
import { actorOf, listLimit, note, notFound, refused, txHash, type AdminDeps } from './shared.ts';

const payoutQuery = z
  .object({
    channelId: z.string().regex(CHANNEL_ID_RE, 'must be a Telegram chat id').optional(),
    status: z.enum(PAYOUT_STATES).optional(),
    kind: z.enum(['threshold', 'instant']).optional(),
    limit: listLimit,
  })
  .strict();
const payoutParams = z
  .object({ payoutId: z.string().regex(/^p[ob]_[0-9a-f]{16}$/, 'must be a payout id such as po_0123456789abcdef') })
  .strict();
const payoutActionParams = payoutParams.extend({ action: z.enum(['retry', 'cancel', 'approve', 'resolve']) }).strict();
const resolutionBody = z.discriminatedUnion('outcome', [
  z.object({ outcome: z.literal('paid'), note }).strict(),
  // The amount that came back, as a decimal string in the payout's asset (never a JSON number), with the transaction
  // that brought it (read on chain; none when nothing came back).
  // At most 30 integer digits, as every amount payrail parses: longer is bad input (400), not an amount too large.
  z
    .object({
      outcome: z.literal('returned'),
      amount: z.string().regex(/^(0|[1-9][0-9]{0,29})(\.[0-9]{1,18})?$/, 'must be a decimal string such as "12.5"'),
      txHash: txHash.optional(),
      note,
    })
    .strict()
    .refine((b) => b.txHash !== undefined || /^0(\.0+)?$/.test(b.amount), {
      path: ['txHash'],
      message:
        'required when amount is above 0: the transaction that brought the funds back to the host wallet (read on chain)',
    }),
]);

/** The payouts' list and detail, and the actions a person takes on one. */
export function payoutRoutes(app: FastifyInstance, deps: AdminDeps): void {
  listPayoutsRoute(app, deps);
  readPayoutRoute(app, deps);
  payoutActionRoute(app, deps);
}

function listPayoutsRoute(app: FastifyInstance, deps: AdminDeps): void {
  listRoute(app, {
    path: '/api/payouts',
    tag: 'payouts',
    summary: 'Payouts (threshold batches and instant payouts), newest first',
    description: '`?status=needs_review` is the review queue.',
    query: payoutQuery,
    key: 'payouts',
    item: shapes.payout,
    listed: 'The payouts.',
    badQuery: 'A bad filter or limit, or an unknown parameter.',
    list: (query) => listPayouts(deps.db, { ...query }),
  });
}

function readPayoutRoute(app: FastifyInstance, deps: AdminDeps): void {
  oneRoute(app, {
    path: '/api/payouts/:payoutId',
    tag: 'payouts',
    summary: 'One payout',
    params: payoutParams,
    id: 'payoutId',
    noun: 'payout',
    item: shapes.payout,
    badId: 'Not a payout id.',
    get: (payoutId) => getPayout(deps.db, payoutId),
  });
}

// retry / cancel / approve / resolve, each allowed only from a state where it is safe; kept with who and when.
// Declared here, unlike the reads (../reads.ts): a write's words, refusals and log lines are its own; only the form
// of its answers is shared (./actions.ts).
function payoutActionRoute(app: FastifyInstance, deps: AdminDeps): void {
  route(app, {
    method: 'POST',
    path: '/api/payouts/:payoutId/:action',
    tag: 'payouts',
    auth: 'admin',
    summary: 'Act on a payout: retry, cancel, approve or resolve',
    description: 'Each action only from a state where it is safe (docs/architecture.md, Payout states); audited.',
    params: payoutActionParams,
    body: resolveBody(resolutionBody, 'For resolve only (what became of the payout); the other actions ignore a body.'),
    responses: actionAnswers('payout', shapes.payout, {
      badRequest: 'Not a payout id, an unknown action, a bad resolution, or a resolution its state does not allow.',
      notSafe: 'Not safe from its state: the reason.',
    }),
    handler: async ({ params, body: resolution }, request, reply) =>
      actOnPayout(deps, params, resolution, request, reply),
  });
}

/** The payout as it is after the action; 404 for no such payout, 400 or 409 (the reason) when the action is refused. */
async function actOnPayout(
  deps: AdminDeps,
  { payoutId, action }: z.output<typeof payoutActionParams>,
  resolution: z.output<typeof resolutionBody> | undefined,
  request: FastifyRequest,
  reply: FastifyReply,
) {
  const actor = actorOf(request);
  try {
    const result = await applyPayoutAction(deps.db, payoutId, action, actor, {
      pollDeadlineMs: deps.pollDeadlineMs,
      chain: deps.chain,
      ...(resolution && { resolution }),
    });
    if (!result) return notFound(reply, `payout ${payoutId}`);
    request.log.warn(
      { event: 'payout_action', action, payoutId, actor, from: result.from, to: result.to },
      'payout changed by hand',
    );
    return await getPayout(deps.db, payoutId);
  } catch (error) {
    if (error instanceof PayoutActionInvalid) return reply.code(400).send({ error: error.message });
    if (error instanceof PayoutActionRefused) return refused(reply, action, `payout ${payoutId}`, error);
    throw error;
  }
}
