/**
 * What the intake tests that call payrail in-process feed it: a channel's input as the admin route parses it, and a
 * finished IPN signed and read as the webhook reads it.
 */
import { channelInputSchema, type ChannelInput } from '../../src/channels/index.ts';
import { readIpn, type Ipn } from '../../src/integrations/nowpayments/index.ts';
import { WALLET } from './api-seed.ts';
import { ipnBody, signed } from './ipn.ts';

/**
 * A channel paying USDT out on eth to the test wallet: each payment at once, or at a threshold no test reaches. A fee
 * given (null included) is the channel's own; none given leaves the field out.
 */
export function usdtChannelInput(strategy: 'instant' | 'threshold', fee?: string | null): ChannelInput {
  return channelInputSchema.parse({
    payoutStrategy: strategy,
    ...(strategy === 'threshold' && { thresholdUsd: '100000.00' }),
    payoutCurrency: 'usdt',
    payoutNetwork: 'eth',
    walletAddress: WALLET,
    ...(fee !== undefined && { platformFeePercent: fee }),
  });
}

/** NOWPayments' finished IPN (the fixture's amounts) of one payment to a channel, signed with `secret` and read. */
export function finishedIpn(paymentId: number, channelId: string, secret: string): Ipn {
  const { raw, headers } = signed(ipnBody({ payment_id: paymentId, order_id: `PGP-6271402111|${channelId}` }), secret);
  const reading = readIpn(raw, headers['x-nowpayments-sig'], secret);
  if (!reading.ok) throw new Error(reading.error);
  return reading.ipn;
}
