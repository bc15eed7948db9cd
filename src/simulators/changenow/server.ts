/**
 * A ChangeNow v2 simulator over real HTTP: the subset payrail uses (estimate, create, by-id, list by userId), with
 * configurable rates and fees, exchanges that progress once the deposit reaches the payin address on the local chain
 * (it reads the chain), and fault injection (down, 5xx, 401, slow, a forced final status) through /sim routes.
 *
 * Amounts leave as JSON numbers, as ChangeNow sends them, written from exact decimals (never a float).
 */
import { jsonApi, LocalServer, type JsonApi } from '../http.ts';
import { apiRoute, type ApiContext } from './api.ts';
import { Faults } from './faults.ts';
import type { ChangeNowSimulator, Fault, SimExchange, SimulatorOptions } from './model.ts';
import { DEFAULT_PAIRS } from './pricing.ts';
import { ExchangeProgress } from './progress.ts';
import { simRoute, type SimContext } from './sim-api.ts';

export {
  DEFAULT_BELOW_ESTIMATE_PERCENT,
  DEFAULT_VERIFYING_MS,
  type ChangeNowSimulator,
  type ExchangeState,
  type Fault,
  type ForcedEnd,
  type ForcedEndOptions,
  type PairConfig,
  type SimExchange,
  type SimulatorOptions,
} from './model.ts';
export { DEFAULT_PAIRS } from './pricing.ts';

export async function startChangeNowSimulator(options: SimulatorOptions): Promise<ChangeNowSimulator> {
  const pairs = new Map(Object.entries({ ...DEFAULT_PAIRS, ...options.pairs }));
  const exchanges = new Map<string, SimExchange>();
  const faults = new Faults();
  const server = new LocalServer();

  const setFault = async (next: Fault, opts: { slowMs?: number } = {}): Promise<void> => {
    if (opts.slowMs !== undefined) faults.slowMs = opts.slowMs;
    if (next === 'down' && faults.fault !== 'down') await server.close();
    if (next !== 'down' && faults.fault === 'down') await server.reopen();
    faults.fault = next;
  };

  const api: ApiContext = {
    apiKey: options.apiKey,
    pairs,
    exchanges,
    faults,
    progress: new ExchangeProgress(options, pairs),
  };
  await server.listen(
    jsonApi({
      route: route(api, { exchanges, faults, setFault }),
      errorBody: (_status, code, message) => ({ error: code, message }),
      internalCode: 'internal_error',
    }),
    options.port,
  );

  return {
    url: server.url,
    exchanges,
    setFault,
    failNextExchange: (status, opts = {}) => faults.armNextEnd(status, opts),
    releaseVerification(exchangeId) {
      const ex = exchanges.get(exchangeId);
      if (ex?.status === 'verifying') ex.verifyingUntil = Date.now();
    },
    setPair(key, pair) {
      pairs.set(key, pair);
    },
    async stop() {
      if (faults.fault !== 'down') await server.close();
    },
  };
}

/** /sim/ drives the simulator and needs no key; every other path is the ChangeNow API. */
function route(api: ApiContext, sim: SimContext): JsonApi['route'] {
  return async (req, res, body) => {
    const url = new URL(req.url ?? '/', 'http://sim');
    if (url.pathname.startsWith('/sim/')) return simRoute(sim, req.method ?? 'GET', url, body, res);
    return apiRoute(api, req, res, url, body);
  };
}
