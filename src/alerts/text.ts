/**
 * What an alert may carry. Alerts leave payrail (the webhook, the dashboard), so their text is cut short and stripped
 * of URLs (an RPC or webhook URL can hold an API key, and viem's long messages print the URL they called); jsonb
 * refuses U+0000 and unpaired surrogates, which error messages from outside may contain.
 */

const URL_RE = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi;
// eslint-disable-next-line no-control-regex -- U+0000 is matched on purpose: PostgreSQL text and jsonb cannot hold it
const UNSTORABLE_RE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const MAX_TEXT = 2_000;
const MAX_ITEMS = 50;
const MAX_DEPTH = 5;

export function cleanText(text: string, max = MAX_TEXT): string {
  // URLs first: the limit then counts the text as it will be stored (a long URL is five characters of it).
  const redacted = text.replace(URL_RE, '[url]');
  // Stripped after the cut: a cut through a surrogate pair leaves half of it, and one unstorable character in an
  // alert's text makes every evaluation pass fail on insert. The cut also steps back off a pair it would split, so
  // the character is dropped whole rather than as a half.
  let cut = redacted;
  if (redacted.length > max) {
    let end = max - 1;
    if (end > 0 && isHighSurrogate(redacted.charCodeAt(end - 1))) end -= 1;
    cut = `${redacted.slice(0, end)}…`;
  }
  return cut.replace(UNSTORABLE_RE, '');
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/** Evidence as JSON: bigints (amounts) become decimal strings, never numbers; dates ISO text; errors their message. */
export function cleanDetails(details: Record<string, unknown> | undefined): Record<string, unknown> {
  const value = cleanValue(details ?? {}, 0);
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function cleanValue(value: unknown, depth: number): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return cleanText(value);
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value === 'boolean') return value;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (value instanceof Error) return cleanText(value.message);
  if (depth >= MAX_DEPTH) return null;
  if (Array.isArray(value)) return value.slice(0, MAX_ITEMS).map((item) => cleanValue(item, depth + 1));
  if (typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value).slice(0, MAX_ITEMS)) {
      if (item !== undefined) out[cleanText(key, 100)] = cleanValue(item, depth + 1);
    }
    return out;
  }
  return null;
}

/** A short, URL-free message for an error from outside (viem errors carry a shortMessage without the URL). */
export function shortError(error: unknown): string {
  const short = (error as { shortMessage?: unknown } | null)?.shortMessage;
  const text =
    typeof short === 'string' && short !== '' ? short : error instanceof Error ? error.message : String(error);
  return cleanText(text.split('\n')[0] ?? '', 300);
}

/** 7260 → "2h 1m": ages in messages, read by people. */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}
