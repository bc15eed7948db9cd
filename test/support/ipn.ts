import fs from 'node:fs';
import { parse } from 'lossless-json';
import { canonicalIpnJson, signIpn } from '../../src/integrations/nowpayments/index.ts';
import { decimalsOf, parseUnits } from '../../src/money/index.ts';

const fixtures = JSON.parse(fs.readFileSync(new URL('../fixtures/nowpayments-ipn.json', import.meta.url), 'utf8')) as {
  sequence: Array<Record<string, unknown>>;
  partially_paid: Record<string, unknown>;
  expired: Record<string, unknown>;
  signatures: { secret: string; finished: string };
};
export { fixtures };

export const CHANNEL_ID = '-1003296084379';

/** A NOWPayments IPN body in the fixtures' exact shape, with the given fields replaced. */
export function ipnBody(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const finished = fixtures.sequence.find((b) => b.payment_status === 'finished') as Record<string, unknown>;
  return { ...structuredClone(finished), ...overrides };
}

/** Signs a body the way NOWPayments does. `raw` lets a test send exact JSON text (numbers as written). */
export function signed(
  body: Record<string, unknown> | string,
  secret: string,
): { raw: string; headers: Record<string, string> } {
  const raw = typeof body === 'string' ? body : JSON.stringify(body);
  return {
    raw,
    headers: { 'content-type': 'application/json', 'x-nowpayments-sig': signIpn(canonicalIpnJson(parse(raw)), secret) },
  };
}

/** A finished IPN's outcome in wei, read from its exact JSON text as intake reads it (never through a float). */
export function outcomeWei(raw: string): bigint {
  const body = parse(raw) as Record<string, unknown>;
  if (body.outcome_currency !== 'eth')
    throw new Error(`outcome_currency ${String(body.outcome_currency)}: only ETH outcomes are forwarded`);
  return parseUnits(String(body.outcome_amount), decimalsOf('eth'));
}
