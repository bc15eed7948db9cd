import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import { z } from 'zod';
import type { Db } from '../../../db/index.ts';
import type { ConversionChain, IntakeSettings } from '../../../pipeline/index.ts';

export interface AdminDeps {
  db: Db;
  requireAdmin: onRequestAsyncHookHandler;
  intake: IntakeSettings;
  /** A payout's or conversion's poll deadline, renewed when a person retries one whose funds are at ChangeNow. */
  pollDeadlineMs: number;
  /** The host wallet's incoming ETH and USDT read on chain, for a conversion's resolve; unset: resolve is refused. */
  chain?: ConversionChain;
  /** Asks for a conversion check soon (after threshold credits). */
  onThresholdCredit?: () => void;
}

/** Who acted, for the audit log and the log line: the name of the admin token the request carried. */
export const actorOf = (request: FastifyRequest): string => request.actor ?? 'unknown';

/** 404 naming what was asked for, e.g. `payout po_0123456789abcdef`. */
export const notFound = (reply: FastifyReply, subject: string) =>
  reply.code(404).send({ error: `${subject} not found` });

/** 409: the action is not allowed from where the subject is now; the reason is the refusal's message. */
export const refused = (reply: FastifyReply, action: string, subject: string, error: Error) =>
  reply.code(409).send({ error: `cannot ${action} ${subject}: ${error.message}` });

export const listLimit = z.coerce.number().int().min(1).max(500).default(100);

/** A list's query that filters by state alone: `?status=needs_review&limit=50`. */
export const statusQuery = <S extends string>(states: readonly [S, ...S[]]) =>
  z.object({ status: z.enum(states).optional(), limit: listLimit }).strict();

// The note goes into the audit log (jsonb) and the payout's reason (text): neither can hold U+0000, and jsonb refuses
// an unpaired surrogate. Such a note was a 500 once the action had run (rolled back); it is a 400 now.
// eslint-disable-next-line no-control-regex -- U+0000 is matched on purpose: PostgreSQL text and jsonb cannot hold it
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** A person's reason, where one is required (booking a loss). */
export const requiredNote = z
  .string()
  .trim()
  .min(1)
  .max(500)
  .refine((s) => !UNSTORABLE.test(s), 'must not contain NUL or unpaired surrogate characters');
export const note = requiredNote.optional();

export const txHash = z.string().regex(/^0x[0-9a-fA-F]{64}$/, 'must be a 0x-prefixed transaction hash');
