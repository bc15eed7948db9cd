/**
 * The channels of a run and the payments sent to them: signed NOWPayments IPNs in the fixtures' exact shape, with
 * duplicates and out-of-order status sequences, interleaved across payments and sent concurrently. An IPN that does
 * not get an answer (web down, database restarting) is sent again, as NOWPayments retries, within a bound. Each
 * payment's outcome is forwarded to the host wallet on chain before its first `finished` IPN, as NOWPayments does.
 */
import fs from 'node:fs';
import { isLosslessNumber, LosslessNumber, parse, stringify } from 'lossless-json';
import { formatUnits, parseUnits, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { canonicalIpnJson, signIpn } from '../src/integrations/nowpayments/index.ts';
import { sleep } from './net.ts';
import type { Rng } from './rng.ts';

const FIXTURES = new URL('../test/fixtures/nowpayments-ipn.json', import.meta.url);
const TRON_WALLET = 'TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7';
const FIRST_PAYMENT_ID = 7_000_000_000;

export type ChannelKind =
  'instant_eth_direct' | 'instant_usdt_trx' | 'threshold_usdt_eth_direct' | 'threshold_usdt_trx';
export const CHANNEL_KINDS: readonly ChannelKind[] = [
  'instant_eth_direct',
  'instant_usdt_trx',
  'threshold_usdt_eth_direct',
  'threshold_usdt_trx',
];

export interface ChaosChannel {
  id: string;
  kind: ChannelKind;
  body: Record<string, string>;
  /** Paid directly on the local chain (a fresh address per channel): its balance is checked against the payouts. */
  direct: boolean;
  wallet: string;
  /**
   * What the owner's address is on chain: a plain account, a contract wallet that needs more than 21,000 gas to
   * receive ETH (instant ETH owners), or blacklisted by LocalUSDT (a threshold USDT-on-eth owner: every transfer to it
   * would revert, so its payouts go to review). Set up by the run before any payment.
   */
  owner: 'plain' | 'contract_wallet' | 'blacklisted';
}

/**
 * `count` channels, the four kinds in turn; thresholds low enough (15–45 USD, a payment is ~13 USDT) that batches
 * happen. Some direct owners misbehave on chain (see `owner`).
 */
export function makeChannels(rng: Rng, count: number): ChaosChannel[] {
  const channels: ChaosChannel[] = [];
  for (let i = 0; i < count; i++) {
    const kind = CHANNEL_KINDS[i % CHANNEL_KINDS.length] as ChannelKind;
    const id = `-100900000${String(i).padStart(4, '0')}`;
    const fresh = privateKeyToAccount(rng.hex32()).address;
    const threshold = String(rng.pick([15, 25, 35, 45]));
    const body: Record<string, string> =
      kind === 'instant_eth_direct'
        ? { payoutStrategy: 'instant', payoutCurrency: 'eth', payoutNetwork: 'eth', walletAddress: fresh }
        : kind === 'instant_usdt_trx'
          ? { payoutStrategy: 'instant', payoutCurrency: 'usdt', payoutNetwork: 'trx', walletAddress: TRON_WALLET }
          : kind === 'threshold_usdt_eth_direct'
            ? {
                payoutStrategy: 'threshold',
                thresholdUsd: threshold,
                payoutCurrency: 'usdt',
                payoutNetwork: 'eth',
                walletAddress: fresh,
              }
            : {
                payoutStrategy: 'threshold',
                thresholdUsd: threshold,
                payoutCurrency: 'usdt',
                payoutNetwork: 'trx',
                walletAddress: TRON_WALLET,
              };
    channels.push({
      id,
      kind,
      body,
      direct: kind === 'instant_eth_direct' || kind === 'threshold_usdt_eth_direct',
      wallet: body.walletAddress as string,
      owner: 'plain',
    });
  }
  // Every second instant ETH owner is a contract wallet; one threshold USDT-on-eth owner is blacklisted when there
  // are two or more (so the run still pays some USDT directly).
  channels
    .filter((c) => c.kind === 'instant_eth_direct')
    .forEach((c, i) => {
      if (i % 2 === 1) c.owner = 'contract_wallet';
    });
  const usdtOnEth = channels.filter((c) => c.kind === 'threshold_usdt_eth_direct');
  if (usdtOnEth.length >= 2) rng.pick(usdtOnEth).owner = 'blacklisted';
  return channels;
}

type Status = 'waiting' | 'confirming' | 'finished' | 'partially_paid';
/**
 * How a message of a shape is built from the fixture of its status: as it is, or
 * - `foreign`: the outcome in a currency payrail does not credit (USDT on Tron), so nothing reaches the host wallet;
 * - `restated`: a later copy restating the outcome as another amount (one unit more in the last decimal place).
 */
type Variant = 'foreign' | 'restated';
interface Step {
  status: Status;
  variant?: Variant;
}
/** Steps of these statuses, each message as its fixture has it. */
const statuses = (...list: Status[]): Step[] => list.map((status) => ({ status }));
/**
 * Status sequences as NOWPayments may deliver them: in order, repeated, finished before confirming, never finished;
 * and the payments a person must look at: paid in part (and maybe topped up later), a foreign outcome, a restated
 * amount, a repeated deposit (a payment of its own naming an earlier one as its parent).
 */
const SHAPES: ReadonlyArray<{
  name: string;
  weight: number;
  steps: Step[];
  child?: true;
  ordered?: true;
  forged?: true;
}> = [
  { name: 'in_order', weight: 30, steps: statuses('waiting', 'confirming', 'finished') },
  { name: 'finished_twice', weight: 20, steps: statuses('waiting', 'finished', 'finished') },
  { name: 'finished_before_confirming', weight: 20, steps: statuses('finished', 'confirming') },
  {
    name: 'duplicates_shuffled',
    weight: 15,
    steps: statuses('confirming', 'waiting', 'finished', 'confirming', 'finished'),
  },
  { name: 'finished_only', weight: 10, steps: statuses('finished') },
  { name: 'never_finished', weight: 5, steps: statuses('waiting', 'confirming', 'waiting') },
  { name: 'partially_paid', weight: 3, steps: statuses('waiting', 'partially_paid') },
  { name: 'partial_then_finished', weight: 3, steps: statuses('waiting', 'partially_paid', 'finished') },
  { name: 'foreign_outcome', weight: 2, steps: [...statuses('waiting'), { status: 'finished', variant: 'foreign' }] },
  // In order: a restated copy arriving first would be credited at its amount, not at the one NOWPayments forwarded.
  {
    name: 'amount_restated',
    weight: 2,
    steps: [...statuses('finished'), { status: 'finished', variant: 'restated' }],
    ordered: true,
  },
  { name: 'repeated_deposit', weight: 3, steps: statuses('confirming', 'finished'), child: true },
  // Signed with the IPN secret (a leak) for a payment NOWPayments never had: nothing forwarded, never to be credited.
  { name: 'forged', weight: 2, steps: statuses('finished'), forged: true },
  // The same leak as a partial payment: kept for a person, whose credit must wait for NOWPayments' API like any.
  { name: 'forged_partial', weight: 1, steps: statuses('partially_paid'), forged: true },
];

/** The HTTP answers a message may get: 200 applied, 202 kept for review. */
export type Answer = 200 | 202;

export interface PlannedMessage {
  status: Status;
  raw: string;
  signature: string;
  /** What a correct intake answers (a person's credit may land between two messages: both are then right). */
  answers: readonly Answer[];
  /** A 2xx to this message means NOWPayments' report of money received was taken: the payment is acknowledged. */
  reportsMoney: boolean;
}

export interface PlannedPayment {
  paymentId: string;
  channel: ChaosChannel;
  shape: string;
  /** Its IPNs go one at a time, each after the previous one's answer. */
  ordered: boolean;
  messages: PlannedMessage[];
  /** What NOWPayments forwards to the host wallet (ETH, the last ETH outcome it reports): null if nothing. */
  outcomeWei: bigint | null;
  /** The forwarding transaction, once mined. */
  forwardTx: Hex | null;
  /**
   * The payment as NOWPayments' API reports it (its books: the IPN of the money it forwarded, else its last status),
   * registered with the NOWPayments simulator before any IPN; null for a forged payment it never had.
   */
  truth: string | null;
  /** Whether a message reporting money received was answered 2xx. */
  acknowledged: boolean;
  /** Signed with the IPN secret for a payment NOWPayments never had: never to be credited. */
  forged: boolean;
}

/** An IPN's outcome in wei, exactly from its decimal text (never through a JavaScript number). */
function outcomeWei(raw: string): bigint {
  const body = parse(raw) as { outcome_amount?: unknown; outcome_currency?: unknown };
  if (body.outcome_currency !== 'eth')
    throw new Error(`IPN fixture forwards ${String(body.outcome_currency)}, not eth`);
  const text = isLosslessNumber(body.outcome_amount) ? body.outcome_amount.value : undefined;
  if (text === undefined || !/^[0-9]+(\.[0-9]{1,18})?$/.test(text))
    throw new Error(`IPN fixture's outcome_amount ${String(text)} is not a decimal with at most 18 places`);
  return parseUnits(text, 18);
}

/** One unit more in the last decimal place of a decimal text ("0.00487" → "0.00488"), exactly. */
function restate(text: string): string {
  const places = text.split('.')[1]?.length ?? 0;
  return formatUnits(parseUnits(text, places) + 1n, places);
}

type Shape = (typeof SHAPES)[number];
type Fixture = Record<string, unknown>;

export function planPayments(rng: Rng, channels: ChaosChannel[], count: number, secret: string): PlannedPayment[] {
  const byStatus = fixturesByStatus();
  const totalWeight = SHAPES.reduce((s, x) => s + x.weight, 0);
  const payments: PlannedPayment[] = [];
  for (let i = 0; i < count; i++) {
    const channel = rng.pick(channels);
    const shape = pickShape(rng.next() * totalWeight);
    const paymentId = String(FIRST_PAYMENT_ID + i);
    // A repeated deposit names an earlier payment of the run (the first one has none to name: a payment of its own).
    const parent = shape.child && i > 0 ? String(FIRST_PAYMENT_ID + rng.int(0, i - 1)) : undefined;
    const messages = shape.steps.map((step) =>
      planMessage(step, shape, byStatus.get(step.status), { paymentId, channel, parent }, secret),
    );
    const forwarded = forwardedIpn(shape, messages);
    const truth = shape.forged ? null : (forwarded ?? (messages.at(-1) as PlannedMessage).raw);
    payments.push({
      paymentId,
      channel,
      shape: shape.name,
      ordered: shape.ordered === true,
      messages,
      outcomeWei: forwarded === undefined || shape.forged ? null : outcomeWei(forwarded),
      forwardTx: null,
      truth,
      acknowledged: false,
      forged: shape.forged === true,
    });
  }
  return payments;
}

/** The fixture IPN of each status. */
function fixturesByStatus(): Map<string, Fixture> {
  const fixtures = parse(fs.readFileSync(FIXTURES, 'utf8')) as {
    sequence: Fixture[];
    partially_paid: Fixture;
  };
  const byStatus = new Map<string, Fixture>(fixtures.sequence.map((b) => [String(b.payment_status), b]));
  byStatus.set('partially_paid', fixtures.partially_paid);
  return byStatus;
}

/** The shape a roll in [0, total weight) lands on. */
function pickShape(roll: number): Shape {
  // The assertion is for tsc: SHAPES[0] may be undefined (noUncheckedIndexedAccess).
  return SHAPES.find((s) => (roll -= s.weight) < 0) ?? (SHAPES[0] as Shape);
}

/**
 * NOWPayments forwards the last ETH outcome it reports (a partial's, then the whole on finishing); a restated copy
 * is a report, not a second forwarding.
 */
function forwardedIpn(shape: Shape, messages: readonly PlannedMessage[]): string | undefined {
  let forwarded: string | undefined;
  messages.forEach((message, i) => {
    if (message.reportsMoney && shape.steps[i]?.variant === undefined && !shape.forged) forwarded = message.raw;
  });
  return forwarded;
}

function planMessage(
  { status, variant }: Step,
  shape: Shape,
  template: Fixture | undefined,
  payment: { paymentId: string; channel: ChaosChannel; parent: string | undefined },
  secret: string,
): PlannedMessage {
  if (!template) throw new Error(`fixture has no ${status} IPN`);
  const body: Record<string, unknown> = {
    ...template,
    payment_id: new LosslessNumber(payment.paymentId),
    order_id: `PGP-77|${payment.channel.id}`,
  };
  if (payment.parent !== undefined) body.parent_payment_id = new LosslessNumber(payment.parent);
  if (variant === 'foreign')
    Object.assign(body, { outcome_currency: 'usdttrc20', outcome_amount: new LosslessNumber('14.61') });
  if (variant === 'restated')
    body.outcome_amount = new LosslessNumber(restate((template.outcome_amount as LosslessNumber).value));
  const raw = stringify(body) as string;
  const reportsMoney = status === 'finished' || status === 'partially_paid';
  const answers = expectedAnswers(shape, status, variant);
  return { status, raw, signature: signIpn(canonicalIpnJson(parse(raw)), secret), answers, reportsMoney };
}

function expectedAnswers(shape: Shape, status: Status, variant: Variant | undefined): Answer[] {
  // Kept for review: a partial (PARTIAL_PAYMENTS=review), a foreign outcome, a restated credit; and any copy that
  // arrives while its payment is in review (one payment's IPNs go concurrently unless its shape is ordered). A
  // partial arriving after its finished changes nothing (200); a finished after a partial a person credited is a
  // top-up to decide on (202).
  const reviewed =
    shape.forged === true || shape.steps.some((x) => x.variant !== undefined || x.status === 'partially_paid');
  return variant === 'foreign'
    ? [202]
    : // Restating a credit is kept for review; a copy arriving while the first waits for NOWPayments' confirmation
      // changes nothing (200): the credit is what NOWPayments' API confirms.
      variant === 'restated'
      ? [200, 202]
      : status === 'partially_paid'
        ? shape.steps.some((x) => x.status === 'finished')
          ? [200, 202]
          : [202]
        : reviewed
          ? [200, 202]
          : [200];
}

/**
 * NOWPayments forwards each payment's outcome to the host wallet before it sends `finished`: here every payment with
 * a finished IPN in its plan, mined, before the first IPN and the first fault (one key, one transaction each: a
 * default run's ~1,900 take a few seconds on their own, and interleaved with the IPNs they held every sender up
 * behind them and behind each chain fault's hold). Payments that never finish forward nothing.
 */
export async function forwardOutcomes(
  payments: PlannedPayment[],
  forward: (weis: readonly bigint[]) => Promise<Hex[]>,
): Promise<{ count: number; wei: bigint }> {
  const finishing = payments.filter((p) => p.outcomeWei !== null);
  const hashes = await forward(finishing.map((p) => p.outcomeWei as bigint));
  finishing.forEach((p, i) => {
    p.forwardTx = hashes[i] ?? null;
  });
  return { count: finishing.length, wei: finishing.reduce((sum, p) => sum + (p.outcomeWei as bigint), 0n) };
}

export interface SendStats {
  sent: number;
  retried: number;
  /** IPNs given up on after every retry (never answered 200). */
  gaveUp: string[];
  /** Answers a valid signed IPN should never get (a 4xx, or 202 where nothing calls for review, and the reverse). */
  unexpected: string[];
}

/**
 * Sends every payment's IPNs: `concurrency` senders each pick a random payment among a small window of open ones and
 * send its next message, so the statuses of one payment arrive spread out and mixed with others'. `onProgress` is
 * called with the number of payments fully sent.
 */
export async function sendPayments(
  rng: Rng,
  payments: PlannedPayment[],
  webUrl: () => string | undefined,
  options: { concurrency: number; retryForMs: number; onProgress: (done: number) => void; stopped: () => boolean },
): Promise<SendStats> {
  const stats: SendStats = { sent: 0, retried: 0, gaveUp: [], unexpected: [] };
  const queue = payments.map((p) => ({ p, next: 0, busy: false }));
  const window: typeof queue = [];
  let done = 0;
  let cursor = 0;
  const take = (): { item: (typeof queue)[number]; message: PlannedMessage; last: boolean } | 'wait' | undefined => {
    while (window.length < 24 && cursor < queue.length) window.push(queue[cursor++] as (typeof queue)[number]);
    if (window.length === 0) return undefined;
    // An ordered payment's next IPN waits for the answer to its previous one.
    const ready = window.filter((i) => !(i.p.ordered && i.busy));
    if (ready.length === 0) return 'wait';
    const item = ready[Math.floor(rng.next() * ready.length)] as (typeof queue)[number];
    const message = item.p.messages[item.next++];
    if (item.next >= item.p.messages.length) window.splice(window.indexOf(item), 1);
    if (!message) return undefined;
    item.busy = true;
    return { item, message, last: item.next >= item.p.messages.length };
  };
  const sender = async () => {
    for (;;) {
      if (options.stopped()) return;
      const next = take();
      if (next === 'wait') {
        await sleep(20);
        continue;
      }
      if (!next) return;
      const { item, message } = next;
      const status = await deliver(message, webUrl, options.retryForMs, stats);
      item.busy = false;
      stats.sent++;
      if (status === undefined) stats.gaveUp.push(`payment ${item.p.paymentId} ${message.status}`);
      else if (!(message.answers as readonly number[]).includes(status))
        stats.unexpected.push(
          `payment ${item.p.paymentId} (${item.p.shape}) ${message.status}: HTTP ${status}, expected ${message.answers.join(' or ')}`,
        );
      else if (message.reportsMoney) item.p.acknowledged = true;
      if (next.last) options.onProgress(++done);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, sender));
  return stats;
}

/** One IPN until it gets a final answer (anything but 5xx / no answer), for at most retryForMs. */
async function deliver(
  message: { raw: string; signature: string },
  webUrl: () => string | undefined,
  retryForMs: number,
  stats: SendStats,
): Promise<number | undefined> {
  const deadline = Date.now() + retryForMs;
  let delay = 100;
  for (let attempt = 0; ; attempt++) {
    if (attempt > 0) stats.retried++;
    const url = webUrl();
    if (url) {
      try {
        const res = await fetch(`${url}/webhooks/nowpayments`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-nowpayments-sig': message.signature },
          body: message.raw,
          signal: AbortSignal.timeout(10_000),
        });
        await res.text();
        if (res.status < 500) return res.status;
      } catch {
        // no answer: retried below
      }
    }
    if (Date.now() > deadline) return undefined;
    await sleep(delay);
    delay = Math.min(delay * 2, 2_000);
  }
}
