/** What the simulator's exchanges pay: pairs with their rate, fee and minimum, in exact decimals rounded down. */
import { Decimal as BaseDecimal } from 'decimal.js';
import { HttpError } from '../http.ts';
import type { PairConfig } from './model.ts';

// Enough significant digits for 18-decimal amounts times any rate; every rounding below is explicit.
export const Decimal = BaseDecimal.clone({ precision: 80 });
export type Decimal = BaseDecimal;

export const DEFAULT_PAIRS: Record<string, PairConfig> = {
  'eth/eth->usdt/eth': { rate: '3000', withdrawalFee: '1', minAmount: '0.001' },
  'usdt/eth->eth/eth': { rate: '0.00033', withdrawalFee: '0.0005', minAmount: '10' },
  'usdt/eth->usdt/trx': { rate: '1', withdrawalFee: '1', minAmount: '10' },
  'usdt/eth->usdt/bsc': { rate: '1', withdrawalFee: '0.3', minAmount: '10' },
  'usdt/eth->btc/btc': { rate: '0.0000105', withdrawalFee: '0.00002', minAmount: '10' },
  'usdt/eth->sol/sol': { rate: '0.0066', withdrawalFee: '0.001', minAmount: '10' },
  // Instant payouts: one payment's ETH straight to the owner's currency.
  'eth/eth->usdt/trx': { rate: '3000', withdrawalFee: '1', minAmount: '0.001' },
  'eth/eth->btc/btc': { rate: '0.0315', withdrawalFee: '0.00002', minAmount: '0.001' },
  'eth/eth->sol/sol': { rate: '19.8', withdrawalFee: '0.001', minAmount: '0.001' },
};

export const DECIMALS: Record<string, number> = {
  eth: 18,
  usdt: 6,
  usdc: 6,
  btc: 8,
  ltc: 8,
  sol: 9,
  ton: 9,
  trx: 6,
  xmr: 12,
  bnb: 18,
};

export function pairOf(
  pairs: Map<string, PairConfig>,
  from: string,
  fromNetwork: string,
  to: string,
  toNetwork: string,
): PairConfig {
  const pair = pairs.get(`${from}/${fromNetwork}->${to}/${toNetwork}`);
  if (!pair) throw new HttpError(400, 'pair_is_inactive', 'Pair is inactive');
  return pair;
}

/** What `fromAmount` buys: at the pair's rate, less its withdrawal fee, never below 0, rounded down to `to`'s units. */
export function quote(pair: PairConfig, fromAmount: Decimal, to: string): Decimal {
  const out = fromAmount.mul(pair.rate).minus(pair.withdrawalFee);
  return Decimal.max(out, 0).toDecimalPlaces(DECIMALS[to] ?? 8, Decimal.ROUND_DOWN);
}

/** `amount` less `percent` of it, rounded down to the currency's smallest unit: never less than `percent` below. */
export function belowBy(amount: Decimal, percent: string, currency: string): Decimal {
  return amount
    .mul(new Decimal(100).minus(percent))
    .div(100)
    .toDecimalPlaces(DECIMALS[currency] ?? 8, Decimal.ROUND_DOWN);
}
