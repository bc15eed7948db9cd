/**
 * ChangeNow amounts arrive as JSON numbers produced by a float formatter: `0.1455`, `435.49999999999994`, and
 * sometimes exponent notation (`1e-7`, `4.35e+2`). We keep the number's source text (lossless-json) and rewrite it
 * into the house's plain decimal form purely by moving the decimal point in the digit string: no JavaScript number
 * ever holds the amount, so `435.49999999999994` stays exactly that.
 */
import { isPlainDecimal } from '../../money/index.ts';

/** A JSON number without sign: integer part, optional fraction, optional exponent. */
const NUMBER_TEXT_RE = /^(0|[1-9][0-9]*)(?:\.([0-9]+))?(?:[eE]([+-]?)([0-9]+))?$/;

/** Exponents beyond this cannot produce an amount isPlainDecimal accepts; refusing early bounds the string work. */
const MAX_EXPONENT = 64;

/**
 * Returns the canonical plain decimal for a non-negative JSON number text (no leading zeros, no trailing fraction
 * zeros, no exponent), or null when the text is not such a number: negatives, NaN, Infinity, empty text, `.5`, `01`,
 * or a magnitude the house amount rules refuse (more than 30 integer or 30 fraction digits).
 */
export function normaliseAmount(text: string): string | null {
  const match = NUMBER_TEXT_RE.exec(text);
  if (!match) return null;
  const integerPart = match[1] ?? '0';
  const fractionPart = match[2] ?? '';
  const exponentDigits = (match[4] ?? '0').replace(/^0+(?=.)/, '');
  if (exponentDigits.length > 3) return null;
  // A short run of ASCII digits: an index into the digit string, never an amount.
  const exponentSize = Number.parseInt(exponentDigits, 10);
  if (exponentSize > MAX_EXPONENT) return null;
  const exponent = match[3] === '-' ? -exponentSize : exponentSize;

  const digits = integerPart + fractionPart;
  const point = integerPart.length + exponent; // position of the decimal point within `digits`
  let whole: string;
  let fraction: string;
  if (point <= 0) {
    whole = '0';
    fraction = '0'.repeat(-point) + digits;
  } else if (point >= digits.length) {
    whole = digits + '0'.repeat(point - digits.length);
    fraction = '';
  } else {
    whole = digits.slice(0, point);
    fraction = digits.slice(point);
  }
  whole = whole.replace(/^0+(?=.)/, '');
  fraction = fraction.replace(/0+$/, '');
  const result = fraction === '' ? whole : `${whole}.${fraction}`;
  return isPlainDecimal(result) ? result : null;
}
