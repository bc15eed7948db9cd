export { recordDeposit, type DepositAsset, type DepositResult } from './deposit.ts';
export { recordWithdrawal, type WithdrawalResult, type WithdrawalSource } from './withdrawal.ts';
export { TreasuryRefused, type EvidenceChain } from './evidence.ts';
export { checkLedgerAgainstChain, type ChainReport, type AssetReconciliation, type ChainSide } from './chain-check.ts';
