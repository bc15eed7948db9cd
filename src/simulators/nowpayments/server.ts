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
import type http from 'node:http';
import { isLosslessNumber, LosslessNumber, parse as parseLossless } from 'lossless-json';
import { DEFAULT_PAIRS } from '../changenow/pricing.ts';
import { HttpError, jsonApi, LocalServer, readFaultBody, sleepUnlessGone, type Answer } from '../http.ts';
import {
  invoiceBook,
  PAY_STATUSES,
  type InvoiceBook,
  type InvoicePaid,
  type PayOptions,
  type PayStatus,
} from './invoices.ts';
import { appendJsonLine, readJsonLines } from './state-file.ts';

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

/** The simulator's books and settings, which its routes and its in-process control share. */
interface SimState {
  readonly options: NowPaymentsSimulatorOptions;
  readonly payments: Map<string, Record<string, unknown>>;
  readonly server: LocalServer;
  readonly book: InvoiceBook;
  fault: NowPaymentsFault;
  slowMs: number;
  calls: number;
  invoiceCalls: number;
}

export async function startNowPaymentsSimulator(options: NowPaymentsSimulatorOptions): Promise<NowPaymentsSimulator> {
  const payments = loadPayments(options.statePath);
  const server = new LocalServer();
  const book = openInvoiceBook(options, payments, server);
  const state: SimState = { options, payments, server, book, fault: 'none', slowMs: 2_000, calls: 0, invoiceCalls: 0 };
  const api = jsonApi({
    route: (req, res, body) => route(state, req, res, body),
    errorBody: (status, code, message) => ({ status: false, statusCode: status, code, message }),
    internalCode: 'INTERNAL_ERROR',
  });
  await server.listen(api, options.port);
  return {
    url: server.url,
    payments,
    addPayment: (body, overrides) => addPayment(state, body, overrides),
    calls: () => state.calls,
    invoices: book.invoices,
    invoiceCalls: () => state.invoiceCalls,
    answerNextInvoiceWith: (overrides) => book.answerNextWith(overrides),
    payInvoice: (id, payOptions) => book.pay(id, payOptions),
    setFault: (next, opts) => setFault(state, next, opts),
    async stop() {
      if (state.fault !== 'down') await server.close();
    },
  };
}

/** The payments an earlier run kept, by id; a later line for the same id replaces the earlier one. */
function loadPayments(statePath: string | undefined): Map<string, Record<string, unknown>> {
  const payments = new Map<string, Record<string, unknown>>();
  for (const payment of readJsonLines(statePath)) {
    payments.set(isLosslessNumber(payment.payment_id) ? payment.payment_id.value : String(payment.payment_id), payment);
  }
  return payments;
}

function openInvoiceBook(
  options: NowPaymentsSimulatorOptions,
  payments: Map<string, Record<string, unknown>>,
  server: LocalServer,
): InvoiceBook {
  let nextPaymentId = options.firstPaymentId ?? 5_300_000_000n;
  return invoiceBook({
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
    addPayment: (payment) => void addPayment({ options, payments }, payment),
  });
}

function addPayment(
  state: Pick<SimState, 'options' | 'payments'>,
  body: Record<string, unknown> | string,
  overrides: Record<string, unknown> = {},
): string {
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
  if (!/^[1-9][0-9]{0,19}$/.test(id)) throw new HttpError(400, 'bad_request', 'payment_id must be a positive integer');
  const now = new Date().toISOString();
  const stored = { order_description: null, purchase_id: null, created_at: now, ...payment, updated_at: now };
  state.payments.set(id, stored);
  appendJsonLine(state.options.statePath, stored);
  return id;
}

async function setFault(state: SimState, next: NowPaymentsFault, opts: { slowMs?: number } = {}): Promise<void> {
  if (opts.slowMs !== undefined) state.slowMs = opts.slowMs;
  if (next === 'down' && state.fault !== 'down') await state.server.close();
  if (next !== 'down' && state.fault === 'down') await state.server.reopen();
  state.fault = next;
}

async function route(
  state: SimState,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  body: string,
): Promise<Answer> {
  const url = new URL(req.url ?? '/', 'http://sim');
  if (url.pathname.startsWith('/sim/')) return simRoute(state, req.method ?? 'GET', url, body, res);
  const creating = req.method === 'POST' && /^\/v1\/invoice\/?$/.test(url.pathname);
  const match = /^\/v1\/payment\/([^/]+)\/?$/.exec(url.pathname);
  if (!creating && (req.method !== 'GET' || !match))
    throw new HttpError(404, 'NOT_FOUND', `no route ${req.method} ${url.pathname}`);
  if (creating) state.invoiceCalls += 1;
  else state.calls += 1;
  await meetFault(state, req, res);
  if (creating) return [200, state.book.create(body)];
  const payment = state.payments.get(decodeURIComponent(match?.[1] ?? ''));
  if (!payment) throw new HttpError(404, 'PAYMENT_NOT_FOUND', 'Payment not found');
  return [200, payment];
}

/** What every API call meets before it is answered: the key check, then the fault set (5xx, slow). */
async function meetFault(state: SimState, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  if (req.headers['x-api-key'] !== state.options.apiKey) throw new HttpError(403, 'INVALID_API_KEY', 'Invalid api key');
  if (state.fault === '5xx') throw new HttpError(503, 'SERVICE_UNAVAILABLE', 'Service temporarily unavailable');
  if (state.fault === 'slow') {
    await sleepUnlessGone(state.slowMs, res);
    if (res.destroyed) throw new HttpError(499, 'client_closed', 'client closed the request');
  }
}

async function simRoute(
  state: SimState,
  method: string,
  url: URL,
  body: string,
  res: http.ServerResponse,
): Promise<[number, unknown]> {
  if (method === 'POST' && url.pathname === '/sim/payments') return [200, postSimPayment(state, body)];
  if (method === 'GET' && url.pathname === '/sim/payments') return [200, { payments: [...state.payments.values()] }];
  if (method === 'GET' && url.pathname === '/sim/invoices')
    return [200, { invoices: [...state.book.invoices.values()] }];
  const paying = /^\/sim\/invoices\/([1-9][0-9]{0,19})\/pay$/.exec(url.pathname);
  if (method === 'POST' && paying) return [200, await state.book.pay(paying[1] as string, readPayOptions(body))];
  if (method === 'POST' && url.pathname === '/sim/fault') return [200, await postSimFault(state, body, res)];
  throw new HttpError(404, 'not_found', `no route ${method} ${url.pathname}`);
}

/** POST /sim/payments: the payment as NOWPayments holds it (an IPN body), answered as GET /v1/payment serves it. */
function postSimPayment(state: SimState, body: string): Record<string, unknown> | undefined {
  let parsed: unknown;
  try {
    parsed = parseLossless(body || 'null');
  } catch {
    throw new HttpError(400, 'bad_request', 'body must be JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new HttpError(400, 'bad_request', 'body must be a payment (a JSON object, as an IPN body)');
  const id = addPayment(state, parsed as Record<string, unknown>);
  return state.payments.get(id);
}

async function postSimFault(state: SimState, body: string, res: http.ServerResponse): Promise<unknown> {
  const input = readFaultBody(body, FAULTS);
  if (input.slowMs !== undefined) state.slowMs = input.slowMs;
  if (input.fault === 'down') {
    // Going down closes every connection, this one included: answer first, then close.
    res.once('finish', () => void setFault(state, 'down'));
    return { fault: 'down' };
  }
  if (input.fault !== undefined) await setFault(state, input.fault);
  return { fault: state.fault, slowMs: state.slowMs };
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
