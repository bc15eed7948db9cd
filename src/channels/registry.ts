/**
 * The payee registry: how and where each channel owner is paid, and the platform fee it pays when not the default.
 * Input is validated completely (strategy, threshold, supported currency/network pair, address valid for that network,
 * fee) before anything is written.
 */
import { sql, type Selectable, type Transaction } from 'kysely';
import { recordAudit } from '../db/index.ts';
import { getAddress } from 'viem';
import { z } from 'zod';
import type { ChannelsTable, Database, Db } from '../db/index.ts';
import { AmountError, formatUnits, parsePercent, parseUnits, type Percent } from '../money/index.ts';
import { ADDRESS_FORMATS, checkAddress, type AddressFormat } from './address.ts';
import { lockChannelForSave } from './lock.ts';

export class ChannelInputError extends Error {
  override name = 'ChannelInputError';
}

/** Telegram chat ids: channels are negative (-100...), but any non-zero integer id is accepted. */
export const CHANNEL_ID_RE = /^-?[1-9][0-9]{0,19}$/;

const MAX_THRESHOLD_CENTS = 10n ** 17n;

export const channelInputSchema = z
  .object({
    payoutStrategy: z.enum(['instant', 'threshold']),
    thresholdUsd: z.string().nullish(),
    payoutCurrency: z
      .string()
      .regex(/^[a-zA-Z0-9]{2,12}$/, 'must be a currency code')
      .transform((s) => s.toLowerCase()),
    payoutNetwork: z
      .string()
      .regex(/^[a-zA-Z0-9]{2,12}$/, 'must be a network code')
      .transform((s) => s.toLowerCase()),
    walletAddress: z.string().min(1).max(128),
    /**
     * The channel's own platform fee, a decimal string as PLATFORM_FEE_PERCENT takes; null: back to the default.
     * Absent: kept as it is (a new channel has none), so a save that does not know the field never clears it.
     */
    platformFeePercent: z.string().max(32).nullable().optional(),
  })
  .strict();

export type ChannelInput = z.infer<typeof channelInputSchema>;

export interface Channel {
  readonly channelId: string;
  readonly payoutStrategy: 'instant' | 'threshold';
  readonly thresholdUsd: string | null;
  readonly payoutCurrency: string;
  readonly payoutNetwork: string;
  readonly walletAddress: string;
  /** When the payout destination (wallet, currency or network) last changed; null: as created. */
  readonly walletChangedAt: string | null;
  /** The channel's own platform fee (percent); null: PLATFORM_FEE_PERCENT applies. */
  readonly platformFeePercent: string | null;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export interface UpsertResult {
  channel: Channel;
  created: boolean;
  /** The channel existed and its payout destination (wallet address, currency or network) changed. */
  walletChanged: boolean;
  /** The channel as it was before, when it existed. */
  before: Channel | null;
}

/**
 * `withinSave` runs in the save's own transaction, after the row is written: what must follow a change of the channel
 * (moving its payments to a new strategy, with their jobs) commits with it or not at all. The save holds the channel's
 * credit lock exclusively from its first statement to its commit (lock.ts).
 */
export async function upsertChannel(
  db: Db,
  channelId: string,
  input: ChannelInput,
  actor: string,
  withinSave?: (trx: Transaction<Database>) => Promise<void>,
): Promise<UpsertResult> {
  if (!CHANNEL_ID_RE.test(channelId))
    throw new ChannelInputError('channelId must be a Telegram chat id such as -1003296084379');
  const thresholdCents = parseThreshold(input);
  const fee = parseFee(input);
  return db.transaction().execute(async (trx) => {
    // First, before any row lock: the credits of this channel under way commit before the save writes, and those
    // arriving now wait for its commit (lock.ts), so `withinSave` moves every payment credited at the old version.
    await lockChannelForSave(trx, channelId);
    const pair = await trx
      .selectFrom('supported_pairs')
      .select('address_format')
      .where('currency', '=', input.payoutCurrency)
      .where('network', '=', input.payoutNetwork)
      .executeTakeFirst();
    if (!pair)
      throw new ChannelInputError(
        `payout pair ${input.payoutCurrency} on ${input.payoutNetwork} is not supported (GET /api/supported-pairs lists them)`,
      );
    const walletAddress = normalizeAddress(pair.address_format, input.walletAddress);

    const before = await trx
      .selectFrom('channels')
      .selectAll()
      .where('channel_id', '=', channelId)
      .forNoKeyUpdate()
      .executeTakeFirst();
    const values = {
      payout_strategy: input.payoutStrategy,
      threshold_usd_cents: thresholdCents,
      payout_currency: input.payoutCurrency,
      payout_network: input.payoutNetwork,
      wallet_address: walletAddress,
      ...(fee !== undefined && { platform_fee_percent: fee === null ? null : fee.text }),
    };
    const row = await trx
      .insertInto('channels')
      .values({ channel_id: channelId, ...values })
      .onConflict((oc) => oc.column('channel_id').doUpdateSet({ ...values, updated_at: sql`now()` }))
      .returningAll()
      .executeTakeFirstOrThrow();
    const channel = toChannel(row);
    const previous = before ? toChannel(before) : null;
    // The trigger on channels sets wallet_changed_at on exactly this condition.
    const walletChanged =
      previous !== null &&
      (previous.walletAddress !== channel.walletAddress ||
        previous.payoutCurrency !== channel.payoutCurrency ||
        previous.payoutNetwork !== channel.payoutNetwork);
    await recordAudit(trx, {
      actor,
      action: before ? 'channel.update' : 'channel.create',
      subject: `channel:${channelId}`,
      details: { before: previous, after: channel, ...(walletChanged && { walletChanged: true }) },
    });
    await withinSave?.(trx);
    return { channel, created: before === undefined, walletChanged, before: previous };
  });
}

export async function getChannel(db: Db, channelId: string): Promise<Channel | undefined> {
  if (!CHANNEL_ID_RE.test(channelId)) return undefined;
  const row = await db.selectFrom('channels').selectAll().where('channel_id', '=', channelId).executeTakeFirst();
  return row ? toChannel(row) : undefined;
}

export async function listSupportedPairs(db: Db): Promise<Array<{ currency: string; network: string }>> {
  return db
    .selectFrom('supported_pairs')
    .select(['currency', 'network'])
    .orderBy('currency')
    .orderBy('network')
    .execute();
}

function parseThreshold(input: ChannelInput): bigint | null {
  const text = input.thresholdUsd ?? null;
  if (input.payoutStrategy === 'instant') {
    if (text !== null)
      throw new ChannelInputError(
        'thresholdUsd applies only to the threshold strategy; omit it or send null for instant',
      );
    return null;
  }
  if (text === null) throw new ChannelInputError('thresholdUsd is required for the threshold strategy');
  let cents: bigint;
  try {
    cents = parseUnits(text, 2);
  } catch (error) {
    if (error instanceof AmountError) throw new ChannelInputError(`thresholdUsd: ${error.message}`);
    throw error;
  }
  if (cents <= 0n) throw new ChannelInputError('thresholdUsd must be greater than 0');
  if (cents >= MAX_THRESHOLD_CENTS) throw new ChannelInputError('thresholdUsd is implausibly large');
  return cents;
}

/** undefined: the field was left out (the fee stays as it is); null: cleared. */
function parseFee(input: ChannelInput): Percent | null | undefined {
  const text = input.platformFeePercent;
  if (text === undefined || text === null) return text;
  try {
    // The very parse PLATFORM_FEE_PERCENT goes through: a channel's fee has the default's bounds and exactness.
    return parsePercent(text);
  } catch (error) {
    if (error instanceof AmountError) throw new ChannelInputError(`platformFeePercent: ${error.message}`);
    throw error;
  }
}

function normalizeAddress(format: string, address: string): string {
  if (!(ADDRESS_FORMATS as readonly string[]).includes(format))
    throw new Error(`supported_pairs has an unknown address format: ${format}`);
  const problem = checkAddress(format as AddressFormat, address);
  if (problem) throw new ChannelInputError(`walletAddress is not a valid ${format} address: ${problem}`);
  // One spelling per EVM address, so a wallet change is a real change and never a change of letter case.
  return format === 'evm' ? getAddress(address) : address;
}

function toChannel(row: Selectable<ChannelsTable>): Channel {
  return {
    channelId: row.channel_id,
    payoutStrategy: row.payout_strategy,
    thresholdUsd:
      row.threshold_usd_cents === null ? null : formatUnits(BigInt(row.threshold_usd_cents), 2, { fixed: true }),
    payoutCurrency: row.payout_currency,
    payoutNetwork: row.payout_network,
    walletAddress: row.wallet_address,
    walletChangedAt: row.wallet_changed_at === null ? null : row.wallet_changed_at.toISOString(),
    platformFeePercent: row.platform_fee_percent,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}
