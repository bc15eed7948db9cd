/**
 * Intake's common case in one database call: payrail_intake_ipn (migration 026) records a first IPN for a known
 * channel that needs no person (crediting a `finished` one, or queueing its payment_confirm with
 * NOWPAYMENTS_API_KEY set), or applies a later IPN that only advances or repeats its payment, in a single statement
 * that is its own transaction. It writes what the statement-by-statement path (intake.ts) writes for the same IPN,
 * and answers null, having written nothing, for every other IPN: intake.ts then takes that path, which alone knows
 * the review rules.
 *
 * One call instead of 5–8 round trips: no transaction sits idle waiting for Node between its statements, and the
 * balance rows the journal locks are held only until the end of the call and its commit.
 */
import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../../db/index.ts';
import type { Ipn, IpnStatus } from '../../integrations/nowpayments/index.ts';
import { accounts } from '../../ledger/index.ts';
import { countOneCall, type OneCallDecline } from '../../metrics/intake.ts';
import type { AssetCode, Percent } from '../../money/index.ts';

/** A job the call queues: intake.ts PAYOUT_JOB and CONFIRM_JOB with their attempts, the options creditEffects and
 * enqueueConfirm use, so the two paths cannot queue a job two ways. */
export interface OneCallJob {
  readonly task: string;
  readonly keyMode: 'replace' | 'preserve_run_at' | 'unsafe_dedupe';
  readonly maxAttempts: number;
}

/** What the call needs from intake: its settings and its order of statuses, passed in, never written in the SQL. */
export interface OneCallSettings {
  /** PLATFORM_FEE_PERCENT, for a channel without its own fee. */
  readonly feePercent: Percent;
  /** NOWPAYMENTS_CONFIRM_DEADLINE in seconds when NOWPAYMENTS_API_KEY is set (a credit waits for the check), else null. */
  readonly confirmDeadlineSeconds: number | null;
  readonly payoutJob: OneCallJob;
  readonly confirmJob: OneCallJob;
  /** The statuses this IPN's status moves a payment forward from. */
  readonly advancesFrom: readonly IpnStatus[];
}

export interface OneCallResult {
  readonly outcome: 'recorded' | 'advanced' | 'unchanged';
  readonly status: IpnStatus;
  /** The strategy of the channel this call credited, or null when it credited nothing. */
  readonly credited: 'instant' | 'threshold' | null;
  /** The credit waits for NOWPayments' API (payment_confirm queued by this call). */
  readonly confirming: boolean;
}

export interface OneCallRow {
  o_outcome: OneCallResult['outcome'] | null;
  o_status: IpnStatus | null;
  o_credited: 'instant' | 'threshold' | null;
  o_confirming: boolean | null;
  o_declined: OneCallDecline | null;
}

/**
 * The IPNs worth the call: a partial payment, a refund or an outcome payrail does not credit always has review rules
 * to apply, so they go to intake.ts directly (the function refuses them too).
 */
export function mayTakeOneCall(ipn: Ipn): boolean {
  return (
    ipn.outcomeAsset !== null &&
    ipn.outcomeUnits !== null &&
    ipn.status !== 'partially_paid' &&
    ipn.status !== 'refunded'
  );
}

/** The credit's journal accounts, named (and sharded) by the ledger: NOWPayments, platform fees, channel. */
export function oneCallAccounts(ipn: Ipn, asset: AssetCode) {
  return [
    accounts.nowpayments(asset, ipn.paymentId),
    accounts.platformFees(asset, ipn.paymentId),
    accounts.channel(ipn.channelId, asset),
  ] as const;
}

/**
 * The IPN applied in one call, or null when it is not a common case (nothing written then). Every IPN offered is
 * counted, taken or by the code of its decline (payrail_intake_one_call_total).
 */
export async function intakeInOneCall(db: Db, ipn: Ipn, settings: OneCallSettings): Promise<OneCallResult | null> {
  if (!mayTakeOneCall(ipn) || ipn.outcomeAsset === null || ipn.outcomeUnits === null) {
    countOneCall('not_common');
    return null;
  }
  const asset = ipn.outcomeAsset;
  const journal = oneCallAccounts(ipn, asset);
  const { rows } =
    await sql<OneCallRow>`select o_outcome, o_status, o_credited, o_confirming, o_declined from payrail_intake_ipn(
      p_payment_id => ${ipn.paymentId}::text,
      p_invoice_id => ${ipn.invoiceId}::numeric,
      p_parent_payment_id => ${ipn.parentPaymentId}::numeric,
      p_order_id => ${ipn.orderId}::text,
      p_user_id => ${ipn.userId}::text,
      p_channel_id => ${ipn.channelId}::text,
      p_status => ${ipn.status}::text,
      p_pay_currency => ${ipn.payCurrency}::text,
      p_pay_amount => ${ipn.payAmount}::numeric,
      p_actually_paid => ${ipn.actuallyPaid}::numeric,
      p_price_amount => ${ipn.priceAmount}::numeric,
      p_price_currency => ${ipn.priceCurrency}::text,
      p_outcome_amount => ${ipn.outcomeAmount}::numeric,
      p_outcome_currency => ${ipn.outcomeCurrency}::text,
      p_asset => ${asset}::text,
      p_gross => ${ipn.outcomeUnits.toString()}::numeric,
      p_last_ipn => ${ipn.json}::text,
      p_advances_from => ${settings.advancesFrom}::text[],
      p_accounts => ${journal.map((a) => a.code)}::text[],
      p_allow_negative => ${journal.map((a) => a.allowNegative)}::boolean[],
      ${settingsArguments(settings)})`.execute(db);
  return oneCallResult(rows[0]);
}

/** The named arguments both intake calls (026's and 028's) take from intake's settings, written once. */
export function settingsArguments(settings: OneCallSettings): RawBuilder<unknown> {
  return sql`p_default_fee_percent => ${settings.feePercent.text}::numeric,
      p_confirm_deadline_secs => ${settings.confirmDeadlineSeconds}::double precision,
      p_payout_task => ${settings.payoutJob.task}::text,
      p_payout_key_mode => ${settings.payoutJob.keyMode}::text,
      p_payout_max_attempts => ${settings.payoutJob.maxAttempts}::integer,
      p_confirm_task => ${settings.confirmJob.task}::text,
      p_confirm_key_mode => ${settings.confirmJob.keyMode}::text,
      p_confirm_max_attempts => ${settings.confirmJob.maxAttempts}::integer`;
}

/** The call's answer for one IPN, counted: taken, or declined (null) by its code. */
export function oneCallResult(row: OneCallRow | undefined): OneCallResult | null {
  if (!row || row.o_outcome === null || row.o_status === null) {
    countOneCall(row?.o_declined ?? 'other');
    return null;
  }
  countOneCall('taken');
  return {
    outcome: row.o_outcome,
    status: row.o_status,
    credited: row.o_credited,
    confirming: row.o_confirming === true,
  };
}
