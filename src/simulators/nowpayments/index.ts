export {
  startNowPaymentsSimulator,
  type NowPaymentsSimulator,
  type NowPaymentsSimulatorOptions,
  type NowPaymentsFault,
} from './server.ts';
export type { Delivery, InvoicePaid, PayStatus } from './invoices.ts';
export { startOutcomeForwarder, type OutcomeForwarder } from './forward.ts';
