/**
 * One transaction that brought money to the host wallet is booked for one thing: a refund already claimed for a
 * payout cannot also be a conversion's USDT proceeds (settled by the poll or a person's resolve), and a conversion's
 * payout cannot be claimed as a refund.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimRefund } from '../../src/pipeline/refunds.ts';
import { settleIn } from '../../src/pipeline/conversion/settle.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.close();
});

const hash = (n: number) => `0x${n.toString(16).padStart(64, '0')}`;

async function conversion(id: string, status: 'sent' | 'completed', payoutHash: string | null = null): Promise<void> {
  await db.db
    .insertInto('conversions')
    .values({
      conversion_id: id,
      status,
      from_asset: 'eth',
      to_asset: 'usdt',
      amount_wei: 10n ** 16n,
      payment_count: 1,
      payout_hash: payoutHash,
    })
    .execute();
}

describe('a USDT transaction booked for one thing only', () => {
  it("a payout refund is not a conversion's proceeds", async () => {
    await conversion('conv_00000000000000a1', 'sent');
    expect(
      await db.db.transaction().execute((trx) =>
        claimRefund(trx, {
          txHash: hash(1),
          purpose: 'payout',
          ref: 'po_00000000000000a1',
          asset: 'usdt',
          amount: 2_000_000n,
        }),
      ),
    ).toBe(true);
    const settled = await db.db
      .transaction()
      .execute((trx) => settleIn(trx, 'conv_00000000000000a1', 2_000_000n, hash(1), 'sent'));
    expect(settled).toBe('hash_used:returned funds for payout po_00000000000000a1');
    expect(
      await db.db
        .selectFrom('conversions')
        .select('status')
        .where('conversion_id', '=', 'conv_00000000000000a1')
        .executeTakeFirst(),
    ).toEqual({ status: 'sent' });
  });

  it("a conversion's payout is not a refund", async () => {
    await conversion('conv_00000000000000a2', 'completed', hash(2));
    expect(
      await db.db.transaction().execute((trx) =>
        claimRefund(trx, {
          txHash: hash(2),
          purpose: 'payout',
          ref: 'po_00000000000000a2',
          asset: 'usdt',
          amount: 2_000_000n,
        }),
      ),
    ).toBe(false);
    expect(await db.db.selectFrom('chain_refunds').select('tx_hash').where('tx_hash', '=', hash(2)).execute()).toEqual(
      [],
    );
  });
});
