/**
 * A statement's `after` cursor is read back only when this server could have written it. Its ledger time must be a
 * moment PostgreSQL takes: a forged one with the right shape reached the query's cast and answered 500.
 */
import { describe, expect, it } from 'vitest';
import { BadPageError, decodeCursor, encodeCursor } from '../../src/statements/cursor.ts';

const FROM = new Date('2026-12-01T00:00:00.000Z');
const TO = new Date('2026-12-07T00:00:00.000Z');

function cursorWithAt(at: string): string {
  return encodeCursor('-1005100000001', FROM, TO, null, { at, journal: '2' });
}

describe('statement cursor', () => {
  it('reads back what it wrote', () => {
    expect(decodeCursor(cursorWithAt('2026-12-06T12:55:57.212345Z'))).toEqual({
      channel: '-1005100000001',
      from: FROM,
      to: TO,
      asked: null,
      key: { at: '2026-12-06T12:55:57.212345Z', journal: '2' },
    });
    expect(decodeCursor(cursorWithAt('2024-02-29T23:59:59.999999Z')).key.at).toBe('2024-02-29T23:59:59.999999Z');
  });

  it.each([
    '2026-13-45T99:99:99.999999Z',
    '2026-02-30T00:00:00.000000Z',
    '2025-02-29T00:00:00.000000Z',
    '2026-12-06T24:00:00.000000Z',
    '2026-12-06T23:60:00.000000Z',
    '0000-01-01T00:00:00.000000Z',
    '2026-12-06T12:55:57.212Z',
  ])('refuses a ledger time that is not a real one: %s', (at) => {
    expect(() => decodeCursor(cursorWithAt(at))).toThrow(BadPageError);
  });
});
