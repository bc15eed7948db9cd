/**
 * Run by ipn.fuzz.test.ts in a child `node --jitless` (interpreter only, so every frame has its unoptimized size
 * and the outcome does not depend on JIT timing): readIpn over validly signed bodies nested 500 to 8,000 objects
 * deep. Prints one JSON line: per depth, "ok", the refusal's status, or "threw: <message>".
 */
import { parse } from 'lossless-json';
// The modules themselves, not the package index: it also loads the API client, whose HTTP client (undici) compiles
// WebAssembly at load, which --jitless does not have.
import { readIpn } from '../../src/integrations/nowpayments/ipn.ts';
import { canonicalIpnJson, signIpn } from '../../src/integrations/nowpayments/signature.ts';

const SECRET = 'deep-ipn-child-secret-0123456789';
const base = '{"order_id":"PGP-1|-1009","payment_id":1,"payment_status":"finished","deep":"@@DEEP@@"}';
const canonicalBase = canonicalIpnJson(parse(base));
const results: Record<number, string> = {};
for (let depth = 500; depth <= 8_000; depth += 125) {
  const deep = `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
  // The nesting is already canonical (one key per level, no spaces): the signature needs no deep recursion here.
  const signature = signIpn(canonicalBase.replace('"@@DEEP@@"', deep), SECRET);
  try {
    const reading = readIpn(base.replace('"@@DEEP@@"', deep), signature, SECRET);
    results[depth] = reading.ok ? 'ok' : `${reading.status} ${reading.error}`;
  } catch (error) {
    results[depth] = `threw: ${(error as Error).message}`;
  }
}
process.stdout.write(`${JSON.stringify(results)}\n`);
