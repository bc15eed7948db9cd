/**
 * What the demo did, from payrail's own tables and ledger: invoices, payments, fees, conversions, payouts, the host
 * wallet's on-chain transactions, ChangeNow exchanges, what the payments cost the platform per strategy (the
 * overview's cost read, from the ledger), the ledger check, and sums that must agree across stages.
 * Amounts are summed in SQL NUMERIC and printed as exact decimals (formatUnits over bigint), never through a JavaScript
 * number.
 * When the demo gives up, `explainPending` says from the same tables what is still open and why.
 */
import type pg from 'pg';
import type { Db } from '../db/index.ts';
import { jobErrorsByTask } from '../jobs/index.ts';
import { checkLedger, type LedgerReport } from '../ledger/index.ts';
import { checkLedgerAgainstChain, type ChainReport, type ChainSide } from '../treasury/index.ts';
import { formatChainReport } from '../treasury/commands.ts';
import { formatUnits } from '../money/index.ts';
import { formatCosts, readCosts, type CostsReport } from '../overview/index.ts';
import { USDT_UNITS_PER_CENT } from '../pipeline/index.ts';
import { UNPAID_BY_CHANNEL_SQL } from './progress.ts';
import type { DeliveryTally } from './purchases.ts';

const eth = (wei: string | bigint) => `${formatUnits(BigInt(wei), 18)} ETH`;
const usdt = (units: string | bigint) => `${formatUnits(BigInt(units), 6, { fixed: true })} USDT`;
const usd = (text: string) => `${text} USD`;
const yes = (ok: boolean) => (ok ? 'yes' : 'NO');

export interface SummaryContext {
  plannedPayments: number;
  /** What the purchases did: checkout answers replayed, IPNs the NOWPayments simulator sent. */
  purchases: DeliveryTally;
  /** GET /v1/payment/{id} calls the NOWPayments simulator answered: payrail confirming its credits. */
  nowpaymentsApiCalls?: number;
  /** Exchanges the in-process ChangeNow simulator holds, to compare with what payrail recorded. */
  simulatorExchanges?: number;
  outage?: { startedAt: number; endedAt: number };
  /** The host wallet on the local chain: its ETH and USDT are compared with the ledger (check-ledger --chain). */
  chain?: ChainSide;
}

export interface Summary {
  lines: string[];
  ledger: LedgerReport;
  /** Payments in a completed payout. */
  paidOut: number;
  /** Converted payments waiting on their channel's balance below its threshold, with nothing open for the channel. */
  waiting: number;
  /** Every payment paid out or waiting below its channel's threshold, every sum agreeing, the ledger balanced. */
  ok: boolean;
}

interface Row {
  [column: string]: string | number | null;
}

async function one(pool: pg.Pool, text: string, values: unknown[] = []): Promise<Row> {
  return (await pool.query<Row>(text, values)).rows[0] ?? {};
}

async function all(pool: pg.Pool, text: string, values: unknown[] = []): Promise<Row[]> {
  return (await pool.query<Row>(text, values)).rows;
}

const s = (row: Row, column: string): string => String(row[column] ?? '0');
const n = (row: Row, column: string): number => Number(row[column] ?? 0);

export async function summarize(db: Db, pool: pg.Pool, context: SummaryContext): Promise<Summary> {
  const invoices = await invoicesSection(pool, context);
  const payments = await paymentsSection(pool, context);
  const conversions = await conversionsSection(pool);
  const payouts = await payoutsSection(pool);
  const transfers = await transfersSection(pool);
  const exchanges = exchangesSection(payments.pay, conversions.conv, payouts.exchanges, context);
  const costs = await readCosts(db);
  const outage = context.outage ? await outageSection(pool, context.outage) : undefined;
  const sums = await stageSums(pool);
  const balances = await channelBalances(pool, payments.unpaid, sums);
  const ledger = await checkLedger(db);
  const onChain = context.chain ? await checkLedgerAgainstChain(db, context.chain) : undefined;
  const figures: Figures = {
    pay: payments.pay,
    unpaid: payments.unpaid,
    conv: conversions.conv,
    payouts,
    sums,
    balances,
    exchanges: exchanges.count,
    costs,
    onChain,
  };
  const checks = [...invoices.checks, ...stageChecks(figures, context)];
  const sections = [
    invoices.lines,
    payments.lines,
    conversions.lines,
    payouts.lines,
    transfers,
    exchanges.lines,
    formatCosts(costs),
    ...(outage ? [outage] : []),
    checksSection(checks),
    ledgerSection(ledger, onChain),
  ];
  return {
    lines: sections.flatMap((lines, i) => (i === 0 ? lines : ['', ...lines])),
    ledger,
    paidOut: n(payments.pay, 'paid_out'),
    waiting: payments.unpaid.waiting,
    ok: ledger.ok && checks.every(([, ok]) => ok) && (onChain?.ok ?? true),
  };
}

/**
 * Checkout to credit: every payment on an invoice payrail's checkout created (its channel, user, order id and price),
 * one payment per invoice, each credited once (one payment_received journal) after NOWPayments' API confirmed it, and
 * every IPN the simulator sent recorded.
 */
async function invoicesSection(pool: pg.Pool, context: SummaryContext): Promise<{ lines: string[]; checks: Check[] }> {
  const row = await one(
    pool,
    `select (select count(*)::int from invoices) as created,
            (select coalesce(sum(price_usd), 0)::text from invoices) as price_usd,
            (select count(*)::int from invoices i where exists (select 1 from payments p where p.invoice_id::text = i.invoice_id)) as paid,
            (select count(*)::int from payments) as payments,
            (select count(*)::int from payments p join invoices i on i.invoice_id = p.invoice_id::text
              where p.channel_id = i.channel_id and p.user_id = i.user_id and p.order_id = i.order_id
                and p.price_amount = i.price_usd and p.credited_at is not null) as matched,
            (select count(distinct invoice_id)::int from payments) as invoices_paid_into,
            (select count(*)::int from payments where confirmed_at is not null) as confirmed,
            (select count(*)::int from ledger_journals where kind = 'payment_received') as credit_journals,
            (select count(*)::int from ledger_journals j join payments p on p.payment_id::text = j.ref where j.kind = 'payment_received') as credited_payments,
            (select coalesce(sum(ipn_count), 0)::int from payments) as ipns_recorded`,
  );
  const t = context.purchases;
  const planned = context.plannedPayments;
  const calls =
    context.nowpaymentsApiCalls === undefined
      ? ''
      : `; the simulator answered ${context.nowpaymentsApiCalls} such calls`;
  const lines = [
    'invoices (checkout: POST /api/invoices with an Idempotency-Key, as the platform calls it)',
    `  created         ${n(row, 'created')} for ${planned} purchases, priced ${usd(s(row, 'price_usd'))}; ${t.replays} answers asked for again with the same key: replayed, no second invoice`,
    `  paid            ${n(row, 'paid')} in the NOWPayments simulator, which forwarded each outcome to the host wallet and sent payrail ${t.ipns} signed IPNs`,
    `                  (waiting, confirming, finished; ${t.copies} of them copies, ${t.late} after a later status)`,
    `  confirmed       ${n(row, 'confirmed')} payments confirmed with NOWPayments' API (GET /v1/payment/{id}) before their credit${calls}`,
  ];
  const checks: Check[] = [
    [
      'every payment on an invoice checkout created, credited once',
      n(row, 'created') === planned &&
        n(row, 'payments') === planned &&
        n(row, 'matched') === planned &&
        n(row, 'invoices_paid_into') === planned &&
        n(row, 'credit_journals') === planned &&
        n(row, 'credited_payments') === planned,
      `${n(row, 'matched')} of ${n(row, 'payments')} payments match their invoice, on ${n(row, 'invoices_paid_into')} of ${n(row, 'created')} invoices; ${n(row, 'credit_journals')} payment_received journals`,
    ],
    [
      "every credit confirmed with NOWPayments' API first",
      n(row, 'confirmed') === planned,
      `${n(row, 'confirmed')} of ${planned} payments`,
    ],
    [
      'every IPN the simulator sent recorded by payrail',
      n(row, 'ipns_recorded') === t.ipns,
      `${n(row, 'ipns_recorded')} recorded of ${t.ipns} sent`,
    ],
  ];
  return { lines, checks };
}

/** Converted threshold payments in no payout, per channel (UNPAID_BY_CHANNEL_SQL), and those of them that wait. */
interface Unpaid {
  rows: Row[];
  /** Channels waiting below their threshold with nothing open for them: a legitimate end state. */
  waitingRows: Row[];
  /** Payments on those channels. */
  waiting: number;
  waitingUsdt: bigint;
}

async function paymentsSection(pool: pg.Pool, context: SummaryContext) {
  const pay = await one(
    pool,
    `select count(*)::int as n,
            count(*) filter (where payout_strategy = 'threshold')::int as threshold,
            count(*) filter (where payout_strategy = 'instant')::int as instant,
            coalesce(sum(price_amount), 0)::text as price_usd,
            coalesce(sum(gross_amount), 0)::text as gross, coalesce(sum(fee_amount), 0)::text as fee, coalesce(sum(net_amount), 0)::text as net,
            coalesce(sum(net_amount) filter (where payout_strategy = 'threshold'), 0)::text as threshold_net,
            coalesce(sum(net_amount) filter (where payout_strategy = 'instant'), 0)::text as instant_net,
            coalesce(sum(usdt_amount) filter (where payout_strategy = 'threshold'), 0)::text as threshold_usdt,
            string_agg(distinct fee_percent::text, ', ') as fee_percent,
            (select count(*)::int from payments p join payouts po on po.payout_id = p.payout_id where po.status = 'completed') as paid_out
     from payments`,
  );
  const rows = await all(pool, UNPAID_BY_CHANNEL_SQL);
  const waitingRows = rows.filter((r) => n(r, 'waits') === 1);
  const unpaid: Unpaid = {
    rows,
    waitingRows,
    waiting: waitingRows.reduce((sum, r) => sum + n(r, 'n'), 0),
    waitingUsdt: waitingRows.reduce((sum, r) => sum + BigInt(s(r, 'usdt')), 0n),
  };
  const waitingText =
    unpaid.waiting === 0
      ? "none converted and waiting below a channel's threshold"
      : `${unpaid.waiting} converted and waiting below their channel's threshold, as the threshold strategy does (${usdt(unpaid.waitingUsdt)} on ${waitingRows.length} channels)`;
  const lines = [
    'payments',
    `  received        ${n(pay, 'n')} of ${context.plannedPayments} bought (${n(pay, 'threshold')} to threshold channels, ${n(pay, 'instant')} to instant channels), priced ${usd(s(pay, 'price_usd'))}`,
    `  credited        ${eth(s(pay, 'gross'))} (NOWPayments' outcome)`,
    `  platform fee    ${eth(s(pay, 'fee'))} (${s(pay, 'fee_percent')} %, rounded down per payment; the channel keeps the rest)`,
    `  to the channels ${eth(s(pay, 'net'))}: ${eth(s(pay, 'threshold_net'))} threshold, ${eth(s(pay, 'instant_net'))} instant`,
    `  paid out        ${n(pay, 'paid_out')} of ${n(pay, 'n')} payments are in a completed payout; ${waitingText}`,
  ];
  return { pay, unpaid, lines };
}

async function conversionsSection(pool: pg.Pool) {
  const conv = await one(
    pool,
    `select count(*)::int as n, count(*) filter (where status = 'completed')::int as completed, count(exchange_id)::int as exchanges,
            coalesce(sum(amount_wei) filter (where status = 'completed'), 0)::text as wei,
            coalesce(sum(usdt_received) filter (where status = 'completed'), 0)::text as usdt,
            coalesce(min(payment_count), 0)::int as min_p, coalesce(max(payment_count), 0)::int as max_p
     from conversions`,
  );
  const lines = [
    'conversions (threshold channels: pending ETH -> USDT in micro-batches, one exchange and one transfer each)',
    `  completed       ${n(conv, 'completed')} of ${n(conv, 'n')} (${n(conv, 'min_p')} to ${n(conv, 'max_p')} payments each)`,
    `  converted       ${eth(s(conv, 'wei'))} -> ${usdt(s(conv, 'usdt'))} received, shared out to the payments exactly`,
  ];
  return { conv, lines };
}

interface PayoutFigures {
  total: number;
  completed: number;
  /** Payouts that went through a ChangeNow exchange. */
  exchanges: number;
  lines: string[];
}

async function payoutsSection(pool: pg.Pool): Promise<PayoutFigures> {
  const rows = await all(
    pool,
    `select kind, payout_currency as currency, payout_network as network, asset,
            count(*)::int as n, count(*) filter (where status = 'completed')::int as completed, count(exchange_id)::int as exchanges,
            coalesce(sum(amount), 0)::text as amount, coalesce(sum(amount_out::numeric) filter (where status = 'completed'), 0)::text as amount_out
     from payouts group by 1, 2, 3, 4 order by 1 desc, 2, 3`,
  );
  const total = rows.reduce((sum, r) => sum + n(r, 'n'), 0);
  const completed = rows.reduce((sum, r) => sum + n(r, 'completed'), 0);
  const lines = [`payouts         ${completed} of ${total} completed`];
  for (const r of rows) {
    const held = r.asset === 'eth' ? eth(s(r, 'amount')) : usdt(s(r, 'amount'));
    const how = n(r, 'exchanges') === 0 ? 'direct transfer' : `${n(r, 'exchanges')} via ChangeNow`;
    lines.push(
      `  ${String(r.kind).padEnd(9)} ${`${r.currency} on ${r.network}`.padEnd(12)} ${String(n(r, 'completed')).padStart(4)} of ${String(n(r, 'n')).padEnd(4)} ${held} -> ${s(r, 'amount_out')} ${String(r.currency).toUpperCase()} to the owners (${how})`,
    );
  }
  return { total, completed, exchanges: rows.reduce((sum, r) => sum + n(r, 'exchanges'), 0), lines };
}

async function transfersSection(pool: pg.Pool): Promise<string[]> {
  const rows = await all(
    pool,
    `select purpose, asset, status, count(*)::int as n, coalesce(sum(amount), 0)::text as amount, coalesce(sum(gas_cost_wei), 0)::text as gas
     from chain_transfers group by 1, 2, 3 order by 1, 2, 3`,
  );
  const gas = rows.reduce((sum, r) => sum + BigInt(s(r, 'gas')), 0n);
  const count = rows.reduce((sum, r) => sum + n(r, 'n'), 0);
  return [
    `on-chain transactions from the host wallet (chain_transfers): ${count}, gas ${eth(gas)}`,
    ...rows.map(
      (r) =>
        `  ${`${r.purpose} ${r.asset}`.padEnd(16)} ${String(r.status).padEnd(10)} ${String(n(r, 'n')).padStart(4)}  ${r.asset === 'eth' ? eth(s(r, 'amount')) : usdt(s(r, 'amount'))}`,
    ),
  ];
}

function exchangesSection(pay: Row, conv: Row, payoutExchanges: number, context: SummaryContext) {
  const count = n(conv, 'exchanges') + payoutExchanges;
  const simulator =
    context.simulatorExchanges === undefined ? '' : `; the simulator counted ${context.simulatorExchanges}`;
  const lines = [
    `ChangeNow exchanges: ${count} (${n(conv, 'exchanges')} conversions + ${payoutExchanges} payouts; one per payment would have been ${n(pay, 'n')})${simulator}`,
  ];
  return { count, lines };
}

async function outageSection(pool: pg.Pool, outage: NonNullable<SummaryContext['outage']>): Promise<string[]> {
  const during = await one(
    pool,
    `select count(*)::int as recorded,
            (select count(*)::int from payments where conversion_attempts > 1) as conversion_retries,
            (select coalesce(sum(greatest(attempts - 1, 0)), 0)::int from payouts) as payout_retries
     from payments where created_at between to_timestamp($1::numeric / 1000) and to_timestamp($2::numeric / 1000)`,
    [String(outage.startedAt), String(outage.endedAt)],
  );
  return [
    `ChangeNow outage: down for ${((outage.endedAt - outage.startedAt) / 1000).toFixed(1)} s; ${n(during, 'recorded')} payments were received and recorded meanwhile`,
    `  (intake never calls ChangeNow); afterwards ${n(during, 'conversion_retries')} payments needed more than one conversion attempt and payouts retried ${n(during, 'payout_retries')} times`,
  ];
}

/** Sums that must agree from one stage to the next: nothing lost, nothing paid twice. */
async function stageSums(pool: pg.Pool): Promise<Row> {
  return one(
    pool,
    `select (select coalesce(sum(amount), 0)::text from payouts where kind = 'threshold' and status = 'completed') as batched,
            (select coalesce(sum(amount), 0)::text from payouts where kind = 'instant' and status = 'completed') as instant_paid,
            (select coalesce(sum(balance), 0)::text from ledger_accounts
              where code like 'channel:%' and not (asset = 'usdt' and code not like '%:payout')) as other_channel_balances,
            (select count(*)::int from chain_transfers where status = 'confirmed') as confirmed,
            (select count(*)::int from chain_transfers) as transfer_rows,
            (select coalesce(sum(gas_cost_wei), 0)::text from chain_transfers) as transfer_gas`,
  );
}

/** Each channel's available USDT against the converted payments in no payout: equal, and below the threshold. */
async function channelBalances(pool: pg.Pool, unpaid: Unpaid, sums: Row): Promise<{ ok: boolean; detail: string }> {
  const usdtAccounts = await all(
    pool,
    `select code, balance::text as balance from ledger_accounts where asset = 'usdt' and code like 'channel:%' and code not like '%:payout'`,
  );
  const balances = new Map<string, { balance: bigint; unpaid: bigint; waits: boolean }>();
  for (const a of usdtAccounts)
    balances.set(String(a.code), { balance: BigInt(s(a, 'balance')), unpaid: 0n, waits: false });
  for (const r of unpaid.rows) {
    const code = `channel:${String(r.channel_id)}`;
    const entry = balances.get(code) ?? { balance: 0n, unpaid: 0n, waits: false };
    balances.set(code, { ...entry, unpaid: BigInt(s(r, 'usdt')), waits: n(r, 'waits') === 1 });
  }
  const wrong = [...balances].filter(([, b]) => b.balance !== b.unpaid || (b.balance > 0n && !b.waits));
  const ok = wrong.length === 0 && BigInt(s(sums, 'other_channel_balances')) === 0n;
  if (wrong.length === 0)
    return {
      ok,
      detail: `${usdt(unpaid.waitingUsdt)} on ${unpaid.waitingRows.length} channels, each below its threshold; ETH and payout accounts sum ${s(sums, 'other_channel_balances')}`,
    };
  const detail = wrong
    .slice(0, 3)
    .map(
      ([code, b]) =>
        `${code} holds ${usdt(b.balance)}, its converted unpaid payments ${usdt(b.unpaid)}${b.waits ? '' : ', not below its threshold with nothing open'}`,
    )
    .join('; ');
  return { ok, detail };
}

type Check = [what: string, ok: boolean, detail: string];

interface Figures {
  pay: Row;
  unpaid: Unpaid;
  conv: Row;
  payouts: PayoutFigures;
  sums: Row;
  balances: { ok: boolean; detail: string };
  costs: CostsReport;
  /** ChangeNow exchanges payrail recorded, conversions and payouts. */
  exchanges: number;
  onChain: ChainReport | undefined;
}

function stageChecks(f: Figures, context: SummaryContext): Check[] {
  const { pay, conv, sums, payouts } = f;
  const { waiting, waitingUsdt } = f.unpaid;
  const accounted = n(pay, 'n') === context.plannedPayments && n(pay, 'paid_out') + waiting === n(pay, 'n');
  const checks: Check[] = [
    [
      'every payment received, and paid out or waiting below threshold',
      accounted,
      `${n(pay, 'paid_out')} paid out + ${waiting} waiting of ${context.plannedPayments} payments`,
    ],
    ['every payout completed', payouts.completed === payouts.total, `${payouts.completed}/${payouts.total} payouts`],
    [
      "threshold payments' net ETH == ETH the conversions sent",
      s(pay, 'threshold_net') === s(conv, 'wei'),
      `${eth(s(pay, 'threshold_net'))} vs ${eth(s(conv, 'wei'))}`,
    ],
    [
      'USDT the conversions received == USDT credited to the payments',
      s(pay, 'threshold_usdt') === s(conv, 'usdt'),
      `${usdt(s(pay, 'threshold_usdt'))} vs ${usdt(s(conv, 'usdt'))}`,
    ],
    [
      'threshold batches paid + USDT waiting == that USDT',
      BigInt(s(sums, 'batched')) + waitingUsdt === BigInt(s(pay, 'threshold_usdt')),
      `${usdt(s(sums, 'batched'))} + ${usdt(waitingUsdt)}`,
    ],
    [
      "instant payouts paid == instant payments' net ETH",
      s(sums, 'instant_paid') === s(pay, 'instant_net'),
      eth(s(sums, 'instant_paid')),
    ],
    ['every channel balance below its threshold, == its waiting USDT', f.balances.ok, f.balances.detail],
    [
      'one confirmed transfer per conversion and per payout',
      n(sums, 'confirmed') === n(sums, 'transfer_rows') && n(sums, 'transfer_rows') === n(conv, 'n') + payouts.total,
      `${n(sums, 'confirmed')} confirmed of ${n(sums, 'transfer_rows')}, for ${n(conv, 'n')} conversions + ${payouts.total} payouts`,
    ],
  ];
  // The cost lines read gas from the ledger's network_fee journals; the transfers record what their receipts said.
  const gasBooked = f.costs.total.gas.get('eth') ?? 0n;
  checks.push([
    "cost lines' gas (ledger) == the host wallet's transfers' gas",
    gasBooked === BigInt(s(sums, 'transfer_gas')),
    `${eth(gasBooked)} vs ${eth(s(sums, 'transfer_gas'))}`,
  ]);
  if (f.onChain)
    checks.push([
      'host wallet on chain == ledger (check-ledger --chain)',
      f.onChain.ok,
      f.onChain.assets
        .map((a) => `${a.asset.toUpperCase()} ${a.difference === 0n ? 'equal' : `off by ${a.difference}`}`)
        .join(', '),
    ]);
  if (context.simulatorExchanges !== undefined)
    checks.push([
      'exchanges recorded == exchanges at ChangeNow',
      f.exchanges === context.simulatorExchanges,
      `${f.exchanges} vs ${context.simulatorExchanges}`,
    ]);
  return checks;
}

function checksSection(checks: Check[]): string[] {
  return ['checks', ...checks.map(([what, ok, detail]) => `  ${what.padEnd(64)} ${yes(ok)}  (${detail})`)];
}

function ledgerSection(ledger: LedgerReport, onChain: ChainReport | undefined): string[] {
  const lines = [
    `ledger check (payrail check-ledger): ${ledger.ok ? 'OK' : `BROKEN, ${ledger.problems.length} violation(s)`}: ${ledger.accounts} accounts, ${ledger.journals} journals, ${ledger.entries} entries`,
    '  every journal sums to zero per asset, every balance equals the sum of its entries, none negative where it must not be',
    ...ledger.problems.slice(0, 10).map((p) => `  VIOLATION ${p.rule}: ${p.subject}: ${p.detail}`),
  ];
  if (onChain) {
    lines.push(`ledger against the chain (payrail check-ledger --chain): ${onChain.ok ? 'equal' : 'DIFFERENT'}`);
    for (const l of formatChainReport(onChain).trimEnd().split('\n')) lines.push(`  ${l}`);
  }
  return lines;
}

/** What each open state waits for, so the list below reads as reasons, not only as state names. */
const WAITING_FOR: Record<string, string> = {
  'conversion pending': 'its exchange is to be asked for',
  'conversion exchange_requested': 'ChangeNow is being asked for an exchange (retried while it does not answer)',
  'conversion exchange_created': "the host wallet's ETH deposit to the exchange is being sent",
  'conversion sent': 'ChangeNow is to finish the exchange and pay the USDT out',
  'conversion failed': 'its payments went back to pending, to be tried again',
  'conversion needs_review': 'a person must decide',
  'payout pending': 'its job is to ask ChangeNow for an exchange, or send directly',
  'payout exchange_requested': 'ChangeNow is being asked for an exchange (retried while it does not answer)',
  'payout exchange_created': "the host wallet's deposit to the exchange is being sent",
  'payout sent': 'the exchange to finish, or a direct transfer to be mined',
  'payout held': "below ChangeNow's minimum or in a wallet change hold: it waits for more money or the hold's end",
  'payout awaiting_approval': 'above PAYOUT_APPROVAL_ABOVE_USD: a person must approve it',
  'payout needs_review': 'a person must decide',
  'payout failed': 'its funds went back to the channel',
  'payout cancelled': 'cancelled by a person',
  'transfer intent':
    'recorded, to be signed and broadcast (the host wallet signs its queued transfers one batch at a time, at consecutive nonces)',
  'transfer signed': 'signed, to be broadcast',
  'transfer broadcast': 'broadcast, to be mined',
  'transfer failed': 'never left: its conversion or payout decides what next',
};
const why = (kind: string, status: unknown) => WAITING_FOR[`${kind} ${String(status)}`] ?? 'no known next step';

/**
 * What is still open, and why, for a run that gave up waiting. `notBought`: closing payments the demo had not bought
 * yet (each waits until its channel's earlier payments are converted).
 */
export async function explainPending(pool: pg.Pool, plannedPayments: number, notBought = 0): Promise<string[]> {
  const out = [
    ...(await intakeGaps(pool, plannedPayments, notBought)),
    ...(await paymentsInReview(pool)),
    ...(await paymentsAwaitingConversion(pool)),
    ...(await openConversions(pool)),
    ...(await openPayouts(pool)),
    ...(await unpaidByChannel(pool)),
    ...(await openTransfers(pool)),
    ...(await failedJobs(pool)),
  ];
  if (out.length === 0) out.push('  nothing open in the tables: the last payouts were completing as the time ran out');
  return out;
}

/** Purchases not made, not invoiced, not paid, not finished, or finished but not yet confirmed. */
async function intakeGaps(pool: pg.Pool, plannedPayments: number, notBought: number): Promise<string[]> {
  const out: string[] = [];
  const known = await one(
    pool,
    `select (select count(*)::int from invoices) as invoices,
            (select count(*)::int from payments) as payments,
            (select count(*)::int from payments where status <> 'finished') as unfinished,
            (select count(*)::int from payments where status = 'finished' and credited_at is null and review_reason is null) as unconfirmed,
            (select max(confirm_last_error) from payments where status = 'finished' and credited_at is null) as confirm_error`,
  );
  if (notBought > 0)
    out.push(
      `  ${notBought} closing purchases not made yet: each waits until its channel's earlier payments are converted`,
    );
  const bought = plannedPayments - notBought;
  if (n(known, 'invoices') < bought)
    out.push(
      `  ${bought - n(known, 'invoices')} purchases have no invoice yet (not made yet, or POST /api/invoices unanswered)`,
    );
  if (n(known, 'payments') < bought)
    out.push(
      `  ${bought - n(known, 'payments')} purchases have no payment recorded (not paid yet, or no IPN reached payrail's webhook)`,
    );
  if (n(known, 'unfinished') > 0)
    out.push(`  ${n(known, 'unfinished')} payments have no finished IPN yet: NOWPayments has not said they are paid`);
  if (n(known, 'unconfirmed') > 0)
    out.push(
      `  ${n(known, 'unconfirmed')} finished payments wait for NOWPayments' API to confirm them before their credit${known.confirm_error ? ` (last error: ${String(known.confirm_error).slice(0, 160)})` : ''}`,
    );
  return out;
}

async function paymentsInReview(pool: pg.Pool): Promise<string[]> {
  const review = await all(
    pool,
    `select review_reason as reason, count(*)::int as n from payments where review_reason is not null group by 1`,
  );
  return review.map((r) => `  ${n(r, 'n')} payments in review: ${r.reason}`);
}

async function paymentsAwaitingConversion(pool: pg.Pool): Promise<string[]> {
  const pending = await one(
    pool,
    `select count(*)::int as n, max(conversion_attempts)::int as attempts, round(extract(epoch from now() - min(credited_at)))::int as oldest_s,
            count(*) filter (where conversion_hold_until > now())::int as held
     from payments where conversion_status = 'pending'`,
  );
  if (n(pending, 'n') === 0) return [];
  const refused = n(pending, 'held') > 0 ? `, ${n(pending, 'held')} held back after ChangeNow refused` : '';
  return [
    `  ${n(pending, 'n')} threshold payments wait for a conversion: until ~CONVERSION_MIN_USD of them wait, or the oldest has waited CONVERSION_MAX_WAIT (oldest credited ${n(pending, 'oldest_s')} s ago, up to ${n(pending, 'attempts')} attempts${refused})`,
  ];
}

async function openConversions(pool: pg.Pool): Promise<string[]> {
  const conversions = await all(
    pool,
    `select status, count(*)::int as n, max(last_error) as last_error, max(reason) as reason from conversions where status <> 'completed' group by 1 order by 1`,
  );
  return conversions.map(
    (r) =>
      `  ${n(r, 'n')} conversions ${r.status}: ${why('conversion', r.status)}${r.reason ? `; ${r.reason}` : ''}${r.last_error ? ` (last error: ${String(r.last_error).slice(0, 160)})` : ''}`,
  );
}

async function openPayouts(pool: pg.Pool): Promise<string[]> {
  const payouts = await all(
    pool,
    `select status, count(*)::int as n, max(attempts)::int as attempts, max(reason) as reason, max(last_error) as last_error, min(hold_until)::text as hold_until
     from payouts where status <> 'completed' group by 1 order by 1`,
  );
  return payouts.map(
    (r) =>
      `  ${n(r, 'n')} payouts ${r.status}: ${why('payout', r.status)}${n(r, 'attempts') > 0 ? ` (up to ${n(r, 'attempts')} failed attempts)` : ''}${r.reason ? `; ${r.reason}` : ''}${r.last_error ? ` (last error: ${String(r.last_error).slice(0, 160)})` : ''}${r.hold_until ? ` (held until ${r.hold_until})` : ''}`,
  );
}

async function unpaidByChannel(pool: pg.Pool): Promise<string[]> {
  return (await all(pool, UNPAID_BY_CHANNEL_SQL)).map((r) => {
    const threshold =
      r.threshold_cents === null
        ? 'no threshold'
        : `its threshold ${usdt(BigInt(s(r, 'threshold_cents')) * USDT_UNITS_PER_CENT)}`;
    const state = `channel ${r.channel_id} holds ${usdt(s(r, 'balance'))}, ${threshold}; ${n(r, 'unconverted')} of its payments pending or converting, ${n(r, 'open_payouts')} open payouts`;
    return n(r, 'waits') === 1
      ? `  ${n(r, 'n')} converted payments wait on their channel's balance below its threshold, as the threshold strategy does (${state})`
      : `  ${n(r, 'n')} converted payments are in no payout yet (${state})`;
  });
}

async function openTransfers(pool: pg.Pool): Promise<string[]> {
  const transfers = await all(
    pool,
    `select status, count(*)::int as n, max(last_error) as last_error from chain_transfers where status <> 'confirmed' group by 1`,
  );
  return transfers.map(
    (r) =>
      `  ${n(r, 'n')} on-chain transfers ${r.status}: ${why('transfer', r.status)}${r.last_error ? ` (last error: ${String(r.last_error).slice(0, 160)})` : ''}`,
  );
}

async function failedJobs(pool: pg.Pool): Promise<string[]> {
  return (await jobErrorsByTask(pool)).map(
    (r) =>
      `  queue: ${r.jobs} ${r.task} jobs failed before (up to ${r.mostAttempts} attempts, next run ${r.nextRun}): ${String(r.lastError).split('\n')[0]?.slice(0, 160)}`,
  );
}
