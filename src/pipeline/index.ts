export {
  recordIpn,
  releaseUnknownChannelPayments,
  REVIEW,
  reviewCode,
  type IntakeResult,
  type IntakeOutcome,
  type IntakeSettings,
  type IntakeAlerting,
} from './payment/intake.ts';
export { createIntakeBatcher, type IntakeBatcher } from './payment/intake-batch.ts';
export {
  applyPaymentAction,
  PaymentActionRefused,
  PAYMENT_ACTIONS,
  paymentActionsFor,
  type PaymentAction,
  type PaymentActionResult,
} from './payment/review.ts';
export { getPayment, type PaymentView } from './payment/views.ts';
export { pipelineTasks, pipelineCron, confirmTasks, HANDLED_TASKS } from './tasks.ts';
export { confirmPayment, ConfirmationPending, type ConfirmDeps, type ConfirmOutcome } from './payment/confirm.ts';
export {
  CRASH_POINTS,
  type StageDeps,
  type Exchange,
  type Wallet,
  type ConversionSettings,
  type CrashPoint,
  type TransferPolicy,
} from './interfaces.ts';
export { listPayouts, getPayout, type PayoutView } from './payout/views.ts';
export { USDT_UNITS_PER_CENT } from './payout/run.ts';
export { applyPayoutAction, PayoutActionInvalid, PayoutActionRefused, type PayoutAction } from './payout/review.ts';
export { createConversionNudger } from './conversion/run.ts';
export { listConversions, getConversion, CONVERSION_STATES, type ConversionView } from './conversion/views.ts';
export { applyConversionAction, ConversionActionRefused, type ConversionAction } from './conversion/review.ts';
export {
  resolveConversion,
  ConversionResolveRefused,
  type ConversionChain,
  type ConversionResolution,
} from './conversion/resolve.ts';
export { checkThresholds, payChannelNow, PayNowRefused, runThresholdCheck } from './payout/threshold.ts';
export { rehomeChannelPayments, type Rehomed } from './strategy.ts';
export { reconcile, type ReconcileSummary, type ReconcileActionRecord } from './reconcile/reconcile.ts';
export { DEADLINES, type ReconcileSettings } from './reconcile/rules.ts';
