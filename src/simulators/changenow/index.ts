export {
  startChangeNowSimulator,
  DEFAULT_PAIRS,
  type ChangeNowSimulator,
  type SimulatorOptions,
  type PairConfig,
  type Fault,
  type SimExchange,
} from './server.ts';
