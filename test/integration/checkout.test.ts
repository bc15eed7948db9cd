/**
 * Checkout (POST /api/invoices) on real parts: payrail asks the NOWPayments simulator for an invoice over HTTP with its
 * own order id and IPN address, a subscriber pays it in the simulator, the simulator sends the signed IPNs (in and
 * out of order, one twice) and forwards the outcome on anvil, and the payment is confirmed with the simulator's API,
 * credited to the channel and user, and paid out. Bad input, a missing key and a wrong answer from NOWPayments store
 * nothing.
 */
import { describe, expect } from 'vitest';
import { verifyEventSignature } from '../../src/events/index.ts';
import { checkLedger } from '../../src/ledger/index.ts';
import { parseUnits } from '../../src/money/index.ts';
import { startNowPaymentsSimulator } from '../../src/simulators/index.ts';
import { worldFirst, worldTest } from '../support/fixtures.ts';
import { eventually, forwardOnChain } from '../support/outside.ts';
import { ADMIN_TOKEN, IPN_SECRET } from '../support/payrail.ts';
import { freshWallet } from '../support/payouts.ts';
import { startReceiver } from '../support/receiver.ts';

const API_KEY = 'test-nowpayments-api-key-0123456789';
const USER_ID = '6271402111';

const ethChannel = () => ({
  payoutStrategy: 'instant',
  payoutCurrency: 'eth',
  payoutNetwork: 'eth',
  walletAddress: freshWallet(),
});

// Each test names the fixtures it uses at its head (vitest builds only those), so those lists repeat on purpose.
const it = worldFirst(
  worldTest({ firstPaymentId: 9_600_000_000, firstChannel: 1_003_600_000_001 })
    // NOWPayments for the file: its invoices' outcomes reach the host wallet on the world's chain before `finished`.
    .extend('nowpayments', { scope: 'file' }, async ({ outside }, { onCleanup }) => {
      const sim = await startNowPaymentsSimulator({
        port: 0,
        apiKey: API_KEY,
        ipnSecret: IPN_SECRET,
        forwardOutcome: (wei) => forwardOnChain(outside, outside.hostAddress, wei),
      });
      onCleanup(() => sim.stop());
      return sim;
    })
    .extend('checkoutEnv', ({ nowpayments }) => ({
      NOWPAYMENTS_API_KEY: API_KEY,
      NOWPAYMENTS_API_URL: nowpayments.url,
    }))
    .extend('invoiceRows', ({ db }) => async () => {
      const { rows } = await db.pool.query<Record<string, string>>(
        `select invoice_id, channel_id, user_id, price_usd::text as price_usd, order_id, description, invoice_url,
                success_url, ipn_callback_url, created_by from invoices order by created_at, invoice_id`,
      );
      return rows;
    })
    // Where most tests begin: payrail with checkout on, and a channel to sell for.
    .extend('shop', async ({ start, channel, checkoutEnv }) => {
      const payrail = await start(checkoutEnv);
      return { payrail, channelId: await channel(ethChannel()) };
    }),
);

describe('checkout', () => {
  it('an invoice paid in the simulator is confirmed, credited to its channel and user, and paid out', async ({
    outside,
    db,
    start,
    channel,
    nowpayments,
    checkoutEnv,
    invoiceRows,
  }) => {
    const payrail = await start(checkoutEnv);
    const body = ethChannel();
    const channelId = await channel(body);
    const created = await payrail.request('POST', '/api/invoices', {
      body: {
        channelId,
        userId: USER_ID,
        priceUsd: '9.9',
        description: 'Premium, 30 days',
        successUrl: 'https://t.me/example_bot',
      },
    });
    expect(created.status).toBe(201);
    const orderId = `PGP-${USER_ID}|${channelId}`;
    expect(created.body).toEqual({
      invoiceId: expect.stringMatching(/^[1-9][0-9]*$/),
      invoiceUrl: `${nowpayments.url}/payment/?iid=${created.body.invoiceId}`,
      orderId,
      channelId,
      userId: USER_ID,
      priceUsd: '9.90',
    });
    const invoiceId = created.body.invoiceId as string;
    const ipnUrl = `${payrail.url}/webhooks/nowpayments`;
    // What NOWPayments was asked for: payrail's order id, its webhook, the exact price in USD.
    expect(nowpayments.invoices.get(invoiceId)).toMatchObject({
      order_id: orderId,
      price_amount: '9.9',
      price_currency: 'usd',
      ipn_callback_url: ipnUrl,
      order_description: 'Premium, 30 days',
      success_url: 'https://t.me/example_bot',
    });
    expect(await invoiceRows()).toContainEqual({
      invoice_id: invoiceId,
      channel_id: channelId,
      user_id: USER_ID,
      price_usd: '9.90',
      order_id: orderId,
      description: 'Premium, 30 days',
      invoice_url: created.body.invoiceUrl,
      success_url: 'https://t.me/example_bot',
      ipn_callback_url: ipnUrl,
      created_by: 'admin',
    });

    // The subscriber pays: waiting, confirming, finished, then a late confirming and finished's resend.
    const deliveries = ['waiting', 'confirming', 'finished', 'confirming', 'finished'];
    const apiCallsBefore = nowpayments.calls();
    const paying = await fetch(`${nowpayments.url}/sim/invoices/${invoiceId}/pay`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ deliveries }),
    });
    expect(paying.status).toBe(200);
    const paid = (await paying.json()) as Record<string, any>;
    // 9.90 USD at the simulator's 3000 USD/ETH, less NOWPayments' 0.5 % rounded up to 8 decimals.
    expect(paid).toMatchObject({
      invoiceId,
      orderId,
      payAmount: '0.0033',
      outcomeAmount: '0.0032835',
      outcomeCurrency: 'eth',
      outcomeForwarded: true,
    });
    expect(paid.deliveries).toEqual(deliveries.map((status) => ({ status, answer: 200 })));
    const paymentId = paid.paymentId as string;
    // NOWPayments' books hold the payment as finished, whatever copy came last.
    expect(nowpayments.payments.get(paymentId)).toMatchObject({ payment_status: 'finished', order_id: orderId });

    await eventually('the payment credited', async () => {
      const res = await payrail.request('GET', `/api/payments/${paymentId}`);
      return res.status === 200 && res.body.creditedAt !== null;
    });
    // Credited once NOWPayments' API agreed (payment_confirm), not on the IPN alone.
    expect(nowpayments.calls()).toBeGreaterThan(apiCallsBefore);
    const payment = (await payrail.request('GET', `/api/payments/${paymentId}`)).body;
    expect(payment).toMatchObject({
      paymentId,
      channelId,
      userId: USER_ID,
      orderId,
      status: 'finished',
      asset: 'eth',
      grossAmount: '0.0032835',
      payoutStrategy: 'instant',
      reviewReason: null,
    });
    // The ledger: the payment's credit moves the outcome from NOWPayments to the channel (net) and the platform (fee).
    const { rows: entries } = await db.pool.query<{ code: string; amount: string }>(
      `select a.code, e.amount::text as amount from ledger_journals j join ledger_entries e on e.journal_id = j.id
       join ledger_accounts a on a.id = e.account_id where j.ref = $1 and j.kind = 'payment_received'`,
      [paymentId],
    );
    const wei = (eth: string) => parseUnits(eth, 18);
    expect(entries).toContainEqual({ code: `channel:${channelId}`, amount: String(wei(payment.netAmount as string)) });
    expect(entries.reduce((sum, e) => sum + BigInt(e.amount), 0n)).toBe(0n);
    expect(wei(payment.netAmount as string) + wei(payment.feeAmount as string)).toBe(wei('0.0032835'));

    await eventually('the instant payout completed', async () => {
      const { payouts } = (await payrail.request('GET', `/api/payouts?channelId=${channelId}`)).body;
      return (payouts as Array<{ status: string }>).some((p) => p.status === 'completed');
    });
    const [payout] = (await payrail.request('GET', `/api/payouts?channelId=${channelId}`)).body.payouts;
    expect(payout).toMatchObject({ kind: 'instant', paymentId, status: 'completed', amount: payment.netAmount });
    expect(await outside.balanceOf(body.walletAddress)).toBe(wei(payment.netAmount as string));
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('bad input is a clear 4xx: nothing stored, NOWPayments not called', async ({
    db,
    start,
    shop,
    nowpayments,
    invoiceRows,
  }) => {
    const { payrail, channelId } = shop;
    // A channel row written outside the API, with no wallet to pay out to.
    const walletless = `-${1_003_600_900_001}`;
    await db.pool.query(
      `insert into channels (channel_id, payout_strategy, payout_currency, payout_network, wallet_address)
       values ($1, 'instant', 'eth', 'eth', '')`,
      [walletless],
    );
    const rowsBefore = await invoiceRows();
    const callsBefore = nowpayments.invoiceCalls();
    const ask = (body: unknown) => payrail.request('POST', '/api/invoices', { body });
    const good = { channelId, userId: USER_ID, priceUsd: '9.99' };

    expect(await ask({ ...good, channelId: '-1003699999999' })).toEqual({
      status: 404,
      body: { error: 'channel -1003699999999 not found' },
    });
    expect(await ask({ ...good, channelId: walletless })).toEqual({
      status: 409,
      body: {
        error: `channel ${walletless} has no wallet to pay out to: save its walletAddress first (PUT /api/channels/${walletless})`,
      },
    });

    const refused = async (body: unknown, field: string, message: string | RegExp) => {
      const res = await ask(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error, JSON.stringify(body)).toMatch(field);
      expect(res.body.error, JSON.stringify(body)).toMatch(message);
    };
    for (const priceUsd of ['0', '0.00', '-1', '9.999', '1e3', ' 9.99', '9.', '.5', '01.00', 'abc', ''])
      await refused({ ...good, priceUsd }, 'priceUsd', /US dollars|more than 0/);
    await refused({ ...good, priceUsd: '0.00' }, 'priceUsd', 'must be more than 0');
    await refused({ ...good, priceUsd: '100000.01' }, 'priceUsd', 'must be at most 100000');
    await refused({ ...good, priceUsd: 9.99 }, 'priceUsd', 'never a JSON number');
    // What an order id's user part accepts, and nothing that could reshape the order id.
    for (const userId of ['0', '-5', '012', 'abc', '1|-1003', '1'.repeat(21), ' 5', ''])
      await refused({ ...good, userId }, 'userId', 'Telegram user id');
    await refused({ ...good, userId: 6271402111 }, 'userId', 'as a string');
    await refused({ ...good, channelId: 'my-channel' }, 'channelId', 'Telegram chat id');
    await refused({ ...good, description: '' }, 'description', /too small|at least/i);
    await refused({ ...good, successUrl: 'javascript:alert(1)' }, 'successUrl', 'http:// or https://');
    await refused({ ...good, currency: 'eur' }, 'body', /unrecognized|currency/i);
    await refused({ userId: USER_ID, priceUsd: '9.99' }, 'channelId', 'as a string');

    // Without the key checkout cannot ask NOWPayments anything.
    const keyless = await start();
    expect(await keyless.request('POST', '/api/invoices', { body: good })).toEqual({
      status: 503,
      body: { error: 'checkout needs NOWPAYMENTS_API_KEY' },
    });
    // A NOWPayments elsewhere cannot reach payrail's listening address: PUBLIC_URL is needed.
    const remote = await start({
      NOWPAYMENTS_API_KEY: API_KEY,
      NOWPAYMENTS_API_URL: 'https://api.nowpayments.invalid',
    });
    const noPublicUrl = await remote.request('POST', '/api/invoices', { body: good });
    expect(noPublicUrl.status).toBe(503);
    expect(noPublicUrl.body.error).toMatch(/^checkout needs PUBLIC_URL/);

    expect(await invoiceRows()).toEqual(rowsBefore);
    expect(nowpayments.invoiceCalls()).toBe(callsBefore);
  });

  it('NOWPayments refusing, failing or answering another invoice than asked: 502, nothing stored', async ({
    start,
    shop,
    nowpayments,
    checkoutEnv,
    invoiceRows,
  }) => {
    const { payrail, channelId } = shop;
    const rowsBefore = await invoiceRows();
    const good = { channelId, userId: USER_ID, priceUsd: '4.99' };
    const ask = () => payrail.request('POST', '/api/invoices', { body: good });

    nowpayments.answerNextInvoiceWith({ order_id: `PGP-1|${channelId}` });
    const otherOrder = await ask();
    expect(otherOrder.status).toBe(502);
    expect(otherOrder.body.error).toMatch(
      new RegExp(`has order_id PGP-1\\|${channelId}, not PGP-${USER_ID}\\|${channelId}\\): not handed out`),
    );

    nowpayments.answerNextInvoiceWith({ price_amount: '49.9' });
    const otherPrice = await ask();
    expect(otherPrice.status).toBe(502);
    expect(otherPrice.body.error).toMatch('price_amount 49.9, not 4.99');

    nowpayments.answerNextInvoiceWith({ price_currency: 'eur' });
    const otherCurrency = await ask();
    expect(otherCurrency.status).toBe(502);
    expect(otherCurrency.body.error).toMatch('price_currency eur, not usd');

    await nowpayments.setFault('5xx');
    const down = await ask();
    expect(down.status).toBe(502);
    expect(down.body.error).toMatch(/^NOWPayments gave no invoice: HTTP 503/);
    await nowpayments.setFault('none');

    const wrongKey = await start({ ...checkoutEnv, NOWPAYMENTS_API_KEY: 'another-nowpayments-key-0123456789' });
    const refusedByKey = await wrongKey.request('POST', '/api/invoices', { body: good });
    expect(refusedByKey.status).toBe(502);
    expect(refusedByKey.body.error).toMatch(
      /^NOWPayments refused the invoice: HTTP 403 \(is NOWPAYMENTS_API_KEY right\?\)/,
    );

    expect(await invoiceRows()).toEqual(rowsBefore);
  });

  it('an Idempotency-Key replays the first answer: one NOWPayments invoice, one row', async ({
    shop,
    nowpayments,
    invoiceRows,
  }) => {
    const { payrail, channelId } = shop;
    const body = JSON.stringify({ channelId, userId: USER_ID, priceUsd: '19.00' });
    const post = (key: string, text = body) =>
      fetch(`${payrail.url}/api/invoices`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json', 'idempotency-key': key },
        body: text,
      });
    const callsBefore = nowpayments.invoiceCalls();
    const first = await post('checkout-1');
    expect(first.status).toBe(201);
    const firstBody = await first.text();
    const again = await post('checkout-1');
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.text()).toBe(firstBody);
    expect(nowpayments.invoiceCalls()).toBe(callsBefore + 1);
    const { invoiceId } = JSON.parse(firstBody) as { invoiceId: string };
    expect((await invoiceRows()).filter((r) => r.invoice_id === invoiceId)).toHaveLength(1);
    expect((await invoiceRows()).filter((r) => r.channel_id === channelId)).toHaveLength(1);

    // The same key for another request is refused, and asks NOWPayments nothing.
    const other = await post('checkout-1', JSON.stringify({ channelId, userId: USER_ID, priceUsd: '29.00' }));
    expect(other.status).toBe(422);
    expect(nowpayments.invoiceCalls()).toBe(callsBefore + 1);
    // Without a key, a second request is a second purchase: another invoice.
    const second = await payrail.request('POST', '/api/invoices', { body: JSON.parse(body) });
    expect(second.status).toBe(201);
    expect(second.body.invoiceId).not.toBe(invoiceId);
  });

  it('PUBLIC_URL is where NOWPayments sends the IPNs', async ({ start, channel, nowpayments, checkoutEnv }) => {
    const payrail = await start({ ...checkoutEnv, PUBLIC_URL: 'https://pay.example.com/' });
    const channelId = await channel(ethChannel());
    const res = await payrail.request('POST', '/api/invoices', {
      body: { channelId, userId: USER_ID, priceUsd: '1.00' },
    });
    expect(res.status).toBe(201);
    expect(nowpayments.invoices.get(res.body.invoiceId)).toMatchObject({
      ipn_callback_url: 'https://pay.example.com/webhooks/nowpayments',
    });
  });

  it("the platform's whole way: invoice, payment, and its payment.credited and payout.completed delivered signed", async ({
    start,
    channel,
    nowpayments,
    checkoutEnv,
  }) => {
    const payrail = await start({ ...checkoutEnv, EVENTS_POLL_INTERVAL: '100ms' });
    const receiver = await startReceiver();
    try {
      const endpoint = await payrail.request('POST', '/api/webhook-endpoints', {
        body: { url: receiver.url, eventTypes: ['payment.credited', 'payout.completed'] },
      });
      expect(endpoint.status).toBe(201);
      const channelId = await channel(ethChannel());
      const created = await payrail.request('POST', '/api/invoices', {
        body: { channelId, userId: USER_ID, priceUsd: '4.99' },
      });
      expect(created.status).toBe(201);
      const paying = await fetch(`${nowpayments.url}/sim/invoices/${created.body.invoiceId}/pay`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      expect(paying.status).toBe(200);
      const { paymentId } = (await paying.json()) as { paymentId: string };
      await eventually('payout.completed delivered', async () =>
        receiver.acknowledged.some((r) => r.event.type === 'payout.completed'),
      );
      const credited = receiver.acknowledged.filter((r) => r.event.type === 'payment.credited');
      // The bot's grant: exactly once for this payment, with its channel and user, signed with the endpoint's secret.
      expect(credited.map((r) => r.event.data)).toEqual([
        expect.objectContaining({ paymentId, channelId, userId: USER_ID, orderId: created.body.orderId }),
      ]);
      for (const r of receiver.acknowledged)
        expect(
          verifyEventSignature({
            secret: endpoint.body.secret as string,
            body: r.body,
            header: r.headers['payrail-signature'] as string,
          }),
        ).toBe(true);
      const completed = receiver.acknowledged.find((r) => r.event.type === 'payout.completed')!.event.data;
      expect(completed).toMatchObject({ channelId, paymentId, payoutHash: expect.stringMatching(/^0x[0-9a-f]{64}$/) });
    } finally {
      await receiver.close();
    }
  });
});
