/**
 * What the conversion integration tests share: a threshold channel that keeps its USDT, the exchanges ChangeNow holds
 * for a conversion, a payment converted through an exchange ChangeNow answers as a test asks, and the wait for a
 * conversion (or payout) to reach a state.
 */
import type { ChangeNowSimulator } from '../../src/simulators/index.ts';
import { eventually, type Outside } from './outside.ts';
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

/**
 * Waits until `read` shows `what` in `status`, and returns it as read then. When it does not get there, the error says
 * where it ended up instead: one that went elsewhere is the finding.
 */
export async function readUntilStatus<T extends { status?: string; reason?: string | null }>(
  what: string,
  read: () => Promise<T>,
  status: string,
  timeoutMs?: number,
): Promise<T> {
  let last: T | undefined;
  try {
    await eventually(`${what} ${status}`, async () => (last = await read()).status === status, timeoutMs);
  } catch (error) {
    throw new Error(`${(error as Error).message} (last: ${last?.status}, ${last?.reason ?? 'no reason'})`, {
      cause: error,
    });
  }
  return last as T;
}
