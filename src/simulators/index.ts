export {
  startChangeNowSimulator,
  DEFAULT_PAIRS,
  type ChangeNowSimulator,
  type PairConfig,
  type Fault,
} from './changenow/index.ts';
export { startNowPaymentsSimulator, type NowPaymentsSimulator, type NowPaymentsFault } from './nowpayments/index.ts';
export { startLocalChain, anvilBinary, rpc, type LocalChain } from './chain.ts';
export { startLocalOutside, type LocalOutside } from './local.ts';
export { freePort, freePorts } from './ports.ts';
export { Rng, randomSeed } from './rng.ts';
export { startRpcProxy, type RpcFaults, type RpcProxy } from './rpc-proxy.ts';
export {
  baseFee,
  dropAllPending,
  dropTransaction,
  makeContractWallet,
  makeRejectingWallet,
  mineBlocks,
  pausePool,
  reorg,
  resumeMining,
  spikeBaseFee,
  takeNonce,
} from './chain-faults.ts';
export {
  blacklistLocalUsdt,
  deployLocalUsdt,
  localUsdtAbi,
  mintLocalUsdt,
  setLocalUsdtReturnFalse,
} from './usdt/index.ts';
export { startChainSender, type ChainSender } from './chain-sender.ts';
