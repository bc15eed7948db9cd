/**
 * Conversion end to end on real parts: IPNs over HTTP → payments pending → one ChangeNow exchange (simulator over
 * HTTP) paid by one ETH transfer on anvil → settlement shared exactly → the channel over its threshold gets one batch,
 * which is paid out (USDT on the host wallet's network: one direct ERC-20 transfer). Every review is left by a
 * person's action, and the host wallet holds what the ledger says after the file (check-ledger --chain).
 */
import { describe, expect } from 'vitest';
import { checkLedger } from '../../src/ledger/index.ts';
import { rpc, type ChangeNowSimulator } from '../../src/simulators/index.ts';
import { exchangesOf, usdtThreshold } from '../support/conversions.ts';
import { worldFirst, worldTest } from '../support/fixtures.ts';
import { ipnBody, signed } from '../support/ipn.ts';
import { eventually } from '../support/outside.ts';
import { IPN_SECRET } from '../support/payrail.ts';
import { saveChannel, tronThreshold } from '../support/payouts.ts';

const WALLET = '0x8ba1f109551bD432803012645Ac136ddd64DBA72';

const it = worldFirst(
  worldTest({ firstPaymentId: 8_000_000_000 })
    .extend('thresholdChannel', ({ app }) => async (id: string, thresholdUsd: string) => {
      await saveChannel(app.payrail, id, usdtThreshold(WALLET, thresholdUsd));
    })
    .extend('conversionStatuses', ({ db }) => async (ids: string[]) => {
      const { rows } = await db.pool.query<{ conversion_status: string }>(
        'select conversion_status from payments where payment_id = any($1::numeric[])',
        [ids],
      );
      return rows.map((r) => r.conversion_status);
    })
    .extend(
      'allCompleted',
      ({ conversionStatuses }) =>
        async (ids: string[]) =>
          (await conversionStatuses(ids)).every((s) => s === 'completed'),
    )
    /** A person's resolve of the (latest) conversion in review holding the payment. */
    .extend('resolveConversionOf', ({ app, db }) => async (paymentId: string, body: unknown) => {
      const { rows } = await db.pool.query(
        "select c.conversion_id from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1 and c.status = 'needs_review'",
        [paymentId],
      );
      expect(rows).toHaveLength(1);
      return app.payrail.request('POST', `/api/conversions/${rows[0].conversion_id}/resolve`, { body });
    })
    .extend('balances', ({ db }) => async (channelId: string): Promise<Record<string, string>> => {
      const { rows } = await db.pool.query<{ code: string; asset: string; balance: string }>(
        'select code, asset, balance::text from ledger_accounts where code like $1',
        [`channel:${channelId}%`],
      );
      return Object.fromEntries(
        rows.map((r) => [`${r.code.replace(`channel:${channelId}`, 'channel')}/${r.asset}`, r.balance]),
      );
    })
    /** A payrail started to convert from 1 USD on, and a new threshold channel far from its threshold. */
    .extend('startedWithChannel', ({ start, thresholdChannel }) => async (channelId: string) => {
      await start({ CONVERSION_MIN_USD: '1' });
      await thresholdChannel(channelId, '1000');
    })
    /**
     * On a payrail started to convert from 1 USD on, a payment of a new threshold channel whose conversion ChangeNow's
     * exchange ends with `answer`, once the payment is marked failed; with its conversion's status and reason.
     */
    .extend(
      'paymentFailedBy',
      ({ outside, db, start, pay, thresholdChannel, conversionStatuses }) =>
        async (
          answer: Parameters<ChangeNowSimulator['failNextExchange']>[0],
          channelId: string,
          thresholdUsd: string,
        ) => {
          await start({ CONVERSION_MIN_USD: '1' });
          await thresholdChannel(channelId, thresholdUsd);
          outside.sim.failNextExchange(answer);
          const ids = [await pay(channelId)];
          await eventually(
            `the conversion ended ${answer}`,
            async () => (await conversionStatuses(ids))[0] === 'failed',
          );
          const { rows } = await db.pool.query(
            'select c.status, c.reason from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1',
            [ids[0]],
          );
          return { ids, rows };
        },
    )
    /** Queues a conversion batch now rather than at its next run, and waits for the payments to be converted by it. */
    .extend('convertedByABatchNow', ({ db, allCompleted }) => async (ids: string[]) => {
      await db.pool.query("select graphile_worker.add_job('conversion_batch', '{}'::json)");
      await eventually('converted by a new batch', () => allCompleted(ids));
    })
    /** `count` payments of a new threshold channel (startedWithChannel) taken while ChangeNow answers with `fault`. */
    .extend(
      'paidWhileChangeNowFails',
      ({ outside, pay, startedWithChannel }) =>
        async (channelId: string, fault: Parameters<ChangeNowSimulator['setFault']>[0], count: number) => {
          await startedWithChannel(channelId);
          await outside.sim.setFault(fault);
          const ids: string[] = [];
          for (let i = 0; i < count; i++) ids.push(await pay(channelId));
          return ids;
        },
    )
    /** Waits until every one of the payments has had a conversion attempt counted. */
    .extend('attemptCounted', ({ db }) => async (what: string, ids: string[]) => {
      await eventually(what, async () => {
        const { rows } = await db.pool.query(
          'select min(conversion_attempts)::int as n from payments where payment_id = any($1::numeric[])',
          [ids],
        );
        return rows[0].n >= 1;
      });
    })
    /** The payments ChangeNow's fault left pending, all of them; once it answers again, a batch converts them. */
    .extend(
      'convertedOnceChangeNowBack',
      ({ outside, conversionStatuses, convertedByABatchNow }) =>
        async (ids: string[]) => {
          expect(await conversionStatuses(ids)).toEqual(ids.map(() => 'pending'));
          await outside.sim.setFault('none');
          await convertedByABatchNow(ids);
        },
    ),
);

describe('conversion of pending ETH to USDT', () => {
  it('converts six payments of three channels in one exchange, shares the USDT exactly, batches the channel over its threshold', async ({
    outside,
    db,
    start,
    pay,
    thresholdChannel,
    allCompleted,
    balances,
  }) => {
    // 0.0047239 ETH net each; at the simulator's 3000 USDT/ETH less 1 USDT fee, five payments are worth 69.86 USD
    // and six 84.03 USD: with an 80 USD minimum, the sixth payment triggers exactly one conversion.
    const payrail = await start({ CONVERSION_MIN_USD: '80' });
    await thresholdChannel('-1003000000001', '20.00');
    await thresholdChannel('-1003000000002', '1000');
    await thresholdChannel('-1003000000003', '1000');
    const a = [await pay('-1003000000001'), await pay('-1003000000001'), await pay('-1003000000001')];
    const b = [await pay('-1003000000002'), await pay('-1003000000002')];
    const c = [await pay('-1003000000003')];
    const all = [...a, ...b, ...c];
    await eventually('all six payments converted', () => allCompleted(all));

    const { rows: conversions } = await db.pool.query(
      'select conversion_id, status, amount_wei::text, usdt_received::text, rate::text, exchange_id, payin_address, payout_hash from conversions',
    );
    expect(conversions).toHaveLength(1);
    const conversion = conversions[0];
    expect(conversion).toMatchObject({
      status: 'completed',
      amount_wei: '28343400000000000',
      usdt_received: '84030200',
    });
    // USDT per ETH realized: 84.0302 / 0.0283434
    expect(conversion.rate).toBe('2964.718417691596');
    expect(outside.sim.exchanges.size).toBe(1);
    // The USDT payout that settled it is kept: one payout hash credits one conversion.
    expect(conversion.payout_hash).toBe(outside.sim.exchanges.get(conversion.exchange_id)!.payoutHash!.toLowerCase());
    expect(await outside.balanceOf(conversion.payin_address)).toBe(28_343_400_000_000_000n);
    // The simulator paid the USDT out on chain; the batch of channel 1 has left for its owner since: together they
    // hold exactly what the ledger shared out.
    await eventually(
      'the batch paid out',
      async () =>
        (await db.pool.query("select status from payouts where channel_id = '-1003000000001'")).rows[0]?.status ===
        'completed',
    );
    expect(await outside.usdtBalanceOf(WALLET)).toBe(42_015_101n);
    expect(await outside.usdtBalanceOf(outside.hostAddress)).toBe(84_030_200n - 42_015_101n);

    // 84,030,200 units over six equal weights: 14,005,033 each and two units of remainder, to the first two.
    const payment = (id: string) => payrail.request('GET', `/api/payments/${id}`).then((r) => r.body);
    expect((await payment(a[0]!)).conversion).toMatchObject({
      status: 'completed',
      usdtAmount: '14.005034',
      rate: '2964.718417691596',
      attempts: 1,
    });
    expect((await payment(a[2]!)).conversion.usdtAmount).toBe('14.005033');

    expect(await balances('-1003000000001')).toEqual({
      'channel/eth': '0',
      'channel/usdt': '0',
      'channel:payout/usdt': '0',
    });
    expect(await balances('-1003000000002')).toEqual({ 'channel/eth': '0', 'channel/usdt': '28010066' });
    expect(await balances('-1003000000003')).toEqual({ 'channel/eth': '0', 'channel/usdt': '14005033' });

    const { rows: batches } = await db.pool.query('select channel_id, status, amount::text from payouts');
    expect(batches).toEqual([{ channel_id: '-1003000000001', status: 'completed', amount: '42015101' }]);
    const { rows: batched } = await db.pool.query(
      'select count(*)::int as n from payments where payout_id is not null',
    );
    expect(batched[0].n).toBe(3);
    expect((await checkLedger(db.db)).problems).toEqual([]);

    const summary = (await payrail.request('GET', '/api/channels/-1003000000001')).body;
    expect(summary).toMatchObject({ pendingEth: '0', availableUsdt: '0', openPayouts: [] });
    expect((await payrail.request('GET', '/api/channels/-1003000000002')).body).toMatchObject({
      availableUsdt: '28.010066',
      openPayouts: [],
    });
    const listed = (await payrail.request('GET', '/api/payouts?channelId=-1003000000001')).body;
    expect(listed.payouts).toHaveLength(1);
    expect(listed.payouts[0]).toMatchObject({
      kind: 'threshold',
      status: 'completed',
      amount: '42.015101',
      payoutCurrency: 'usdt',
      payoutNetwork: 'eth',
      amountOut: '42.015101',
      exchangeId: null,
    });
    expect((await payrail.request('GET', '/api/payouts?status=completed')).body.payouts).toHaveLength(1);
    expect((await payrail.request('GET', '/api/payouts?status=bogus')).status).toBe(400);

    // Lowering a threshold below the available balance batches it at once, without waiting for another settlement.
    await thresholdChannel('-1003000000002', '20');
    expect((await payrail.request('GET', '/api/channels/-1003000000002')).body).toMatchObject({ availableUsdt: '0' });
    await eventually(
      'the second batch paid out',
      async () => (await outside.usdtBalanceOf(WALLET)) === 42_015_101n + 28_010_066n,
    );
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('one settlement taking two channels over their thresholds opens a batch for each, of its share and its own payments', async ({
    db,
    start,
    pay,
    thresholdChannel,
    allCompleted,
    balances,
  }) => {
    // As above: six payments, one conversion of 84.030200 USDT, 14.005034 for each of the first two, 14.005033 after.
    await start({ CONVERSION_MIN_USD: '80' });
    await thresholdChannel('-1003000000011', '20.00');
    await thresholdChannel('-1003000000012', '20.00');
    await thresholdChannel('-1003000000013', '1000');
    const a = [await pay('-1003000000011'), await pay('-1003000000011'), await pay('-1003000000011')];
    const b = [await pay('-1003000000012'), await pay('-1003000000012')];
    const c = [await pay('-1003000000013')];
    await eventually('all six payments converted', () => allCompleted([...a, ...b, ...c]));
    // The file's world is shared: only these channels' rows are looked at.
    const ours = ['-1003000000011', '-1003000000012', '-1003000000013'];
    const batchesOf = async () =>
      (
        await db.pool.query(
          'select payout_id, channel_id, status, amount::text from payouts where channel_id = any($1) order by channel_id',
          [ours],
        )
      ).rows;
    await eventually('both batches paid out', async () => {
      const rows = await batchesOf();
      return rows.length === 2 && rows.every((r) => r.status === 'completed');
    });

    const batches = await batchesOf();
    expect(batches.map(({ payout_id: _, ...rest }) => rest)).toEqual([
      { channel_id: '-1003000000011', status: 'completed', amount: '42015101' },
      { channel_id: '-1003000000012', status: 'completed', amount: '28010066' },
    ]);
    const { rows: links } = await db.pool.query(
      'select payment_id::text, payout_id from payments where channel_id = any($1)',
      [ours],
    );
    const linked = Object.fromEntries(links.map((r) => [r.payment_id, r.payout_id]));
    for (const id of a) expect(linked[id]).toBe(batches[0].payout_id);
    for (const id of b) expect(linked[id]).toBe(batches[1].payout_id);
    expect(linked[c[0]!]).toBeNull();
    expect(await balances('-1003000000011')).toEqual({
      'channel/eth': '0',
      'channel/usdt': '0',
      'channel:payout/usdt': '0',
    });
    expect(await balances('-1003000000012')).toEqual({
      'channel/eth': '0',
      'channel/usdt': '0',
      'channel:payout/usdt': '0',
    });
    expect(await balances('-1003000000013')).toEqual({ 'channel/eth': '0', 'channel/usdt': '14005033' });
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('a settlement sends a direct batch as it opens it (its transfer in the same commit, no run); a batch through an exchange gets its run', async ({
    app,
    db,
    start,
    pay,
    thresholdChannel,
    allCompleted,
    balances,
  }) => {
    await start({ CONVERSION_MIN_USD: '50' });
    await thresholdChannel('-1003000000021', '20.00');
    await saveChannel(app.payrail, '-1003000000022', tronThreshold('20.00'));
    // About 14 USDT each: one conversion of the four takes both channels over their thresholds.
    const ids = [
      await pay('-1003000000021'),
      await pay('-1003000000021'),
      await pay('-1003000000022'),
      await pay('-1003000000022'),
    ];
    await eventually('the four payments converted', () => allCompleted(ids));
    const ours = ['-1003000000021', '-1003000000022'];
    const batchesOf = async () =>
      (
        await db.pool.query(
          `select p.channel_id, p.status, p.created_at = c.completed_at as opened_by_settlement,
                  t.created_at = p.created_at as transfer_with_opening, t.status as transfer_status,
                  t.asset, t.amount::text as transfer_amount, p.amount::text as amount, t.to_address = p.wallet_address as to_owner
           from payouts p
           join payments m on m.payout_id = p.payout_id join conversions c on c.conversion_id = m.conversion_id
           left join chain_transfers t on t.purpose = 'payout' and t.ref = p.payout_id
           where p.channel_id = any($1) group by p.payout_id, c.completed_at, t.transfer_id order by p.channel_id`,
          [ours],
        )
      ).rows;
    await eventually('both batches paid out', async () => {
      const rows = await batchesOf();
      return rows.length === 2 && rows.every((r) => r.status === 'completed');
    });

    const [direct, exchanged] = await batchesOf();
    // USDT on Ethereum: the transfer was recorded by the transaction that opened the batch (the same now()).
    expect(direct).toMatchObject({
      channel_id: '-1003000000021',
      opened_by_settlement: true,
      transfer_with_opening: true,
      transfer_status: 'confirmed',
      asset: 'usdt',
      to_owner: true,
    });
    expect(direct.transfer_amount).toBe(direct.amount);
    // USDT on Tron: its run asked ChangeNow for the exchange first, then recorded the transfer to its payin address.
    expect(exchanged).toMatchObject({
      channel_id: '-1003000000022',
      opened_by_settlement: true,
      transfer_with_opening: false,
      transfer_status: 'confirmed',
      to_owner: false,
    });
    for (const id of ours)
      expect(await balances(id)).toEqual({ 'channel/eth': '0', 'channel/usdt': '0', 'channel:payout/usdt': '0' });
    expect((await checkLedger(db.db)).problems).toEqual([]);
  });

  it('a refunded exchange sends the payments back to pending with the reason kept; the next conversion completes them', async ({
    outside,
    db,
    pay,
    balances,
    convertedByABatchNow,
    startedWithChannel,
  }) => {
    await startedWithChannel('-1003000000006');
    outside.sim.failNextExchange('refunded');
    const ids = [await pay('-1003000000006')];
    await eventually('the refunded conversion released', async () => {
      const { rows } = await db.pool.query(
        "select status, reason from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1 and c.status = 'failed'",
        [ids[0]],
      );
      return rows.length === 1 && /^exchange refunded/.test(rows[0].reason);
    });
    await convertedByABatchNow(ids);
    const { rows } = await db.pool.query(
      'select c.status from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1 order by c.created_at',
      [ids[0]],
    );
    expect(rows.map((r) => r.status)).toEqual(['failed', 'completed']);
    expect((await balances('-1003000000006'))['channel/usdt']).toBe('13171700');
  });

  it('a failed exchange whose ETH did not come back goes to review, never toward a payout; resolved as lost, it converts again', async ({
    db,
    allCompleted,
    resolveConversionOf,
    balances,
    paymentFailedBy,
  }) => {
    const { ids, rows } = await paymentFailedBy('failed', '-1003000000007', '1');
    expect(rows).toEqual([{ status: 'needs_review', reason: 'exchange failed; the ETH sent has not come back' }]);
    expect(await balances('-1003000000007')).toEqual({ 'channel/eth': '4723900000000000' });
    const { rows: batches } = await db.pool.query(
      "select count(*)::int as n from payouts where channel_id = '-1003000000007'",
    );
    expect(batches[0].n).toBe(0);

    // The way out when ChangeNow keeps the ETH: booked as the platform's loss, the payment converted again.
    const lost = await resolveConversionOf(ids[0]!, { outcome: 'lost', note: 'exchange failed, ETH not returned' });
    expect(lost).toMatchObject({ status: 200, body: { status: 'failed' } });
    await eventually('converted again', () => allCompleted(ids));
  });

  it('a payout short of what ChangeNow reports is not booked: review, then resolve received books what the chain shows', async ({
    resolveConversionOf,
    balances,
    paymentFailedBy,
  }) => {
    const { ids, rows } = await paymentFailedBy('short_payout', '-1003000000008', '1000');
    expect(rows[0].status).toBe('needs_review');
    expect(rows[0].reason).toMatch(/^ChangeNow reports 13\.1717 USDT but payout 0x[0-9a-f]{64} brought 13\.171699$/);
    expect(await balances('-1003000000008')).toEqual({ 'channel/eth': '4723900000000000' });

    // The way out: what the chain shows arrived is booked, not what ChangeNow said.
    const hash = /payout (0x[0-9a-f]{64})/.exec(rows[0].reason)![1];
    const received = await resolveConversionOf(ids[0]!, { outcome: 'received', amount: '13.171699', txHash: hash });
    expect(received).toMatchObject({ status: 200, body: { status: 'completed' } });
    expect(await balances('-1003000000008')).toEqual({ 'channel/eth': '0', 'channel/usdt': '13171699' });
  });

  it('a payout hash ChangeNow already named for another conversion credits nothing: review, then resolved as lost', async ({
    outside,
    db,
    pay,
    allCompleted,
    resolveConversionOf,
    balances,
    startedWithChannel,
  }) => {
    await startedWithChannel('-1003000000010');
    const firstIds = [await pay('-1003000000010')];
    await eventually('the first conversion settled', () => allCompleted(firstIds));
    const {
      rows: [settled],
    } = await db.pool.query(
      'select c.exchange_id, c.payout_hash from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1',
      [firstIds[0]],
    );
    const firstExchange = outside.sim.exchanges.get(settled.exchange_id)!;

    // The same amount again; its exchange is made to report the first one's payout (a real USDT transfer to the
    // host wallet, for the same amount) before its deposit is mined, as a misbehaving ChangeNow could.
    await rpc(outside.chain.rpcUrl, 'evm_setAutomine', [false]);
    try {
      const ids = [await pay('-1003000000010')];
      const conversionOf = async () =>
        (
          await db.pool.query(
            "select c.conversion_id, c.status, c.reason, c.exchange_id, t.status as transfer from conversions c join conversion_payments p using (conversion_id) left join chain_transfers t on t.purpose = 'conversion' and t.ref = c.conversion_id where p.payment_id = $1",
            [ids[0]],
          )
        ).rows[0];
      await eventually(
        'the second conversion transfer broadcast',
        async () => (await conversionOf())?.transfer === 'broadcast',
      );
      const second = await conversionOf();
      Object.assign(outside.sim.exchanges.get(second.exchange_id)!, {
        status: 'finished',
        forcedEnd: null,
        amountFrom: firstExchange.amountFrom,
        amountTo: firstExchange.amountTo,
        payoutHash: firstExchange.payoutHash,
        depositReceivedAt: Date.now(),
      });
      await rpc(outside.chain.rpcUrl, 'evm_mine', []);
      await rpc(outside.chain.rpcUrl, 'evm_setAutomine', [true]);
      await eventually(
        'the second conversion in review',
        async () => (await conversionOf())?.status === 'needs_review',
      );
      expect((await conversionOf()).reason).toBe(
        `payout ${settled.payout_hash} already credited conversion ${(await db.pool.query('select conversion_id from conversions where payout_hash = $1', [settled.payout_hash])).rows[0].conversion_id}`,
      );
      // Only the first conversion's USDT is on the channel.
      expect(await balances('-1003000000010')).toEqual({
        'channel/eth': '4723900000000000',
        'channel/usdt': '13171700',
      });
      expect((await checkLedger(db.db)).problems).toEqual([]);

      // Its ETH went to ChangeNow and no USDT of its own came back: the way out books the loss.
      await rpc(outside.chain.rpcUrl, 'evm_setAutomine', [true]);
      expect(
        (await resolveConversionOf(ids[0]!, { outcome: 'lost', note: 'ChangeNow named another payout' })).status,
      ).toBe(200);
      await eventually('converted again', () => allCompleted(ids));
    } finally {
      await rpc(outside.chain.rpcUrl, 'evm_setAutomine', [true]);
    }
  });

  it('an exchange ChangeNow refuses for good (too small) is not retried every interval: the payments are held', async ({
    db,
    start,
    nextPaymentId,
    thresholdChannel,
  }) => {
    const payrail = await start({ CONVERSION_MIN_USD: '1', CONVERSION_MAX_WAIT: '1s' });
    await thresholdChannel('-1003000000009', '1000');
    const body = ipnBody({ payment_id: nextPaymentId(), order_id: 'PGP-1|-1003000000009' });
    const { raw, headers } = signed(
      JSON.stringify(body).replace('"outcome_amount":0.00487', '"outcome_amount":0.0005'),
      IPN_SECRET,
    );
    await payrail.forwardOutcome(raw);
    expect((await payrail.request('POST', '/webhooks/nowpayments', { raw, headers, token: null })).status).toBe(200);
    const id = String(body.payment_id);
    // Below ChangeNow's minimum it waits; once it waited CONVERSION_MAX_WAIT an exchange is tried and refused.
    await new Promise((r) => setTimeout(r, 1_200));
    await db.pool.query("select graphile_worker.add_job('conversion_batch', '{}'::json)");
    await eventually('the refused conversion', async () => {
      const { rows } = await db.pool.query(
        "select c.reason from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1 and c.status = 'failed'",
        [id],
      );
      return rows.length === 1 && /^changenow deposit_too_small/.test(rows[0].reason);
    });
    const payment = (await payrail.request('GET', `/api/payments/${id}`)).body;
    expect(payment.conversion).toMatchObject({ status: 'pending', attempts: 1 });
    expect(new Date(payment.conversion.holdUntil).getTime()).toBeGreaterThan(Date.now() + 60_000);
    // Another run right away leaves it alone.
    await db.pool.query("select graphile_worker.add_job('conversion_batch', '{}'::json)");
    await eventually('the batch run done', async () => {
      const { rows } = await db.pool.query(
        "select count(*)::int as n from graphile_worker.jobs where task_identifier = 'conversion_batch'",
      );
      return rows[0].n === 0;
    });
    const { rows } = await db.pool.query('select count(*)::int as n from conversion_payments where payment_id = $1', [
      id,
    ]);
    expect(rows[0].n).toBe(1);
  });

  it.for([
    [
      'keeps taking payments while ChangeNow is down, counts the attempts, and converts everything once it is back',
      { channelId: '-1003000000004', fault: 'down', payments: 2, counted: 'a failed attempt recorded' },
    ],
    [
      'a bad API key is a permanent error: nothing loops, payments stay pending until the key works',
      { channelId: '-1003000000005', fault: '401', payments: 1, counted: 'the refusal recorded' },
    ],
  ] as const)(
    '%s',
    async (
      [, { channelId, fault, payments, counted }],
      { attemptCounted, convertedOnceChangeNowBack, paidWhileChangeNowFails },
    ) => {
      const ids = await paidWhileChangeNowFails(channelId, fault, payments);
      await attemptCounted(counted, ids);
      await convertedOnceChangeNowBack(ids);
    },
  );
});

describe('crash safety', () => {
  it.for(['after_exchange_created', 'after_broadcast', 'before_settle'] as const)(
    'dying %s: one exchange, one transfer, same end state',
    async (point, { outside, db, start, pay, thresholdChannel, allCompleted, balances }) => {
      let crashed = false;
      await start(
        { CONVERSION_MIN_USD: '1' },
        {
          crashPoint: (name) => {
            if (name === point && !crashed) {
              crashed = true;
              throw new Error(`simulated crash ${name}`);
            }
          },
        },
      );
      const channelId = `-10030000001${['after_exchange_created', 'after_broadcast', 'before_settle'].indexOf(point)}`;
      await thresholdChannel(channelId, '1000');
      const id = await pay(channelId);
      await eventually(`converted despite a crash ${point}`, () => allCompleted([id]), 60_000);
      expect(crashed).toBe(true);
      const { rows } = await db.pool.query(
        'select c.conversion_id, c.exchange_id, c.payin_address, c.amount_wei::text from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1',
        [id],
      );
      expect(rows).toHaveLength(1);
      const conversion = rows[0];
      const exchanges = exchangesOf(outside, conversion.conversion_id);
      expect(exchanges).toHaveLength(1);
      const { rows: transfers } = await db.pool.query(
        "select status from chain_transfers where purpose = 'conversion' and ref = $1",
        [conversion.conversion_id],
      );
      expect(transfers).toEqual([{ status: 'confirmed' }]);
      expect(await outside.balanceOf(conversion.payin_address)).toBe(BigInt(conversion.amount_wei));
      // One payment: 0.0047239 ETH × 3000 − 1 USDT fee.
      expect((await balances(channelId))['channel/usdt']).toBe('13171700');
    },
  );
});
