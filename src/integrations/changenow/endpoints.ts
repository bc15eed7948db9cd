/**
 * The four ChangeNow calls (async, so a refused request is a rejected promise like any other failure), each checked
 * before it is sent and, where the answer names what was asked, after.
 */
import { LosslessNumber, stringify } from 'lossless-json';
import { checkCreate, checkEstimateAmounts, checkPair, EXCHANGE_ID_RE, isShortText } from './checks.ts';
import { call, invalid, malformed, urlFor, type ClientContext } from './request.ts';
import {
  createdExchangeSchema,
  estimateSchema,
  exchangeListSchema,
  exchangeStatusSchema,
  type CreatedExchange,
  type Estimate,
  type ExchangeStatus,
} from './responses.ts';
import type { CreateExchangeRequest, EstimateRequest, ExchangeListFilter } from './types.ts';

export async function estimate(ctx: ClientContext, request: EstimateRequest): Promise<Estimate> {
  const problem = checkPair(request) ?? checkEstimateAmounts(request);
  if (problem) throw invalid(ctx, 'estimate', problem);
  const flow = request.flow ?? 'standard';
  const target = urlFor(ctx, '/v2/exchange/estimated-amount', {
    fromCurrency: request.fromCurrency,
    toCurrency: request.toCurrency,
    fromAmount: request.fromAmount,
    toAmount: request.toAmount,
    fromNetwork: request.fromNetwork,
    toNetwork: request.toNetwork,
    flow,
    type: request.type ?? 'direct',
    // A fixed-rate estimate only returns a rateId (needed to create at that rate) when asked for one.
    useRateId: flow === 'fixed-rate' ? 'true' : undefined,
  });
  return call(ctx, 'estimate', 'GET', target, null, estimateSchema);
}

export async function createExchange(ctx: ClientContext, request: CreateExchangeRequest): Promise<CreatedExchange> {
  const problem = checkPair(request) ?? checkCreate(request);
  if (problem) throw invalid(ctx, 'create', problem);
  const body: Record<string, unknown> = {
    fromCurrency: request.fromCurrency,
    toCurrency: request.toCurrency,
    fromNetwork: request.fromNetwork,
    toNetwork: request.toNetwork,
    // A JSON number whose text is exactly the caller's decimal: never through a float.
    fromAmount: new LosslessNumber(request.fromAmount),
    address: request.address,
    refundAddress: request.refundAddress,
    userId: request.userId,
    payload: { ...request.payload },
    flow: request.flow ?? 'standard',
    type: request.type ?? 'direct',
    rateId: request.rateId,
  };
  const text = stringify(body);
  if (text === undefined) throw invalid(ctx, 'create', 'body could not be serialised');
  return call(ctx, 'create', 'POST', urlFor(ctx, '/v2/exchange'), text, createdExchangeSchema);
}

export async function getExchange(ctx: ClientContext, id: string): Promise<ExchangeStatus> {
  if (typeof id !== 'string' || !EXCHANGE_ID_RE.test(id))
    throw invalid(ctx, 'by-id', 'id must be a ChangeNow exchange id');
  const status = await call(ctx, 'by-id', 'GET', urlFor(ctx, '/v2/exchange/by-id', { id }), null, exchangeStatusSchema);
  if (status.id !== id)
    throw malformed(ctx, 'by-id', 200, `asked for exchange ${id}, got ${JSON.stringify(status.id.slice(0, 64))}`);
  return status;
}

export async function listExchanges(ctx: ClientContext, filter: ExchangeListFilter): Promise<ExchangeStatus[]> {
  const userId = (filter as ExchangeListFilter | null | undefined)?.userId;
  if (!isShortText(userId)) throw invalid(ctx, 'list', 'userId must be a non-empty string');
  const list = await call(ctx, 'list', 'GET', urlFor(ctx, '/v2/exchanges', { userId }), null, exchangeListSchema);
  const stranger = list.exchanges.find((exchange) => exchange.userId !== userId);
  if (stranger) {
    throw malformed(
      ctx,
      'list',
      200,
      `asked for the exchanges of userId ${JSON.stringify(userId.slice(0, 64))}, got exchange ${JSON.stringify(stranger.id.slice(0, 64))} of userId ${JSON.stringify(stranger.userId?.slice(0, 64) ?? null)}`,
    );
  }
  return list.exchanges;
}
