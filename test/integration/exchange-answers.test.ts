/**
 * ChangeNow's answers compared with what payrail asked (real PostgreSQL, anvil, the ChangeNow simulator over HTTP):
 * an exchange created to pay out elsewhere, or for another amount, is never funded; the conversion or payout goes to
 * review naming both values, and its way out leaves the ledger equal to the chain.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bookHostFunding, expectLedgerEqualsChain } from '../support/ledger-chain.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { eventually, resetFaults, startOutside, type Outside } from '../support/outside.ts';
import { startTestPayrail, type TestPayrail } from '../support/payrail.ts';
import { freshWallet, saveChannel, sendFinished } from '../support/payouts.ts';

const ALICE = 'alice-token-0123456789abcdef';
const TRON_WALLET = 'TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7';

let outside: Outside;
let db: TestDatabase;
let payrail: TestPayrail;
let nextPaymentId = 9_700_000_000;
let nextChannel = 1_003_700_000_001;

beforeAll(async () => {
  outside = await startOutside();
  db = await createTestDatabase();
  await bookHostFunding(db, outside);
  payrail = await startTestPayrail(db, { outside, env: { ...outside.env, CONVERSION_MIN_USD: '1', ADMIN_TOKENS: `alice:${ALICE}` } });
});
afterEach(async () => {
  await resetFaults(outside);
});
afterAll(async () => {
  try {
    await payrail?.stop();
    if (db && outside) await expectLedgerEqualsChain(db, outside);
  } finally {
    await db?.close();
    await outside?.stop();
  }
});

const query = async <T>(text: string, values: unknown[]): Promise<T[]> => (await db.pool.query(text, values)).rows as T[];
const exchangesFor = (userId: string) => [...outside.sim.exchanges.values()].filter((e) => e.userId === userId);

describe('a conversion exchange created unlike the request', () => {
  it('pays out to another address: never funded, in review with both addresses; retry sends the payments to a new batch', async () => {
    const channelId = await saveChannel(payrail, `-${nextChannel++}`, { payoutStrategy: 'threshold', thresholdUsd: '1000', payoutCurrency: 'usdt', payoutNetwork: 'eth', walletAddress: freshWallet() });
    outside.sim.failNextExchange('wrong_payout_address');
    const paymentId = await sendFinished(payrail, nextPaymentId++, channelId);
    let conversion: { conversion_id: string; status: string; reason: string | null } | undefined;
    await eventually('the conversion in review', async () => {
      [conversion] = await query('select c.conversion_id, c.status, c.reason from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1', [paymentId]);
      return conversion?.status === 'needs_review';
    });
    const id = conversion!.conversion_id;
    const [exchange] = exchangesFor(id);
    expect(exchange?.payoutAddress.toLowerCase()).not.toBe(outside.hostAddress.toLowerCase());
    expect(conversion!.reason).toBe(`ChangeNow created exchange ${exchange!.id} unlike the request: payoutAddress ${exchange!.payoutAddress} (asked ${outside.hostAddress}); not funded`);
    expect(await query("select transfer_id from chain_transfers where purpose = 'conversion' and ref = $1", [id])).toEqual([]);
    expect(await outside.balanceOf(exchange!.payinAddress)).toBe(0n);
    expect(await query("select subject from alerts where rule = 'exchange_mismatch'", [])).toEqual([{ subject: id }]);

    const retried = await payrail.request('POST', `/api/conversions/${id}/retry`, { token: ALICE });
    expect(retried.status).toBe(200);
    await eventually('converted by a new batch', async () => (await query<{ conversion_status: string }>('select conversion_status from payments where payment_id = $1', [paymentId]))[0]?.conversion_status === 'completed');
    expect(await outside.balanceOf(exchange!.payinAddress)).toBe(0n);
  });
});

describe('a conversion exchange that finishes unlike the request', () => {
  it('pays its USDT to another address: in review at once naming both addresses, nothing booked to the channel', async () => {
    const channelId = await saveChannel(payrail, `-${nextChannel++}`, { payoutStrategy: 'threshold', thresholdUsd: '1000', payoutCurrency: 'usdt', payoutNetwork: 'eth', walletAddress: freshWallet() });
    outside.sim.failNextExchange('payout_elsewhere');
    const usdtBefore = await outside.usdtBalanceOf(outside.hostAddress);
    const paymentId = await sendFinished(payrail, nextPaymentId++, channelId);
    let conversion: { conversion_id: string; status: string; reason: string | null } | undefined;
    await eventually('the conversion in review', async () => {
      [conversion] = await query('select c.conversion_id, c.status, c.reason from conversions c join conversion_payments p using (conversion_id) where p.payment_id = $1', [paymentId]);
      return conversion?.status === 'needs_review';
    }, 20_000);
    const [exchange] = exchangesFor(conversion!.conversion_id);
    expect(exchange?.status).toBe('finished');
    expect(conversion!.reason).toBe(`exchange ${exchange!.id} finished unlike the request: payoutAddress ${exchange!.payoutAddress} (asked ${outside.hostAddress})`);
    expect(await outside.usdtBalanceOf(outside.hostAddress)).toBe(usdtBefore);
    expect(await outside.usdtBalanceOf(exchange!.payoutAddress)).toBeGreaterThan(0n);
    expect(await query<{ conversion_status: string }>('select conversion_status from payments where payment_id = $1', [paymentId])).toEqual([{ conversion_status: 'failed' }]);
    expect(await query("select balance::text from ledger_accounts where code = $1 and asset = 'usdt'", [`channel:${channelId}`])).toEqual([]);
  });
});

describe('a payout exchange created unlike the request', () => {
  it('expects another amount: never funded, in review naming both amounts; cancel returns the funds to the channel', async () => {
    const channelId = await saveChannel(payrail, `-${nextChannel++}`, { payoutStrategy: 'instant', payoutCurrency: 'usdt', payoutNetwork: 'trx', walletAddress: TRON_WALLET });
    outside.sim.failNextExchange('wrong_amount');
    await sendFinished(payrail, nextPaymentId++, channelId);
    let payout: { payout_id: string; status: string; reason: string | null; amount: string; transfer_id: string | null } | undefined;
    await eventually('the payout in review', async () => {
      [payout] = await query('select payout_id, status, reason, amount::text, transfer_id from payouts where channel_id = $1', [channelId]);
      return payout?.status === 'needs_review';
    });
    const [exchange] = exchangesFor(payout!.payout_id);
    expect(payout!.reason).toMatch(new RegExp(`^ChangeNow created exchange ${exchange!.id} unlike the request: fromAmount ${exchange!.expectedAmountFrom.replace('.', '\\.')} \\(asked 0\\.0047239\\); not funded$`));
    expect(payout!.transfer_id).toBeNull();
    expect(await query("select transfer_id from chain_transfers where purpose = 'payout' and ref = $1", [payout!.payout_id])).toEqual([]);
    expect(await outside.balanceOf(exchange!.payinAddress)).toBe(0n);

    const cancelled = await payrail.request('POST', `/api/payouts/${payout!.payout_id}/cancel`, { token: ALICE });
    expect(cancelled.status).toBe(200);
    const [balance] = await query<{ balance: string }>("select balance::text from ledger_accounts where code = $1 and asset = 'eth'", [`channel:${channelId}`]);
    expect(balance?.balance).toBe(payout!.amount);
  });
});
