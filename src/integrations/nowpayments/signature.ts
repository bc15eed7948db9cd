import { createHmac, timingSafeEqual } from 'node:crypto';
import { isLosslessNumber, stringify } from 'lossless-json';

/**
 * NOWPayments signs HMAC-SHA512(IPN secret, JSON.stringify(body with keys sorted recursively)). We re-serialize the
 * losslessly parsed body, so every number keeps the exact text the sender wrote (a float round-trip could change
 * it and break the signature, or worse, the amount).
 */
export function canonicalIpnJson(body: unknown): string {
  const text = stringify(sortKeysDeep(body));
  if (text === undefined) throw new Error('body cannot be serialized');
  return text;
}

export function signIpn(canonicalJson: string, secret: string): string {
  return createHmac('sha512', secret).update(canonicalJson, 'utf8').digest('hex');
}

const SIGNATURE_RE = /^[0-9a-fA-F]{128}$/;

/** Constant-time comparison of the received hex signature with the expected one. */
export function signatureMatches(received: string | undefined, canonicalJson: string, secret: string): boolean {
  if (received === undefined || !SIGNATURE_RE.test(received)) return false;
  const expected = Buffer.from(signIpn(canonicalJson, secret), 'hex');
  return timingSafeEqual(Buffer.from(received, 'hex'), expected);
}

function sortKeysDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeysDeep);
  if (value !== null && typeof value === 'object' && !isLosslessNumber(value)) {
    const sorted: Record<string, unknown> = {};
    // defineProperty, not assignment: a "__proto__" key must stay a key (and stay signed), not become a prototype.
    for (const key of Object.keys(value).sort()) {
      Object.defineProperty(sorted, key, {
        value: sortKeysDeep((value as Record<string, unknown>)[key]),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return sorted;
  }
  return value;
}
