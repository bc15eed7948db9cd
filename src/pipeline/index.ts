export { recordIpn, releaseUnknownChannelPayments, REVIEW, type IntakeResult, type IntakeOutcome, type IntakeSettings } from './intake.ts';
export { getPayment, type PaymentView } from './payments.ts';
export { pipelineTasks, pipelineCron, HANDLED_TASKS } from './tasks.ts';
export { CRASH_POINTS, type StageDeps, type Exchange, type Wallet, type ConversionSettings, type CrashPoint } from './interfaces.ts';
export { listPayouts, getPayout, type PayoutView } from './payouts.ts';
export { OPEN_PAYOUT_STATUSES } from './payout.ts';
export { applyPayoutAction, PayoutActionInvalid, PayoutActionRefused, type PayoutAction } from './payout-review.ts';
export { createConversionNudger } from './convert.ts';
export { checkThresholds, runThresholdCheck } from './threshold.ts';
