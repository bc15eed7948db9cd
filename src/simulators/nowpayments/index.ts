export {
  startNowPaymentsSimulator,
  type NowPaymentsSimulator,
  type NowPaymentsSimulatorOptions,
  type NowPaymentsFault,
} from './server.ts';
