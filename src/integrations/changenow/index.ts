export { createChangeNowClient, API_KEY_HEADER, type ChangeNowClientOptions } from './client.ts';
export type {
  ChangeNowClient,
  EstimateRequest,
  CreateExchangeRequest,
  ExchangeListFilter,
  ExchangeFlow,
  ExchangeType,
} from './types.ts';
export { ChangeNowError, isChangeNowError, type ChangeNowEndpoint, type ChangeNowErrorKind } from './errors.ts';
export {
  EXCHANGE_STATUSES,
  type Estimate,
  type CreatedExchange,
  type ExchangeStatus,
  type ExchangeStatusName,
} from './responses.ts';
export { normaliseAmount } from './amount.ts';
export { observeClient, type ChangeNowCall, type ChangeNowObserver } from './observe.ts';
