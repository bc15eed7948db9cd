/**
 * bench/pipeline.ts's measures table and its checks, from the figures bench/pipeline-reads.ts read back: what the
 * throughput, exchanges, transfers, conversions, payouts and memory came to, and whether the sums, counts and the
 * chain agree.
 */
import type { SendOutcome } from '../src/demo/ipns.ts';
import { formatUnits } from '../src/money/index.ts';
import type { PipelineResults } from './pipeline-reads.ts';
import { fmt, percentile, table } from './shared.ts';

/** What the run did, besides the figures read back. */
export interface PipelineRun {
  payments: number;
  thresholdPayments: number;
  instantPayments: number;
  /** Threshold payments converted when the bench stopped waiting. */
  thresholdCompleted: number;
  intake: SendOutcome;
  /** Exchanges the ChangeNow simulator created. */
  simExchanges: number;
  memory: { payrailHwmKib?: number; payrailPeakKib: number; selfHwmKib?: number; selfMaxRssKib: number };
}

/** Counts summed over the kinds of payouts and transfers, used by the table and by the checks. */
interface Totals {
  payoutCount: number;
  payoutsCompleted: number;
  payoutExchanges: number;
  allExchanges: number;
  confirmed: number;
  thresholdExchanges: number;
  thresholdTransfers: number;
}

function totals(r: PipelineResults): Totals {
  const { conv, transfers, thresholdPo, instantPo } = r;
  const payoutExchanges = thresholdPo.with_exchange + instantPo.with_exchange;
  return {
    payoutCount: thresholdPo.n + instantPo.n,
    payoutsCompleted: thresholdPo.completed + instantPo.completed,
    payoutExchanges,
    allExchanges: (conv?.with_exchange ?? 0) + payoutExchanges,
    confirmed: (transfers?.conversion ?? 0) + (transfers?.threshold ?? 0) + (transfers?.instant ?? 0),
    thresholdExchanges: (conv?.with_exchange ?? 0) + thresholdPo.with_exchange,
    thresholdTransfers: (transfers?.conversion ?? 0) + (transfers?.threshold ?? 0),
  };
}

const mib = (kib: number | undefined) => (kib === undefined || kib === 0 ? '-' : `${fmt(kib / 1024, 1)} MiB`);
const usdt = (units: bigint) => `${units / 10n ** 6n}.${(units % 10n ** 6n).toString().padStart(6, '0')}`;
const ms = (text: string | null) => (text === null ? '-' : fmt(Number(text) / 1000, 2));
const perThousand = (count: number, of: number) => (of === 0 ? '-' : fmt((count * 1000) / of, 2));

// ---------------------------------------------------------------------------------------------------------------
// The measures table, one function per group of rows

function speedRows(run: PipelineRun, r: PipelineResults, t: Totals): string[][] {
  const { intake, payments: n } = run;
  const { lastSettledAt, lastPayoutAt } = r.timing;
  const intakeS = (intake.lastAnsweredAt - intake.firstSentAt) / 1000;
  const totalS = (lastSettledAt - intake.firstSentAt) / 1000;
  const tailS = (lastSettledAt - intake.lastAnsweredAt) / 1000;
  const payoutsS = lastPayoutAt === undefined ? undefined : (lastPayoutAt - intake.firstSentAt) / 1000;
  const latency = (p: number) => fmt(percentile(intake.latencies, p), 1);
  return [
    [
      'payments/s, first IPN sent -> last payment settled',
      `${fmt(n / totalS, 1)}  (${n} in ${fmt(totalS, 2)} s; settled: converted, or paid out if instant)`,
    ],
    ['intake phase (first IPN sent -> last 200)', `${fmt(intakeS, 2)} s  (${fmt(n / intakeS, 1)} IPN/s)`],
    ['  IPN latency p50 / p99 / max', `${latency(50)} / ${latency(99)} / ${latency(100)} ms`],
    ['after intake: last 200 -> last payment settled', `${fmt(tailS, 2)} s`],
    [
      'payouts/s, first IPN sent -> last payout completed',
      payoutsS === undefined
        ? '- (no payout)'
        : `${fmt(t.payoutCount / payoutsS, 1)}  (${t.payoutCount} in ${fmt(payoutsS, 2)} s: ${r.thresholdPo.n} threshold, ${r.instantPo.n} instant)`,
    ],
    [
      '  after intake: last 200 -> last payout completed',
      lastPayoutAt === undefined ? '-' : `${fmt((lastPayoutAt - intake.lastAnsweredAt) / 1000, 2)} s`,
    ],
    [
      '  instant: payment credited -> paid, avg / p50 / max',
      `${ms(r.instantPo.avg_ms)} / ${ms(r.instantPo.p50_ms)} / ${ms(r.instantPo.max_ms)} s`,
    ],
    [
      '  threshold batch created -> paid, avg / p50 / max',
      `${ms(r.thresholdPo.avg_ms)} / ${ms(r.thresholdPo.p50_ms)} / ${ms(r.thresholdPo.max_ms)} s`,
    ],
  ];
}

function exchangeRows(run: PipelineRun, r: PipelineResults, t: Totals): string[][] {
  const { payments: n, thresholdPayments, instantPayments, simExchanges } = run;
  return [
    [
      'ChangeNow exchanges, all (simulator counted)',
      `${t.allExchanges} (${simExchanges})  = ${perThousand(t.allExchanges, n)} per 1,000 payments`,
    ],
    [
      '  threshold channels (conversions + batches)',
      `${r.conv?.with_exchange} + ${r.thresholdPo.with_exchange} = ${t.thresholdExchanges}  = ${perThousand(t.thresholdExchanges, thresholdPayments)} per 1,000 threshold payments`,
    ],
    [
      '  instant channels (one per non-direct payout)',
      `${r.instantPo.with_exchange}  = ${perThousand(r.instantPo.with_exchange, instantPayments)} per 1,000 instant payments`,
    ],
    ['  replaced system (one exchange per payment)', `${n}  = 1000.00 per 1,000 payments`],
  ];
}

function transferRows(run: PipelineRun, r: PipelineResults, t: Totals): string[][] {
  const { transfers, signing } = r;
  const { confirmed, thresholdTransfers } = t;
  return [
    [
      'on-chain transfers, all (host wallet, confirmed)',
      `${confirmed}  = ${perThousand(confirmed, run.payments)} per 1,000 payments (not confirmed: ${transfers?.other})`,
    ],
    [
      '  threshold channels (conversions + batches)',
      `${transfers?.conversion} + ${transfers?.threshold} = ${thresholdTransfers}  = ${perThousand(thresholdTransfers, run.thresholdPayments)} per 1,000 threshold payments`,
    ],
    [
      '  instant channels (one per payout)',
      `${transfers?.instant}  = ${perThousand(transfers?.instant ?? 0, run.instantPayments)} per 1,000 instant payments`,
    ],
    [
      '  one wallet, one signing at a time: intent -> mined',
      `avg ${ms(transfers?.avg_ms ?? null)} / p50 ${ms(transfers?.p50_ms ?? null)} / max ${ms(transfers?.max_ms ?? null)} s; ${transfers?.span_ms ? fmt(confirmed / (Number(transfers.span_ms) / 1000), 1) : '-'} confirmed/s from the first intent to the last`,
    ],
    [
      '    of which intent -> signed, signed -> recorded mined',
      `avg ${ms(transfers?.signed_avg_ms ?? null)} / p90 ${ms(transfers?.signed_p90_ms ?? null)} s, avg ${ms(transfers?.booked_avg_ms ?? null)} / p90 ${ms(transfers?.booked_p90_ms ?? null)} s`,
    ],
    [
      '  signing commits (a send signs the queued intents)',
      `${signing?.commits} for ${signing?.signed} transfers: ${signing?.commits ? fmt((signing.signed ?? 0) / signing.commits, 1) : '-'} per commit on average, ${signing?.largest ?? '-'} at most`,
    ],
  ];
}

function conversionRows(r: PipelineResults): string[][] {
  const { conv } = r;
  return [
    ['payments per conversion min / avg / max', `${conv?.min_p} / ${conv?.avg_p} / ${conv?.max_p}`],
    [
      'conversions that received < CONVERSION_MIN_USD',
      `${conv?.under_min} (${conv?.under_min_early} before their oldest payment waited CONVERSION_MAX_WAIT)`,
    ],
    ['conversion created -> settled, avg / max', `${conv?.avg_ms} / ${conv?.max_ms} ms`],
  ];
}

function payoutRows(r: PipelineResults): string[][] {
  const { thresholdPo, instantPo } = r;
  return [
    [
      'payout batches (threshold)',
      `${thresholdPo.n} (${thresholdPo.channels} channels, ${usdt(BigInt(thresholdPo.amount))} USDT, ${r.sums?.batched_payments} payments; ${thresholdPo.with_exchange} via exchange, ${thresholdPo.direct} direct)`,
    ],
    [
      'instant payouts',
      `${instantPo.n} (${instantPo.channels} channels, ${formatUnits(BigInt(instantPo.amount), 18)} ETH; ${instantPo.with_exchange} via exchange, ${instantPo.direct} direct)`,
    ],
  ];
}

function memoryRows(run: PipelineRun): string[][] {
  const { memory } = run;
  return [
    ['peak RSS payrail (VmHWM / sampled VmRSS max)', `${mib(memory.payrailHwmKib)} / ${mib(memory.payrailPeakKib)}`],
    [
      'peak RSS bench process (VmHWM / maxRSS)',
      `${mib(memory.selfHwmKib)} / ${mib(memory.selfMaxRssKib)}  (holds the signed bodies, the simulator)`,
    ],
  ];
}

/** The measures table, as one string of lines. */
export function measuresTable(run: PipelineRun, r: PipelineResults): string {
  const t = totals(r);
  return table(
    ['measure', 'value'],
    [
      ...speedRows(run, r, t),
      ...exchangeRows(run, r, t),
      ...transferRows(run, r, t),
      ...conversionRows(r),
      ...payoutRows(r),
      ...memoryRows(run),
    ],
  );
}

// ---------------------------------------------------------------------------------------------------------------
// The checks

interface Verdicts {
  everyPayoutDone: boolean;
  usdtOk: boolean;
  ethOk: boolean;
  instantOk: boolean;
  batchesOk: boolean;
  exchangesOk: boolean;
  transfersOk: boolean;
  costCountsOk: boolean;
}

function verdicts(run: PipelineRun, r: PipelineResults, t: Totals): Verdicts {
  const { sums, conv, transfers, thresholdPo, instantPo } = r;
  const [costsThreshold, costsInstant, ...costsShared] = r.costs.lines;
  return {
    everyPayoutDone:
      run.thresholdCompleted === run.thresholdPayments &&
      instantPo.n === run.instantPayments &&
      t.payoutsCompleted === t.payoutCount,
    usdtOk: BigInt(sums?.shared ?? '0') === BigInt(sums?.received ?? '-1'),
    ethOk: BigInt(sums?.eth_net ?? '0') === BigInt(sums?.eth_sent ?? '-1'),
    instantOk: BigInt(sums?.instant_net ?? '0') === BigInt(sums?.instant_paid ?? '-1'),
    batchesOk:
      BigInt(sums?.batched_usdt ?? '0') === BigInt(thresholdPo.amount) && BigInt(sums?.reserved_left ?? '-1') === 0n,
    exchangesOk: t.allExchanges === run.simExchanges,
    // One confirmed transfer per conversion and per payout, and no payout with two transfer rows.
    transfersOk:
      t.confirmed === (conv?.total ?? 0) + t.payoutCount &&
      transfers?.other === 0 &&
      transfers?.payout_rows === t.payoutCount &&
      transfers?.payout_refs === t.payoutCount,
    // The cost lines count from the ledger and the rows linked to its journals: they must agree with the counts above.
    costCountsOk:
      costsShared.length === 0 &&
      costsThreshold?.payments === run.thresholdPayments &&
      costsInstant?.payments === run.instantPayments &&
      costsThreshold.exchanges === t.thresholdExchanges &&
      costsInstant.exchanges === instantPo.with_exchange &&
      costsThreshold.transfers === t.thresholdTransfers &&
      costsInstant.transfers === (transfers?.instant ?? 0),
  };
}

const yes = (ok: boolean) => (ok ? 'yes' : 'NO');

function moneyCheckLines(run: PipelineRun, r: PipelineResults, t: Totals, v: Verdicts): string[] {
  const { sums, conv, thresholdPo, instantPo } = r;
  const usdtShared = BigInt(sums?.shared ?? '0');
  const usdtReceived = BigInt(sums?.received ?? '-1');
  return [
    `  every payment settled, every payout completed:                       ${yes(v.everyPayoutDone)} (threshold ${run.thresholdCompleted}/${run.thresholdPayments} converted, conversions ${conv?.completed}/${conv?.total}; instant payouts ${instantPo.n}/${run.instantPayments}; payouts ${t.payoutsCompleted}/${t.payoutCount} completed)`,
    `  sum threshold payments.usdt_amount == sum conversions.usdt_received: ${yes(usdtShared === usdtReceived)} (${usdt(usdtShared)} vs ${usdt(usdtReceived)} USDT)`,
    `  sum threshold payments.net_amount == sum conversions.amount_wei:     ${yes(sums?.eth_net === sums?.eth_sent)} (${sums?.eth_net} vs ${sums?.eth_sent} wei)`,
    `  sum instant payments.net_amount == sum instant payouts paid:         ${yes(v.instantOk)} (${sums?.instant_net} vs ${sums?.instant_paid} wei)`,
    `  batches == their payments' USDT, nothing left reserved:              ${yes(v.batchesOk)} (${usdt(BigInt(sums?.batched_usdt ?? '0'))} vs ${usdt(BigInt(thresholdPo.amount))} USDT; reserved left ${sums?.reserved_left})`,
  ];
}

/** A note per conversion under CONVERSION_MIN_USD: when it was created, and how long its oldest payment had waited. */
function underMinNotes(run: PipelineRun, r: PipelineResults): string[] {
  const { intake } = run;
  return r.underMin.map((u) => {
    const at = (Number(u.at_ms) - intake.firstSentAt) / 1000;
    return `  note: a conversion of ${u.payments} payments (${usdt(BigInt(u.usdt))} USDT, under CONVERSION_MIN_USD) was created at ${fmt(at, 2)} s (${at * 1000 <= intake.lastAnsweredAt - intake.firstSentAt ? 'during intake' : 'after intake'}), its oldest payment had waited ${u.waited_ms} ms`;
  });
}

function countCheckLines(run: PipelineRun, r: PipelineResults, t: Totals, v: Verdicts): string[] {
  const { conv, transfers, onChain } = r;
  const [costsThreshold, costsInstant, ...costsShared] = r.costs.lines;
  const problems = (list: string[]) => (list.length ? `; ${list.slice(0, 3).join('; ')}` : '');
  return [
    `  exchanges (conversions + payouts) == simulator's count:              ${yes(v.exchangesOk)} (${conv?.with_exchange} + ${t.payoutExchanges} vs ${run.simExchanges})`,
    `  one confirmed transfer per conversion and per payout, none other:    ${yes(v.transfersOk)} (${t.confirmed} confirmed for ${conv?.total} conversions + ${t.payoutCount} payouts; payout rows ${transfers?.payout_rows}, payouts with one ${transfers?.payout_refs})`,
    `  on chain: owners paid directly hold exactly their payouts:           ${yes(onChain.directOk)} (${onChain.directWallets} wallets${problems(onChain.directProblems)})`,
    `  on chain: each payout exchange's payin holds exactly its payout:     ${yes(onChain.payinOk)} (${onChain.payins} addresses${problems(onChain.payinProblems)})`,
    `  cost lines (ledger) count the payments, exchanges, transfers above:  ${yes(v.costCountsOk)} (threshold ${costsThreshold?.payments}/${costsThreshold?.exchanges}/${costsThreshold?.transfers}, instant ${costsInstant?.payments}/${costsInstant?.exchanges}/${costsInstant?.transfers}${costsShared.length ? ', shared costs present' : ''})`,
  ];
}

/** The check lines (without the ledger's), and whether every check passed, the ledger's and the chain's included. */
export function pipelineChecks(run: PipelineRun, r: PipelineResults): { lines: string[]; healthy: boolean } {
  const t = totals(r);
  const v = verdicts(run, r, t);
  const lines = [
    'checks:',
    ...moneyCheckLines(run, r, t, v),
    ...underMinNotes(run, r),
    ...countCheckLines(run, r, t, v),
  ];
  const healthy =
    v.everyPayoutDone &&
    v.usdtOk &&
    v.ethOk &&
    v.instantOk &&
    v.batchesOk &&
    r.ledger.ok &&
    v.exchangesOk &&
    v.transfersOk &&
    v.costCountsOk &&
    r.onChain.directOk &&
    r.onChain.payinOk;
  return { lines, healthy };
}
