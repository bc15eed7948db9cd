/**
 * A run's only source of randomness (the chaos run, the demo): mulberry32, seeded from --seed. Every random choice
 * of a run (keys, channels, IPN sequences, fault kinds, moments and durations) is drawn from it, so `--seed N`
 * replays the same plan. (Timing between processes is not replayable: the same plan can meet a different
 * interleaving.)
 */
export class Rng {
  private state: number;
  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** A whole number in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[Math.floor(this.next() * items.length)] as T;
  }
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [items[i], items[j]] = [items[j] as T, items[i] as T];
    }
    return items;
  }
  /** A 0x-prefixed 32-byte hex string (private keys). Never zero in practice; reduced below secp256k1's order by the caller if needed. */
  hex32(): `0x${string}` {
    let out = '';
    for (let i = 0; i < 8; i++)
      out += Math.floor(this.next() * 2 ** 32)
        .toString(16)
        .padStart(8, '0');
    // Keep the first byte below 0xff so the key is always below the curve order.
    return `0x${out.replace(/^ff/, '7f')}`;
  }
}

/** A fresh seed when none is given. */
export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}
