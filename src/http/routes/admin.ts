import type { FastifyInstance, onRequestAsyncHookHandler } from 'fastify';
import { z } from 'zod';
import {
  channelInputSchema,
  getChannel,
  listSupportedPairs,
  upsertChannel,
  CHANNEL_ID_RE,
} from '../../channels/index.ts';
import { PAYOUT_STATES, TRANSFER_STATES, type Db } from '../../db/index.ts';
import {
  applyConversionAction,
  applyPaymentAction,
  applyPayoutAction,
  PAYMENT_ACTIONS,
  PaymentActionRefused,
  CONVERSION_STATES,
  ConversionActionRefused,
  ConversionResolveRefused,
  resolveConversion,
  type ConversionChain,
  getConversion,
  getPayment,
  listConversions,
  getPayout,
  listPayouts,
  PayoutActionInvalid,
  PayoutActionRefused,
  releaseUnknownChannelPayments,
  runThresholdCheck,
  payChannelNow,
  PayNowRefused,
  rehomeChannelPayments,
  type IntakeSettings,
  type Rehomed,
} from '../../pipeline/index.ts';
import {
  applyTransferAction,
  getTransfer,
  listTransfers,
  TransferActionRefused,
} from '../../pipeline/transfer/index.ts';
import { channelSummary } from './channel-summary.ts';

export interface AdminDeps {
  db: Db;
  requireAdmin: onRequestAsyncHookHandler;
  intake: IntakeSettings;
  /** A payout's or conversion's poll deadline, renewed when a person retries one whose funds are at ChangeNow. */
  pollDeadlineMs: number;
  /** The host wallet's incoming ETH and USDT read on chain, for a conversion's resolve; unset: resolve is refused. */
  chain?: ConversionChain;
  /** Asks for a conversion check soon (after threshold credits). */
  onThresholdCredit?: () => void;
}

const channelParams = z.object({
  channelId: z.string().regex(CHANNEL_ID_RE, 'must be a Telegram chat id such as -1003296084379'),
});
const payoutQuery = z
  .object({
    channelId: z.string().regex(CHANNEL_ID_RE, 'must be a Telegram chat id').optional(),
    status: z.enum(PAYOUT_STATES).optional(),
    kind: z.enum(['threshold', 'instant']).optional(),
    limit: z.coerce.number().int().min(1).max(500).default(100),
  })
  .strict();
const payoutParams = z
  .object({ payoutId: z.string().regex(/^p[ob]_[0-9a-f]{16}$/, 'must be a payout id such as po_0123456789abcdef') })
  .strict();
const payoutActionParams = payoutParams.extend({ action: z.enum(['retry', 'cancel', 'approve', 'resolve']) }).strict();
// The note goes into the audit log (jsonb) and the payout's reason (text): neither can hold U+0000, and jsonb refuses
// an unpaired surrogate. Such a note was a 500 once the action had run (rolled back); it is a 400 now.
// eslint-disable-next-line no-control-regex -- U+0000 is matched on purpose: PostgreSQL text and jsonb cannot hold it
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const note = z
  .string()
  .trim()
  .min(1)
  .max(500)
  .refine((s) => !UNSTORABLE.test(s), 'must not contain NUL or unpaired surrogate characters')
  .optional();
const txHash = z.string().regex(/^0x[0-9a-fA-F]{64}$/, 'must be a 0x-prefixed transaction hash');
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
const conversionQuery = z
  .object({
    status: z.enum(CONVERSION_STATES).optional(),
    limit: z.coerce.number().int().min(1).max(500).default(100),
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
  z
    .object({
      outcome: z.literal('lost'),
      note: z
        .string()
        .trim()
        .min(1)
        .max(500)
        .refine((s) => !UNSTORABLE.test(s), 'must not contain NUL or unpaired surrogate characters'),
    })
    .strict(),
]);
const transferQuery = z
  .object({
    status: z.enum(TRANSFER_STATES).optional(),
    limit: z.coerce.number().int().min(1).max(500).default(100),
  })
  .strict();
const transferParams = z
  .object({ transferId: z.string().regex(/^tr_[0-9a-f]{16}$/, 'must be a transfer id such as tr_0123456789abcdef') })
  .strict();
const transferActionParams = transferParams.extend({ action: z.enum(['bump', 'cancel', 'resolve', 'retry']) }).strict();
const transferResolutionBody = z.discriminatedUnion('outcome', [
  z
    .object({
      outcome: z.literal('mined'),
      txHash: z.string().regex(/^0x[0-9a-fA-F]{64}$/, 'must be a 0x-prefixed transaction hash'),
      note,
    })
    .strict(),
  z.object({ outcome: z.literal('never_sent'), note }).strict(),
]);
const paymentParams = z.object({
  paymentId: z.string().regex(/^[1-9][0-9]{0,19}$/, 'must be a NOWPayments payment id'),
});
const paymentActionParams = paymentParams.extend({ action: z.enum(PAYMENT_ACTIONS) }).strict();
// The exact review reason the person acted on (what the dashboard showed): the action is refused if it changed since.
const paymentActionBody = z.object({ note, expectedReason: z.string().min(1).max(2000).optional() }).strict();

/** The admin API: every route behind the bearer token. */
// eslint-disable-next-line @typescript-eslint/require-await -- a Fastify plugin: registration waits for the promise it returns
export async function adminRoutes(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  // onRequest, before the body is read: without a valid token the answer is 401 whatever the body (a malformed or
  // oversized body from anyone used to get its 400/413/415 first, and was buffered and parsed unauthenticated).
  app.addHook('onRequest', deps.requireAdmin);

  app.put('/api/channels/:channelId', async (request, reply) => {
    const { channelId } = channelParams.parse(request.params);
    const input = channelInputSchema.parse(request.body ?? {});
    const actor = request.actor ?? 'unknown';
    // A strategy switch strands nothing: payments waiting on the old strategy move to the new one, in the same commit.
    let rehomed: Rehomed = { toConversion: [], toInstant: [] };
    const { channel, created, walletChanged, before } = await upsertChannel(
      deps.db,
      channelId,
      input,
      actor,
      async (trx) => {
        rehomed = await rehomeChannelPayments(trx, channelId);
      },
    );
    request.log.info({ event: created ? 'channel_created' : 'channel_updated', channelId, actor }, 'channel saved');
    if (walletChanged && before) {
      // A stolen admin token's first move would be this: an alert (at warn, whatever else is quiet), never just a log line.
      request.log.warn(
        {
          event: 'alert',
          alert: 'channel_wallet_changed',
          channelId,
          actor,
          from: {
            payoutCurrency: before.payoutCurrency,
            payoutNetwork: before.payoutNetwork,
            walletAddress: before.walletAddress,
          },
          to: {
            payoutCurrency: channel.payoutCurrency,
            payoutNetwork: channel.payoutNetwork,
            walletAddress: channel.walletAddress,
          },
          changedAt: channel.walletChangedAt,
        },
        'channel payout wallet changed',
      );
    }
    if (rehomed.toConversion.length + rehomed.toInstant.length > 0) {
      request.log.info(
        {
          event: 'channel_payments_rehomed',
          channelId,
          toConversion: rehomed.toConversion.length,
          toInstant: rehomed.toInstant.length,
        },
        "payments moved to the channel's new strategy",
      );
    }
    if (rehomed.toConversion.length > 0) deps.onThresholdCredit?.();
    // Payments that arrived before the channel existed are credited now; a lowered threshold may be crossed already.
    const credited = await releaseUnknownChannelPayments(deps.db, channelId, deps.intake);
    if (credited.length > 0)
      request.log.info(
        { event: 'unknown_channel_payments_credited', channelId, payments: credited.length },
        'payments kept for an unknown channel credited',
      );
    if (credited.includes('threshold')) deps.onThresholdCredit?.();
    await runThresholdCheck(deps.db, [channelId]);
    return reply.code(created ? 201 : 200).send({ ...channel, ...(await channelSummary(deps.db, channelId)) });
  });

  // Pay the channel's whole available USDT now, whatever its threshold.
  app.post('/api/channels/:channelId/payout', async (request, reply) => {
    const { channelId } = channelParams.parse(request.params);
    const actor = request.actor ?? 'unknown';
    try {
      const payoutId = await payChannelNow(deps.db, channelId, actor);
      if (!payoutId) return reply.code(404).send({ error: `channel ${channelId} not found` });
      request.log.warn({ event: 'channel_payout_now', channelId, payoutId, actor }, 'channel paid out now by hand');
      return reply.code(201).send(await getPayout(deps.db, payoutId));
    } catch (error) {
      if (error instanceof PayNowRefused)
        return reply.code(409).send({ error: `cannot pay channel ${channelId} now: ${error.message}` });
      throw error;
    }
  });

  app.get('/api/channels/:channelId', async (request, reply) => {
    const { channelId } = channelParams.parse(request.params);
    const channel = await getChannel(deps.db, channelId);
    if (!channel) return reply.code(404).send({ error: `channel ${channelId} not found` });
    return { ...channel, ...(await channelSummary(deps.db, channelId)) };
  });

  app.get('/api/payments/:paymentId', async (request, reply) => {
    const { paymentId } = paymentParams.parse(request.params);
    const payment = await getPayment(deps.db, paymentId);
    if (!payment) return reply.code(404).send({ error: `payment ${paymentId} not found` });
    return payment;
  });

  // credit / ignore / reverse / recheck a payment intake kept for review; each only from a reason where it is safe.
  app.post('/api/payments/:paymentId/:action', async (request, reply) => {
    const { paymentId, action } = paymentActionParams.parse(request.params);
    const { note: text, expectedReason } = paymentActionBody.parse(request.body ?? {});
    const actor = request.actor ?? 'unknown';
    try {
      const result = await applyPaymentAction(deps.db, paymentId, action, actor, deps.intake, text, expectedReason);
      if (!result) return reply.code(404).send({ error: `payment ${paymentId} not found` });
      request.log.warn(
        { event: 'payment_action', action, paymentId, actor, reason: result.reason, credited: result.credited },
        'payment in review decided by hand',
      );
      if (result.credited === 'threshold') deps.onThresholdCredit?.();
      return await getPayment(deps.db, paymentId);
    } catch (error) {
      if (error instanceof PaymentActionRefused)
        return reply.code(409).send({ error: `cannot ${action} payment ${paymentId}: ${error.message}` });
      throw error;
    }
  });

  app.get('/api/payouts', async (request) => {
    const query = payoutQuery.parse(request.query);
    return { payouts: await listPayouts(deps.db, { ...query }) };
  });

  app.get('/api/payouts/:payoutId', async (request, reply) => {
    const { payoutId } = payoutParams.parse(request.params);
    const payout = await getPayout(deps.db, payoutId);
    if (!payout) return reply.code(404).send({ error: `payout ${payoutId} not found` });
    return payout;
  });

  // retry / cancel / approve / resolve, each allowed only from a state where it is safe; kept with who and when.
  app.post('/api/payouts/:payoutId/:action', async (request, reply) => {
    const { payoutId, action } = payoutActionParams.parse(request.params);
    const resolution = action === 'resolve' ? resolutionBody.parse(request.body ?? {}) : undefined;
    const actor = request.actor ?? 'unknown';
    try {
      const result = await applyPayoutAction(deps.db, payoutId, action, actor, {
        pollDeadlineMs: deps.pollDeadlineMs,
        chain: deps.chain,
        ...(resolution && { resolution }),
      });
      if (!result) return reply.code(404).send({ error: `payout ${payoutId} not found` });
      request.log.warn(
        { event: 'payout_action', action, payoutId, actor, from: result.from, to: result.to },
        'payout changed by hand',
      );
      return await getPayout(deps.db, payoutId);
    } catch (error) {
      if (error instanceof PayoutActionInvalid) return reply.code(400).send({ error: error.message });
      if (error instanceof PayoutActionRefused)
        return reply.code(409).send({ error: `cannot ${action} payout ${payoutId}: ${error.message}` });
      throw error;
    }
  });

  app.get('/api/conversions', async (request) => {
    const query = conversionQuery.parse(request.query);
    return { conversions: await listConversions(deps.db, { ...query }) };
  });

  app.get('/api/conversions/:conversionId', async (request, reply) => {
    const { conversionId } = conversionParams.parse(request.params);
    const conversion = await getConversion(deps.db, conversionId);
    if (!conversion) return reply.code(404).send({ error: `conversion ${conversionId} not found` });
    return conversion;
  });

  // retry; resolve (received / returned / lost), confirmed on chain before anything is booked.
  app.post('/api/conversions/:conversionId/:action', async (request, reply) => {
    const { conversionId, action } = conversionActionParams.parse(request.params);
    const resolution = action === 'resolve' ? conversionResolutionBody.parse(request.body ?? {}) : undefined;
    const actor = request.actor ?? 'unknown';
    try {
      const result = resolution
        ? await resolveConversion(deps.db, deps.chain, conversionId, resolution, actor)
        : await applyConversionAction(deps.db, conversionId, 'retry', actor, { pollDeadlineMs: deps.pollDeadlineMs });
      if (!result) return reply.code(404).send({ error: `conversion ${conversionId} not found` });
      request.log.warn(
        { event: 'conversion_action', action, conversionId, actor, from: result.from, to: result.to },
        'conversion changed by hand',
      );
      return await getConversion(deps.db, conversionId);
    } catch (error) {
      if (error instanceof ConversionActionRefused || error instanceof ConversionResolveRefused)
        return reply.code(409).send({ error: `cannot ${action} conversion ${conversionId}: ${error.message}` });
      throw error;
    }
  });

  app.get('/api/transfers', async (request) => {
    const query = transferQuery.parse(request.query);
    return { transfers: await listTransfers(deps.db, { ...query }) };
  });

  app.get('/api/transfers/:transferId', async (request, reply) => {
    const { transferId } = transferParams.parse(request.params);
    const transfer = await getTransfer(deps.db, transferId);
    if (!transfer) return reply.code(404).send({ error: `transfer ${transferId} not found` });
    return transfer;
  });

  // bump / cancel / resolve are carried out by a worker (it holds the key and reads the chain): 202 with the request;
  // retry takes a transfer out of review at once.
  app.post('/api/transfers/:transferId/:action', async (request, reply) => {
    const { transferId, action } = transferActionParams.parse(request.params);
    const resolution = action === 'resolve' ? transferResolutionBody.parse(request.body ?? {}) : undefined;
    const actor = request.actor ?? 'unknown';
    try {
      const result = await applyTransferAction(deps.db, transferId, action, actor, resolution);
      if (!result) return reply.code(404).send({ error: `transfer ${transferId} not found` });
      request.log.warn(
        {
          event: 'transfer_action',
          action,
          transferId,
          actor,
          from: result.from,
          to: result.to,
          requested: result.requested,
        },
        'transfer action by hand',
      );
      return reply.code(result.requested === null ? 200 : 202).send(await getTransfer(deps.db, transferId));
    } catch (error) {
      if (error instanceof TransferActionRefused)
        return reply.code(409).send({ error: `cannot ${action} transfer ${transferId}: ${error.message}` });
      throw error;
    }
  });

  app.get('/api/supported-pairs', async () => ({ pairs: await listSupportedPairs(deps.db) }));
}
