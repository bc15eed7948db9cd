export {
  startNowPaymentsSimulator,
  type NowPaymentsSimulator,
  type NowPaymentsSimulatorOptions,
  type NowPaymentsFault,
} from './server.ts';
export { DEFAULT_DELIVERIES, PAY_STATUSES, type Delivery, type InvoicePaid, type PayStatus } from './invoices.ts';
export { startOutcomeForwarder, type OutcomeForwarder } from './forward.ts';
