/**
 * How an exchange moves on, one look (by-id or list) at a time: deposit seen on chain → confirming → exchanging →
 * sending → finished, or the forced end it was created with. Nothing runs between looks: each look reads the chain
 * and the clock and catches the exchange up.
 */
import { randomBytes } from 'node:crypto';
import { createPublicClient, erc20Abi, http as viemHttp, type Address, type PublicClient } from 'viem';
import { otherAddress } from './faults.ts';
import {
  DEFAULT_BELOW_ESTIMATE_PERCENT,
  DEFAULT_VERIFYING_MS,
  type ExchangeState,
  type ForcedEnd,
  type PairConfig,
  type SimExchange,
  type SimulatorOptions,
} from './model.ts';
import { belowBy, Decimal, DECIMALS, pairOf, quote } from './pricing.ts';
import { createTreasury, type Treasury } from './treasury.ts';

const STATUS_STEPS: ExchangeState[] = ['confirming', 'exchanging', 'sending'];

/** Forced ends that pay nothing out: the status each ends in once its steps are done. */
const UNPAID_ENDS = new Map<ForcedEnd, ExchangeState>([
  ['failed', 'failed'],
  ['refunded', 'refunded'],
  ['refunded_short', 'refunded'],
  ['expired_funded', 'expired'],
]);

export class ExchangeProgress {
  private readonly stepMs: number;
  private readonly tokens: Record<string, Address>;
  private readonly chain: PublicClient | undefined;
  private readonly treasury: Treasury | undefined;
  /** The payout or refund under way for an exchange, so that concurrent looks send it once. */
  private readonly payouts = new Map<string, Promise<string>>();

  constructor(
    options: SimulatorOptions,
    private readonly pairs: Map<string, PairConfig>,
  ) {
    this.stepMs = options.stepMs ?? 0;
    this.tokens = options.tokens ?? {};
    this.chain = options.rpcUrl
      ? createPublicClient({ transport: viemHttp(options.rpcUrl, { timeout: 5_000, retryCount: 0 }) })
      : undefined;
    this.treasury =
      options.treasuryKey && options.rpcUrl
        ? createTreasury(options.rpcUrl, options.treasuryKey, this.tokens)
        : undefined;
  }

  async advance(ex: SimExchange): Promise<void> {
    if (ex.status === 'waiting' && !(await this.seeDeposit(ex))) return;
    if (ex.status === 'verifying' && !this.clearVerification(ex)) return;
    if (ex.depositReceivedAt === null || !STATUS_STEPS.includes(ex.status)) return;
    // The steps are timed from the deposit, or from the end of the AML check when there was one.
    if (this.stillStepping(ex, ex.verifyingUntil ?? ex.depositReceivedAt)) return;
    ex.updatedAt = new Date().toISOString();
    await this.settle(ex);
  }

  /** Whether the deposit has arrived: the exchange then enters the AML check or confirming. */
  private async seeDeposit(ex: SimExchange): Promise<boolean> {
    const received = await this.depositOf(ex);
    // Another poll of the same exchange (by-id and list, two workers) may have seen the deposit while we read the
    // chain: only the first sighting moves the exchange on, or a finished exchange would go back to confirming.
    if (ex.status !== 'waiting' || received === null || received.lte(0)) return false;
    ex.amountFrom = received.toFixed();
    ex.depositReceivedAt = Date.now();
    if (ex.forcedEnd === 'verifying') {
      ex.verifyingUntil = ex.depositReceivedAt + (ex.verifyingMs ?? DEFAULT_VERIFYING_MS);
      ex.status = 'verifying';
    } else {
      ex.status = 'confirming';
    }
    ex.updatedAt = new Date().toISOString();
    return true;
  }

  /** Whether the AML check is over: the exchange then goes on as one whose deposit has just arrived. */
  private clearVerification(ex: SimExchange): boolean {
    if (Date.now() < (ex.verifyingUntil as number)) {
      ex.verifyingLooks++;
      return false;
    }
    ex.verifyingUntil = Date.now();
    ex.status = 'confirming';
    ex.updatedAt = new Date().toISOString();
    return true;
  }

  /** Whether the exchange is still in its timed steps (each stepMs long), after moving it to the current one. */
  private stillStepping(ex: SimExchange, since: number): boolean {
    const step = this.stepMs === 0 ? STATUS_STEPS.length : Math.floor((Date.now() - since) / this.stepMs);
    if (step >= STATUS_STEPS.length) return false;
    const next = STATUS_STEPS[step] as ExchangeState;
    if (next !== ex.status) {
      ex.status = next;
      ex.updatedAt = new Date().toISOString();
    }
    return true;
  }

  /** The end of an exchange whose steps are done: refunded, failed or expired as forced, else finished. */
  private async settle(ex: SimExchange): Promise<void> {
    const refunding = ex.forcedEnd === 'refunded' || ex.forcedEnd === 'refunded_short';
    const treasury = refunding && ex.refundAddress ? this.payerOf(ex.fromCurrency, ex.fromNetwork) : undefined;
    if (treasury) return this.refund(ex, treasury);
    const unpaid = UNPAID_ENDS.get(ex.forcedEnd);
    if (unpaid) {
      ex.status = unpaid;
      return;
    }
    return this.finish(ex);
  }

  /** The deposit goes back to the refund address on chain, as ChangeNow would send it. */
  private async refund(ex: SimExchange, treasury: Treasury): Promise<void> {
    const refundHash = await this.payOnce(ex.id, () =>
      treasury.pay(ex.fromCurrency, ex.refundAddress as Address, refundOf(ex)),
    );
    if (ex.status === 'refunded') return;
    ex.refundHash = refundHash;
    ex.status = 'refunded';
  }

  /** Pays amountTo (or what a forced end makes of it) and reports the exchange finished. */
  private async finish(ex: SimExchange): Promise<void> {
    if (ex.forcedEnd === 'payout_elsewhere') {
      ex.payoutAddress = otherAddress(ex.payoutAddress);
      ex.forcedEnd = null;
    }
    const amountTo = this.amountToOf(ex);
    let payoutHash = `0x${randomBytes(32).toString('hex')}`;
    const treasury = amountTo.gt(0) ? this.payerOf(ex.toCurrency, ex.toNetwork) : undefined;
    if (treasury) {
      // short_payout: report amountTo but pay one smallest unit less, as a misbehaving exchange could.
      const unit = new Decimal(10).pow(-(DECIMALS[ex.toCurrency] ?? 18));
      const paid = ex.forcedEnd === 'short_payout' ? amountTo.minus(unit) : amountTo;
      payoutHash = await this.payOnce(ex.id, () => treasury.pay(ex.toCurrency, ex.payoutAddress as Address, paid));
    }
    if (ex.status === 'finished') return;
    ex.amountTo = ex.forcedEnd === 'no_amount_to' ? null : amountTo.toFixed();
    ex.payoutHash = payoutHash;
    ex.status = 'finished';
  }

  /** The deposit at the pair's rate; below_estimate takes its percent off that. */
  private amountToOf(ex: SimExchange): Decimal {
    const pair = pairOf(this.pairs, ex.fromCurrency, ex.fromNetwork, ex.toCurrency, ex.toNetwork);
    const quoted = quote(pair, new Decimal(ex.amountFrom as string), ex.toCurrency);
    if (ex.forcedEnd !== 'below_estimate') return quoted;
    return belowBy(quoted, ex.belowEstimatePercent ?? DEFAULT_BELOW_ESTIMATE_PERCENT, ex.toCurrency);
  }

  /** The treasury, when it can send `currency` on `network`: ETH and the configured tokens on the local chain. */
  private payerOf(currency: string, network: string): Treasury | undefined {
    if (!this.treasury || network !== 'eth') return undefined;
    return currency === 'eth' || this.tokens[currency] ? this.treasury : undefined;
  }

  /** One payment per exchange, however many looks arrive while it is being sent; a failed one is tried again. */
  private payOnce(exchangeId: string, pay: () => Promise<string>): Promise<string> {
    let pending = this.payouts.get(exchangeId);
    if (!pending) {
      pending = pay();
      this.payouts.set(exchangeId, pending);
      pending.catch(() => this.payouts.delete(exchangeId));
    }
    return pending;
  }

  /** The payin address's balance in the deposit's currency, or null when the simulator cannot read it. */
  private async depositOf(ex: SimExchange): Promise<Decimal | null> {
    if (!this.chain) return null;
    const decimals = DECIMALS[ex.fromCurrency] ?? 18;
    const token = this.tokens[ex.fromCurrency];
    let units: bigint;
    if (ex.fromCurrency === 'eth') units = await this.chain.getBalance({ address: ex.payinAddress });
    else if (token)
      units = await this.chain.readContract({
        address: token,
        abi: erc20Abi,
        functionName: 'balanceOf',
        args: [ex.payinAddress],
      });
    else return null;
    return new Decimal(units.toString()).div(new Decimal(10).pow(decimals));
  }
}

/** What goes back: the deposit, or for refunded_short 1 % less, as network fees taken from a real refund would. */
function refundOf(ex: SimExchange): Decimal {
  const deposit = new Decimal(ex.amountFrom as string);
  if (ex.forcedEnd !== 'refunded_short') return deposit;
  return deposit.mul('0.99').toDecimalPlaces(DECIMALS[ex.fromCurrency] ?? 18, Decimal.ROUND_DOWN);
}
