/**
 * Steps the payout integration tests take the same way, whether they read payouts from the tables (payoutTest) or
 * through the admin API (payoutApiTest): each brings one instant payout to a state someone must act on.
 */
import { expect } from 'vitest';
import type { Outside } from './outside.ts';
import { freshWallet, TRON_WALLET } from './payouts.ts';

/** One fixture payment's net: 0.00487 ETH less the 3 % platform fee, in wei. */
export const NET_WEI = 4_723_900_000_000_000n;

/** What the steps need of a payout test: a channel paid once, and its payout once it reached a status. */
interface PayoutSteps<P> {
  paidInstant: (payoutCurrency: string, payoutNetwork: string, walletAddress: string) => Promise<string>;
  payoutIn: (channelId: string, status: string, timeoutMs?: number) => Promise<P>;
}

/** An instant payout (USDT on Tron) in review: its exchange failed after the ETH was sent to it. */
export function failedExchangeInReviewOn<P>({ outside, paidInstant, payoutIn }: PayoutSteps<P> & { outside: Outside }) {
  return async (): Promise<{ id: string; review: P }> => {
    outside.sim.failNextExchange('failed');
    const id = await paidInstant('usdt', 'trx', TRON_WALLET);
    return { id, review: await payoutIn(id, 'needs_review') };
  };
}

/**
 * An instant payout in review before anything was sent: ChangeNow has `usdc` on `payoutNetwork` inactive (until a
 * test sets the pair).
 */
export function inactivePairInReviewOn<P extends { reason?: string | null }>({
  paidInstant,
  payoutIn,
}: PayoutSteps<P>) {
  return async (payoutNetwork: string): Promise<{ id: string; review: P }> => {
    const id = await paidInstant('usdc', payoutNetwork, freshWallet());
    const review = await payoutIn(id, 'needs_review');
    expect(review.reason).toContain('pair_is_inactive');
    return { id, review };
  };
}

/** A direct ETH payout awaiting approval: the test's payrail must have started with PAYOUT_APPROVAL_ABOVE_USD below it. */
export function awaitingApprovalOn<P>({ paidInstant, payoutIn }: PayoutSteps<P>) {
  return async (): Promise<{ id: string; waiting: P }> => {
    const id = await paidInstant('eth', 'eth', freshWallet());
    return { id, waiting: await payoutIn(id, 'awaiting_approval') };
  };
}
