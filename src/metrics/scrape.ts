/**
 * Turns the database's figures into exposition text. Counts go through a prom-client Registry made for this one scrape
 * (nothing shared between concurrent scrapes); amounts and balances through the exact writer. Every known status is
 * written, zero included, so a series does not vanish when its last row moves on.
 *
 * Without history figures (no read has succeeded yet in this process) their families are left out rather than
 * written as zeros: a zero would claim there are no payments, where the truth is "not known".
 */
import { Gauge, Registry } from 'prom-client';
import { CONVERSION_STATES, OPEN_PAYOUT_STATES, PAYOUT_STATES } from '../db/index.ts';
import { OBSERVATION } from '../alerts/index.ts';
import { PAYMENT_STATUSES } from '../integrations/nowpayments/index.ts';
import { decimalsOf, isAssetCode } from '../money/index.ts';
import { TASK_NAMES } from '../jobs/index.ts';
import type { HistoryFigures, LiveFigures, Observation } from './database.ts';
import { exactAmount, gaugeFamily, type ExactSample } from './exposition.ts';

const PAYOUT_KINDS = ['threshold', 'instant'] as const;
const PAYOUT_ASSETS = ['usdt', 'eth'] as const;

export interface ScrapeOptions {
  /** The metrics' clock, in milliseconds: the history figures' age is measured against it. */
  readonly now: number;
  /** An observation older than this is unknown (see observationStaleAfterSeconds). */
  readonly observationStaleAfterSeconds: number;
}

export async function databaseMetricsText(
  live: LiveFigures,
  history: HistoryFigures | undefined,
  options: ScrapeOptions,
): Promise<string> {
  const registry = new Registry();
  const registers = [registry];
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Gauge<L>({ name, help, labelNames, registers });

  if (history) historyGauges(gauge, history, options.now);
  pipelineGauges(gauge, live, history);
  queueGauges(gauge, live);
  alertGauges(gauge, live);
  const current = observationGauges(gauge, live, options.observationStaleAfterSeconds);

  return (await registry.metrics()) + amountFamilies(live, history, current);
}

type GaugeOf = <L extends string>(name: string, help: string, labelNames?: readonly L[]) => Gauge<L>;

/** The families that count the whole history: how old the figures are, and payments by status. */
function historyGauges(gauge: GaugeOf, history: HistoryFigures, now: number): void {
  gauge(
    'payrail_history_figures_age_seconds',
    'Age of the figures that count the whole history (payrail_payments, ended payrail_payouts, payrail_paid_out_amount): read at most once a minute; it keeps growing while the read fails.',
  ).set(Math.max(0, (now - history.readAt) / 1_000));
  const payments = gauge('payrail_payments', 'Payments stored, by NOWPayments status.', ['status']);
  for (const status of PAYMENT_STATUSES) payments.set({ status }, 0);
  for (const row of history.paymentsByStatus) payments.set({ status: row.status }, row.count);
}

/** Conversions by state and payouts by state and kind. */
function pipelineGauges(gauge: GaugeOf, live: LiveFigures, history: HistoryFigures | undefined): void {
  const conversions = gauge('payrail_conversions', 'ETH to USDT conversions, by state.', ['state']);
  for (const state of CONVERSION_STATES) conversions.set({ state }, 0);
  for (const row of live.conversionsByState) conversions.set({ state: row.state }, row.count);

  const payouts = gauge('payrail_payouts', 'Payouts, by state and kind (threshold batch or instant).', [
    'state',
    'kind',
  ]);
  // The history read counts the ended states; the live read counts the others (the same split as its SQL).
  const known = history ? PAYOUT_STATES : OPEN_PAYOUT_STATES;
  for (const state of known) for (const kind of PAYOUT_KINDS) payouts.set({ state, kind }, 0);
  for (const row of [...live.openPayouts, ...(history?.endedPayouts ?? [])])
    payouts.set({ state: row.state, kind: row.kind }, row.count);
}

/** The job queue per task: runnable, running, failed, and the oldest runnable's wait. */
function queueGauges(gauge: GaugeOf, live: LiveFigures): void {
  const runnable = gauge('payrail_queue_runnable_jobs', 'Jobs due and waiting for a worker, by task.', ['task']);
  const running = gauge('payrail_queue_running_jobs', 'Jobs locked by a worker, by task.', ['task']);
  const failed = gauge('payrail_queue_failed_jobs', 'Jobs out of attempts, kept in the queue for a person, by task.', [
    'task',
  ]);
  const oldest = gauge(
    'payrail_queue_oldest_runnable_age_seconds',
    'Age of the oldest runnable job since it was due, by task (0: none waiting).',
    ['task'],
  );
  for (const task of TASK_NAMES) for (const g of [runnable, running, failed, oldest]) g.set({ task }, 0);
  for (const task of live.queue) {
    runnable.set({ task: task.task }, task.runnable);
    running.set({ task: task.task }, task.running);
    failed.set({ task: task.task }, task.failed);
    oldest.set({ task: task.task }, task.oldestRunnableAgeSeconds ?? 0);
  }
}

function alertGauges(gauge: GaugeOf, live: LiveFigures): void {
  const alerts = gauge('payrail_alerts_firing', 'Open alerts, by rule and severity.', ['rule', 'severity']);
  for (const row of live.alertsFiring) alerts.set({ rule: row.rule, severity: row.severity }, row.count);
}

/** The outside world as last observed (chain RPC, ChangeNow, the ledger check); returns the observations still current. */
function observationGauges(
  gauge: GaugeOf,
  live: LiveFigures,
  staleAfterSeconds: number,
): ReadonlyMap<string, Observation> {
  // A stale observation's up gauge is left out, not kept at its last value: an alert on "up == 0" must not stay quiet
  // because the last look, an hour ago, went well. payrail_observation_stale says why the series is gone.
  const current = new Map(
    [...live.observations].filter(([, observation]) => observation.ageSeconds <= staleAfterSeconds),
  );
  const chain = current.get(OBSERVATION.chainRpc);
  if (chain) {
    gauge(
      'payrail_chain_rpc_up',
      'Whether the chain RPC answered at its last observation (1) or not (0); absent when that observation is stale.',
    ).set(chain.ok ? 1 : 0);
    // A block number is a count, not money, and stays far below 2^53.
    const block = chain.ok && chain.value !== null && /^[0-9]{1,15}$/.test(chain.value) ? Number(chain.value) : null;
    if (block !== null)
      gauge('payrail_chain_block_number', 'Latest block number the chain RPC reported at its last observation.').set(
        block,
      );
  }
  const changenow = current.get(OBSERVATION.changenow);
  if (changenow)
    gauge(
      'payrail_changenow_up',
      'Whether ChangeNow answered at its last observation (1) or not (0); absent when that observation is stale.',
    ).set(changenow.ok ? 1 : 0);
  const ages = gauge(
    'payrail_observation_age_seconds',
    'Seconds since a worker last observed the outside world, by observation.',
    ['name'],
  );
  const stale = gauge(
    'payrail_observation_stale',
    'Whether an observation is older than three alert intervals (1), so its figures are left out as unknown, or current (0).',
    ['name'],
  );
  for (const [name, observation] of live.observations) {
    ages.set({ name }, observation.ageSeconds);
    // The ledger check runs on its own, slower period (its age says when); staleness is about the outside world.
    if (name !== OBSERVATION.ledgerCheck) stale.set({ name }, current.has(name) ? 0 : 1);
  }
  const ledger = live.observations.get(OBSERVATION.ledgerCheck);
  if (ledger && ledger.value !== null && /^[0-9]{1,15}$/.test(ledger.value)) {
    gauge(
      'payrail_ledger_check_problems',
      'Violations the last ledger invariant check found (0: balanced); its age is payrail_observation_age_seconds{name="ledger_check"}.',
    ).set(Number(ledger.value));
  }
  return current;
}

function amountFamilies(
  live: LiveFigures,
  history: HistoryFigures | undefined,
  current: ReadonlyMap<string, Observation>,
): string {
  const families = [
    gaugeFamily('payrail_conversion_input_amount', 'ETH sent to ChangeNow by completed conversions, in ETH (exact).', [
      { labels: { asset: 'eth' }, value: exactAmount(live.converted.eth, decimalsOf('eth')) },
    ]),
    gaugeFamily('payrail_converted_amount', 'USDT received from completed conversions, in USDT (exact).', [
      { labels: { asset: 'usdt' }, value: exactAmount(live.converted.usdt, decimalsOf('usdt')) },
    ]),
  ];
  if (history) {
    const paidOut = new Map<string, bigint>(PAYOUT_ASSETS.map((asset) => [asset, 0n]));
    for (const row of history.paidOut) paidOut.set(row.asset, row.units);
    families.push(
      gaugeFamily(
        'payrail_paid_out_amount',
        'Amount of completed payouts by the asset payrail paid them from, in that asset (exact).',
        amountSamples(paidOut),
      ),
    );
  }
  families.push(
    gaugeFamily(
      'payrail_host_wallet_balance',
      'Host wallet balance at its last observation, by asset, in that asset (exact); absent while that observation is stale.',
      hostBalances(current),
    ),
  );
  return families.join('');
}

function amountSamples(units: ReadonlyMap<string, bigint>): ExactSample[] {
  const samples: ExactSample[] = [];
  // An asset without a known number of decimals cannot be written exactly; its rows stay in the database for the API.
  for (const [asset, value] of units)
    if (isAssetCode(asset)) samples.push({ labels: { asset }, value: exactAmount(value, decimalsOf(asset)) });
  return samples;
}

function hostBalances(current: ReadonlyMap<string, Observation>): ExactSample[] {
  const units = new Map<string, bigint>();
  for (const [asset, name] of [
    ['eth', OBSERVATION.hostEth],
    ['usdt', OBSERVATION.hostUsdt],
  ] as const) {
    const observation = current.get(name);
    if (observation?.ok && observation.value !== null && /^[0-9]{1,40}$/.test(observation.value))
      units.set(asset, BigInt(observation.value));
  }
  return amountSamples(units);
}
