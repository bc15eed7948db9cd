import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';

export interface AdminToken {
  /** Recorded as the actor of every action taken with this token. */
  readonly name: string;
  readonly token: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    actor?: string;
  }
}

/** Comparing digests keeps the comparison constant-time whatever the presented token's length. */
function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

export function bearerAuth(tokens: readonly AdminToken[]) {
  const known = tokens.map((t) => ({ name: t.name, digest: digest(t.token) }));
  return async function requireAdmin(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const header = request.headers.authorization;
    const match = header === undefined ? null : /^Bearer ([^\s]+)$/.exec(header);
    if (match) {
      const presented = digest(match[1] as string);
      // Check every token so the time taken does not tell which one nearly matched.
      let actor: string | undefined;
      for (const t of known) if (timingSafeEqual(presented, t.digest)) actor = actor ?? t.name;
      if (actor) {
        request.actor = actor;
        return;
      }
    }
    await reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'missing or invalid bearer token' });
  };
}
