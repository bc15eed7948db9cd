/**
 * What a conversion's poll and a payout's poll share: asking ChangeNow for the exchange's status and handing each
 * kind of answer to the outcome the caller gives. What each outcome does stays with its caller (ETH booked to
 * channels, or funds paid to an owner).
 */
import { ChangeNowError, type ExchangeStatus } from '../integrations/changenow/index.ts';
import type { Logger } from '../log.ts';
import { stageAlert } from './alert.ts';
import type { StageDeps } from './interfaces.ts';

/** One poll of one exchange, with what its outcomes report through. */
interface ExchangePoll {
  readonly deps: StageDeps;
  readonly log: Logger;
}

/** The caller's outcome for each answer. */
export interface ExchangeOutcomes<P extends ExchangePoll> {
  onNoStatus(poll: P, error: ChangeNowError): Promise<void>;
  onFinished(poll: P, status: ExchangeStatus): Promise<void>;
  onRefunded(poll: P, status: ExchangeStatus): Promise<void>;
  /** failed or expired. */
  onFailed(poll: P, status: ExchangeStatus): Promise<void>;
  /** Any other status: still under way. */
  onStillWaiting(poll: P, status: ExchangeStatus): Promise<void>;
}

/** Asks ChangeNow once; only a ChangeNowError counts as no status, anything else is the job's failure. */
export async function followExchange<P extends ExchangePoll>(
  poll: P,
  exchangeId: string,
  outcomes: ExchangeOutcomes<P>,
): Promise<void> {
  let status: ExchangeStatus;
  try {
    status = await poll.deps.exchange.getExchange(exchangeId);
  } catch (error) {
    if (!(error instanceof ChangeNowError)) throw error;
    await outcomes.onNoStatus(poll, error);
    return;
  }
  if (status.status === 'finished') await outcomes.onFinished(poll, status);
  else if (status.status === 'refunded') await outcomes.onRefunded(poll, status);
  else if (status.status === 'failed' || status.status === 'expired') await outcomes.onFailed(poll, status);
  else await outcomes.onStillWaiting(poll, status);
}

/**
 * No status this time: a refusal for good is an alert (the poll goes on all the same: the funds are already at
 * ChangeNow), a passing failure a warning.
 */
export async function reportNoStatus(
  poll: ExchangePoll,
  error: ChangeNowError,
  refused: { message: string; ids: Record<string, string> },
  unreachable: { event: string; message: string },
): Promise<void> {
  if (error.kind === 'permanent')
    await stageAlert(poll.deps, poll.log, {
      rule: 'changenow_permanent_error',
      subject: error.code,
      severity: 'critical',
      message: refused.message,
      details: { ...refused.ids, code: error.code, endpoint: error.endpoint },
    });
  else poll.log.warn({ event: unreachable.event, code: error.code }, unreachable.message);
}
