/**
 * Webhook signatures, in the scheme platforms already verify for other providers: the header
 * `Payrail-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>`. The timestamp is signed with the
 * body, so a receiver that refuses old timestamps cannot be fed a captured delivery later.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'payrail-signature';
/** How old a signed timestamp verifyEventSignature accepts by default. */
const DEFAULT_TOLERANCE_SECONDS = 300;

function hmac(secret: string, timestamp: string, body: string): string {
  return createHmac('sha256', secret).update(`${timestamp}.${body}`, 'utf8').digest('hex');
}

export function signEvent(secret: string, body: string, nowSeconds = Math.floor(Date.now() / 1_000)): string {
  const timestamp = String(nowSeconds);
  return `t=${timestamp},v1=${hmac(secret, timestamp, body)}`;
}

/** For receivers and tests: the header signs this exact body with this secret, recently. */
export function verifyEventSignature(input: {
  secret: string;
  body: string;
  header: string | undefined;
  toleranceSeconds?: number;
  nowSeconds?: number;
}): boolean {
  if (input.header === undefined) return false;
  const parts = new Map<string, string[]>();
  for (const item of input.header.split(',')) {
    const eq = item.indexOf('=');
    if (eq <= 0) return false;
    const key = item.slice(0, eq).trim();
    parts.set(key, [...(parts.get(key) ?? []), item.slice(eq + 1).trim()]);
  }
  const timestamp = parts.get('t')?.[0];
  if (timestamp === undefined || !/^[0-9]{1,12}$/.test(timestamp)) return false;
  const now = input.nowSeconds ?? Math.floor(Date.now() / 1_000);
  if (Math.abs(now - Number(timestamp)) > (input.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS)) return false;
  const expected = Buffer.from(hmac(input.secret, timestamp, input.body), 'utf8');
  // Several v1 values are allowed (a secret being rolled): any one matching is enough.
  return (parts.get('v1') ?? []).some((given) => {
    const bytes = Buffer.from(given, 'utf8');
    return bytes.length === expected.length && timingSafeEqual(bytes, expected);
  });
}
