export {
  createChangeNowClient,
  API_KEY_HEADER,
  type ChangeNowClient,
  type ChangeNowClientOptions,
  type EstimateRequest,
  type CreateExchangeRequest,
  type ExchangeListFilter,
  type ExchangeFlow,
  type ExchangeType,
} from './client.ts';
export { ChangeNowError, isChangeNowError, type ChangeNowEndpoint, type ChangeNowErrorKind } from './errors.ts';
export { EXCHANGE_STATUSES, type Estimate, type CreatedExchange, type ExchangeStatus, type ExchangeStatusName } from './responses.ts';
export { normaliseAmount } from './amount.ts';
export { observeClient, type ChangeNowCall, type ChangeNowObserver } from './observe.ts';
