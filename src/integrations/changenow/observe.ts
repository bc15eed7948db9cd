/**
 * Instrumentation seam: every call of a client is reported once, with its duration and how it ended, to an observer
 * the client's owner supplies (metrics). Wrapping the finished client keeps the request code free of bookkeeping and
 * sees every way a call can end, including the checks made after a response arrived.
 */
import { ChangeNowError, type ChangeNowEndpoint } from './errors.ts';
import type { ChangeNowClient, CreateExchangeRequest, EstimateRequest, ExchangeListFilter } from './types.ts';

export interface ChangeNowCall {
  readonly endpoint: ChangeNowEndpoint;
  /** Wall time of the whole call, request and response checks included. */
  readonly seconds: number;
  /** False when the client refused the request before sending it: no round trip to time. */
  readonly sent: boolean;
  /** Null on success; a ChangeNowError (already classified) or, for a bug, any other error. */
  readonly error: unknown;
}

export type ChangeNowObserver = (call: ChangeNowCall) => void;

export function observeClient(client: ChangeNowClient, observer: ChangeNowObserver): ChangeNowClient {
  const report = (call: ChangeNowCall): void => {
    try {
      observer(call);
    } catch {
      // Instrumentation must never change the outcome of a call that moved money.
    }
  };
  const timed =
    <A extends unknown[], R>(endpoint: ChangeNowEndpoint, run: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      const started = performance.now();
      const seconds = () => (performance.now() - started) / 1_000;
      try {
        const result = await run(...args);
        report({ endpoint, seconds: seconds(), sent: true, error: null });
        return result;
      } catch (error) {
        const refused = error instanceof ChangeNowError && error.code === 'invalid_request';
        report({ endpoint, seconds: seconds(), sent: !refused, error });
        throw error;
      }
    };
  return {
    estimate: timed('estimate', (request: EstimateRequest) => client.estimate(request)),
    createExchange: timed('create', (request: CreateExchangeRequest) => client.createExchange(request)),
    getExchange: timed('by-id', (id: string) => client.getExchange(id)),
    listExchanges: timed('list', (filter: ExchangeListFilter) => client.listExchanges(filter)),
  };
}
