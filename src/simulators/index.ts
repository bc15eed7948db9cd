export { startChangeNowSimulator, DEFAULT_PAIRS, type ChangeNowSimulator, type PairConfig, type Fault } from './changenow/index.ts';
export { startLocalChain, anvilBinary, type LocalChain } from './chain.ts';
export { startLocalOutside, rpc, type LocalOutside } from './local.ts';
