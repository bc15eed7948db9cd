/**
 * A token bucket per key, in this process's memory. Each key's bucket holds up to `perMinute` tokens (a burst of a
 * whole minute's allowance is accepted at once) and refills continuously at `perMinute` per minute; a request takes
 * one token or is refused with the seconds until the next one.
 *
 * Memory is bounded: buckets are kept in least-recently-used order, the least recently used ones are dropped once
 * they have refilled (a full bucket is the same as no bucket), and beyond `maxKeys` the least recently used bucket
 * is dropped whatever its state (forgetting it can only let that source in sooner).
 *
 * Per process: with N web processes behind a load balancer, a source may get up to N times the limit.
 */

export type LimitDecision =
  | { readonly allowed: true }
  | {
      readonly allowed: false;
      /** Whole seconds until one request will be accepted again (at least 1): the Retry-After value. */
      readonly retryAfterSeconds: number;
      /** True for the first refusal after an accepted request: callers log that one, not the whole flood. */
      readonly first: boolean;
    };

export interface RateLimiter {
  take(key: string): LimitDecision;
  /** Buckets held now. */
  readonly size: number;
}

export interface RateLimiterOptions {
  /** Requests per minute per key; also the burst size. A positive whole number. */
  perMinute: number;
  /** Most buckets held at once (default 10 000). */
  maxKeys?: number;
  /** Milliseconds from any fixed origin, never going backwards (default: performance.now). */
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
  refusing: boolean;
}

/** Stale buckets looked at per request: enough to keep up with any arrival rate, since each request adds at most one. */
const SWEEP_PER_TAKE = 2;

export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const capacity = options.perMinute;
  if (!Number.isInteger(capacity) || capacity <= 0) throw new RangeError('perMinute must be a positive whole number');
  const maxKeys = options.maxKeys ?? 10_000;
  if (!Number.isInteger(maxKeys) || maxKeys <= 0) throw new RangeError('maxKeys must be a positive whole number');
  const now = options.now ?? (() => performance.now());
  const perMs = capacity / 60_000;
  // Map iteration order is insertion order: deleting and re-inserting on every use keeps it least recently used first.
  const buckets = new Map<string, Bucket>();

  const refilled = (bucket: Bucket, t: number): number =>
    Math.min(capacity, bucket.tokens + Math.max(0, t - bucket.at) * perMs);

  function sweep(t: number): void {
    for (let i = 0; i < SWEEP_PER_TAKE; i++) {
      const oldest = buckets.entries().next();
      if (oldest.done) return;
      const [key, bucket] = oldest.value;
      if (refilled(bucket, t) < capacity) return;
      buckets.delete(key);
    }
  }

  return {
    get size() {
      return buckets.size;
    },
    take(key) {
      const t = now();
      sweep(t);
      let bucket = buckets.get(key);
      if (bucket) {
        buckets.delete(key);
        bucket.tokens = refilled(bucket, t);
        bucket.at = t;
      } else {
        while (buckets.size >= maxKeys) {
          const oldest = buckets.keys().next();
          if (oldest.done) break;
          buckets.delete(oldest.value);
        }
        bucket = { tokens: capacity, at: t, refusing: false };
      }
      buckets.set(key, bucket);
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        bucket.refusing = false;
        return { allowed: true };
      }
      const first = !bucket.refusing;
      bucket.refusing = true;
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / perMs / 1_000)), first };
    },
  };
}
