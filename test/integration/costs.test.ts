/**
 * Cost per payment (src/overview/costs.ts) on real parts: instant and threshold payments through the ChangeNow
 * simulator and anvil, then the report held against the ledger and the chain: fees equal the fee accounts' balances,
 * gas equals what the chain charged the host wallet (every block's transactions from it, by their receipts), exchange
 * costs equal the cost journals, and the margin is fees − gas − exchange costs in each asset. A withdrawal's gas (the
 * host key used outside payrail) is no strategy's: a shared line of its own.
 */
import { describe, expect } from 'vitest';
import { createPublicClient, http, type Hex } from 'viem';
import { createChainWallet } from '../../src/integrations/wallet/index.ts';
import { formatCosts, perThousandTruncated, readCosts, type StrategyCosts } from '../../src/overview/index.ts';
import { takeNonce } from '../../src/simulators/chain-faults.ts';
import { recordWithdrawal } from '../../src/treasury/index.ts';
import { worldFirst, worldTest } from '../support/fixtures.ts';
import { eventually } from '../support/outside.ts';
import { freshWallet, TRON_WALLET } from '../support/payouts.ts';

const it = worldFirst(
  worldTest({
    env: { CONVERSION_MIN_USD: '1' },
    firstPaymentId: 9_940_000_000,
    firstChannel: 1_003_940_000_001,
  }),
);

const units = (m: ReadonlyMap<string, bigint>, asset: string) => m.get(asset) ?? 0n;

describe('cost per payment', () => {
  it('per strategy, from the ledger, agreeing with the fee accounts, the chain and the cost journals', async ({
    outside,
    db,
    app,
    start,
    channel,
    pay,
  }) => {
    const payrail = await start();
    // Instant: one owner paid ETH directly, one through an ETH -> USDT/TRC-20 exchange. Threshold (20 USD, two
    // payments fill it): one batch paid USDT directly, one through a USDT -> USDT/TRC-20 exchange.
    const instantDirect = await channel({
      payoutStrategy: 'instant',
      payoutCurrency: 'eth',
      payoutNetwork: 'eth',
      walletAddress: freshWallet(),
    });
    const instantExchange = await channel({
      payoutStrategy: 'instant',
      payoutCurrency: 'usdt',
      payoutNetwork: 'trx',
      walletAddress: TRON_WALLET,
    });
    const batchDirect = await channel({
      payoutStrategy: 'threshold',
      thresholdUsd: '20',
      payoutCurrency: 'usdt',
      payoutNetwork: 'eth',
      walletAddress: freshWallet(),
    });
    const batchExchange = await channel({
      payoutStrategy: 'threshold',
      thresholdUsd: '20',
      payoutCurrency: 'usdt',
      payoutNetwork: 'trx',
      walletAddress: TRON_WALLET,
    });
    const payouts = async () =>
      (await payrail.request('GET', '/api/payouts')).body.payouts as Array<{ kind: string; status: string }>;
    const instantIds: string[] = [];
    for (const id of [instantDirect, instantExchange, instantDirect]) instantIds.push(await pay(id));
    await eventually('three instant payouts completed', async () => {
      const all = await payouts();
      return all.length === 3 && all.every((p) => p.status === 'completed');
    });
    // The first conversion comes back 1 % short (a refund less network fees): ChangeNow's cost, a threshold one.
    outside.sim.failNextExchange('refunded_short');
    for (const id of [batchDirect, batchExchange, batchDirect, batchExchange]) await pay(id);
    await eventually(
      'three instant payouts and two batches completed',
      async () => {
        const all = await payouts();
        return all.length === 5 && all.every((p) => p.status === 'completed');
      },
      90_000,
    );
    // Gas is booked when a transfer is confirmed; nothing must still be on its way when the books are read.
    await eventually('every transfer ended', async () => {
      const { rows } = await db.pool.query<{ n: number }>(
        `select count(*)::int as n from chain_transfers where status not in ('confirmed', 'failed')`,
      );
      return rows[0]?.n === 0;
    });
    // The operator's own transaction from the host wallet (a zero-value self-transfer), booked as a withdrawal once
    // payrail is stopped, so no transfer of its own can be waiting on that nonce.
    await app.stop();
    const withdrawalTx = await takeNonce(outside.chain.rpcUrl, outside.hostKey);
    // anvil answers a send once the transaction is in its pool and mines it just after: the operator books a
    // withdrawal they have seen mined.
    const client = createPublicClient({ transport: http(outside.chain.rpcUrl) });
    await client.waitForTransactionReceipt({ hash: withdrawalTx, timeout: 10_000, pollingInterval: 50 });
    const evidence = {
      wallet: createChainWallet({
        rpcUrl: outside.chain.rpcUrl,
        address: outside.hostAddress,
        chainId: outside.chain.chainId,
        timeoutMs: 15_000,
      }),
      usdtContract: outside.usdt,
      confirmations: 1,
    };
    expect(
      await recordWithdrawal(db.db, evidence, { txHash: withdrawalTx, from: 'capital', actor: 'ops' }),
    ).toMatchObject({ booked: true, ethOut: 0n, usdtOut: 0n });

    const report = await readCosts(db.db);
    const [threshold, instant, shared] = report.lines as [StrategyCosts, StrategyCosts, StrategyCosts];
    expect(report.lines.map((l) => l.strategy)).toEqual(['threshold', 'instant', 'shared']);
    expect([threshold.payments, instant.payments]).toEqual([4, 3]);
    // Exchanges: the conversion(s) and one batch for threshold; one instant payout. The simulator saw them all.
    const { rows: conv } = await db.pool.query<{ n: number }>(
      `select count(*)::int as n from conversions where exchange_id is not null`,
    );
    expect(threshold.exchanges).toBe((conv[0]?.n ?? 0) + 1);
    expect(instant.exchanges).toBe(1);
    expect(report.total.exchanges).toBe(outside.sim.exchanges.size);

    // Fees: the fee accounts' balances, and per strategy the fee each payment was credited.
    const { rows: feeBalance } = await db.pool.query<{ units: string }>(
      `select coalesce(sum(balance), 0)::text as units from ledger_accounts where code like 'platform:fees#%' and asset = 'eth'`,
    );
    expect(units(report.total.fees, 'eth')).toBe(BigInt(feeBalance[0]?.units ?? '-1'));
    const { rows: feeRows } = await db.pool.query<{ strategy: string; units: string }>(
      `select payout_strategy as strategy, sum(fee_amount)::text as units from payments group by 1`,
    );
    for (const line of [threshold, instant]) {
      const booked = BigInt(feeRows.find((r) => r.strategy === line.strategy)?.units ?? '-1');
      expect(units(line.fees, 'eth')).toBe(booked);
      expect(booked).toBeGreaterThan(0n);
    }

    // Gas: every transaction the host wallet sent, found block by block, priced by its receipt.
    const host = outside.hostAddress.toLowerCase();
    const charged = new Map<string, bigint>();
    const latest = await client.getBlockNumber();
    for (let n = 0n; n <= latest; n++) {
      const block = await client.getBlock({ blockNumber: n, includeTransactions: true });
      for (const tx of block.transactions) {
        if (tx.from.toLowerCase() !== host) continue;
        const receipt = await client.getTransactionReceipt({ hash: tx.hash });
        charged.set(tx.hash.toLowerCase(), receipt.gasUsed * receipt.effectiveGasPrice);
      }
    }
    // Every host transaction is a transfer payrail sent, but the withdrawal: shared gas, no transfer of payrail's.
    expect(charged.size).toBe(report.total.transfers + 1);
    expect(units(report.total.gas, 'eth')).toBe([...charged.values()].reduce((a, b) => a + b, 0n));
    expect(shared).toMatchObject({ payments: 0, exchanges: 0, transfers: 0 });
    expect(units(shared.gas, 'eth')).toBe(charged.get(withdrawalTx.toLowerCase()));
    expect(units(shared.margin, 'eth')).toBe(-units(shared.gas, 'eth'));
    // ... and per strategy, through the transfer each transaction was: a conversion's and a batch's are threshold's.
    const { rows: transfers } = await db.pool.query<{ tx_hash: Hex; strategy: string }>(
      `select t.tx_hash, case when t.purpose = 'conversion' then 'threshold' else po.kind end as strategy
       from chain_transfers t left join payouts po on t.purpose = 'payout' and po.payout_id = t.ref`,
    );
    for (const line of [threshold, instant]) {
      const mine = transfers.filter((t) => t.strategy === line.strategy);
      expect(line.transfers).toBe(mine.length);
      expect(units(line.gas, 'eth')).toBe(mine.reduce((sum, t) => sum + (charged.get(t.tx_hash) ?? -1n), 0n));
      expect(units(line.gas, 'eth')).toBeGreaterThan(0n);
    }

    // Exchange costs: what the cost journals credited ChangeNow, all of it the short conversion's.
    const { rows: costRows } = await db.pool.query<{ asset: string; units: string }>(
      `select a.asset, sum(e.amount)::text as units from ledger_journals j join ledger_entries e on e.journal_id = j.id
       join ledger_accounts a on a.id = e.account_id
       where j.kind in ('conversion_shortfall', 'conversion_lost', 'payout_returned') and a.code = 'world:changenow'
       group by 1`,
    );
    expect(costRows).toHaveLength(1);
    expect(Object.fromEntries(report.total.exchangeCosts)).toEqual(
      Object.fromEntries(costRows.map((r) => [r.asset, BigInt(r.units)])),
    );
    expect(units(threshold.exchangeCosts, 'eth')).toBe(BigInt(costRows[0]?.units ?? '-1'));
    expect(units(threshold.exchangeCosts, 'eth')).toBeGreaterThan(0n);
    expect(instant.exchangeCosts.size).toBe(0);

    // Margin, per asset, never across assets.
    for (const line of [...report.lines, report.total]) {
      for (const asset of new Set([...line.fees.keys(), ...line.gas.keys(), ...line.exchangeCosts.keys()]))
        expect(units(line.margin, asset)).toBe(
          units(line.fees, asset) - units(line.gas, asset) - units(line.exchangeCosts, asset),
        );
    }
    expect(units(report.total.margin, 'eth')).toBe(
      units(threshold.margin, 'eth') + units(instant.margin, 'eth') + units(shared.margin, 'eth'),
    );

    // Per 1,000 payments, truncated toward zero to one wei.
    expect(perThousandTruncated(7n, 3)).toBe(2333n);
    expect(perThousandTruncated(-7n, 3)).toBe(-2333n);
    expect(perThousandTruncated(7n, 0)).toBeNull();
    const text = formatCosts(report).join('\n');
    const thresholdFees = units(threshold.fees, 'eth');
    expect(text).toContain(`per 1,000: ${formatEth(perThousandTruncated(thresholdFees, 4) as bigint)} ETH`);
    expect(text).toMatch(/^ {2}instant: 3 payments, 1 ChangeNow exchanges \(333\.33 per 1,000\)/m);

    // Over a set of payments: the instant ones alone are the instant line, nothing of the threshold strategy, and
    // no shared cost (it belongs to no payment).
    const onlyInstant = await readCosts(db.db, { paymentIds: instantIds });
    expect(onlyInstant.lines.map((l) => l.strategy)).toEqual(['threshold', 'instant']);
    expect(onlyInstant.lines[1]).toEqual(instant);
    expect(onlyInstant.lines[0]).toMatchObject({ payments: 0, exchanges: 0, transfers: 0 });
    expect(onlyInstant.lines[0]?.gas.size).toBe(0);
    // Over a time range: nothing was booked after now.
    const later = await readCosts(db.db, { from: new Date(Date.now() + 60_000) });
    expect(later.total).toMatchObject({ payments: 0, exchanges: 0, transfers: 0 });
    expect(later.total.fees.size + later.total.gas.size).toBe(0);
  });
});

function formatEth(wei: bigint): string {
  const digits = wei.toString().padStart(19, '0');
  const fraction = digits.slice(-18).replace(/0+$/, '');
  return `${digits.slice(0, -18)}${fraction ? `.${fraction}` : ''}`;
}
