/**
 * Rules about money on its way: conversions and payouts that need a person or take too long, and threshold channels
 * whose balance waits without a batch.
 *
 * The rules alike in form (rows read, one firing each with its details) are kept apart on purpose: what they read,
 * say and detail is each its own, and a shared builder would only move the braces.
 */
import { sql } from 'kysely';
import { accounts } from '../ledger/index.ts';
import { decimalsOf, formatUnits, isAssetCode } from '../money/index.ts';
import type { AlertSettings, Firing, StateRule } from './rule-types.ts';
import { formatAge } from './text.ts';

/** A threshold is in USD cents, a balance in USDT units (USDT valued at one USD, as the threshold check does). */
const USDT_UNITS_PER_CENT = 10n ** BigInt(decimalsOf('usdt') - decimalsOf('usd'));

function amountText(units: string, asset: string): string {
  return isAssetCode(asset)
    ? `${formatUnits(BigInt(units), decimalsOf(asset))} ${asset.toUpperCase()}`
    : `${units} ${asset} units`;
}

const conversionPendingTooLong: StateRule = {
  name: 'conversion_pending_too_long',
  severity: 'warning',
  async evaluate({ db, settings }) {
    const { rows } = await sql<{
      conversion_id: string;
      status: string;
      amount_wei: string;
      payment_count: number;
      created_at: Date;
      age_s: number;
    }>`
      select conversion_id, status, amount_wei::text as amount_wei, payment_count, created_at, extract(epoch from now() - created_at)::int as age_s
      from conversions
      where status in ('pending', 'exchange_requested', 'exchange_created', 'sent')
        and created_at < now() - ${settings.conversionPendingAfterMs} * interval '1 millisecond'
      order by created_at`.execute(db);
    return {
      firing: rows.map((r) => ({
        subject: r.conversion_id,
        message: `conversion ${r.conversion_id} still ${r.status} ${formatAge(r.age_s)} after it was created`,
        details: {
          conversionId: r.conversion_id,
          status: r.status,
          amount: amountText(r.amount_wei, 'eth'),
          payments: r.payment_count,
          createdAt: r.created_at,
          ageSeconds: r.age_s,
        },
      })),
    };
  },
};

/**
 * Payments that no conversion took: the conversion rows' rule cannot see them (there is no row), and this is the old
 * system's "stuck in swapping" seen from the payment's side (estimates failing, the batch cron not running). Held
 * payments (a permanent ChangeNow refusal) have their own rule. One alert for all of them; cheap through the pending
 * payments' index on credited_at.
 */
const paymentsAwaitingConversion: StateRule = {
  name: 'payments_awaiting_conversion',
  severity: 'warning',
  async evaluate({ db, settings }) {
    const { rows } = await sql<{ count: number; oldest: Date | null; age_s: number | null }>`
      select count(*)::int as count, min(credited_at) as oldest, extract(epoch from now() - min(credited_at))::int as age_s
      from payments
      where conversion_status = 'pending'
        and credited_at < now() - ${settings.paymentAwaitingConversionAfterMs} * interval '1 millisecond'
        and (conversion_hold_until is null or conversion_hold_until <= now())`.execute(db);
    const row = rows[0];
    if (!row || row.count === 0) return { firing: [] };
    return {
      firing: [
        {
          subject: 'payments',
          message: `${row.count} credited payment(s) waited longer than CONVERSION_MAX_WAIT + ALERT_CONVERSION_PENDING_AFTER for a conversion; the oldest ${formatAge(row.age_s ?? 0)}`,
          details: { payments: row.count, oldestCreditedAt: row.oldest, oldestAgeSeconds: row.age_s },
        },
      ],
    };
  },
};

/**
 * Payments kept for review that nobody decided on yet. Intake raises `payment_review` (an event) as each arrives; an
 * event resolves once it goes quiet, while the payment may still wait: this stays open until none does.
 */
const paymentsInReview: StateRule = {
  name: 'payments_in_review',
  severity: 'warning',
  async evaluate({ db }) {
    const { rows } = await sql<{
      count: number;
      oldest_id: string | null;
      oldest: Date | null;
      age_s: number | null;
      reasons: Record<string, number> | null;
    }>`
      with waiting as (
        select payment_id, updated_at, split_part(review_reason, ':', 1) as code from payments where review_reason is not null
      )
      select (select count(*)::int from waiting) as count,
             (select payment_id::text from waiting order by updated_at, payment_id limit 1) as oldest_id,
             (select min(updated_at) from waiting) as oldest,
             (select extract(epoch from now() - min(updated_at))::int from waiting) as age_s,
             (select jsonb_object_agg(code, n) from (select code, count(*)::int as n from waiting group by code) c) as reasons`.execute(
      db,
    );
    const row = rows[0];
    if (!row || row.count === 0) return { firing: [] };
    return {
      firing: [
        {
          subject: 'payments',
          message: `${row.count} payment(s) wait in review for a person (credit, ignore or reverse); the oldest, ${row.oldest_id}, for ${formatAge(row.age_s ?? 0)}`,
          details: {
            payments: row.count,
            oldestPaymentId: row.oldest_id,
            oldestSince: row.oldest,
            byReason: row.reasons ?? {},
          },
        },
      ],
    };
  },
};

const conversionNeedsReview: StateRule = {
  name: 'conversion_needs_review',
  severity: 'critical',
  async evaluate({ db }) {
    const rows = await db
      .selectFrom('conversions')
      .select(['conversion_id', 'amount_wei', 'payment_count', 'exchange_id', 'reason', 'updated_at'])
      .where('status', '=', 'needs_review')
      .orderBy('updated_at')
      .execute();
    return {
      firing: rows.map((r) => ({
        subject: r.conversion_id,
        message: `conversion ${r.conversion_id} needs review: ${r.reason ?? 'no reason recorded'}`,
        details: {
          conversionId: r.conversion_id,
          amount: amountText(r.amount_wei, 'eth'),
          payments: r.payment_count,
          exchangeId: r.exchange_id,
          reason: r.reason,
          since: r.updated_at,
        },
      })),
    };
  },
};

/** A transfer waits for a person (its nonce taken by another transaction, a token that moved something else). */
const transferNeedsReview: StateRule = {
  name: 'transfer_needs_review',
  severity: 'critical',
  async evaluate({ db }) {
    const rows = await db
      .selectFrom('chain_transfers')
      .select(['transfer_id', 'purpose', 'ref', 'asset', 'amount', 'nonce', 'tx_hash', 'reason', 'updated_at'])
      .where('status', '=', 'needs_review')
      .orderBy('updated_at')
      .execute();
    return {
      firing: rows.map((r) => ({
        subject: r.transfer_id,
        message: `transfer ${r.transfer_id} (${r.purpose} ${r.ref}, ${amountText(r.amount, r.asset)}, nonce ${r.nonce}) needs review: ${r.reason ?? 'no reason recorded'}`,
        details: {
          transferId: r.transfer_id,
          purpose: r.purpose,
          ref: r.ref,
          amount: amountText(r.amount, r.asset),
          nonce: r.nonce,
          txHash: r.tx_hash,
          reason: r.reason,
          since: r.updated_at,
        },
      })),
    };
  },
};

/**
 * Payments sent back to pending and held after ChangeNow refused their conversion for good (a bad key, an inactive
 * pair): they are retried with a growing backoff, and each retry meets the same refusal until a person acts. The
 * subject is ChangeNow's error code from the last refused conversion.
 */
const conversionHeld: StateRule = {
  name: 'conversion_held',
  severity: 'critical',
  async evaluate({ db }) {
    const held = await sql<{ payments: number; amount_wei: string; until: Date }>`
      select count(*)::int as payments, coalesce(sum(net_amount), 0)::text as amount_wei, max(conversion_hold_until) as until
      from payments where conversion_status = 'pending' and conversion_hold_until > now()`.execute(db);
    const summary = held.rows[0];
    if (!summary || summary.payments === 0) return { firing: [] };
    const last = await db
      .selectFrom('conversions')
      .select(['conversion_id', 'reason'])
      .where('status', '=', 'failed')
      .where('reason', 'like', 'changenow %')
      .orderBy('updated_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    const code = /^changenow ([A-Za-z0-9_]+):/.exec(last?.reason ?? '')?.[1] ?? 'changenow';
    return {
      firing: [
        {
          subject: code,
          message: `${summary.payments} payments held after ChangeNow refused their conversion: ${last?.reason ?? 'reason unknown'}`,
          details: {
            payments: summary.payments,
            amount: amountText(summary.amount_wei, 'eth'),
            heldUntil: summary.until,
            conversionId: last?.conversion_id ?? null,
            reason: last?.reason ?? null,
          },
        },
      ],
    };
  },
};

/**
 * @param recentMs Only payouts that reached the status within this long (a final status: the alert is about the
 *   event, and resolves once it is that old); unset, every payout in the status (one that waits for a person).
 */
function payoutRule(
  name: string,
  status: 'failed' | 'needs_review' | 'awaiting_approval',
  severity: StateRule['severity'],
  describe: string,
  recentMs?: (settings: AlertSettings) => number,
): StateRule {
  return {
    name,
    severity,
    async evaluate({ db, settings }) {
      let query = db
        .selectFrom('payouts')
        .select([
          'payout_id',
          'kind',
          'channel_id',
          'asset',
          'amount',
          'payout_currency',
          'payout_network',
          'reason',
          'updated_at',
        ])
        .where('status', '=', status);
      // payouts_failed_recent (012) serves this: the rule reads the recent failures, not every failure ever.
      if (recentMs !== undefined)
        query = query.where('updated_at', '>', sql<Date>`now() - ${recentMs(settings)} * interval '1 millisecond'`);
      const rows = await query.orderBy('updated_at').execute();
      return {
        firing: rows.map((r): Firing => ({
          subject: r.payout_id,
          message: `payout ${r.payout_id} (channel ${r.channel_id}, ${amountText(r.amount, r.asset)}) ${describe}${r.reason ? `: ${r.reason}` : ''}`,
          details: {
            payoutId: r.payout_id,
            kind: r.kind,
            channelId: r.channel_id,
            amount: amountText(r.amount, r.asset),
            payoutCurrency: r.payout_currency,
            payoutNetwork: r.payout_network,
            reason: r.reason,
            since: r.updated_at,
          },
        })),
      };
    },
  };
}

/**
 * A threshold channel whose available USDT reached its threshold (as the threshold check computes it) with no open
 * batch, for longer than ALERT_THRESHOLD_NO_BATCH_AFTER. "Since" is the latest of: the channel's last batch ending
 * (its threshold_check job runs after that) and the channel's last change (a lowered threshold, checked again). Not
 * the balance's last change: settle runs the threshold check in the credit's own transaction, so a credit that
 * leaves a channel over its threshold without a batch is already wrong, and an active channel's balance changes so
 * often that counting from it would never alert.
 */
const thresholdNoBatch: StateRule = {
  name: 'threshold_no_batch',
  severity: 'warning',
  async evaluate({ db, settings }) {
    const { rows: channels } = await sql<{
      channel_id: string;
      threshold: string;
      channel_updated_at: Date;
      last_batch_at: Date | null;
      now: Date;
    }>`
      select c.channel_id, c.threshold_usd_cents::text as threshold, c.updated_at as channel_updated_at, now() as now,
             (select max(p.updated_at) from payouts p where p.channel_id = c.channel_id and p.kind = 'threshold') as last_batch_at
      from channels c
      where c.payout_strategy = 'threshold' and c.threshold_usd_cents is not null
        and not exists (select 1 from payouts p where p.channel_id = c.channel_id and p.kind = 'threshold' and p.status not in ('completed', 'failed', 'cancelled'))`.execute(
      db,
    );
    if (channels.length === 0) return { firing: [] };
    const codes = channels.map((c) => accounts.channel(c.channel_id, 'usdt').code);
    const { rows: balances } = await sql<{ code: string; balance: string }>`
      select code, balance::text as balance from ledger_accounts where asset = 'usdt' and code = any(${codes}::text[])`.execute(
      db,
    );
    const byCode = new Map(balances.map((b) => [b.code, b]));
    const firing: Firing[] = [];
    for (const c of channels) {
      const account = byCode.get(accounts.channel(c.channel_id, 'usdt').code);
      if (!account) continue;
      const balance = BigInt(account.balance);
      const threshold = BigInt(c.threshold) * USDT_UNITS_PER_CENT;
      if (balance === 0n || balance < threshold) continue;
      const since = Math.max(c.channel_updated_at.getTime(), c.last_batch_at?.getTime() ?? 0);
      const waitedMs = c.now.getTime() - since;
      if (waitedMs <= settings.thresholdNoBatchAfterMs) continue;
      firing.push({
        subject: c.channel_id,
        message: `channel ${c.channel_id} holds ${formatUnits(balance, 6)} USDT, at or over its threshold of ${formatUnits(BigInt(c.threshold), 2)} USD, with no payout batch for ${formatAge(waitedMs / 1_000)}`,
        details: {
          channelId: c.channel_id,
          balance: `${formatUnits(balance, 6)} USDT`,
          threshold: `${formatUnits(BigInt(c.threshold), 2)} USD`,
          since: new Date(since),
          waitedSeconds: Math.floor(waitedMs / 1_000),
        },
      });
    }
    return { firing };
  },
};

export const pipelineRules: readonly StateRule[] = [
  conversionPendingTooLong,
  paymentsAwaitingConversion,
  paymentsInReview,
  conversionNeedsReview,
  conversionHeld,
  transferNeedsReview,
  payoutRule(
    'payout_failed',
    'failed',
    'warning',
    'failed; its funds are back on the channel balance',
    (settings) => settings.eventResolveAfterMs,
  ),
  payoutRule('payout_needs_review', 'needs_review', 'critical', 'needs review'),
  payoutRule('payout_awaiting_approval', 'awaiting_approval', 'warning', 'waits for approval'),
  thresholdNoBatch,
];
