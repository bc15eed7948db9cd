/**
 * NOWPayments' own word on a payment: GET /v1/payment/{payment_id} with the account's API key. An IPN is only a signed
 * message, and whoever holds the IPN secret can sign one; the API answers from NOWPayments' books. Amounts arrive as
 * JSON numbers and are read as their exact source text (lossless-json), never through a JavaScript number.
 */
import { isLosslessNumber, parse } from 'lossless-json';
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

export interface NowPaymentsApi {
  getPayment(paymentId: string): Promise<PaymentLookup>;
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
  const base = options.baseUrl.replace(/\/+$/, '');
  return {
    async getPayment(paymentId) {
      if (!/^[1-9][0-9]{0,19}$/.test(paymentId)) throw new Error(`not a NOWPayments payment id: ${paymentId}`);
      let response;
      try {
        response = await transport({
          method: 'GET',
          url: new URL(`${base}/v1/payment/${paymentId}`),
          headers: { [NOWPAYMENTS_API_KEY_HEADER]: options.apiKey, accept: 'application/json' },
          body: null,
        });
      } catch (error) {
        if (error instanceof TransportError) return { kind: 'unavailable', detail: `${error.reason}: ${error.detail}` };
        return { kind: 'unavailable', detail: (error as Error).message };
      }
      const text = Buffer.from(response.bytes).toString('utf8');
      if (response.status === 404) return { kind: 'not_found', detail: `404 ${clip(text)}` };
      if (response.status !== 200)
        return {
          kind: 'unavailable',
          detail: `HTTP ${response.status}${response.status === 401 || response.status === 403 ? ' (is NOWPAYMENTS_API_KEY right?)' : ''}: ${clip(text)}`,
        };
      const read = readPayment(text);
      if (typeof read === 'string') return { kind: 'unavailable', detail: `unreadable answer: ${read}` };
      if (read.paymentId !== paymentId)
        return { kind: 'unavailable', detail: `answer is about payment ${read.paymentId}, not ${paymentId}` };
      return { kind: 'found', payment: read };
    },
  };
}

/** The fields payrail compares, or why the body is not a payment. */
export function readPayment(text: string): ApiPayment | string {
  let parsed: unknown;
  try {
    parsed = parse(text);
  } catch (error) {
    return `not JSON: ${(error as Error).message}`;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed) || isLosslessNumber(parsed))
    return 'not a JSON object';
  const body = parsed as Record<string, unknown>;
  const id = numberOrString(body.payment_id);
  if (id === null || !/^[1-9][0-9]{0,19}$/.test(id)) return 'payment_id missing or not a positive integer';
  if (typeof body.payment_status !== 'string' || body.payment_status === '') return 'payment_status missing';
  let outcomeAmount: string | null = null;
  if (body.outcome_amount !== null && body.outcome_amount !== undefined) {
    const raw = numberOrString(body.outcome_amount);
    outcomeAmount = raw === null ? null : normaliseAmount(raw);
    if (outcomeAmount === null) return 'outcome_amount is not a non-negative number';
  }
  const outcomeCurrency =
    typeof body.outcome_currency === 'string' && body.outcome_currency !== ''
      ? body.outcome_currency.toLowerCase()
      : null;
  const orderId = typeof body.order_id === 'string' && body.order_id !== '' ? body.order_id : null;
  return { paymentId: id, status: body.payment_status.toLowerCase(), outcomeAmount, outcomeCurrency, orderId };
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
