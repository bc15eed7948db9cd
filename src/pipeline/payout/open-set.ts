/**
 * Opening instant payouts in sets. Each credited instant payment has its own payout_instant job: its fetch, a
 * transaction that opens the payout (the payment's lock, its channel, the payout row, the payment's link, the
 * reservation's journal), then the payout's run (a run lock, a read, and for a direct payout a second transaction
 * that records its transfer). When a job opens its payment's payout, the jobs of the payments credited after it
 * usually wait in the queue; that run now opens up to OPEN_SET_MAX of them in one transaction, a few statements for
 * all of them, and removes their jobs in the same commit.
 *
 * A payment keeps every guarantee of its own run: it is taken under its row lock (one another transaction holds is
 * skipped), still a credited instant payment with nothing to review, not reversed, with no payout yet and something
 * to pay; its payout and its reservation are what its own run would book. Only the plain case is taken: anything
 * else is left to the payment's own job, which handles it (and logs or fails) as before; so is every payment when
 * the set's transaction fails.
 *
 * A direct payout (the owner takes ETH on Ethereum) whose run could only record its transfer (no approval to ask, a
 * valid address, no wallet change on hold) is moved to `sent` with its transfer intent in the same transaction, as
 * its run would. An exchange payout with the same nothing to check first is recorded with its intent, and the same
 * job asks ChangeNow for its exchange after the commit (ask-at-opening.ts). Every other payout opened in the set gets
 * its payout_run job, which does the rest: an approval, a hold, a review.
 */
import { sql, type Transaction } from 'kysely';
import type { Database } from '../../db/index.ts';
import { queuedKeysOf, removeJobs } from '../../jobs/index.ts';
import { accounts, inLedgerGroup, postJournals } from '../../ledger/index.ts';
import type { StageDeps } from '../interfaces.ts';
import { withRunLocks } from '../run-lock.ts';
import { ASK_FALLBACK_MS, askOpened, type AskedAtOpening } from './ask-at-opening.ts';
import { enqueuePayoutRuns, isDirect, newPayoutId, payoutRunLock } from './run.ts';
import { nothingToCheckFirst, openingSettings, sendOpened, sendsAtOpening } from './send-at-opening.ts';

/** The most payouts one run opens besides its own: their payments are locked and booked together. */
export const OPEN_SET_MAX = 32;

const JOB_KEY_PREFIX = 'payout_instant:';

/** A queued payment as the set reads it under its lock: the payment, its channel's payout settings, its pair's format. */
interface Candidate {
  readonly payment_id: string;
  readonly channel_id: string;
  readonly payout_strategy: string | null;
  readonly credited_at: Date | null;
  readonly reversed_at: Date | null;
  readonly review_reason: string | null;
  readonly asset: string | null;
  readonly net_amount: string | null;
  readonly has_channel: boolean;
  readonly payout_currency: string | null;
  readonly payout_network: string | null;
  readonly wallet_address: string | null;
  readonly wallet_changed_at: Date | null;
  readonly address_format: string | null;
  readonly now: Date;
}

/** A payout the set opens. */
interface Opening {
  readonly payoutId: string;
  readonly paymentId: string;
  readonly channelId: string;
  readonly net: bigint;
  readonly payoutCurrency: string;
  readonly payoutNetwork: string;
  readonly walletAddress: string;
  /** Moved to `sent` with its transfer in the set. */
  readonly sendNow: boolean;
  /** Recorded `exchange_requested`, its exchange asked for by the set (ask-at-opening.ts). */
  readonly askNow: boolean;
}

/**
 * Opens the payouts of other credited instant payments whose payout_instant jobs wait in the queue. Never fails its
 * caller: a payment left out is opened by its own job. Two sets at once take different payments: each skips the
 * payments the other holds, and finds those it opened with a payout.
 */
export async function openQueuedPayouts(deps: StageDeps): Promise<void> {
  try {
    const keys = await queuedKeysOf(deps.db, 'payout_instant', OPEN_SET_MAX);
    const paymentIds = keys.filter((k) => k.startsWith(JOB_KEY_PREFIX)).map((k) => k.slice(JOB_KEY_PREFIX.length));
    if (paymentIds.length === 0) return;
    // The payouts' ids are drawn first, so that their run locks are held before the commit that queues their runs.
    const payoutIds = paymentIds.map(() => newPayoutId());
    await withRunLocks(deps.runLocks, payoutIds.map(payoutRunLock), async (held) => {
      const opened = await deps.db.transaction().execute(async (trx) => {
        const fresh = payoutIds.filter((id) => held.has(payoutRunLock(id)));
        const openings = (await lockCandidates(trx, paymentIds)).flatMap((c) => {
          const opening = openingOf(deps, c, fresh);
          return opening ? [opening] : [];
        });
        if (openings.length > 0) await bookOpenings(deps, trx, openings);
        return openings;
      });
      logOpened(deps, opened);
      await askOpened(deps, opened.filter((o) => o.askNow).map(askedOf));
    });
  } catch (error) {
    deps.logger.warn(
      { event: 'payout_open_set_failed', err: error },
      'opening queued instant payouts together failed: each is opened by its own job',
    );
  }
}

function askedOf(o: Opening): AskedAtOpening {
  return {
    payoutId: o.payoutId,
    asset: 'eth',
    amount: o.net,
    payoutCurrency: o.payoutCurrency,
    payoutNetwork: o.payoutNetwork,
    walletAddress: o.walletAddress,
  };
}

function logOpened(deps: StageDeps, opened: readonly Opening[]): void {
  if (opened.length === 0) return;
  for (const o of opened.filter((x) => x.sendNow))
    deps.logger.info(
      { event: 'payout_transfer_created', payoutId: o.payoutId, paymentId: o.paymentId, asset: 'eth' },
      'direct payout transfer recorded',
    );
  deps.logger.info(
    {
      event: 'payout_open_set',
      opened: opened.length,
      sent: opened.filter((o) => o.sendNow).length,
      asking: opened.filter((o) => o.askNow).length,
    },
    'queued instant payouts opened together',
  );
}

/**
 * The payments under their row locks (in id order; one another transaction holds is skipped, its own run has it),
 * with what the set needs of their channels. A payout opened meanwhile shows in the locked row's `payout_id` (read
 * again after the lock, where the subquery keeps the statement's snapshot); one a payment had before, in `payouts`.
 */
async function lockCandidates(trx: Transaction<Database>, paymentIds: readonly string[]): Promise<Candidate[]> {
  const { rows } = await sql<Candidate>`
    select p.payment_id::text as payment_id, p.channel_id, p.payout_strategy, p.credited_at, p.reversed_at,
      p.review_reason, p.asset, p.net_amount::text as net_amount,
      c.channel_id is not null as has_channel, c.payout_currency, c.payout_network, c.wallet_address,
      c.wallet_changed_at, sp.address_format, now() as now
    from payments p
    left join channels c on c.channel_id = p.channel_id
    left join supported_pairs sp on sp.currency = c.payout_currency and sp.network = c.payout_network
    where p.payment_id = any(${paymentIds}::numeric[]) and p.payout_id is null
      and not exists (select 1 from payouts o where o.payment_id = p.payment_id)
    order by p.payment_id
    for update of p skip locked`.execute(trx);
  return rows;
}

/**
 * What the payment's own run would open, when it is the plain case; null leaves it to that run. Its payout id is the
 * next of `ids` (their run locks held); none left: the payment is left to its run too.
 */
function openingOf(deps: StageDeps, c: Candidate, ids: string[]): Opening | null {
  if (c.payout_strategy !== 'instant' || c.credited_at === null || c.asset !== 'eth') return null;
  if (c.review_reason !== null || c.reversed_at !== null) return null;
  if (!c.has_channel || c.payout_currency === null || c.payout_network === null || c.wallet_address === null)
    return null;
  const net = BigInt(c.net_amount ?? '0');
  if (net <= 0n) return null;
  const payoutId = ids.shift();
  if (payoutId === undefined) return null;
  const opened = {
    asset: c.asset,
    amount: net,
    payout_currency: c.payout_currency,
    payout_network: c.payout_network,
    wallet_address: c.wallet_address,
    wallet_changed_at: c.wallet_changed_at,
    now: c.now,
    address_format: c.address_format,
  } as const;
  const settings = openingSettings(deps);
  const sendNow = sendsAtOpening(settings, opened);
  return {
    payoutId,
    paymentId: c.payment_id,
    channelId: c.channel_id,
    net,
    payoutCurrency: c.payout_currency,
    payoutNetwork: c.payout_network,
    walletAddress: c.wallet_address,
    sendNow,
    askNow: !sendNow && !isDirect(opened) && nothingToCheckFirst(settings, opened),
  };
}

/**
 * The set's rows, jobs and journals, in the caller's transaction: the payouts opened as their runs would open them
 * (pending, linked from their payments), the direct ones moved to `sent` with their transfers, the others' runs
 * queued, the payments' own jobs removed, and the reservations booked last, as one ledger group.
 */
async function bookOpenings(deps: StageDeps, trx: Transaction<Database>, openings: readonly Opening[]): Promise<void> {
  await trx
    .insertInto('payouts')
    .values(
      openings.map((o) => ({
        payout_id: o.payoutId,
        kind: 'instant' as const,
        channel_id: o.channelId,
        payment_id: o.paymentId,
        status: 'pending' as const,
        asset: 'eth' as const,
        amount: o.net,
        payout_currency: o.payoutCurrency,
        payout_network: o.payoutNetwork,
        wallet_address: o.walletAddress,
        reason: null,
      })),
    )
    .execute();
  await sql`
    update payments p set payout_id = s.payout_id, updated_at = now()
    from unnest(${openings.map((o) => o.paymentId)}::numeric[], ${openings.map((o) => o.payoutId)}::text[])
      as s(payment_id, payout_id)
    where p.payment_id = s.payment_id`.execute(trx);
  await sendOpened(
    trx,
    deps.hostAddress,
    openings
      .filter((o) => o.sendNow)
      .map((o) => ({ payoutId: o.payoutId, asset: 'eth', to: o.walletAddress, amount: o.net })),
  );
  const asking = openings.filter((o) => o.askNow).map((o) => o.payoutId);
  await enqueuePayoutRuns(
    trx,
    openings.filter((o) => !o.sendNow && !o.askNow).map((o) => o.payoutId),
  );
  // Due once the set has had its time to ask: whatever it did not record, the run finishes (ask-at-opening.ts).
  await enqueuePayoutRuns(trx, asking, new Date(Date.now() + ASK_FALLBACK_MS));
  await removeJobs(
    trx,
    openings.map((o) => `${JOB_KEY_PREFIX}${o.paymentId}`),
  );
  await inLedgerGroup(trx, () =>
    postJournals(
      trx,
      openings.map((o) => ({
        kind: 'payout_reserved',
        ref: o.payoutId,
        entries: [
          { account: accounts.channel(o.channelId, 'eth'), amount: -o.net },
          { account: accounts.channelPayout(o.channelId, 'eth'), amount: o.net },
        ],
      })),
    ),
  );
}
