/**
 * A NOWPayments API simulator over real HTTP: GET /v1/payment/{payment_id} (header x-api-key) answered from the
 * payments it was told about, the way NOWPayments answers from its books. Amounts leave as JSON numbers, as
 * NOWPayments sends them, written from their exact text (never a float).
 *
 * It learns a payment by POST /sim/payments (the payment as NOWPayments holds it: an IPN body's fields), or in
 * process through addPayment. Told another amount, status or currency than the IPN payrail receives, it disagrees
 * with that IPN, as NOWPayments would with a forged one. Faults: down (connection refused), 5xx, slow.
 *
 * Checkout: POST /v1/invoice (header x-api-key) creates an invoice; POST /sim/invoices/{id}/pay has a subscriber pay
 * it, which sends its signed IPNs to the invoice's ipn_callback_url and books the payment (invoices.ts).
 */
import fs from 'node:fs';
import type http from 'node:http';
import { isLosslessNumber, LosslessNumber, parse as parseLossless, stringify } from 'lossless-json';
import { DEFAULT_PAIRS } from '../changenow/pricing.ts';
import { HttpError, jsonApi, LocalServer, sleepUnlessGone, type Answer } from '../http.ts';
import { invoiceBook, PAY_STATUSES, type InvoicePaid, type PayOptions, type PayStatus } from './invoices.ts';

export type NowPaymentsFault = 'none' | 'down' | '5xx' | 'slow';
const FAULTS: readonly NowPaymentsFault[] = ['none', 'down', '5xx', 'slow'];

/** Fields NOWPayments writes as JSON numbers. */
const NUMBER_FIELDS = [
  'payment_id',
  'invoice_id',
  'parent_payment_id',
  'purchase_id',
  'price_amount',
  'pay_amount',
  'actually_paid',
  'outcome_amount',
];

export interface NowPaymentsSimulatorOptions {
  port: number;
  apiKey: string;
  /**
   * Keeps the payments it was told about in this file (a local run: next to the database), so a restarted payrail
   * still finds NOWPayments knowing the payments it took before, as the real one would.
   */
  statePath?: string;
  /** Where the invoices it created are kept (a local run: next to the database); default: in memory only. */
  invoicesPath?: string;
  /** The account's IPN secret: paying an invoice signs its IPNs with it. Unset: invoices cannot be paid. */
  ipnSecret?: string;
  /**
   * NOWPayments forwarding a paid invoice's outcome (wei) to the merchant's wallet, before its `finished` IPN: on the
   * local chain, so the host wallet holds what payrail credits. Unset: nothing is forwarded.
   */
  forwardOutcome?: (wei: bigint) => Promise<void>;
  /** USD per ETH for paid invoices; default: the ChangeNow simulator's ETH rate, so both price ETH alike. */
  ethUsd?: string;
  /** The first payment id a paid invoice gets (above every payment already held); default 5300000000. */
  firstPaymentId?: bigint;
}

export interface NowPaymentsSimulator {
  readonly url: string;
  /** Payments by id, as they are served (numbers as LosslessNumber). */
  readonly payments: Map<string, Record<string, unknown>>;
  /**
   * Registers (or replaces) a payment: an IPN body (object or its exact JSON text), with `overrides` applied on top
   * (another outcome_amount, payment_status or outcome_currency makes the API disagree with that IPN).
   */
  addPayment(body: Record<string, unknown> | string, overrides?: Record<string, unknown>): string;
  setFault(fault: NowPaymentsFault, options?: { slowMs?: number }): Promise<void>;
  /** GET /v1/payment calls that reached the simulator (answered or refused), since it started. */
  readonly calls: () => number;
  /** Invoices by id, as they were answered. */
  readonly invoices: Map<string, Record<string, unknown>>;
  /** POST /v1/invoice calls that reached the simulator (answered or refused), since it started. */
  readonly invoiceCalls: () => number;
  /** The next invoice is answered with these fields in place of its own (null: answer faithfully again). */
  answerNextInvoiceWith(overrides: Record<string, unknown> | null): void;
  /** A subscriber pays the invoice: its IPNs are sent in `deliveries` order (POST /sim/invoices/{id}/pay). */
  payInvoice(invoiceId: string, options?: PayOptions): Promise<InvoicePaid>;
  stop(): Promise<void>;
}

export async function startNowPaymentsSimulator(options: NowPaymentsSimulatorOptions): Promise<NowPaymentsSimulator> {
  const payments = new Map<string, Record<string, unknown>>();
  if (options.statePath && fs.existsSync(options.statePath)) {
    // One payment per line, in the order they were told; a later line for the same id replaces the earlier one.
    for (const line of fs.readFileSync(options.statePath, 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      const payment = parseLossless(line) as Record<string, unknown>;
      payments.set(
        isLosslessNumber(payment.payment_id) ? payment.payment_id.value : String(payment.payment_id),
        payment,
      );
    }
  }
  const save = (payment: Record<string, unknown>) => {
    if (options.statePath) fs.appendFileSync(options.statePath, `${stringify(payment) ?? ''}\n`);
  };
  let fault: NowPaymentsFault = 'none';
  let slowMs = 2_000;
  let calls = 0;
  let invoiceCalls = 0;

  const addPayment = (body: Record<string, unknown> | string, overrides: Record<string, unknown> = {}): string => {
    const parsed: unknown = typeof body === 'string' ? parseLossless(body) : body;
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
      throw new HttpError(400, 'bad_request', 'a payment must be a JSON object');
    const payment: Record<string, unknown> = { ...(parsed as Record<string, unknown>), ...overrides };
    for (const field of NUMBER_FIELDS) {
      const value = payment[field];
      // Numeric text becomes a JSON number written exactly as given; anything else is served as it came.
      if (typeof value === 'string' && /^(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(value))
        payment[field] = new LosslessNumber(value);
      else if (typeof value === 'number') payment[field] = new LosslessNumber(String(value));
    }
    // eslint-disable-next-line @typescript-eslint/no-base-to-string -- any JSON value becomes text as String() writes it, on purpose: the check below decides
    const id = isLosslessNumber(payment.payment_id) ? payment.payment_id.value : String(payment.payment_id ?? '');
    if (!/^[1-9][0-9]{0,19}$/.test(id))
      throw new HttpError(400, 'bad_request', 'payment_id must be a positive integer');
    const now = new Date().toISOString();
    const stored = { order_description: null, purchase_id: null, created_at: now, ...payment, updated_at: now };
    payments.set(id, stored);
    save(stored);
    return id;
  };

  const routes = async (req: http.IncomingMessage, res: http.ServerResponse, body: string): Promise<Answer> => {
    const url = new URL(req.url ?? '/', 'http://sim');
    if (url.pathname.startsWith('/sim/')) return simRoute(req.method ?? 'GET', url, body, res);
    const creating = req.method === 'POST' && /^\/v1\/invoice\/?$/.test(url.pathname);
    const match = /^\/v1\/payment\/([^/]+)\/?$/.exec(url.pathname);
    if (!creating && (req.method !== 'GET' || !match))
      throw new HttpError(404, 'NOT_FOUND', `no route ${req.method} ${url.pathname}`);
    if (creating) invoiceCalls += 1;
    else calls += 1;
    if (req.headers['x-api-key'] !== options.apiKey) throw new HttpError(403, 'INVALID_API_KEY', 'Invalid api key');
    if (fault === '5xx') throw new HttpError(503, 'SERVICE_UNAVAILABLE', 'Service temporarily unavailable');
    if (fault === 'slow') {
      await sleepUnlessGone(slowMs, res);
      if (res.destroyed) throw new HttpError(499, 'client_closed', 'client closed the request');
    }
    if (creating) return [200, book.create(body)];
    const payment = payments.get(decodeURIComponent(match?.[1] ?? ''));
    if (!payment) throw new HttpError(404, 'PAYMENT_NOT_FOUND', 'Payment not found');
    return [200, payment];
  };

  const simRoute = async (
    method: string,
    url: URL,
    body: string,
    res: http.ServerResponse,
  ): Promise<[number, unknown]> => {
    if (method === 'POST' && url.pathname === '/sim/payments') {
      let parsed: unknown;
      try {
        parsed = parseLossless(body || 'null');
      } catch {
        throw new HttpError(400, 'bad_request', 'body must be JSON');
      }
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
        throw new HttpError(400, 'bad_request', 'body must be a payment (a JSON object, as an IPN body)');
      const id = addPayment(parsed as Record<string, unknown>);
      return [200, payments.get(id)];
    }
    if (method === 'GET' && url.pathname === '/sim/payments') return [200, { payments: [...payments.values()] }];
    if (method === 'GET' && url.pathname === '/sim/invoices') return [200, { invoices: [...book.invoices.values()] }];
    const paying = /^\/sim\/invoices\/([1-9][0-9]{0,19})\/pay$/.exec(url.pathname);
    if (method === 'POST' && paying) return [200, await book.pay(paying[1] as string, readPayOptions(body))];
    if (method === 'POST' && url.pathname === '/sim/fault') {
      let input: { fault?: unknown; slowMs?: unknown };
      try {
        input = JSON.parse(body || '{}') as typeof input;
      } catch {
        throw new HttpError(400, 'bad_request', 'body must be JSON');
      }
      if (input === null || typeof input !== 'object')
        throw new HttpError(400, 'bad_request', 'body must be a JSON object');
      if (input.fault !== undefined && !FAULTS.includes(input.fault as NowPaymentsFault))
        throw new HttpError(400, 'bad_request', `fault must be one of ${FAULTS.join(', ')}`);
      if (input.slowMs !== undefined && !(Number.isInteger(input.slowMs) && (input.slowMs as number) >= 0))
        throw new HttpError(400, 'bad_request', 'slowMs must be a whole number of ms');
      if (input.slowMs !== undefined) slowMs = input.slowMs as number;
      const next = input.fault as NowPaymentsFault | undefined;
      if (next === 'down') {
        // Going down closes every connection, this one included: answer first, then close.
        res.once('finish', () => void control.setFault('down'));
        return [200, { fault: 'down' }];
      }
      if (next !== undefined) await control.setFault(next);
      return [200, { fault, slowMs }];
    }
    throw new HttpError(404, 'not_found', `no route ${method} ${url.pathname}`);
  };

  let nextPaymentId = options.firstPaymentId ?? 5_300_000_000n;
  const book = invoiceBook({
    url: () => server.url,
    ...(options.ipnSecret !== undefined && { ipnSecret: options.ipnSecret }),
    ...(options.forwardOutcome && { forwardOutcome: options.forwardOutcome }),
    ethUsd: options.ethUsd ?? (DEFAULT_PAIRS['eth/eth->usdt/eth'] as { rate: string }).rate,
    ...(options.invoicesPath && { statePath: options.invoicesPath }),
    firstInvoiceId: 4_700_000_000n,
    nextPaymentId: () => {
      // Above every payment held, those a restarted simulator read back included: a payment id is never given twice.
      for (const id of payments.keys()) if (BigInt(id) >= nextPaymentId) nextPaymentId = BigInt(id) + 1n;
      return String(nextPaymentId++);
    },
    addPayment: (payment) => void addPayment(payment),
  });

  const server = new LocalServer();
  const api = jsonApi({
    route: routes,
    errorBody: (status, code, message) => ({ status: false, statusCode: status, code, message }),
    internalCode: 'INTERNAL_ERROR',
  });
  await server.listen(api, options.port);

  const control: NowPaymentsSimulator = {
    url: server.url,
    payments,
    addPayment,
    calls: () => calls,
    invoices: book.invoices,
    invoiceCalls: () => invoiceCalls,
    answerNextInvoiceWith: (overrides) => book.answerNextWith(overrides),
    payInvoice: (id, payOptions) => book.pay(id, payOptions),
    async setFault(next, opts = {}) {
      if (opts.slowMs !== undefined) slowMs = opts.slowMs;
      if (next === 'down' && fault !== 'down') await server.close();
      if (next !== 'down' && fault === 'down') await server.reopen();
      fault = next;
    },
    async stop() {
      if (fault !== 'down') await server.close();
    },
  };
  return control;
}

/** POST /sim/invoices/{id}/pay's body: `{"deliveries": ["waiting", "confirming", "finished", …]}`, or none. */
function readPayOptions(body: string): PayOptions {
  let input: unknown;
  try {
    input = JSON.parse(body || '{}');
  } catch {
    throw new HttpError(400, 'bad_request', 'body must be JSON');
  }
  if (input === null || typeof input !== 'object' || Array.isArray(input))
    throw new HttpError(400, 'bad_request', 'body must be a JSON object');
  const { deliveries, ...rest } = input as { deliveries?: unknown };
  if (Object.keys(rest).length > 0)
    throw new HttpError(400, 'bad_request', `unknown field ${Object.keys(rest)[0] as string}: only deliveries`);
  if (deliveries === undefined) return {};
  if (
    !Array.isArray(deliveries) ||
    deliveries.length === 0 ||
    deliveries.length > 20 ||
    !deliveries.every((d) => PAY_STATUSES.includes(d as PayStatus))
  )
    throw new HttpError(400, 'bad_request', `deliveries must be 1 to 20 of ${PAY_STATUSES.join(', ')}`);
  return { deliveries: deliveries as PayStatus[] };
}
