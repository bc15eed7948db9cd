import { Readable } from 'node:stream';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import {
  channelInputSchema,
  getChannel,
  listSupportedPairs,
  upsertChannel,
  CHANNEL_ID_RE,
  type Channel,
  type ChannelInput,
} from '../../../channels/index.ts';
import {
  getPayout,
  payChannelNow,
  PayNowRefused,
  rehomeChannelPayments,
  releaseUnknownChannelPayments,
  runThresholdCheck,
  type Rehomed,
} from '../../../pipeline/index.ts';
import { readStatement, StatementCheckError, statementQuery } from '../../../statements/index.ts';
import { route, shapes } from '../../openapi/index.ts';
import { channelSummary } from '../channel-summary.ts';
import { oneRoute } from '../reads.ts';
import { actorOf, notFound, type AdminDeps } from './shared.ts';

const channelParams = z.object({
  channelId: z.string().regex(CHANNEL_ID_RE, 'must be a Telegram chat id such as -1003296084379'),
});

const badId = 'Not a Telegram chat id.';
const noChannel = { description: 'No such channel.', schema: shapes.errorBody };

/** The channel registry (save, read, pay out now) and the currency/network pairs a channel may be paid in. */
export function channelRoutes(app: FastifyInstance, deps: AdminDeps): void {
  saveRoute(app, deps);
  payoutRoute(app, deps);
  readRoute(app, deps);
  statementRoute(app, deps);
  pairsRoute(app, deps);
}

// Declared in full, unlike the reads (../reads.ts): a write's answers, refusals and log lines are its own.
function saveRoute(app: FastifyInstance, deps: AdminDeps): void {
  route(app, {
    method: 'PUT',
    path: '/api/channels/:channelId',
    tag: 'channels',
    auth: 'admin',
    summary: 'Create or update a channel: how and where its owner is paid',
    description:
      'Every field is validated (the wallet address for its network) before anything is stored; audited. A strategy ' +
      'switch strands nothing: waiting payments move to the new strategy in the same commit.',
    params: channelParams,
    body: { schema: channelInputSchema, required: false },
    responses: {
      200: { description: 'Updated: the channel as GET shows it.', schema: shapes.channel },
      201: { description: 'Created: the channel as GET shows it.', schema: shapes.channel },
      400: { description: `${badId} Or a field that is wrong, named; nothing is stored.`, schema: shapes.errorBody },
    },
    handler: async ({ params: { channelId }, body: input }, request, reply) =>
      saveAndShow(deps, channelId, input, request, reply),
  });
}

// Pay the channel's whole available USDT now, whatever its threshold.
// Declared in full, unlike the reads (../reads.ts): a write's answers, refusals and log lines are its own.
function payoutRoute(app: FastifyInstance, deps: AdminDeps): void {
  route(app, {
    method: 'POST',
    path: '/api/channels/:channelId/payout',
    tag: 'channels',
    auth: 'admin',
    summary: "Pay the channel's whole available USDT now, whatever its threshold",
    params: channelParams,
    responses: {
      201: { description: 'The batch opened (held and tried again when below the minimum).', schema: shapes.payout },
      400: { description: badId, schema: shapes.errorBody },
      404: noChannel,
      409: { description: 'A batch is open, or the channel holds no USDT.', schema: shapes.errorBody },
    },
    handler: async ({ params: { channelId } }, request, reply) => payOutNow(deps, channelId, request, reply),
  });
}

function readRoute(app: FastifyInstance, deps: AdminDeps): void {
  oneRoute(app, {
    path: '/api/channels/:channelId',
    tag: 'channels',
    summary: 'One channel: its configuration, ledger balances and open payouts',
    params: channelParams,
    id: 'channelId',
    noun: 'channel',
    item: shapes.channel,
    badId,
    get: async (channelId) => {
      const channel = await getChannel(deps.db, channelId);
      return channel && { ...shown(deps, channel), ...(await channelSummary(deps.db, channelId)) };
    },
  });
}

const statementAnswers = {
  200: {
    description: 'The statement: JSON, or CSV with `format=csv`.',
    schema: shapes.statement,
    mediaType: 'text/csv',
    headers: {
      'cache-control': '`no-store`: never kept by a browser or a proxy.',
      'content-disposition': 'For the CSV: attachment, with a file name naming the channel and the range.',
    },
  },
  400: {
    description: `${badId} Or a bound that is not a time, a range that runs backwards, a bad page, or an unknown parameter.`,
    schema: shapes.errorBody,
  },
  404: noChannel,
  500: { description: 'The statement does not add up (a bug): not served.', schema: shapes.errorBody },
};

// The channel's statement between two times, from its ledger accounts (src/statements): the query's rules are there.
// Served only once it adds up.
function statementRoute(app: FastifyInstance, deps: AdminDeps): void {
  route(app, {
    method: 'GET',
    path: '/api/channels/:channelId/statement',
    tag: 'channels',
    auth: 'admin',
    summary: "The channel's statement per asset between two times, proven against the ledger",
    description:
      "`from` inclusive, `to` exclusive (ISO 8601 with a zone; by default the channel's creation and now). JSON is " +
      'paged (`limit`, and `after` from the previous page); the CSV is the whole range, streamed.',
    params: channelParams,
    query: statementQuery,
    responses: statementAnswers,
    handler: async ({ params: { channelId }, query }, request, reply) =>
      sendStatement(deps, channelId, query, request, reply),
  });
}

function pairsRoute(app: FastifyInstance, deps: AdminDeps): void {
  route(app, {
    method: 'GET',
    path: '/api/supported-pairs',
    tag: 'channels',
    auth: 'admin',
    summary: 'The currency/network pairs a channel may be paid in',
    responses: { 200: { description: 'The pairs.', schema: shapes.supportedPairs } },
    handler: async () => ({ pairs: await listSupportedPairs(deps.db) }),
  });
}

/**
 * Saved (201 created, 200 updated), its waiting payments moved and those kept for it credited: the channel as GET
 * shows it.
 */
async function saveAndShow(
  deps: AdminDeps,
  channelId: string,
  input: ChannelInput,
  request: FastifyRequest,
  reply: FastifyReply,
) {
  const actor = actorOf(request);
  const { channel, created, walletChanged, before, rehomed } = await saveChannel(deps, channelId, input, actor);
  request.log.info({ event: created ? 'channel_created' : 'channel_updated', channelId, actor }, 'channel saved');
  if (walletChanged && before) alertWalletChanged(request.log, channelId, actor, before, channel);
  logRehomed(request.log, channelId, rehomed);
  if (rehomed.toConversion.length > 0) deps.onThresholdCredit?.();
  await creditKeptPayments(request.log, deps, channelId);
  // A lowered threshold may be crossed already.
  await runThresholdCheck(deps.db, [channelId]);
  return reply
    .code(created ? 201 : 200)
    .send({ ...shown(deps, channel), ...(await channelSummary(deps.db, channelId)) });
}

/** 201 with the batch opened; 404 for no such channel, 409 when it cannot be paid now (the reason). */
async function payOutNow(deps: AdminDeps, channelId: string, request: FastifyRequest, reply: FastifyReply) {
  const actor = actorOf(request);
  try {
    const payoutId = await payChannelNow(deps.db, channelId, actor);
    if (!payoutId) return notFound(reply, `channel ${channelId}`);
    request.log.warn({ event: 'channel_payout_now', channelId, payoutId, actor }, 'channel paid out now by hand');
    return reply.code(201).send(await getPayout(deps.db, payoutId));
  } catch (error) {
    if (error instanceof PayNowRefused)
      return reply.code(409).send({ error: `cannot pay channel ${channelId} now: ${error.message}` });
    throw error;
  }
}

/** The statement as JSON, or streamed as CSV; a 500 (logged) instead when it does not add up. */
async function sendStatement(
  deps: AdminDeps,
  channelId: string,
  query: z.output<typeof statementQuery>,
  request: FastifyRequest,
  reply: FastifyReply,
) {
  let answer;
  try {
    answer = await readStatement(deps.db, channelId, query);
  } catch (error) {
    if (!(error instanceof StatementCheckError)) throw error;
    request.log.error(
      { event: 'statement_check_failed', channelId, err: error },
      'statement does not add up; not served',
    );
    return reply.code(500).send({ error: `${error.message}; the statement is not served (a bug: please report it)` });
  }
  if (!answer) return notFound(reply, `channel ${channelId}`);
  // Balances and payments: never kept by a browser or a proxy.
  reply.header('cache-control', 'no-store');
  if (answer.format === 'json') return reply.send(answer.statement);
  // The CSV streams as it is read; its totals were proven before the first byte, so a failure now cuts the body.
  const body = Readable.from(answer.lines, { highWaterMark: 2 });
  body.on('error', (error) =>
    request.log.error(
      {
        event: error instanceof StatementCheckError ? 'statement_check_failed' : 'statement_failed',
        channelId,
        err: error,
      },
      'statement CSV failed part way; response cut',
    ),
  );
  return reply
    .type('text/csv; charset=utf-8')
    .header('content-disposition', `attachment; filename="${answer.filename}"`)
    .send(body);
}

/**
 * The channel with the fee its next credit takes (feePercentInForce): its own, else PLATFORM_FEE_PERCENT, as intake's
 * feeInForce chooses. Credits already made keep the fee on their payment (fee_percent).
 */
function shown(deps: AdminDeps, channel: Channel) {
  return { ...channel, feePercentInForce: channel.platformFeePercent ?? deps.intake.feePercent.text };
}

/** A strategy switch strands nothing: payments waiting on the old strategy move to the new one, in the same commit. */
async function saveChannel(deps: AdminDeps, channelId: string, input: ChannelInput, actor: string) {
  let rehomed: Rehomed = { toConversion: [], toInstant: [] };
  const saved = await upsertChannel(deps.db, channelId, input, actor, async (trx) => {
    rehomed = await rehomeChannelPayments(trx, channelId);
  });
  return { ...saved, rehomed };
}

/** A stolen admin token's first move would be this: an alert (at warn, whatever else is quiet), never just a log line. */
function alertWalletChanged(
  log: FastifyBaseLogger,
  channelId: string,
  actor: string,
  before: Channel,
  after: Channel,
): void {
  const destination = (c: Channel) => ({
    payoutCurrency: c.payoutCurrency,
    payoutNetwork: c.payoutNetwork,
    walletAddress: c.walletAddress,
  });
  log.warn(
    {
      event: 'alert',
      alert: 'channel_wallet_changed',
      channelId,
      actor,
      from: destination(before),
      to: destination(after),
      changedAt: after.walletChangedAt,
    },
    'channel payout wallet changed',
  );
}

function logRehomed(log: FastifyBaseLogger, channelId: string, rehomed: Rehomed): void {
  if (rehomed.toConversion.length + rehomed.toInstant.length === 0) return;
  log.info(
    {
      event: 'channel_payments_rehomed',
      channelId,
      toConversion: rehomed.toConversion.length,
      toInstant: rehomed.toInstant.length,
    },
    "payments moved to the channel's new strategy",
  );
}

/** Payments that arrived before the channel existed are credited now. */
async function creditKeptPayments(log: FastifyBaseLogger, deps: AdminDeps, channelId: string): Promise<void> {
  const credited = await releaseUnknownChannelPayments(deps.db, channelId, deps.intake);
  if (credited.length > 0)
    log.info(
      { event: 'unknown_channel_payments_credited', channelId, payments: credited.length },
      'payments kept for an unknown channel credited',
    );
  if (credited.includes('threshold')) deps.onThresholdCredit?.();
}
