/**
 * The ChangeNow client's interface and the requests it takes: shared by the client (client.ts) and the wrapper that
 * reports its calls (observe.ts).
 */
import type { CreatedExchange, Estimate, ExchangeStatus } from './responses.ts';

export type ExchangeFlow = 'standard' | 'fixed-rate';
export type ExchangeType = 'direct' | 'reverse';

export interface EstimateRequest {
  fromCurrency: string;
  toCurrency: string;
  fromNetwork: string;
  toNetwork: string;
  /** Required for type 'direct' (the default), refused for 'reverse'. */
  fromAmount?: string;
  /** Required for type 'reverse', refused for 'direct'. */
  toAmount?: string;
  flow?: ExchangeFlow;
  type?: ExchangeType;
}

export interface CreateExchangeRequest {
  fromCurrency: string;
  toCurrency: string;
  fromNetwork: string;
  toNetwork: string;
  /** Plain decimal text; sent as a JSON number with exactly this text. */
  fromAmount: string;
  address: string;
  refundAddress?: string;
  userId: string;
  payload: Record<string, string>;
  flow?: ExchangeFlow;
  type?: ExchangeType;
  /** From a fixed-rate estimate. */
  rateId?: string;
}

export interface ChangeNowClient {
  estimate(request: EstimateRequest): Promise<Estimate>;
  createExchange(request: CreateExchangeRequest): Promise<CreatedExchange>;
  getExchange(id: string): Promise<ExchangeStatus>;
  /**
   * The exchanges created with this `userId` (GET /v2/exchanges?userId=…), in ChangeNow's order; empty when there
   * are none. Payrail puts its own id in userId at creation, so a job that crashed between ChangeNow creating an
   * exchange and payrail recording the exchange id can find that exchange again. Every listed exchange is checked to
   * carry exactly this userId: a server that ignored the filter fails the call (transient malformed_response) rather
   * than hand back someone else's exchange.
   */
  listExchanges(filter: ExchangeListFilter): Promise<ExchangeStatus[]>;
}

export interface ExchangeListFilter {
  /** The userId given to createExchange. */
  userId: string;
}
