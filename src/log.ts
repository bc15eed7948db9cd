import { pino, type Logger } from 'pino';
import { PinoPretty } from 'pino-pretty';

export type { Logger };

/** Shorter values are not scrubbed: replacing a two-character "secret" would mangle every line that has it. */
const MIN_SCRUBBED_LENGTH = 8;

/**
 * Replaces every occurrence of the secrets in a text with "[redacted]": as written, and as they appear inside a JSON
 * string (a secret with a quote or a backslash is written escaped), ignoring case (a hex key may be printed in
 * either). Longest first, so a secret that contains another is replaced whole.
 */
export function createScrubber(secrets: readonly string[]): (text: string) => string {
  const forms = new Set<string>();
  for (const secret of secrets) {
    if (secret.length < MIN_SCRUBBED_LENGTH) continue;
    forms.add(secret);
    forms.add(JSON.stringify(secret).slice(1, -1));
  }
  if (forms.size === 0) return (text) => text;
  const pattern = new RegExp(
    [...forms]
      .sort((a, b) => b.length - a.length)
      .map((form) => form.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('|'),
    'gi',
  );
  return (text) => text.replace(pattern, '[redacted]');
}

/**
 * Structured logs: events with ids, never prose with numbers pasted in. Authorization headers and signatures are
 * redacted by path; `secrets` are scrubbed from every line written, whatever field carries them (an error message,
 * a stack, an URL), including lines of child loggers.
 */
export function createLogger(options: {
  level: string;
  secrets?: readonly string[];
  destination?: NodeJS.WritableStream;
  /** 'pretty': one readable line per event, for a person at a terminal; machines (supervisors, files) get JSON. */
  format?: 'json' | 'pretty';
}): Logger {
  const scrub = createScrubber(options.secrets ?? []);
  // Scrubbing happens in pino's streamWrite hook, before either stream sees the line, so pretty output is scrubbed too.
  const destination =
    options.format === 'pretty'
      ? PinoPretty({
          destination: options.destination ?? 1,
          sync: true,
          ignore: 'pid,hostname',
          singleLine: true,
          translateTime: 'SYS:HH:MM:ss.l',
        })
      : options.destination;
  return pino(
    {
      level: options.level,
      base: { pid: process.pid },
      redact: {
        paths: ['req.headers.authorization', 'req.headers["x-nowpayments-sig"]', 'headers.authorization', '*.password'],
        censor: '[redacted]',
      },
      hooks: {
        streamWrite(line) {
          return scrub(line);
        },
      },
    },
    destination as pino.DestinationStream | undefined,
  );
}
