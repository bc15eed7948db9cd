/**
 * The simulator's checkout: invoices created with POST /v1/invoice, and a subscriber paying one (a simulator-only
 * action). Paying sends the payment's IPNs to the invoice's ipn_callback_url, signed as NOWPayments signs them, in the
 * order the caller asks for (NOWPayments resends, and its copies can arrive out of order), and keeps the payment in
 * the simulator's books as it progresses, so GET /v1/payment/{id} answers what the latest status says.
 */
import { isLosslessNumber, LosslessNumber, parse as parseLossless, stringify } from 'lossless-json';
import { normaliseAmount } from '../../integrations/changenow/amount.ts';
import { canonicalIpnJson, signIpn } from '../../integrations/nowpayments/index.ts';
import { formatUnits, parseUnits } from '../../money/index.ts';
import { HttpError } from '../http.ts';
import { appendJsonLine, readJsonLines } from './state-file.ts';

/** The statuses a paying subscriber's payment goes through, in NOWPayments' order. */
export const PAY_STATUSES = ['waiting', 'confirming', 'confirmed', 'sending', 'finished'] as const;
export type PayStatus = (typeof PAY_STATUSES)[number];
/** waiting → confirming → finished, then a late copy of confirming (out of order) and a second finished (a resend). */
export const DEFAULT_DELIVERIES: readonly PayStatus[] = ['waiting', 'confirming', 'finished', 'confirming', 'finished'];

/** NOWPayments' cut between what the subscriber paid and the outcome it forwards: 0.5 %, in thousandths. */
const FEE_PER_MILLE = 5n;
/** NOWPayments states ETH amounts to 8 decimals: 10^10 wei. */
const ETH_STEP_WEI = 10n ** 10n;
/** Fiat prices are taken to 8 decimals at most. */
const MAX_PRICE_DECIMALS = 8;
const PAY_ADDRESS = '0x4a2B8f7cE21c0fE1d5C6b0B1e6A0aB3f9c8D7e21';
const DELIVERY_TIMEOUT_MS = 15_000;

export interface InvoiceBookOptions {
  /** The simulator's base URL: invoice_url points at it. */
  url: () => string;
  ipnSecret?: string;
  /** NOWPayments forwarding a finished payment's outcome (wei) to the merchant's wallet, done before `finished`. */
  forwardOutcome?: (wei: bigint) => Promise<void>;
  /** USD per ETH, a decimal string. */
  ethUsd: string;
  /** One invoice per line; a restarted simulator keeps the invoices it created. */
  statePath?: string;
  firstInvoiceId: bigint;
  /** The next payment id to give a paid invoice (the server knows the payments already held). */
  nextPaymentId: () => string;
  /** Registers the payment in the simulator's books, as GET /v1/payment/{id} serves it. */
  addPayment: (body: Record<string, unknown>) => void;
}

export interface PayOptions {
  /** The IPNs to send, in this order; default DEFAULT_DELIVERIES. */
  deliveries?: readonly PayStatus[];
}

export interface Delivery {
  readonly status: PayStatus;
  /** payrail's HTTP status, or null when no answer came (then `error`). */
  readonly answer: number | null;
  readonly error?: string;
}

export interface InvoicePaid {
  readonly invoiceId: string;
  readonly paymentId: string;
  readonly orderId: string | null;
  readonly payAmount: string;
  readonly outcomeAmount: string;
  readonly outcomeCurrency: 'eth';
  /** Whether the outcome reached the merchant's wallet before `finished` (false: no chain to forward on). */
  readonly outcomeForwarded: boolean;
  readonly deliveries: readonly Delivery[];
}

export interface InvoiceBook {
  readonly invoices: Map<string, Record<string, unknown>>;
  /** POST /v1/invoice: the invoice as NOWPayments answers it. */
  create(body: string): Record<string, unknown>;
  /** The next created invoice is answered with these fields in place of its own (null: answer faithfully again). */
  answerNextWith(overrides: Record<string, unknown> | null): void;
  pay(invoiceId: string, options?: PayOptions): Promise<InvoicePaid>;
}

/** What the book holds: the invoices it made, which are paid, and what the next one gets. */
interface BookState {
  readonly options: InvoiceBookOptions;
  readonly invoices: Map<string, Record<string, unknown>>;
  /** Invoice id → the payment that paid it. */
  readonly paid: Map<string, string>;
  nextInvoiceId: bigint;
  misanswer: Record<string, unknown> | null;
}

export function invoiceBook(options: InvoiceBookOptions): InvoiceBook {
  const state = loadBook(options);
  return {
    invoices: state.invoices,
    create: (text) => createInvoice(state, text),
    answerNextWith(overrides) {
      state.misanswer = overrides;
    },
    pay: (invoiceId, payOptions) => payInvoice(state, invoiceId, payOptions),
  };
}

function loadBook(options: InvoiceBookOptions): BookState {
  const state: BookState = {
    options,
    invoices: new Map(),
    paid: new Map(),
    nextInvoiceId: options.firstInvoiceId,
    misanswer: null,
  };
  for (const line of readJsonLines(options.statePath)) {
    // A later line for the same invoice (its payment) replaces the earlier one.
    const { paid_by_payment_id: paidBy, ...invoice } = line;
    const id = String(invoice.id);
    state.invoices.set(id, invoice);
    if (typeof paidBy === 'string') state.paid.set(id, paidBy);
    if (BigInt(id) >= state.nextInvoiceId) state.nextInvoiceId = BigInt(id) + 1n;
  }
  return state;
}

function createInvoice(state: BookState, text: string): Record<string, unknown> {
  const { body, price } = readInvoiceRequest(text);
  const optional = (field: string) => optionalText(body, field);
  const id = String(state.nextInvoiceId++);
  const now = new Date().toISOString();
  const invoice: Record<string, unknown> = {
    id,
    token_id: String(BigInt(id) + 1_000_000_000n),
    order_id: optional('order_id'),
    order_description: optional('order_description'),
    price_amount: price,
    price_currency: body.price_currency,
    pay_currency: null,
    ipn_callback_url: optional('ipn_callback_url'),
    invoice_url: `${state.options.url()}/payment/?iid=${id}`,
    success_url: optional('success_url'),
    cancel_url: optional('cancel_url'),
    customer_email: null,
    partially_paid_url: null,
    payout_currency: null,
    created_at: now,
    updated_at: now,
    is_fixed_rate: false,
    is_fee_paid_by_user: false,
    ...state.misanswer,
  };
  state.misanswer = null;
  state.invoices.set(id, invoice);
  appendJsonLine(state.options.statePath, invoice);
  return invoice;
}

/** POST /v1/invoice's body, refused as NOWPayments refuses it; the price comes back as an exact decimal. */
function readInvoiceRequest(text: string): { body: Record<string, unknown>; price: string } {
  let parsed: unknown;
  try {
    parsed = parseLossless(text || 'null');
  } catch {
    throw new HttpError(400, 'INVALID_REQUEST_PARAMS', 'body must be JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed) || isLosslessNumber(parsed))
    throw new HttpError(400, 'INVALID_REQUEST_PARAMS', 'body must be a JSON object');
  const body = parsed as Record<string, unknown>;
  const rawPrice = isLosslessNumber(body.price_amount)
    ? body.price_amount.value
    : typeof body.price_amount === 'string'
      ? body.price_amount
      : null;
  const price = rawPrice === null ? null : normaliseAmount(rawPrice);
  if (price === null || !/[1-9]/.test(price) || (price.split('.')[1] ?? '').length > MAX_PRICE_DECIMALS)
    throw new HttpError(400, 'INVALID_REQUEST_PARAMS', '"price_amount" must be a positive number');
  if (typeof body.price_currency !== 'string' || !/^[a-zA-Z]{3,10}$/.test(body.price_currency))
    throw new HttpError(400, 'INVALID_REQUEST_PARAMS', '"price_currency" is required');
  return { body, price };
}

function optionalText(body: Record<string, unknown>, field: string): string | null {
  const value = body[field];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') throw new HttpError(400, 'INVALID_REQUEST_PARAMS', `"${field}" must be a string`);
  return value;
}

async function payInvoice(state: BookState, invoiceId: string, payOptions: PayOptions = {}): Promise<InvoicePaid> {
  const { invoice, secret, callback } = payable(state, invoiceId);
  const paymentId = state.options.nextPaymentId();
  state.paid.set(invoiceId, paymentId);
  appendJsonLine(state.options.statePath, { ...invoice, paid_by_payment_id: paymentId });
  const price = String(invoice.price_amount);
  const amounts = ethAmounts(price, state.options.ethUsd);
  const payment: PaymentFacts = {
    invoiceId,
    paymentId,
    invoice,
    price,
    ...amounts,
    createdAt: new Date().toISOString(),
  };

  let booked = -1;
  let forwarded = false;
  const sent: Delivery[] = [];
  for (const status of payOptions.deliveries ?? DEFAULT_DELIVERIES) {
    const rank = PAY_STATUSES.indexOf(status);
    const body = paymentBody(payment, status);
    // NOWPayments' books move forward only: a late copy of an earlier status is sent, but the payment stays ahead.
    if (rank > booked) {
      if (status === 'finished' && state.options.forwardOutcome) {
        await state.options.forwardOutcome(amounts.outcomeWei);
        forwarded = true;
      }
      state.options.addPayment(body);
      booked = rank;
    }
    sent.push(await deliver(callback, body, secret, status));
  }
  return {
    invoiceId,
    paymentId,
    orderId: typeof invoice.order_id === 'string' ? invoice.order_id : null,
    payAmount: formatUnits(amounts.payWei, 18),
    outcomeAmount: formatUnits(amounts.outcomeWei, 18),
    outcomeCurrency: 'eth',
    outcomeForwarded: forwarded,
    deliveries: sent,
  };
}

/** The invoice, if it can be paid now: it exists, has somewhere to send IPNs, the IPNs can be signed, none paid it. */
function payable(
  state: BookState,
  invoiceId: string,
): { invoice: Record<string, unknown>; secret: string; callback: string } {
  const invoice = state.invoices.get(invoiceId);
  if (!invoice) throw new HttpError(404, 'not_found', `no invoice ${invoiceId}`);
  const secret = state.options.ipnSecret;
  if (secret === undefined)
    throw new HttpError(409, 'conflict', 'the simulator was started without the IPN secret: it cannot sign IPNs');
  const callback = typeof invoice.ipn_callback_url === 'string' ? invoice.ipn_callback_url : null;
  if (callback === null) throw new HttpError(409, 'conflict', `invoice ${invoiceId} has no ipn_callback_url`);
  const before = state.paid.get(invoiceId);
  if (before !== undefined)
    throw new HttpError(409, 'conflict', `invoice ${invoiceId} is paid already (payment ${before})`);
  return { invoice, secret, callback };
}

/** What stays the same across a payment's IPNs. */
interface PaymentFacts {
  readonly invoiceId: string;
  readonly paymentId: string;
  readonly invoice: Record<string, unknown>;
  readonly price: string;
  readonly payWei: bigint;
  readonly outcomeWei: bigint;
  readonly createdAt: string;
}

/** The payment at `status`, as its IPN body and as GET /v1/payment/{id} serves it. */
function paymentBody(payment: PaymentFacts, status: PayStatus): Record<string, unknown> {
  const { invoice, price, payWei, outcomeWei } = payment;
  const eth = (wei: bigint) => new LosslessNumber(formatUnits(wei, 18));
  const received = status !== 'waiting';
  return {
    payment_id: new LosslessNumber(payment.paymentId),
    invoice_id: new LosslessNumber(payment.invoiceId),
    payment_status: status,
    pay_address: PAY_ADDRESS,
    price_amount: new LosslessNumber(price),
    price_currency: String(invoice.price_currency).toLowerCase(),
    pay_amount: eth(payWei),
    actually_paid: eth(received ? payWei : 0n),
    actually_paid_at_fiat: new LosslessNumber(received ? price : '0'),
    pay_currency: 'eth',
    order_id: invoice.order_id,
    order_description: invoice.order_description,
    purchase_id: String(BigInt(payment.paymentId) + 700_000_000n),
    created_at: payment.createdAt,
    updated_at: new Date().toISOString(),
    outcome_amount: eth(outcomeWei),
    outcome_currency: 'eth',
    payin_hash: null,
    payout_hash: null,
    fee: {
      currency: 'eth',
      depositFee: new LosslessNumber('0'),
      withdrawalFee: eth(payWei - outcomeWei),
      serviceFee: new LosslessNumber('0'),
    },
  };
}

/** The body as sent, signed over its canonical JSON (keys sorted, numbers as written) with the IPN secret. */
async function deliver(
  url: string,
  body: Record<string, unknown>,
  secret: string,
  status: PayStatus,
): Promise<Delivery> {
  const raw = stringify(body) as string;
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-nowpayments-sig': signIpn(canonicalIpnJson(parseLossless(raw)), secret),
      },
      body: raw,
      signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
    });
    await res.arrayBuffer();
    return { status, answer: res.status };
  } catch (error) {
    return { status, answer: null, error: (error as Error).message };
  }
}

/**
 * The ETH a subscriber pays for `priceUsd` at `ethUsd` (rounded down to NOWPayments' 8 decimals), and the outcome
 * after NOWPayments' cut (rounded up to 8 decimals, so the outcome never exceeds what was paid minus the cut).
 */
export function ethAmounts(priceUsd: string, ethUsd: string): { payWei: bigint; outcomeWei: bigint } {
  const exactWei = (parseUnits(priceUsd, 18) * 10n ** 18n) / parseUnits(ethUsd, 18);
  const payWei = exactWei - (exactWei % ETH_STEP_WEI);
  const cut = ((payWei * FEE_PER_MILLE + 1000n * ETH_STEP_WEI - 1n) / (1000n * ETH_STEP_WEI)) * ETH_STEP_WEI;
  return { payWei, outcomeWei: payWei - cut };
}
