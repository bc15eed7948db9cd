/**
 * Where a page of a statement ended, handed to the client as an opaque string (`after`) and read back from it. It
 * names the channel and the exact range it was handed out for, so a cursor is never applied to another statement:
 * the range (and with it the moment "now" stood for, and where the range was cut) is fixed by the first page and
 * carried by the cursor.
 */
import { StatementQueryError } from './range.ts';

/** A request whose paging parameters cannot be answered: a 400 with this message. */
export class BadPageError extends StatementQueryError {
  override name = 'BadPageError';
}

/** A position in a statement's lines: the time (the ledger's, µs, as text) and id of the last journal listed. */
export interface LineKey {
  readonly at: string;
  readonly journal: string;
}

interface CursorBody {
  /** Format version: a cursor from another layout is refused rather than misread. */
  readonly v: 1;
  readonly channel: string;
  readonly from: string;
  readonly to: string;
  /** The `to` asked for, when the first page cut the range short of it: asked again with the cursor, it is the same. */
  readonly asked?: string;
  readonly at: string;
  readonly journal: string;
}

const AT_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const JOURNAL_RE = /^[1-9]\d{0,18}$/;

/**
 * A ledger time as the server writes it: the shape, and a real moment PostgreSQL takes. The shape alone let
 * "2026-13-45T99:99:99.999999Z" or year 0000 through to the query, whose cast failed: a 500 for a forged cursor.
 * JavaScript rolls an impossible date over (February 30th is March 2nd): the milliseconds must come back the same.
 */
function isLedgerTime(at: unknown): at is string {
  if (typeof at !== 'string' || !AT_RE.test(at) || at.startsWith('0000')) return false;
  const ms = at.slice(0, 23);
  const parsed = new Date(`${ms}Z`);
  return !Number.isNaN(parsed.getTime()) && parsed.toISOString().slice(0, 23) === ms;
}

export function encodeCursor(channel: string, from: Date, to: Date, asked: Date | null, key: LineKey): string {
  const body: CursorBody = {
    v: 1,
    channel,
    from: from.toISOString(),
    to: to.toISOString(),
    ...(asked === null ? {} : { asked: asked.toISOString() }),
    ...key,
  };
  return Buffer.from(JSON.stringify(body)).toString('base64url');
}

/** A cursor as handed out, with the range it fixes; BadPageError when it is not one this server could have written. */
export function decodeCursor(text: string): {
  channel: string;
  from: Date;
  to: Date;
  asked: Date | null;
  key: LineKey;
} {
  let body: Partial<CursorBody> | null;
  try {
    body = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as Partial<CursorBody>;
  } catch {
    body = null;
  }
  const from = typeof body?.from === 'string' ? new Date(body.from) : undefined;
  const to = typeof body?.to === 'string' ? new Date(body.to) : undefined;
  const asked = body?.asked === undefined ? null : typeof body.asked === 'string' ? new Date(body.asked) : undefined;
  if (
    body === null ||
    typeof body !== 'object' ||
    body.v !== 1 ||
    typeof body.channel !== 'string' ||
    !isLedgerTime(body.at) ||
    typeof body.journal !== 'string' ||
    !JOURNAL_RE.test(body.journal) ||
    from === undefined ||
    Number.isNaN(from.getTime()) ||
    to === undefined ||
    Number.isNaN(to.getTime()) ||
    asked === undefined ||
    (asked !== null && Number.isNaN(asked.getTime()))
  )
    throw new BadPageError(
      'after: not a cursor this statement handed out (pass the page.next of the previous page as is)',
    );
  return { channel: body.channel, from, to, asked, key: { at: body.at, journal: body.journal } };
}
