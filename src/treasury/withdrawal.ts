/**
 * A transaction sent from the host key outside payrail: the operator taking earned fees or capital out, a wallet
 * app's transaction (one that took a transfer's nonce, say). payrail did not sign it, so nothing booked it; the chain
 * still shows what it spent. Booked from the chain alone, once deep enough: its gas as the platform's network cost,
 * the ETH it sent away and the USDT its Transfer logs moved out of the host wallet as money the platform gave out,
 * taken from capital or from fees, or, for a reversed payment's ETH sent back, from the refunds it owes. Each hash once (journal wallet_withdrawal, ref = hash); never one of payrail's own
 * transfers, whose gas and amounts are booked by the transfer itself.
 */
import type { Hex } from 'viem';
import { recordAudit } from '../db/index.ts';
import { sql, type Transaction } from 'kysely';
import type { Database, Db } from '../db/index.ts';
import { accounts, postJournal, type AccountRef, type EntryInput } from '../ledger/index.ts';
import { deepTransaction, normalisedHash, TreasuryRefused, usdtOf, type EvidenceChain } from './evidence.ts';
import { lockInboundHash } from './inbound.ts';

/**
 * Which balance pays what the transaction sent away (its gas is always a network cost): the platform's own capital or
 * fees, or the refunds it owes (reversed payments' ETH, sent back to NOWPayments or the subscriber).
 */
export type WithdrawalSource = 'capital' | 'fees' | 'refunds';

export interface WithdrawalResult {
  readonly txHash: string;
  /** Smallest units that left the host wallet, gas included: wei, and USDT units. */
  readonly gasWei: bigint;
  readonly ethOut: bigint;
  readonly usdtOut: bigint;
  /** False when this hash was booked before (nothing changed). */
  readonly booked: boolean;
}

export async function recordWithdrawal(
  db: Db,
  chain: EvidenceChain,
  input: { txHash: string; from: WithdrawalSource; actor: string },
): Promise<WithdrawalResult> {
  const hash = normalisedHash(input.txHash);
  const spent = await spentBy(chain, hash);
  const booked = await db.transaction().execute(async (trx) => {
    await lockInboundHash(trx, hash);
    const before = await trx
      .selectFrom('ledger_journals')
      .select('id')
      .where('kind', '=', 'wallet_withdrawal')
      .where('ref', '=', hash)
      .executeTakeFirst();
    if (before) return false;
    await refuseOwnTransfer(trx, hash);
    const entries: EntryInput[] = [];
    if (spent.gasWei > 0n)
      entries.push(
        { account: accounts.networkCosts('eth'), amount: -spent.gasWei },
        { account: accounts.ethereum('eth'), amount: spent.gasWei },
      );
    for (const [asset, amount] of [
      ['eth', spent.ethOut],
      ['usdt', spent.usdtOut],
    ] as const) {
      // Refunds owed are not the platform's own: they pay what was sent back, the platform's own money only the gas.
      const own = input.from === 'refunds' ? 0n : amount;
      await refuseBeyondPlatformMoney(trx, asset, own + (asset === 'eth' ? spent.gasWei : 0n));
      if (amount === 0n) continue;
      const to = input.from === 'refunds' ? accounts.refunded(asset) : accounts.operator(asset);
      entries.push(...(await takeFrom(trx, input.from, asset, amount)), { account: to, amount });
    }
    if (entries.length === 0) throw new TreasuryRefused(`${hash} spent nothing from the host wallet`);
    const journal = await postJournal(trx, { kind: 'wallet_withdrawal', ref: hash, entries });
    if (journal.posted) {
      const details = {
        from: input.from,
        gasWei: spent.gasWei.toString(),
        ethOut: spent.ethOut.toString(),
        usdtOut: spent.usdtOut.toString(),
      };
      await recordAudit(trx, { actor: input.actor, action: 'wallet.withdrawal', subject: hash, details: details });
    }
    return journal.posted;
  });
  return { txHash: hash, ...spent, booked };
}

/**
 * What the host wallet lost to the transaction: all of its gas (paid even when it reverted), and, when it succeeded,
 * the ETH value it sent to another address and the configured USDT its logs moved out (less any moved in).
 */
async function spentBy(chain: EvidenceChain, hash: Hex): Promise<Omit<WithdrawalResult, 'txHash' | 'booked'>> {
  const host = chain.wallet.address.toLowerCase();
  const { receipt, tx } = await deepTransaction(chain, hash);
  if (tx.from.toLowerCase() !== host)
    throw new TreasuryRefused(
      `${hash} was not sent by the host wallet ${chain.wallet.address} (a deposit is booked with payrail deposit)`,
    );
  const ethOut = receipt.success && tx.to?.toLowerCase() !== host ? tx.value : 0n;
  let usdtOut = 0n;
  if (receipt.success && receipt.tokenTransfers.length > 0) {
    const token = usdtOf(chain);
    for (const t of receipt.tokenTransfers) {
      if (t.token.toLowerCase() !== token) continue;
      if (t.from.toLowerCase() === host) usdtOut += t.value;
      if (t.to.toLowerCase() === host) usdtOut -= t.value;
    }
  }
  if (usdtOut < 0n) throw new TreasuryRefused(`${hash} brought USDT to the host wallet: it is not a withdrawal`);
  return { gasWei: receipt.gasCostWei, ethOut, usdtOut };
}

async function refuseOwnTransfer(trx: Transaction<Database>, hash: string): Promise<void> {
  const own = await trx
    .selectNoFrom((eb) => [
      eb.exists(eb.selectFrom('chain_transfer_versions').select('tx_hash').where('tx_hash', '=', hash)).as('version'),
      eb
        .exists(
          eb
            .selectFrom('chain_transfers')
            .select('transfer_id')
            .where(sql`lower(tx_hash)`, '=', hash),
        )
        .as('transfer'),
      eb
        .exists(
          eb
            .selectFrom('chain_transfers')
            .select('transfer_id')
            .where(sql`lower(requested_hash)`, '=', hash),
        )
        .as('requested'),
    ])
    .executeTakeFirstOrThrow();
  if (own.version || own.transfer)
    throw new TreasuryRefused(`${hash} is a transfer payrail booked itself, not a withdrawal`);
  if (own.requested)
    throw new TreasuryRefused(`${hash} is named in a transfer's resolve request: it is booked as that transfer`);
}

/**
 * What the platform owns on the host wallet is its capital and fees less what it already paid (gas, losses it bore):
 * a withdrawal beyond that net would spend channels' money, however large capital alone looks.
 */
async function refuseBeyondPlatformMoney(
  trx: Transaction<Database>,
  asset: 'eth' | 'usdt',
  leaving: bigint,
): Promise<void> {
  if (leaving === 0n) return;
  const own = await sql<{ net: string }>`select coalesce(sum(balance), 0)::text as net from ledger_accounts
    where asset = ${asset} and (code in ('platform:capital', 'platform:network_costs', 'platform:losses') or code like 'platform:fees#%')`.execute(
    trx,
  );
  const net = BigInt(own.rows[0]?.net ?? '0');
  if (net < leaving)
    throw new TreasuryRefused(
      `the platform's own ${asset.toUpperCase()} (capital and fees less gas and losses paid) is ${net} ${asset === 'eth' ? 'wei' : 'USDT units'}, less than the ${leaving} this transaction took: the rest is channels' money`,
    );
}

/**
 * Entries taking `amount` from the platform's capital, its fee accounts (kept in shards: the fullest first), or the
 * refunds it owes. Refused, naming what is there, when the source holds less: the money would be a channel's.
 */
async function takeFrom(
  trx: Transaction<Database>,
  source: WithdrawalSource,
  asset: 'eth' | 'usdt',
  amount: bigint,
): Promise<EntryInput[]> {
  const single =
    source === 'capital' ? accounts.capital(asset) : source === 'refunds' ? accounts.refundsOwed(asset) : undefined;
  const fees = accounts.platformFees(asset, '0');
  // Locked in id order, as every journal and intake group locks balance rows, FOR NO KEY UPDATE (the lock a balance
  // update takes, which an intake group's entries, holding their accounts FOR KEY SHARE, do not block); taken from
  // the fullest first.
  const locked = await trx
    .selectFrom('ledger_accounts')
    .select(['code', 'balance'])
    .where('asset', '=', asset)
    .where((eb) => (single ? eb('code', '=', single.code) : eb('code', 'like', `${fees.code.split('#')[0]}#%`)))
    .orderBy('id')
    .forNoKeyUpdate()
    .execute();
  const rows = locked.sort((a, b) => {
    const [x, y] = [BigInt(a.balance), BigInt(b.balance)];
    return x === y ? (a.code < b.code ? -1 : a.code > b.code ? 1 : 0) : x > y ? -1 : 1;
  });
  const held = rows.reduce((sum, r) => sum + BigInt(r.balance), 0n);
  const name = source === 'refunds' ? 'refunds owed' : source;
  if (held < amount)
    throw new TreasuryRefused(
      `the platform's ${name} hold ${held} ${asset === 'eth' ? 'wei' : 'USDT units'}, less than the ${amount} this transaction sent away`,
    );
  const entries: EntryInput[] = [];
  let left = amount;
  for (const row of rows) {
    if (left === 0n) break;
    const take = BigInt(row.balance) < left ? BigInt(row.balance) : left;
    if (take <= 0n) continue;
    const account: AccountRef = single ?? { ...fees, code: row.code };
    entries.push({ account, amount: -take });
    left -= take;
  }
  return entries;
}
