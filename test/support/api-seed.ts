/**
 * The part of a seeded history that goes through payrail's own API, beside the rows overview-seed.ts writes straight
 * into the database: channels saved as an operator saves them, IPNs sent as NOWPayments sends them, and what the
 * fixture payment of a finished IPN (ipn.ts) is worth.
 */
import { signed } from './ipn.ts';
import { IPN_SECRET, type TestPayrail } from './payrail.ts';

/** The owner wallet of every seeded channel. */
export const WALLET = '0x8ba1f109551bD432803012645Ac136ddd64DBA72';

/** One fixture payment: 0.00487 ETH gross, 3% fee. */
export const GROSS_WEI = 4_870_000_000_000_000n;
export const FEE_WEI = 146_100_000_000_000n;
export const NET_WEI = GROSS_WEI - FEE_WEI;

/** A channel's body that converts its ETH to USDT and pays it out on eth once it holds `thresholdUsd`. */
export function usdtThresholdChannel(thresholdUsd: string): Record<string, unknown> {
  return {
    payoutStrategy: 'threshold',
    thresholdUsd,
    payoutCurrency: 'usdt',
    payoutNetwork: 'eth',
    walletAddress: WALLET,
  };
}

/** A channel's body that pays each payment's ETH out at once, on eth. */
export function instantEthChannel(): Record<string, unknown> {
  return {
    payoutStrategy: 'instant',
    payoutCurrency: 'eth',
    payoutNetwork: 'eth',
    walletAddress: WALLET,
  };
}

/** A signed IPN as NOWPayments sends it; the answer's HTTP status. */
export async function sendIpn(payrail: TestPayrail, body: Record<string, unknown>): Promise<number> {
  const { raw, headers } = signed(body, IPN_SECRET);
  return (await payrail.request('POST', '/webhooks/nowpayments', { raw, headers, token: null })).status;
}
