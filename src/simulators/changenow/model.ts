/** The ChangeNow simulator's vocabulary: its options, pairs, exchanges and the faults it can be told to show. */
import type { Address } from 'viem';

export interface PairConfig {
  /** Units of `to` per unit of `from`. */
  rate: string;
  /** Taken from the amount out, in `to` units. */
  withdrawalFee: string;
  /** Smallest `from` amount accepted. */
  minAmount: string;
}

export interface SimulatorOptions {
  port: number;
  apiKey: string;
  rpcUrl?: string;
  /** ERC-20 contracts by currency, for deposits in tokens (e.g. usdt). */
  tokens?: Record<string, Address>;
  /** Pairs by `from/fromNetwork->to/toNetwork`. */
  pairs?: Record<string, PairConfig>;
  /** Time an exchange spends in each of confirming, exchanging and sending once the deposit is seen. */
  stepMs?: number;
  /**
   * Pays finished exchanges out on the chain from this key (ETH, and the tokens in `tokens`), as ChangeNow would:
   * the payout hash is then a real transaction. It must hold ETH for gas and the tokens it pays.
   */
  treasuryKey?: `0x${string}`;
}

export const FORCED_ENDS: readonly string[] = [
  'failed',
  'refunded',
  'refunded_short',
  'short_payout',
  'payout_elsewhere',
  'wrong_payout_address',
  'wrong_amount',
  'below_estimate',
  'verifying',
  'expired_funded',
  'no_amount_to',
];
/**
 * How the next exchange misbehaves: it ends failed or refunded (refunded_short: 1 % less, as network fees taken
 * from a real refund would), finishes paying one unit short or paying another
 * address, or is created unlike the request (another payout address, or expecting twice the amount), as a
 * compromised or buggy exchange could. below_estimate finishes paying (and reporting) a percentage less than its
 * estimate, as a floating rate that moved against us; verifying holds the deposit in ChangeNow's AML check for a while
 * before the exchange goes on; expired_funded ends `expired` although its deposit arrived, and returns nothing;
 * no_amount_to finishes and pays as usual but reports no amountTo, as an exchange whose answer lost a field could.
 */
export type ForcedEnd =
  | 'failed'
  | 'refunded'
  | 'refunded_short'
  | 'short_payout'
  | 'payout_elsewhere'
  | 'wrong_payout_address'
  | 'wrong_amount'
  | 'below_estimate'
  | 'verifying'
  | 'expired_funded'
  | 'no_amount_to'
  | null;

/** How far below its estimate a below_estimate exchange finishes: well past payrail's default 3 % allowance. */
export const DEFAULT_BELOW_ESTIMATE_PERCENT = '5';
/** How long a verifying exchange sits in the AML check once its deposit is seen. */
export const DEFAULT_VERIFYING_MS = 3_000;

/** The knobs of a forced end that has them; the defaults above otherwise. */
export interface ForcedEndOptions {
  /** below_estimate: percent below the estimate (a decimal, 0 to below 100), rounded down to the currency's units. */
  belowEstimatePercent?: string;
  /** verifying: how long the AML check lasts once the deposit is seen (releaseVerification ends it sooner). */
  verifyingMs?: number;
}

export type Fault = 'none' | 'down' | '5xx' | '401' | 'slow';
export const FAULTS: readonly Fault[] = ['none', 'down', '5xx', '401', 'slow'];

export type ExchangeState =
  'waiting' | 'verifying' | 'confirming' | 'exchanging' | 'sending' | 'finished' | 'failed' | 'refunded' | 'expired';

export interface SimExchange {
  id: string;
  status: ExchangeState;
  fromCurrency: string;
  fromNetwork: string;
  toCurrency: string;
  toNetwork: string;
  expectedAmountFrom: string;
  expectedAmountTo: string;
  amountFrom: string | null;
  amountTo: string | null;
  payinAddress: Address;
  payinPrivateKey: `0x${string}`;
  payoutAddress: string;
  refundAddress: string | null;
  userId: string | null;
  payload: Record<string, unknown> | null;
  payinHash: string | null;
  payoutHash: string | null;
  refundHash: string | null;
  createdAt: string;
  updatedAt: string;
  depositReceivedAt: number | null;
  /** A forced ending set by fault injection when the exchange was created (see ForcedEnd). */
  forcedEnd: ForcedEnd;
  /** below_estimate: the percent amountTo falls below the estimate. */
  belowEstimatePercent: string | null;
  /** verifying: how long the AML check lasts once the deposit is seen. */
  verifyingMs: number | null;
  /** verifying: when the AML check ends (set when the deposit is seen); the later steps are timed from it. */
  verifyingUntil: number | null;
  /** How many looks (by-id or list) found it verifying: a test sees its client kept asking through the check. */
  verifyingLooks: number;
}

export interface ChangeNowSimulator {
  readonly url: string;
  readonly exchanges: Map<string, SimExchange>;
  setFault(fault: Fault, options?: { slowMs?: number }): Promise<void>;
  /** The next created exchange ends this way instead of finishing normally. */
  failNextExchange(status: ForcedEnd, options?: ForcedEndOptions): void;
  /** A verifying exchange leaves the AML check at its next look, whatever its verifyingMs. */
  releaseVerification(exchangeId: string): void;
  setPair(key: string, pair: PairConfig): void;
  stop(): Promise<void>;
}
