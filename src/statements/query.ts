/**
 * GET /api/channels/:id/statement's query and what it answers: the route parses the query with `statementQuery` and
 * hands it to `readStatement`, which owns every rule about it (bounds, page size, cursor), so the HTTP layer only
 * chooses the status and the content type.
 */
import { Readable } from 'node:stream';
import { z } from 'zod';
import type { Db } from '../db/index.ts';
import { statementCsv } from './csv.ts';
import { BadPageError } from './cursor.ts';
import { parseBounds } from './range.ts';
import { channelStatement, STATEMENT_PAGE_MAX, type Statement } from './statement.ts';

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
 * The statement `query` asks for; null: no such channel. Throws BadRangeError or BadCursorError (400s) for a query
 * that cannot be answered, StatementCheckError when the statement does not add up.
 */
export async function readStatement(db: Db, channelId: string, query: StatementQuery): Promise<StatementAnswer | null> {
  const bounds = parseBounds(query);
  if (query.limit !== undefined || query.after !== undefined)
    throw new BadPageError('limit, after: statements are not paged yet');
  const statement = await channelStatement(db, channelId, bounds);
  if (!statement) return null;
  if (query.format === 'json') return { format: 'json', statement };
  const filename = `statement-${channelId}-${statement.from}-${statement.to}.csv`.replaceAll(':', '');
  const text = statementCsv(statement);
  return {
    format: 'csv',
    filename,
    lines: Readable.from([text]),
  };
}
