/**
 * Traffic into payrail as NOWPayments sends it: `finished` IPNs, signed, over HTTP. Shared by the demo (a seeded plan
 * of subscription payments, paced) and bench/pipeline.ts (pre-signed bodies, as fast as it can), together with the
 * conversion check a driver queues while payments wait below the batch minimum.
 */
import { LosslessNumber, parse, stringify } from 'lossless-json';
import type pg from 'pg';
import { canonicalIpnJson, signIpn } from '../integrations/nowpayments/index.ts';
import { formatUnits, parseUnits } from '../money/index.ts';
import { CONVERSION_BATCH_QUEUE } from '../pipeline/conversion/run.ts';
import type { Rng } from '../simulators/index.ts';
import type { DemoChannel } from './channels.ts';

export interface SignedIpn {
  readonly paymentId: string;
  readonly raw: string;
  readonly signature: string;
}

// ---------------------------------------------------------------------------------------------------------------
// The demo's payments

/** Subscription plans in US cents; the weights make the cheap ones common, as on the platform. */
const PLANS: ReadonlyArray<{ cents: bigint; weight: number; name: string }> = [
  { cents: 500n, weight: 30, name: 'Basic, 30 days' },
  { cents: 1000n, weight: 30, name: 'Standard, 30 days' },
  { cents: 1500n, weight: 20, name: 'Premium, 30 days' },
  { cents: 2500n, weight: 12, name: 'Premium, 60 days' },
  { cents: 4900n, weight: 8, name: 'VIP, 90 days' },
];
/** NOWPayments' own cut between what the subscriber paid and the outcome it forwards: 0.5 %, in thousandths. */
const NOWPAYMENTS_FEE_PER_MILLE = 5n;
/** NOWPayments states ETH amounts to 8 decimals: 10^10 wei. */
const ETH_STEP_WEI = 10n ** 10n;
const FIRST_PAYMENT_ID = 5_100_000_000n;

export interface PlannedPayment {
  readonly paymentId: string;
  readonly userId: string;
  readonly channel: DemoChannel;
  readonly priceCents: bigint;
  readonly plan: string;
  /**
   * The payment that carries its threshold channel over its threshold at the end of the stream: the demo sends it once
   * the channel's earlier payments are converted, so its USDT is the channel's last.
   */
  readonly closing: boolean;
}

/**
 * `count` payments over the channels, drawn from the seed. The last one of each threshold channel is an annual plan
 * worth more than its threshold on its own, sent after every other payment (the demo waits until the channel's
 * earlier payments are converted): a batch is made only when a balance reaches its threshold, so without it the last
 * few payments of a channel would (rightly) wait for more money, and the demo could not end with every payment paid out.
 */
export function planPayments(rng: Rng, channels: readonly DemoChannel[], count: number): PlannedPayment[] {
  const closers = channels.filter((c) => c.strategy === 'threshold');
  if (count < closers.length) throw new Error(`${count} payments cannot close ${closers.length} threshold channels`);
  const totalWeight = PLANS.reduce((sum, p) => sum + p.weight, 0);
  const payments: PlannedPayment[] = [];
  const userId = () => String(6_000_000_000 + rng.int(0, 999_999_999));
  const id = () => (FIRST_PAYMENT_ID + BigInt(payments.length)).toString();
  for (let i = 0; i < count - closers.length; i++) {
    let roll = rng.int(1, totalWeight);
    const plan = PLANS.find((p) => (roll -= p.weight) <= 0) as (typeof PLANS)[number];
    payments.push({
      paymentId: id(),
      userId: userId(),
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
    payments.push({ paymentId: id(), userId: userId(), channel, priceCents: cents, plan: 'Annual', closing: true });
  }
  return payments;
}

/** The ETH amounts of a payment priced in USD at `ethUsd` (USD per ETH, a decimal string), in wei. */
export function ethAmounts(priceCents: bigint, ethUsd: string): { payWei: bigint; outcomeWei: bigint } {
  // Cents × 10^18 wei / (USD per ETH × 100), with the rate scaled to an integer first: rounded down, then to 8 decimals.
  const rateMicros = parseUnits(ethUsd, 6);
  const exactWei = (priceCents * 10n ** 18n * 10n ** 6n) / (rateMicros * 100n);
  const payWei = exactWei - (exactWei % ETH_STEP_WEI);
  // NOWPayments' cut rounded up to its 8 decimals, so the outcome never exceeds what was paid minus the cut.
  const cut =
    ((payWei * NOWPAYMENTS_FEE_PER_MILLE + 1000n * ETH_STEP_WEI - 1n) / (1000n * ETH_STEP_WEI)) * ETH_STEP_WEI;
  return { payWei, outcomeWei: payWei - cut };
}

/**
 * A `finished` IPN for the payment, in NOWPayments' shape. Amounts are JSON numbers as NOWPayments sends them, each
 * written from its exact decimal text (lossless-json), never through a JavaScript number.
 */
export function finishedIpnBody(payment: PlannedPayment, ethUsd: string, at: Date): Record<string, unknown> {
  const { payWei, outcomeWei } = ethAmounts(payment.priceCents, ethUsd);
  const eth = (wei: bigint) => new LosslessNumber(formatUnits(wei, 18));
  const usd = (cents: bigint) => new LosslessNumber(formatUnits(cents, 2));
  const time = at.toISOString();
  return {
    payment_id: new LosslessNumber(payment.paymentId),
    invoice_id: new LosslessNumber((BigInt(payment.paymentId) - 550_000_000n).toString()),
    payment_status: 'finished',
    pay_address: '0x4a2B8f7cE21c0fE1d5C6b0B1e6A0aB3f9c8D7e21',
    price_amount: usd(payment.priceCents),
    price_currency: 'usd',
    pay_amount: eth(payWei),
    actually_paid: eth(payWei),
    actually_paid_at_fiat: usd(payment.priceCents),
    pay_currency: 'eth',
    order_id: `PGP-${payment.userId}|${payment.channel.id}`,
    order_description: payment.plan,
    purchase_id: payment.paymentId,
    created_at: time,
    updated_at: time,
    outcome_amount: eth(outcomeWei),
    outcome_currency: 'eth',
    fee: {
      currency: 'eth',
      depositFee: new LosslessNumber('0'),
      withdrawalFee: eth(payWei - outcomeWei),
      serviceFee: new LosslessNumber('0'),
    },
  };
}

/** The body as sent, signed as NOWPayments signs: HMAC-SHA512 over the JSON with keys sorted, numbers as written. */
export function signIpnBody(paymentId: string, body: Record<string, unknown>, secret: string): SignedIpn {
  const raw = stringify(body);
  if (raw === undefined) throw new Error(`IPN for payment ${paymentId} cannot be serialized`);
  return { paymentId, raw, signature: signIpn(canonicalIpnJson(parse(raw)), secret) };
}

// ---------------------------------------------------------------------------------------------------------------
// Sending

/** An IPN that did not get its 200: the run cannot account for that payment. */
export class IpnSendError extends Error {
  override name = 'IpnSendError';
}

export interface SendOutcome {
  firstSentAt: number;
  lastAnsweredAt: number;
  /** Latency of every request in ms, ascending. */
  latencies: Float64Array;
}

export interface SendOptions {
  /** Requests in flight, each on its own keep-alive connection (fetch's pool). */
  concurrency: number;
  /** At most this many IPNs started per second (a steady stream); unset: as fast as answers come. */
  perSecond?: number;
  /** A reason to stop sending (interrupted, deadline): the send ends with IpnSendError. */
  stopped?: () => string | undefined;
}

/**
 * Sends every body once to `url` (payrail's /webhooks/nowpayments). Anything but a 200 stops the sending with
 * IpnSendError carrying the status and the body: every payment sent must be accounted for.
 */
export async function sendIpns(url: string, bodies: SignedIpn[], options: SendOptions): Promise<SendOutcome> {
  const latencies = new Float64Array(bodies.length);
  let nextIndex = 0;
  let failure: string | undefined;
  const firstSentAt = Date.now();
  const worker = async () => {
    for (;;) {
      failure ??= options.stopped?.();
      if (failure !== undefined) return;
      const index = nextIndex++;
      const body = bodies[index];
      if (body === undefined) return;
      bodies[index] = undefined as unknown as SignedIpn; // let a sent body be collected
      if (options.perSecond !== undefined) {
        const due = firstSentAt + (index * 1000) / options.perSecond;
        if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
      }
      const started = performance.now();
      let status: number;
      let text: string;
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-nowpayments-sig': body.signature },
          body: body.raw,
          signal: AbortSignal.timeout(30_000),
        });
        status = res.status;
        text = await res.text();
      } catch (error) {
        failure ??= `IPN for payment ${body.paymentId} failed: ${(error as Error).message}${(error as Error).cause ? ` (${String((error as Error).cause)})` : ''}`;
        return;
      }
      latencies[index] = performance.now() - started;
      if (status !== 200) {
        failure ??= `IPN for payment ${body.paymentId} answered ${status}, not 200: ${text.slice(0, 300)}`;
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  if (failure !== undefined) throw new IpnSendError(failure);
  return { firstSentAt, lastAnsweredAt: Date.now(), latencies: latencies.sort() };
}

/**
 * Queues a conversion check now unless one is queued or running: what intake's nudge does, for payments left below
 * CONVERSION_MIN_USD once the IPNs stop (payrail's own cron looks only every CONVERSION_INTERVAL, a minute at
 * least). The same key, key mode and queue as the nudge, so it never adds a second concurrent check.
 * Returns whether it queued one.
 */
export async function queueConversionCheck(pool: pg.Pool): Promise<boolean> {
  const { rowCount } = await pool.query(
    `select graphile_worker.add_job('conversion_batch', '{}'::json, queue_name => '${CONVERSION_BATCH_QUEUE}', max_attempts => 1, job_key => 'conversion_batch:nudge', job_key_mode => 'preserve_run_at')
     where not exists (select 1 from graphile_worker.jobs where task_identifier = 'conversion_batch' and (attempts < max_attempts or locked_at is not null))`,
  );
  return (rowCount ?? 0) > 0;
}
