/**
 * The demo's and the bench's senders share one loop: a few workers take the next item in order, at most `perSecond`
 * started a second, and the first failure stops every worker before its next item.
 */
export interface PaceOptions {
  /** Workers, each with one item under way at a time. */
  concurrency: number;
  /** Item i starts no sooner than i / perSecond seconds after the first; unset: as fast as the workers go. */
  perSecond?: number;
  /** A reason to stop (interrupted, deadline), asked before each item. */
  stopped?: () => string | undefined;
}

/**
 * Runs `handle` once for each index below `count`. `handle` returns a reason when its item failed; the first reason
 * (or `stopped`'s) ends the run and is returned, with when the first item could start.
 */
export async function runPaced(
  count: number,
  options: PaceOptions,
  handle: (index: number) => Promise<string | undefined>,
): Promise<{ firstStartedAt: number; failure: string | undefined }> {
  let nextIndex = 0;
  let failure: string | undefined;
  const firstStartedAt = Date.now();
  const worker = async () => {
    for (;;) {
      failure ??= options.stopped?.();
      if (failure !== undefined) return;
      const index = nextIndex++;
      if (index >= count) return;
      if (options.perSecond !== undefined) {
        const due = firstStartedAt + (index * 1000) / options.perSecond;
        if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
      }
      const reason = await handle(index);
      if (reason !== undefined) {
        failure ??= reason;
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return { firstStartedAt, failure };
}
