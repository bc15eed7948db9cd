/**
 * The demo's subscribers buying, the way the platform has them buy: payrail's checkout creates the invoice
 * (POST /api/invoices with the admin token and an Idempotency-Key), then the subscriber pays it in the NOWPayments
 * simulator (POST /sim/invoices/{id}/pay), which forwards the outcome to the host wallet and sends the payment's signed
 * IPNs to the callback checkout gave it: payrail's webhook. Nothing here builds or signs an IPN.
 */
import type { Delivery, InvoicePaid, PayStatus } from '../simulators/nowpayments/index.ts';
import { formatUnits } from '../money/index.ts';
import type { Rng } from '../simulators/index.ts';
import type { DemoChannel } from './channels.ts';
import { runPaced } from './paced.ts';

/** Subscription plans in US cents; the weights make the cheap ones common, as on the platform. */
const PLANS: ReadonlyArray<{ cents: bigint; weight: number; name: string }> = [
  { cents: 500n, weight: 30, name: 'Basic, 30 days' },
  { cents: 1000n, weight: 30, name: 'Standard, 30 days' },
  { cents: 1500n, weight: 20, name: 'Premium, 30 days' },
  { cents: 2500n, weight: 12, name: 'Premium, 60 days' },
  { cents: 4900n, weight: 8, name: 'VIP, 90 days' },
];

/**
 * The orders in which NOWPayments' IPNs of a payment reach payrail, as the simulator sends them: most in order and
 * once, some with `finished` resent, some with a status arriving after a later one (its retries overtake each other).
 */
const DELIVERY_PATTERNS: ReadonlyArray<{ deliveries: readonly PayStatus[]; weight: number }> = [
  { deliveries: ['waiting', 'confirming', 'finished'], weight: 60 },
  { deliveries: ['waiting', 'confirming', 'finished', 'finished'], weight: 15 },
  { deliveries: ['waiting', 'finished', 'confirming'], weight: 10 },
  { deliveries: ['confirming', 'waiting', 'finished', 'confirming', 'finished'], weight: 15 },
];

/** How often the platform loses checkout's answer and asks again with the same Idempotency-Key. */
const LOST_ANSWER_CHANCE = 0.1;
/** Attempts at one POST /api/invoices (a timeout, a 5xx, an answer still in progress) before the purchase fails. */
const CHECKOUT_ATTEMPTS = 4;
const REQUEST_TIMEOUT_MS = 30_000;

export interface PlannedPayment {
  /** Its place in the plan: the Idempotency-Key is made from it and the seed. */
  readonly index: number;
  readonly userId: string;
  readonly channel: DemoChannel;
  readonly priceCents: bigint;
  readonly plan: string;
  /** The IPNs NOWPayments sends for it, in this order. */
  readonly deliveries: readonly PayStatus[];
  /** The platform loses checkout's first answer and asks again with the same key: it must get the same invoice. */
  readonly loseFirstAnswer: boolean;
  /**
   * The payment that carries its threshold channel over its threshold at the end of the stream: the demo makes it once
   * the channel's earlier payments are converted, so its USDT is the channel's last.
   */
  readonly closing: boolean;
}

/**
 * `count` payments over the channels, drawn from the seed. The last one of each threshold channel is an annual plan
 * worth more than its threshold on its own, bought after every other payment (the demo waits until the channel's
 * earlier payments are converted): a batch is made only when a balance reaches its threshold, so without it the last
 * few payments of a channel would (rightly) wait for more money, and the demo could not end with every payment paid out.
 */
export function planPayments(rng: Rng, channels: readonly DemoChannel[], count: number): PlannedPayment[] {
  const closers = channels.filter((c) => c.strategy === 'threshold');
  if (count < closers.length) throw new Error(`${count} payments cannot close ${closers.length} threshold channels`);
  const payments: PlannedPayment[] = [];
  const drawn = <T extends { weight: number }>(items: readonly T[]): T => {
    let roll = rng.int(
      1,
      items.reduce((sum, item) => sum + item.weight, 0),
    );
    return items.find((item) => (roll -= item.weight) <= 0) as T;
  };
  const common = () => ({
    index: payments.length,
    userId: String(6_000_000_000 + rng.int(0, 999_999_999)),
    deliveries: drawn(DELIVERY_PATTERNS).deliveries,
    loseFirstAnswer: rng.chance(LOST_ANSWER_CHANCE),
  });
  for (let i = 0; i < count - closers.length; i++) {
    const plan = drawn(PLANS);
    payments.push({
      ...common(),
      channel: rng.pick(channels),
      priceCents: plan.cents,
      plan: plan.name,
      closing: false,
    });
  }
  for (const channel of closers) {
    const threshold = channel.thresholdCents as bigint;
    // 120 % of the threshold plus 5 USD: its USDT after NOWPayments' cut, the platform fee and its share of the
    // conversion's withdrawal fee stays above the threshold.
    const cents = ((threshold * 6n) / 5n / 100n + 5n) * 100n;
    payments.push({ ...common(), channel, priceCents: cents, plan: 'Annual', closing: true });
  }
  return payments;
}

/** A purchase that did not go through: the run cannot account for that payment. */
export class PurchaseError extends Error {
  override name = 'PurchaseError';
}

export interface Purchase {
  readonly invoiceId: string;
  readonly paymentId: string;
  readonly deliveries: readonly Delivery[];
  /** Checkout's answer was asked for again with the same Idempotency-Key and replayed. */
  readonly replayed: boolean;
}

export interface Shop {
  /** payrail's base URL. */
  readonly payrailUrl: string;
  readonly adminToken: string;
  /** The NOWPayments simulator's base URL, where the subscriber pays. */
  readonly nowpaymentsUrl: string;
  /** Part of every Idempotency-Key: this run's purchases only. */
  readonly seed: number;
}

/** One subscriber's purchase: the invoice from payrail's checkout, paid in the NOWPayments simulator. */
export async function buy(shop: Shop, payment: PlannedPayment): Promise<Purchase> {
  const key = `demo-${shop.seed}-purchase-${payment.index}`;
  const body = JSON.stringify({
    channelId: payment.channel.id,
    userId: payment.userId,
    priceUsd: formatUnits(payment.priceCents, 2, { fixed: true }),
    description: payment.plan,
  });
  const first = await createInvoice(shop, key, body);
  let replayed = false;
  if (payment.loseFirstAnswer) {
    // The platform never saw that answer: it asks again with the same key, and must be handed the same invoice.
    const again = await createInvoice(shop, key, body);
    if (again.invoiceId !== first.invoiceId || !again.replayed)
      throw new PurchaseError(
        `POST /api/invoices asked again with Idempotency-Key ${key} answered invoice ${again.invoiceId}${again.replayed ? '' : ' (not a replay)'}, the first answer was invoice ${first.invoiceId}`,
      );
    replayed = true;
  }
  const paid = await payInvoice(shop, first.invoiceId, payment.deliveries);
  const refused = paid.deliveries.find((d) => d.answer === null || d.answer < 200 || d.answer > 299);
  if (refused)
    throw new PurchaseError(
      `payrail answered the ${refused.status} IPN of payment ${paid.paymentId} (invoice ${first.invoiceId}) with ${refused.answer ?? `no answer: ${refused.error ?? 'unknown error'}`}`,
    );
  return { invoiceId: first.invoiceId, paymentId: paid.paymentId, deliveries: paid.deliveries, replayed };
}

/**
 * POST /api/invoices, retried with the same Idempotency-Key while the answer may still come (no answer, a 5xx, the
 * first call still in progress): a retry can never make a second invoice. Anything else is the purchase's end.
 */
async function createInvoice(shop: Shop, key: string, body: string): Promise<{ invoiceId: string; replayed: boolean }> {
  let last = '';
  for (let attempt = 1; attempt <= CHECKOUT_ATTEMPTS; attempt++) {
    if (attempt > 1) await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** (attempt - 2)));
    let res: Response;
    try {
      res = await fetch(`${shop.payrailUrl}/api/invoices`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${shop.adminToken}`,
          'content-type': 'application/json',
          'idempotency-key': key,
        },
        body,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (error) {
      last = `no answer: ${(error as Error).message}`;
      continue;
    }
    const text = await res.text();
    if (res.status === 201) {
      const invoice = JSON.parse(text) as { invoiceId?: unknown };
      if (typeof invoice.invoiceId !== 'string')
        throw new PurchaseError(`POST /api/invoices answered 201 without an invoiceId: ${text.slice(0, 300)}`);
      return { invoiceId: invoice.invoiceId, replayed: res.headers.get('idempotent-replayed') === 'true' };
    }
    last = `${res.status}: ${text.slice(0, 300)}`;
    if (res.status !== 409 && res.status < 500) break;
  }
  throw new PurchaseError(`POST /api/invoices (Idempotency-Key ${key}) answered ${last}`);
}

/** The subscriber pays: the simulator answers once every IPN it sent for the payment has had payrail's answer. */
async function payInvoice(shop: Shop, invoiceId: string, deliveries: readonly PayStatus[]): Promise<InvoicePaid> {
  let res: Response;
  try {
    res = await fetch(`${shop.nowpaymentsUrl}/sim/invoices/${invoiceId}/pay`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ deliveries }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (error) {
    throw new PurchaseError(`paying invoice ${invoiceId} in the NOWPayments simulator: ${(error as Error).message}`);
  }
  const text = await res.text();
  if (res.status !== 200)
    throw new PurchaseError(
      `paying invoice ${invoiceId} in the NOWPayments simulator answered ${res.status}: ${text.slice(0, 300)}`,
    );
  return JSON.parse(text) as InvoicePaid;
}

export interface BuyOptions {
  /** Purchases under way at once. */
  concurrency: number;
  /** At most this many purchases started per second (a steady stream); unset: as fast as they complete. */
  perSecond?: number;
  /** A reason to stop buying (interrupted, deadline): the run ends with PurchaseError. */
  stopped?: () => string | undefined;
  /** Told as each purchase begins (after its wait for the pace). */
  onStart?: () => void;
  /** Told of each purchase as it completes. */
  onPurchase?: (purchase: Purchase) => void;
}

export interface BuyOutcome {
  firstStartedAt: number;
  lastDoneAt: number;
}

/** Every payment bought once, paced; the first failure stops the rest and ends with PurchaseError. */
export async function buyAll(
  shop: Shop,
  payments: readonly PlannedPayment[],
  options: BuyOptions,
): Promise<BuyOutcome> {
  const concurrency = Math.min(options.concurrency, payments.length);
  const { firstStartedAt, failure } = await runPaced(payments.length, { ...options, concurrency }, async (index) => {
    options.onStart?.();
    try {
      options.onPurchase?.(await buy(shop, payments[index] as PlannedPayment));
      return undefined;
    } catch (error) {
      return error instanceof PurchaseError ? error.message : `a purchase failed: ${(error as Error).message}`;
    }
  });
  if (failure !== undefined) throw new PurchaseError(failure);
  return { firstStartedAt, lastDoneAt: Date.now() };
}

/** What the simulator sent, for the summary. */
export interface DeliveryTally {
  purchases: number;
  /** IPNs the simulator sent payrail. */
  ipns: number;
  /** Copies of a status already sent for the same payment. */
  copies: number;
  /** IPNs sent after one with a later status of the same payment. */
  late: number;
  /** Checkout answers asked for again with the same Idempotency-Key (and replayed). */
  replays: number;
}

const RANK: Record<string, number> = { waiting: 1, confirming: 2, confirmed: 3, sending: 4, finished: 5 };

export function emptyTally(): DeliveryTally {
  return { purchases: 0, ipns: 0, copies: 0, late: 0, replays: 0 };
}

export function tallyPurchase(tally: DeliveryTally, purchase: Purchase): void {
  tally.purchases += 1;
  if (purchase.replayed) tally.replays += 1;
  const seen = new Set<string>();
  let highest = 0;
  for (const { status } of purchase.deliveries) {
    tally.ipns += 1;
    const rank = RANK[status] ?? 0;
    if (seen.has(status)) tally.copies += 1;
    else if (rank < highest) tally.late += 1;
    seen.add(status);
    highest = Math.max(highest, rank);
  }
}
