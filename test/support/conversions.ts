/**
 * What the conversion integration tests share: a threshold channel that keeps its USDT, the exchanges ChangeNow holds
 * for a conversion, and a payment converted through an exchange ChangeNow answers as a test asks.
 */
import type { ChangeNowSimulator } from '../../src/simulators/index.ts';
import type { Outside } from './outside.ts';
import { freshWallet } from './payouts.ts';

/**
 * A threshold channel's body, paying out USDT on eth to `walletAddress` once it holds `thresholdUsd`: by default far
 * above what a test pays, so its USDT stays on its balance and no payout interferes.
 */
export function usdtThreshold(walletAddress: string = freshWallet(), thresholdUsd = '1000'): Record<string, unknown> {
  return { payoutStrategy: 'threshold', thresholdUsd, payoutCurrency: 'usdt', payoutNetwork: 'eth', walletAddress };
}

/** The exchanges ChangeNow holds for a conversion or payout id. */
export function exchangesOf(outside: Outside, userId: string) {
  return [...outside.sim.exchanges.values()].filter((e) => e.userId === userId);
}

/** `conversionAnswered`: a new threshold channel's payment, converted through an exchange ChangeNow answers with `answer`. */
export function conversionAnsweredOn({
  outside,
  channel,
  pay,
  conversionOf,
}: {
  outside: Outside;
  channel: (body: Record<string, unknown>) => Promise<string>;
  pay: (channelId: string) => Promise<string>;
  conversionOf: (paymentId: string) => Promise<string>;
}) {
  return async (...answer: Parameters<ChangeNowSimulator['failNextExchange']>) => {
    const channelId = await channel(usdtThreshold());
    outside.sim.failNextExchange(...answer);
    const paymentId = await pay(channelId);
    return { channelId, paymentId, id: await conversionOf(paymentId) };
  };
}
