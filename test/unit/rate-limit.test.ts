import { describe, expect, it } from 'vitest';
import { createRateLimiter } from '../../src/http/rate-limit.ts';

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

describe('token bucket rate limiter', () => {
  it('accepts a burst of the limit, refuses the next with the seconds until one more is allowed', () => {
    const c = clock();
    const limiter = createRateLimiter({ perMinute: 6, now: c.now });
    for (let i = 0; i < 6; i++) expect(limiter.take('a').allowed).toBe(true);
    // 6 per minute: one token every 10 s.
    expect(limiter.take('a')).toEqual({ allowed: false, retryAfterSeconds: 10, first: true });
    c.advance(4_000);
    expect(limiter.take('a')).toEqual({ allowed: false, retryAfterSeconds: 6, first: false });
    c.advance(6_000);
    expect(limiter.take('a').allowed).toBe(true);
    expect(limiter.take('a')).toMatchObject({ allowed: false, first: true });
  });

  it('keeps each source to its own bucket', () => {
    const c = clock();
    const limiter = createRateLimiter({ perMinute: 2, now: c.now });
    expect([limiter.take('a'), limiter.take('a'), limiter.take('a')].map((d) => d.allowed)).toEqual([
      true,
      true,
      false,
    ]);
    expect([limiter.take('b'), limiter.take('b'), limiter.take('b')].map((d) => d.allowed)).toEqual([
      true,
      true,
      false,
    ]);
  });

  it('sustains exactly the rate over time, never more', () => {
    const c = clock();
    const limiter = createRateLimiter({ perMinute: 60, now: c.now });
    let accepted = 0;
    // 10 requests a second for 10 minutes against 1 a second: the first minute's burst plus one a second after it.
    for (let i = 0; i < 6_000; i++) {
      if (limiter.take('a').allowed) accepted++;
      c.advance(100);
    }
    expect(accepted).toBeGreaterThanOrEqual(60 + 599);
    expect(accepted).toBeLessThanOrEqual(60 + 601);
  });

  it('Retry-After is at least one second, and never negative time', () => {
    const c = clock();
    const limiter = createRateLimiter({ perMinute: 600_000, now: c.now });
    for (let i = 0; i < 600_000; i++) limiter.take('a');
    const refused = limiter.take('a');
    expect(refused).toMatchObject({ allowed: false, retryAfterSeconds: 1 });
  });

  it('memory stays bounded: refilled buckets are dropped, and never more than maxKeys are held', () => {
    const c = clock();
    const limiter = createRateLimiter({ perMinute: 10, maxKeys: 100, now: c.now });
    for (let i = 0; i < 10_000; i++) {
      limiter.take(`k${i}`);
      expect(limiter.size).toBeLessThanOrEqual(100);
    }
    // A minute later every bucket has refilled: a trickle of new sources sweeps the old ones out.
    c.advance(60_000);
    for (let i = 0; i < 60; i++) limiter.take(`new${i}`);
    expect(limiter.size).toBeLessThanOrEqual(61);
  });

  it('a source still being refused keeps its bucket while others come and go (up to maxKeys)', () => {
    const c = clock();
    const limiter = createRateLimiter({ perMinute: 1, maxKeys: 10, now: c.now });
    expect(limiter.take('flood').allowed).toBe(true);
    for (let i = 0; i < 5; i++) limiter.take(`other${i}`);
    expect(limiter.take('flood').allowed).toBe(false);
  });

  it('refuses nonsense settings', () => {
    expect(() => createRateLimiter({ perMinute: 0 })).toThrow(RangeError);
    expect(() => createRateLimiter({ perMinute: 1.5 })).toThrow(RangeError);
    expect(() => createRateLimiter({ perMinute: 1, maxKeys: 0 })).toThrow(RangeError);
  });
});
