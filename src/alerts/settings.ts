/** Alert thresholds and the webhook, from configuration (the only place they come from). */
import { ConfigError, type Config } from '../config.ts';
import { parseUnits } from '../money/index.ts';
import type { WebhookSettings } from './notify.ts';
import { WEBHOOK_TIMEOUT_MS } from './notify.ts';
import type { AlertSettings } from './rule-types.ts';

/** The ledger check reads every entry: once per this, across all workers, is plenty for an invariant. */
const LEDGER_CHECK_EVERY_MS = 10 * 60_000;
/** Hourly: it reads the host wallet's balances and the receipts of transfers mined and not booked yet. */
const LEDGER_CHAIN_CHECK_EVERY_MS = 60 * 60_000;
/**
 * How stale an unchanged open state alert's last_seen_at may get. Open means still firing (a pass that finds it clear
 * resolves it), so the time only tells a reader the evaluator still runs: a quarter of an hour is enough for that,
 * and spares a write per open alert per pass. Passes further apart than this touch every time.
 */
const STATE_TOUCH_EVERY_MS = 15 * 60_000;

/** Floors are parsed here, at start: a floor the asset cannot hold (7 decimals of USDT) stops the start. */
export function alertSettings(config: Config, handledTasks: readonly string[]): AlertSettings {
  const floor = (name: 'ALERT_HOST_ETH_MIN' | 'ALERT_HOST_USDT_MIN', decimals: number): bigint => {
    try {
      return parseUnits(config[name], decimals);
    } catch (error) {
      throw new ConfigError([`${name}: ${(error as Error).message}`]);
    }
  };
  return {
    conversionPendingAfterMs: config.ALERT_CONVERSION_PENDING_AFTER,
    paymentAwaitingConversionAfterMs: config.CONVERSION_MAX_WAIT + config.ALERT_CONVERSION_PENDING_AFTER,
    queueDepth: config.ALERT_QUEUE_DEPTH,
    queueAgeMs: config.ALERT_QUEUE_AGE,
    hostEthMinWei: floor('ALERT_HOST_ETH_MIN', 18),
    hostUsdtMinUnits: floor('ALERT_HOST_USDT_MIN', 6),
    thresholdNoBatchAfterMs: config.ALERT_THRESHOLD_NO_BATCH_AFTER,
    eventResolveAfterMs: config.ALERT_EVENT_RESOLVE_AFTER,
    handledTasks,
    ledgerCheckEveryMs: LEDGER_CHECK_EVERY_MS,
    ledgerChainCheckEveryMs: LEDGER_CHAIN_CHECK_EVERY_MS,
    stateTouchEveryMs: STATE_TOUCH_EVERY_MS,
  };
}

export function alertWebhook(config: Config): WebhookSettings | undefined {
  if (config.ALERT_WEBHOOK_URL === undefined || config.ALERT_WEBHOOK_SECRET === undefined) return undefined;
  return { url: config.ALERT_WEBHOOK_URL, secret: config.ALERT_WEBHOOK_SECRET, timeoutMs: WEBHOOK_TIMEOUT_MS };
}
