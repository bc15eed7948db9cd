/**
 * Intake's one call (payrail_intake_ipn, migration 026) on the points the differential fuzz suite does not reach on its
 * own: its fee split against splitFee over the whole range of amounts and percents, and a channel saved while its IPNs
 * are being taken (every payment booked at one committed version of it; channel-save-race.test.ts holds a save open
 * against a credit both ways).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertChannel } from '../../src/channels/index.ts';
import { checkLedger } from '../../src/ledger/index.ts';
import { parsePercent, splitFee } from '../../src/money/index.ts';
import { recordIpn, type IntakeResult, type IntakeSettings } from '../../src/pipeline/index.ts';
import { intakeInOneCall } from '../../src/pipeline/payment/intake-one-call.ts';
import { oneCallSettings } from '../../src/pipeline/payment/intake.ts';
import { intakeMetricsText } from '../../src/metrics/intake.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { finishedIpn, usdtChannelInput } from '../support/intake-inputs.ts';

const SECRET = 'one-call-secret';
const SETTINGS: IntakeSettings = { feePercent: parsePercent('3') };

let db: TestDatabase;
let nextPaymentId = 2_026_500_000_000;
let nextChannel = 1_026_500_000_001;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.close();
});

/** A percent as PLATFORM_FEE_PERCENT and a channel's fee are written: 0 to below 100, up to 6 decimals. */
const percentText: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('0', '0.000001', '3', '2.5', '2.50', '4.000000', '50', '99', '99.999999', '0.0', '0.000000'),
  fc
    .tuple(fc.integer({ min: 0, max: 99 }), fc.option(fc.stringMatching(/^[0-9]{1,6}$/), { nil: undefined }))
    .map(([whole, fraction]) => (fraction === undefined ? String(whole) : `${whole}.${fraction}`)),
);

/** Amounts in smallest units, from nothing to the widest the amount columns hold (numeric(78, 0)). */
const grossUnits: fc.Arbitrary<bigint> = fc.oneof(
  fc.constantFrom(0n, 1n, 99n, 100n, 101n, 4_870_000_000_000_000n, 10n ** 78n - 1n, 10n ** 77n),
  fc.bigInt({ min: 0n, max: 10n ** 6n }),
  fc.bigInt({ min: 0n, max: 10n ** 20n }),
  fc.bigInt({ min: 0n, max: 10n ** 78n - 1n }),
);

describe("the one call's fee split", () => {
  it('equals splitFee for every amount and percent, to the unit', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(grossUnits, percentText), { minLength: 1, maxLength: 50 }), async (cases) => {
        const { rows } = await db.pool.query<{ fee: string; net: string }>(
          `select s.fee::text as fee, s.net::text as net
           from unnest($1::numeric[], $2::numeric[]) with ordinality as t(gross, percent, n)
           cross join lateral payrail_fee_split(t.gross, t.percent) s order by t.n`,
          [cases.map(([gross]) => gross.toString()), cases.map(([, percent]) => percent)],
        );
        expect(rows).toEqual(
          cases.map(([gross, percent]) => {
            const { fee, net } = splitFee(gross, parsePercent(percent));
            return { fee: fee.toString(), net: net.toString() };
          }),
        );
      }),
      { numRuns: 200 },
    );
  });

  it('refuses what splitFee refuses, and a fraction of a unit', async () => {
    for (const [gross, percent] of [
      ['-1', '3'],
      ['1.5', '3'],
      ['100', '100'],
      ['100', '-0.000001'],
    ])
      await expect(
        db.pool.query('select * from payrail_fee_split($1::numeric, $2::numeric)', [gross, percent]),
      ).rejects.toThrow(/fee split of .* is not defined/);
  });
});

async function saveChannel(
  channelId: string,
  version: { strategy: 'instant' | 'threshold'; fee: string },
): Promise<void> {
  await upsertChannel(db.db, channelId, usdtChannelInput(version.strategy, version.fee), 'test');
}

/** A fresh payment's finished IPN to the channel, read, with the payment's id. */
function finishedIpnTo(channelId: string) {
  const paymentId = String(nextPaymentId++);
  return { paymentId, ipn: finishedIpn(Number(paymentId), channelId, SECRET) };
}

async function finished(channelId: string): Promise<{ paymentId: string; result: IntakeResult }> {
  const { paymentId, ipn } = finishedIpnTo(channelId);
  return { paymentId, result: await recordIpn(db.db, ipn, SETTINGS) };
}

/** What a credit booked: the row's strategy and fee, its split, its journal and its payout job. */
async function booked(paymentId: string) {
  const { rows } = await db.pool.query(
    `select p.payout_strategy, p.fee_percent::text, p.gross_amount::text, p.fee_amount::text, p.net_amount::text,
       p.conversion_status,
       (select json_object_agg(split_part(a.code, '#', 1), e.amount::text) from ledger_journals j
          join ledger_entries e on e.journal_id = j.id join ledger_accounts a on a.id = e.account_id
         where j.kind = 'payment_received' and j.ref = $1::text) as journal,
       (select count(*)::int from graphile_worker._private_jobs where key = 'payout_instant:' || $1::text) as payout_jobs
     from payments p where p.payment_id = $1::numeric`,
    [paymentId],
  );
  return rows[0];
}

/** Each booking is of one version of the channel: its strategy, its fee, the split of that fee, the job it calls for. */
function expectOneVersion(row: any, channelId: string, versions: ReadonlyArray<{ strategy: string; fee: string }>) {
  expect(versions).toContainEqual({ strategy: row.payout_strategy, fee: row.fee_percent });
  const { fee, net } = splitFee(BigInt(row.gross_amount), parsePercent(row.fee_percent));
  expect([row.fee_amount, row.net_amount]).toEqual([fee.toString(), net.toString()]);
  expect(row.journal).toEqual({
    'world:nowpayments': (-BigInt(row.gross_amount)).toString(),
    ...(fee !== 0n && { 'platform:fees': fee.toString() }),
    [`channel:${channelId}`]: net.toString(),
  });
  expect(row.payout_jobs).toBe(row.payout_strategy === 'instant' ? 1 : 0);
  expect(row.conversion_status).toBe(row.payout_strategy === 'threshold' ? 'pending' : null);
}

describe('a channel saved while its IPNs are taken', () => {
  const first = { strategy: 'instant', fee: '1' } as const;
  const second = { strategy: 'threshold', fee: '5.5' } as const;

  it('books every payment at one committed version, never a mix, while saves race the IPNs', async () => {
    const channelId = `-${nextChannel++}`;
    await saveChannel(channelId, first);
    const payments: Array<{ paymentId: string; result: IntakeResult }> = [];
    for (let round = 0; round < 10; round++) {
      const [, ...taken] = await Promise.all([
        saveChannel(channelId, round % 2 === 0 ? second : first),
        ...Array.from({ length: 20 }, () => finished(channelId)),
      ]);
      payments.push(...taken);
    }
    const seen = new Set<string>();
    for (const { paymentId, result } of payments) {
      const row = await booked(paymentId);
      expectOneVersion(row, channelId, [first, second]);
      // The answer names the strategy that was booked.
      expect(result).toMatchObject({ outcome: 'recorded', credited: row.payout_strategy });
      seen.add(row.payout_strategy);
    }
    expect([...seen].sort()).toEqual(['instant', 'threshold']);
    expect((await checkLedger(db.db)).ok).toBe(true);
  });
});

describe("the one call's identity checks", () => {
  it('refuses, writing nothing, units that are not the reported outcome_amount', async () => {
    const channelId = `-${nextChannel++}`;
    await saveChannel(channelId, { strategy: 'instant', fee: '1' });
    const { paymentId, ipn } = finishedIpnTo(channelId);
    await expect(
      intakeInOneCall(db.db, { ...ipn, outcomeUnits: ipn.outcomeUnits! + 1n }, oneCallSettings(ipn, SETTINGS)),
    ).rejects.toThrow(/are not the reported/);
    const { rows } = await db.pool.query('select 1 from payments where payment_id = $1::numeric', [paymentId]);
    expect(rows).toEqual([]);
  });

  it("books the row's own id in the journal, the job key and its payload, whatever the caller's spelling", async () => {
    const channelId = `-${nextChannel++}`;
    await saveChannel(channelId, { strategy: 'instant', fee: '1' });
    const { paymentId, ipn } = finishedIpnTo(channelId);
    const spelt = { ...ipn, paymentId: `00${paymentId}` };
    expect(await intakeInOneCall(db.db, spelt, oneCallSettings(spelt, SETTINGS))).toMatchObject({
      outcome: 'recorded',
      credited: 'instant',
    });
    const { rows } = await db.pool.query(
      `select (select count(*)::int from ledger_journals where kind = 'payment_received' and ref = $1) as journals,
         (select json_agg(j.payload) from graphile_worker._private_jobs j where j.key = 'payout_instant:' || $1) as jobs`,
      [paymentId],
    );
    expect(rows[0]).toEqual({ journals: 1, jobs: [{ paymentId }] });
  });
});

describe("the one call's declines", () => {
  async function counted(result: string): Promise<number> {
    const line = (await intakeMetricsText())
      .split('\n')
      .find((l) => l.startsWith(`payrail_intake_one_call_total{result="${result}"} `));
    return Number(line?.split(' ')[1]);
  }

  it('are counted by their code, and what it takes as taken', async () => {
    const unknown = `-${nextChannel++}`;
    const known = `-${nextChannel++}`;
    await saveChannel(known, { strategy: 'threshold', fee: '1' });
    const before = { unknown: await counted('unknown_channel'), taken: await counted('taken') };
    expect(before.unknown).toBeGreaterThanOrEqual(0);
    expect((await finished(unknown)).result).toMatchObject({ outcome: 'review', reviewReason: 'unknown_channel' });
    expect((await finished(known)).result).toMatchObject({ outcome: 'recorded', credited: 'threshold' });
    expect(await counted('unknown_channel')).toBe(before.unknown + 1);
    expect(await counted('taken')).toBe(before.taken + 1);
    expect(await counted('other')).toBe(0);
  });
});

describe("the one call's accounts", () => {
  it("refuses, writing nothing, a credit whose channel account is not the IPN's channel's", async () => {
    const channelId = `-${nextChannel++}`;
    await saveChannel(channelId, { strategy: 'instant', fee: '1' });
    const paymentId = String(nextPaymentId++);
    const call = (channelAccount: string) =>
      db.pool.query(
        `select o_outcome from payrail_intake_ipn(p_payment_id => $1, p_invoice_id => null, p_parent_payment_id => null,
           p_order_id => $2, p_user_id => '6271402111', p_channel_id => $3, p_status => 'finished',
           p_pay_currency => 'eth', p_pay_amount => 0.0049, p_actually_paid => 0.0049, p_price_amount => 15,
           p_price_currency => 'usd', p_outcome_amount => 0.00487, p_outcome_currency => 'eth', p_asset => 'eth',
           p_gross => 4870000000000000, p_last_ipn => '{}', p_advances_from => array['waiting'],
           p_accounts => array['world:nowpayments#00', 'platform:fees#00', $4],
           p_allow_negative => array[true, false, false], p_default_fee_percent => 3, p_confirm_deadline_secs => null,
           p_payout_task => 'payout_instant', p_payout_key_mode => 'unsafe_dedupe', p_payout_max_attempts => 5,
           p_confirm_task => 'payment_confirm', p_confirm_key_mode => 'preserve_run_at', p_confirm_max_attempts => 5)`,
        [paymentId, `PGP-6271402111|${channelId}`, channelId, channelAccount],
      );
    await expect(call(`channel:${channelId}0`)).rejects.toThrow(/are not those of channel/);
    const { rows } = await db.pool.query('select 1 from payments where payment_id = $1::numeric', [paymentId]);
    expect(rows).toEqual([]);
    // The same call with the channel's own account is taken: the refusal was the account's.
    expect((await call(`channel:${channelId}`)).rows).toEqual([{ o_outcome: 'recorded' }]);
  });
});
