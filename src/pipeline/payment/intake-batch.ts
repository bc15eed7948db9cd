/**
 * Group commit for intake's one call. The web process has at most INTAKE_GROUPS_IN_FLIGHT calls in the database at
 * once; the IPNs that arrive meanwhile wait and go together in the next call, payrail_intake_ipns (migrations 028 and
 * 036), which writes each run of payments' first IPNs together and applies every other IPN with payrail_intake_ipn,
 * each exactly as a call of its own would, and commits them together. Nothing
 * waits for a timer: an IPN arriving to an idle process goes at once, alone, through payrail_intake_ipn; under load
 * a group forms by itself, as large as what arrived meanwhile (at most INTAKE_GROUP_MAX).
 *
 * Every IPN's answer is given after its group committed, so an acknowledged IPN is as durable as before. A group
 * that fails (a deadlock PostgreSQL broke, a refused item, a lost connection: its commit's fate unknown) is applied
 * again one IPN at a time in the order received, each with its own call (made again if a deadlock breaks it), which
 * is safe because the call is idempotent: an IPN already applied is a repeat. An IPN the call declines comes back null, as from
 * intakeInOneCall, and intake applies it statement by statement after its group.
 *
 * A group locks its balance rows only at its end (migration 028), so one group runs its IPNs while another commits.
 */
import { sql } from 'kysely';
import type { Db } from '../../db/index.ts';
import type { Ipn } from '../../integrations/nowpayments/index.ts';
import type { Logger } from '../../log.ts';
import {
  intakeInOneCall,
  mayTakeOneCall,
  oneCallAccounts,
  oneCallResult,
  settingsArguments,
  type OneCallResult,
  type OneCallRow,
  type OneCallSettings,
} from './intake-one-call.ts';

/**
 * The largest group. Past a few dozen IPNs a group saves little more per IPN, and every IPN of it waits for the
 * whole group's commit.
 */
export const INTAKE_GROUP_MAX = 64;

/**
 * Groups in the database at once, per process. Two keep the database busy while a group waits for its commit's WAL
 * flush; more make smaller groups out of the same arrivals (bench/README.md, intake).
 */
export const INTAKE_GROUPS_IN_FLIGHT = 2;

export interface IntakeBatcher {
  /** intakeInOneCall, grouped with the IPNs that arrive while the previous group is in the database. */
  take(ipn: Ipn, settings: OneCallSettings): Promise<OneCallResult | null>;
  /** Resolves once no IPN is waiting or in the database. */
  idle(): Promise<void>;
}

interface Waiting {
  ipn: Ipn;
  settings: OneCallSettings;
  resolve: (result: OneCallResult | null) => void;
  reject: (error: unknown) => void;
}

export interface BatcherOptions {
  logger: Logger;
  /** Told the size of every group sent (metrics). */
  onGroup?: (size: number) => void;
  maxGroup?: number;
  /** 1: the groups are applied one after the other, in the order their IPNs arrived (the differential tests). */
  maxInFlight?: number;
}

export function createIntakeBatcher(db: Db, options: BatcherOptions): IntakeBatcher {
  const maxGroup = options.maxGroup ?? INTAKE_GROUP_MAX;
  const maxInFlight = options.maxInFlight ?? INTAKE_GROUPS_IN_FLIGHT;
  const queue: Waiting[] = [];
  let inFlight = 0;
  let idleWaiters: Array<() => void> = [];

  const pump = (): void => {
    while (inFlight < maxInFlight && queue.length > 0) {
      inFlight++;
      const group = takeGroup(queue, maxGroup);
      void applyGroup(db, group, options).finally(() => {
        inFlight--;
        pump();
      });
    }
    if (inFlight === 0 && queue.length === 0) {
      for (const wake of idleWaiters) wake();
      idleWaiters = [];
    }
  };

  return {
    take(ipn, settings) {
      // Counted and refused as intakeInOneCall does, without waiting for a group.
      if (!mayTakeOneCall(ipn)) return intakeInOneCall(db, ipn, settings);
      const answer = new Promise<OneCallResult | null>((resolve, reject) => {
        queue.push({ ipn, settings, resolve, reject });
      });
      pump();
      return answer;
    },
    idle() {
      if (inFlight === 0 && queue.length === 0) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
  };
}

/**
 * The next group: the first IPN waiting and those after it with the same settings (one process has one
 * configuration; a second one in the queue, as in tests, waits for a group of its own), in the order received.
 */
function takeGroup(queue: Waiting[], maxGroup: number): Waiting[] {
  const key = groupKey((queue[0] as Waiting).settings);
  const group: Waiting[] = [];
  for (let i = 0; i < queue.length && group.length < maxGroup;) {
    if (groupKey((queue[i] as Waiting).settings) === key) group.push(...queue.splice(i, 1));
    else i++;
  }
  return group;
}

/** The settings a group shares: all of OneCallSettings but each IPN's own statuses it advances from. */
function groupKey(settings: OneCallSettings): string {
  const { feePercent, confirmDeadlineSeconds, payoutJob, confirmJob } = settings;
  return JSON.stringify([feePercent.text, confirmDeadlineSeconds, payoutJob, confirmJob]);
}

/**
 * A call PostgreSQL chose as a deadlock's victim was rolled back whole, so it is made again, a few times. Groups and
 * single calls lock balance rows and per-day sums in one order, but the rows a transaction creates (a channel's first
 * accounts, a task's first job) can still meet another's in a cycle, once.
 */
const DEADLOCK_RETRIES = 3;

async function alone(db: Db, waiting: Waiting): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      waiting.resolve(await intakeInOneCall(db, waiting.ipn, waiting.settings));
      return;
    } catch (error) {
      if (attempt < DEADLOCK_RETRIES && (error as { code?: unknown } | null)?.code === '40P01') continue;
      waiting.reject(error);
      return;
    }
  }
}

/** Settles every IPN of the group; never rejects. */
async function applyGroup(db: Db, group: Waiting[], options: BatcherOptions): Promise<void> {
  const { logger } = options;
  try {
    options.onGroup?.(group.length);
  } catch (error) {
    logger.warn({ event: 'intake_group_observer_failed', err: error }, 'the intake group observer failed');
  }
  if (group.length === 1) {
    await alone(db, group[0] as Waiting);
    return;
  }
  let rows: OneCallRow[];
  try {
    rows = await callGroup(db, group);
  } catch (error) {
    logger.warn(
      { event: 'intake_group_split', size: group.length, err: error },
      'an intake group failed as a whole: its IPNs are applied one by one',
    );
    for (const waiting of group) await alone(db, waiting);
    return;
  }
  group.forEach((waiting, index) => waiting.resolve(oneCallResult(rows[index])));
}

async function callGroup(db: Db, group: readonly Waiting[]): Promise<OneCallRow[]> {
  const column = <T>(pick: (ipn: Ipn) => T): T[] => group.map((waiting) => pick(waiting.ipn));
  const journals = group.map(({ ipn }) => {
    if (ipn.outcomeAsset === null) throw new Error(`payment ${ipn.paymentId}: no outcome asset in a group`);
    return oneCallAccounts(ipn, ipn.outcomeAsset);
  });
  const settings = (group[0] as Waiting).settings;
  const { rows } = await sql<OneCallRow & { o_index: number }>`select o_index, o_outcome, o_status, o_credited,
      o_confirming, o_declined from payrail_intake_ipns(
      p_payment_ids => ${column((ipn) => ipn.paymentId)}::text[],
      p_invoice_ids => ${column((ipn) => ipn.invoiceId)}::numeric[],
      p_parent_payment_ids => ${column((ipn) => ipn.parentPaymentId)}::numeric[],
      p_order_ids => ${column((ipn) => ipn.orderId)}::text[],
      p_user_ids => ${column((ipn) => ipn.userId)}::text[],
      p_channel_ids => ${column((ipn) => ipn.channelId)}::text[],
      p_statuses => ${column((ipn) => ipn.status)}::text[],
      p_pay_currencies => ${column((ipn) => ipn.payCurrency)}::text[],
      p_pay_amounts => ${column((ipn) => ipn.payAmount)}::numeric[],
      p_actually_paid => ${column((ipn) => ipn.actuallyPaid)}::numeric[],
      p_price_amounts => ${column((ipn) => ipn.priceAmount)}::numeric[],
      p_price_currencies => ${column((ipn) => ipn.priceCurrency)}::text[],
      p_outcome_amounts => ${column((ipn) => ipn.outcomeAmount)}::numeric[],
      p_outcome_currencies => ${column((ipn) => ipn.outcomeCurrency)}::text[],
      p_assets => ${column((ipn) => ipn.outcomeAsset)}::text[],
      p_grosses => ${column((ipn) => ipn.outcomeUnits?.toString() ?? null)}::numeric[],
      p_last_ipns => ${column((ipn) => ipn.json)}::text[],
      p_advances_from => ${group.map((waiting) => waiting.settings.advancesFrom.join(','))}::text[],
      p_accounts => ${journals.map((journal) => journal.map((a) => a.code))}::text[],
      p_allow_negative => ${journals.map((journal) => journal.map((a) => a.allowNegative))}::boolean[],
      ${settingsArguments(settings)})`.execute(db);
  // In the order sent, by position: a row missing or out of place is the function's fault, not a decline.
  if (rows.length !== group.length || rows.some((row, index) => row.o_index !== index + 1))
    throw new Error(`payrail_intake_ipns answered ${rows.length} rows for a group of ${group.length}`);
  return rows;
}
