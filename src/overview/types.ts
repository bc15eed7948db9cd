/**
 * The operator's picture, as GET /api/overview, the dashboard and `payrail status` show it. Every amount is a decimal
 * string in its asset's unit (never a JSON number); counts, ages and basis points are integers.
 */
import type { AlertView } from '../alerts/index.ts';
import type {
  ConversionState,
  PaymentStatus,
  PayoutStatus,
  TransferRequestedAction,
  TransferStatus,
} from '../db/index.ts';
import type { PaymentAction } from '../pipeline/index.ts';
import type { TaskQueueStats } from '../jobs/index.ts';
import type { PayoutView } from '../pipeline/index.ts';

/** Asset code → decimal string, e.g. { eth: "0.0047239" }. */
export type AssetAmounts = Record<string, string>;

export interface Overview {
  /** The database's clock when the picture was read (one snapshot: every figure below is from the same instant). */
  readonly generatedAt: string;
  /** Hours covered by `volume` and by the "in the window" figures. */
  readonly windowHours: number;
  readonly totals: Totals;
  readonly pipeline: PipelineCounts;
  /** One row per known task (zeros when idle), and any other task that has jobs. */
  readonly queues: TaskQueueStats[];
  readonly alerts: { readonly open: number; readonly items: OpenAlertView[] };
  /** Open conversions, then those settled within the window, newest first. */
  readonly conversions: ConversionRow[];
  /** Open payouts, then those that ended within the window, newest first. */
  readonly payouts: PayoutRow[];
  readonly channels: ChannelsView;
  readonly review: ReviewQueue;
  readonly hostWallet: { readonly eth: HostBalance | null; readonly usdt: HostBalance | null };
  /** Every other observation a worker recorded (chain RPC, ChangeNow reachability, ...). */
  readonly services: ObservationView[];
  readonly volume: VolumeSeries;
}

export interface Totals {
  /** Gross amounts credited from NOWPayments (the fee included). */
  readonly received: AssetAmounts;
  readonly platformFees: AssetAmounts;
  /**
   * Platform fees earned against the gas payrail paid for its own host-wallet transfers, both in ETH (gas is paid in
   * ETH): `networkCosts` is what the `network_fee` journals booked, `net` is fees − network costs (negative when gas
   * cost more than the fees brought in).
   */
  readonly feesVsNetworkCosts: {
    readonly asset: 'eth';
    readonly fees: string;
    readonly networkCosts: string;
    readonly net: string;
  };
  /** Settled conversions: what was sent to ChangeNow and what came back. */
  readonly converted: { readonly count: number; readonly sent: AssetAmounts; readonly received: AssetAmounts };
  /** Completed payouts, in the asset each payout held (before ChangeNow exchanged it into the owner's currency). */
  readonly paidOut: AssetAmounts;
  /** Owed to channel owners and not paid yet: available on their balances, and set aside in open payouts. */
  readonly inFlight: {
    readonly available: AssetAmounts;
    readonly reserved: AssetAmounts;
    /** Part of `available`: ETH in conversions not settled yet (the ledger moves it at settlement). */
    readonly converting: AssetAmounts;
    readonly total: AssetAmounts;
  };
}

export interface PipelineCounts {
  /**
   * Payments by where they are in the pipeline. Not by NOWPayments status: counting those reads every payment ever
   * stored (0.3 s for 1,000,000); each figure here is a small partial index.
   */
  readonly payments: {
    /** Credited to a threshold channel, waiting for a conversion batch. */
    readonly awaitingConversion: number;
    /** In a conversion that has not ended. */
    readonly inConversion: number;
    /** Converted, not yet in a payout batch. */
    readonly awaitingPayout: number;
    /** Kept for a person (unknown channel, conflicting order, refund after credit). */
    readonly inReview: number;
    /** Credited within the window. */
    readonly receivedInWindow: number;
  };
  readonly conversions: Record<ConversionState, number>;
  /**
   * Payouts by state. `completed` is not counted over all time (that reads every payout ever made); see
   * `completedInWindow`, and totals.paidOut for what they paid.
   */
  readonly payouts: Record<Exclude<PayoutStatus, 'completed'>, number> & { readonly completedInWindow: number };
  /**
   * Host-wallet transfers by open state. `confirmed` and `failed` are not counted (that reads every transfer ever
   * made, one per conversion and per payout); the open ones are a small partial index.
   */
  readonly transfers: Record<OpenTransferStatus, number>;
}

export type OpenTransferStatus = Exclude<TransferStatus, 'confirmed' | 'failed'>;

/** An open alert as the alerts module shows it, with its age. */
export interface OpenAlertView extends Omit<AlertView, 'state' | 'resolvedAt' | 'resolvedBy'> {
  /** Seconds since it first fired. */
  readonly ageSeconds: number;
}

export interface ConversionRow {
  readonly conversionId: string;
  readonly status: ConversionState;
  readonly paymentCount: number;
  readonly sent: string;
  readonly sentAsset: string;
  /** USDT received (settled), or the amount ChangeNow quoted while it runs; null before a quote. */
  readonly received: string | null;
  readonly receivedAsset: string;
  readonly reason: string | null;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly ageSeconds: number;
  /** Seconds since its last change of state. */
  readonly inStateSeconds: number;
}

export interface PayoutRow {
  readonly payoutId: string;
  readonly kind: 'threshold' | 'instant';
  readonly channelId: string;
  readonly status: PayoutStatus;
  readonly asset: string;
  readonly amount: string;
  readonly payoutCurrency: string;
  readonly payoutNetwork: string;
  readonly amountOut: string | null;
  readonly reason: string | null;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly ageSeconds: number;
  readonly inStateSeconds: number;
}

export interface ChannelsView {
  readonly total: number;
  readonly threshold: number;
  /** Threshold channels whose available USDT reached their threshold (a batch is due or open). */
  readonly atThreshold: number;
  /**
   * The fullest threshold channels first, then the others by balance: at most CHANNELS_SHOWN of them, and besides
   * every channel whose payout waits for a person (`payoutInReview`), in its place in that order.
   */
  readonly items: ChannelRow[];
}

export interface ChannelRow {
  readonly channelId: string;
  readonly strategy: 'instant' | 'threshold';
  readonly payoutCurrency: string;
  readonly payoutNetwork: string;
  /** Threshold in USD (USDT is valued at one USD), null for instant channels. */
  readonly thresholdUsd: string | null;
  /** ETH credited and not yet converted (threshold) or paid out (instant). */
  readonly pendingEth: string;
  /** USDT converted and not yet in a payout batch: what counts toward the threshold. */
  readonly availableUsdt: string;
  /** Set aside in open payouts. */
  readonly reserved: AssetAmounts;
  /** availableUsdt against the threshold in basis points (10000 = reached; may exceed it), null for instant channels. */
  readonly fillBps: number | null;
  /**
   * The channel's open payout that waits for a person, the longest waiting: the payout in needs_review itself, or its
   * host-wallet transfer in needs_review (`transferId`); `count` open payouts of the channel wait so. A threshold
   * channel gets no new batch while one is open, so every payment behind it waits for that person too. Null when none.
   */
  readonly payoutInReview: {
    readonly payoutId: string;
    readonly transferId: string | null;
    readonly count: number;
  } | null;
  /**
   * The channel's open threshold batch (at most one, whatever the channel's strategy now): while there is one,
   * POST /api/channels/:id/payout is refused (409) and what the channel earns waits for that batch to end.
   */
  readonly openBatch: { readonly payoutId: string; readonly status: PayoutStatus } | null;
  /**
   * Whether "pay now" (POST /api/channels/:id/payout) has something to pay: USDT available and no open batch, as of
   * this read. The API checks again under the channel's lock and answers 409 when that changed since.
   */
  readonly canPayNow: boolean;
}

export interface ReviewQueue {
  /** Payouts a person must act on: in review (retry, cancel, resolve) or above the approval limit (approve, cancel). */
  readonly payouts: Array<PayoutView & { readonly waitingSeconds: number }>;
  /** Conversions in review, oldest waiting first: retry (POST /api/conversions/:id/retry) is their only action. */
  readonly conversions: ReviewConversion[];
  /**
   * Host-wallet transfers in review, oldest waiting first: retry (POST /api/transfers/:id/retry), cancel, or resolve
   * (the worker carries out the last two).
   */
  readonly transfers: ReviewTransfer[];
  /**
   * Payments kept for review, the longest waiting first (at most 100; pipeline.payments.inReview counts them all):
   * credit, ignore, reverse or recheck (POST /api/payments/:id/credit|ignore|reverse|recheck), as their reason allows.
   */
  readonly payments: ReviewPayment[];
}

export interface ReviewPayment {
  readonly paymentId: string;
  readonly channelId: string;
  /** NOWPayments' status of the last IPN applied. */
  readonly status: PaymentStatus;
  /** Why it waits (the review reason: its code, then the evidence after ": "). */
  readonly reason: string;
  /** What the reason allows (docs/architecture.md, Payments in review); empty for unknown_channel. */
  readonly actions: PaymentAction[];
  /** The last applied IPN's figures, as NOWPayments stated them (decimal strings in the named currencies). */
  readonly reported: {
    readonly payAmount: string;
    readonly actuallyPaid: string;
    readonly payCurrency: string;
    readonly priceAmount: string;
    readonly priceCurrency: string;
    readonly outcomeAmount: string;
    readonly outcomeCurrency: string;
  };
  /** What was credited to the channel (gross and net, in `asset`), null when nothing was. */
  readonly credited: { readonly asset: string; readonly gross: string; readonly net: string } | null;
  /**
   * What a credit would book now (gross, in `asset`): a partial's outcome, or a top-up's difference to what was
   * credited (not the partial's outcome, which `reported` still shows); null when the reason allows no credit.
   */
  readonly creditable: { readonly asset: string; readonly amount: string } | null;
  readonly updatedAt: string;
  /** Seconds since its last change (into review, or a later IPN). */
  readonly waitingSeconds: number;
}

export interface ReviewTransfer {
  readonly transferId: string;
  /** What it pays: a conversion's ETH to ChangeNow, or a payout; `ref` is that conversion's or payout's id. */
  readonly purpose: 'conversion' | 'payout';
  readonly ref: string;
  readonly asset: string;
  /** In the asset's unit (ETH, USDT), not smallest units. */
  readonly amount: string;
  readonly nonce: string | null;
  /** Its latest signed version's hash, or the mined one's once one of its versions was seen mined. */
  readonly txHash: string | null;
  /** The block one of its versions was seen mined in; null when none was (only then can it have never been sent). */
  readonly blockNumber: string | null;
  /** Why it is in review: a nonce taken by a transaction payrail did not sign, a token that moved another amount. */
  readonly reason: string | null;
  /** The last error, e.g. a person's earlier request the worker refused, and why. */
  readonly lastError: string | null;
  /** A person's action the worker has not carried out yet: until it has, every other action is refused. */
  readonly requested: {
    readonly action: TransferRequestedAction;
    readonly by: string | null;
    readonly at: string | null;
  } | null;
  readonly updatedAt: string;
  /** Seconds since its last change (into review, or a person's request). */
  readonly waitingSeconds: number;
}

export interface ReviewConversion {
  readonly conversionId: string;
  readonly reason: string | null;
  /** What it took from the channels, in `sentAsset` (ETH). */
  readonly sent: string;
  readonly sentAsset: string;
  readonly paymentCount: number;
  readonly updatedAt: string;
  /** Seconds since it went into review (its last change). */
  readonly waitingSeconds: number;
}

export interface HostBalance {
  readonly asset: 'eth' | 'usdt';
  /** Decimal string, or null when the last observation failed or held no amount. */
  readonly amount: string | null;
  readonly ok: boolean;
  readonly detail: string | null;
  readonly observedAt: string;
  readonly ageSeconds: number;
}

export interface ObservationView {
  readonly name: string;
  readonly ok: boolean;
  readonly value: string | null;
  readonly detail: string | null;
  readonly observedAt: string;
  readonly ageSeconds: number;
}

export interface VolumeSeries {
  readonly hours: number;
  /** One bucket per hour, oldest first, the current (partial) hour last; hours without payments hold "0". */
  readonly buckets: VolumeBucket[];
  /** The largest bucket per asset: what `scaleBps` 10000 stands for. */
  readonly peak: AssetAmounts;
}

export interface VolumeBucket {
  /** Start of the hour, UTC. */
  readonly hour: string;
  readonly received: AssetAmounts;
  readonly payments: number;
  /**
   * Each asset's amount against its peak bucket, in basis points (0..10000), computed exactly: what a chart draws,
   * so the page never turns an amount into a float.
   */
  readonly scaleBps: Record<string, number>;
}
