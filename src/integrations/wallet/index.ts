export { createChainWallet, ChainUnavailableError, type ChainWallet, type TransferAsset, type TransferRequest, type SignedTransfer, type TxLookup, type BroadcastResult } from './chain-wallet.ts';
