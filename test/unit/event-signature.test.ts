import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { signEvent, verifyEventSignature } from '../../src/events/index.ts';

const SECRET = 'whsec_test-secret-0123456789';
const BODY = '{"id":"e1","type":"payment.credited","data":{"net":{"asset":"eth","amount":"0.0047239"}}}';

describe('event signatures', () => {
  it('verify what was signed, recently, with this secret and this exact body', () => {
    const now = 1_800_000_000;
    const header = signEvent(SECRET, BODY, now);
    expect(header).toMatch(/^t=1800000000,v1=[0-9a-f]{64}$/);
    expect(verifyEventSignature({ secret: SECRET, body: BODY, header, nowSeconds: now + 10 })).toBe(true);
    expect(verifyEventSignature({ secret: 'other', body: BODY, header, nowSeconds: now })).toBe(false);
    expect(verifyEventSignature({ secret: SECRET, body: `${BODY} `, header, nowSeconds: now })).toBe(false);
    expect(verifyEventSignature({ secret: SECRET, body: BODY, header, nowSeconds: now + 301 })).toBe(false);
    expect(verifyEventSignature({ secret: SECRET, body: BODY, header: undefined })).toBe(false);
    expect(verifyEventSignature({ secret: SECRET, body: BODY, header: 'v1=abc', nowSeconds: now })).toBe(false);
    // A second v1 (a secret being rolled) does not spoil a valid one.
    expect(verifyEventSignature({ secret: SECRET, body: BODY, header: `${header},v1=00`, nowSeconds: now })).toBe(true);
  });

  it('the receiver example in docs/events.md verifies a real signature and refuses a forged one', async () => {
    const doc = fs.readFileSync(new URL('../../docs/events.md', import.meta.url), 'utf8');
    const code = /```js\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(code).toBeDefined();
    const url = `data:text/javascript;base64,${Buffer.from(code as string).toString('base64')}`;
    const { verify } = (await import(url)) as { verify: (s: string, b: string, h: string) => boolean };
    expect(verify(SECRET, BODY, signEvent(SECRET, BODY))).toBe(true);
    expect(verify(SECRET, BODY, signEvent('another secret', BODY))).toBe(false);
    expect(verify(SECRET, BODY, signEvent(SECRET, BODY, Math.floor(Date.now() / 1_000) - 3_600))).toBe(false);
  });
});
