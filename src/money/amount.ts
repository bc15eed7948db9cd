/**
 * Exact amounts. An amount is a bigint in the asset's smallest unit; text is the only other form it takes
 * (JSON, SQL NUMERIC, logs). Nothing here ever goes through a JavaScript number.
 */

export class AmountError extends Error {
  override name = 'AmountError';
}

/** The plain decimal form we accept: no sign, no exponent, no leading zeros, optional fraction. */
const DECIMAL_RE = /^(0|[1-9][0-9]*)(?:\.([0-9]+))?$/;

/** Refuse absurd magnitudes before they reach NUMERIC columns (the old system overflowed on SHIB amounts). */
export const MAX_INTEGER_DIGITS = 30;

/**
 * Parses a non-negative decimal string into smallest units. Trailing zeros beyond the asset's precision are
 * harmless and accepted; any non-zero digit beyond it is refused rather than rounded, because an amount we cannot
 * represent exactly is an amount we do not understand.
 */
export function parseUnits(text: string, decimals: number): bigint {
  if (text.startsWith('-')) throw new AmountError(`amount must not be negative (got "${clip(text)}")`);
  if (/[eE]/.test(text))
    throw new AmountError(`amount must be a plain decimal, exponent notation is refused (got "${clip(text)}")`);
  const match = DECIMAL_RE.exec(text);
  if (!match) throw new AmountError(`amount must be a plain decimal such as "0.00487" (got "${clip(text)}")`);
  const integerPart = match[1] ?? '0';
  const fractionPart = (match[2] ?? '').replace(/0+$/, '');
  if (integerPart.length > MAX_INTEGER_DIGITS) {
    throw new AmountError(`amount is implausibly large (more than ${MAX_INTEGER_DIGITS} integer digits)`);
  }
  if (fractionPart.length > decimals) {
    throw new AmountError(`amount has more decimals than the asset allows (${decimals}): "${clip(text)}"`);
  }
  return BigInt(integerPart + fractionPart.padEnd(decimals, '0'));
}

/** Formats smallest units as a decimal string: trailing zeros trimmed unless `fixed`. */
export function formatUnits(units: bigint, decimals: number, options: { fixed?: boolean } = {}): string {
  const negative = units < 0n;
  const digits = (negative ? -units : units).toString().padStart(decimals + 1, '0');
  const integerPart = digits.slice(0, digits.length - decimals);
  let fractionPart = digits.slice(digits.length - decimals);
  if (!options.fixed) fractionPart = fractionPart.replace(/0+$/, '');
  return (negative ? '-' : '') + integerPart + (fractionPart ? `.${fractionPart}` : '');
}

/** Checks a decimal string without an asset (prices, reported amounts we store but never compute with). */
export function isPlainDecimal(text: string): boolean {
  const match = DECIMAL_RE.exec(text);
  return match !== null && (match[1] ?? '').length <= MAX_INTEGER_DIGITS && (match[2] ?? '').length <= 30;
}

function clip(text: string): string {
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

/**
 * Parses a decimal into smallest units, rounding DOWN what lies beyond the asset's precision (for amounts an outside
 * party reports with more digits than the asset has). The dropped fraction is returned so the caller can name it.
 */
export function parseUnitsFloor(text: string, decimals: number): { units: bigint; droppedFraction: string } {
  const match = DECIMAL_RE.exec(text);
  if (!match) throw new AmountError(`amount must be a plain decimal such as "0.00487" (got "${clip(text)}")`);
  const fraction = match[2] ?? '';
  const kept = fraction.slice(0, decimals);
  const dropped = fraction.slice(decimals).replace(/0+$/, '');
  return {
    units: parseUnits(`${match[1] ?? '0'}${kept ? `.${kept}` : ''}`, decimals),
    droppedFraction: dropped ? `0.${'0'.repeat(decimals)}${dropped}` : '0',
  };
}
