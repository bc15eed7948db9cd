/**
 * Account naming. An account is (code, asset). World accounts stand for counterparties outside payrail and are the
 * only ones allowed below zero: money entering payrail is a debit of the world, never money from nowhere.
 */
export interface AccountRef {
  readonly code: string;
  readonly asset: string;
  readonly allowNegative: boolean;
}

export const accounts = {
  /** NOWPayments, which settles subscribers' payments to the platform. */
  nowpayments: (asset: string): AccountRef => ({ code: 'world:nowpayments', asset, allowNegative: true }),
  /** The platform's fee revenue. */
  platformFees: (asset: string): AccountRef => ({ code: 'platform:fees', asset, allowNegative: false }),
  /** ChangeNow, which takes ETH in and gives USDT out. */
  changenow: (asset: string): AccountRef => ({ code: 'world:changenow', asset, allowNegative: true }),
  /** The chain's validators, paid in gas. */
  ethereum: (asset: string): AccountRef => ({ code: 'world:ethereum', asset, allowNegative: true }),
  /** Gas the platform paid for its own transfers: an expense, so it runs below zero. */
  networkCosts: (asset: string): AccountRef => ({ code: 'platform:network_costs', asset, allowNegative: true }),
  /** What payrail owes a channel owner. */
  channel: (channelId: string, asset: string): AccountRef => ({ code: `channel:${channelId}`, asset, allowNegative: false }),
  /** A channel's balance set aside in a payout batch: no longer available, not yet paid. */
  channelPayout: (channelId: string, asset: string): AccountRef => ({ code: `channel:${channelId}:payout`, asset, allowNegative: false }),
};

export function accountKey(ref: { code: string; asset: string }): string {
  return `${ref.code}/${ref.asset}`;
}
