/** What a finished payout exchange means for its payout: one judgement for a poll and for a set of polls. */
import type { ExchangeStatus } from '../../integrations/changenow/index.ts';
import { decimalsOf, formatUnits } from '../../money/index.ts';
import { belowEstimate, statusMismatch } from '../exchange-answer.ts';
import type { StageDeps } from '../interfaces.ts';
import type { Payout } from './run.ts';

/** What a finished exchange means for its payout: completed with what it paid, or why not. */
export type Finish =
  | { readonly to: 'completed'; readonly amountOut: string }
  | { readonly to: 'mismatch'; readonly wrong: string }
  | { readonly to: 'unverifiable' }
  | { readonly to: 'below_estimate'; readonly below: string };

/** A finished exchange judged against its payout: the request it was asked for, an amount stated, the estimate. */
export function judgeFinish(
  deps: Pick<StageDeps, 'settings'>,
  payout: Pick<
    Payout,
    'amount' | 'asset' | 'wallet_address' | 'expected_amount_out' | 'payout_currency' | 'exchange_id'
  >,
  status: ExchangeStatus,
): Finish {
  // The status of another exchange than the one recorded for the payout says nothing about it.
  if (status.id !== payout.exchange_id)
    return { to: 'mismatch', wrong: `id ${status.id} (asked ${payout.exchange_id})` };
  // Paid out elsewhere, or for another deposit than the one the chain shows sent: never booked as the owner's.
  const asked = formatUnits(BigInt(payout.amount), decimalsOf(payout.asset));
  const wrong = statusMismatch({ payoutAddress: payout.wallet_address, fromAmount: asked }, status, asked);
  if (wrong) return { to: 'mismatch', wrong };
  // Completed would book an amount nobody stated as the owner's; a conversion in this case goes to review too.
  if (status.amountTo === null) return { to: 'unverifiable' };
  const below =
    payout.expected_amount_out === null
      ? null
      : belowEstimate(payout.expected_amount_out, status.amountTo, payout.payout_currency, deps.settings.maxSlippage);
  if (below) return { to: 'below_estimate', below };
  return { to: 'completed', amountOut: status.amountTo };
}
