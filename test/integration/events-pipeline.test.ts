/**
 * Events from the whole way on real parts, delivered by the worker to a local receiver: an instant payment credited
 * and paid out, a threshold channel's conversion, threshold and batch payout, a partial payment kept for review and a
 * wallet change; every event signed, in order per subject, with exact amounts, the same body as GET /api/events. A
 * receiver down for a while gets every event afterwards, once per id it acknowledged.
 */
import { describe, expect } from 'vitest';
import { EVENT_TYPES, verifyEventSignature, type EventType } from '../../src/events/index.ts';
import { instantEthChannel, usdtThresholdChannel } from '../support/api-seed.ts';
import { worldFirst, worldTest } from '../support/fixtures.ts';
import { fixtures, signed } from '../support/ipn.ts';
import { eventually } from '../support/outside.ts';
import { IPN_SECRET, type TestPayrail } from '../support/payrail.ts';
import { freshWallet } from '../support/payouts.ts';
import { startReceiver, type Received } from '../support/receiver.ts';

const it = worldFirst(
  worldTest({
    env: { CONVERSION_MIN_USD: '1', EVENTS_POLL_INTERVAL: '100ms', EVENTS_RETRY_MIN_DELAY: '200ms' },
    firstPaymentId: 9_700_000_000,
    firstChannel: 1_003_700_000_001,
  })
    // vitest reads a fixture's dependencies from its first parameter's pattern: this one has none.
    // eslint-disable-next-line no-empty-pattern
    .extend('receiver', async ({}, { onCleanup }) => {
      const receiver = await startReceiver();
      onCleanup(() => receiver.close());
      return receiver;
    }),
);

/** Registers a receiver for these event types: the endpoint's id, and the secret its deliveries are signed with. */
async function subscribe(
  payrail: TestPayrail,
  url: string,
  eventTypes: readonly EventType[],
): Promise<{ id: string; secret: string }> {
  const created = await payrail.request('POST', '/api/webhook-endpoints', { body: { url, eventTypes } });
  expect(created.status).toBe(201);
  return { id: created.body.id as string, secret: created.body.secret as string };
}

function typesOf(received: readonly Received[], subject: string): string[] {
  return received.filter((r) => r.event.subject === subject).map((r) => r.event.type);
}

describe('events from the pipeline', () => {
  it('are delivered signed, in order per subject, with the ids and exact amounts a bot needs', async ({
    start,
    channel,
    pay,
    nextPaymentId,
    receiver,
  }) => {
    const payrail = await start();
    const { secret } = await subscribe(payrail, receiver.url, EVENT_TYPES);

    const instant = await channel({ ...instantEthChannel(), walletAddress: freshWallet() });
    const paid = await pay(instant);
    const threshold = await channel({ ...usdtThresholdChannel('20'), walletAddress: freshWallet() });
    await pay(threshold);
    await pay(threshold);
    const partialId = nextPaymentId();
    const partial = signed(
      { ...structuredClone(fixtures.partially_paid), payment_id: partialId, order_id: `PGP-7|${instant}` },
      IPN_SECRET,
    );
    expect((await payrail.request('POST', '/webhooks/nowpayments', { ...partial, token: null })).status).toBeLessThan(
      300,
    );
    await channel({ ...instantEthChannel(), walletAddress: freshWallet() });

    await eventually(
      'the payouts completed and their events arrived',
      async () => {
        const types = receiver.acknowledged.map((r) => r.event.type);
        return (
          types.filter((t) => t === 'payout.completed').length === 2 && types.includes('channel.threshold_reached')
        );
      },
      90_000,
    );

    for (const r of receiver.received) {
      expect(verifyEventSignature({ secret, body: r.body, header: r.headers['payrail-signature'] as string })).toBe(
        true,
      );
    }
    expect(typesOf(receiver.received, `payment:${paid}`)).toEqual(['payment.received', 'payment.credited']);
    const credited = receiver.received.find(
      (r) => r.event.subject === `payment:${paid}` && r.event.type === 'payment.credited',
    )!.event;
    expect(credited.data).toMatchObject({
      paymentId: paid,
      channelId: instant,
      userId: '1',
      strategy: 'instant',
      topUp: false,
      net: { asset: 'eth', amount: '0.0047239' },
    });
    const instantPayout = receiver.received.filter(
      (r) => r.event.type.startsWith('payout.') && r.event.data.channelId === instant,
    );
    expect(instantPayout.map((r) => r.event.type)).toEqual(['payout.opened', 'payout.completed']);
    expect(instantPayout[1]!.event.data).toMatchObject({
      paymentId: paid,
      amount: { asset: 'eth', amount: '0.0047239' },
      payoutHash: expect.stringMatching(/^0x[0-9a-f]{64}$/),
    });

    // The two payments may go in one conversion or two: every share is in exactly one conversion.completed.
    const shares = receiver.received
      .filter((r) => r.event.type === 'conversion.completed')
      .flatMap((r) => r.event.data.shares as Array<{ channelId: string; sent: { amount: string } }>)
      .filter((s) => s.channelId === threshold);
    expect(shares.map((s) => s.sent.amount)).toEqual(['0.0047239', '0.0047239']);
    const reached = receiver.received.find((r) => r.event.type === 'channel.threshold_reached')!.event;
    expect(reached.data).toMatchObject({ channelId: threshold, thresholdUsd: '20', balance: { asset: 'usdt' } });

    expect(typesOf(receiver.received, `payment:${partialId}`)).toEqual([
      'payment.received',
      'payment.partially_paid',
      'payment.review',
    ]);
    expect(receiver.received.some((r) => r.event.type === 'channel.wallet_changed')).toBe(false);

    // Pulling gives the same bodies the webhooks carried.
    const pulled = await payrail.request('GET', '/api/events?limit=1000');
    const byId = new Map((pulled.body.events as Array<{ id: string }>).map((e) => [e.id, e]));
    for (const r of receiver.received) expect(byId.get(r.event.id)).toEqual(r.event);
  });

  it('a wallet change is an event; a receiver down for a while gets every event afterwards, once per id', async ({
    start,
    channel,
    pay,
    receiver,
  }) => {
    const payrail = await start();
    const endpoint = await subscribe(payrail, receiver.url, ['payment.credited', 'channel.wallet_changed']);
    receiver.answer(503);
    const body = { payoutStrategy: 'threshold', thresholdUsd: '1000', payoutCurrency: 'usdt', payoutNetwork: 'eth' };
    const id = await channel({ ...body, walletAddress: freshWallet() });
    const payments = [await pay(id), await pay(id), await pay(id)];
    const wallet = freshWallet();
    expect(
      (await payrail.request('PUT', `/api/channels/${id}`, { body: { ...body, walletAddress: wallet } })).status,
    ).toBe(200);
    await eventually('attempts failed while the receiver was down', async () => receiver.received.length >= 4);
    receiver.answer(200);
    await eventually('every event acknowledged', async () => receiver.acknowledged.length >= 4);
    // A while longer: nothing acknowledged is sent again.
    await new Promise((r) => setTimeout(r, 1_500));
    const acknowledged = receiver.acknowledged.map((r) => r.event.id);
    expect(new Set(acknowledged).size).toBe(acknowledged.length);
    expect(
      receiver.acknowledged
        .filter((r) => r.event.type === 'payment.credited')
        .map((r) => r.event.data.paymentId)
        .sort(),
    ).toEqual(payments.sort());
    const changed = receiver.acknowledged.find((r) => r.event.type === 'channel.wallet_changed')!.event;
    expect(changed.data).toMatchObject({ channelId: id, walletAddress: wallet, payoutCurrency: 'usdt' });
    const deliveries = await payrail.request('GET', `/api/webhook-endpoints/${endpoint.id}/deliveries`);
    expect(deliveries.body.deliveries.every((d: { status: string }) => d.status === 'delivered')).toBe(true);
    expect(deliveries.body.deliveries.some((d: { attempts: number }) => d.attempts > 1)).toBe(true);

    // Paying the channel now, below its threshold, opens a payout but reaches no threshold.
    const converted = async () =>
      (
        (await payrail.request('GET', '/api/events?type=conversion.completed&limit=1000')).body.events as Array<{
          data: { shares: Array<{ channelId: string }> };
        }>
      )
        .flatMap((e) => e.data.shares)
        .filter((share) => share.channelId === id).length;
    await eventually('the three payments converted', async () => (await converted()) === 3);
    const now = await payrail.request('POST', `/api/channels/${id}/payout`);
    expect(now.status).toBe(201);
    const opened = (await payrail.request('GET', '/api/events?type=payout.opened,channel.threshold_reached&limit=1000'))
      .body.events as Array<{ type: string; data: { channelId: string } }>;
    expect(opened.filter((e) => e.data.channelId === id).map((e) => e.type)).toEqual(['payout.opened']);
  });
});
