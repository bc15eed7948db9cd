import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import {
  orderIdFor,
  ORDER_CHANNEL_ID_RE,
  ORDER_USER_ID_RE,
  type ApiInvoice,
  type InvoiceCreation,
  type NowPaymentsApi,
} from '../../../integrations/nowpayments/index.ts';
import { formatUnits, parseUnits } from '../../../money/index.ts';
import { route, shapes } from '../../openapi/index.ts';
import { actorOf, note, notFound, type AdminDeps } from './shared.ts';

/** What checkout needs besides the database: NOWPayments' API and where NOWPayments is to send the IPNs. */
export interface CheckoutDeps {
  /** NOWPayments' API with the account's key; undefined without NOWPAYMENTS_API_KEY (checkout is then refused). */
  readonly api: NowPaymentsApi | undefined;
  /** The API's base URL: when it is on this machine, payrail's own listening address is one it can reach. */
  readonly apiUrl: string;
  /** PUBLIC_URL: the IPN address is this plus /webhooks/nowpayments. */
  readonly publicUrl: string | undefined;
}

// Admin deps are declared in shared.ts for every module; checkout's own part is declared with the route that uses it.
declare module './shared.ts' {
  interface AdminDeps {
    /** POST /api/invoices; unset: checkout is refused as unconfigured. */
    checkout?: CheckoutDeps;
  }
}

/** A subscription's price, not a treasury movement: anything above this is a typo (or worse), not a sale. */
const MAX_PRICE_CENTS = 10_000_000n;
const MAX_PRICE_TEXT = formatUnits(MAX_PRICE_CENTS, 2);

const invoiceBody = z
  .object({
    channelId: z
      .string({ error: 'must be a Telegram chat id as a string, such as "-1003296084379"' })
      .regex(ORDER_CHANNEL_ID_RE, 'must be a Telegram chat id such as -1003296084379'),
    userId: z
      .string({ error: 'must be a Telegram user id as a string, such as "6271402111"' })
      .regex(ORDER_USER_ID_RE, 'must be a Telegram user id: a positive whole number such as "6271402111"'),
    priceUsd: z
      .string({ error: 'must be US dollars as a string, such as "9.99" (never a JSON number)' })
      .regex(/^(0|[1-9][0-9]{0,8})(\.[0-9]{1,2})?$/, 'must be US dollars with at most 2 decimals, such as "9.99"')
      .transform((text) => parseUnits(text, 2))
      .refine((cents) => cents > 0n, 'must be more than 0')
      .refine((cents) => cents <= MAX_PRICE_CENTS, `must be at most ${MAX_PRICE_TEXT}`),
    description: note,
    successUrl: z
      .url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' })
      .max(2000, 'must be at most 2000 characters')
      .optional(),
  })
  .strict();

const invoiceCreated = z.object({
  invoiceId: z.string(),
  invoiceUrl: z.string(),
  orderId: z.string(),
  channelId: z.string(),
  userId: z.string(),
  priceUsd: shapes.decimal,
});

/** POST /api/invoices: a NOWPayments invoice that pays into a channel for a user, with payrail's order id. */
export function invoiceRoutes(app: FastifyInstance, deps: AdminDeps): void {
  // Declared in full, unlike the reads (../reads.ts): a write's answers, refusals and log lines are its own.
  route(app, {
    method: 'POST',
    path: '/api/invoices',
    tag: 'checkout',
    auth: 'admin',
    summary: "A NOWPayments invoice paying into a channel for a user, with payrail's order id and IPN address",
    body: { schema: invoiceBody, required: false },
    responses: {
      201: { description: 'Created at NOWPayments and stored: where the subscriber pays.', schema: invoiceCreated },
      400: { description: 'A bad field.', schema: shapes.errorBody },
      404: { description: 'No such channel.', schema: shapes.errorBody },
      409: { description: 'The channel has no wallet to pay out to yet.', schema: shapes.errorBody },
      502: {
        description: 'NOWPayments refused, failed, or answered another invoice than asked: nothing stored.',
        schema: shapes.errorBody,
      },
      503: {
        description: 'Checkout is not configured: NOWPAYMENTS_API_KEY, or PUBLIC_URL for a remote NOWPayments.',
        schema: shapes.errorBody,
      },
    },
    handler: async ({ body: input }, request, reply) => createInvoice(app, deps, input, request, reply),
  });
}

type InvoiceInput = z.output<typeof invoiceBody>;

/** What the invoice is asked for, and by whom: the log lines' fields and the row's. */
interface Order {
  readonly channelId: string;
  readonly userId: string;
  /** Fixed to 2 decimals, as NOWPayments is asked and the row keeps it. */
  readonly priceUsd: string;
  readonly orderId: string;
  readonly actor: string;
}

/**
 * Checkout's setup (503), the channel (404, or 409 without a wallet), NOWPayments' answer (502 unless it created the
 * invoice asked for), then the invoice kept (502 for an id already held): 201 with where the subscriber pays.
 */
async function createInvoice(
  app: FastifyInstance,
  deps: AdminDeps,
  input: InvoiceInput,
  request: FastifyRequest,
  reply: FastifyReply,
) {
  const setup = checkoutSetup(deps.checkout, app);
  if ('error' in setup) return reply.code(503).send({ error: setup.error });
  const { channelId, userId } = input;
  const refusal = await channelRefusal(deps, channelId);
  if (refusal === 'missing') return notFound(reply, `channel ${channelId}`);
  if (refusal === 'walletless')
    return reply.code(409).send({
      error: `channel ${channelId} has no wallet to pay out to: save its walletAddress first (PUT /api/channels/${channelId})`,
    });

  const priceUsd = formatUnits(input.priceUsd, 2, { fixed: true });
  const order: Order = { channelId, userId, priceUsd, orderId: orderIdFor(userId, channelId), actor: actorOf(request) };
  const answer = await askNowPayments(setup.api, input, order, setup.ipnCallbackUrl);
  // Nothing is stored unless NOWPayments created the invoice asked for: a refused or unreadable answer has no
  // invoice to keep, and a mismatched one must not be handed out (its payments would carry another price or order),
  // so a row for it would be one nobody may use. The log line names it for whoever looks NOWPayments' side up.
  if (answer.kind !== 'created') return refuseNotCreated(request, reply, answer, order);

  const { invoice } = answer;
  const stored = await keepInvoice(deps, invoice, input, order, setup.ipnCallbackUrl);
  if (!stored) return refuseDuplicate(request, reply, invoice, order);
  request.log.info(
    { event: 'invoice_created', invoiceId: invoice.invoiceId, channelId, userId, priceUsd, actor: order.actor },
    'NOWPayments invoice created',
  );
  return reply.code(201).send({
    invoiceId: invoice.invoiceId,
    invoiceUrl: invoice.invoiceUrl,
    orderId: order.orderId,
    channelId,
    userId,
    priceUsd: stored.price_usd,
  });
}

/** NOWPayments' API and the IPN address to give it, or why checkout cannot run (the 503's error). */
function checkoutSetup(
  checkout: CheckoutDeps | undefined,
  app: FastifyInstance,
): { api: NowPaymentsApi; ipnCallbackUrl: string } | { error: string } {
  if (checkout?.api === undefined) return { error: 'checkout needs NOWPAYMENTS_API_KEY' };
  const ipnCallbackUrl = callbackUrl(checkout, app);
  if (ipnCallbackUrl === null)
    return {
      error: `checkout needs PUBLIC_URL: NOWPayments at ${checkout.apiUrl} must be told where to send the IPNs, and payrail's listening address is reachable only from this machine`,
    };
  return { api: checkout.api, ipnCallbackUrl };
}

/** Why the channel cannot take money now (no such channel, or no wallet), or undefined when it can. */
async function channelRefusal(deps: AdminDeps, channelId: string): Promise<'missing' | 'walletless' | undefined> {
  const channel = await deps.db
    .selectFrom('channels')
    .select(['channel_id', 'wallet_address'])
    .where('channel_id', '=', channelId)
    .executeTakeFirst();
  if (!channel) return 'missing';
  // The channel exists but cannot take money yet: a conflict with its state, which saving its wallet resolves (the
  // request itself is well formed, so not a 422). Money taken now would wait in review with nowhere to go.
  if (!channel.wallet_address?.trim()) return 'walletless';
  return undefined;
}

/** The invoice asked of NOWPayments, once: price, order id and IPN address, with the description and return page. */
function askNowPayments(api: NowPaymentsApi, input: InvoiceInput, order: Order, ipnCallbackUrl: string) {
  return api.createInvoice({
    priceAmount: order.priceUsd,
    priceCurrency: 'usd',
    orderId: order.orderId,
    ...(input.description !== undefined && { orderDescription: input.description }),
    ipnCallbackUrl,
    ...(input.successUrl !== undefined && { successUrl: input.successUrl }),
  });
}

/** 502, logged with what was asked for and what NOWPayments said. */
function refuseNotCreated(
  request: FastifyRequest,
  reply: FastifyReply,
  answer: Exclude<InvoiceCreation, { kind: 'created' }>,
  { channelId, userId, orderId, actor }: Order,
) {
  request.log.error(
    {
      event: 'invoice_failed',
      kind: answer.kind,
      channelId,
      userId,
      orderId,
      actor,
      ...(answer.kind === 'mismatch' && { invoiceId: answer.invoice.invoiceId }),
      detail: answer.detail,
    },
    'NOWPayments did not create the invoice asked for',
  );
  return reply.code(502).send({ error: notCreated(answer) });
}

/** The invoice's row, with the price as stored; undefined when payrail already holds its id. */
async function keepInvoice(
  deps: AdminDeps,
  invoice: ApiInvoice,
  input: InvoiceInput,
  order: Order,
  ipnCallbackUrl: string,
) {
  return deps.db
    .insertInto('invoices')
    .values({
      invoice_id: invoice.invoiceId,
      channel_id: order.channelId,
      user_id: order.userId,
      price_usd: order.priceUsd,
      order_id: order.orderId,
      description: input.description ?? null,
      invoice_url: invoice.invoiceUrl,
      success_url: input.successUrl ?? null,
      ipn_callback_url: ipnCallbackUrl,
      created_by: order.actor,
    })
    .onConflict((oc) => oc.column('invoice_id').doNothing())
    .returning(['price_usd'])
    .executeTakeFirst();
}

function refuseDuplicate(
  request: FastifyRequest,
  reply: FastifyReply,
  invoice: ApiInvoice,
  { channelId, userId, orderId, actor }: Order,
) {
  request.log.error(
    { event: 'invoice_failed', kind: 'duplicate', invoiceId: invoice.invoiceId, channelId, userId, orderId, actor },
    'NOWPayments answered an invoice id payrail already holds',
  );
  return reply.code(502).send({
    error: `NOWPayments answered invoice ${invoice.invoiceId}, which payrail already holds for an earlier request: not handed out`,
  });
}

/** Why NOWPayments' answer is not an invoice to hand out. */
function notCreated(answer: Exclude<InvoiceCreation, { kind: 'created' }>): string {
  if (answer.kind === 'mismatch')
    return `NOWPayments answered with another invoice than asked (${answer.detail}): not handed out, nothing stored`;
  if (answer.kind === 'refused') return `NOWPayments refused the invoice: ${answer.detail}`;
  return `NOWPayments gave no invoice: ${answer.detail}`;
}

/**
 * Where NOWPayments sends the invoice's IPNs: PUBLIC_URL's webhook, or (no PUBLIC_URL, NOWPayments on this machine: a
 * local run's simulator) payrail's own listening address. Null when neither reaches payrail.
 */
function callbackUrl(checkout: CheckoutDeps, app: FastifyInstance): string | null {
  if (checkout.publicUrl !== undefined) return `${checkout.publicUrl.replace(/\/+$/, '')}/webhooks/nowpayments`;
  if (!isLoopback(new URL(checkout.apiUrl).hostname)) return null;
  const address = app.server.address();
  if (address === null || typeof address === 'string') return null;
  // Listening on every interface: the loopback one is among them.
  const host = address.address === '0.0.0.0' ? '127.0.0.1' : address.address === '::' ? '::1' : address.address;
  return `http://${host.includes(':') ? `[${host}]` : host}:${address.port}/webhooks/nowpayments`;
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(\.[0-9]{1,3}){3}$/.test(hostname);
}
