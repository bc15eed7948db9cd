/**
 * The shapes payrail answers with, as zod schemas for the OpenAPI document: the resources (channel, payment,
 * conversion, payout, transfer, alert, event, webhook endpoint, overview) and the error body. Each is tied to the
 * TypeScript type its read function returns (`same` below): a field added to a view and not here, or the other way
 * round, fails the typecheck, so the document cannot fall behind the answers.
 *
 * The schemas repeat one another's form (z.object, a field a line, component, same): that is the document written
 * out, one shape per view; fields shared by name are not shared in meaning, so none is built from another.
 */
import { z } from 'zod';
import type { AlertView } from '../../alerts/index.ts';
import type { Channel } from '../../channels/index.ts';
import { CONVERSION_STATES, PAYOUT_STATES, TRANSFER_STATES } from '../../db/index.ts';
import { DELIVERY_STATES, TRANSFER_ACTIONS_REQUESTED } from '../../db/schema.ts';
import { EVENT_TYPES, type DeliveryView, type EndpointView, type EventBody } from '../../events/index.ts';
import { PAYMENT_STATUSES } from '../../integrations/nowpayments/index.ts';
import type { Balance } from '../../ledger/index.ts';
import type { Overview } from '../../overview/index.ts';
import { PAYMENT_ACTIONS, type ConversionView, type PaymentView, type PayoutView } from '../../pipeline/index.ts';
import type { TransferView } from '../../pipeline/transfer/index.ts';
import type { Statement } from '../../statements/index.ts';
import type { ChannelSummary } from '../routes/channel-summary.ts';
import { component, described } from './registry.ts';

/** True when each type is assignable to the other: the schema says exactly what the view holds. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
/** Compiles only for `true`: `same<Same<View, z.output<typeof schema>>>()`. */
function same<_Check extends true>(): void {}

// --- pieces ---------------------------------------------------------------------------------------------------------

export const decimal = described(
  'A decimal string in the unit named beside it (an asset, a currency): never a JSON number.',
  z.string().regex(/^-?[0-9]+(\.[0-9]+)?$/),
);
export const integerText = described(
  'A whole number as a decimal string (smallest units, a block number, a nonce): never a JSON number.',
  z.string().regex(/^-?[0-9]+$/),
);
const time = z.iso.datetime();
const count = z.number().int().min(0);
const seconds = described('Seconds, a whole number.', z.number().int().min(0));
/** Asset code → amount, e.g. `{ "eth": "0.0047239" }`. */
const assetAmounts = described(
  'Asset code → decimal string in that asset, e.g. { "eth": "0.0047239" }.',
  z.record(z.string(), decimal),
);
const payoutStatus = z.enum(PAYOUT_STATES);
const conversionStatus = z.enum(CONVERSION_STATES);
const transferStatus = z.enum(TRANSFER_STATES);
const paymentStatus = described("NOWPayments' status of the last IPN applied.", z.enum(PAYMENT_STATUSES));

export const errorBody = component(
  'Error',
  z.object({ error: z.string() }),
  'What went wrong, in words meant for a person: the field and the rule for bad input, the state for a refusal.',
);

// --- channels -------------------------------------------------------------------------------------------------------

export const balance = component(
  'Balance',
  z.object({
    account: z.enum(['available', 'reserved_for_payout']),
    asset: z.string(),
    amount: decimal,
    units: integerText,
  }),
  "One of the channel's ledger accounts: available (owed and free) or reserved_for_payout (set aside in an open payout).",
);
same<Same<Balance, z.output<typeof balance>>>();

export const payout = component(
  'Payout',
  z.object({
    payoutId: z.string(),
    kind: z.enum(['threshold', 'instant']),
    channelId: z.string(),
    paymentId: z.string().nullable(),
    status: payoutStatus,
    asset: z.string(),
    amount: decimal,
    payoutCurrency: z.string(),
    payoutNetwork: z.string(),
    walletAddress: z.string(),
    reason: z.string().nullable(),
    exchangeId: z.string().nullable(),
    payinAddress: z.string().nullable(),
    expectedAmountOut: z.string().nullable(),
    amountOut: described('What the owner received, in the payout currency.', z.string().nullable()),
    payinHash: z.string().nullable(),
    payoutHash: z.string().nullable(),
    attempts: count,
    lastError: z.string().nullable(),
    holdUntil: time.nullable(),
    approvedBy: z.string().nullable(),
    approvedAt: time.nullable(),
    createdAt: time,
    updatedAt: time,
    completedAt: time.nullable(),
  }),
  'A payout: a threshold batch of USDT or an instant payout of one payment.',
);
same<Same<PayoutView, z.output<typeof payout>>>();

const channelFields = z.object({
  channelId: z.string(),
  payoutStrategy: z.enum(['instant', 'threshold']),
  thresholdUsd: decimal.nullable(),
  payoutCurrency: z.string(),
  payoutNetwork: z.string(),
  walletAddress: z.string(),
  walletChangedAt: described('The last change of wallet, payout currency or network; null until one.', time.nullable()),
  platformFeePercent: described(
    "The channel's own platform fee (percent); null: PLATFORM_FEE_PERCENT.",
    decimal.nullable(),
  ),
  createdAt: time,
  updatedAt: time,
});
same<Same<Channel, z.output<typeof channelFields>>>();
const summaryFields = z.object({
  balances: z.array(balance),
  pendingEth: described('ETH credited and not yet converted (threshold) or set aside in a payout (instant).', decimal),
  availableUsdt: described('USDT converted and not yet in a payout batch.', decimal),
  openPayouts: described('Payouts not yet ended, newest first.', z.array(payout)),
});
same<Same<ChannelSummary, z.output<typeof summaryFields>>>();
export const channel = component(
  'Channel',
  channelFields.extend({
    feePercentInForce: described('The fee its next credit takes: its own, or PLATFORM_FEE_PERCENT.', decimal),
    ...summaryFields.shape,
  }),
  'A channel: how and where its owner is paid, its ledger balances and its open payouts.',
);

export const supportedPairs = z.object({
  pairs: z.array(z.object({ currency: z.string(), network: z.string() })),
});

// --- payments, conversions, transfers -------------------------------------------------------------------------------

export const payment = component(
  'Payment',
  z.object({
    paymentId: z.string(),
    channelId: z.string(),
    userId: z.string(),
    orderId: z.string(),
    status: z.string(),
    asset: z.string().nullable(),
    grossAmount: decimal.nullable(),
    feeAmount: decimal.nullable(),
    netAmount: decimal.nullable(),
    feePercent: decimal.nullable(),
    payoutStrategy: z.string().nullable(),
    creditedAt: time.nullable(),
    reviewReason: z.string().nullable(),
    reviewAction: z.object({ action: z.string(), by: z.string().nullable(), at: time.nullable() }).nullable(),
    reversedAt: time.nullable(),
    parentPaymentId: z.string().nullable(),
    childPaymentIds: z.array(z.string()),
    reported: described(
      "The last applied IPN's figures, as NOWPayments stated them.",
      z.object({
        payCurrency: z.string(),
        payAmount: z.string(),
        actuallyPaid: z.string(),
        priceAmount: z.string(),
        priceCurrency: z.string(),
        outcomeAmount: z.string(),
        outcomeCurrency: z.string(),
      }),
    ),
    conversion: z.object({
      status: z.string().nullable(),
      attempts: count,
      lastAttemptAt: time.nullable(),
      holdUntil: time.nullable(),
      usdtAmount: decimal.nullable(),
      rate: z.string().nullable(),
    }),
    confirmation: z
      .object({
        requestedAt: time,
        deadlineAt: time.nullable(),
        confirmedAt: time.nullable(),
        attempts: count,
        lastError: z.string().nullable(),
      })
      .nullable(),
    restated: z
      .object({
        outcomeAmount: z.string(),
        outcomeCurrency: z.string(),
        confirmDeadlineAt: time.nullable(),
        confirmedAt: time.nullable(),
      })
      .nullable(),
    ipnCount: count,
    createdAt: time,
    updatedAt: time,
  }),
  'A NOWPayments payment as payrail recorded and credited it.',
);
same<Same<PaymentView, z.output<typeof payment>>>();

export const conversion = component(
  'Conversion',
  z.object({
    conversionId: z.string(),
    status: conversionStatus,
    reason: z.string().nullable(),
    exchangeId: z.string().nullable(),
    payinAddress: z.string().nullable(),
    amountEth: decimal,
    expectedUsdt: decimal.nullable(),
    usdtReceived: decimal.nullable(),
    paymentCount: count,
    transferStatus: transferStatus.nullable(),
    payinHash: z.string().nullable(),
    payoutHash: z.string().nullable(),
    lastError: z.string().nullable(),
    pollDeadlineAt: time.nullable(),
    createdAt: time,
    updatedAt: time,
    completedAt: time.nullable(),
  }),
  'A conversion: a batch of credited ETH exchanged for USDT through ChangeNow.',
);
same<Same<ConversionView, z.output<typeof conversion>>>();

const transferVersion = z
  .object({
    version: z.number().int(),
    kind: z.enum(['transfer', 'cancel']),
    txHash: z.string(),
    gasLimit: integerText.nullable(),
    maxFeePerGasWei: integerText.nullable(),
    maxPriorityFeePerGasWei: integerText.nullable(),
    signedAt: time,
  })
  .readonly();
export const transfer = component(
  'Transfer',
  z.object({
    transferId: z.string(),
    purpose: z.enum(['conversion', 'payout']),
    ref: z.string(),
    status: transferStatus,
    asset: z.string(),
    amount: described('Smallest units (wei, or USDT units of 10⁻⁶).', integerText),
    from: z.string(),
    to: z.string(),
    nonce: integerText.nullable(),
    txHash: z.string().nullable(),
    blockNumber: integerText.nullable(),
    blockHash: z.string().nullable(),
    gasCostWei: integerText.nullable(),
    gasLimit: integerText.nullable(),
    reason: z.string().nullable(),
    lastError: z.string().nullable(),
    requested: z
      .object({ action: z.string(), by: z.string().nullable(), at: time.nullable(), txHash: z.string().nullable() })
      .nullable(),
    broadcastAt: time.nullable(),
    createdAt: time,
    updatedAt: time,
    versions: described(
      'Every signed version, oldest first: in the answer for one transfer, not in lists.',
      z.array(transferVersion).readonly().optional(),
    ),
  }),
  "A transaction from the host wallet: a conversion's ETH to ChangeNow, or a payout.",
);
same<Same<TransferView, z.output<typeof transfer>>>();

// --- alerts, events, webhook endpoints ------------------------------------------------------------------------------

const details = described(
  'Evidence: ids, ages, amounts as strings; its keys depend on the rule.',
  z.record(z.string(), z.unknown()),
);
export const alert = component(
  'Alert',
  z.object({
    id: z.string(),
    rule: z.string(),
    subject: z.string(),
    severity: z.enum(['warning', 'critical']),
    message: z.string(),
    details,
    state: z.enum(['open', 'resolved']),
    firstSeenAt: time,
    lastSeenAt: time,
    resolvedAt: time.nullable(),
    resolvedBy: z.string().nullable(),
  }),
  'A stored alert.',
);
same<Same<AlertView, z.output<typeof alert>>>();

export const event = component(
  'Event',
  z.object({
    id: z.uuid(),
    sequence: integerText,
    type: z.enum(EVENT_TYPES),
    createdAt: time,
    subject: z.string(),
    data: described("The event's fields: docs/events.md lists them for each type.", z.record(z.string(), z.unknown())),
  }),
  'A business event, as GET /api/events and the webhook deliveries show it.',
);
same<Same<EventBody, z.output<typeof event>>>();

export const webhookEndpoint = component(
  'WebhookEndpoint',
  z.object({
    id: z.uuid(),
    url: z.string(),
    eventTypes: z.array(z.string()).readonly(),
    createdBy: z.string(),
    createdAt: time,
    deletedAt: time.nullable(),
    deliveries: z.object({ pending: count, delivered: count, failed: count }).readonly(),
  }),
  'A webhook endpoint the events are delivered to.',
);
same<Same<EndpointView, z.output<typeof webhookEndpoint>>>();

export const delivery = component(
  'Delivery',
  z.object({
    eventId: z.uuid(),
    eventType: z.string(),
    subject: z.string(),
    status: z.enum(DELIVERY_STATES),
    attempts: count,
    nextAttemptAt: time.nullable(),
    deliveredAt: time.nullable(),
    failedAt: time.nullable(),
    lastStatus: z.number().int().nullable(),
    lastError: z.string().nullable(),
    recentAttempts: z
      .array(
        z
          .object({
            at: time,
            statusCode: z.number().int().nullable(),
            error: z.string().nullable(),
            durationMs: z.number().int(),
          })
          .readonly(),
      )
      .readonly(),
  }),
  "One event's delivery to an endpoint, with its last attempts.",
);
same<Same<DeliveryView, z.output<typeof delivery>>>();

// --- statement ------------------------------------------------------------------------------------------------------

const statementBalance = z.object({ available: decimal, reserved: decimal, total: decimal });
const itemBase = {
  id: z.string(),
  time,
  amount: decimal,
  available: decimal,
  reserved: decimal,
  journals: z.array(z.string()),
};
const paymentItem = z.object({
  ...itemBase,
  kind: z.enum(['payment', 'payment_top_up']),
  paymentId: z.string(),
  gross: decimal,
  fee: decimal,
  net: decimal,
  feePercent: decimal.nullable(),
  status: paymentStatus.nullable(),
});
const conversionItem = z.object({
  ...itemBase,
  kind: z.literal('conversion'),
  conversionId: z.string(),
  ethOut: decimal,
  usdtIn: decimal,
  rate: decimal.nullable(),
});
const payoutItem = z.object({
  ...itemBase,
  kind: z.literal('payout'),
  payoutId: z.string(),
  payoutKind: z.enum(['threshold', 'instant']).nullable(),
  payoutAmount: decimal.nullable(),
  asset: z.string(),
  payoutCurrency: z.string().nullable(),
  payoutNetwork: z.string().nullable(),
  walletAddress: z.string().nullable(),
  exchangeId: z.string().nullable(),
  payinHash: z.string().nullable(),
  payoutHash: z.string().nullable(),
  amountOut: z.string().nullable(),
  status: payoutStatus.nullable(),
});
const otherItem = z.object({
  ...itemBase,
  kind: z.enum(['payment_reversal', 'exchange_cost', 'payout_returned', 'other']),
  journalKind: z.string(),
  ref: z.string(),
  paymentId: z.string().nullable(),
  conversionId: z.string().nullable(),
  payoutId: z.string().nullable(),
});
const countAndAmount = z.object({ count, amount: decimal });
export const statement = component(
  'Statement',
  z.object({
    channelId: z.string(),
    from: described('Inclusive.', time),
    to: described('Exclusive; where the range was cut, when it was (see `toAsked`).', time),
    toAsked: described(
      'The `to` asked for (for one left out: now) when the range was cut short of it, a transaction still open when the first page was read being able to book lines from `to` on: ask again later, from `to`, for the rest. null: the range is as asked.',
      time.nullable(),
    ),
    generatedAt: time,
    assets: z.array(
      z.object({
        asset: z.string(),
        opening: statementBalance,
        closing: statementBalance,
        payments: z.array(paymentItem),
        conversions: z.array(conversionItem),
        payouts: z.array(payoutItem),
        other: z.array(otherItem),
        sums: z.object({
          payments: z.object({ count, gross: decimal, fee: decimal, net: decimal }),
          conversions: countAndAmount,
          payouts: countAndAmount,
          other: countAndAmount,
          movements: decimal,
        }),
        check: z.object({
          opening: decimal,
          movementsFromEntries: decimal,
          movementsFromItems: decimal,
          openingPlusMovements: decimal,
          closing: decimal,
          after: decimal,
          ledgerBalance: decimal,
          ok: z.literal(true),
        }),
      }),
    ),
    page: z.object({
      limit: z.number().int().min(1),
      lines: described('Lines on this page, all assets.', count),
      hasMore: z.boolean(),
      next: described('Pass as `after` for the next page; null on the last one.', z.string().nullable()),
    }),
  }),
  "A channel's statement per asset over a time range, proven against the ledger before it is served.",
);
same<Same<Statement, z.output<typeof statement>>>();

// --- overview -------------------------------------------------------------------------------------------------------

const queueStats = z.object({
  task: z.string(),
  runnable: count,
  running: count,
  failed: count,
  oldestRunnableAgeSeconds: seconds.nullable(),
});
const observation = z.object({
  name: z.string(),
  ok: z.boolean(),
  value: z.string().nullable(),
  detail: z.string().nullable(),
  observedAt: time,
  ageSeconds: seconds,
});
const hostBalance = z
  .object({
    asset: z.enum(['eth', 'usdt']),
    amount: decimal.nullable(),
    ok: z.boolean(),
    detail: z.string().nullable(),
    observedAt: time,
    ageSeconds: seconds,
  })
  .nullable();
const countsOf = <const T extends readonly [string, ...string[]]>(keys: T) =>
  z.object(Object.fromEntries(keys.map((k) => [k, count])) as { [K in T[number]]: typeof count });
const openTransferStates = ['intent', 'signed', 'broadcast', 'needs_review'] as const;
const notCompleted = PAYOUT_STATES.filter((s) => s !== 'completed') as [
  Exclude<(typeof PAYOUT_STATES)[number], 'completed'>,
  ...Exclude<(typeof PAYOUT_STATES)[number], 'completed'>[],
];

export const overview = component(
  'Overview',
  z.object({
    generatedAt: time,
    windowHours: z.number().int(),
    totals: z.object({
      received: assetAmounts,
      platformFees: assetAmounts,
      feesVsNetworkCosts: z.object({ asset: z.literal('eth'), fees: decimal, networkCosts: decimal, net: decimal }),
      converted: z.object({ count, sent: assetAmounts, received: assetAmounts }),
      paidOut: assetAmounts,
      inFlight: z.object({
        available: assetAmounts,
        reserved: assetAmounts,
        converting: assetAmounts,
        total: assetAmounts,
      }),
    }),
    pipeline: z.object({
      payments: z.object({
        awaitingConversion: count,
        inConversion: count,
        awaitingPayout: count,
        inReview: count,
        receivedInWindow: count,
      }),
      conversions: countsOf(CONVERSION_STATES),
      payouts: countsOf(notCompleted).extend({ completedInWindow: count }),
      transfers: countsOf(openTransferStates),
    }),
    queues: z.array(queueStats),
    alerts: z.object({
      open: count,
      items: z.array(alert.omit({ state: true, resolvedAt: true, resolvedBy: true }).extend({ ageSeconds: seconds })),
    }),
    conversions: z.array(
      z.object({
        conversionId: z.string(),
        status: conversionStatus,
        paymentCount: count,
        sent: decimal,
        sentAsset: z.string(),
        received: decimal.nullable(),
        receivedAsset: z.string(),
        reason: z.string().nullable(),
        createdAt: time,
        updatedAt: time,
        ageSeconds: seconds,
        inStateSeconds: seconds,
      }),
    ),
    payouts: z.array(
      z.object({
        payoutId: z.string(),
        kind: z.enum(['threshold', 'instant']),
        channelId: z.string(),
        status: payoutStatus,
        asset: z.string(),
        amount: decimal,
        payoutCurrency: z.string(),
        payoutNetwork: z.string(),
        amountOut: z.string().nullable(),
        reason: z.string().nullable(),
        createdAt: time,
        updatedAt: time,
        ageSeconds: seconds,
        inStateSeconds: seconds,
      }),
    ),
    channels: z.object({
      total: count,
      threshold: count,
      atThreshold: count,
      items: z.array(
        z.object({
          channelId: z.string(),
          strategy: z.enum(['instant', 'threshold']),
          payoutCurrency: z.string(),
          payoutNetwork: z.string(),
          thresholdUsd: decimal.nullable(),
          pendingEth: decimal,
          availableUsdt: decimal,
          reserved: assetAmounts,
          fillBps: z.number().int().nullable(),
          payoutInReview: z.object({ payoutId: z.string(), transferId: z.string().nullable(), count }).nullable(),
          openBatch: z.object({ payoutId: z.string(), status: payoutStatus }).nullable(),
          canPayNow: z.boolean(),
        }),
      ),
    }),
    review: z.object({
      payouts: z.array(payout.extend({ waitingSeconds: seconds })),
      conversions: z.array(
        z.object({
          conversionId: z.string(),
          reason: z.string().nullable(),
          sent: decimal,
          sentAsset: z.string(),
          paymentCount: count,
          updatedAt: time,
          waitingSeconds: seconds,
        }),
      ),
      transfers: z.array(
        z.object({
          transferId: z.string(),
          purpose: z.enum(['conversion', 'payout']),
          ref: z.string(),
          asset: z.string(),
          amount: decimal,
          nonce: integerText.nullable(),
          txHash: z.string().nullable(),
          blockNumber: integerText.nullable(),
          reason: z.string().nullable(),
          lastError: z.string().nullable(),
          requested: z
            .object({ action: z.enum(TRANSFER_ACTIONS_REQUESTED), by: z.string().nullable(), at: time.nullable() })
            .nullable(),
          updatedAt: time,
          waitingSeconds: seconds,
        }),
      ),
      payments: z.array(
        z.object({
          paymentId: z.string(),
          channelId: z.string(),
          status: paymentStatus,
          reason: z.string(),
          actions: z.array(z.enum(PAYMENT_ACTIONS)),
          reported: z.object({
            payAmount: z.string(),
            actuallyPaid: z.string(),
            payCurrency: z.string(),
            priceAmount: z.string(),
            priceCurrency: z.string(),
            outcomeAmount: z.string(),
            outcomeCurrency: z.string(),
          }),
          credited: z.object({ asset: z.string(), gross: decimal, net: decimal }).nullable(),
          creditable: z.object({ asset: z.string(), amount: decimal }).nullable(),
          updatedAt: time,
          waitingSeconds: seconds,
        }),
      ),
    }),
    hostWallet: z.object({ eth: hostBalance, usdt: hostBalance }),
    services: z.array(observation),
    volume: z.object({
      hours: z.number().int(),
      buckets: z.array(
        z.object({
          hour: time,
          received: assetAmounts,
          payments: count,
          scaleBps: z.record(z.string(), z.number().int().min(0).max(10_000)),
        }),
      ),
      peak: assetAmounts,
    }),
  }),
  'What the dashboard and `payrail status` show, from one consistent read.',
);
same<Same<Overview, z.output<typeof overview>>>();
