import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Structured logs: events with ids, never prose with numbers pasted in. Authorization headers and signatures are
 * redacted by path; `secrets` are scrubbed from any string that would still carry one (an error message, say).
 */
export function createLogger(options: { level: string; secrets?: string[]; destination?: NodeJS.WritableStream }): Logger {
  const secrets = (options.secrets ?? []).filter((s) => s.length > 0);
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
          let out = line;
          for (const secret of secrets) out = out.split(secret).join('[redacted]');
          return out;
        },
      },
    },
    options.destination as pino.DestinationStream | undefined,
  );
}
