import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { exportCsv, EXPORTS, parseBounds, resolveRange } from '../../../statements/index.ts';
import type { AdminDeps } from './shared.ts';

// The bounds are checked by parseBounds (ISO 8601, a zone with a time of day), with messages naming what is wrong.
const exportQuery = z.object({ from: z.string().max(64).optional(), to: z.string().max(64).optional() }).strict();

/**
 * Exports one process streams at once. Each holds a pool connection for as long as its reader reads (minutes for a
 * large range): more at once would take the connections intake and the pipeline need.
 */
export const EXPORTS_AT_ONCE = 2;

/**
 * Accounting exports (src/statements/exports.ts): GET /api/exports/payments.csv, payouts.csv and ledger.csv, each for
 * a time range (from inclusive, to exclusive; the whole history up to now by default), streamed batch by batch.
 */
export function exportRoutes(app: FastifyInstance, deps: AdminDeps): void {
  let running = 0;
  for (const name of EXPORTS) {
    app.get(`/api/exports/${name}.csv`, async (request, reply) => {
      const query = exportQuery.parse(request.query);
      const range = resolveRange(parseBounds(query), {
        from: new Date(0),
        to: new Date(),
        fromName: 'default: the beginning',
        toName: 'default: now',
      });
      if (running >= EXPORTS_AT_ONCE)
        return reply
          .code(429)
          .header('retry-after', '30')
          .send({ error: `${EXPORTS_AT_ONCE} exports are running on this server; try again once one has finished` });
      running++;
      let released = false;
      const release = () => {
        if (!released) running--;
        released = true;
      };
      const lines = exportCsv(deps.db, name, range);
      let first: IteratorResult<string, void>;
      try {
        // The header line is read before answering: a database that cannot start the export is a 500, not a cut body.
        first = await lines.next();
      } catch (error) {
        release();
        throw error;
      }
      async function* all(): AsyncGenerator<string> {
        if (!first.done) yield first.value;
        yield* lines;
      }
      const body = Readable.from(all(), { highWaterMark: 2 });
      // Ended, failed or abandoned by its reader: the stream closes either way, and its snapshot is released.
      body.on('close', release);
      body.on('error', (error) =>
        request.log.error({ event: 'export_failed', export: name, err: error }, 'export failed part way; response cut'),
      );
      const file = `${name}-${range.from.toISOString()}-${range.to.toISOString()}.csv`.replaceAll(':', '');
      return reply
        .header('cache-control', 'no-store')
        .header('content-disposition', `attachment; filename="${file}"`)
        .type('text/csv; charset=utf-8')
        .send(body);
    });
  }
}
