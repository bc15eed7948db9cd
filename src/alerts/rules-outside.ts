/** Rules about the outside world (from this pass's observations) and the ledger's own invariants. */
import { checkLedger } from '../ledger/index.ts';
import { ChainUnavailableError } from '../integrations/wallet/index.ts';
import { checkLedgerAgainstChain } from '../treasury/index.ts';
import { formatUnits } from '../money/index.ts';
import { OBSERVATION } from './observe.ts';
import type { Firing, RuleContext, RuleResult, StateRule } from './rule-types.ts';

async function observations(db: RuleContext['db']) {
  const rows = await db
    .selectFrom('observations')
    .selectAll()
    .where('name', 'in', Object.values(OBSERVATION))
    .execute();
  return new Map(rows.map((r) => [r.name, r]));
}

/** Below the floor before a transfer fails for lack of funds. Compared in smallest units, as integers. */
const hostWalletLow: StateRule = {
  name: 'host_wallet_low',
  severity: 'warning',
  async evaluate({ db, settings }) {
    const seen = await observations(db);
    const result: RuleResult = { firing: [], unknown: [] };
    const assets = [
      { subject: 'eth', name: OBSERVATION.hostEth, floor: settings.hostEthMinWei, decimals: 18 },
      { subject: 'usdt', name: OBSERVATION.hostUsdt, floor: settings.hostUsdtMinUnits, decimals: 6 },
    ];
    for (const asset of assets) {
      const row = seen.get(asset.name);
      if (!row || !row.ok || row.value === null || !/^[0-9]+$/.test(row.value)) {
        result.unknown?.push(asset.subject);
        continue;
      }
      const balance = BigInt(row.value);
      if (balance >= asset.floor) continue;
      const shown = (units: bigint) => `${formatUnits(units, asset.decimals)} ${asset.subject.toUpperCase()}`;
      result.firing.push({
        subject: asset.subject,
        message: `host wallet holds ${shown(balance)}, below its floor of ${shown(asset.floor)}`,
        // No observation time: it changes every pass (last_seen_at says it), and changed evidence rewrites the alert.
        details: { asset: asset.subject, balance: shown(balance), floor: shown(asset.floor), units: balance },
      });
    }
    return result;
  },
};

/**
 * Critical, so only an outage: the probe failed on two passes in a row (one timeout is noise, and would page
 * someone and resolve a minute later). A single failure leaves the alert as it is; the first success resolves it.
 */
function unreachable(name: string, observation: string, what: string): StateRule {
  return {
    name,
    severity: 'critical',
    async evaluate({ db }) {
      const row = (await observations(db)).get(observation);
      if (!row) return { firing: [], unknown: [observation] };
      if (row.ok) return { firing: [] };
      const since = row.failing_since;
      if (since === null || since.getTime() >= row.observed_at.getTime()) return { firing: [], unknown: [observation] };
      return {
        firing: [
          {
            subject: observation,
            message: `${what} did not answer since ${since.toISOString()}: ${row.detail ?? 'no detail'}`,
            details: { error: row.detail, failingSince: since },
          },
        ],
      };
    },
  };
}

const MAX_EXAMPLES = 5;

/** One alert per broken invariant (not per account or journal: a broken ledger is one incident). */
const ledgerInvariantBroken: StateRule = {
  name: 'ledger_invariant_broken',
  severity: 'critical',
  throttle: { observation: OBSERVATION.ledgerCheck, everyMs: (settings) => settings.ledgerCheckEveryMs },
  async evaluate({ db }) {
    const report = await checkLedger(db);
    const byRule = new Map<string, string[]>();
    for (const p of report.problems) byRule.set(p.rule, [...(byRule.get(p.rule) ?? []), `${p.subject}: ${p.detail}`]);
    return {
      observedValue: String(report.problems.length),
      firing: [...byRule].map(([rule, problems]): Firing => ({
        subject: rule,
        message: `ledger invariant ${rule} broken (${problems.length}): ${problems[0]}`,
        details: { invariant: rule, count: problems.length, examples: problems.slice(0, MAX_EXAMPLES) },
      })),
    };
  },
};

/**
 * Per asset, the host wallet on chain against the ledger (src/treasury/chain-check.ts): any difference is an alert
 * with every term in its evidence. A difference that only money in transit explains (a ChangeNow payout arrived
 * before its poll) is gone at the next check, which resolves it.
 */
const ledgerChainMismatch: StateRule = {
  name: 'ledger_chain_mismatch',
  severity: 'critical',
  throttle: { observation: OBSERVATION.ledgerChainCheck, everyMs: (settings) => settings.ledgerChainCheckEveryMs },
  async evaluate({ db, chain }) {
    if (!chain) return { firing: [], observedValue: 'no chain' };
    let report;
    try {
      report = await checkLedgerAgainstChain(db, chain);
    } catch (error) {
      // An unreachable RPC is chain_rpc_unreachable's to report: this check's alerts stay as they are.
      if (error instanceof ChainUnavailableError)
        return { firing: [], unknown: ['eth', 'usdt'], observedValue: 'chain unreachable' };
      throw error;
    }
    const differing = report.assets.filter((a) => a.difference !== 0n);
    return {
      observedValue: String(differing.length),
      firing: differing.map((a): Firing => ({
        subject: a.asset,
        message: `the host wallet holds ${a.onChain} ${a.asset} units on chain, the ledger says ${a.expected}: off by ${a.difference}`,
        details: {
          hostAddress: report.hostAddress,
          onChain: a.onChain.toString(),
          ledgerHeld: a.ledgerHeld.toString(),
          leftNotBooked: a.leftNotBooked.toString(),
          gasNotBooked: a.gasNotBooked.toString(),
          expected: a.expected.toString(),
          difference: a.difference.toString(),
          inFlight: a.inFlight.slice(0, MAX_EXAMPLES).map((t) => ({ ...t, amount: t.amount.toString() })),
        },
      })),
    };
  },
};

export const outsideRules: readonly StateRule[] = [
  hostWalletLow,
  unreachable('chain_rpc_unreachable', OBSERVATION.chainRpc, 'the chain RPC (ETH_RPC_URL)'),
  unreachable('changenow_unreachable', OBSERVATION.changenow, 'ChangeNow'),
  ledgerInvariantBroken,
  ledgerChainMismatch,
];
