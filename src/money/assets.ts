/**
 * Assets payrail keeps amounts in, with their smallest unit. This is the one table of decimals; the ledger and the
 * API format through it, and the events' SQL (migration 023) repeats it, held equal by a test.
 */
export const ASSET_DECIMALS = {
  eth: 18,
  usdt: 6,
  usdc: 6,
  usd: 2,
} as const;

export type AssetCode = keyof typeof ASSET_DECIMALS;

/**
 * Assets a NOWPayments payment may be credited in. payrail converts ETH to USDT and pays out from the host wallet on
 * Ethereum; another outcome currency would be money the pipeline cannot move, so intake refuses it loudly.
 */
export const INTAKE_ASSETS: readonly AssetCode[] = ['eth'];

export function isAssetCode(code: string): code is AssetCode {
  return Object.hasOwn(ASSET_DECIMALS, code);
}

export function decimalsOf(asset: AssetCode): number {
  return ASSET_DECIMALS[asset];
}
