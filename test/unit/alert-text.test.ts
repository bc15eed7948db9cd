/**
 * What an alert may carry: text cut to its limit is always storable in jsonb (no lone surrogate), whatever character
 * the cut falls on.
 */
import { describe, expect, it } from 'vitest';
import { cleanDetails, cleanText } from '../../src/alerts/text.ts';

/** PostgreSQL's jsonb refuses what encodeURIComponent refuses: a surrogate without its pair. */
function storable(text: string): boolean {
  try {
    encodeURIComponent(text);
    return !text.includes('\u0000');
  } catch {
    return false;
  }
}

describe('cleanText', () => {
  it('keeps an emoji that ends exactly at the limit whole', () => {
    const text = 'x'.repeat(1998) + '😀';
    expect(text.length).toBe(2_000);
    expect(cleanText(text)).toBe(text);
  });

  it('never cuts a surrogate pair in half', () => {
    // The cut keeps 1,999 code units: the emoji's high half would be the last of them.
    const cut = cleanText('x'.repeat(1998) + '😀' + 'more text after it');
    expect(storable(cut)).toBe(true);
    expect(cut).toBe(`${'x'.repeat(1998)}…`);
    expect(cut.length).toBeLessThanOrEqual(2_000);
    expect(/[\ud800-\udbff]$/.test(cut.slice(0, -1))).toBe(false);
  });

  it('is storable and within the limit wherever the cut falls among emoji', () => {
    for (let pad = 0; pad < 4; pad += 1) {
      for (const max of [5, 6, 7, 200, 2_000]) {
        const cut = cleanText('y'.repeat(pad) + '😀'.repeat(1_500), max);
        expect(storable(cut), `pad ${pad}, max ${max}`).toBe(true);
        expect(cut.length).toBeLessThanOrEqual(max);
        expect(cut.endsWith('…')).toBe(true);
      }
    }
  });

  it('strips lone surrogates and NUL from outside text, and hides URLs', () => {
    expect(cleanText('a\ud800b\udc00c\u0000d')).toBe('abcd');
    expect(cleanText('call https://rpc.example/v3/secret-key failed')).toBe('call [url] failed');
    expect(storable(cleanText(`${'z'.repeat(1_999)}\ud83d`))).toBe(true);
  });

  it('cleans keys and values in details the same way', () => {
    const details = cleanDetails({ error: `${'x'.repeat(1998)}😀 and more`, amount: 12n });
    expect(storable(JSON.stringify(details))).toBe(true);
    expect(details.amount).toBe('12');
  });
});
