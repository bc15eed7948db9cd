/**
 * GET /api/channels/:id/statement's query and what it answers: the route parses the query with `statementQuery` and
 * hands it to `readStatement`, which owns every rule about it (bounds, page size, cursor), so the HTTP layer only
 * chooses the status and the content type.
 */
import { z } from 'zod';
import type { Db } from '../db/index.ts';
import { statementCsvLines } from './csv.ts';
import { BadPageError } from './cursor.ts';
import { parseBounds } from './range.ts';
import { channelStatement, STATEMENT_PAGE_DEFAULT, STATEMENT_PAGE_MAX, type Statement } from './statement.ts';

const LIMIT_MESSAGE = `must be a whole number from 1 to ${STATEMENT_PAGE_MAX}`;

/** Long enough for any cursor this version hands out, short enough that a pasted file is refused at once. */
const CURSOR_MAX = 512;

// The bounds are checked by parseBounds (ISO 8601, a zone with a time of day), with messages naming what is wrong;
// the cursor by the statement, which knows the channel and range it was handed out for.
export const statementQuery = z
  .object({
    from: z.string().max(64).optional(),
    to: z.string().max(64).optional(),
    format: z.enum(['json', 'csv']).default('json'),
    limit: z.coerce
      .number({ error: LIMIT_MESSAGE })
      .int({ error: LIMIT_MESSAGE })
      .min(1, { error: LIMIT_MESSAGE })
      .max(STATEMENT_PAGE_MAX, { error: LIMIT_MESSAGE })
      .optional(),
    after: z.string().max(CURSOR_MAX).optional(),
  })
  .strict();

export type StatementQuery = z.infer<typeof statementQuery>;

export type StatementAnswer =
  | { readonly format: 'json'; readonly statement: Statement }
  /** `lines` is the whole range as CSV, streamed; its totals were proven before it was handed out. */
  | { readonly format: 'csv'; readonly filename: string; readonly lines: AsyncIterable<string> };

/**
 * The statement `query` asks for; null: no such channel. Throws BadRangeError or BadPageError (400s) for a query
 * that cannot be answered, StatementCheckError when the statement does not add up.
 */
export async function readStatement(db: Db, channelId: string, query: StatementQuery): Promise<StatementAnswer | null> {
  const bounds = parseBounds(query);
  if (query.format === 'csv') {
    if (query.limit !== undefined || query.after !== undefined)
      throw new BadPageError('limit, after: the CSV is the whole range, streamed; they page the JSON statement');
    const csv = await statementCsvLines(db, channelId, bounds);
    if (!csv) return null;
    const filename = `statement-${channelId}-${csv.from}-${csv.to}.csv`.replaceAll(':', '');
    return { format: 'csv', filename, lines: csv.lines };
  }
  const statement = await channelStatement(db, channelId, bounds, {
    limit: query.limit ?? STATEMENT_PAGE_DEFAULT,
    after: query.after,
  });
  return statement && { format: 'json', statement };
}
