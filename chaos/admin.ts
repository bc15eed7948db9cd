/** The admin API as the run's operator calls it (the bearer token of the run). */
import { sleep } from './net.ts';

export interface AdminApi {
  /** The web process's URL now (it may be away while restarted). */
  url(): string | undefined;
  token: string;
}

/**
 * One admin API call; retried (bounded) while the web process is away or answers 5xx. Every action is safe to send
 * again: a repeat of one that took effect is refused with 409 (its state has moved on).
 */
export async function admin(
  api: AdminApi,
  method: 'GET' | 'POST' | 'PUT',
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const url = api.url();
    if (url) {
      try {
        const res = await fetch(`${url}${path}`, {
          method,
          headers: {
            authorization: `Bearer ${api.token}`,
            ...(body !== undefined && { 'content-type': 'application/json' }),
          },
          ...(body !== undefined && { body: JSON.stringify(body) }),
          signal: AbortSignal.timeout(5_000),
        });
        const json = await res.json();
        if (res.status < 500) return { status: res.status, json };
      } catch {
        // no answer: try again below
      }
    }
    if (Date.now() > deadline) throw new Error(`admin API ${method} ${path}: no answer within 15 s`);
    await sleep(500);
  }
}
