/**
 * A short chaos run (chaos/run.ts) as part of the suite: a few hundred payments through one web and two worker
 * processes against anvil (a block a second, CHAIN_CONFIRMATIONS=4, TRANSFER_BUMP_AFTER=2s), with a contract-wallet
 * owner and a blacklisted USDT owner, and five faults: the first five of a seeded order of every kind (the run prints
 * them; chaos/README.md lists the kinds). Some payments need a person (partial, foreign outcome, restated amount),
 * some are forged (signed, unknown to NOWPayments' API, with which every credit is confirmed), and an operator works
 * the review queues through the admin API mid-run and after the settle, pays a channel now and switches a channel's
 * strategy. The host wallet is funded by a real transfer booked as capital, and each payment's outcome is forwarded to
 * it on chain before its IPNs, as NOWPayments does. Then every check of the run: nothing lost (held and review
 * outcomes visible with their reason), no forgery credited, nothing paid twice, every host-wallet nonce accounted for,
 * the ledger equal to the chain in ETH and USDT as `payrail check-ledger --chain` computes it, no job failed for good
 * without an alert. A fixed seed, so a failure here replays with `npm run chaos`.
 */
import { describe, expect, it } from 'vitest';
import { runChaos } from '../../chaos/run.ts';

const SEED = Number(process.env.CHAOS_SEED ?? 20261128);

describe('chaos', () => {
  it(`survives faults with nothing lost or paid twice (seed ${SEED})`, async () => {
    const lines: string[] = [];
    const result = await runChaos(
      { seed: SEED, payments: 200, channels: 8, workers: 2, faults: 5, concurrency: 8, settleTimeoutMs: 90_000 },
      (line) => lines.push(line),
    );
    if (result.violations.length > 0) process.stderr.write(`${lines.join('\n')}\n`);
    expect(result.violations).toEqual([]);
  }, 420_000);
});
