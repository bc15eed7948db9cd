/**
 * What the pipeline needs from the outside world, as small interfaces: stages depend on these, and a test can hand
 * them the ChangeNow simulator and a wallet on anvil.
 */
import type { Percent } from '../money/index.ts';
import type {
  CreateExchangeRequest,
  CreatedExchange,
  Estimate,
  EstimateRequest,
  ExchangeStatus,
} from '../integrations/changenow/index.ts';
import type { ChainWallet } from '../integrations/wallet/index.ts';
import type { Db } from '../db/index.ts';
import type { Logger } from '../log.ts';

export interface Exchange {
  estimate(request: EstimateRequest): Promise<Estimate>;
  createExchange(request: CreateExchangeRequest): Promise<CreatedExchange>;
  getExchange(id: string): Promise<ExchangeStatus>;
  listExchanges(filter: { userId: string }): Promise<ExchangeStatus[]>;
}

export type Wallet = ChainWallet;

export interface ConversionSettings {
  /** Smallest pending batch worth converting, in USD cents (valued through a ChangeNow estimate). */
  minUsdCents: bigint;
  maxWaitMs: number;
  maxPayments: number;
  pollIntervalMs: number;
  pollDeadlineMs: number;
  transferConfirmDeadlineMs: number;
  transfer: TransferPolicy;
  /** Transient failures a payout may have before it goes to review. */
  payoutMaxAttempts: number;
  /** Payouts worth more (USD cents) wait for a person's approval; null: none do. */
  payoutApprovalAboveUsdCents: bigint | null;
  /** A payout to a channel whose payout wallet changed less than this ago is held until this long after the change; unset or 0: none is. */
  walletChangeHoldMs?: number;
  /**
   * CHANGENOW_REFUND_TOLERANCE: a refund at most this short of what was sent (ChangeNow returns it less network fees)
   * settles by itself, the shortfall booked as ChangeNow's cost; shorter goes to review. Unset: none is tolerated.
   */
  refundTolerance?: Percent;
  /**
   * CHANGENOW_MAX_SLIPPAGE: a finished exchange whose amountTo is more than this below the estimate recorded at its
   * creation is not booked; a person decides. Unset: none is allowed.
   */
  maxSlippage?: Percent;
}

/** How transfers meet a chain that reprices and reorganises. */
export interface TransferPolicy {
  /** TRANSFER_BUMP_AFTER: a version not mined this long after it was signed is replaced with higher fees. */
  bumpAfterMs: number;
  /** TRANSFER_MAX_FEE_GWEI in wei: no version ever offers more per gas. */
  maxFeePerGasWei: bigint;
  /** CHAIN_CONFIRMATIONS: blocks deep (its own included), or a block tag that must cover the block. */
  confirmations: number | 'safe' | 'finalized';
  /** How long one confirm run waits for a first receipt before it looks again later (not a setting: 15s in payrail). */
  receiptWaitMs: number;
}

export interface StageDeps {
  db: Db;
  /** The run-lock pool: connections apart from `db`'s for the locks held across outside calls (run-lock.ts). */
  runLocks: Db;
  exchange: Exchange;
  wallet: Wallet;
  /** The host wallet's own address: ChangeNow pays the USDT of a conversion there. */
  hostAddress: string;
  /** The USDT token contract on the host wallet's chain (payouts send USDT as an ERC-20 transfer). */
  usdtContract?: `0x${string}`;
  settings: ConversionSettings;
  logger: Logger;
  /** ALERT_WEBHOOK_URL is set: alerts raised on the way are also queued for the webhook. */
  notifyAlerts?: boolean;
  /** Test seam: called at named points between an outside effect and the commit that records it. */
  crashPoint?: (name: CrashPoint) => void;
}

export const CRASH_POINTS = [
  'after_exchange_created',
  'after_broadcast',
  'before_settle',
  'payout_after_exchange_created',
  'payout_after_broadcast',
  'payout_before_complete',
] as const;
export type CrashPoint = (typeof CRASH_POINTS)[number];
