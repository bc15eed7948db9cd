import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { readIpn } from '../../src/integrations/nowpayments/index.ts';
import { fixtures, ipnBody, signed } from '../support/ipn.ts';

const SECRET = fixtures.signatures.secret;
const finished = () => ipnBody();

describe('NOWPayments IPN signature', () => {
  it('accepts the documented signature of the fixture', () => {
    const raw = JSON.stringify(finished());
    const reading = readIpn(raw, fixtures.signatures.finished, SECRET);
    expect(reading.ok).toBe(true);
  });

  it('is computed over the body with keys sorted recursively, whatever order they arrive in', () => {
    const body = finished();
    const reversed = Object.fromEntries(Object.entries(body).reverse());
    expect(readIpn(JSON.stringify(reversed), fixtures.signatures.finished, SECRET).ok).toBe(true);
  });

  it('accepts an upper-case hex signature', () => {
    expect(readIpn(JSON.stringify(finished()), fixtures.signatures.finished.toUpperCase(), SECRET).ok).toBe(true);
  });

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['wrong length', 'abcd'],
    ['not hex', 'z'.repeat(128)],
    ['signed with another secret', createHmac('sha512', 'other').update('x').digest('hex')],
  ])('refuses a %s signature with 401', (_name, signature) => {
    const reading = readIpn(JSON.stringify(finished()), signature, SECRET);
    expect(reading).toMatchObject({ ok: false, status: 401 });
  });

  it('refuses a body changed after signing (one digit of the amount)', () => {
    const raw = JSON.stringify(finished()).replace('"outcome_amount":0.00487', '"outcome_amount":0.00488');
    expect(readIpn(raw, fixtures.signatures.finished, SECRET)).toMatchObject({ ok: false, status: 401 });
  });

  it('refuses a nested field changed after signing', () => {
    const raw = JSON.stringify(finished()).replace('"depositFee":0.00002', '"depositFee":0.00003');
    expect(readIpn(raw, fixtures.signatures.finished, SECRET)).toMatchObject({ ok: false, status: 401 });
  });

  it('covers a "__proto__" key like any other key', () => {
    const raw = JSON.stringify(finished());
    const tampered = raw.replace('{', '{"__proto__":{"x":1},');
    expect(readIpn(tampered, fixtures.signatures.finished, SECRET)).toMatchObject({ ok: false, status: 401 });
    const { raw: body, headers } = signed(tampered, SECRET);
    expect(readIpn(body, headers['x-nowpayments-sig'], SECRET).ok).toBe(true);
  });

  it('reads amounts from their exact JSON text, never through a float', () => {
    // 0.1 + 0.2 style artefacts and 19 significant digits survive untouched.
    const raw = JSON.stringify(finished()).replace('"outcome_amount":0.00487', '"outcome_amount":1.234567890123456789');
    const { raw: body, headers } = signed(raw, SECRET);
    const reading = readIpn(body, headers['x-nowpayments-sig'], SECRET);
    expect(reading.ok && reading.ipn.outcomeUnits).toBe(1_234_567_890_123_456_789n);
    expect(reading.ok && reading.ipn.outcomeAmount).toBe('1.234567890123456789');
  });
});
