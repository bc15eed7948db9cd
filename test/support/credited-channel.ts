/** A threshold channel given USDT straight in the ledger, for tests that run the payout stages by hand. */
import { accounts, postJournal } from '../../src/ledger/index.ts';
import type { TestDatabase } from './db.ts';
import type { Outside } from './outside.ts';
import { freshWallet } from './payouts.ts';

/**
 * A threshold channel (20 USD) paying USDT on `network` to `wallet`, credited `credit` USDT units as a settled
 * conversion would (from world:changenow), the host wallet holding them on chain. Returns the wallet.
 */
export async function creditedThresholdChannel(
  db: TestDatabase,
  outside: Outside,
  channelId: string,
  credit: bigint,
  pair: { network: 'eth' | 'trx'; wallet: string } = { network: 'eth', wallet: freshWallet() },
): Promise<string> {
  await db.db
    .insertInto('channels')
    .values({
      channel_id: channelId,
      payout_strategy: 'threshold',
      threshold_usd_cents: '2000',
      payout_currency: 'usdt',
      payout_network: pair.network,
      wallet_address: pair.wallet,
    })
    .execute();
  await db.db.transaction().execute((trx) =>
    postJournal(trx, {
      kind: 'test_credit',
      ref: channelId,
      entries: [
        { account: accounts.changenow('usdt'), amount: -credit },
        { account: accounts.channel(channelId, 'usdt'), amount: credit },
      ],
    }),
  );
  await outside.changenowReturn(outside.hostAddress, credit);
  return pair.wallet;
}
