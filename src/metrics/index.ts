/**
 * payrail's metrics: what this process saw (IPN answers, ChangeNow calls, job attempts) and, when a database is
 * given, what the database holds at scrape time (pipeline counts, queues, alerts, amounts, observations).
 */
import { Gauge, Registry } from 'prom-client';
import type { Db } from '../db/index.ts';
import { HISTORY_MAX_AGE_MS, readHistoryFigures, readLiveFigures, type HistoryFigures } from './database.ts';
import { databaseMetricsText } from './scrape.ts';
import { createProcessMetrics, type ProcessMetrics } from './process.ts';

export { IPN_OUTCOMES, ipnOutcomeLabel, type IpnAnswer, type ProcessMetrics } from './process.ts';
export { readHistoryFigures, readLiveFigures, HISTORY_MAX_AGE_MS, type HistoryFigures, type LiveFigures, type Observation } from './database.ts';
export { exactAmount, gaugeFamily, type ExactSample } from './exposition.ts';

/** Where a failed database read is reported (a request's logger will do). */
export interface WarnLogger {
  warn(fields: Record<string, unknown>, message: string): void;
}

export interface Metrics extends ProcessMetrics {
  /** The exposition's content type: text/plain; version=0.0.4. */
  readonly contentType: string;
  /** The exposition text; with `db`, the database's figures too (a failed read leaves payrail_database_up at 0). */
  render(options?: { db?: Db; logger?: WarnLogger }): Promise<string>;
}

export function createMetrics(): Metrics {
  const local = createProcessMetrics();
  // Concurrent scrapes (several Prometheus servers, a retry) share one read of the database.
  const live = shared(readLiveFigures);
  const history = shared(readHistoryFigures);
  let lastHistory: HistoryFigures | undefined;
  const historyFigures = async (db: Db): Promise<HistoryFigures> => {
    if (lastHistory === undefined || Date.now() - lastHistory.readAt >= HISTORY_MAX_AGE_MS) lastHistory = await history(db);
    return lastHistory;
  };

  return {
    ...local,
    contentType: local.registry.contentType,
    async render(options = {}) {
      const own = await local.registry.metrics();
      if (options.db === undefined) return own;
      let figures = '';
      let up = 1;
      try {
        figures = await databaseMetricsText(await live(options.db), await historyFigures(options.db));
      } catch (error) {
        up = 0;
        options.logger?.warn({ event: 'metrics_database_failed', err: (error as Error).message }, 'metrics: the database figures could not be read');
      }
      return own + (await databaseUp(up)) + figures;
    },
  };
}

/** One read at a time: a call made while a read is running gets that read's result. */
function shared<T>(read: (db: Db) => Promise<T>): (db: Db) => Promise<T> {
  let running: Promise<T> | undefined;
  return (db) => {
    running ??= read(db).finally(() => {
      running = undefined;
    });
    return running;
  };
}

async function databaseUp(value: number): Promise<string> {
  const registry = new Registry();
  new Gauge({ name: 'payrail_database_up', help: 'Whether this scrape could read the database figures (1) or not (0).', registers: [registry] }).set(value);
  return registry.metrics();
}
