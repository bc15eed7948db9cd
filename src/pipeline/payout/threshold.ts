/**
 * The threshold check: a threshold channel whose available USDT reaches its threshold gets exactly one payout batch
 * holding exactly that balance, moved aside in the ledger, with its payout job, in the caller's transaction. The
 * channel row lock and the one-open-batch index make concurrent checks for one channel create one batch at most.
 *
 * Channel rows are locked first (in id order) and the reservation journals are returned, not posted: the caller
 * posts every journal last, so balance rows stay locked only from there to the commit.
 *
 * Given the settings to (`sendWith`), a new batch its run would only send directly is sent here (send-at-opening.ts);
 * every other batch gets its payout_run job.
 */
import { sql, type Selectable, type Transaction } from 'kysely';
import { recordAudit } from '../../db/index.ts';
import type { ChannelsTable, Database, Db } from '../../db/index.ts';
import { accounts, postJournal, type JournalInput } from '../../ledger/index.ts';
import { enqueuePayoutRun, enqueuePayoutRuns, newPayoutId, USDT_UNITS_PER_CENT } from './run.ts';
import { sendOpened, sendsAtOpening, type OpeningSettings } from './send-at-opening.ts';

export interface ThresholdOutcome {
  /** Batches created, and held batches that took the new balance. */
  batchIds: string[];
  /** One `payout_reserved` journal per batch, for the caller to post last. */
  journals: JournalInput[];
  /** The new batches whose transfer was recorded as they were opened (no payout_run). */
  sent: string[];
}

/**
 * @param incoming USDT units the caller is about to credit each channel (in a journal not yet posted): they count
 *   toward the threshold as if already booked.
 */
export async function checkThresholds(
  trx: Transaction<Database>,
  channelIds: readonly string[],
  incoming: ReadonlyMap<string, bigint> = new Map(),
  options: { now?: boolean; sendWith?: OpeningSettings } = {},
): Promise<ThresholdOutcome> {
  const outcome: ThresholdOutcome = { batchIds: [], journals: [], sent: [] };
  const state = await lockChannels(trx, [...new Set(channelIds)].sort());
  const toOpen: NewBatch[] = [];
  for (const channel of state.channels) {
    const decision = decide(channel, state, incoming.get(channel.channel_id) ?? 0n, options);
    if (decision === null) continue;
    if (decision.open === undefined) {
      toOpen.push({ channel, balance: decision.balance });
      continue;
    }
    const batch = await topUpHeldBatch(trx, channel, decision.open, decision.balance);
    if (!batch) continue;
    outcome.batchIds.push(batch.payoutId);
    outcome.journals.push(batch.journal);
  }
  for (const batch of await openBatches(trx, toOpen, options.sendWith)) {
    outcome.batchIds.push(batch.payoutId);
    outcome.journals.push(batch.journal);
    if (batch.sent) outcome.sent.push(batch.payoutId);
  }
  return outcome;
}

/** A channel row as locked, with its payout pair's address format and the database's clock (send-at-opening.ts). */
type Channel = Selectable<ChannelsTable> & { readonly address_format: string | null; readonly now: Date };

type OpenBatch = { payout_id: string; status: string; top_ups: number };

/** The channels under their row locks, with their available USDT and open threshold batch as read after the locks. */
interface LockedChannels {
  readonly channels: Channel[];
  readonly available: ReadonlyMap<string, bigint>;
  readonly open: ReadonlyMap<string, OpenBatch>;
}

/**
 * Three statements however many channels a settlement credits: the rows locked in id order (one statement, its rows
 * locked in the order it returns them), then the balances and the open batches, read once the locks are held.
 *
 * FOR NO KEY UPDATE, as every lock on a channel row: it excludes the other checks, saves and pay-nows of the channel
 * as FOR UPDATE would, but not intake, whose payment rows hold the channel's row FOR KEY SHARE (their foreign key)
 * until they commit. Under FOR UPDATE a check waited for every intake group crediting the channel, and the groups
 * behind it for the check.
 */
async function lockChannels(trx: Transaction<Database>, sortedIds: readonly string[]): Promise<LockedChannels> {
  const none: LockedChannels = { channels: [], available: new Map(), open: new Map() };
  if (sortedIds.length === 0) return none;
  const channels = await trx
    .selectFrom('channels')
    .selectAll('channels')
    .select((eb) => [
      eb
        .selectFrom('supported_pairs')
        .select('address_format')
        .whereRef('supported_pairs.currency', '=', 'channels.payout_currency')
        .whereRef('supported_pairs.network', '=', 'channels.payout_network')
        .as('address_format'),
      sql<Date>`now()`.as('now'),
    ])
    .where('channel_id', 'in', [...sortedIds])
    .orderBy('channel_id')
    .forNoKeyUpdate()
    .execute();
  if (channels.length === 0) return none;
  const codes = channels.map((c) => accounts.channel(c.channel_id, 'usdt').code);
  const balances = await trx
    .selectFrom('ledger_accounts')
    .select(['code', 'balance'])
    .where('code', 'in', codes)
    .where('asset', '=', 'usdt')
    .execute();
  const byCode = new Map(balances.map((b) => [b.code, BigInt(b.balance)]));
  const open = await trx
    .selectFrom('payouts')
    .select(['payout_id', 'channel_id', 'status', 'top_ups'])
    .where('channel_id', 'in', [...sortedIds])
    .where('kind', '=', 'threshold')
    .where('status', 'not in', ['completed', 'failed', 'cancelled'])
    .execute();
  return {
    channels,
    available: new Map(channels.map((c, i) => [c.channel_id, byCode.get(codes[i] as string) ?? 0n])),
    open: new Map(open.map((o) => [o.channel_id, o])),
  };
}

/** What one locked channel's balance calls for: a new batch, its held batch topped up (`open`), or nothing (null). */
function decide(
  channel: Channel,
  state: LockedChannels,
  incoming: bigint,
  options: { now?: boolean },
): { balance: bigint; open?: OpenBatch } | null {
  // USDT on an instant channel (converted before a switch from threshold, or by a conversion that settled after it)
  // is paid out at once, as is a channel a person asked to pay now: no threshold to reach.
  const due =
    options.now || channel.payout_strategy === 'instant'
      ? 0n
      : channel.threshold_usd_cents === null
        ? null
        : BigInt(channel.threshold_usd_cents) * USDT_UNITS_PER_CENT;
  if (due === null) return null;
  const balance = (state.available.get(channel.channel_id) ?? 0n) + incoming;
  if (balance === 0n) return null;
  const open = state.open.get(channel.channel_id);
  if (open) return open.status === 'held' ? { balance, open } : null;
  if (balance < due) return null;
  return { balance };
}

/** The channel's available USDT as booked (a payout batch reserves it off this account). */
async function availableUsdt(trx: Transaction<Database>, channelId: string): Promise<bigint> {
  const row = await trx
    .selectFrom('ledger_accounts')
    .select('balance')
    .where('code', '=', accounts.channel(channelId, 'usdt').code)
    .where('asset', '=', 'usdt')
    .executeTakeFirst();
  return BigInt(row?.balance ?? '0');
}

/**
 * A batch held below ChangeNow's minimum takes whatever the channel earns since, and tries again at once. An approval
 * was for the smaller amount: the grown batch is checked against the limit again. A held batch has no exchange yet,
 * so it also takes the channel's current payout currency, network and wallet. A batch held for a wallet change
 * (WALLET_CHANGE_HOLD) is topped up the same way: its run checks the channel's wallet change before anything else and
 * holds it again until the hold ends, whatever the top-up reset here.
 */
async function topUpHeldBatch(
  trx: Transaction<Database>,
  channel: Channel,
  open: { payout_id: string; top_ups: number },
  balance: bigint,
): Promise<{ payoutId: string; journal: JournalInput } | null> {
  const n = open.top_ups + 1;
  // Only if still held once the row is ours: since the read above its run may have resumed it (hold ended, or
  // a person retried it) and be asking for an exchange of the amount it loaded, or a person cancelled it and
  // returned its funds. Either way it keeps its amount and status; the balance stays available for the next batch.
  const toppedUp = await trx
    .updateTable('payouts')
    .set({
      amount: sql`amount + ${balance.toString()}::numeric`,
      top_ups: n,
      status: 'pending',
      hold_until: null,
      reason: null,
      approved_by: null,
      approved_at: null,
      payout_currency: channel.payout_currency,
      payout_network: channel.payout_network,
      wallet_address: channel.wallet_address,
      updated_at: sql`now()`,
    })
    .where('payout_id', '=', open.payout_id)
    .where('status', '=', 'held')
    .returning('payout_id')
    .executeTakeFirst();
  if (!toppedUp) return null;
  await linkPayments(trx, [{ channelId: channel.channel_id, payoutId: open.payout_id }]);
  await enqueuePayoutRun(trx, open.payout_id);
  const journal = reservation('payout_topped_up', `${open.payout_id}:${n}`, channel.channel_id, balance);
  return { payoutId: open.payout_id, journal };
}

interface NewBatch {
  channel: Channel;
  balance: bigint;
}

/**
 * New batches, each holding exactly its channel's balance, to the channel's payout wallet as it stands now: a few
 * statements however many channels a settlement takes over their thresholds (the payouts, their payments' links,
 * the transfers of those sent at once, the others' run jobs), inside the channels' row locks.
 */
async function openBatches(
  trx: Transaction<Database>,
  batches: readonly NewBatch[],
  sendWith: OpeningSettings | undefined,
): Promise<Array<{ payoutId: string; journal: JournalInput; sent: boolean }>> {
  if (batches.length === 0) return [];
  const payoutIds = batches.map(() => newPayoutId());
  const sent = batches.map(
    ({ channel, balance }) =>
      sendWith !== undefined &&
      sendsAtOpening(sendWith, {
        asset: 'usdt',
        amount: balance,
        payout_currency: channel.payout_currency,
        payout_network: channel.payout_network,
        wallet_address: channel.wallet_address,
        wallet_changed_at: channel.wallet_changed_at,
        now: channel.now,
        address_format: channel.address_format,
      }),
  );
  await trx
    .insertInto('payouts')
    .values(
      batches.map(({ channel, balance }, i) => ({
        payout_id: payoutIds[i] as string,
        kind: 'threshold' as const,
        channel_id: channel.channel_id,
        status: 'pending' as const,
        asset: 'usdt' as const,
        amount: balance,
        payout_currency: channel.payout_currency,
        payout_network: channel.payout_network,
        wallet_address: channel.wallet_address,
        reason: null,
      })),
    )
    .execute();
  await linkPayments(
    trx,
    batches.map((b, i) => ({ channelId: b.channel.channel_id, payoutId: payoutIds[i] as string })),
  );
  if (sendWith !== undefined)
    await sendOpened(
      trx,
      sendWith.hostAddress,
      batches.flatMap(({ channel, balance }, i) =>
        sent[i]
          ? [{ payoutId: payoutIds[i] as string, asset: 'usdt' as const, to: channel.wallet_address, amount: balance }]
          : [],
      ),
    );
  await enqueuePayoutRuns(
    trx,
    payoutIds.filter((_, i) => !sent[i]),
  );
  return batches.map(({ channel, balance }, i) => {
    const payoutId = payoutIds[i] as string;
    return {
      payoutId,
      journal: reservation('payout_reserved', payoutId, channel.channel_id, balance),
      sent: sent[i] as boolean,
    };
  });
}

/** Each channel's converted payments not yet in a batch, linked to its new or topped-up batch: one statement. */
function linkPayments(trx: Transaction<Database>, links: ReadonlyArray<{ channelId: string; payoutId: string }>) {
  return sql`update payments p set payout_id = s.payout_id, updated_at = now()
    from unnest(${links.map((l) => l.channelId)}::text[], ${links.map((l) => l.payoutId)}::text[])
      as s(channel_id, payout_id)
    where p.channel_id = s.channel_id and p.conversion_status = 'completed' and p.payout_id is null`.execute(trx);
}

/** The channel's available USDT set aside for its batch. */
function reservation(kind: string, ref: string, channelId: string, amount: bigint): JournalInput {
  return {
    kind,
    ref,
    entries: [
      { account: accounts.channel(channelId, 'usdt'), amount: -amount },
      { account: accounts.channelPayout(channelId, 'usdt'), amount },
    ],
  };
}

/**
 * The check on its own (after a channel's threshold or strategy changed, or a batch of it ended): batches, then
 * their journals. `sendWith`: as checkThresholds. The batches opened or topped up, and those sent as they opened.
 */
export async function runThresholdCheck(
  db: Db,
  channelIds: readonly string[],
  sendWith?: OpeningSettings,
): Promise<{ batchIds: string[]; sent: string[] }> {
  return db.transaction().execute(async (trx) => {
    const outcome = await checkThresholds(trx, channelIds, new Map(), sendWith ? { sendWith } : {});
    for (const journal of outcome.journals) await postJournal(trx, journal);
    return { batchIds: outcome.batchIds, sent: outcome.sent };
  });
}

export class PayNowRefused extends Error {
  override name = 'PayNowRefused';
}

/**
 * A person's "pay this channel now": its whole available USDT in one batch whatever its threshold (ChangeNow's
 * minimum still applies: below it the batch is held and tried again, as any batch). Refused while a batch is open
 * or when there is nothing to pay. Audited. Null when the channel does not exist.
 */
export async function payChannelNow(db: Db, channelId: string, actor: string): Promise<string | null> {
  return db.transaction().execute(async (trx) => {
    const channel = await trx
      .selectFrom('channels')
      .select('channel_id')
      .where('channel_id', '=', channelId)
      .forNoKeyUpdate()
      .executeTakeFirst();
    if (!channel) return null;
    const open = await trx
      .selectFrom('payouts')
      .select(['payout_id', 'status'])
      .where('channel_id', '=', channelId)
      .where('kind', '=', 'threshold')
      .where('status', 'not in', ['completed', 'failed', 'cancelled'])
      .executeTakeFirst();
    if (open)
      throw new PayNowRefused(
        `batch ${open.payout_id} is open (${open.status}): it pays the channel's balance when it runs`,
      );
    const available = await availableUsdt(trx, channelId);
    if (available === 0n)
      throw new PayNowRefused('the channel holds no USDT to pay out (ETH waits for its conversion)');
    const outcome = await checkThresholds(trx, [channelId], new Map(), { now: true });
    const payoutId = outcome.batchIds[0];
    if (!payoutId) throw new PayNowRefused('no batch could be opened');
    for (const journal of outcome.journals) await postJournal(trx, journal);
    await recordAudit(trx, {
      actor,
      action: 'channel.payout_now',
      subject: `channel:${channelId}`,
      details: { payoutId, amount: available.toString() },
    });
    return payoutId;
  });
}
