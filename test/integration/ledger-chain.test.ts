/**
 * The ledger against the chain: the operator's funding booked as capital from a real deposit (and refused when the
 * chain does not show one), payments whose outcome NOWPayments forwarded on chain, paid out through conversions and
 * payouts on anvil, and then `check-ledger --chain` finding the host wallet's ETH and USDT equal to the books; money
 * the books do not know of is a difference, an alert, and exit 1 from the command.
 */
import { createPublicClient, erc20Abi, http, type Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluateAlerts, STATE_RULES } from '../../src/alerts/index.ts';
import { createChainWallet, type ChainWallet } from '../../src/integrations/wallet/index.ts';
import { createLogger } from '../../src/log.ts';
import { claimRefund } from '../../src/pipeline/refunds.ts';
import { rpc } from '../../src/simulators/index.ts';
import { takeNonce } from '../../src/simulators/chain-faults.ts';
import { mintLocalUsdt } from '../../src/simulators/usdt/index.ts';
import { checkLedgerAgainstChain, recordDeposit, recordWithdrawal, TreasuryRefused } from '../../src/treasury/index.ts';
import { defaultAlertSettings } from '../support/alert-settings.ts';
import { instantEthChannel, usdtThresholdChannel } from '../support/api-seed.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { eventually, startOutside, type Outside } from '../support/outside.ts';
import { startTestPayrail, type TestPayrail } from '../support/payrail.ts';
import { cliEnv, payrailCli, payrailCliFailure } from '../support/payrail-cli.ts';
import { freshWallet, saveChannel, sendFinished } from '../support/payouts.ts';
import { mined, walletApp } from '../support/wallet-app.ts';

/** The fixture's finished IPN forwards 0.00487 ETH to the host wallet. */
const OUTCOME_WEI = 4_870_000_000_000_000n;

let outside: Outside;
let db: TestDatabase;
let payrail: TestPayrail;
let reader: ChainWallet;
let nextPaymentId = 9_400_000_000;
let nextChannel = 1_003_400_000_001;

beforeAll(async () => {
  outside = await startOutside();
  db = await createTestDatabase();
  payrail = await startTestPayrail(db, { env: { ...outside.env, CONVERSION_MIN_USD: '1' } });
  reader = createChainWallet({
    rpcUrl: outside.chain.rpcUrl,
    address: outside.hostAddress,
    chainId: outside.chain.chainId,
    timeoutMs: 5_000,
  });
});
afterAll(async () => {
  await payrail?.stop();
  await db?.close();
  await outside?.stop();
});

const chainSide = () => ({ wallet: reader, usdtContract: outside.usdt });
const depositChain = () => ({ wallet: reader, usdtContract: outside.usdt, confirmations: 1 });

/** A payment as it really happens: NOWPayments forwards the outcome to the host wallet, then sends `finished`. */
async function pay(channelId: string): Promise<void> {
  await outside.nowpayments.send(outside.hostAddress, OUTCOME_WEI);
  await sendFinished(payrail, nextPaymentId++, channelId);
}

describe('deposits', () => {
  it("books the operator's funding once, from what the chain shows, and refuses what is not a deposit", async () => {
    const first = await recordDeposit(db.db, depositChain(), {
      txHash: outside.hostFundingTx,
      asset: 'eth',
      actor: 'alice',
    });
    expect(first).toMatchObject({ booked: true, amount: 10n ** 20n });
    const again = await recordDeposit(db.db, depositChain(), {
      txHash: outside.hostFundingTx.toUpperCase().replace('0X', '0x'),
      asset: 'eth',
      actor: 'alice',
    });
    expect(again.booked).toBe(false);
    const journals = await db.pool.query(
      "select count(*)::int as n from ledger_journals where kind = 'wallet_deposit'",
    );
    expect(journals.rows[0].n).toBe(1);
    expect((await db.pool.query("select actor from audit_log where action = 'wallet.deposit'")).rows).toEqual([
      { actor: 'alice' },
    ]);

    await expect(
      recordDeposit(db.db, depositChain(), { txHash: `0x${'ab'.repeat(32)}`, asset: 'eth', actor: 'alice' }),
    ).rejects.toThrow(/no mined transaction/);
    // The funding moved ETH, not USDT.
    await expect(
      recordDeposit(db.db, depositChain(), { txHash: outside.hostFundingTx, asset: 'usdt', actor: 'alice' }),
    ).rejects.toBeInstanceOf(TreasuryRefused);
    // ETH sent elsewhere is no deposit to the host wallet.
    const elsewhere = await outside.nowpayments.send(freshWallet() as Hex, 1n);
    await expect(
      recordDeposit(db.db, depositChain(), { txHash: elsewhere, asset: 'eth', actor: 'alice' }),
    ).rejects.toThrow(/sent no ETH to the host wallet/);
    await expect(
      recordDeposit(db.db, depositChain(), { txHash: 'nope', asset: 'eth', actor: 'alice' }),
    ).rejects.toThrow(/transaction hash/);
  });
});

describe('check-ledger --chain', () => {
  it("after payments paid out through conversions and payouts on chain: the host wallet's ETH and USDT equal the books", async () => {
    const instant = await saveChannel(payrail, `-${nextChannel++}`, {
      ...instantEthChannel(),
      walletAddress: freshWallet(),
    });
    const threshold = await saveChannel(payrail, `-${nextChannel++}`, {
      ...usdtThresholdChannel('20'),
      walletAddress: freshWallet(),
    });
    await pay(instant);
    await pay(threshold);
    await pay(threshold);
    await pay(threshold);
    const done = async () => {
      const { rows } = await db.pool.query<{ open: number; completed: number }>(
        `select (select count(*) from payouts where status not in ('completed', 'failed', 'cancelled'))::int as open,
                (select count(*) from payouts where status = 'completed')::int as completed`,
      );
      const waiting = await db.pool.query<{ n: number }>(
        "select count(*)::int as n from payments where conversion_status in ('pending', 'converting')",
      );
      return rows[0]!.open === 0 && rows[0]!.completed >= 2 && waiting.rows[0]!.n === 0;
    };
    await eventually('every payment converted and the payouts completed', done, 60_000);
    const report = await checkLedgerAgainstChain(db.db, chainSide());
    expect(report.assets.map((a) => [a.asset, a.difference])).toEqual([
      ['eth', 0n],
      ['usdt', 0n],
    ]);
    expect(report.ok).toBe(true);
    const usdt = report.assets.find((a) => a.asset === 'usdt')!;
    // The threshold channel's USDT left in its batch; what it had below the threshold is still on the wallet.
    expect(usdt.onChain).toBe(usdt.ledgerHeld);
  });

  it('money the books do not know of is a difference: the alert fires with every term, and the command exits 1 naming it', async () => {
    await outside.nowpayments.send(outside.hostAddress, 12_345n);
    const report = await checkLedgerAgainstChain(db.db, chainSide());
    expect(report.assets.find((a) => a.asset === 'eth')?.difference).toBe(12_345n);

    const settings = { ...defaultAlertSettings(db.url), ledgerChainCheckEveryMs: 0 };
    const rules = STATE_RULES.filter((r) => r.name === 'ledger_chain_mismatch');
    const exchange = { listExchanges: async () => [] };
    await evaluateAlerts({
      db: db.db,
      logger: createLogger({ level: 'silent' }),
      wallet: reader,
      exchange,
      usdtContract: outside.usdt,
      settings,
      notify: false,
      rules,
      chain: chainSide(),
    });
    const { rows } = await db.pool.query(
      "select subject, details from alerts where rule = 'ledger_chain_mismatch' and resolved_at is null",
    );
    expect(rows).toEqual([expect.objectContaining({ subject: 'eth' })]);
    expect(rows[0].details).toMatchObject({
      difference: '12345',
      onChain: expect.any(String),
      ledgerHeld: expect.any(String),
    });

    const env = cliEnv(db, outside);
    const failed = await payrailCliFailure(['check-ledger', '--chain'], env);
    expect(failed?.code).toBe(1);
    expect(failed?.stdout).toMatch(/ledger OK/);
    expect(failed?.stdout).toMatch(/difference \(on chain − expected\) +0\.000000000000012345 ETH +MISMATCH/);
    expect(failed?.stdout).toMatch(/ledger ≠ chain: ETH/);

    // The operator books it (it was a deposit after all): equal again, and the command exits 0.
    const hash = (await db.pool.query<{ ref: string }>("select ref from ledger_journals where kind = 'wallet_deposit'"))
      .rows[0]!.ref;
    expect(hash).toBe(outside.hostFundingTx.toLowerCase());
    const extra = await outside.nowpayments.send(outside.hostAddress, 1n);
    const booked = await payrailCli(['deposit', extra, '--asset', 'eth'], env);
    expect(booked.stdout).toMatch(/booked: .* brought 0\.000000000000000001 ETH to the host wallet/);
    // 12,345 wei still unbooked.
    const still = await payrailCliFailure(['check-ledger', '--chain'], env);
    expect(still?.code).toBe(1);
    const missing = await payrailCliFailure(['check-ledger', '--chain'], { ...env, ETH_RPC_URL: '' });
    expect(missing?.code).toBe(78);
    expect(missing?.stderr).toMatch(/ETH_RPC_URL/);
  });
});

describe('one inbound transaction, one use', () => {
  it('a deposit cannot also be a refund, and a refund cannot also be a deposit', async () => {
    const deposit = await outside.nowpayments.send(outside.hostAddress, 777n);
    expect((await recordDeposit(db.db, depositChain(), { txHash: deposit, asset: 'eth', actor: 'alice' })).booked).toBe(
      true,
    );
    const claimed = await db.db.transaction().execute((trx) =>
      claimRefund(trx, {
        txHash: deposit,
        purpose: 'payout',
        ref: 'po_0000000000000001',
        asset: 'eth',
        amount: 777n,
      }),
    );
    expect(claimed).toBe(false);

    const refund = await outside.nowpayments.send(outside.hostAddress, 888n);
    expect(
      await db.db.transaction().execute((trx) =>
        claimRefund(trx, {
          txHash: refund,
          purpose: 'payout',
          ref: 'po_0000000000000002',
          asset: 'eth',
          amount: 888n,
        }),
      ),
    ).toBe(true);
    await expect(
      recordDeposit(db.db, depositChain(), { txHash: refund, asset: 'eth', actor: 'alice' }),
    ).rejects.toThrow(/refund already booked/);
  });
});

describe('withdrawals: the host key used outside payrail', () => {
  const ethDifference = async () =>
    (await checkLedgerAgainstChain(db.db, chainSide())).assets.find((a) => a.asset === 'eth')!.difference;
  const usdtDifference = async () =>
    (await checkLedgerAgainstChain(db.db, chainSide())).assets.find((a) => a.asset === 'usdt')!.difference;
  const held = async (code: string, asset: string) =>
    BigInt(
      (
        await db.pool.query<{ sum: string }>(
          'select coalesce(sum(balance), 0)::text as sum from ledger_accounts where code like $1 and asset = $2',
          [code, asset],
        )
      ).rows[0]!.sum,
    );
  const chain = () => createPublicClient({ transport: http(outside.chain.rpcUrl) });
  const hostApp = () => walletApp(outside.chain, outside.hostKey);
  const withdrawal = (txHash: string, from: 'capital' | 'fees' = 'capital') =>
    recordWithdrawal(db.db, depositChain(), { txHash, from, actor: 'alice' });

  it('books what the chain shows it spent, once: its gas as a network cost, what it sent from capital or fees; ledger = chain again', async () => {
    // A wallet app's zero-value self-transfer (the kind that takes a transfer's nonce): only its gas left the wallet.
    const before = await ethDifference();
    const selfTx = await takeNonce(outside.chain.rpcUrl, outside.hostKey);
    const receipt = await mined(outside.chain, selfTx);
    const gas = receipt.gasUsed * receipt.effectiveGasPrice;
    expect(await ethDifference()).toBe(before - gas);
    expect(await withdrawal(selfTx)).toMatchObject({ booked: true, gasWei: gas, ethOut: 0n, usdtOut: 0n });
    expect(await ethDifference()).toBe(before);

    // Earned fees taken out to the operator's own address.
    const fees = await held('platform:fees#%', 'eth');
    expect(fees).toBeGreaterThan(0n);
    const out = await hostApp().sendTransaction({ to: freshWallet() as Hex, value: fees / 2n });
    await mined(outside.chain, out);
    expect(await withdrawal(out, 'fees')).toMatchObject({ booked: true, ethOut: fees / 2n });
    expect(await held('platform:fees#%', 'eth')).toBe(fees - fees / 2n);
    expect(await ethDifference()).toBe(before);
    expect((await withdrawal(out, 'fees')).booked).toBe(false);
    expect(
      (await db.pool.query("select count(*)::int as n from ledger_journals where kind = 'wallet_withdrawal'")).rows[0]
        .n,
    ).toBe(2);
    expect((await db.pool.query("select actor from audit_log where action = 'wallet.withdrawal'")).rows).toEqual([
      { actor: 'alice' },
      { actor: 'alice' },
    ]);

    // More than the fees hold: refused and nothing booked (the rest of the wallet is the channels' money).
    const tooMuch = await hostApp().sendTransaction({ to: freshWallet() as Hex, value: fees });
    await mined(outside.chain, tooMuch);
    await expect(withdrawal(tooMuch, 'fees')).rejects.toThrow(/platform's fees hold .* less than/);
    expect(
      (await db.pool.query("select count(*)::int as n from ledger_journals where kind = 'wallet_withdrawal'")).rows[0]
        .n,
    ).toBe(2);
    expect((await withdrawal(tooMuch, 'capital')).booked).toBe(true);
    expect(await ethDifference()).toBe(before);
  });

  it("USDT sent out by the host key is taken from capital the operator deposited; payrail's own transfers and deposits are refused", async () => {
    const before = await usdtDifference();
    const minter = generatePrivateKey();
    await rpc(outside.chain.rpcUrl, 'anvil_setBalance', [privateKeyToAccount(minter).address, '0xde0b6b3a7640000']);
    await mintLocalUsdt(outside.chain.rpcUrl, outside.usdt, minter, outside.hostAddress, 5_000_000n);
    const mint = (await chain().getBlock({ blockTag: 'latest' })).transactions[0]!;
    expect(await recordDeposit(db.db, depositChain(), { txHash: mint, asset: 'usdt', actor: 'alice' })).toMatchObject({
      booked: true,
      amount: 5_000_000n,
    });
    const sent = await hostApp().writeContract({
      address: outside.usdt,
      abi: erc20Abi,
      functionName: 'transfer',
      args: [freshWallet() as Hex, 3_000_000n],
    });
    await mined(outside.chain, sent);
    expect(await usdtDifference()).toBe(before - 3_000_000n);
    expect(await withdrawal(sent)).toMatchObject({ booked: true, usdtOut: 3_000_000n });
    expect(await usdtDifference()).toBe(before);
    expect(await held('platform:capital', 'usdt')).toBe(2_000_000n);

    const own = (
      await db.pool.query<{ tx_hash: string }>("select tx_hash from chain_transfers where status = 'confirmed' limit 1")
    ).rows[0]!.tx_hash;
    await expect(withdrawal(own)).rejects.toThrow(/payrail booked itself/);
    await expect(withdrawal(mint)).rejects.toThrow(/not sent by the host wallet/);
    await expect(recordDeposit(db.db, depositChain(), { txHash: sent, asset: 'usdt', actor: 'alice' })).rejects.toThrow(
      /sent by the host wallet itself/,
    );

    const env = cliEnv(db, outside);
    const again = await payrailCli(['withdrawal', sent], env);
    expect(again.stdout).toMatch(/already booked: .* 3 USDT sent away, taken from the platform's capital/);
    const bad = await payrailCliFailure(['withdrawal', sent, '--from', 'channels'], env);
    expect(bad?.code).toBe(64);
    expect(bad?.stderr).toMatch(/payrail withdrawal: unexpected --from channels/);
  });
  it("refuses a withdrawal beyond the platform's own money (capital and fees less gas paid): the rest of the wallet is the channels'", async () => {
    // A payment waits on its channel as ETH (ChangeNow down, nothing converts): the wallet holds more than the platform owns.
    await outside.sim.setFault('down');
    try {
      const channelId = await saveChannel(payrail, `-${nextChannel++}`, {
        ...usdtThresholdChannel('1000'),
        walletAddress: freshWallet(),
      });
      await pay(channelId);
      const platformNet =
        (await held('platform:capital', 'eth')) +
        (await held('platform:fees#%', 'eth')) +
        (await held('platform:network_costs', 'eth')) +
        (await held('platform:losses', 'eth'));
      expect(await held(`channel:${channelId}`, 'eth')).toBeGreaterThan(0n);
      const out = await hostApp().sendTransaction({ to: freshWallet() as Hex, value: platformNet });
      await mined(outside.chain, out);
      await expect(withdrawal(out)).rejects.toThrow(
        /the platform's own ETH \(capital and fees less gas and losses paid\) is .* less than the .* this transaction took: the rest is channels' money/,
      );
      expect(
        (
          await db.pool.query(
            "select count(*)::int as n from ledger_journals where kind = 'wallet_withdrawal' and ref = $1",
            [out.toLowerCase()],
          )
        ).rows[0].n,
      ).toBe(0);
    } finally {
      await outside.sim.setFault('none');
    }
  });
});
