/**
 * ChangeNow's answers compared with what payrail asked (real PostgreSQL, anvil, the ChangeNow simulator over HTTP):
 * an exchange created to pay out elsewhere, or for another amount, is never funded; the conversion or payout goes to
 * review naming both values, and its way out leaves the ledger equal to the chain. So do the edges of what ChangeNow
 * promises: an exchange that finishes further below its estimate than CHANGENOW_MAX_SLIPPAGE allows is not booked on
 * ChangeNow's word, one held in its AML check (`verifying`) is still in progress, and one that expires although its
 * deposit arrived is never taken for money back on the channel.
 */
import { describe, expect } from 'vitest';
import { startChainSender, type ChangeNowSimulator } from '../../src/simulators/index.ts';
import { conversionAnsweredOn, exchangesOf, readUntilStatus, usdtThreshold } from '../support/conversions.ts';
import { worldFirst, worldTest } from '../support/fixtures.ts';
import { eventually } from '../support/outside.ts';
import { expectLedgerCleanOn, instantBody } from '../support/payout-state.ts';
import { logSink } from '../support/payrail.ts';
import { TRON_WALLET } from '../support/payouts.ts';

const ALICE = 'alice-token-0123456789abcdef';
/** One fixture payment's net ETH (0.00487 less the 3 % fee), and what the simulator quotes for it: × 3000 − 1. */
const NET_WEI = 4_723_900_000_000_000n;
const ESTIMATE = '13.1717';
/** The estimate less CHANGENOW_MAX_SLIPPAGE's default 3 %, exactly: 13.1717 × 0.97. */
const LOWEST_ACCEPTED = '12.776549';
/** What a below_estimate exchange pays by default: 13.1717 × 0.95. */
const FIVE_BELOW = '12.513115';

/** What the file's payrail logged: the alerts some cases look for. */
const logs = logSink();

const it = worldFirst(
  worldTest({
    env: { CONVERSION_MIN_USD: '1', ADMIN_TOKENS: `alice:${ALICE}` },
    filePayrail: { logs },
    firstPaymentId: 9_700_000_000,
    firstChannel: 1_003_700_000_001,
  })
    .extend(
      'query',
      ({ db }) =>
        async <T>(text: string, values: unknown[]): Promise<T[]> =>
          (await db.pool.query(text, values)).rows as T[],
    )
    .extend(
      'exchangesFor',
      ({ outside }) =>
        (userId: string) =>
          exchangesOf(outside, userId),
    )
    /** The one exchange ChangeNow holds for a conversion or payout. */
    .extend('exchangeFor', ({ exchangesFor }) => (userId: string) => {
      const found = exchangesFor(userId);
      expect(found).toHaveLength(1);
      return found[0]!;
    })
    .extend(
      'thresholdChannel',
      ({ channel }) =>
        () =>
          channel(usdtThreshold()),
    )
    .extend(
      'instantChannel',
      ({ channel }) =>
        () =>
          channel(instantBody('usdt', 'trx', TRON_WALLET)),
    )
    .extend('expectLedgerClean', ({ db }) => expectLedgerCleanOn(db))
    /** The id the query finds first, once it finds one. */
    .extend('idOnce', ({ query }) => async (what: string, text: string, value: string): Promise<string> => {
      let id: string | undefined;
      await eventually(what, async () => (id = (await query<{ id: string }>(text, [value]))[0]?.id) !== undefined);
      return id as string;
    })
    .extend(
      'conversionOf',
      ({ idOnce }) =>
        (paymentId: string) =>
          idOnce(
            `a conversion for payment ${paymentId}`,
            'select c.conversion_id as id from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1 order by c.created_at',
            paymentId,
          ),
    )
    .extend(
      'onlyPayoutOf',
      ({ idOnce }) =>
        (channelId: string) =>
          idOnce(
            `a payout for channel ${channelId}`,
            'select payout_id as id from payouts where channel_id = $1',
            channelId,
          ),
    )
    .extend(
      'read',
      ({ payrail }) =>
        async (kind: 'conversions' | 'payouts', id: string): Promise<Record<string, any>> => {
          const res = await payrail.request('GET', `/api/${kind}/${id}`);
          expect(res.status).toBe(200);
          return res.body;
        },
    )
    .extend(
      'reaches',
      ({ read }) =>
        (kind: 'conversions' | 'payouts', id: string, status: string) =>
          readUntilStatus(id, () => read(kind, id), status),
    )
    .extend(
      'getConversion',
      ({ read }) =>
        (id: string) =>
          read('conversions', id),
    )
    .extend(
      'conversionReaches',
      ({ reaches }) =>
        (id: string, status: string) =>
          reaches('conversions', id, status),
    )
    .extend(
      'getPayout',
      ({ read }) =>
        (id: string) =>
          read('payouts', id),
    )
    .extend(
      'payoutReaches',
      ({ reaches }) =>
        (id: string, status: string) =>
          reaches('payouts', id, status),
    )
    /** The channel's ledger balances by `<account>/<asset>`, with `channel` standing for `channel:<id>`. */
    .extend('balances', ({ query }) => async (channelId: string): Promise<Record<string, string>> => {
      const rows = await query<{ code: string; asset: string; balance: string }>(
        'select code, asset, balance::text from ledger_accounts where code like $1 and balance <> 0',
        [`channel:${channelId}%`],
      );
      return Object.fromEntries(
        rows.map((r) => [`${r.code.replace(`channel:${channelId}`, 'channel')}/${r.asset}`, r.balance]),
      );
    })
    .extend('journalKinds', ({ query }) => async (ref: string): Promise<string[]> => {
      return (await query<{ kind: string }>('select kind from ledger_journals where ref = $1 order by id', [ref])).map(
        (r) => r.kind,
      );
    })
    /** Alice resolves the conversion or payout in review as `body` says: 200; its answer. */
    .extend(
      'resolve',
      ({ payrail }) =>
        async (
          kind: 'conversions' | 'payouts',
          id: string,
          body: Record<string, unknown>,
        ): Promise<Record<string, any>> => {
          const res = await payrail.request('POST', `/api/${kind}/${id}/resolve`, { token: ALICE, body });
          expect(res.status).toBe(200);
          return res.body;
        },
    )
    /** The payout booked as completed, once: nothing of it left for its channel, the ledger clean. */
    .extend(
      'expectPaidOut',
      ({ journalKinds, balances, expectLedgerClean }) =>
        async (id: string, channelId: string) => {
          expect(await journalKinds(id)).toEqual(['payout_reserved', 'payout_completed']);
          expect(await balances(channelId)).toEqual({});
          await expectLedgerClean();
        },
    )
    .extend('conversionAnswered', ({ outside, channel, pay, conversionOf }) =>
      conversionAnsweredOn({ outside, channel, pay, conversionOf }),
    )
    /** A new instant channel's payout, through an exchange ChangeNow answers with `answer`. */
    .extend(
      'payoutAnswered',
      ({ outside, instantChannel, pay, onlyPayoutOf }) =>
        async (answer: Parameters<ChangeNowSimulator['failNextExchange']>[0]) => {
          const channelId = await instantChannel();
          outside.sim.failNextExchange(answer);
          await pay(channelId);
          return { channelId, id: await onlyPayoutOf(channelId) };
        },
    )
    /** The payment's conversion as its row says once it is in review. */
    .extend('conversionRowInReview', ({ query }) => async (paymentId: string, timeoutMs?: number) => {
      let conversion: { conversion_id: string; status: string; reason: string | null } | undefined;
      await eventually(
        'the conversion in review',
        async () => {
          [conversion] = await query(
            'select c.conversion_id, c.status, c.reason from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1',
            [paymentId],
          );
          return conversion?.status === 'needs_review';
        },
        timeoutMs,
      );
      return conversion!;
    })
    /** A new threshold channel's payment whose conversion ChangeNow answers with `answer`: its row in review, its exchange. */
    .extend(
      'conversionRowAnswered',
      ({ outside, thresholdChannel, pay, conversionRowInReview, exchangesFor }) =>
        async (answer: Parameters<ChangeNowSimulator['failNextExchange']>[0], timeoutMs?: number) => {
          const channelId = await thresholdChannel();
          outside.sim.failNextExchange(answer);
          const paymentId = await pay(channelId);
          const conversion = await conversionRowInReview(paymentId, timeoutMs);
          const [exchange] = exchangesFor(conversion.conversion_id);
          return { channelId, paymentId, conversion, exchange };
        },
    )
    .extend(
      'paymentConversionStatus',
      ({ query }) =>
        async (paymentId: string) =>
          (
            await query<{ conversion_status: string }>('select conversion_status from payments where payment_id = $1', [
              paymentId,
            ])
          )[0]?.conversion_status,
    )
    /** Waits until the payment's conversion, after a way out, has completed in a batch of its own. */
    .extend(
      'convertedAgain',
      ({ paymentConversionStatus }) =>
        async (paymentId: string, what = 'converted again by the next batch') =>
          eventually(what, async () => (await paymentConversionStatus(paymentId)) === 'completed'),
    )
    /** Alice's `action` (retry, cancel) on the conversion or payout; the answer as it came. */
    .extend(
      'act',
      ({ payrail }) =>
        (kind: 'conversions' | 'payouts', id: string, action: string) =>
          payrail.request('POST', `/api/${kind}/${id}/${action}`, { token: ALICE }),
    )
    /** The alerts the file's payrail logged about the payout. */
    .extend(
      'payoutAlerts',
      () => (payoutId: string) =>
        logs.lines.filter((l) => l.event === 'alert' && l.payoutId === payoutId).map((l) => l.alert),
    )
    /** A conversion answered as `answer` says (conversionAnswered), once in review, with its one exchange. */
    .extend(
      'conversionInReview',
      ({ conversionAnswered, conversionReaches, exchangeFor }) =>
        async (...answer: Parameters<ChangeNowSimulator['failNextExchange']>) => {
          const answered = await conversionAnswered(...answer);
          const inReview = await conversionReaches(answered.id, 'needs_review');
          return { ...answered, inReview, exchange: exchangeFor(answered.id) };
        },
    )
    /** A payout answered as `answer` says (payoutAnswered), once in review, with its one exchange. */
    .extend(
      'payoutInReview',
      ({ payoutAnswered, payoutReaches, exchangeFor }) =>
        async (answer: Parameters<ChangeNowSimulator['failNextExchange']>[0]) => {
          const answered = await payoutAnswered(answer);
          const inReview = await payoutReaches(answered.id, 'needs_review');
          return { ...answered, inReview, exchange: exchangeFor(answered.id) };
        },
    )
    /** The payout's funds are still set aside for it, booked by its reservation alone. */
    .extend('expectSetAside', ({ journalKinds, balances }) => async (id: string, channelId: string) => {
      expect(await journalKinds(id)).toEqual(['payout_reserved']);
      expect(await balances(channelId)).toEqual({ 'channel:payout/eth': NET_WEI.toString() });
    })
    /** The payout in review was alerted once, as `alert`, and its funds are still set aside for it. */
    .extend(
      'expectAlertedAndSetAside',
      ({ payoutAlerts, expectSetAside }) =>
        async (id: string, channelId: string, alert: string) => {
          expect(payoutAlerts(id)).toEqual([alert]);
          await expectSetAside(id, channelId);
        },
    )
    /** The channel holds `units` of USDT and nothing else, the ledger clean. */
    .extend('expectUsdtOnly', ({ balances, expectLedgerClean }) => async (channelId: string, units: string) => {
      expect(await balances(channelId)).toEqual({ 'channel/usdt': units });
      await expectLedgerClean();
    })
    /** ChangeNow's support sends one payment's net ETH back to the host wallet from a wallet of its own: the hash. */
    .extend('sentBackBySupport', ({ outside }) => async () => {
      const support = await startChainSender(outside.chain.rpcUrl);
      return support.send(outside.hostAddress, NET_WEI);
    })
    /**
     * A conversion whose exchange ChangeNow holds in its AML check for ten minutes (conversionAnswered), once ChangeNow
     * has been polled `looks` times about it while it was verifying.
     */
    .extend('verifyingPolled', ({ conversionAnswered, exchangesFor }) => async (what: string, looks: number) => {
      const answered = await conversionAnswered('verifying', { verifyingMs: 600_000 });
      await eventually(what, async () => exchangesFor(answered.id).some((e) => e.verifyingLooks >= looks));
      return answered;
    }),
);

describe('a conversion exchange created unlike the request', () => {
  it('pays out to another address: never funded, in review with both addresses; retry sends the payments to a new batch', async ({
    outside,
    query,
    conversionRowAnswered,
    convertedAgain,
    act,
  }) => {
    const { paymentId, conversion, exchange } = await conversionRowAnswered('wrong_payout_address');
    const id = conversion.conversion_id;
    expect(exchange?.payoutAddress.toLowerCase()).not.toBe(outside.hostAddress.toLowerCase());
    expect(conversion.reason).toBe(
      `ChangeNow created exchange ${exchange!.id} unlike the request: payoutAddress ${exchange!.payoutAddress} (asked ${outside.hostAddress}); not funded`,
    );
    expect(
      await query("select transfer_id from chain_transfers where purpose = 'conversion' and ref = $1", [id]),
    ).toEqual([]);
    expect(await outside.balanceOf(exchange!.payinAddress)).toBe(0n);
    expect(await query("select subject from alerts where rule = 'exchange_mismatch'", [])).toEqual([{ subject: id }]);

    const retried = await act('conversions', id, 'retry');
    expect(retried.status).toBe(200);
    await convertedAgain(paymentId, 'converted by a new batch');
    expect(await outside.balanceOf(exchange!.payinAddress)).toBe(0n);
  });
});

describe('a conversion exchange that finishes unlike the request', () => {
  it('pays its USDT to another address: in review at once naming both addresses, nothing booked to the channel', async ({
    outside,
    query,
    conversionRowAnswered,
  }) => {
    const usdtBefore = await outside.usdtBalanceOf(outside.hostAddress);
    const { channelId, paymentId, conversion, exchange } = await conversionRowAnswered('payout_elsewhere', 20_000);
    expect(exchange?.status).toBe('finished');
    expect(conversion.reason).toBe(
      `exchange ${exchange!.id} finished unlike the request: payoutAddress ${exchange!.payoutAddress} (asked ${outside.hostAddress})`,
    );
    expect(await outside.usdtBalanceOf(outside.hostAddress)).toBe(usdtBefore);
    expect(await outside.usdtBalanceOf(exchange!.payoutAddress)).toBeGreaterThan(0n);
    expect(
      await query<{ conversion_status: string }>('select conversion_status from payments where payment_id = $1', [
        paymentId,
      ]),
    ).toEqual([{ conversion_status: 'failed' }]);
    expect(
      await query("select balance::text from ledger_accounts where code = $1 and asset = 'usdt'", [
        `channel:${channelId}`,
      ]),
    ).toEqual([]);
  });
});

describe('a payout exchange created unlike the request', () => {
  it('expects another amount: never funded, in review naming both amounts; cancel returns the funds to the channel', async ({
    outside,
    pay,
    query,
    exchangesFor,
    instantChannel,
    act,
  }) => {
    const channelId = await instantChannel();
    outside.sim.failNextExchange('wrong_amount');
    await pay(channelId);
    let payout:
      | { payout_id: string; status: string; reason: string | null; amount: string; transfer_id: string | null }
      | undefined;
    await eventually('the payout in review', async () => {
      [payout] = await query(
        'select payout_id, status, reason, amount::text, transfer_id from payouts where channel_id = $1',
        [channelId],
      );
      return payout?.status === 'needs_review';
    });
    const [exchange] = exchangesFor(payout!.payout_id);
    expect(payout!.reason).toMatch(
      new RegExp(
        `^ChangeNow created exchange ${exchange!.id} unlike the request: fromAmount ${exchange!.expectedAmountFrom.replace('.', '\\.')} \\(asked 0\\.0047239\\); not funded$`,
      ),
    );
    expect(payout!.transfer_id).toBeNull();
    expect(
      await query("select transfer_id from chain_transfers where purpose = 'payout' and ref = $1", [payout!.payout_id]),
    ).toEqual([]);
    expect(await outside.balanceOf(exchange!.payinAddress)).toBe(0n);

    // A retry would look for the payout's exchange at ChangeNow, find this one again and come back to review.
    const retried = await act('payouts', payout!.payout_id, 'retry');
    expect(retried.status).toBe(409);
    expect(retried.body.error).toMatch(/a retry would find it again: cancel the payout/);
    const [still] = await query<{ status: string }>('select status from payouts where payout_id = $1', [
      payout!.payout_id,
    ]);
    expect(still?.status).toBe('needs_review');

    const cancelled = await act('payouts', payout!.payout_id, 'cancel');
    expect(cancelled.status).toBe(200);
    const [balance] = await query<{ balance: string }>(
      "select balance::text from ledger_accounts where code = $1 and asset = 'eth'",
      [`channel:${channelId}`],
    );
    expect(balance?.balance).toBe(payout!.amount);
  });
});

describe('CHANGENOW_MAX_SLIPPAGE: a conversion that finishes below its estimate', () => {
  it('more than 3 % below: in review naming estimate, amountTo and the limit, alerted, nothing booked; resolve "received" settles what arrived', async ({
    outside,
    query,
    expectLedgerClean,
    balances,
    journalKinds,
    paymentConversionStatus,
    conversionInReview,
    resolve,
  }) => {
    const usdtBefore = await outside.usdtBalanceOf(outside.hostAddress);
    const { channelId, paymentId, id, inReview, exchange } = await conversionInReview('below_estimate');
    expect(exchange).toMatchObject({ status: 'finished', expectedAmountTo: ESTIMATE, amountTo: FIVE_BELOW });
    expect(inReview).toMatchObject({
      expectedUsdt: ESTIMATE,
      usdtReceived: null,
      transferStatus: 'confirmed',
      reason: `exchange ${exchange.id} finished below its estimate: amountTo ${FIVE_BELOW} USDT, estimate ${ESTIMATE} USDT, lowest accepted ${LOWEST_ACCEPTED} USDT (CHANGENOW_MAX_SLIPPAGE 3 %); not booked`,
    });
    expect(await query('select subject, severity from alerts where rule = $1', ['conversion_below_estimate'])).toEqual([
      { subject: id, severity: 'critical' },
    ]);
    // The USDT is on the host wallet, but no channel has it.
    expect(await outside.usdtBalanceOf(outside.hostAddress)).toBe(usdtBefore + 12_513_115n);
    expect(await journalKinds(id)).toEqual([]);
    expect(await balances(channelId)).toEqual({ 'channel/eth': NET_WEI.toString() });
    expect(await paymentConversionStatus(paymentId)).toBe('failed');

    const resolved = await resolve('conversions', id, {
      outcome: 'received',
      amount: FIVE_BELOW,
      txHash: exchange.payoutHash,
      note: 'rate moved; accepted',
    });
    expect(resolved).toMatchObject({
      status: 'completed',
      usdtReceived: FIVE_BELOW,
      payoutHash: exchange.payoutHash,
    });
    expect(await paymentConversionStatus(paymentId)).toBe('completed');
    expect(await balances(channelId)).toEqual({ 'channel/usdt': '12513115' });
    expect(await journalKinds(id)).toEqual(['conversion_settled']);
    await expectLedgerClean();
  });

  it('exactly 3 % below is at the limit: accepted and settled by itself', async ({
    exchangeFor,
    conversionReaches,
    conversionAnswered,
    expectUsdtOnly,
  }) => {
    const { channelId, id } = await conversionAnswered('below_estimate', { belowEstimatePercent: '3' });
    const done = await conversionReaches(id, 'completed');
    expect(exchangeFor(id)).toMatchObject({ expectedAmountTo: ESTIMATE, amountTo: LOWEST_ACCEPTED });
    expect(done).toMatchObject({ expectedUsdt: ESTIMATE, usdtReceived: LOWEST_ACCEPTED, reason: null });
    await expectUsdtOnly(channelId, '12776549');
  });
});

describe('CHANGENOW_MAX_SLIPPAGE: a payout that finishes below its estimate', () => {
  it('the owner has it, so it is not booked as completed but never paid again: review (a retry finds the same), then resolve "paid" keeps what ChangeNow paid', async ({
    query,
    exchangeFor,
    getPayout,
    resolve,
    expectPaidOut,
    act,
    payoutAlerts,
    payoutInReview,
    expectAlertedAndSetAside,
  }) => {
    const { channelId, id, inReview, exchange } = await payoutInReview('below_estimate');
    const reason = `exchange ${exchange.id} finished below its estimate: amountTo ${FIVE_BELOW} USDT, estimate ${ESTIMATE} USDT, lowest accepted ${LOWEST_ACCEPTED} USDT (CHANGENOW_MAX_SLIPPAGE 3 %); the owner was paid that, not booked as completed`;
    expect(inReview).toMatchObject({
      expectedAmountOut: ESTIMATE,
      amountOut: FIVE_BELOW,
      payoutHash: exchange.payoutHash,
      reason,
    });
    await expectAlertedAndSetAside(id, channelId, 'payout_below_estimate');

    // Looking again asks ChangeNow, which says the same: back in review, still one exchange, one transfer.
    expect((await act('payouts', id, 'retry')).body).toMatchObject({ status: 'sent' });
    await eventually(
      'in review again',
      async () => (await getPayout(id)).status === 'needs_review' && payoutAlerts(id).length === 2,
    );
    expect((await getPayout(id)).reason).toBe(reason);
    exchangeFor(id);
    expect(
      await query("select count(*)::int as n from chain_transfers where purpose = 'payout' and ref = $1", [id]),
    ).toEqual([{ n: 1 }]);
    // Its funds left: cancelling would put them back on the channel and create money.
    expect((await act('payouts', id, 'cancel')).status).toBe(409);

    const resolved = await resolve('payouts', id, { outcome: 'paid', note: 'owner accepts the lower amount' });
    expect(resolved).toMatchObject({
      status: 'completed',
      amountOut: FIVE_BELOW,
      payoutHash: exchange.payoutHash,
      reason: 'resolved as paid by alice: owner accepts the lower amount',
    });
    await expectPaidOut(id, channelId);
  });
});

describe('a payout exchange that finishes without amountTo', () => {
  it('is not completed on ChangeNow\'s silence: review (what the owner received is unknown), the payout hash kept; cancel is refused, resolve "paid" completes it', async ({
    resolve,
    expectPaidOut,
    act,
    payoutInReview,
    expectAlertedAndSetAside,
  }) => {
    const { channelId, id, inReview, exchange } = await payoutInReview('no_amount_to');
    expect(exchange).toMatchObject({ status: 'finished', amountTo: null });
    expect(inReview).toMatchObject({
      reason: `exchange ${exchange.id} finished without amountTo: what the owner received is unknown; not booked as completed`,
      amountOut: null,
      payoutHash: exchange.payoutHash,
    });
    await expectAlertedAndSetAside(id, channelId, 'payout_unverifiable');
    // Its funds left: back on the channel they would be paid twice.
    expect((await act('payouts', id, 'cancel')).status).toBe(409);

    const resolved = await resolve('payouts', id, { outcome: 'paid', note: 'ChangeNow support confirmed the payout' });
    expect(resolved).toMatchObject({ status: 'completed', payoutHash: exchange.payoutHash });
    await expectPaidOut(id, channelId);
  });
});

describe('verifying: ChangeNow holds the deposit in its AML check', () => {
  it('is an exchange in progress: polled on through the check, then settled in full', async ({
    outside,
    query,
    exchangeFor,
    getConversion,
    conversionReaches,
    verifyingPolled,
    expectUsdtOnly,
  }) => {
    const { channelId, id } = await verifyingPolled('polled three times while verifying', 3);
    expect(await getConversion(id)).toMatchObject({ status: 'sent', reason: null });
    // Queued again while the exchange is under way: not ahead of the other jobs (a conversion's first poll is), so
    // that the polls of a ChangeNow that hangs cannot hold every worker slot.
    expect(await query('select priority from graphile_worker.jobs where key = $1', [`conversion_poll:${id}`])).toEqual([
      { priority: 0 },
    ]);
    outside.sim.releaseVerification(exchangeFor(id).id);
    const done = await conversionReaches(id, 'completed');
    expect(done.usdtReceived).toBe(ESTIMATE);
    await expectUsdtOnly(channelId, '13171700');
  });

  it('past the poll deadline: in review, never lost; once the check clears, a retry looks again and settles it', async ({
    outside,
    db,
    query,
    exchangeFor,
    conversionReaches,
    paymentConversionStatus,
    act,
    verifyingPolled,
    expectUsdtOnly,
  }) => {
    const { channelId, paymentId, id } = await verifyingPolled('polled while verifying', 1);
    await db.pool.query(
      "update conversions set poll_deadline_at = now() - interval '1 minute' where conversion_id = $1",
      [id],
    );
    const inReview = await conversionReaches(id, 'needs_review');
    expect(inReview.reason).toBe('exchange still verifying past the poll deadline');
    expect(await query('select subject from alerts where rule = $1', ['conversion_stuck'])).toEqual([{ subject: id }]);
    const exchange = exchangeFor(id);
    expect(exchange.status).toBe('verifying');
    expect(await outside.balanceOf(exchange.payinAddress)).toBe(NET_WEI);
    expect(await paymentConversionStatus(paymentId)).toBe('failed');

    outside.sim.releaseVerification(exchange.id);
    const retried = await act('conversions', id, 'retry');
    expect(retried.body).toMatchObject({ status: 'sent' });
    expect((await conversionReaches(id, 'completed')).usdtReceived).toBe(ESTIMATE);
    await expectUsdtOnly(channelId, '13171700');
  });
});

describe('expired although funded: ChangeNow kept the deposit and sent nothing back', () => {
  it('a conversion goes to review with its payments held (not pending); ETH returned by hand is resolved "returned" and converted again', async ({
    query,
    balances,
    paymentConversionStatus,
    resolve,
    conversionInReview,
    convertedAgain,
    expectUsdtOnly,
    sentBackBySupport,
  }) => {
    const { channelId, paymentId, id, inReview, exchange } = await conversionInReview('expired_funded');
    expect(exchange).toMatchObject({ status: 'expired', amountFrom: '0.0047239', refundHash: null });
    expect(inReview.reason).toBe('exchange expired; the ETH sent has not come back');
    expect(await paymentConversionStatus(paymentId)).toBe('failed');
    expect(await query('select tx_hash from chain_refunds where ref = $1', [id])).toEqual([]);
    expect(await balances(channelId)).toEqual({ 'channel/eth': NET_WEI.toString() });

    // ChangeNow's support sends the ETH back from a wallet of its own.
    const back = await sentBackBySupport();
    const resolved = await resolve('conversions', id, { outcome: 'returned', txHash: back });
    expect(resolved.status).toBe('failed');
    await convertedAgain(paymentId);
    await expectUsdtOnly(channelId, '13171700');
  });

  it('a payout goes to review with its funds still set aside (not failed, not back on the channel); resolve "returned" once they are back', async ({
    expectLedgerClean,
    balances,
    resolve,
    payoutInReview,
    expectSetAside,
    sentBackBySupport,
  }) => {
    const { channelId, id, inReview, exchange } = await payoutInReview('expired_funded');
    expect(exchange).toMatchObject({ status: 'expired', amountFrom: '0.0047239', refundHash: null });
    expect(inReview).toMatchObject({ reason: 'exchange expired; the funds sent have not come back', amountOut: null });
    await expectSetAside(id, channelId);

    const refund = await sentBackBySupport();
    const resolved = await resolve('payouts', id, {
      outcome: 'returned',
      amount: '0.0047239',
      txHash: refund,
      note: 'returned by ChangeNow support',
    });
    expect(resolved.status).toBe('failed');
    expect(await balances(channelId)).toEqual({ 'channel/eth': NET_WEI.toString() });
    await expectLedgerClean();
  });
});
