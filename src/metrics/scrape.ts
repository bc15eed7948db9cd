/**
 * Turns the database's figures into exposition text. Counts go through a prom-client Registry made for this one scrape
 * (nothing shared between concurrent scrapes); amounts and balances through the exact writer. Every known status is
 * written, zero included, so a series does not vanish when its last row moves on.
 */
import { Gauge, Registry } from 'prom-client';
import type { ConversionState, PayoutStatus } from '../db/index.ts';
import { OBSERVATION } from '../alerts/index.ts';
import { PAYMENT_STATUSES } from '../integrations/nowpayments/index.ts';
import { decimalsOf, isAssetCode } from '../money/index.ts';
import { TASK_NAMES } from '../jobs/index.ts';
import type { HistoryFigures, LiveFigures } from './database.ts';
import { exactAmount, gaugeFamily, type ExactSample } from './exposition.ts';

const CONVERSION_STATES: readonly ConversionState[] = ['pending', 'exchange_requested', 'exchange_created', 'sent', 'completed', 'failed', 'needs_review'];
const PAYOUT_STATES: readonly PayoutStatus[] = ['pending', 'held', 'awaiting_approval', 'exchange_requested', 'exchange_created', 'sent', 'completed', 'failed', 'needs_review', 'cancelled'];
const PAYOUT_KINDS = ['threshold', 'instant'] as const;
const PAYOUT_ASSETS = ['usdt', 'eth'] as const;


export async function databaseMetricsText(live: LiveFigures, history: HistoryFigures): Promise<string> {
  const registry = new Registry();
  const registers = [registry];
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) => new Gauge<L>({ name, help, labelNames, registers });

  gauge('payrail_history_figures_age_seconds', 'Age of the figures that count the whole history (payrail_payments, ended payrail_payouts, payrail_paid_out_amount): read at most once a minute.').set(
    Math.max(0, (Date.now() - history.readAt) / 1_000),
  );
  const payments = gauge('payrail_payments', 'Payments stored, by NOWPayments status.', ['status']);
  for (const status of PAYMENT_STATUSES) payments.set({ status }, 0);
  for (const row of history.paymentsByStatus) payments.set({ status: row.status }, row.count);

  const conversions = gauge('payrail_conversions', 'ETH to USDT conversions, by state.', ['state']);
  for (const state of CONVERSION_STATES) conversions.set({ state }, 0);
  for (const row of live.conversionsByState) conversions.set({ state: row.state }, row.count);

  const payouts = gauge('payrail_payouts', 'Payouts, by state and kind (threshold batch or instant).', ['state', 'kind']);
  for (const state of PAYOUT_STATES) for (const kind of PAYOUT_KINDS) payouts.set({ state, kind }, 0);
  for (const row of [...live.openPayouts, ...history.endedPayouts]) payouts.set({ state: row.state, kind: row.kind }, row.count);

  const runnable = gauge('payrail_queue_runnable_jobs', 'Jobs due and waiting for a worker, by task.', ['task']);
  const running = gauge('payrail_queue_running_jobs', 'Jobs locked by a worker, by task.', ['task']);
  const failed = gauge('payrail_queue_failed_jobs', 'Jobs out of attempts, kept in the queue for a person, by task.', ['task']);
  const oldest = gauge('payrail_queue_oldest_runnable_age_seconds', 'Age of the oldest runnable job since it was due, by task (0: none waiting).', ['task']);
  for (const task of TASK_NAMES) for (const g of [runnable, running, failed, oldest]) g.set({ task }, 0);
  for (const task of live.queue) {
    runnable.set({ task: task.task }, task.runnable);
    running.set({ task: task.task }, task.running);
    failed.set({ task: task.task }, task.failed);
    oldest.set({ task: task.task }, task.oldestRunnableAgeSeconds ?? 0);
  }

  const alerts = gauge('payrail_alerts_firing', 'Open alerts, by rule and severity.', ['rule', 'severity']);
  for (const row of live.alertsFiring) alerts.set({ rule: row.rule, severity: row.severity }, row.count);

  const observed = live.observations;
  const chain = observed.get(OBSERVATION.chainRpc);
  if (chain) {
    gauge('payrail_chain_rpc_up', 'Whether the chain RPC answered at its last observation (1) or not (0).').set(chain.ok ? 1 : 0);
    // A block number is a count, not money, and stays far below 2^53.
    const block = chain.ok && chain.value !== null && /^[0-9]{1,15}$/.test(chain.value) ? Number(chain.value) : null;
    if (block !== null) gauge('payrail_chain_block_number', 'Latest block number the chain RPC reported at its last observation.').set(block);
  }
  const changenow = observed.get(OBSERVATION.changenow);
  if (changenow) gauge('payrail_changenow_up', 'Whether ChangeNow answered at its last observation (1) or not (0).').set(changenow.ok ? 1 : 0);
  const ages = gauge('payrail_observation_age_seconds', 'Seconds since a worker last observed the outside world, by observation.', ['name']);
  for (const [name, observation] of observed) ages.set({ name }, observation.ageSeconds);

  return (await registry.metrics()) + amountFamilies(live, history);
}

function amountFamilies(live: LiveFigures, history: HistoryFigures): string {
  const paidOut = new Map<string, bigint>(PAYOUT_ASSETS.map((asset) => [asset, 0n]));
  for (const row of history.paidOut) paidOut.set(row.asset, row.units);
  return [
    gaugeFamily('payrail_conversion_input_amount', 'ETH sent to ChangeNow by completed conversions, in ETH (exact).', [
      { labels: { asset: 'eth' }, value: exactAmount(live.converted.eth, decimalsOf('eth')) },
    ]),
    gaugeFamily('payrail_converted_amount', 'USDT received from completed conversions, in USDT (exact).', [
      { labels: { asset: 'usdt' }, value: exactAmount(live.converted.usdt, decimalsOf('usdt')) },
    ]),
    gaugeFamily('payrail_paid_out_amount', 'Amount of completed payouts by the asset payrail paid them from, in that asset (exact).', amountSamples(paidOut)),
    gaugeFamily('payrail_host_wallet_balance', 'Host wallet balance at its last observation, by asset, in that asset (exact).', hostBalances(live)),
  ].join('');
}

function amountSamples(units: ReadonlyMap<string, bigint>): ExactSample[] {
  const samples: ExactSample[] = [];
  // An asset without a known number of decimals cannot be written exactly; its rows stay in the database for the API.
  for (const [asset, value] of units) if (isAssetCode(asset)) samples.push({ labels: { asset }, value: exactAmount(value, decimalsOf(asset)) });
  return samples;
}

function hostBalances(live: LiveFigures): ExactSample[] {
  const units = new Map<string, bigint>();
  for (const [asset, name] of [['eth', OBSERVATION.hostEth], ['usdt', OBSERVATION.hostUsdt]] as const) {
    const observation = live.observations.get(name);
    if (observation?.ok && observation.value !== null && /^[0-9]{1,40}$/.test(observation.value)) units.set(asset, BigInt(observation.value));
  }
  return amountSamples(units);
}
