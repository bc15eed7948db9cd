/**
 * The outside calls of a set (payout/ask-at-opening.ts, payout/poll-set.ts), a few at a time. Each group settles
 * before the next starts, so that no call is under way when the set moves on (and releases its locks). The first
 * failed call stops the later groups, and so does the budget spent: ChangeNow down or slow is each item's own job's to
 * wait out, with its own attempts.
 */
import type { Logger } from '../log.ts';

export class CallGroups<I> {
  private stopped = false;
  private readonly until: number;

  constructor(
    private readonly options: {
      readonly atOnce: number;
      readonly budgetMs: number;
      readonly logger: Logger;
      /** The log line's event and text when the set stops: what is left is whose. */
      readonly stopped: { readonly event: string; readonly message: string };
      /** How a failed call's item is named in that line. */
      readonly fields: (item: I) => Record<string, unknown>;
    },
  ) {
    this.until = Date.now() + options.budgetMs;
  }

  /** The answers of `call` for the items reached before a stop; null answers left out. */
  async each<O>(items: readonly I[], call: (item: I) => Promise<O | null>): Promise<O[]> {
    const out: O[] = [];
    const { atOnce, logger, stopped } = this.options;
    for (let i = 0; i < items.length && !this.stopped; i += atOnce) {
      if (Date.now() > this.until) {
        this.stopped = true;
        logger.warn({ event: stopped.event, left: items.length - i, why: 'budget spent' }, stopped.message);
        break;
      }
      const group = items.slice(i, i + atOnce);
      const settled = await Promise.allSettled(group.map(call));
      settled.forEach((result, j) => {
        if (result.status === 'fulfilled') {
          if (result.value !== null) out.push(result.value);
          return;
        }
        this.stopped = true;
        logger.warn(
          { event: stopped.event, ...this.options.fields(group[j] as I), err: result.reason },
          stopped.message,
        );
      });
    }
    return out;
  }
}
