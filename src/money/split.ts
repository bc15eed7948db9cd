/**
 * Shares a total among weights exactly (largest remainder): each share is floor(total * w / W), and the units left
 * over go one each to the largest fractional remainders, ties to the earlier index. Nothing is created or lost, no
 * share is negative, and every share is within one unit of its exact proportion.
 */
export function splitProportionally(total: bigint, weights: readonly bigint[]): bigint[] {
  if (total < 0n) throw new Error('total must not be negative');
  if (weights.length === 0) throw new Error('nothing to split among');
  if (weights.some((w) => w <= 0n)) throw new Error('weights must be positive');
  const sumWeights = weights.reduce((a, b) => a + b, 0n);
  const shares = weights.map((w) => (total * w) / sumWeights);
  const remainders = weights.map((w, index) => ({ index, remainder: (total * w) % sumWeights }));
  let left = total - shares.reduce((a, b) => a + b, 0n);
  remainders.sort((a, b) => (a.remainder === b.remainder ? a.index - b.index : a.remainder > b.remainder ? -1 : 1));
  for (const { index } of remainders) {
    if (left === 0n) break;
    shares[index] = (shares[index] as bigint) + 1n;
    left -= 1n;
  }
  const sum = shares.reduce((a, b) => a + b, 0n);
  if (sum !== total || shares.some((s) => s < 0n))
    throw new Error(`proportional split invariant broken: ${sum} != ${total}`);
  return shares;
}
