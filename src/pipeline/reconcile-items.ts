/**
 * The reconciler's reads and writes per kind of item: finding the items past a state's deadline, re-reading one under
 * its row lock, and the two things it ever does to one: re-queue its stage's own job (under the stage's job key), or
 * send it (or, for a transfer, its owner) to review through the stage's review path. No outside call is made here:
 * the stage jobs it queues ask ChangeNow and the chain.
 */
import { sql, type RawBuilder, type Transaction } from 'kysely';
import type { Database, Db } from '../db/index.ts';
import { enqueueConversionExchange, enqueuePoll, toReview as conversionToReview } from './convert.ts';
import type { StageDeps } from './interfaces.ts';
import { enqueuePayoutPoll, enqueuePayoutRun, toReview as payoutToReview } from './payout.ts';
import { jobKeysFor, type DeadlineRule, type ItemKind, type ReconcileSettings, type StuckItem } from './reconcile-rules.ts';
import { resumeTransfer } from './transfer.ts';

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
  // never sent for an owner a person is deciding about).
  if (rule.kind === 'transfer') {
    return sql`and (c.status = 'exchange_created' or p.status = 'exchange_created' or (p.status = 'sent' and p.exchange_id is null))`;
  }
  return sql``;
}

function selectItems(rule: DeadlineRule, settings: ReconcileSettings, filter: RawBuilder<unknown>, tail: RawBuilder<unknown>): RawBuilder<RawRow> {
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

/** Items in the rule's state for longer than its deadline, oldest first, at most `limit`. */
export async function findPastDeadline(db: Db, rule: DeadlineRule, settings: ReconcileSettings, limit: number): Promise<ItemRow[]> {
  const cutoff = sql`${sinceOf(rule)} < now() - ${rule.stuckAfterMs(settings)} * interval '1 millisecond'`;
  const { rows } = await selectItems(rule, settings, cutoff, sql`order by ${sinceOf(rule)} limit ${limit}`).execute(db);
  return rows.map(toItem);
}

/**
 * The item again, under its row lock, if still in the rule's state. Null when it moved on, or when a stage holds its
 * row right now (that stage is alive and working on it).
 */
export async function lockItem(trx: Transaction<Database>, rule: DeadlineRule, settings: ReconcileSettings, id: string): Promise<ItemRow | null> {
  const { id: idColumn } = TABLES[rule.kind];
  const lock = rule.kind === 'transfer' ? sql`for update of i skip locked` : sql`for update skip locked`;
  const { rows } = await selectItems(rule, settings, sql`i.${sql.ref(idColumn)} = ${id}`, lock).execute(trx);
  return rows[0] ? toItem(rows[0]) : null;
}

export function keysOf(rule: DeadlineRule, item: ItemRow): string[] {
  return jobKeysFor(rule.kind, rule.state, item.id, item.paymentId);
}

/** Of these job keys, the ones with a job that will still run: queued with attempts left, or running now. */
export async function liveKeys(db: Db | Transaction<Database>, keys: readonly string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const { rows } = await sql<{ key: string }>`
    select key from graphile_worker._private_jobs
     where key = any(${[...keys]}::text[]) and (locked_at is not null or attempts < max_attempts)`.execute(db);
  return new Set(rows.map((r) => r.key));
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
    await resumeTransfer(trx, { transfer_id: item.id, status: item.state as 'intent' | 'signed' | 'broadcast', from_address: item.fromAddress as string });
  }
  const { table, id } = TABLES[rule.kind];
  await sql`update ${sql.table(table)} set reconcile_attempts = reconcile_attempts + 1, reconciled_at = now() where ${sql.ref(id)} = ${item.id}`.execute(trx);
}

/** The item (a transfer: its owner) to review through its stage's review path. Returns what went to review. */
export async function review(deps: StageDeps, trx: Transaction<Database>, rule: DeadlineRule, item: ItemRow, reason: string): Promise<{ kind: 'conversion' | 'payout'; id: string }> {
  const owner = rule.kind === 'transfer' ? { kind: item.purpose as 'conversion' | 'payout', id: item.ref as string, reason: `transfer ${item.id} ${reason}` } : { kind: rule.kind, id: item.id, reason };
  if (owner.kind === 'conversion') {
    await conversionToReview(deps, owner.id, owner.reason, trx);
    // The conversion review path leaves the alert to its caller, as every stage that sends one there does.
    deps.logger.error({ event: 'alert', alert: 'conversion_stuck', conversionId: owner.id, reason: owner.reason }, 'conversion stuck; sent to review by the reconciler');
  } else {
    await payoutToReview(deps, owner.id, owner.reason, 'payout_stuck', trx);
  }
  return { kind: owner.kind, id: owner.id };
}
