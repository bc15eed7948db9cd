/**
 * The operator's overview: one read of everything the dashboard and `payrail status` show. Each part is a cheap
 * query whatever the history (balance rows, partial indexes, the window's journals; see each module), and all of
 * them run in one read-only snapshot on one connection, so the figures agree with each other and a dashboard left
 * open takes one pool connection at a time.
 */
import { sql } from 'kysely';
import type { Db } from '../db/index.ts';
import { openAlerts } from './alerts.ts';
import { readChannels } from './channels.ts';
import { readConversionStates, recentConversions, reviewConversions } from './conversions.ts';
import { readObservations } from './observations.ts';
import { paymentStages, reviewPayments } from './payments.ts';
import { payoutCounts, recentPayouts, reviewQueue } from './payouts.ts';
import { queueDepths } from './queues.ts';
import { readLedgerFigures, totalsFrom } from './totals.ts';
import { reviewTransfers, transferCounts } from './transfers.ts';
import { readVolume } from './volume.ts';
import { ledgerWindow } from './window.ts';
import type { Overview } from './types.ts';

export type * from './types.ts';
export { CHANNELS_SHOWN, fillBps } from './channels.ts';
export { formatCosts, perThousandTruncated, readCosts } from './costs.ts';
export type { CostLine, CostScope, CostsReport, CostStrategy, StrategyCosts } from './costs.ts';
export { formatStatus } from './report.ts';
export { volumeSeries } from './volume.ts';
export type { ObservationRow } from './observations.ts';

export const WINDOW_HOURS_DEFAULT = 24;
export const WINDOW_HOURS_MAX = 168;
/** A dashboard must never hold the database: each statement of the read gives up after this. */
const STATEMENT_TIMEOUT = '5s';

export async function readOverview(db: Db, options: { windowHours?: number } = {}): Promise<Overview> {
  const hours = options.windowHours ?? WINDOW_HOURS_DEFAULT;
  if (!Number.isInteger(hours) || hours < 1 || hours > WINDOW_HOURS_MAX)
    throw new RangeError(`windowHours must be an integer from 1 to ${WINDOW_HOURS_MAX}`);
  return db
    .transaction()
    .setIsolationLevel('repeatable read')
    .setAccessMode('read only')
    .execute(async (trx) => {
      // Hour buckets are UTC hours whatever the server's time zone.
      await sql`set local time zone 'UTC'`.execute(trx);
      await sql`select set_config('statement_timeout', ${STATEMENT_TIMEOUT}, true)`.execute(trx);
      const now = ((await sql<{ now: Date }>`select now()`.execute(trx)).rows[0] as { now: Date }).now;
      const window = await ledgerWindow(trx, hours);
      const conversionStates = await readConversionStates(trx);
      const totals = totalsFrom(await readLedgerFigures(trx), conversionStates);
      const stages = await paymentStages(trx);
      const volume = await readVolume(trx, window, hours);
      const observed = await readObservations(trx);
      return {
        generatedAt: now.toISOString(),
        windowHours: hours,
        totals,
        pipeline: {
          payments: {
            awaitingConversion: stages.awaitingConversion,
            inConversion: conversionStates.openPayments,
            awaitingPayout: stages.awaitingPayout,
            inReview: stages.inReview,
            receivedInWindow: volume.buckets.reduce((n, b) => n + b.payments, 0),
          },
          conversions: conversionStates.counts,
          payouts: await payoutCounts(trx, window),
          transfers: await transferCounts(trx),
        },
        queues: await queueDepths(trx),
        alerts: await openAlerts(trx),
        conversions: await recentConversions(trx, window),
        payouts: await recentPayouts(trx, window),
        channels: await readChannels(trx),
        review: {
          payouts: await reviewQueue(trx, now),
          conversions: await reviewConversions(trx),
          transfers: await reviewTransfers(trx),
          payments: await reviewPayments(trx),
        },
        hostWallet: observed.hostWallet,
        services: observed.services,
        volume,
      };
    });
}
