/**
 * The manual side of conversions on real parts (IPNs over HTTP, the ChangeNow simulator over HTTP, transfers on
 * anvil): reading conversions, and retrying one in review, kept in the audit log under the acting token's name.
 * Where the ETH is decides the retry: mined to ChangeNow → looked at again; never sent → payments back to the next
 * batch; on its way → refused (409, nothing changed, nothing logged).
 */
import { describe, expect } from 'vitest';
import { checkLedger } from '../../src/ledger/index.ts';
import { toReview } from '../../src/pipeline/conversion/run.ts';
import type { StageDeps } from '../../src/pipeline/index.ts';
import { rpc } from '../../src/simulators/index.ts';
import { conversionAnsweredOn, exchangesOf, readUntilStatus, usdtThreshold } from '../support/conversions.ts';
import { worldFirst, worldTest } from '../support/fixtures.ts';
import { eventually, SIM_API_KEY } from '../support/outside.ts';

const ALICE = 'alice-admin-token-0123456789';
/** What ChangeNow's simulator gives for one fixture payment's net ETH (0.0047239) in USDT units: × 3000 − 1. */
const NET_AS_USDT_UNITS = '13171700';

type Conversion = Record<string, any>;

const it = worldFirst(
  worldTest({
    env: { CONVERSION_MIN_USD: '1', ADMIN_TOKENS: `alice:${ALICE}` },
    firstPaymentId: 9_500_000_000,
    firstChannel: 1_003_500_000_001,
  })
    /** A threshold channel far from its threshold: its USDT stays on its balance, no payout interferes. */
    .extend(
      'thresholdChannel',
      ({ channel }) =>
        () =>
          channel(usdtThreshold()),
    )
    .extend('conversionIdsOf', ({ db }) => async (paymentId: string): Promise<string[]> => {
      const { rows } = await db.pool.query<{ conversion_id: string }>(
        'select c.conversion_id from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1 order by c.created_at',
        [paymentId],
      );
      return rows.map((r) => r.conversion_id);
    })
    .extend('get', ({ app }) => async (conversionId: string): Promise<Conversion> => {
      const res = await app.payrail.request('GET', `/api/conversions/${conversionId}`);
      expect(res.status).toBe(200);
      return res.body;
    })
    .extend(
      'reaches',
      ({ get }) =>
        (conversionId: string, status: string, timeoutMs?: number) =>
          readUntilStatus(`conversion ${conversionId}`, () => get(conversionId), status, timeoutMs),
    )
    /** The payment's (first) conversion, once it exists. */
    .extend('conversionOf', ({ conversionIdsOf }) => async (paymentId: string): Promise<string> => {
      await eventually(
        `a conversion for payment ${paymentId}`,
        async () => (await conversionIdsOf(paymentId)).length > 0,
      );
      return (await conversionIdsOf(paymentId))[0] as string;
    })
    .extend('conversionAnswered', ({ outside, channel, pay, conversionOf }) =>
      conversionAnsweredOn({ outside, channel, pay, conversionOf }),
    )
    .extend(
      'retry',
      ({ app }) =>
        (conversionId: string, token: string | null = ALICE) =>
          app.payrail.request('POST', `/api/conversions/${conversionId}/retry`, { token }),
    )
    .extend(
      'resolve',
      ({ app }) =>
        (conversionId: string, body: unknown, token: string | null = ALICE) =>
          app.payrail.request('POST', `/api/conversions/${conversionId}/resolve`, { token, body }),
    )
    .extend(
      'auditOf',
      ({ db }) =>
        (subject: string) =>
          db.db
            .selectFrom('audit_log')
            .select(['actor', 'action', 'details'])
            .where('subject', '=', subject)
            .orderBy('id')
            .execute(),
    )
    .extend('payment', ({ db }) => async (paymentId: string) => {
      const { rows } = await db.pool.query(
        'select conversion_status, conversion_id, conversion_hold_until from payments where payment_id = $1',
        [paymentId],
      );
      return rows[0];
    })
    .extend('channelUsdt', ({ db }) => async (channelId: string): Promise<string> => {
      const { rows } = await db.pool.query(
        "select balance::text from ledger_accounts where code = $1 and asset = 'usdt'",
        [`channel:${channelId}`],
      );
      return rows[0]?.balance ?? '0';
    })
    .extend(
      'exchangesFor',
      ({ outside }) =>
        (conversionId: string) =>
          exchangesOf(outside, conversionId),
    )
    /** As the reconciler does with a conversion stuck before its ETH is known to have left: its own review path. */
    .extend(
      'review',
      ({ db }) =>
        (conversionId: string, reason: string) =>
          toReview({ db: db.db } as unknown as StageDeps, conversionId, reason, null),
    )
    /**
     * A conversion sent to review while its transfer is broadcast and not mined (mining paused: the caller resumes it),
     * as the reconciler does with one stuck before its ETH is known to have left.
     */
    .extend(
      'inReviewWhileBroadcast',
      ({ outside, start, thresholdChannel, pay, conversionOf, get, review }) =>
        async (env: Record<string, string> = {}): Promise<{ channelId: string; paymentId: string; id: string }> => {
          await start(env);
          const channelId = await thresholdChannel();
          await rpc(outside.chain.rpcUrl, 'evm_setAutomine', [false]);
          const paymentId = await pay(channelId);
          const id = await conversionOf(paymentId);
          await eventually('its transfer broadcast', async () => (await get(id)).transferStatus === 'broadcast');
          await review(id, 'stuck in exchange_created; its transfer is broadcast');
          return { channelId, paymentId, id };
        },
    )
    /** A payrail started afresh, and a new threshold channel's conversion in review after ChangeNow failed its exchange. */
    .extend('failedInReview', ({ start, conversionAnswered, reaches }) => async () => {
      const payrail = await start();
      const answered = await conversionAnswered('failed');
      return { payrail, ...answered, inReview: await reaches(answered.id, 'needs_review') };
    })
    /** Waits until the payment is converted again, by a batch after its conversion failed. */
    .extend(
      'convertedAgain',
      ({ payment }) =>
        async (paymentId: string, what = 'converted again by the next batch', timeoutMs?: number) =>
          eventually(what, async () => (await payment(paymentId)).conversion_status === 'completed', timeoutMs),
    )
    /** The channel holds `units` of USDT, and the ledger is consistent. */
    .extend('expectUsdtSettled', ({ db, channelUsdt }) => async (channelId: string, units: string) => {
      expect(await channelUsdt(channelId)).toBe(units);
      expect((await checkLedger(db.db)).problems).toEqual([]);
    }),
);

describe('conversion review', () => {
  it('reads conversions; retry after a failed exchange whose ETH was mined: back to sent, the poll decides (review again, then settled once ChangeNow finished it)', async ({
    get,
    reaches,
    retry,
    auditOf,
    payment,
    exchangesFor,
    failedInReview,
    expectUsdtSettled,
  }) => {
    const { payrail, channelId, paymentId, id, inReview } = await failedInReview();
    expect(inReview).toMatchObject({
      conversionId: id,
      reason: 'exchange failed; the ETH sent has not come back',
      amountEth: '0.0047239',
      expectedUsdt: '13.1717',
      usdtReceived: null,
      paymentCount: 1,
      transferStatus: 'confirmed',
      exchangeId: expect.any(String),
    });
    const listed = await payrail.request('GET', '/api/conversions?status=needs_review&limit=500');
    expect(listed.status).toBe(200);
    expect(listed.body.conversions.map((c: Conversion) => c.conversionId)).toContain(id);
    expect(listed.body.conversions.every((c: Conversion) => c.status === 'needs_review')).toBe(true);
    expect((await payrail.request('GET', '/api/conversions?status=bogus')).status).toBe(400);
    expect((await payrail.request('GET', '/api/conversions?limit=0')).status).toBe(400);
    expect(await payment(paymentId)).toMatchObject({ conversion_status: 'failed', conversion_id: id });

    // ChangeNow still reports it failed: the poll sends it back to review, with its reason.
    const first = await retry(id);
    expect(first.status).toBe(200);
    expect(first.body.conversionId).toBe(id);
    expect(await auditOf(id)).toEqual([
      {
        actor: 'alice',
        action: 'conversion.retry',
        details: {
          from: 'needs_review',
          to: 'sent',
          reason: 'exchange failed; the ETH sent has not come back',
          transfer: { id: expect.any(String), status: 'confirmed' },
        },
      },
    ]);
    await eventually('back in review', async () => {
      const c = await get(id);
      return c.status === 'needs_review' && c.reason === 'exchange failed; the ETH sent has not come back';
    });
    expect(await payment(paymentId)).toMatchObject({ conversion_status: 'failed', conversion_id: id });

    // ChangeNow's support finishes the swap after all: the next retry's poll verifies the USDT on chain and settles.
    const [exchange] = exchangesFor(id);
    Object.assign(exchange!, { status: 'sending', forcedEnd: null });
    expect((await retry(id)).status).toBe(200);
    const settled = await reaches(id, 'completed');
    expect(settled).toMatchObject({
      usdtReceived: '13.1717',
      reason: null,
      payoutHash: expect.stringMatching(/^0x[0-9a-f]{64}$/),
    });
    expect(await payment(paymentId)).toMatchObject({ conversion_status: 'completed', conversion_id: id });
    await expectUsdtSettled(channelId, NET_AS_USDT_UNITS);
    expect(exchangesFor(id)).toHaveLength(1);
    expect((await auditOf(id)).map((a) => a.details)).toMatchObject([
      { to: 'sent' },
      { from: 'needs_review', to: 'sent' },
    ]);

    // Completed: nothing to retry, nothing logged.
    const refused = await retry(id);
    expect(refused.status).toBe(409);
    expect(refused.body.error).toBe(`cannot retry conversion ${id}: a conversion in state completed cannot be retried`);
    expect(await auditOf(id)).toHaveLength(2);
  });

  it('retry with no transfer (ChangeNow held two exchanges for it): failed, payments pending again, converted by the next batch with one exchange more', async ({
    outside,
    db,
    start,
    pay,
    thresholdChannel,
    conversionIdsOf,
    get,
    reaches,
    conversionOf,
    retry,
    auditOf,
    payment,
    exchangesFor,
    convertedAgain,
    expectUsdtSettled,
  }) => {
    // Converted at once, without an estimate: the batch does not need ChangeNow before the exchange request.
    await start({ CONVERSION_MAX_WAIT: '1ms' });
    const channelId = await thresholdChannel();
    await outside.sim.setFault('5xx');
    const paymentId = await pay(channelId);
    const id = await conversionOf(paymentId);
    await eventually('the exchange request failed', async () => {
      const { rows } = await db.pool.query('select status, last_error from conversions where conversion_id = $1', [id]);
      return rows[0]?.status === 'exchange_requested' && rows[0]?.last_error !== null;
    });
    // Two exchanges for it at ChangeNow (requests that got through although their answers were lost): the stage's
    // next attempt finds them and sends the conversion to review; neither is ever funded.
    await outside.sim.setFault('none');
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${outside.sim.url}/v2/exchange`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-changenow-api-key': SIM_API_KEY },
        body: JSON.stringify({
          fromCurrency: 'eth',
          fromNetwork: 'eth',
          toCurrency: 'usdt',
          toNetwork: 'eth',
          fromAmount: '0.0047239',
          address: outside.hostAddress,
          refundAddress: outside.hostAddress,
          userId: id,
        }),
      });
      expect(res.status).toBe(200);
    }
    const inReview = await reaches(id, 'needs_review');
    expect(inReview).toMatchObject({
      reason: 'ChangeNow holds 2 exchanges for this conversion',
      transferStatus: null,
      exchangeId: null,
    });
    expect(await payment(paymentId)).toMatchObject({ conversion_status: 'failed', conversion_id: id });
    const exchangesBefore = outside.sim.exchanges.size;

    const res = await retry(id);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      conversionId: id,
      status: 'failed',
      reason: expect.stringMatching(
        /^retried by alice: no transfer was made, its ETH never left; payments back to pending \(was: ChangeNow holds 2 exchanges/,
      ),
    });
    expect(await auditOf(id)).toEqual([
      {
        actor: 'alice',
        action: 'conversion.retry',
        details: {
          from: 'needs_review',
          to: 'failed',
          reason: 'ChangeNow holds 2 exchanges for this conversion',
          transfer: null,
        },
      },
    ]);

    // The batch queued with the retry takes the payment: a second conversion, one more exchange, settled.
    await convertedAgain(paymentId, 'converted by the next batch');
    const ids = await conversionIdsOf(paymentId);
    expect(ids).toHaveLength(2);
    expect(ids[0]).toBe(id);
    expect((await get(ids[1]!)).status).toBe('completed');
    expect(outside.sim.exchanges.size).toBe(exchangesBefore + 1);
    expect(exchangesFor(ids[1]!)).toHaveLength(1);
    expect(exchangesFor(id).every((e) => e.status === 'waiting')).toBe(true);
    await expectUsdtSettled(channelId, NET_AS_USDT_UNITS);
    expect((await retry(id)).status).toBe(409);
  });

  it('refuses while the transfer is unconfirmed and from sent (409, nothing changed or logged); once mined, retry looks again and settles; 404, 400, 401', async ({
    outside,
    db,
    app,
    get,
    reaches,
    retry,
    auditOf,
    payment,
    channelUsdt,
    review,
    inReviewWhileBroadcast,
    expectUsdtSettled,
  }) => {
    const { channelId, paymentId, id } = await inReviewWhileBroadcast();

    const before = await db.pool.query('select status, reason, updated_at from conversions where conversion_id = $1', [
      id,
    ]);
    const refused = await retry(id);
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatch(
      new RegExp(
        `^cannot retry conversion ${id}: its transfer \\S+ is broadcast: its own jobs and the reconciler follow it`,
      ),
    );
    expect(
      (await db.pool.query('select status, reason, updated_at from conversions where conversion_id = $1', [id])).rows,
    ).toEqual(before.rows);
    expect(await payment(paymentId)).toMatchObject({ conversion_status: 'failed', conversion_id: id });
    expect(await auditOf(id)).toEqual([]);

    // Mined: the ETH is at ChangeNow. ChangeNow unreachable, the retried conversion stays sent, and is refused there.
    await outside.sim.setFault('5xx');
    await rpc(outside.chain.rpcUrl, 'evm_mine', []);
    await rpc(outside.chain.rpcUrl, 'evm_setAutomine', [true]);
    await eventually('its transfer confirmed', async () => (await get(id)).transferStatus === 'confirmed');
    expect((await get(id)).status).toBe('needs_review');
    const res = await retry(id);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'sent', reason: null, transferStatus: 'confirmed' });
    expect(await payment(paymentId)).toMatchObject({ conversion_status: 'converting', conversion_id: id });
    const deadline = Date.parse(res.body.pollDeadlineAt);
    expect(deadline).toBeGreaterThan(Date.now() + 3_600_000);
    const fromSent = await retry(id);
    expect(fromSent.status).toBe(409);
    expect(fromSent.body.error).toBe(`cannot retry conversion ${id}: a conversion in state sent cannot be retried`);
    expect(await auditOf(id)).toHaveLength(1);

    await outside.sim.setFault('none');
    await reaches(id, 'completed');
    await expectUsdtSettled(channelId, NET_AS_USDT_UNITS);

    // A poll that read `sent` before another run settled (a reaped worker still alive) decides on review late: the
    // completed conversion stays completed, so no retry can settle it a second time.
    expect(await review(id, 'a late poll: exchange still exchanging past the poll deadline')).toBe(false);
    expect(await get(id)).toMatchObject({ status: 'completed', reason: null });
    expect(await payment(paymentId)).toMatchObject({ conversion_status: 'completed', conversion_id: id });
    const fromCompleted = await retry(id);
    expect(fromCompleted.status).toBe(409);
    expect(fromCompleted.body.error).toBe(
      `cannot retry conversion ${id}: a conversion in state completed cannot be retried`,
    );
    expect(await channelUsdt(channelId)).toBe(NET_AS_USDT_UNITS);

    expect((await retry('conv_0123456789abcdef')).status).toBe(404);
    expect((await app.payrail.request('GET', '/api/conversions/conv_0123456789abcdef')).status).toBe(404);
    expect((await retry('conv_XYZ')).status).toBe(400);
    expect((await app.payrail.request('GET', '/api/conversions/po_0123456789abcdef')).status).toBe(400);
    expect((await app.payrail.request('POST', `/api/conversions/${id}/resolve`)).status).toBe(400);
    expect((await retry(id, null)).status).toBe(401);
    expect((await app.payrail.request('GET', '/api/conversions', { token: null })).status).toBe(401);
    expect(
      (await app.payrail.request('GET', `/api/conversions/${id}`, { token: 'wrong-token-0123456789abcdef' })).status,
    ).toBe(401);
    expect(await auditOf(id)).toHaveLength(1);
  });
});

describe('a conversion in review whose transfer a person acts on', () => {
  // Regression: the conversion failed with its payments left 'failed' on it, out of every batch for good.
  it('cancelled and the cancel mined: the conversion fails and its payments are released, and batched again at once (the release queues the batch: no credit, no periodic check)', async ({
    outside,
    db,
    app,
    conversionIdsOf,
    reaches,
    retry,
    payment,
    inReviewWhileBroadcast,
    convertedAgain,
    expectUsdtSettled,
  }) => {
    // The periodic check is far off: only the batch the release queues can take the payment again in time.
    const { channelId, paymentId, id } = await inReviewWhileBroadcast({ CONVERSION_INTERVAL: '59m' });
    expect((await retry(id)).status).toBe(409);
    const { transfer_id: transferId } = (
      await db.pool.query('select transfer_id from chain_transfers where purpose = $1 and ref = $2', ['conversion', id])
    ).rows[0];

    expect((await app.payrail.request('POST', `/api/transfers/${transferId}/cancel`, { token: ALICE })).status).toBe(
      202,
    );
    await eventually(
      'the cancel signed',
      async () =>
        (
          await db.pool.query("select 1 from chain_transfer_versions where transfer_id = $1 and kind = 'cancel'", [
            transferId,
          ])
        ).rowCount === 1,
    );
    await rpc(outside.chain.rpcUrl, 'evm_mine', []);
    await rpc(outside.chain.rpcUrl, 'evm_setAutomine', [true]);
    expect(await reaches(id, 'failed')).toMatchObject({ transferStatus: 'failed' });
    expect((await payment(paymentId)).conversion_id).not.toBe(id);

    await convertedAgain(paymentId, 'converted again, with no other credit', 30_000);
    const [first, second, ...more] = await conversionIdsOf(paymentId);
    expect({ first, more }).toEqual({ first: id, more: [] });
    expect(second).toBe((await payment(paymentId)).conversion_id);
    await expectUsdtSettled(channelId, NET_AS_USDT_UNITS);
  });
});

/** The fixture payment's net 0.0047239 ETH, and 1 % of it: what the simulator's short refund keeps. */
const NET_WEI = 4_723_900_000_000_000n;
const SHORT_WEI = 47_239_000_000_000n;

describe('a refund short of the ETH sent (ChangeNow returns it less network fees)', () => {
  it("within CHANGENOW_REFUND_TOLERANCE settles by itself: the shortfall is ChangeNow's cost, and the next batch converts what is left", async ({
    db,
    start,
    conversionAnswered,
    exchangesFor,
    convertedAgain,
    expectUsdtSettled,
  }) => {
    await start();
    const { channelId, paymentId, id: first } = await conversionAnswered('refunded_short');
    await convertedAgain(paymentId);
    const [refunded] = exchangesFor(first);
    const conversions = (
      await db.pool.query<{ conversion_id: string; status: string; reason: string | null; amount_wei: string }>(
        'select c.conversion_id, c.status, c.reason, c.amount_wei::text from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1 order by c.created_at',
        [paymentId],
      )
    ).rows;
    expect(conversions).toEqual([
      {
        conversion_id: first,
        status: 'failed',
        reason: `exchange refunded (refund ${refunded!.refundHash}); 0.000047239 ETH short, booked as ChangeNow's cost`,
        amount_wei: NET_WEI.toString(),
      },
      {
        conversion_id: expect.any(String),
        status: 'completed',
        reason: null,
        amount_wei: (NET_WEI - SHORT_WEI).toString(),
      },
    ]);
    expect(
      (await db.pool.query('select exchange_cost_wei::text as cost from payments where payment_id = $1', [paymentId]))
        .rows,
    ).toEqual([{ cost: SHORT_WEI.toString() }]);
    const { rows } = await db.pool.query<{ code: string; amount: string }>(
      "select a.code, e.amount::text from ledger_entries e join ledger_journals j on j.id = e.journal_id join ledger_accounts a on a.id = e.account_id where j.kind = 'conversion_shortfall' and j.ref = $1 order by a.code",
      [first],
    );
    expect(rows).toEqual([
      { code: `channel:${channelId}`, amount: (-SHORT_WEI).toString() },
      { code: 'world:changenow', amount: SHORT_WEI.toString() },
    ]);
    // (0.0047239 − 0.000047239) ETH × 3000 − 1 USDT fee.
    await expectUsdtSettled(channelId, '13029983');
  });
  it('beyond the tolerance goes to review; resolve "returned" with the refund read on chain books the shortfall and frees the payments', async ({
    start,
    reaches,
    conversionAnswered,
    resolve,
    auditOf,
    exchangesFor,
    convertedAgain,
    expectUsdtSettled,
  }) => {
    await start({ CHANGENOW_REFUND_TOLERANCE: '0.5' });
    const { channelId, paymentId, id } = await conversionAnswered('refunded_short');
    const inReview = await reaches(id, 'needs_review');
    const [refunded] = exchangesFor(id);
    expect(inReview.reason).toBe(
      `exchange refunded 0.004676661 of 0.0047239 ETH (refund ${refunded!.refundHash}), short by more than CHANGENOW_REFUND_TOLERANCE`,
    );

    // The chain decides: a hash that brought no ETH, a USDT claim for an ETH refund, a loss without a reason.
    const other = `0x${'ab'.repeat(32)}`;
    const noEth = await resolve(id, { outcome: 'returned', txHash: other });
    expect(noEth.status).toBe(409);
    expect(noEth.body.error).toBe(`cannot resolve conversion ${id}: the chain shows no mined transaction ${other}`);
    expect((await resolve(id, { outcome: 'received', amount: '13', txHash: refunded!.refundHash })).status).toBe(409);
    expect((await resolve(id, { outcome: 'lost' })).status).toBe(400);
    expect((await resolve(id, { outcome: 'returned', txHash: refunded!.refundHash }, null)).status).toBe(401);
    expect(await auditOf(id)).toEqual([]);

    const res = await resolve(id, {
      outcome: 'returned',
      txHash: refunded!.refundHash,
      note: 'ChangeNow kept its fee',
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'failed' });
    expect(res.body.reason).toBe(
      `resolved by alice as returned: ChangeNow kept its fee (refund ${refunded!.refundHash}); 0.000047239 ETH short, booked as ChangeNow's cost`,
    );
    expect(await auditOf(id)).toEqual([
      {
        actor: 'alice',
        action: 'conversion.resolve',
        details: expect.objectContaining({
          from: 'needs_review',
          to: 'failed',
          arrived: (NET_WEI - SHORT_WEI).toString(),
        }),
      },
    ]);
    await convertedAgain(paymentId);
    expect((await resolve(id, { outcome: 'returned', txHash: refunded!.refundHash })).status).toBe(409);
    await expectUsdtSettled(channelId, '13029983');
  });
});

describe('resolve after a failed exchange whose ETH left', () => {
  it('"received": USDT ChangeNow paid by hand, read on chain (the amount must match), settled to the channel once', async ({
    outside,
    resolve,
    payment,
    failedInReview,
    expectUsdtSettled,
  }) => {
    const { channelId, paymentId, id } = await failedInReview();
    await outside.changenowReturn(outside.hostAddress, 13_000_000n);
    const hash = (
      (await rpc(outside.chain.rpcUrl, 'eth_getBlockByNumber', ['latest', false])) as { transactions: string[] }
    ).transactions[0]!;
    const wrong = await resolve(id, { outcome: 'received', amount: '13.5', txHash: hash });
    expect(wrong.status).toBe(409);
    expect(wrong.body.error).toBe(
      `cannot resolve conversion ${id}: ${hash} brought 13 USDT to the host wallet, not 13.5`,
    );
    const res = await resolve(id, {
      outcome: 'received',
      amount: '13',
      txHash: hash,
      note: 'paid by ChangeNow support',
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'completed' });
    expect(await payment(paymentId)).toMatchObject({ conversion_status: 'completed', conversion_id: id });
    expect((await resolve(id, { outcome: 'received', amount: '13', txHash: hash })).status).toBe(409);
    await expectUsdtSettled(channelId, '13000000');
  });

  it('"lost": the platform bears it (platform:losses) and the payments go back to pending whole, converted by the next batch', async ({
    db,
    resolve,
    failedInReview,
    convertedAgain,
    expectUsdtSettled,
  }) => {
    const { channelId, paymentId, id } = await failedInReview();
    const res = await resolve(id, { outcome: 'lost', note: 'exchange closed, support unreachable' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      status: 'failed',
      reason: `resolved by alice as lost: exchange closed, support unreachable; 0.0047239 ETH booked as the platform's loss, payments back to pending`,
    });
    const losses = await db.pool.query(
      "select balance::text from ledger_accounts where code = 'platform:losses' and asset = 'eth'",
    );
    expect(losses.rows).toEqual([{ balance: (-NET_WEI).toString() }]);
    await convertedAgain(paymentId);
    await expectUsdtSettled(channelId, NET_AS_USDT_UNITS);
  });
});
