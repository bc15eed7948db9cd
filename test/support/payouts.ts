/** Small steps the payout tests share: a fresh owner wallet, a channel saved, a finished IPN sent. */
import { expect } from 'vitest';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { ipnBody, signed } from './ipn.ts';
import { IPN_SECRET, type TestPayrail } from './payrail.ts';

export const TRON_WALLET = 'TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7';

/** A threshold channel's body, paying out USDT on Tron once it holds `thresholdUsd`. */
export function tronThreshold(thresholdUsd: string): Record<string, unknown> {
  return {
    payoutStrategy: 'threshold',
    thresholdUsd,
    payoutCurrency: 'usdt',
    payoutNetwork: 'trx',
    walletAddress: TRON_WALLET,
  };
}

export function freshWallet(): string {
  return privateKeyToAccount(generatePrivateKey()).address;
}

/** PUT /api/channels/:id, expecting it saved (created or updated). */
export async function saveChannel(payrail: TestPayrail, id: string, body: Record<string, unknown>): Promise<string> {
  const res = await payrail.request('PUT', `/api/channels/${id}`, { body });
  expect([200, 201]).toContain(res.status);
  return id;
}

/**
 * A signed finished IPN for the channel, expecting it recorded (200); returns the payment id. Its outcome reaches the
 * host wallet on chain first, as NOWPayments forwards it before `finished`; `afterForward` runs between the two (a test
 * that empties the host wallet does it there, so the forward cannot pay what the test means to leave unpaid).
 */
export async function sendFinished(
  payrail: TestPayrail,
  paymentId: number,
  channelId: string,
  options: { afterForward?: () => Promise<void> } = {},
): Promise<string> {
  const body = ipnBody({ payment_id: paymentId, order_id: `PGP-1|${channelId}` });
  const { raw, headers } = signed(body, IPN_SECRET);
  await payrail.forwardOutcome(raw);
  await options.afterForward?.();
  const res = await payrail.request('POST', '/webhooks/nowpayments', { raw, headers, token: null });
  expect(res.status).toBe(200);
  return String(body.payment_id);
}
