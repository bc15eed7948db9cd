/**
 * The time range of a statement or an export: `from` inclusive, `to` exclusive, each an ISO 8601 timestamp. A
 * timestamp without a zone would be read in the server's zone, so a time of day must carry one (Z or ±hh:mm); a bare
 * date is midnight UTC. Fractions of a second stop at milliseconds: a finer bound would be silently cut to them.
 */

/** A statement's or an export's query that cannot be answered as asked (its range, its page). */
export class StatementQueryError extends Error {
  /** Read by the HTTP error handler: bad input, answered 400 with this message. */
  readonly statusCode = 400;
}

export class BadRangeError extends StatementQueryError {
  override name = 'BadRangeError';
}

export interface TimeRange {
  readonly from: Date;
  readonly to: Date;
}

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?(Z|[+-]\d{2}:\d{2}))?$/;

/** Parses one bound; `name` is the query parameter, for the message. */
export function parseTimestamp(name: string, text: string): Date {
  const match = ISO_RE.exec(text);
  if (!match)
    throw new BadRangeError(
      `${name}: must be an ISO 8601 timestamp such as 2026-11-01T00:00:00Z or a date such as 2026-11-01 (got "${clip(text)}")`,
    );
  const [, y, mo, d, h, mi, s] = match;
  // Date.parse rolls 2026-02-30 over into March rather than refusing it: the calendar is checked here.
  const day = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
  if (
    day.getUTCFullYear() !== Number(y) ||
    day.getUTCMonth() !== Number(mo) - 1 ||
    day.getUTCDate() !== Number(d) ||
    Number(h ?? 0) > 23 ||
    Number(mi ?? 0) > 59 ||
    Number(s ?? 0) > 59
  )
    throw new BadRangeError(`${name}: ${text} is not a date on the calendar`);
  const at = new Date(text);
  if (Number.isNaN(at.getTime())) throw new BadRangeError(`${name}: ${text} is not a valid time`);
  return at;
}

export interface Bounds {
  readonly from?: Date | undefined;
  readonly to?: Date | undefined;
}

/** The bounds a request gives (either may be missing), each checked. */
export function parseBounds(query: { from?: string | undefined; to?: string | undefined }): Bounds {
  return {
    from: query.from === undefined ? undefined : parseTimestamp('from', query.from),
    to: query.to === undefined ? undefined : parseTimestamp('to', query.to),
  };
}

/**
 * The range: missing bounds take `defaults` (named in the message when they make the range run backwards). `from`
 * after `to` is refused; equal bounds are an empty range, answered as such.
 */
export function resolveRange(bounds: Bounds, defaults: TimeRange & { fromName: string; toName: string }): TimeRange {
  const from = bounds.from ?? defaults.from;
  const to = bounds.to ?? defaults.to;
  if (from.getTime() > to.getTime()) {
    const name = (given: Date | undefined, what: 'from' | 'to', fallback: string) =>
      given === undefined ? `${what} (${fallback})` : what;
    throw new BadRangeError(
      `${name(bounds.from, 'from', defaults.fromName)} ${from.toISOString()} is after ${name(bounds.to, 'to', defaults.toName)} ${to.toISOString()}`,
    );
  }
  return { from, to };
}

function clip(text: string): string {
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}
