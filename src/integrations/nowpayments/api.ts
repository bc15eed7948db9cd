/**
 * NOWPayments' API with the account's key: its own word on a payment (GET /v1/payment/{payment_id}), and checkout's
 * invoices (POST /v1/invoice). An IPN is only a signed message, and whoever holds the IPN secret can sign one; the API
 * answers from NOWPayments' books. Amounts travel as JSON numbers and are read and written as their exact source text
 * (lossless-json), never through a JavaScript number.
 */
import { isLosslessNumber, LosslessNumber, parse, stringify } from 'lossless-json';
import { normaliseAmount } from '../changenow/amount.ts';
import { nodeTransport, TransportError, type Transport } from '../changenow/transport.ts';

export const NOWPAYMENTS_API_KEY_HEADER = 'x-api-key';

/** What the API says about a payment, the fields payrail compares with the IPN. */
export interface ApiPayment {
  readonly paymentId: string;
  /** As NOWPayments writes it (lowercase); a status payrail does not know is kept as text and simply disagrees. */
  readonly status: string;
  /** Exact plain decimal text, or null when the API gives none. */
  readonly outcomeAmount: string | null;
  readonly outcomeCurrency: string | null;
  /** Compared only when the API returns it. */
  readonly orderId: string | null;
}

export type PaymentLookup =
  | { readonly kind: 'found'; readonly payment: ApiPayment }
  /** NOWPayments answered that it has no such payment. */
  | { readonly kind: 'not_found'; readonly detail: string }
  /** No usable answer: unreachable, too slow, 5xx, rate-limited, our key refused, or a body that cannot be read. */
  | { readonly kind: 'unavailable'; readonly detail: string };

/** What checkout asks NOWPayments for: a hosted payment page whose IPNs carry `orderId` to `ipnCallbackUrl`. */
export interface InvoiceRequest {
  /** Exact plain decimal text, sent as a JSON number written from that text. */
  readonly priceAmount: string;
  readonly priceCurrency: string;
  readonly orderId: string;
  readonly orderDescription?: string;
  readonly ipnCallbackUrl: string;
  readonly successUrl?: string;
}

/** The invoice as NOWPayments answered it: the fields payrail keeps and those it compares with what it asked. */
export interface ApiInvoice {
  readonly invoiceId: string;
  readonly invoiceUrl: string;
  /** Canonical plain decimal (no trailing zeros), or null when the answer gives none. */
  readonly priceAmount: string | null;
  /** Lowercase, or null when the answer gives none. */
  readonly priceCurrency: string | null;
  readonly orderId: string | null;
  readonly ipnCallbackUrl: string | null;
}

// Shaped like PaymentLookup, but a refused invoice and a payment NOWPayments does not know call for different actions.
export type InvoiceCreation =
  | { readonly kind: 'created'; readonly invoice: ApiInvoice }
  /** NOWPayments refused the request (a 4xx: our key, or a field it did not accept). */
  | { readonly kind: 'refused'; readonly detail: string }
  /** No usable answer: unreachable, too slow, 5xx, rate-limited, or a body that is not an invoice. */
  | { readonly kind: 'unavailable'; readonly detail: string }
  /** An invoice, but not the one asked for (another price, currency, order or IPN address): not to be handed out. */
  | { readonly kind: 'mismatch'; readonly invoice: ApiInvoice; readonly detail: string };

export interface NowPaymentsApi {
  getPayment(paymentId: string): Promise<PaymentLookup>;
  /** POST /v1/invoice once (never retried here: a second call would be a second invoice). */
  createInvoice(request: InvoiceRequest): Promise<InvoiceCreation>;
}

export interface NowPaymentsApiOptions {
  baseUrl: string;
  apiKey: string;
  timeoutMs: number;
  /** Tests and instrumentation; default: the undici transport with a connect and a whole-response deadline. */
  transport?: Transport;
}

export function createNowPaymentsApi(options: NowPaymentsApiOptions): NowPaymentsApi {
  const transport =
    options.transport ??
    nodeTransport({ connectTimeoutMs: Math.min(5_000, options.timeoutMs), responseTimeoutMs: options.timeoutMs });
  const account: Account = { transport, base: options.baseUrl.replace(/\/+$/, ''), apiKey: options.apiKey };
  return {
    getPayment: (paymentId) => getPayment(account, paymentId),
    createInvoice: (request) => createInvoice(account, request),
  };
}

interface Account {
  readonly transport: Transport;
  /** The API's address without a trailing slash. */
  readonly base: string;
  readonly apiKey: string;
}

async function getPayment(account: Account, paymentId: string): Promise<PaymentLookup> {
  if (!/^[1-9][0-9]{0,19}$/.test(paymentId)) throw new Error(`not a NOWPayments payment id: ${paymentId}`);
  const answer = await send(account, 'GET', `/v1/payment/${paymentId}`, {}, null);
  if ('kind' in answer) return answer;
  return paymentAnswer(answer, paymentId);
}

function paymentAnswer({ status, text }: Answer, paymentId: string): PaymentLookup {
  if (status === 404) return { kind: 'not_found', detail: `404 ${clip(text)}` };
  if (status !== 200)
    return {
      kind: 'unavailable',
      detail: `HTTP ${status}${status === 401 || status === 403 ? ' (is NOWPAYMENTS_API_KEY right?)' : ''}: ${clip(text)}`,
    };
  const read = readPayment(text);
  if (typeof read === 'string') return { kind: 'unavailable', detail: `unreadable answer: ${read}` };
  if (read.paymentId !== paymentId)
    return { kind: 'unavailable', detail: `answer is about payment ${read.paymentId}, not ${paymentId}` };
  return { kind: 'found', payment: read };
}

async function createInvoice(account: Account, request: InvoiceRequest): Promise<InvoiceCreation> {
  const price = normaliseAmount(request.priceAmount);
  if (price === null) throw new Error(`not a price: ${request.priceAmount}`);
  const body = invoiceBody(request);
  const answer = await send(account, 'POST', '/v1/invoice', { 'content-type': 'application/json' }, body);
  if ('kind' in answer) return answer;
  return invoiceAnswer(answer, request, price);
}

function invoiceBody(request: InvoiceRequest): string {
  return stringify({
    price_amount: new LosslessNumber(request.priceAmount),
    price_currency: request.priceCurrency,
    order_id: request.orderId,
    ...(request.orderDescription !== undefined && { order_description: request.orderDescription }),
    ipn_callback_url: request.ipnCallbackUrl,
    ...(request.successUrl !== undefined && { success_url: request.successUrl }),
  }) as string;
}

function invoiceAnswer({ status, text }: Answer, request: InvoiceRequest, price: string): InvoiceCreation {
  if (status === 401 || status === 403)
    return { kind: 'refused', detail: `HTTP ${status} (is NOWPAYMENTS_API_KEY right?): ${clip(text)}` };
  if (status >= 400 && status < 500 && status !== 429)
    return { kind: 'refused', detail: `HTTP ${status}: ${clip(text)}` };
  if (status !== 200 && status !== 201) return { kind: 'unavailable', detail: `HTTP ${status}: ${clip(text)}` };
  const invoice = readInvoice(text);
  if (typeof invoice === 'string') return { kind: 'unavailable', detail: `unreadable answer: ${invoice}` };
  const differences = invoiceDifferences(invoice, request, price);
  if (differences.length > 0)
    return { kind: 'mismatch', invoice, detail: `invoice ${invoice.invoiceId} has ${differences.join('; ')}` };
  return { kind: 'created', invoice };
}

/** Where the invoice NOWPayments made is not the one asked for. */
function invoiceDifferences(invoice: ApiInvoice, request: InvoiceRequest, price: string): string[] {
  return [
    invoice.priceAmount !== price && `price_amount ${invoice.priceAmount ?? '(none)'}, not ${price}`,
    invoice.priceCurrency !== request.priceCurrency.toLowerCase() &&
      `price_currency ${invoice.priceCurrency ?? '(none)'}, not ${request.priceCurrency}`,
    invoice.orderId !== request.orderId && `order_id ${invoice.orderId ?? '(none)'}, not ${request.orderId}`,
    // An answer may leave it out; one that names another address sends this invoice's IPNs elsewhere.
    invoice.ipnCallbackUrl !== null &&
      invoice.ipnCallbackUrl !== request.ipnCallbackUrl &&
      `ipn_callback_url ${invoice.ipnCallbackUrl}, not ${request.ipnCallbackUrl}`,
  ].filter((d): d is string => typeof d === 'string');
}

/** An HTTP answer as text, whatever its status. */
interface Answer {
  readonly status: number;
  readonly text: string;
}

/** One request with the account's key; unavailable when no answer came. */
async function send(
  account: Account,
  method: 'GET' | 'POST',
  path: string,
  headers: Record<string, string>,
  body: string | null,
): Promise<Answer | { readonly kind: 'unavailable'; readonly detail: string }> {
  let response;
  try {
    response = await account.transport({
      method,
      url: new URL(`${account.base}${path}`),
      headers: { [NOWPAYMENTS_API_KEY_HEADER]: account.apiKey, accept: 'application/json', ...headers },
      body,
    });
  } catch (error) {
    if (error instanceof TransportError) return { kind: 'unavailable', detail: `${error.reason}: ${error.detail}` };
    return { kind: 'unavailable', detail: (error as Error).message };
  }
  return { status: response.status, text: Buffer.from(response.bytes).toString('utf8') };
}

/** The fields of an invoice payrail keeps and compares, or why the body is not an invoice. */
export function readInvoice(text: string): ApiInvoice | string {
  const body = readObject(text);
  if (typeof body === 'string') return body;
  const id = positiveId(body.id);
  if (id === null) return 'id missing or not a positive integer';
  if (typeof body.invoice_url !== 'string' || !isHttpUrl(body.invoice_url)) return 'invoice_url missing or not a URL';
  const priceAmount = optionalAmount(body.price_amount);
  if (priceAmount === undefined) return 'price_amount is not a non-negative number';
  return {
    invoiceId: id,
    invoiceUrl: body.invoice_url,
    priceAmount,
    priceCurrency: textOf(body.price_currency)?.toLowerCase() ?? null,
    orderId: textOf(body.order_id),
    ipnCallbackUrl: textOf(body.ipn_callback_url),
  };
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'https:' || url.protocol === 'http:';
  } catch {
    return false;
  }
}

/** The fields payrail compares, or why the body is not a payment. */
export function readPayment(text: string): ApiPayment | string {
  const body = readObject(text);
  if (typeof body === 'string') return body;
  const id = positiveId(body.payment_id);
  if (id === null) return 'payment_id missing or not a positive integer';
  if (typeof body.payment_status !== 'string' || body.payment_status === '') return 'payment_status missing';
  const outcomeAmount = optionalAmount(body.outcome_amount);
  if (outcomeAmount === undefined) return 'outcome_amount is not a non-negative number';
  return {
    paymentId: id,
    status: body.payment_status.toLowerCase(),
    outcomeAmount,
    outcomeCurrency: textOf(body.outcome_currency)?.toLowerCase() ?? null,
    orderId: textOf(body.order_id),
  };
}

/** The body as a JSON object (numbers kept as their exact text), or why it is not one. */
function readObject(text: string): Record<string, unknown> | string {
  let parsed: unknown;
  try {
    parsed = parse(text);
  } catch (error) {
    return `not JSON: ${(error as Error).message}`;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed) || isLosslessNumber(parsed))
    return 'not a JSON object';
  return parsed as Record<string, unknown>;
}

/** A NOWPayments id: a positive integer, as a JSON number or its text; null when it is anything else. */
function positiveId(value: unknown): string | null {
  const id = numberOrString(value);
  return id !== null && /^[1-9][0-9]{0,19}$/.test(id) ? id : null;
}

/** Null when absent, the exact decimal when a non-negative number, undefined when present but not one. */
function optionalAmount(value: unknown): string | null | undefined {
  if (value === null || value === undefined) return null;
  const raw = numberOrString(value);
  return (raw === null ? null : normaliseAmount(raw)) ?? undefined;
}

function textOf(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? value : null;
}

function numberOrString(value: unknown): string | null {
  if (isLosslessNumber(value)) return value.value;
  if (typeof value === 'string') return value.trim();
  return null;
}

function clip(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > 200 ? `${flat.slice(0, 200)}…` : flat;
}
