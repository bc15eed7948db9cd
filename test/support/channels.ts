/** Channels registered through the API as a file's first step, each expected new: a 200 would mean the id was taken. */
import { expect } from 'vitest';
import type { TestPayrail } from './payrail.ts';

/** PUT /api/channels/:id, expecting the channel created (201), not an existing one updated. */
export async function createChannel(payrail: TestPayrail, id: string, body: Record<string, unknown>): Promise<void> {
  const res = await payrail.request('PUT', `/api/channels/${id}`, { body });
  expect(res.status, `PUT /api/channels/${id}: ${JSON.stringify(res.body)}`).toBe(201);
}

/** A channel's id and the currency it pays out, on eth. */
export type ChannelOf = [id: string, payoutCurrency: 'eth' | 'usdt'];

/** The two channels a file's payments go to, both paying `walletAddress`: a threshold one (100.00 USD) first. */
export async function createChannelPair(
  payrail: TestPayrail,
  channels: { threshold: ChannelOf; instant: ChannelOf },
  walletAddress: string,
): Promise<void> {
  const [thresholdId, thresholdCurrency] = channels.threshold;
  const [instantId, instantCurrency] = channels.instant;
  await createChannel(payrail, thresholdId, {
    payoutStrategy: 'threshold',
    thresholdUsd: '100.00',
    payoutCurrency: thresholdCurrency,
    payoutNetwork: 'eth',
    walletAddress,
  });
  await createChannel(payrail, instantId, {
    payoutStrategy: 'instant',
    payoutCurrency: instantCurrency,
    payoutNetwork: 'eth',
    walletAddress,
  });
}
