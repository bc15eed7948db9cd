export {
  createTransfer,
  createTransfers,
  holdTransfer,
  sendTransfer,
  BROADCAST_WINDOW,
  type HeldTransfer,
  type TransferIntent,
} from './send.ts';
export { confirmTransfer } from './confirm.ts';
export {
  resumeTransfer,
  TransferNotReady,
  RELEASED_STATES,
  type Transfer,
  type TransferFailure,
  type FailureCode,
  type TransferHooks,
  type TransferHooksByPurpose,
} from './model.ts';
export { applyTransferAction, TransferActionRefused, type TransferAction, type TransferResolution } from './review.ts';
export { listTransfers, getTransfer, type TransferView } from './views.ts';
export { replacementFees, minimumBump } from './versions.ts';
