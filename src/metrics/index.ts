/**
 * payrail's metrics: what this process saw (IPN answers, ChangeNow calls, job attempts), Node's own figures, and,
 * when a database is given, what the database holds at scrape time (pipeline counts, queues, alerts, amounts,
 * observations).
 */
import { Gauge, Registry } from 'prom-client';
import type { Db } from '../db/index.ts';
import {
  HISTORY_MAX_AGE_MS,
  observationStaleAfterSeconds,
  readHistoryFigures,
  readLiveFigures,
  type HistoryFigures,
} from './database.ts';
import { intakeMetricsText } from './intake.ts';
import { databaseMetricsText } from './scrape.ts';
import { createProcessMetrics, runtimeRegistry, type ProcessMetrics } from './process.ts';

export { IPN_OUTCOMES, ipnOutcomeLabel, runtimeRegistry, type IpnAnswer, type ProcessMetrics } from './process.ts';
export {
  readHistoryFigures,
  readLiveFigures,
  observationStaleAfterSeconds,
  HISTORY_MAX_AGE_MS,
  type HistoryFigures,
  type LiveFigures,
  type Observation,
} from './database.ts';
export { exactAmount, gaugeFamily, type ExactSample } from './exposition.ts';

/** Where a failed database read is reported (a request's logger will do). */
export interface WarnLogger {
  warn(fields: Record<string, unknown>, message: string): void;
}

export interface MetricsOptions {
  /** ALERT_INTERVAL, in milliseconds: how often the workers refresh the observations that /metrics reports. */
  readonly alertIntervalMs: number;
  /** Test seam: the clock that paces the history read and measures its age (milliseconds). */
  readonly now?: () => number;
}

export interface Metrics extends ProcessMetrics {
  /** The exposition's content type: text/plain; version=0.0.4. */
  readonly contentType: string;
  /**
   * The exposition text; with `db`, the database's figures too. payrail_database_up is 0 only when the live figures
   * could not be read; a failed history read keeps the last good history figures, with their growing age.
   */
  render(options?: { db?: Db; logger?: WarnLogger }): Promise<string>;
}

export function createMetrics(options: MetricsOptions): Metrics {
  const now = options.now ?? Date.now;
  const staleAfter = observationStaleAfterSeconds(options.alertIntervalMs);
  const local = createProcessMetrics();
  // Concurrent scrapes (several Prometheus servers, a retry) share one read of the database.
  const live = shared(readLiveFigures);
  const history = historyCache(now);

  return {
    ...local,
    contentType: local.registry.contentType,
    async render(renderOptions = {}) {
      const own = (await local.registry.metrics()) + (await runtimeRegistry().metrics()) + (await intakeMetricsText());
      const { db, logger } = renderOptions;
      if (db === undefined) return own;
      try {
        const liveFigures = await live(db);
        const figures = await databaseMetricsText(liveFigures, await history(db, logger), {
          now: now(),
          observationStaleAfterSeconds: staleAfter,
        });
        return own + (await databaseUp(1)) + figures;
      } catch (error) {
        logger?.warn(
          { event: 'metrics_database_failed', err: (error as Error).message },
          'metrics: the database figures could not be read',
        );
        return own + (await databaseUp(0));
      }
    },
  };
}

/**
 * The history figures, read at most once per HISTORY_MAX_AGE_MS. The minute starts at the attempt, not at a success:
 * a read that failed (a statement timeout on a database already too slow) is not retried at every scrape, each one
 * holding a pooled connection for the whole timeout. Until a read succeeds again the last good figures are served,
 * and their age keeps growing; a failure never answers for the cheap live figures read beside them.
 */
function historyCache(now: () => number): (db: Db, logger?: WarnLogger) => Promise<HistoryFigures | undefined> {
  let last: HistoryFigures | undefined;
  let attemptedAt = Number.NEGATIVE_INFINITY;
  let running: Promise<void> | undefined;
  return async (db, logger) => {
    if (running === undefined && now() - attemptedAt >= HISTORY_MAX_AGE_MS) {
      attemptedAt = now();
      running = readHistoryFigures(db, now)
        .then(
          (figures) => {
            last = figures;
          },
          (error: unknown) => {
            logger?.warn(
              {
                event: 'metrics_history_failed',
                err: (error as Error).message,
                retryInSeconds: HISTORY_MAX_AGE_MS / 1_000,
                ...(last && { servingAgeSeconds: Math.max(0, (now() - last.readAt) / 1_000) }),
              },
              'metrics: the history figures could not be read; serving the last good ones',
            );
          },
        )
        .finally(() => {
          running = undefined;
        });
    }
    await running;
    return last;
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
  new Gauge({
    name: 'payrail_database_up',
    help: 'Whether this scrape could read the live database figures (1) or not (0); a failed history read alone leaves it at 1.',
    registers: [registry],
  }).set(value);
  return registry.metrics();
}
