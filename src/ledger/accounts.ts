/**
 * Account naming. An account is (code, asset). World accounts stand for counterparties outside payrail and are the
 * only ones allowed below zero: money entering payrail is a debit of the world, never money from nowhere.
 */
export interface AccountRef {
  readonly code: string;
  readonly asset: string;
  readonly allowNegative: boolean;
}

/**
 * Accounts every payment touches are split into shards (code#NN, chosen by the payment id), so concurrent credits do
 * not queue on one balance row. An account's total is the sum of its shards.
 */
export const HOT_ACCOUNT_SHARDS = 16;

function shard(code: string, key: string): string {
  const n = Number(BigInt(key) % BigInt(HOT_ACCOUNT_SHARDS));
  return `${code}#${String(n).padStart(2, '0')}`;
}

export const accounts = {
  /** NOWPayments, which settles subscribers' payments to the platform (sharded by payment id). */
  nowpayments: (asset: string, paymentId: string): AccountRef => ({
    code: shard('world:nowpayments', paymentId),
    asset,
    allowNegative: true,
  }),
  /** The platform's fee revenue (sharded by payment id). */
  platformFees: (asset: string, paymentId: string): AccountRef => ({
    code: shard('platform:fees', paymentId),
    asset,
    allowNegative: false,
  }),
  /** ChangeNow, which takes ETH in and gives USDT out. */
  changenow: (asset: string): AccountRef => ({ code: 'world:changenow', asset, allowNegative: true }),
  /** Channel owners' own wallets, paid directly by the host wallet (a payout needing no exchange). */
  payees: (asset: string): AccountRef => ({ code: 'world:payees', asset, allowNegative: true }),
  /** The chain's validators, paid in gas. */
  ethereum: (asset: string): AccountRef => ({ code: 'world:ethereum', asset, allowNegative: true }),
  /** Gas the platform paid for its own transfers: an expense, so it runs below zero. */
  networkCosts: (asset: string): AccountRef => ({ code: 'platform:network_costs', asset, allowNegative: true }),
  /** What the platform bore for its owners (a conversion's ETH lost at an exchange): an expense, below zero. */
  platformLosses: (asset: string): AccountRef => ({ code: 'platform:losses', asset, allowNegative: true }),
  /** Whoever funds the host wallet from outside (the operator): its deposits are booked from here. */
  operator: (asset: string): AccountRef => ({ code: 'world:operator', asset, allowNegative: true }),
  /** What the operator put on the host wallet (gas money, a float): the platform's own, not any channel's. */
  capital: (asset: string): AccountRef => ({ code: 'platform:capital', asset, allowNegative: false }),
  /**
   * A reversed payment's ETH, still on the host wallet after its credit was taken back: the platform holds it for
   * whoever the refund is owed to (NOWPayments may claim it), neither a channel's nor the platform's own.
   */
  refundsOwed: (asset: string): AccountRef => ({ code: 'platform:refunds_owed', asset, allowNegative: false }),
  /** Whoever a reversed payment's ETH is sent back to (NOWPayments, or the subscriber). */
  refunded: (asset: string): AccountRef => ({ code: 'world:refunds', asset, allowNegative: true }),
  /** What payrail owes a channel owner. */
  channel: (channelId: string, asset: string): AccountRef => ({
    code: `channel:${channelId}`,
    asset,
    allowNegative: false,
  }),
  /** A channel's balance set aside in a payout batch: no longer available, not yet paid. */
  channelPayout: (channelId: string, asset: string): AccountRef => ({
    code: `channel:${channelId}:payout`,
    asset,
    allowNegative: false,
  }),
};

export function accountKey(ref: { code: string; asset: string }): string {
  return `${ref.code}/${ref.asset}`;
}
