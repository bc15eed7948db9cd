/**
 * The simulated chain's faults bound to one node, so a scenario reads as what happens to the chain
 * (`onChain.pausePool()`, `onChain.reorg(1)`) rather than as the address every call is sent to.
 */
import * as faults from '../../src/simulators/chain-faults.ts';

export type ChainFaults = ReturnType<typeof chainFaultsOn>;

/**
 * `node` is the RPC address, or a function answering it for a node that a file starts only before its cases (the
 * address is read at each call, not here).
 */
export function chainFaultsOn(node: string | (() => string)) {
  const rpcUrl = typeof node === 'string' ? () => node : node;
  const bind =
    <A extends unknown[], R>(fault: (rpcUrl: string, ...rest: A) => R) =>
    (...rest: A): R =>
      fault(rpcUrl(), ...rest);
  return {
    baseFee: bind(faults.baseFee),
    dropAllPending: bind(faults.dropAllPending),
    dropTransaction: bind(faults.dropTransaction),
    makeContractWallet: bind(faults.makeContractWallet),
    makeRejectingWallet: bind(faults.makeRejectingWallet),
    mineBlocks: bind(faults.mineBlocks),
    pausePool: bind(faults.pausePool),
    reorg: bind(faults.reorg),
    resumeMining: bind(faults.resumeMining),
    spikeBaseFee: bind(faults.spikeBaseFee),
    takeNonce: bind(faults.takeNonce),
  };
}
