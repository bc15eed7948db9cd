/**
 * The simulator's own routes under /sim/, for processes that drive it from outside (the chaos run, a local run):
 * POST /sim/fault sets the fault and arms the next exchange's forced end, GET /sim/exchanges lists every exchange.
 */
import type http from 'node:http';
import { HttpError, type Answer } from '../http.ts';
import { parseFaultRequest, type Faults } from './faults.ts';
import { exchangeView } from './json.ts';
import type { Fault, SimExchange } from './model.ts';

export interface SimContext {
  readonly exchanges: Map<string, SimExchange>;
  readonly faults: Faults;
  setFault(fault: Fault): Promise<void>;
}

type Handler = (ctx: SimContext, body: string, res: http.ServerResponse) => Answer | Promise<Answer>;

const ROUTES = new Map<string, Handler>([
  ['POST /sim/fault', setFault],
  ['GET /sim/exchanges', (ctx) => [200, { exchanges: [...ctx.exchanges.values()].map(exchangeView) }]],
]);

export async function simRoute(
  ctx: SimContext,
  method: string,
  url: URL,
  body: string,
  res: http.ServerResponse,
): Promise<Answer> {
  const handler = ROUTES.get(`${method} ${url.pathname}`);
  if (!handler) throw new HttpError(404, 'not_found', `no route ${method} ${url.pathname}`);
  return handler(ctx, body, res);
}

async function setFault(ctx: SimContext, body: string, res: http.ServerResponse): Promise<Answer> {
  const input = parseFaultRequest(body);
  if (input.slowMs !== undefined) ctx.faults.slowMs = input.slowMs;
  if (input.nextExchange !== undefined) {
    ctx.faults.armNextEnd(input.nextExchange, {
      ...(input.belowEstimatePercent !== undefined && { belowEstimatePercent: input.belowEstimatePercent }),
      ...(input.verifyingMs !== undefined && { verifyingMs: input.verifyingMs }),
    });
  }
  if (input.fault === 'down') {
    // Going down closes every connection, this one included: answer first, then close.
    res.once('finish', () => void ctx.setFault('down'));
    return [200, { fault: 'down', nextExchange: ctx.faults.nextEnd }];
  }
  if (input.fault !== undefined) await ctx.setFault(input.fault);
  return [200, { fault: ctx.faults.fault, nextExchange: ctx.faults.nextEnd }];
}
