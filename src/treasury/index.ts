export { recordDeposit, DepositRefused, type DepositAsset, type DepositChain, type DepositResult } from './deposit.ts';
export { checkLedgerAgainstChain, type ChainReport, type AssetReconciliation, type ChainSide } from './chain-check.ts';
