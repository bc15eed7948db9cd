/**
 * Exchanges asked for by the set that opens their payouts. An instant payout paid through an exchange used to wait
 * for a payout_run job of its own: a run lock, a read, an estimate and a list at ChangeNow, the intent's commit, the
 * create, and a transaction that records the exchange and its transfer. When the queued instant payments are opened
 * in a set (open-set.ts), the payouts whose run would pass its checks without a call are asked for by the same job
 * after the opening commit, as their runs would ask: the estimates (a refusal holds the payout or sends it to review),
 * the intents of those that passed in one statement, the creates, and one transaction that records the answers with
 * their transfers and removes their runs. No list: a payout opened just now was never asked before (run.ts).
 *
 * Every payout keeps its run as the way out: its payout_run job is queued in the opening commit, due
 * ASK_FALLBACK_MS later, and only the commit that records the payout's exchange removes it. Whatever the set does
 * not finish (a failed call, a failed record, a crash) that run finishes as before: it lists the payout's exchanges
 * when it was asked, adopts the one found, or asks. The set holds the payouts' run locks from before the opening
 * commit until every one of its calls has settled and its record committed, so a run never asks at the same time.
 * The calls go ASKS_AT_ONCE at a time; the first failure that is not a refusal stops the set's later calls, and so
 * does ASK_BUDGET_MS spent: a slow ChangeNow is each run's to wait out, with its own attempts.
 *
 * An answer unlike the request is never funded: the payout goes to review as from its run. A payout whose channel's
 * wallet changed since it was opened is left to its run, which checks the hold first.
 */
import { sql } from 'kysely';
import { removeJobs } from '../../jobs/index.ts';
import { CallGroups } from '../call-groups.ts';
import type { StageDeps } from '../interfaces.ts';
import type { Payin } from '../exchange-answer.ts';
import { createTransfers } from '../transfer/index.ts';
import { createAsked, passesEstimate, payoutRunKey, type AskedPayout } from './run.ts';

/** How long after its opening a payout the set asks for is left to its own run, if the set has not recorded it. */
export const ASK_FALLBACK_MS = 60_000;

/** No group of calls starts once the set has spent this long: well within ASK_FALLBACK_MS with one more group. */
const ASK_BUDGET_MS = 10_000;

/** ChangeNow creates asked for at once by one set. */
const ASKS_AT_ONCE = 4;

/** A payout opened with its intent, for the set to ask its exchange for. */
export interface AskedAtOpening {
  readonly payoutId: string;
  readonly asset: 'eth' | 'usdt';
  readonly amount: bigint;
  readonly payoutCurrency: string;
  readonly payoutNetwork: string;
  readonly walletAddress: string;
}

interface Answered {
  readonly payout: AskedAtOpening;
  readonly payin: Payin;
}

/**
 * Asks ChangeNow for the payouts' exchanges as their runs would, and records those answered as asked. Never fails
 * its caller, and never returns while a call is under way (the caller then releases the run locks): anything left is
 * its payout's run's. Call it holding the payouts' run locks, after the commit that opened them.
 */
export async function askOpened(deps: StageDeps, payouts: readonly AskedAtOpening[]): Promise<void> {
  if (payouts.length === 0) return;
  try {
    const calls = new CallGroups({
      atOnce: ASKS_AT_ONCE,
      budgetMs: ASK_BUDGET_MS,
      logger: deps.logger,
      stopped: {
        event: 'payout_ask_left',
        message:
          'the set stopped asking ChangeNow (a call failed, or its time is spent): its payouts left go to their runs',
      },
      fields: (p: AskedAtOpening) => ({ payoutId: p.payoutId }),
    });
    const passed = await calls.each(payouts, (p) => priced(deps, p));
    const requested = await recordIntents(deps, passed);
    const answered = await calls.each(requested, (p) => create(deps, p));
    const recorded = await record(deps, answered);
    for (const a of recorded)
      deps.logger.info(
        {
          event: 'payout_exchange_created',
          payoutId: a.payout.payoutId,
          exchangeId: a.payin.id,
          payinAddress: a.payin.payinAddress,
        },
        'payout exchange created',
      );
    deps.logger.info(
      { event: 'payout_ask_set', opened: payouts.length, asked: requested.length, recorded: recorded.length },
      'exchanges of payouts opened together asked for',
    );
  } catch (error) {
    deps.logger.warn(
      { event: 'payout_ask_set_failed', err: error },
      'asking for the exchanges of payouts opened together failed: each is finished by its own run',
    );
  }
}

/** The payout as the run's steps read it. */
function asPayout(p: AskedAtOpening): AskedPayout {
  return {
    payout_id: p.payoutId,
    asset: p.asset,
    amount: p.amount.toString(),
    payout_currency: p.payoutCurrency,
    payout_network: p.payoutNetwork,
    wallet_address: p.walletAddress,
  };
}

/** The run's estimate before its intent (run.ts passesEstimate): a refusal holds the payout or sends it to review. */
async function priced(deps: StageDeps, payout: AskedAtOpening): Promise<AskedAtOpening | null> {
  return (await passesEstimate(deps, asPayout(payout))) ? payout : null;
}

/** The intents, recorded together before any create: the payouts still pending move to exchange_requested. */
async function recordIntents(deps: StageDeps, payouts: readonly AskedAtOpening[]): Promise<AskedAtOpening[]> {
  if (payouts.length === 0) return [];
  const { rows } = await sql<{ payout_id: string }>`
    update payouts set status = 'exchange_requested', updated_at = now()
    where payout_id = any(${payouts.map((p) => p.payoutId)}::text[]) and status = 'pending'
    returning payout_id`.execute(deps.db);
  const requested = new Set(rows.map((r) => r.payout_id));
  return payouts.filter((p) => requested.has(p.payoutId));
}

/** The payout's exchange as its run would ask for it (run.ts createAsked); null when there is none to record. */
async function create(deps: StageDeps, payout: AskedAtOpening): Promise<Answered | null> {
  const payin = await createAsked(deps, asPayout(payout));
  return payin === null ? null : { payout, payin };
}

/**
 * The answers recorded as the run's recordExchange records one: each payout still `exchange_requested` (a person may
 * have cancelled it meanwhile) moves to `exchange_created` with its exchange and the intent of the transfer that pays
 * it, and its run is removed. One transaction; when it fails, every payout is its run's.
 */
async function record(deps: StageDeps, answered: readonly Answered[]): Promise<Answered[]> {
  if (answered.length === 0) return [];
  return deps.db.transaction().execute(async (trx) => {
    // A channel whose wallet changed since the payout was opened: its run checks the hold first.
    const { rows } = await sql<{ payout_id: string }>`
      select p.payout_id from payouts p join channels c on c.channel_id = p.channel_id
      where p.payout_id = any(${answered.map((a) => a.payout.payoutId)}::text[]) and p.status = 'exchange_requested'
        and (c.wallet_changed_at is null or c.wallet_changed_at <= p.created_at)
      order by p.payout_id
      for update of p`.execute(trx);
    const still = new Set(rows.map((r) => r.payout_id));
    const kept = answered.filter((a) => still.has(a.payout.payoutId));
    if (kept.length === 0) return [];
    const transferIds = await createTransfers(
      trx,
      deps.hostAddress,
      kept.map((a) => ({
        purpose: 'payout',
        ref: a.payout.payoutId,
        asset: a.payout.asset,
        to: a.payin.payinAddress,
        amount: a.payout.amount,
      })),
    );
    const { rows: moved } = await sql`
      update payouts p set status = 'exchange_created', exchange_id = s.exchange_id, payin_address = s.payin_address,
        expected_amount_out = s.expected, transfer_id = s.transfer_id, last_error = null, updated_at = now()
      from unnest(${kept.map((a) => a.payout.payoutId)}::text[], ${kept.map((a) => a.payin.id)}::text[],
        ${kept.map((a) => a.payin.payinAddress)}::text[], ${kept.map((a) => a.payin.toAmount)}::text[],
        ${transferIds}::text[]) as s(payout_id, exchange_id, payin_address, expected, transfer_id)
      where p.payout_id = s.payout_id and p.status = 'exchange_requested'
      returning p.payout_id`.execute(trx);
    if (moved.length !== kept.length)
      throw new Error(`recorded ${moved.length} of ${kept.length} exchanges asked for by the set`);
    await removeJobs(
      trx,
      kept.map((a) => payoutRunKey(a.payout.payoutId)),
    );
    return kept;
  });
}
