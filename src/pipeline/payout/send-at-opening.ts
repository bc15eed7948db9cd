/**
 * A direct payout sent by the transaction that opens it. For a direct payout (the owner takes the held asset on the
 * host wallet's network) with nothing to ask first (no approval, a valid address, no wallet change on hold), a run
 * only records its transfer, in a second transaction of its own after a job of its own. The sets that open payouts
 * (queued instant payments, a settlement's threshold batches) record that transfer in their own transaction instead
 * and queue no run: the same rows, the same transfer unique per payout, one job and one commit fewer per payout.
 * Anything else about a payout is its run's to decide, and it gets one.
 */
import { sql, type Transaction } from 'kysely';
import type { Database } from '../../db/index.ts';
import type { StageDeps } from '../interfaces.ts';
import { createTransfers } from '../transfer/index.ts';
import { destinationProblem, isDirect, USDT_UNITS_PER_CENT, walletHoldUntil } from './run.ts';

/** What decides whether a payout can be sent as it is opened, and which wallet sends it. */
export interface OpeningSettings {
  readonly hostAddress: string;
  /** PAYOUT_APPROVAL_ABOVE_USD in cents; null: no payout waits for approval. */
  readonly approvalAboveUsdCents: bigint | null;
  readonly walletChangeHoldMs: number;
}

export function openingSettings(deps: Pick<StageDeps, 'hostAddress' | 'settings'>): OpeningSettings {
  return {
    hostAddress: deps.hostAddress,
    approvalAboveUsdCents: deps.settings.payoutApprovalAboveUsdCents,
    walletChangeHoldMs: deps.settings.walletChangeHoldMs ?? 0,
  };
}

/** A payout as it is opened, with what its run would check first, read in the opening transaction. */
export interface Opened {
  readonly asset: 'eth' | 'usdt';
  readonly amount: bigint;
  readonly payout_currency: string;
  readonly payout_network: string;
  readonly wallet_address: string;
  /** The channel's last wallet change, and the database's clock, which recorded it. */
  readonly wallet_changed_at: Date | null;
  readonly now: Date;
  /** The pair's address format in supported_pairs; null when there is no such pair. */
  readonly address_format: string | null;
}

/** True when the payout's run would do nothing but record its transfer: a direct payout with nothing to ask first. */
export function sendsAtOpening(settings: OpeningSettings, payout: Opened): boolean {
  return isDirect(payout) && nothingToCheckFirst(settings, payout);
}

/**
 * True when the payout's run would pass its checks without a call: no approval to ask (or to value through ChangeNow),
 * a valid address for its pair, no wallet change on hold.
 */
export function nothingToCheckFirst(settings: OpeningSettings, payout: Opened): boolean {
  return (
    noApprovalNeeded(settings, payout.asset, payout.amount) &&
    destinationProblem(payout, payout.address_format) === null &&
    walletHoldUntil(payout.wallet_changed_at, settings.walletChangeHoldMs, payout.now) === null
  );
}

/** Without asking ChangeNow for a USD value: no limit set, or a USDT amount within it. ETH above a limit: its run asks. */
function noApprovalNeeded(settings: OpeningSettings, asset: string, amount: bigint): boolean {
  const limit = settings.approvalAboveUsdCents;
  if (limit === null) return true;
  return asset === 'usdt' && amount <= limit * USDT_UNITS_PER_CENT;
}

/**
 * The payouts' transfers recorded (intent, send job) and the payouts moved from `pending` to `sent` with them, as
 * their runs' direct transfer would, in the opening transaction. Every payout must still be pending there.
 */
export async function sendOpened(
  trx: Transaction<Database>,
  hostAddress: string,
  payouts: ReadonlyArray<{ payoutId: string; asset: 'eth' | 'usdt'; to: string; amount: bigint }>,
): Promise<void> {
  if (payouts.length === 0) return;
  const transferIds = await createTransfers(
    trx,
    hostAddress,
    payouts.map((p) => ({ purpose: 'payout', ref: p.payoutId, asset: p.asset, to: p.to, amount: p.amount })),
  );
  const { rows } = await sql`
    update payouts p set status = 'sent', transfer_id = s.transfer_id, last_error = null, updated_at = now()
    from unnest(${payouts.map((p) => p.payoutId)}::text[], ${transferIds}::text[]) as s(payout_id, transfer_id)
    where p.payout_id = s.payout_id and p.status = 'pending'
    returning p.payout_id`.execute(trx);
  if (rows.length !== payouts.length)
    throw new Error(`moved ${rows.length} of ${payouts.length} direct payouts to sent as they were opened`);
}
