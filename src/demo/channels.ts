/**
 * The demo's channels: both strategies, payout currencies and networks that take every route a payout has (a direct
 * transfer from the host wallet, or an exchange through ChangeNow), each owner with a fresh wallet drawn from the seed.
 */
import { createHash } from 'node:crypto';
import { privateKeyToAccount } from 'viem/accounts';
import type { Rng } from '../simulators/index.ts';

export interface DemoChannel {
  readonly id: string;
  readonly strategy: 'threshold' | 'instant';
  readonly payoutCurrency: string;
  readonly payoutNetwork: string;
  readonly walletAddress: string;
  /** Threshold channels only: the balance in US cents at which a payout batch is made. */
  readonly thresholdCents?: bigint;
  /** How a payout reaches the owner, for the channel table the demo prints. */
  readonly route: string;
}

interface Profile {
  strategy: 'threshold' | 'instant';
  currency: string;
  network: string;
  thresholdUsd?: bigint;
  route: string;
}

/**
 * Strategies alternate, so any two channels show both. Thresholds are a few times a typical payment (5–49 USD), so
 * a channel gets a batch or two during the stream and one more at its end.
 */
const PROFILES: readonly Profile[] = [
  {
    strategy: 'threshold',
    currency: 'usdt',
    network: 'eth',
    thresholdUsd: 100n,
    route: 'USDT ERC-20, direct from the host wallet',
  },
  { strategy: 'instant', currency: 'eth', network: 'eth', route: 'ETH, direct from the host wallet' },
  {
    strategy: 'threshold',
    currency: 'usdt',
    network: 'trx',
    thresholdUsd: 150n,
    route: 'USDT -> USDT TRC-20 via ChangeNow',
  },
  { strategy: 'instant', currency: 'usdt', network: 'trx', route: 'ETH -> USDT TRC-20 via ChangeNow' },
  {
    strategy: 'threshold',
    currency: 'eth',
    network: 'eth',
    thresholdUsd: 200n,
    route: 'USDT -> ETH via ChangeNow (paid on the local chain)',
  },
  { strategy: 'instant', currency: 'btc', network: 'btc', route: 'ETH -> BTC via ChangeNow' },
  { strategy: 'threshold', currency: 'btc', network: 'btc', thresholdUsd: 250n, route: 'USDT -> BTC via ChangeNow' },
  { strategy: 'instant', currency: 'sol', network: 'sol', route: 'ETH -> SOL via ChangeNow' },
  { strategy: 'threshold', currency: 'sol', network: 'sol', thresholdUsd: 120n, route: 'USDT -> SOL via ChangeNow' },
  {
    strategy: 'threshold',
    currency: 'usdt',
    network: 'bsc',
    thresholdUsd: 180n,
    route: 'USDT -> USDT BEP-20 via ChangeNow',
  },
];

const FIRST_CHANNEL_ID = -1001500000001n;

export function demoChannels(rng: Rng, count: number): DemoChannel[] {
  const channels: DemoChannel[] = [];
  for (let i = 0; i < count; i++) {
    const profile = PROFILES[i % PROFILES.length] as Profile;
    channels.push({
      id: (FIRST_CHANNEL_ID - BigInt(i)).toString(),
      strategy: profile.strategy,
      payoutCurrency: profile.currency,
      payoutNetwork: profile.network,
      walletAddress: freshAddress(rng, profile.network),
      ...(profile.thresholdUsd !== undefined && { thresholdCents: profile.thresholdUsd * 100n }),
      route: profile.route,
    });
  }
  return channels;
}

/** The body of PUT /api/channels/:id. */
export function channelBody(channel: DemoChannel): Record<string, string> {
  return {
    payoutStrategy: channel.strategy,
    ...(channel.thresholdCents !== undefined && {
      thresholdUsd: `${channel.thresholdCents / 100n}.${(channel.thresholdCents % 100n).toString().padStart(2, '0')}`,
    }),
    payoutCurrency: channel.payoutCurrency,
    payoutNetwork: channel.payoutNetwork,
    walletAddress: channel.walletAddress,
  };
}

/** PUT /api/channels/<id> with an admin token: anything but 200 or 201 is an error naming the answer. */
export async function putChannel(
  payrailUrl: string,
  adminToken: string,
  channelId: string,
  body: Record<string, string>,
): Promise<void> {
  const put = await fetch(`${payrailUrl}/api/channels/${channelId}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (put.status !== 200 && put.status !== 201)
    throw new Error(`PUT /api/channels/${channelId} answered ${put.status}: ${await put.text()}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Fresh owner wallets: well-formed for their network (payrail checks the format and checksum before paying)

function randomBytes(rng: Rng, n: number): Uint8Array {
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) bytes[i] = rng.int(0, 255);
  return bytes;
}

function freshAddress(rng: Rng, network: string): string {
  switch (network) {
    case 'eth':
    case 'bsc':
      return privateKeyToAccount(rng.hex32()).address;
    case 'trx':
      // A Tron address is the EVM address of the same key behind a 0x41 byte, in base58check.
      return base58check(
        Uint8Array.from([0x41, ...Buffer.from(privateKeyToAccount(rng.hex32()).address.slice(2), 'hex')]),
      );
    case 'btc':
      // Legacy P2PKH: version 0x00 and a 20-byte key hash.
      return base58check(Uint8Array.from([0x00, ...randomBytes(rng, 20)]));
    case 'sol': {
      // An ed25519 public key: 32 bytes in base58 (a first byte above zero keeps it 43–44 characters long).
      const key = randomBytes(rng, 32);
      key[0] = rng.int(1, 255);
      return base58(key);
    }
    default:
      throw new Error(`no fresh address for network ${network}`);
  }
}

const BASE58_ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

function base58(bytes: Uint8Array): string {
  let n = BigInt(`0x${Buffer.from(bytes).toString('hex') || '0'}`);
  let out = '';
  while (n > 0n) {
    out = (BASE58_ALPHABET[Number(n % 58n)] as string) + out;
    n /= 58n;
  }
  // Each leading zero byte is written as a leading '1'.
  for (let i = 0; i < bytes.length && bytes[i] === 0; i++) out = `1${out}`;
  return out;
}

function base58check(payload: Uint8Array): string {
  const sha = (data: Uint8Array) => createHash('sha256').update(data).digest();
  return base58(Uint8Array.from([...payload, ...sha(sha(payload)).subarray(0, 4)]));
}
