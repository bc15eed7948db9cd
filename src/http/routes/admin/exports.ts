import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import {
  cutRange,
  exportCsv,
  EXPORTS,
  parseBounds,
  readHorizon,
  resolveRange,
  type ExportName,
} from '../../../statements/index.ts';
import { route, shapes } from '../../openapi/index.ts';
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
  // One count for the three files: the limit is on the pool connections they hold, whichever file each streams.
  const slots = exportSlots();
  for (const name of EXPORTS) exportRoute(app, deps, name, slots);
}

const exportAnswers = {
  200: {
    description: 'The CSV, streamed batch by batch; a failure part way cuts the body.',
    mediaType: 'text/csv',
    headers: {
      'content-disposition': 'attachment, with a file name naming the range',
      'cache-control': '`no-store`: never kept by a browser or a proxy.',
      'payrail-range-to':
        'The end the file covers (exclusive): the `to` asked, or earlier when a transaction still open could book a row before it.',
      'payrail-range-to-asked': 'Only when the range was cut: the `to` asked for (now, when it was left out).',
    },
  },
  400: {
    description: 'A bound that is not a time, a range that runs backwards, or an unknown parameter.',
    schema: shapes.errorBody,
  },
  429: {
    description: `${EXPORTS_AT_ONCE} exports are running on this server.`,
    schema: shapes.errorBody,
    headers: { 'retry-after': 'Seconds to wait.' },
  },
};

function exportRoute(app: FastifyInstance, deps: AdminDeps, name: ExportName, slots: ExportSlots): void {
  route(app, {
    method: 'GET',
    path: `/api/exports/${name}.csv`,
    tag: 'exports',
    auth: 'admin',
    summary: `The ${name} of a time range as CSV, streamed`,
    description:
      '`from` inclusive, `to` exclusive (ISO 8601 with a zone); the whole history up to now by default. A `to` later than the start of a transaction still open is cut there (`payrail-range-to`), so the next export, from that time, has every row this one could not.',
    query: exportQuery,
    responses: exportAnswers,
    handler: async ({ query }, request, reply) => sendExport(deps, name, query, slots, request, reply),
  });
}

/** The range checked first (a 400 names what is wrong), then a free slot (429 without one), then the CSV streamed. */
async function sendExport(
  deps: AdminDeps,
  name: ExportName,
  query: z.output<typeof exportQuery>,
  slots: ExportSlots,
  request: FastifyRequest,
  reply: FastifyReply,
) {
  const { range, asked } = await exportRange(deps, query);
  const release = slots.take();
  if (!release)
    return reply
      .code(429)
      .header('retry-after', '30')
      .send({ error: `${EXPORTS_AT_ONCE} exports are running on this server; try again once one has finished` });
  const body = await csvStream(exportCsv(deps.db, name, range), release);
  body.on('error', (error) =>
    request.log.error({ event: 'export_failed', export: name, err: error }, 'export failed part way; response cut'),
  );
  const file = `${name}-${range.from.toISOString()}-${range.to.toISOString()}.csv`.replaceAll(':', '');
  if (asked) reply.header('payrail-range-to-asked', asked.toISOString());
  return reply
    .header('payrail-range-to', range.to.toISOString())
    .header('cache-control', 'no-store')
    .header('content-disposition', `attachment; filename="${file}"`)
    .type('text/csv; charset=utf-8')
    .send(body);
}

/** The range asked for (the whole history up to now by default), and the `to` asked when it had to be cut. */
async function exportRange(deps: AdminDeps, query: z.output<typeof exportQuery>) {
  const horizon = await readHorizon(deps.db);
  // Cut where no open transaction can still book a row (as a statement's first page is): otherwise a row booked
  // at a time this file covers, but committed after its snapshot, would be in neither this file nor the next.
  return cutRange(
    resolveRange(parseBounds(query), {
      from: new Date(0),
      to: horizon.now,
      fromName: 'default: the beginning',
      toName: 'default: now',
    }),
    horizon,
  );
}

/**
 * The export's lines as a stream that gives its slot back when it closes: ended, failed or abandoned by its reader,
 * its snapshot is released either way.
 */
async function csvStream(lines: AsyncGenerator<string, void>, release: () => void): Promise<Readable> {
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
  body.on('close', release);
  return body;
}

/** Counts the exports streaming now. `take` gives a release (safe to call twice), or nothing when all are taken. */
function exportSlots() {
  let running = 0;
  return {
    take(): (() => void) | undefined {
      if (running >= EXPORTS_AT_ONCE) return undefined;
      running++;
      let released = false;
      return () => {
        if (!released) running--;
        released = true;
      };
    },
  };
}

type ExportSlots = ReturnType<typeof exportSlots>;
