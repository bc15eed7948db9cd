/**
 * What a state rule is, and what it is given and gives back: the shapes shared by the rule lists (rules-*.ts), the list
 * of them all (rules.ts) and the evaluator.
 */
import type { AlertSeverity, Db } from '../db/index.ts';
import type { ChainSide } from '../treasury/index.ts';

export interface AlertSettings {
  conversionPendingAfterMs: number;
  /**
   * A credited payment still waiting for a conversion this long is an alert: CONVERSION_MAX_WAIT (the longest a
   * payment waits by design) plus ALERT_CONVERSION_PENDING_AFTER.
   */
  paymentAwaitingConversionAfterMs: number;
  queueDepth: number;
  queueAgeMs: number;
  hostEthMinWei: bigint;
  hostUsdtMinUnits: bigint;
  thresholdNoBatchAfterMs: number;
  /** An event alert not raised again for this long resolves on its own. */
  eventResolveAfterMs: number;
  /** Tasks this version runs: only their queues can alert (others wait, visible, for a version that runs them). */
  handledTasks: readonly string[];
  /** The ledger check reads every entry: it runs at most this often across all workers (0: every pass). */
  ledgerCheckEveryMs: number;
  /** The ledger against the chain (host wallet balances): at most this often across all workers (0: every pass). */
  ledgerChainCheckEveryMs: number;
  /**
   * An open state alert whose message and evidence did not change is rewritten (last_seen_at) only when its last
   * sighting is older than this (0: every pass), so a pass over many long-open alerts writes nothing.
   */
  stateTouchEveryMs: number;
}

export interface Firing {
  subject: string;
  message: string;
  details: Record<string, unknown>;
}

export interface RuleResult {
  firing: Firing[];
  /** Subjects this pass could not judge (their observation failed): their alerts stay as they are. */
  unknown?: string[];
  /** A throttled rule's figure for its observation row (value); the number of subjects firing when unset. */
  observedValue?: string;
}

export interface RuleContext {
  db: Db;
  settings: AlertSettings;
  /** The host wallet on chain, where the worker evaluating has one (rules comparing with the chain need it). */
  chain?: ChainSide | undefined;
}

export interface StateRule {
  readonly name: string;
  readonly severity: AlertSeverity;
  /** False: never sent to the webhook (the rule about the webhook failing). */
  readonly notify?: boolean;
  /**
   * Runs at most once per everyMs across every worker: its last run is the observation row of that name, claimed as
   * the run starts (a run that fails or hangs counts too). Skipped passes leave its alerts as they are.
   */
  readonly throttle?: { readonly observation: string; readonly everyMs: (settings: AlertSettings) => number };
  evaluate(context: RuleContext): Promise<RuleResult>;
}
