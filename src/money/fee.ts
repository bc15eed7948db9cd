import { AmountError } from './amount.ts';

/** A percentage held exactly as a fraction: value = numerator / denominator percent. */
export interface Percent {
  readonly numerator: bigint;
  readonly denominator: bigint;
  readonly text: string;
}

const PERCENT_RE = /^(0|[1-9][0-9]?)(?:\.([0-9]{1,6}))?$/;

/** Parses "3", "2.5", "0.125" (at most 6 decimals) into an exact fraction; 0 <= p < 100. */
export function parsePercent(text: string): Percent {
  const match = PERCENT_RE.exec(text);
  if (!match)
    throw new AmountError(`percent must be a decimal from 0 to below 100 with at most 6 decimals (got "${text}")`);
  const fraction = match[2] ?? '';
  return {
    numerator: BigInt((match[1] ?? '0') + fraction),
    denominator: 10n ** BigInt(fraction.length),
    text,
  };
}

export interface FeeSplit {
  readonly fee: bigint;
  readonly net: bigint;
}

/**
 * Takes the platform fee off a gross amount. The fee is rounded down in the smallest unit, so the remainder of the
 * division stays with the channel: rounding never creates money and never takes more than the stated percentage.
 */
export function splitFee(gross: bigint, percent: Percent): FeeSplit {
  if (gross < 0n) throw new AmountError('gross amount must not be negative');
  const fee = (gross * percent.numerator) / (percent.denominator * 100n);
  const net = gross - fee;
  if (fee < 0n || net < 0n || fee + net !== gross) {
    throw new Error(`fee split invariant broken: gross=${gross} fee=${fee} net=${net}`);
  }
  return { fee, net };
}
