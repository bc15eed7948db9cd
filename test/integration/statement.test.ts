/**
 * Channel statements (GET /api/channels/:id/statement) over a history of real payments (signed IPNs through the
 * webhook, web role only so nothing moves on its own) with conversions and payouts written as the stages leave them
 * (test/support/overview-seed.ts), a refunded payment reversed through the API, and a conversion refunded short
 * booked as the poll books it. Times between the steps are marked, so ranges can cut the history where the balances
 * are known exactly. Then the accounting exports over the same history, against check-ledger's figures.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { sql } from 'kysely';
import { channelBalances, checkLedger } from '../../src/ledger/index.ts';
import { formatUnits, parseUnits } from '../../src/money/index.ts';
import { returnConversionFunds } from '../../src/pipeline/conversion/outcomes.ts';
import { usdtPerEth } from '../../src/pipeline/conversion/settle.ts';
import { csvField, csvLine, exportCsv, type ExportName } from '../../src/statements/index.ts';
import { EXPORTS_AT_ONCE } from '../../src/http/routes/admin/exports.ts';
import { FEE_WEI, GROSS_WEI, instantEthChannel, NET_WEI, sendIpn, usdtThresholdChannel } from '../support/api-seed.ts';
import { createTestDatabase, fingerprint, type TestDatabase } from '../support/db.ts';
import {
  seedCompletedBatch,
  seedInstantPayout,
  seedThresholdBatch,
  settleConversion,
} from '../support/overview-seed.ts';
import { ipnBody } from '../support/ipn.ts';
import { ADMIN_TOKEN, logSink, startTestPayrail, type TestPayrail } from '../support/payrail.ts';
import { saveChannel, sendFinished } from '../support/payouts.ts';

const eth = (wei: bigint) => formatUnits(wei, 18);

/** USDT per ETH of the conversion below (42 USDT for three payments' net), as settlement books it. */
const RATE = usdtPerEth(42_000_000n, 3n * NET_WEI);

const THRESHOLD = '-1007000000001';
const INSTANT = '-1007000000002';
const QUIET = '-1007000000003';
/** A threshold channel whose only payment NOWPayments refunded after its credit, and a person reversed. */
const REVERSED = '-1007000000004';
/** A threshold channel whose conversion ChangeNow refunded 1,000 wei short. */
const SHORT = '-1007000000005';
/** Paged while payments arrive. */
const PAGED = '-1007000000006';
/** Journals booked on earlier days, for ranges whose bounds fall on different days. */
const BACKDATED = '-1007000000007';
/** Credited by a transaction held open while its statement is paged. */
const HELD = '-1007000000008';
const UNKNOWN = '-1007000000009';

let db: TestDatabase;
let payrail: TestPayrail;
const logs = logSink();
let nextPaymentId = 9_700_000_000;
const ids: Record<string, string> = {};
const marks: Record<string, string> = {};
const paid: Record<string, string[]> = {
  [THRESHOLD]: [],
  [INSTANT]: [],
  [SHORT]: [],
  [PAGED]: [],
  [BACKDATED]: [],
  [HELD]: [],
};

async function pay(channelId: string, times: number): Promise<void> {
  for (let i = 0; i < times; i++) paid[channelId]?.push(await sendFinished(payrail, nextPaymentId++, channelId));
}

/**
 * A moment between two steps, on the database's clock, whole milliseconds (what a query's bound holds): everything
 * booked before is earlier, everything booked after is later.
 */
async function mark(name: string): Promise<void> {
  await sql`select pg_sleep(0.005)`.execute(db.db);
  const { rows } = await sql<{ at: Date }>`
    select date_trunc('milliseconds', clock_timestamp()) + interval '1 millisecond' as at`.execute(db.db);
  await sql`select pg_sleep(0.005)`.execute(db.db);
  marks[name] = (rows[0] as { at: Date }).at.toISOString();
}

/**
 * A conversion of `paymentIds` sent to ChangeNow, then refunded `short` wei short: the refund booked as the poll books
 * it (returnConversionFunds: the shortfall from the channels to ChangeNow, the payments back to pending).
 */
async function refundedShort(paymentIds: string[], short: bigint): Promise<string> {
  const conversionId = `cv_${randomBytes(8).toString('hex')}`;
  const sent = BigInt(paymentIds.length) * NET_WEI;
  await db.db.transaction().execute(async (trx) => {
    await trx
      .insertInto('conversions')
      .values({
        conversion_id: conversionId,
        status: 'sent',
        from_asset: 'eth',
        to_asset: 'usdt',
        amount_wei: sent,
        payment_count: paymentIds.length,
      })
      .execute();
    for (const paymentId of paymentIds)
      await trx
        .insertInto('conversion_payments')
        .values({ conversion_id: conversionId, payment_id: paymentId, channel_id: SHORT, net_wei: NET_WEI })
        .execute();
    await trx
      .updateTable('payments')
      .set({ conversion_status: 'converting', conversion_id: conversionId })
      .where('payment_id', 'in', paymentIds)
      .execute();
  });
  const refundHash = `0x${randomBytes(32).toString('hex')}`;
  await db.db
    .transaction()
    .execute((trx) => returnConversionFunds(trx, conversionId, refundHash, sent - short, 'exchange refunded'));
  return conversionId;
}

function statementPath(channelId: string, query: Record<string, string> = {}): string {
  const q = new URLSearchParams(query).toString();
  return `/api/channels/${channelId}/statement${q ? `?${q}` : ''}`;
}

async function statement(channelId: string, query: Record<string, string> = {}) {
  const res = await payrail.request('GET', statementPath(channelId, query));
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as StatementBody;
}

interface ItemBody {
  kind: string;
  id: string;
  time: string;
  amount: string;
  available: string;
  reserved: string;
  [field: string]: unknown;
}
interface AssetBody {
  asset: string;
  opening: { available: string; reserved: string; total: string };
  closing: { available: string; reserved: string; total: string };
  payments: ItemBody[];
  conversions: ItemBody[];
  payouts: ItemBody[];
  other: ItemBody[];
  sums: Record<string, any>;
  check: Record<string, unknown>;
}
interface StatementBody {
  channelId: string;
  from: string;
  to: string;
  toAsked: string | null;
  assets: AssetBody[];
}

const asset = (s: StatementBody, code: string) => s.assets.find((a) => a.asset === code) as AssetBody;
const items = (a: AssetBody) =>
  [...a.payments, ...a.conversions, ...a.payouts, ...a.other].sort((x, y) => (x.time < y.time ? -1 : 1));

/** RFC 4180: quoted fields may hold commas, doubled quotes and line breaks. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i++;
    } else field += c;
  }
  if (field !== '' || row.length > 0) throw new Error('CSV does not end with CRLF');
  return rows;
}

/** A GET answered `status` with the error alone, and nothing in the database changed by it. */
async function expectRefused(path: string, status: number, message: RegExp): Promise<void> {
  const before = await fingerprint(db);
  const res = await payrail.request('GET', path);
  expect(res.status).toBe(status);
  expect(Object.keys(res.body as object)).toEqual(['error']);
  expect((res.body as { error: string }).error).toMatch(message);
  expect(await fingerprint(db)).toEqual(before);
}

function csvRecords(text: string): Array<Record<string, string>> {
  const [header, ...rows] = parseCsv(text);
  return rows.map((r) => Object.fromEntries((header as string[]).map((h, i) => [h, r[i] ?? ''])));
}

beforeAll(async () => {
  db = await createTestDatabase();
  payrail = await startTestPayrail(db, { roles: { web: true, worker: false }, logs });
  await mark('beforeChannels');
  await saveChannel(payrail, THRESHOLD, usdtThresholdChannel('50'));
  await saveChannel(payrail, INSTANT, instantEthChannel());
  await saveChannel(payrail, QUIET, instantEthChannel());
  await mark('start');
  await pay(THRESHOLD, 2);
  await mark('a');
  await pay(THRESHOLD, 2);
  const t = paid[THRESHOLD] as string[];
  ids.conversion = await settleConversion(db.db, t.slice(0, 3), 42_000_000n);
  // The seed leaves the rate out; settlement books it.
  await db.db.updateTable('conversions').set({ rate: RATE }).where('conversion_id', '=', ids.conversion).execute();
  await mark('b');
  ids.batch = await seedCompletedBatch(db.db, THRESHOLD, 20_000_000n);
  await mark('c');
  // A batch still under way: set aside, not paid.
  ids.openBatch = await seedThresholdBatch(db.db, THRESHOLD, 2_000_000n, 'exchange_created');
  await pay(INSTANT, 3);
  const i = paid[INSTANT] as string[];
  ids.direct = await seedInstantPayout(db.db, i[0] as string, 'completed', { via: 'direct' });
  // ChangeNow kept 1,000 wei of this one: back on the channel less that.
  ids.failed = await seedInstantPayout(db.db, i[1] as string, 'failed', { returned: NET_WEI - 1000n });
  ids.review = await seedInstantPayout(db.db, i[2] as string, 'needs_review');
  await saveChannel(payrail, REVERSED, usdtThresholdChannel('50'));
  ids.reversed = await sendFinished(payrail, nextPaymentId++, REVERSED);
  const refund = ipnBody({
    payment_id: Number(ids.reversed),
    order_id: `PGP-1|${REVERSED}`,
    payment_status: 'refunded',
  });
  expect(await sendIpn(payrail, refund)).toBe(202);
  expect((await payrail.request('POST', `/api/payments/${ids.reversed}/reverse`)).status).toBe(200);
  await saveChannel(payrail, SHORT, usdtThresholdChannel('50'));
  await pay(SHORT, 2);
  ids.short = await refundedShort(paid[SHORT] as string[], 1000n);
  await mark('end');
});

afterAll(async () => {
  await payrail?.stop();
  await db?.close();
});

describe('statement: whole history', () => {
  it("closes on the channel's ledger balances, opens at zero, and lists what happened", async () => {
    const s = await statement(THRESHOLD);
    expect(s.channelId).toBe(THRESHOLD);
    const balances = await channelBalances(db.db, THRESHOLD);
    for (const code of ['eth', 'usdt']) {
      const a = asset(s, code);
      const available = balances.find((b) => b.asset === code && b.account === 'available')?.amount ?? '0';
      const reserved = balances.find((b) => b.asset === code && b.account === 'reserved_for_payout')?.amount ?? '0';
      expect(a.closing.available).toBe(available);
      expect(a.closing.reserved).toBe(reserved);
      expect(a.opening).toEqual({ available: '0', reserved: '0', total: '0' });
    }
    const e = asset(s, 'eth');
    expect(e.closing).toEqual({ available: eth(NET_WEI), reserved: '0', total: eth(NET_WEI) });
    expect(e.payments.map((p) => p.paymentId)).toEqual(paid[THRESHOLD]);
    for (const p of e.payments)
      expect(p).toMatchObject({
        kind: 'payment',
        gross: eth(GROSS_WEI),
        fee: eth(FEE_WEI),
        net: eth(NET_WEI),
        amount: eth(NET_WEI),
        feePercent: '3',
        status: 'finished',
      });
    expect(e.sums.payments).toEqual({
      count: 4,
      gross: eth(4n * GROSS_WEI),
      fee: eth(4n * FEE_WEI),
      net: eth(4n * NET_WEI),
    });
    // The conversion's share, on both sides.
    expect(e.conversions).toHaveLength(1);
    expect(e.conversions[0]).toMatchObject({
      conversionId: ids.conversion,
      ethOut: eth(3n * NET_WEI),
      usdtIn: '42',
      rate: RATE,
      amount: eth(-3n * NET_WEI),
    });
    expect(e.sums.movements).toBe(eth(NET_WEI));

    const u = asset(s, 'usdt');
    expect(u.conversions).toHaveLength(1);
    expect(u.conversions[0]).toMatchObject({
      conversionId: ids.conversion,
      ethOut: eth(3n * NET_WEI),
      usdtIn: '42',
      amount: '42',
    });
    // 42 in, 20 paid, 2 set aside in the open batch: 22 owed, 20 of it free.
    expect(u.closing).toEqual({ available: '20', reserved: '2', total: '22' });
    expect(u.payouts.map((p) => [p.payoutId, p.amount, p.status])).toEqual([
      [ids.batch, '-20', 'completed'],
      [ids.openBatch, '0', 'exchange_created'],
    ]);
    expect(u.payouts[1]).toMatchObject({ available: '-2', reserved: '2', payoutAmount: '2', payoutCurrency: 'usdt' });
    expect(u.sums.payouts).toEqual({ count: 2, amount: '-20' });
    for (const a of s.assets)
      expect(a.check).toMatchObject({
        ok: true,
        movementsFromEntries: a.sums.movements,
        movementsFromItems: a.sums.movements,
        openingPlusMovements: a.closing.total,
        closing: a.closing.total,
        after: '0',
        ledgerBalance: a.closing.total,
      });
  });

  it('shows payouts that failed with what came back, and those still set aside', async () => {
    const s = await statement(INSTANT);
    const e = asset(s, 'eth');
    const balances = await channelBalances(db.db, INSTANT);
    expect(balances.map((b) => [b.account, b.amount])).toEqual([
      ['available', e.closing.available],
      ['reserved_for_payout', e.closing.reserved],
    ]);
    expect(e.closing).toEqual({
      available: eth(NET_WEI - 1000n),
      reserved: eth(NET_WEI),
      total: eth(2n * NET_WEI - 1000n),
    });
    expect(e.payouts.map((p) => [p.payoutId, p.amount, p.status])).toEqual([
      [ids.direct, eth(-NET_WEI), 'completed'],
      [ids.failed, '0', 'failed'],
      [ids.review, '0', 'needs_review'],
    ]);
    expect(e.other.map((o) => [o.kind, o.payoutId, o.amount, o.available, o.reserved])).toEqual([
      ['payout_returned', ids.failed, eth(-1000n), eth(NET_WEI - 1000n), eth(-NET_WEI)],
    ]);
    expect(e.sums).toMatchObject({
      payouts: { count: 3, amount: eth(-NET_WEI) },
      other: { count: 1, amount: eth(-1000n) },
      movements: eth(2n * NET_WEI - 1000n),
    });
    expect(asset(s, 'usdt')).toMatchObject({ closing: { total: '0' }, payments: [], payouts: [] });
  });

  it('a payment refunded after its credit and reversed: its credit, then its reversal among the other movements', async () => {
    const e = asset(await statement(REVERSED), 'eth');
    expect(e.payments.map((p) => [p.paymentId, p.amount, p.status])).toEqual([
      [ids.reversed, eth(NET_WEI), 'refunded'],
    ]);
    expect(e.other.map((o) => [o.kind, o.paymentId, o.journalKind, o.amount])).toEqual([
      ['payment_reversal', ids.reversed, 'payment_reversed', eth(-NET_WEI)],
    ]);
    expect(e.closing.total).toBe('0');
    expect(e.sums).toMatchObject({ movements: '0', other: { count: 1, amount: eth(-NET_WEI) } });
  });

  it('a conversion refunded short: what ChangeNow kept is an exchange cost, the rest stays on the channel', async () => {
    const e = asset(await statement(SHORT), 'eth');
    expect(e.payments.map((p) => p.paymentId)).toEqual(paid[SHORT]);
    expect(e.conversions).toEqual([]);
    expect(e.other.map((o) => [o.kind, o.conversionId, o.journalKind, o.amount])).toEqual([
      ['exchange_cost', ids.short, 'conversion_shortfall', eth(-1000n)],
    ]);
    expect(e.closing.total).toBe(eth(2n * NET_WEI - 1000n));
    expect(asset(await statement(SHORT), 'usdt').closing.total).toBe('0');
  });

  it('a channel that never received anything: zero, nothing listed', async () => {
    const s = await statement(QUIET);
    expect(s.assets.map((a) => a.asset)).toEqual(['eth', 'usdt']);
    for (const a of s.assets) {
      expect(a.opening.total).toBe('0');
      expect(a.closing.total).toBe('0');
      expect(items(a)).toEqual([]);
    }
  });
});

describe('statement: ranges', () => {
  it('a range cutting through the middle opens and closes where the history stood at its bounds', async () => {
    const s = await statement(THRESHOLD, { from: marks.a as string, to: marks.b as string });
    expect([s.from, s.to]).toEqual([marks.a, marks.b]);
    const e = asset(s, 'eth');
    expect(e.opening.total).toBe(eth(2n * NET_WEI));
    expect(e.closing.total).toBe(eth(NET_WEI));
    expect(e.payments.map((p) => p.paymentId)).toEqual((paid[THRESHOLD] as string[]).slice(2));
    expect(e.conversions.map((c) => c.conversionId)).toEqual([ids.conversion]);
    const u = asset(s, 'usdt');
    expect([u.opening.total, u.closing.total]).toEqual(['0', '42']);
    expect(u.payouts).toEqual([]);
    // Nothing after `to` is in it, and the check says how much came after.
    expect(u.check).toMatchObject({ ok: true, after: '-20', ledgerBalance: '22', closing: '42' });
  });

  it('consecutive ranges chain: each closes where the next opens, and together they list the whole history', async () => {
    const whole = await statement(THRESHOLD, { to: marks.end as string });
    const cuts = [marks.start, marks.a, marks.b, marks.c, marks.end] as string[];
    const parts: StatementBody[] = [];
    for (let i = 0; i + 1 < cuts.length; i++)
      parts.push(await statement(THRESHOLD, { from: cuts[i] as string, to: cuts[i + 1] as string }));
    for (const code of ['eth', 'usdt']) {
      for (let i = 0; i + 1 < parts.length; i++)
        expect(asset(parts[i + 1] as StatementBody, code).opening).toEqual(
          asset(parts[i] as StatementBody, code).closing,
        );
      expect(asset(parts.at(-1) as StatementBody, code).closing).toEqual(asset(whole, code).closing);
      expect(parts.flatMap((p) => items(asset(p, code)).map((x) => x.id))).toEqual(
        items(asset(whole, code)).map((x) => x.id),
      );
    }
  });

  it('an empty range (from = to) lists nothing and opens where it closes', async () => {
    const s = await statement(THRESHOLD, { from: marks.b as string, to: marks.b as string });
    for (const a of s.assets) {
      expect(items(a)).toEqual([]);
      expect(a.opening).toEqual(a.closing);
      expect(a.check).toMatchObject({ movementsFromEntries: '0', movementsFromItems: '0' });
    }
    expect(asset(s, 'usdt').closing.total).toBe('42');
  });

  it('a range before the channel existed is all zeros; bare dates are midnight UTC', async () => {
    const s = await statement(THRESHOLD, { from: '2020-01-01', to: marks.beforeChannels as string });
    expect(s.from).toBe('2020-01-01T00:00:00.000Z');
    for (const a of s.assets) expect([a.opening.total, a.closing.total, items(a).length]).toEqual(['0', '0', 0]);
  });
});

describe('statement: CSV', () => {
  it('has the same items, opening and closing as the JSON, and parses back to them', async () => {
    const query = { from: marks.start as string, to: marks.end as string };
    const json = await statement(THRESHOLD, query);
    const res = await fetch(payrail.url + statementPath(THRESHOLD, { ...query, format: 'csv' }), {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/csv/);
    expect(res.headers.get('content-disposition')).toMatch(/^attachment; filename="statement-/);
    const records = csvRecords(await res.text());
    const expected: Array<Record<string, string>> = [];
    for (const a of json.assets) {
      expected.push({ asset: a.asset, kind: 'opening', id: THRESHOLD, time: json.from, amount: a.opening.total });
      for (const x of items(a))
        expected.push({ asset: a.asset, kind: x.kind, id: x.id, time: x.time, amount: x.amount });
      expected.push({ asset: a.asset, kind: 'closing', id: THRESHOLD, time: json.to, amount: a.closing.total });
    }
    expect(records.map((r) => ({ asset: r.asset, kind: r.kind, id: r.id, time: r.time, amount: r.amount }))).toEqual(
      expected,
    );
    const payment = records.find((r) => r.kind === 'payment');
    expect(payment).toMatchObject({ gross: eth(GROSS_WEI), fee: eth(FEE_WEI), fee_percent: '3', status: 'finished' });
    const conversion = records.find((r) => r.kind === 'conversion' && r.asset === 'usdt');
    expect(conversion).toMatchObject({ eth_out: eth(3n * NET_WEI), usdt_in: '42' });
    expect(conversion?.rate).toBe(RATE);
  });
});

describe('statement: bad input', () => {
  const cases: Array<[string, string, number, RegExp]> = [
    ['a date that is not one', statementPath(THRESHOLD, { from: 'yesterday' }), 400, /^from: must be an ISO 8601/],
    ['a day not on the calendar', statementPath(THRESHOLD, { to: '2026-02-30' }), 400, /^to: 2026-02-30 is not a date/],
    ['a time of day without a zone', statementPath(THRESHOLD, { from: '2026-11-01T10:00:00' }), 400, /^from: must be/],
    [
      'from after to',
      statementPath(THRESHOLD, { from: '2026-11-02T00:00:00Z', to: '2026-11-01T00:00:00Z' }),
      400,
      /^from 2026-11-02T00:00:00.000Z is after to 2026-11-01T00:00:00.000Z$/,
    ],
    [
      'to before the channel existed, from defaulted',
      statementPath(THRESHOLD, { to: '2020-01-01' }),
      400,
      /^from \(default: the channel's creation\) .* is after to 2020-01-01T00:00:00.000Z$/,
    ],
    ['an unknown format', statementPath(THRESHOLD, { format: 'xml' }), 400, /^format: /],
    ['an unknown parameter', `${statementPath(THRESHOLD)}?since=2026-01-01`, 400, /since/],
    ['a channel id that is not one', statementPath('abc'), 400, /^channelId: must be a Telegram chat id/],
    ['an unknown channel', statementPath(UNKNOWN), 404, new RegExp(`^channel ${UNKNOWN} not found$`)],
  ];
  it.each(cases)('%s: answered with the error alone, nothing written', (_name, path, status, message) =>
    expectRefused(path, status, message),
  );

  it('needs the admin token', async () => {
    const res = await payrail.request('GET', statementPath(THRESHOLD), { token: null });
    expect(res.status).toBe(401);
  });
});

describe('statement: a ledger that does not add up', () => {
  it('is a 500 naming what differs, logged, and no statement', async () => {
    // A balance row off from its entries by one unit: what check-ledger calls balance_matches_entries. Put back after.
    const drift = (by: number) =>
      sql`update ledger_accounts set balance = balance + ${by} where code = ${`channel:${THRESHOLD}`} and asset = 'usdt'`.execute(
        db.db,
      );
    await drift(1);
    try {
      const res = await payrail.request('GET', statementPath(THRESHOLD));
      expect(res.status).toBe(500);
      expect(res.body).toEqual({
        error: `statement of channel ${THRESHOLD} does not add up in usdt (available): closing 20000000 + entries after the range 0 ≠ ledger balance 20000001; the statement is not served (a bug: please report it)`,
      });
      expect(logs.lines.filter((l) => l.event === 'statement_check_failed').map((l) => l.channelId)).toEqual([
        THRESHOLD,
      ]);
    } finally {
      await drift(-1);
    }
    expect((await payrail.request('GET', statementPath(THRESHOLD))).status).toBe(200);
  });
});

/** GET with the admin token, the body as text. */
async function getText(path: string): Promise<{ status: number; type: string | null; text: string }> {
  const res = await fetch(payrail.url + path, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
}

async function exported(name: ExportName, query: Record<string, string> = {}): Promise<Array<Record<string, string>>> {
  const q = new URLSearchParams(query).toString();
  const res = await getText(`/api/exports/${name}.csv${q ? `?${q}` : ''}`);
  expect(res.status, res.text).toBe(200);
  expect(res.type).toMatch(/^text\/csv/);
  return csvRecords(res.text);
}

/** A signed decimal back into smallest units. */
function units(text: string, asset: string): bigint {
  const negative = text.startsWith('-');
  const value = parseUnits(negative ? text.slice(1) : text, asset === 'eth' ? 18 : 6);
  return negative ? -value : value;
}

function sumBy(rows: Array<Record<string, string>>, key: (r: Record<string, string>) => string, field: string) {
  const out: Record<string, bigint> = {};
  for (const r of rows) out[key(r)] = (out[key(r)] ?? 0n) + units(r[field] as string, r.asset as string);
  return out;
}

describe('exports', () => {
  it("ledger.csv over the whole history is the ledger check-ledger checked: its entries, journals and accounts, each journal balanced, each account's entries summing to its balance", async () => {
    const report = await checkLedger(db.db);
    expect(report.ok).toBe(true);
    const rows = await exported('ledger');
    expect(rows).toHaveLength(report.entries);
    expect(new Set(rows.map((r) => r.journal_id)).size).toBe(report.journals);
    expect(new Set(rows.map((r) => `${r.account}/${r.asset}`)).size).toBe(report.accounts);
    expect(new Set(rows.map((r) => r.entry_id)).size).toBe(rows.length);
    for (const total of Object.values(sumBy(rows, (r) => `${r.journal_id}/${r.asset}`, 'amount')))
      expect(total).toBe(0n);
    const { rows: balances } = await sql<{ key: string; balance: string }>`
      select code || '/' || asset as key, balance::text as balance from ledger_accounts`.execute(db.db);
    const perAccount = sumBy(rows, (r) => `${r.account}/${r.asset}`, 'amount');
    expect(Object.fromEntries(Object.entries(perAccount).map(([k, v]) => [k, v.toString()]))).toEqual(
      Object.fromEntries(balances.map((b) => [b.key, b.balance])),
    );
  });

  it("payments.csv: every credited payment once, its gross what the payment journals took from NOWPayments (check-ledger's payments-match-journals), its fees what the fee accounts hold", async () => {
    const rows = await exported('payments');
    expect(rows.map((r) => r.payment_id).sort()).toEqual(
      [
        ...(paid[THRESHOLD] as string[]),
        ...(paid[INSTANT] as string[]),
        ...(paid[SHORT] as string[]),
        ids.reversed,
      ].sort(),
    );
    const ledgerRows = await exported('ledger');
    const fromJournals = ledgerRows
      .filter((r) => ['payment_received', 'payment_topped_up'].includes(r.journal_kind as string))
      .filter((r) => (r.account as string).startsWith('world:nowpayments#'))
      .reduce((sum, r) => sum - units(r.amount as string, 'eth'), 0n);
    const gross = rows.reduce((sum, r) => sum + units(r.gross as string, 'eth'), 0n);
    expect(gross).toBe(fromJournals);
    expect(gross).toBe(10n * GROSS_WEI);
    const { rows: fees } = await sql<{ total: string }>`
      select sum(balance)::text as total from ledger_accounts where code like 'platform:fees#%'`.execute(db.db);
    // A reversal takes the fee back from the fee accounts; the payment keeps its amounts and says it was reversed.
    const kept = rows.filter((r) => r.reversed_at === '');
    expect(rows.find((r) => r.payment_id === ids.reversed)?.reversed_at).toMatch(/^\d{4}-\d{2}-\d{2}T[0-9:.]+Z$/);
    expect(kept.reduce((sum, r) => sum + units(r.fee as string, 'eth'), 0n)).toBe(BigInt(fees[0]?.total ?? '0'));
    for (const r of rows)
      expect(units(r.gross as string, 'eth')).toBe(units(r.fee as string, 'eth') + units(r.net as string, 'eth'));
  });

  it('payouts.csv: every payout once; the completed ones sum to what the payout_completed journals paid out', async () => {
    const rows = await exported('payouts');
    expect(rows.map((r) => r.payout_id).sort()).toEqual(
      [ids.batch, ids.openBatch, ids.direct, ids.failed, ids.review].sort(),
    );
    const ledgerRows = await exported('ledger');
    const paidOut = sumBy(
      ledgerRows.filter((r) => r.journal_kind === 'payout_completed' && (r.account as string).endsWith(':payout')),
      (r) => r.asset as string,
      'amount',
    );
    const completed = sumBy(
      rows.filter((r) => r.status === 'completed'),
      (r) => r.asset as string,
      'amount',
    );
    expect(completed).toEqual({ eth: -(paidOut.eth as bigint), usdt: -(paidOut.usdt as bigint) });
    expect(completed).toEqual({ eth: NET_WEI, usdt: 20_000_000n });
  });

  it('a range holds what was booked in it, and nothing else', async () => {
    const range = { from: marks.a as string, to: marks.b as string };
    expect((await exported('payments', range)).map((r) => r.payment_id)).toEqual(
      (paid[THRESHOLD] as string[]).slice(2),
    );
    const ledgerRows = await exported('ledger', range);
    expect([...new Set(ledgerRows.map((r) => r.journal_kind))].sort()).toEqual([
      'conversion_settled',
      'payment_received',
    ]);
    expect(await exported('payouts', range)).toEqual([]);
    expect(await exported('ledger', { from: marks.b as string, to: marks.b as string })).toEqual([]);
  });

  it('a row booked by a transaction still open: the export ends where that transaction began (payrail-range-to), and the next export, from there, has the row', async () => {
    const credit = 7_000_000n;
    const ref = `held-export-${randomBytes(4).toString('hex')}`;
    const held = await db.db.startTransaction().execute();
    let open = true;
    try {
      const { rows } = await sql<{ began: string }>`
        select payrail_post_journal('held_credit', ${ref}, array[${`channel:${QUIET}`}, 'world:held'],
                 array['usdt', 'usdt'], array[false, true], array[${credit}, ${-credit}]::numeric[]),
               to_char(now() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as began`.execute(held);
      const { began } = rows[0] as { began: string };
      const res = await fetch(`${payrail.url}/api/exports/ledger.csv`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      const text = await res.text();
      expect(res.status, text).toBe(200);
      await held.commit().execute();
      open = false;
      const end = res.headers.get('payrail-range-to') as string;
      expect(micros(end)).toBeLessThanOrEqual(micros(began));
      expect(micros(res.headers.get('payrail-range-to-asked') as string)).toBeGreaterThan(micros(began));
      expect(res.headers.get('content-disposition')).toContain(end.replaceAll(':', ''));
      expect(csvRecords(text).filter((r) => r.journal_ref === ref)).toEqual([]);
      // The next period's export, from where this one ended, has it: the two files together miss nothing.
      const next = await exported('ledger', { from: end });
      expect(next.filter((r) => r.journal_ref === ref).map((r) => [r.account, r.amount])).toEqual([
        [`channel:${QUIET}`, formatUnits(credit, 6)],
        ['world:held', `-${formatUnits(credit, 6)}`],
      ]);
    } finally {
      if (open) await held.rollback().execute();
    }
  });

  it('batches follow each other on a unique key: any batch size gives the same CSV, journals booked together included', async () => {
    const range = { from: new Date(0), to: new Date(Date.now() + 60_000) };
    const read = async (name: ExportName, batch: number) => {
      let text = '';
      for await (const chunk of exportCsv(db.db, name, range, { batch })) text += chunk;
      return text;
    };
    for (const name of ['payments', 'payouts', 'ledger'] as const) {
      const whole = await read(name, 1000);
      expect(csvRecords(whole).length).toBeGreaterThan(3);
      for (const batch of [1, 2, 3]) expect(await read(name, batch)).toBe(whole);
    }
  });

  it('quotes what needs quoting, and keeps spreadsheets from running a field as a formula', () => {
    const tricky = [
      'a,b',
      'say "hi"',
      'two\nlines',
      'cr\r\nlf',
      ' padded',
      '=SUM(A1)',
      '+1',
      '@x',
      '-0.5',
      '-12',
      '-x',
      '',
    ];
    const line = csvLine([...tricky, null]);
    expect(line).toBe(`"a,b","say ""hi""","two\nlines","cr\r\nlf"," padded",'=SUM(A1),'+1,'@x,-0.5,-12,'-x,,\r\n`);
    expect(parseCsv(line)).toEqual([
      ['a,b', 'say "hi"', 'two\nlines', 'cr\r\nlf', ' padded', "'=SUM(A1)", "'+1", "'@x", '-0.5', '-12', "'-x", '', ''],
    ]);
    expect(csvField(null)).toBe('');
  });

  const bad: Array<[string, string, number, RegExp]> = [
    ['a date that is not one', '/api/exports/payments.csv?from=monday', 400, /^from: must be an ISO 8601/],
    ['from after to', '/api/exports/ledger.csv?from=2026-02-01&to=2026-01-01', 400, /is after to/],
    ['an unknown parameter', '/api/exports/payouts.csv?channel=1', 400, /channel/],
    ['an export that does not exist', '/api/exports/channels.csv', 404, /^no route for GET/],
  ];
  it.each(bad)('%s: answered with the error alone, nothing written', (_name, path, status, message) =>
    expectRefused(path, status, message),
  );

  it(`streams at most ${EXPORTS_AT_ONCE} at once (each holds a database connection): another is a 429 until one ends, and an abandoned one frees its place`, async () => {
    const headers = { authorization: `Bearer ${ADMIN_TOKEN}` };
    // The journals locked: the ledger exports answer (their header line) and then wait for their first batch.
    const locker = await db.pool.connect();
    const abandon = new AbortController();
    let kept: Response;
    try {
      await locker.query('begin');
      await locker.query('lock table ledger_journals in access exclusive mode');
      const abandoned = await fetch(`${payrail.url}/api/exports/ledger.csv`, { headers, signal: abandon.signal });
      kept = await fetch(`${payrail.url}/api/exports/ledger.csv`, { headers });
      expect([abandoned.status, kept.status]).toEqual([200, 200]);
      const third = await payrail.request('GET', '/api/exports/payments.csv');
      expect(third.status).toBe(429);
      expect(third.body).toEqual({
        error: `${EXPORTS_AT_ONCE} exports are running on this server; try again once one has finished`,
      });
      abandon.abort();
    } finally {
      await locker.query('rollback');
      locker.release();
    }
    const rows = csvRecords(await kept.text());
    expect(rows.length).toBe((await checkLedger(db.db)).entries);
    // Both places free again once the abandoned export's batch returned; no snapshot left open.
    await vi.waitFor(
      async () => {
        const both = await Promise.all([exported('payouts'), exported('payouts')]);
        expect(both[0]).toEqual(both[1]);
      },
      { timeout: 5_000, interval: 100 },
    );
    // The last export's snapshot ends as its response ends, which the reader may see a moment before the server does.
    const idleInTransaction = async () =>
      (
        await sql<{ n: number }>`
          select count(*)::int as n from pg_stat_activity
          where datname = current_database() and state like 'idle in transaction%'`.execute(db.db)
      ).rows[0]?.n;
    await expect.poll(idleInTransaction, { timeout: 5_000, interval: 100 }).toBe(0);
  });

  it('needs the admin token', async () => {
    for (const name of ['payments', 'payouts', 'ledger'])
      expect((await payrail.request('GET', `/api/exports/${name}.csv`, { token: null })).status).toBe(401);
  });
});

interface PageBody extends StatementBody {
  page: { limit: number; lines: number; hasMore: boolean; next: string | null };
  generatedAt: string;
}

/**
 * Every page of a statement from the first, `between(n)` run after page n; each page with the channel's ledger
 * balances read right after it (nothing else writes meanwhile).
 */
async function walk(
  channelId: string,
  query: Record<string, string>,
  between?: (page: number) => Promise<void>,
): Promise<Array<{ body: PageBody; ledger: Record<string, string> }>> {
  const pages: Array<{ body: PageBody; ledger: Record<string, string> }> = [];
  let after: string | null = null;
  for (let n = 0; n < 200; n++) {
    const body = (await statement(channelId, after === null ? query : { ...query, after })) as PageBody;
    const ledger: Record<string, string> = {};
    for (const b of await channelBalances(db.db, channelId))
      ledger[b.asset] = formatUnits(
        units(ledger[b.asset] ?? '0', b.asset) + units(b.amount, b.asset),
        b.asset === 'eth' ? 18 : 6,
      );
    pages.push({ body, ledger });
    if (!body.page.hasMore) {
      expect(body.page.next).toBeNull();
      return pages;
    }
    expect(body.page.next).toEqual(expect.any(String));
    after = body.page.next;
    await between?.(n);
  }
  throw new Error('more than 200 pages');
}

/** Each asset's lines over all pages, in page order. */
function linesOf(pages: Array<{ body: PageBody }>, code: string) {
  return pages.flatMap((p) => items(asset(p.body, code)));
}

/** An ISO time (milliseconds or microseconds) in microseconds since the epoch. */
function micros(iso: string): bigint {
  const fraction = /\.(\d+)Z$/.exec(iso)?.[1] ?? '';
  return BigInt(Date.parse(`${iso.slice(0, 19)}Z`)) * 1000n + BigInt(fraction.padEnd(6, '0'));
}

const totalsOf = (s: StatementBody) =>
  s.assets.map((a) => ({ asset: a.asset, opening: a.opening, closing: a.closing, sums: a.sums, check: a.check }));

describe('statement: pages', () => {
  it('walks a statement a few lines at a time: every line once, in booking order, every page with the whole range’s totals', async () => {
    const whole = (await statement(THRESHOLD)) as PageBody;
    expect(whole.page).toMatchObject({ limit: 200, hasMore: false, next: null });
    const all = whole.assets.flatMap((a) => items(a));
    expect(whole.page.lines).toBe(new Set(all.map((x) => `${x.kind}/${x.id}`)).size);
    for (const limit of [1, 2, 3]) {
      const pages = await walk(THRESHOLD, { to: whole.to, limit: String(limit) });
      expect(pages.length).toBeGreaterThan(1);
      for (const { body } of pages) {
        expect(body.page.limit).toBe(limit);
        expect(body.page.lines).toBeLessThanOrEqual(limit);
        expect([body.from, body.to]).toEqual([whole.from, whole.to]);
        expect(totalsOf(body)).toEqual(totalsOf(whole));
      }
      expect(pages.reduce((n, p) => n + p.body.page.lines, 0)).toBe(whole.page.lines);
      for (const code of ['eth', 'usdt']) {
        const lines = linesOf(pages, code);
        // The same lines, whole (a payout set aside then completed is one line carrying both journals), in order.
        expect(lines).toEqual(items(asset(whole, code)));
        const journals = lines.flatMap((x) => x.journals as string[]);
        expect(new Set(journals).size).toBe(journals.length);
      }
    }
  });

  it('a payment booked between two pages: a range ending now was fixed by the first page, so it is not listed and the totals stay; a range ending later is cut at now, and lists it once asked again from the cut', async () => {
    await saveChannel(payrail, PAGED, instantEthChannel());
    await pay(PAGED, 5);
    const first = [...(paid[PAGED] as string[])];
    const fixed = await walk(PAGED, { limit: '2' }, async (n) => {
      if (n === 0) await pay(PAGED, 1);
    });
    expect(linesOf(fixed, 'eth').map((x) => x.paymentId)).toEqual(first);
    // The range's figures stay; what came after it (and so the ledger's balance now) grows by the new payment.
    const range = (b: StatementBody) => b.assets.map((a) => [a.opening, a.closing, a.sums]);
    for (const { body, ledger } of fixed) {
      expect(range(body)).toEqual(range(fixed[0]?.body as PageBody));
      const e = asset(body, 'eth');
      // Closing is the ledger at `to`; what came after is the payment booked since, and together they are the ledger.
      expect(e.check.ledgerBalance).toBe(ledger.eth);
      expect(units(e.closing.total, 'eth') + units(e.check.after as string, 'eth')).toBe(
        units(ledger.eth as string, 'eth'),
      );
    }
    expect(asset(fixed.at(-1)?.body as PageBody, 'eth').check.after).toBe(eth(NET_WEI));

    // A `to` past now is cut at now by the first page (a transaction begun since could book a line at any time before
    // it), and the cursor keeps the cut: the payment booked between the pages is neither listed nor counted.
    const later = { to: '2100-01-01' };
    const cut = await walk(PAGED, { ...later, limit: '2' }, async (n) => {
      if (n === 1) await pay(PAGED, 1);
    });
    const head = cut[0]?.body as PageBody;
    expect(head.toAsked).toBe('2100-01-01T00:00:00.000Z');
    expect(Date.parse(head.to)).toBeLessThan(Date.parse('2100-01-01'));
    expect(linesOf(cut, 'eth').map((x) => x.paymentId)).toEqual(paid[PAGED]?.slice(0, -1));
    for (const { body, ledger } of cut) {
      expect([body.to, body.toAsked]).toEqual([head.to, head.toAsked]);
      expect(range(body)).toEqual(range(head));
      const e = asset(body, 'eth');
      expect(units(e.closing.total, 'eth') + units(e.check.after as string, 'eth')).toBe(
        units(ledger.eth as string, 'eth'),
      );
    }
    expect(asset(head, 'eth').sums.payments.count).toBe(first.length + 1);
    expect(asset(cut.at(-1)?.body as PageBody, 'eth').check.after).toBe(eth(NET_WEI));
    // Asked again from the cut: the rest.
    const rest = (await statement(PAGED, { ...later, from: head.to })) as PageBody;
    expect(items(asset(rest, 'eth')).map((x) => x.paymentId)).toEqual(paid[PAGED]?.slice(-1));
    expect(asset(rest, 'eth').opening).toEqual(asset(head, 'eth').closing);
  });

  it('a line booked by a transaction still open when the first page is read: the range is cut where that transaction began, so no page lists it and no total counts it; asked again from the cut, it is there', async () => {
    await saveChannel(payrail, HELD, instantEthChannel());
    await pay(HELD, 3);
    const before = [...(paid[HELD] as string[])];
    const credit = 5_000_000n;
    // A credit booked as the ledger books every journal (payrail_post_journal), held open on a connection of its own.
    // In USDT, so that it locks none of the accounts the payments booked meanwhile write to.
    const held = await db.db.startTransaction().execute();
    let open = true;
    try {
      const { rows } = await sql<{ journal: string; began: string }>`
        select payrail_post_journal('held_credit', ${HELD}, array[${`channel:${HELD}`}, 'world:held'],
                 array['usdt', 'usdt'], array[false, true], array[${credit}, ${-credit}]::numeric[])::text as journal,
               to_char(now() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as began`.execute(held);
      const { journal, began } = rows[0] as { journal: string; began: string };
      // Booked, and committed, after the held transaction began (the line's time) and before the first pages.
      await pay(HELD, 3);
      const firsts = new Map<string, PageBody>();
      for (const limit of ['1', '4']) firsts.set(limit, (await statement(HELD, { limit })) as PageBody);
      await held.commit().execute();
      open = false;

      for (const [limit, first] of firsts) {
        // Cut at the held transaction's start: before it, nothing can be booked any more.
        expect(micros(first.to), limit).toBeLessThanOrEqual(micros(began));
        expect(first.toAsked, limit).toEqual(expect.any(String));
        expect(micros(first.toAsked as string)).toBeGreaterThan(micros(began));
        const pages = [first];
        for (let last = first; last.page.next !== null; pages.push(last))
          last = (await statement(HELD, { limit, after: last.page.next })) as PageBody;
        expect(pages.length).toBe(limit === '1' ? 3 : 1);
        for (const page of pages) {
          expect([page.from, page.to, page.toAsked]).toEqual([first.from, first.to, first.toAsked]);
          // The range's figures on every page, the commit in between notwithstanding (only what came after grows).
          const range = (b: StatementBody) =>
            b.assets.map((a) => [a.opening, a.closing, a.sums, a.check.movementsFromEntries]);
          expect(range(page)).toEqual(range(first));
        }
        // The lines are what the totals count: the payments booked before the held transaction, nothing else.
        const walked = pages.map((body) => ({ body }));
        expect(linesOf(walked, 'eth').map((x) => x.paymentId)).toEqual(before);
        expect(linesOf(walked, 'usdt')).toEqual([]);
        for (const code of ['eth', 'usdt']) {
          const a = asset(first, code);
          const listed = linesOf(walked, code).reduce((sum, x) => sum + units(x.amount, code), 0n);
          expect(formatUnits(listed, code === 'eth' ? 18 : 6), code).toBe(a.check.movementsFromEntries);
        }
        expect(asset(first, 'eth').sums.payments.count).toBe(before.length);
        expect(asset(first, 'usdt').closing.total).toBe('0');
        expect(asset(first, 'usdt').sums.other.count).toBe(0);
      }

      // Asked again from the cut, after the commit: the held credit, at its transaction's start, and what followed.
      const first = firsts.get('1') as PageBody;
      const rest = (await statement(HELD, { from: first.to })) as PageBody;
      expect(rest.toAsked).toBeNull();
      const usdt = asset(rest, 'usdt');
      expect(usdt.other.map((x) => [x.journalKind, x.journals, x.time, x.amount])).toEqual([
        ['held_credit', [journal], began, formatUnits(credit, 6)],
      ]);
      expect(usdt.opening.total).toBe('0');
      expect(usdt.closing.total).toBe(formatUnits(credit, 6));
      expect(items(asset(rest, 'eth')).map((x) => x.paymentId)).toEqual((paid[HELD] as string[]).slice(3));
      expect(asset(rest, 'eth').opening).toEqual(asset(first, 'eth').closing);
    } finally {
      if (open) await held.rollback().execute();
    }
  });

  it('a cursor continues only the statement it came from', async () => {
    const page = (await statement(THRESHOLD, { limit: '1' })) as PageBody;
    const after = page.page.next as string;
    const other = await payrail.request('GET', statementPath(INSTANT, { after }));
    expect(other.status).toBe(400);
    expect((other.body as { error: string }).error).toMatch(
      new RegExp(
        `^after: this cursor continues the statement of channel ${THRESHOLD} from ${page.from} to ${page.to}, not this one`,
      ),
    );
    for (const range of [{ to: marks.end as string }, { from: marks.start as string }] as Array<
      Record<string, string>
    >) {
      const res = await payrail.request('GET', statementPath(THRESHOLD, { ...range, after }));
      expect(res.status).toBe(400);
      expect((res.body as { error: string }).error).toMatch(/^after: this cursor continues the statement of channel/);
    }
    // The same bounds given again are the same statement.
    const same = await statement(THRESHOLD, { from: page.from, to: page.to, limit: '1', after });
    expect(same.from).toBe(page.from);
  });

  const bad: Array<[string, Record<string, string>, RegExp]> = [
    ['a limit of 0', { limit: '0' }, /^limit: must be a whole number from 1 to 1000$/],
    ['a limit above the maximum', { limit: '1001' }, /^limit: must be a whole number from 1 to 1000$/],
    ['a limit that is not a number', { limit: 'ten' }, /^limit: must be a whole number from 1 to 1000$/],
    ['a limit that is not whole', { limit: '2.5' }, /^limit: must be a whole number from 1 to 1000$/],
    ['a cursor that is not one', { after: 'bm90IGEgY3Vyc29y' }, /^after: not a cursor this statement handed out/],
    [
      'a cursor with a forged position',
      { after: Buffer.from('{"v":1}').toString('base64url') },
      /^after: not a cursor/,
    ],
    ['a page of the CSV', { format: 'csv', limit: '5' }, /^limit, after: the CSV is the whole range, streamed/],
  ];
  it.each(bad)('%s: a 400 naming it', async (_name, query, message) => {
    const res = await payrail.request('GET', statementPath(THRESHOLD, query));
    expect(res.status).toBe(400);
    expect(Object.keys(res.body as object)).toEqual(['error']);
    expect((res.body as { error: string }).error).toMatch(message);
  });
});

describe('statement: ranges over several days', () => {
  const DAY = 86_400_000;
  const today = Math.floor(Date.now() / DAY) * DAY;
  const at = (days: number, hours: number) => new Date(today - days * DAY + hours * 3_600_000).toISOString();
  const booked: Array<{ at: string; units: bigint }> = [
    { at: at(3, 12), units: 1n },
    { at: at(2, 12), units: 20n },
    { at: at(2, 13), units: 300n },
    { at: at(1, 12), units: 4000n },
  ];

  beforeAll(async () => {
    await saveChannel(payrail, BACKDATED, instantEthChannel());
    // Journals of earlier days, written as the ledger writes them but with their own time: only a test can book the
    // past. The per-day sums follow the entries (the trigger of migration 027), as for any journal.
    await sql`insert into ledger_accounts (code, asset, allow_negative) values
      (${`channel:${BACKDATED}`}, 'eth', false), ('world:backdated', 'eth', true) on conflict do nothing`.execute(
      db.db,
    );
    for (const [n, b] of booked.entries()) {
      await db.db.transaction().execute(async (trx) => {
        const { rows } = await sql<{ id: string }>`
          insert into ledger_journals (kind, ref, created_at) values ('backdated', ${`${BACKDATED}:${n}`}, ${b.at})
          returning id::text as id`.execute(trx);
        const journal = (rows[0] as { id: string }).id;
        await sql`insert into ledger_entries (journal_id, account_id, amount, created_at)
          select ${journal}::bigint, a.id, x.amount, ${b.at}::timestamptz
          from (values (${`channel:${BACKDATED}`}, ${b.units}::numeric), ('world:backdated', ${-b.units}::numeric)) x(code, amount)
          join ledger_accounts a on a.code = x.code and a.asset = 'eth'`.execute(trx);
        await sql`update ledger_accounts set balance = balance + x.amount
          from (values (${`channel:${BACKDATED}`}, ${b.units}::numeric), ('world:backdated', ${-b.units}::numeric)) x(code, amount)
          where ledger_accounts.code = x.code and ledger_accounts.asset = 'eth'`.execute(trx);
      });
    }
    await pay(BACKDATED, 1);
  });

  const wei = (n: bigint) => eth(n);

  it('opens and closes where the history stood, whichever days the bounds fall in', async () => {
    const cases: Array<[string, string, bigint, bigint, number]> = [
      ['2020-01-01', '2100-01-01', 0n, 4321n + NET_WEI, 5],
      [at(3, 0), at(1, 0), 0n, 321n, 3],
      [at(3, 13), at(1, 12), 1n, 321n, 2],
      [at(2, 12), at(2, 13), 1n, 21n, 1],
      [at(2, 12), at(1, 13), 1n, 4321n, 3],
      [at(2, 14), at(0, 0), 321n, 4321n, 1],
      [at(1, 13), '2100-01-01', 4321n, 4321n + NET_WEI, 1],
    ];
    for (const [from, to, opening, closing, lines] of cases) {
      const s = (await statement(BACKDATED, { from, to })) as PageBody;
      const e = asset(s, 'eth');
      expect([e.opening.total, e.closing.total, s.page.lines], `${from} → ${to}`).toEqual([
        wei(opening),
        wei(closing),
        lines,
      ]);
      expect(e.check.movementsFromEntries).toBe(wei(closing - opening));
      const backdated = booked.filter((b) => b.at >= from && b.at < to);
      expect(e.sums.other).toEqual({
        count: backdated.length,
        amount: wei(backdated.reduce((sum, b) => sum + b.units, 0n)),
      });
      // Paged one line at a time, the same lines.
      const pages = await walk(BACKDATED, { from, to, limit: '1' });
      expect(linesOf(pages, 'eth')).toEqual(items(e));
    }
  });

  it('a day whose sums differ from its entries is found: a 500, not a statement', async () => {
    const day = at(2, 0).slice(0, 10);
    const tamper = (by: number) =>
      sql`update ledger_channel_days set available = available + ${by}
          where channel_id = ${BACKDATED} and asset = 'eth' and day = ${day}::date`.execute(db.db);
    await tamper(1);
    try {
      // The day of `from`: its sums against its entries.
      const res = await payrail.request('GET', statementPath(BACKDATED, { from: at(2, 6), to: at(0, 0) }));
      expect(res.status).toBe(500);
      expect((res.body as { error: string }).error).toMatch(
        new RegExp(
          `^statement of channel ${BACKDATED} does not add up in eth \\(available\\): opening 1 \\+ entries 4320 ≠ closing 4322; `,
        ),
      );
      // A day inside the range: the sum of every day against the ledger's balance.
      const inside = await payrail.request('GET', statementPath(BACKDATED, { from: '2020-01-01' }));
      expect(inside.status).toBe(500);
      expect((inside.body as { error: string }).error).toMatch(
        /does not add up in eth \(available\): closing \d+ \+ entries after the range 0 ≠ ledger balance \d+/,
      );
    } finally {
      await tamper(-1);
    }
    expect((await payrail.request('GET', statementPath(BACKDATED, { from: at(2, 6) }))).status).toBe(200);
  });
});
