/**
 * The reconciler's reads and writes per kind of item: finding the items past a state's deadline with no live job,
 * re-reading one under its row lock, and what it ever does to one: re-queue its stage's own job (under the stage's job
 * key), or give up on it as its rule says (see GiveUp): release a conversion whose ETH never left, send a conversion
 * or payout to review through the stage's review path, or, for a transfer, re-queue its job with an alert. No outside
 * call is made here: the stage jobs it queues ask ChangeNow and the chain.
 */
import { sql, type RawBuilder, type Transaction } from 'kysely';
import type { Database, Db } from '../../db/index.ts';
import { noLiveJobWithKey } from '../../jobs/index.ts';
import { stageAlert } from '../alert.ts';
import {
  enqueueConversionExchange,
  enqueuePoll,
  releaseWithHold,
  toReview as conversionToReview,
} from '../conversion/run.ts';
import type { StageDeps } from '../interfaces.ts';
import { enqueuePayoutPoll, enqueuePayoutRun, toReview as payoutToReview } from '../payout/run.ts';
import {
  jobKeySources,
  jobKeysFor,
  type DeadlineRule,
  type ItemKind,
  type ReconcileSettings,
  type StuckItem,
} from './rules.ts';
import { resumeTransfer } from '../transfer/index.ts';

export interface ItemRow extends StuckItem {
  id: string;
  /** The payment of an instant payout (its payout_instant job moves it on too). */
  paymentId: string | null;
  /** A transfer's owner and sending wallet. */
  purpose: 'conversion' | 'payout' | null;
  ref: string | null;
  fromAddress: string | null;
  /** The database's clock, read with the row: deadlines are compared on one clock. */
  now: Date;
}

interface RawRow {
  id: string;
  state: string;
  payment_id: string | null;
  resumes: number;
  reconciled_at: Date | null;
  final_at: Date | null;
  idle_seconds: string;
  purpose: 'conversion' | 'payout' | null;
  ref: string | null;
  from_address: string | null;
  now: Date;
}

const TABLES: Record<ItemKind, { table: string; id: string }> = {
  conversion: { table: 'conversions', id: 'conversion_id' },
  payout: { table: 'payouts', id: 'payout_id' },
  transfer: { table: 'chain_transfers', id: 'transfer_id' },
};

function sinceOf(rule: DeadlineRule): RawBuilder<Date> {
  return rule.since === 'hold_until' ? sql<Date>`coalesce(i.hold_until, i.updated_at)` : sql<Date>`i.updated_at`;
}

function finalOf(rule: DeadlineRule, settings: ReconcileSettings): RawBuilder<Date | null> {
  if (rule.finalDeadline === 'poll_deadline_at') return sql<Date | null>`i.poll_deadline_at`;
  if (rule.finalDeadline === 'broadcast_at + TRANSFER_CONFIRM_DEADLINE') {
    return sql<Date | null>`coalesce(i.broadcast_at, i.updated_at) + ${settings.transferConfirmDeadlineMs} * interval '1 millisecond'`;
  }
  return sql<Date | null>`null::timestamptz`;
}

/** What else the state requires of the row, beyond its status. */
function extraCondition(rule: DeadlineRule): RawBuilder<unknown> {
  // A direct payout's `sent` waits for its transfer: the transfer is the item.
  if (rule.kind === 'payout' && rule.state === 'sent') return sql`and i.exchange_id is not null`;
  // Only a transfer its owner waits for: one whose owner went to review or ended is a person's (its intent is
  // never sent for an owner a person is deciding about). The reconciler itself never sends an owner to review
  // because of its transfer, so an open transfer's owner stays waiting for it.
  if (rule.kind === 'transfer') {
    return sql`and (c.status = 'exchange_created' or p.status = 'exchange_created' or (p.status = 'sent' and p.exchange_id is null))`;
  }
  return sql``;
}

function selectItems(
  rule: DeadlineRule,
  settings: ReconcileSettings,
  filter: RawBuilder<unknown>,
  tail: RawBuilder<unknown>,
): RawBuilder<RawRow> {
  const { table, id } = TABLES[rule.kind];
  const transfer = rule.kind === 'transfer';
  return sql<RawRow>`
    select i.${sql.ref(id)} as id, i.status as state,
           ${rule.kind === 'payout' ? sql`i.payment_id::text` : sql`null::text`} as payment_id,
           i.reconcile_attempts as resumes, i.reconciled_at, ${finalOf(rule, settings)} as final_at,
           floor(extract(epoch from now() - ${sinceOf(rule)}))::bigint::text as idle_seconds,
           ${transfer ? sql`i.purpose, i.ref, i.from_address` : sql`null::text as purpose, null::text as ref, null::text as from_address`},
           now() as now
      from ${sql.table(table)} i
      ${transfer ? sql`left join conversions c on i.purpose = 'conversion' and c.conversion_id = i.ref left join payouts p on i.purpose = 'payout' and p.payout_id = i.ref` : sql``}
     where i.status = ${rule.state} ${extraCondition(rule)} and ${filter}
     ${tail}`;
}

/** The raw row in the pass's names, field by field as each view's mapper is: the compiler checks every one. */
function toItem(row: RawRow): ItemRow {
  return {
    id: row.id,
    state: row.state,
    paymentId: row.payment_id,
    resumes: row.resumes,
    reconciledAt: row.reconciled_at,
    finalAt: row.final_at,
    idleSeconds: row.idle_seconds,
    purpose: row.purpose,
    ref: row.ref,
    fromAddress: row.from_address,
    now: row.now,
  };
}

/**
 * No queued job with attempts left and no running job under any of the state's keys. In the query, not after it:
 * polls and confirms do not touch updated_at, so healthy items would otherwise fill the oldest-first page at every
 * pass and hide a stuck item behind them for ever. The key column has a unique index: one lookup per key.
 */
function noLiveJob(rule: DeadlineRule): RawBuilder<unknown> {
  const { id } = TABLES[rule.kind];
  const keys = jobKeySources(rule.kind, rule.state).map(
    ({ task, of }) => sql`${`${task}:`}::text || ${of === 'id' ? sql`i.${sql.ref(id)}` : sql`i.payment_id::text`}`,
  );
  return noLiveJobWithKey(keys);
}

/** Items in the rule's state for longer than its deadline with no live job, oldest first, at most the per-state limit. */
export async function findPastDeadline(db: Db, rule: DeadlineRule, settings: ReconcileSettings): Promise<ItemRow[]> {
  const filter = sql`${sinceOf(rule)} < now() - ${rule.stuckAfterMs(settings)} * interval '1 millisecond' and ${noLiveJob(rule)}`;
  const { rows } = await selectItems(
    rule,
    settings,
    filter,
    sql`order by ${sinceOf(rule)} limit ${settings.perStateLimit}`,
  ).execute(db);
  return rows.map(toItem);
}

/**
 * The item again, under its row lock, if still in the rule's state. Null when it moved on, or when a stage holds its
 * row right now (that stage is alive and working on it).
 */
export async function lockItem(
  trx: Transaction<Database>,
  rule: DeadlineRule,
  settings: ReconcileSettings,
  id: string,
): Promise<ItemRow | null> {
  const { id: idColumn } = TABLES[rule.kind];
  const lock = rule.kind === 'transfer' ? sql`for update of i skip locked` : sql`for update skip locked`;
  const { rows } = await selectItems(rule, settings, sql`i.${sql.ref(idColumn)} = ${id}`, lock).execute(trx);
  return rows[0] ? toItem(rows[0]) : null;
}

export function keysOf(rule: DeadlineRule, item: ItemRow): string[] {
  return jobKeysFor(rule.kind, rule.state, item.id, item.paymentId);
}

/** Queues the stage's own job for the item's state, under the stage's key, and counts the resume. */
export async function resume(trx: Transaction<Database>, rule: DeadlineRule, item: ItemRow): Promise<void> {
  if (rule.kind === 'conversion') {
    if (rule.action === 'repoll') await enqueuePoll(trx, item.id, new Date());
    else await enqueueConversionExchange(trx, item.id);
  } else if (rule.kind === 'payout') {
    if (rule.action === 'repoll') await enqueuePayoutPoll(trx, item.id, new Date());
    else await enqueuePayoutRun(trx, item.id);
  } else {
    await resumeTransfer(trx, {
      transfer_id: item.id,
      status: item.state as 'intent' | 'signed' | 'broadcast',
      from_address: item.fromAddress as string,
    });
  }
  const { table, id } = TABLES[rule.kind];
  await sql`update ${sql.table(table)} set reconcile_attempts = reconcile_attempts + 1, reconciled_at = now() where ${sql.ref(id)} = ${item.id}`.execute(
    trx,
  );
}

/**
 * A conversion or payout to review through its stage's review path. A transfer never comes here (its rule keeps
 * resuming it).
 */
export async function review(
  deps: StageDeps,
  trx: Transaction<Database>,
  rule: DeadlineRule,
  item: ItemRow,
  reason: string,
): Promise<void> {
  if (rule.kind === 'conversion') {
    if (await conversionToReview(deps, item.id, reason, null, trx)) {
      deps.logger.error(
        { event: 'alert', alert: 'conversion_stuck', conversionId: item.id, reason },
        'conversion stuck; sent to review by the reconciler',
      );
    }
  } else if (rule.kind === 'payout') {
    await payoutToReview(deps, item.id, reason, 'payout_stuck', trx);
  } else {
    throw new Error(`transfer ${item.id}: a transfer is never sent to review, its job is queued again`);
  }
}

/**
 * A conversion before its transfer, given up on: released (failed, payments back to pending with a hold) when its ETH
 * provably never left, that is with no transfer or only a failed one; otherwise to review. An exchange it may have
 * made at ChangeNow (recorded or not) is never funded, and ChangeNow expires an unfunded exchange on its own.
 */
export async function releaseOrReview(
  deps: StageDeps,
  trx: Transaction<Database>,
  rule: DeadlineRule,
  item: ItemRow,
  reason: string,
): Promise<'release' | 'review'> {
  const open = await trx
    .selectFrom('chain_transfers')
    .select(['transfer_id', 'status'])
    .where('purpose', '=', 'conversion')
    .where('ref', '=', item.id)
    .where('status', '<>', 'failed')
    .executeTakeFirst();
  if (open) {
    await review(deps, trx, rule, item, `${reason}; its transfer ${open.transfer_id} is ${open.status}`);
    return 'review';
  }
  await releaseWithHold(trx, item.id, `${reason}; its ETH never left: payments back to pending`);
  await stageAlert(
    deps,
    deps.logger,
    {
      rule: 'conversion_stuck',
      subject: item.id,
      severity: 'critical',
      message:
        'conversion stuck before its ETH left; failed by the reconciler, its payments back to pending (held before the next batch)',
      details: { conversionId: item.id, state: item.state, reason },
    },
    trx,
  );
  return 'release';
}

// Its parameters are review's, as the pass calls either; the bodies share nothing (a transfer is never reviewed).
/** A transfer past its limits: its stage's job again (it only asks the chain about the stored hash), and an alert. */
export async function resumeStuckTransfer(
  deps: StageDeps,
  trx: Transaction<Database>,
  rule: DeadlineRule,
  item: ItemRow,
  reason: string,
): Promise<void> {
  await resume(trx, rule, item);
  await stageAlert(
    deps,
    deps.logger,
    {
      rule: 'transfer_stuck',
      subject: item.id,
      severity: 'critical',
      message: `transfer stuck in ${item.state}; its job queued again (a person should find out why its stage keeps dying)`,
      // Intent: never signed, so nothing left; signed or broadcast: its transaction may be in flight or mined.
      details: {
        transferId: item.id,
        state: item.state,
        ownerKind: item.purpose,
        ownerId: item.ref,
        reason,
        resumes: item.resumes + 1,
        mayHaveLeft: item.state !== 'intent',
      },
    },
    trx,
  );
}
