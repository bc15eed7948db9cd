export { recordIpn, releaseUnknownChannelPayments, REVIEW, type IntakeResult, type IntakeOutcome, type IntakeSettings } from './intake.ts';
export { getPayment, type PaymentView } from './payments.ts';
export { pipelineTasks, pipelineCron, HANDLED_TASKS } from './tasks.ts';
export type { StageDeps, Exchange, Wallet, ConversionSettings, CrashPoint } from './interfaces.ts';
export { listPayoutBatches, OPEN_BATCH_STATUSES, type PayoutBatchView } from './payout-batches.ts';
export { createConversionNudger } from './convert.ts';
export { checkThresholds, runThresholdCheck } from './threshold.ts';
