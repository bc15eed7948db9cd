/**
 * A stored history for the intake benchmark (`npm run bench:intake -- --history N`): N payments as payrail would hold
 * them after months of traffic, written with set-based SQL (generate_series, window functions) inside PostgreSQL in
 * one transaction, not through N webhooks. Nothing here is part of payrail.
 *
 * What is written, all consistent with what the pipeline itself writes:
 *   - `channels` channels (ids benchChannelId(0..channels-1): the bench's own `benchChannels` (its --channels) come
 *     first and keep the bench's configuration, so measured payments land on channels that have a history); 1 in 10
 *     of the others pays out instantly, the rest by threshold (25..1,000 USD), half of each paid directly and half
 *     through an exchange;
 *   - N payments (ids 5,000,000,001..), round-robin over the channels, spread over HISTORY_DAYS, every one credited
 *     (`finished`), with its signed-IPN text, fee split and `payment_received` journal on the sharded
 *     world:nowpayments#NN and platform:fees#NN accounts and on channel:<id>;
 *   - threshold payments converted in batches of CONVERSION_BATCH (conversions, conversion_payments, one ETH transfer
 *     each, one `conversion_settled` journal each with its USDT shared by largest remainder); about 1 conversion in
 *     1,000 ended in review (its payments `failed`, their ETH still on the channels); the newest PENDING_PAYMENTS
 *     threshold payments are still `pending`;
 *   - threshold payouts: each channel's converted payments grouped, conversion by conversion, by where their running
 *     USDT total crosses a multiple of the channel's threshold (close to, not exactly, what the threshold check does),
 *     one completed payout per group (payout_reserved + payout_completed journals, one transfer); a last group below
 *     the threshold stays available, its payments unlinked, as the threshold check would leave it;
 *   - instant payments each paid out (completed instant payout, its journals and transfer);
 *   - every confirmed transfer's `network_fee` journal. The history's transfers come from another address than the
 *     run's host wallet (HISTORY_HOST): the bench's chain starts empty, and the run's wallet must start at nonce 0;
 *   - ledger balances set to the sums of their entries; accounts without entries removed; the channels' per-day sums
 *     that statements read (migration 027) built from the entries.
 *
 * Foreign-key triggers are off during the load (session_replication_role = replica, so a superuser connection is
 * needed) and secondary indexes are dropped and built again after it (from their own definitions, whatever the
 * migrations made them); the load checks every foreign key itself with anti-joins before it commits. Then VACUUM
 * (ANALYZE), a CHECKPOINT and a `sync`, so neither autovacuum, nor a checkpoint, nor the OS writing the load back
 * runs during the measured runs.
 */
import { execFileSync } from 'node:child_process';
import pg from 'pg';

/** Threshold payments converted per conversion (the pipeline benchmark averages ≈ 190). */
const CONVERSION_BATCH = 200;
/** The newest threshold payments, not converted yet. */
const PENDING_PAYMENTS = 100;
/** One conversion in this many ended in review. */
const REVIEW_EVERY = 997;
const HISTORY_DAYS = 180;
/** Payment ids of the history: NOWPayments-sized (10 digits), far below the bench's own (time-based, 20 digits). */
const PAYMENT_ID_BASE = 5_000_000_000;
/** The host wallet the history's transfers were sent from (not the run's wallet: its nonces stay its own). */
const HISTORY_HOST = '0x00000000000000000000000000000000000a11ce';

/** The tables the load writes. */
const LOADED_TABLES = [
  'channels',
  'payments',
  'conversions',
  'conversion_payments',
  'payouts',
  'chain_transfers',
  'wallet_nonces',
  'ledger_accounts',
  'ledger_journals',
  'ledger_entries',
];

export interface HistoryOptions {
  payments: number;
  channels: number;
  /** The first `benchChannels` channels get `benchChannel` (the bench's PUT body); the others a mix. */
  benchChannels: number;
  benchChannel: { thresholdCents: number; payoutCurrency: string; payoutNetwork: string; walletAddress: string };
  /** Channel ids: firstChannelId, firstChannelId - 1, ... */
  firstChannelId: bigint;
  /** Platform fee, as payrail's PLATFORM_FEE_PERCENT is parsed: numerator / denominator percent. */
  fee: { numerator: bigint; denominator: bigint; text: string };
  progress: (line: string) => void;
  /** Checked between steps: true stops the load (rolled back). */
  interrupted?: () => boolean;
}

export interface HistorySummary {
  seconds: number;
  loadSeconds: number;
  vacuumSeconds: number;
  counts: Record<string, number>;
  /** pg_database_size after the load, bytes. */
  databaseBytes: number;
}

export class HistoryInterrupted extends Error {
  override name = 'HistoryInterrupted';
}

/** Fills an empty, migrated payrail database with `payments` stored payments. */
export async function seedHistory(connectionString: string, options: HistoryOptions): Promise<HistorySummary> {
  const { payments: N, channels: C, benchChannels } = options;
  for (const [name, value] of Object.entries({ payments: N, channels: C, benchChannels })) {
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`history: ${name} must be a whole number`);
  }
  if (C < benchChannels || C < 1) throw new Error(`history: needs at least ${Math.max(1, benchChannels)} channels`);
  const client = new pg.Client({ connectionString, application_name: 'payrail-bench-history' });
  await client.connect();
  const started = Date.now();
  const counts: Record<string, number> = {};
  try {
    await client.query('set statement_timeout = 0');
    await checkEmpty(client);
    await beginLoad(client);
    const step = stepper(client, options);
    const secondary = await dropSecondaryIndexes(client, options);
    await writeHistory({ client, options, counts, step });
    await buildSecondaryIndexes(client, options, secondary);
    await checkForeignKeys(client, options);
    if (options.interrupted?.()) throw new HistoryInterrupted('history load interrupted');
    await client.query('commit');
    const loadSeconds = (Date.now() - started) / 1000;

    const vacuumSeconds = await vacuumAndSync(client, options);
    const databaseBytes = await countTotals(client, counts);
    return {
      seconds: (Date.now() - started) / 1000,
      loadSeconds,
      vacuumSeconds,
      counts,
      databaseBytes,
    };
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    throw error;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Every table of the history, in the order of the pipeline: each stage reads the staging tables (h_*) of the ones
 * before it.
 */
async function writeHistory(load: Load): Promise<void> {
  await seedChannels(load);
  await stagePayments(load);
  await stageConversions(load);
  await stagePayouts(load);
  await seedTransfers(load);
  await seedConversions(load);
  await seedPayouts(load);
  await stagePaymentLinks(load);
  await seedPayments(load);
  await seedPaymentJournals(load);
  await stageOtherEntries(load);
  await seedOtherJournals(load);
  await settleLedger(load);
}

/** What every part of the load shares: the connection inside the load's transaction, the options, the counts kept. */
interface Load {
  client: pg.Client;
  options: HistoryOptions;
  /** Rows written, by table, for the summary. */
  counts: Record<string, number>;
  /** Runs one statement of the load, unless interrupted, and reports its rows and time. */
  step: (label: string, text: string, params?: unknown[]) => Promise<number>;
}

interface SecondaryIndex {
  name: string;
  def: string;
}

/** The load gives ids instead of drawing them (a payment's journal is its number), so it starts from nothing. */
async function checkEmpty(client: pg.Client): Promise<void> {
  const busy = await client.query<{ payments: string; journals: string }>(
    'select (select count(*) from payments)::text as payments, (select count(*) from ledger_journals)::text as journals',
  );
  if (busy.rows[0]?.payments !== '0' || busy.rows[0]?.journals !== '0') {
    throw new Error(
      `--history needs an empty database (it holds ${busy.rows[0]?.payments} payments, ${busy.rows[0]?.journals} journals)`,
    );
  }
}

/** Opens the load's one transaction, with foreign-key triggers off and room to sort in memory. */
async function beginLoad(client: pg.Client): Promise<void> {
  await client.query('begin');
  try {
    await client.query('set local session_replication_role = replica');
  } catch (error) {
    throw new Error(
      `--history loads with foreign-key triggers off and needs a superuser connection: ${(error as Error).message}`,
      { cause: error },
    );
  }
  await client.query(`set local synchronous_commit = off`);
  await client.query(`set local work_mem = '256MB'`);
  await client.query(`set local maintenance_work_mem = '512MB'`);
}

/** The load's `step`. */
function stepper(client: pg.Client, options: HistoryOptions): Load['step'] {
  return async (label: string, text: string, params: unknown[] = []): Promise<number> => {
    if (options.interrupted?.()) throw new HistoryInterrupted('history load interrupted');
    const t0 = Date.now();
    const result = await client.query(text, params);
    options.progress(`history: ${label}: ${result.rowCount ?? 0} rows, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return result.rowCount ?? 0;
  };
}

/**
 * A staging table's key (and the lookup indexes given) and statistics, before the next step joins it: the planner
 * knows nothing of a temp table until it is analyzed.
 */
async function keyStaged(client: pg.Client, table: string, primaryKey: string, ...indexes: string[]): Promise<void> {
  await client.query(`alter table ${table} add primary key (${primaryKey})`);
  for (const columns of indexes) await client.query(`create index on ${table} (${columns})`);
  await client.query(`analyze ${table}`);
}

async function dropSecondaryIndexes(client: pg.Client, options: HistoryOptions): Promise<SecondaryIndex[]> {
  // Secondary indexes (those not backing a constraint) are dropped for the load and built again after it from
  // their own definitions: one sort each instead of a million random insertions into them.
  const { rows: secondary } = await client.query<{ name: string; def: string }>(
    `select i.indexrelid::regclass::text as name, pg_get_indexdef(i.indexrelid) as def
       from pg_index i join pg_class t on t.oid = i.indrelid
       where t.relnamespace = current_schema()::regnamespace and t.relname = any($1)
         and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid)
       order by 1`,
    [LOADED_TABLES],
  );
  for (const index of secondary) await client.query(`drop index ${index.name}`);
  options.progress(
    `history: ${secondary.length} secondary indexes dropped for the load (${secondary.map((i) => i.name).join(', ')})`,
  );
  return secondary;
}

/** The channels, the bench's own first with its configuration. */
async function seedChannels(load: Load): Promise<void> {
  const { client, options, counts, step } = load;
  const { channels: C, benchChannels } = options;
  const bench = options.benchChannel;
  await client.query(
    `create temp table h_bench on commit drop as
      select $1::numeric as threshold_cents, $2::text as payout_currency, $3::text as payout_network, $4::text as wallet`,
    [bench.thresholdCents, bench.payoutCurrency, bench.payoutNetwork, bench.walletAddress],
  );

  // -- channels
  await step(
    'channels (staging)',
    `create temp table h_chan on commit drop as
       select c as cidx, (${options.firstChannelId}::numeric - c)::text as channel_id, x.strategy, x.threshold_cents, x.payout_currency, x.payout_network,
              case when x.payout_network = 'trx' then 'TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7'
                   when c < ${benchChannels} then b.wallet else '0x' || substr(md5('wallet:' || c) || md5('wallet2:' || c), 1, 40) end as wallet,
              -- paid straight from the host wallet when the owner takes the held asset on Ethereum, else through an exchange
              x.payout_network = 'eth' and x.payout_currency = case x.strategy when 'threshold' then 'usdt' else 'eth' end as direct,
              case x.strategy when 'threshold' then 'usdt' else 'eth' end as payout_asset
       from generate_series(0, ${C - 1}) c cross join h_bench b
       cross join lateral (select
         case when c < ${benchChannels} then 'threshold' when c % 10 = 9 then 'instant' else 'threshold' end as strategy,
         case when c < ${benchChannels} then b.threshold_cents when c % 10 = 9 then null
              else (array[2500, 5000, 10000, 25000, 50000, 100000])[1 + c % 6]::numeric end as threshold_cents,
         case when c < ${benchChannels} then b.payout_currency when c % 10 = 9 then (array['eth', 'usdt'])[1 + (c / 10) % 2]
              else 'usdt' end as payout_currency,
         case when c < ${benchChannels} then b.payout_network when c % 10 = 9 then (array['eth', 'trx'])[1 + (c / 10) % 2]
              else (array['trx', 'eth', 'eth'])[1 + c % 3] end as payout_network) x`,
  );
  await keyStaged(client, 'h_chan', 'cidx');
  counts.channels = await step(
    'channels',
    `insert into channels (channel_id, payout_strategy, threshold_usd_cents, payout_currency, payout_network, wallet_address, created_at, updated_at)
       select channel_id, strategy, threshold_cents, payout_currency, payout_network, wallet,
              now() - interval '${HISTORY_DAYS + 1} days', now() - interval '${HISTORY_DAYS + 1} days'
       from h_chan order by cidx on conflict (channel_id) do nothing`,
  );
}

async function stagePayments(load: Load): Promise<void> {
  const { client, options, step } = load;
  const { payments: N, channels: C } = options;
  // -- payments (staging): amounts, times, and their place in the conversion batches
  await step(
    'payments (staging)',
    `create temp table h_pay on commit drop as
       with base as (
         select i, (i - 1) % ${C} as cidx, abs(hashint8(i::bigint)::bigint) as h,
                now() - interval '10 seconds' - (${HISTORY_DAYS * 86400}::float8 * (${N} - i) / greatest(${N}, 1)) * interval '1 second' as credited_at
         from generate_series(1, ${N}) i),
       amounts as (
         select b.*, ch.channel_id, ch.strategy, (array[5, 10, 15, 25, 50])[1 + (b.h / 7) % 5]::numeric as price
         from base b join h_chan ch using (cidx)),
       units as (
         select a.*, trim_scale(round(a.price / 3030, 5)) as pay_amount, trim_scale(round(a.price / 3030, 5) - 0.00008) as outcome,
                ((round(a.price / 3030, 5) - 0.00008) * 1000000000000000000)::numeric(78, 0) as gross
         from amounts a),
       ranked as (
         select u.*, div(u.gross * ${options.fee.numerator}, ${options.fee.denominator * 100n}) as fee,
                case when u.strategy = 'threshold' then row_number() over (partition by u.strategy = 'threshold' order by u.i) end as r,
                count(*) filter (where u.strategy = 'threshold') over () as threshold_total
         from units u)
       select i, (${PAYMENT_ID_BASE}::numeric + i)::numeric(20, 0) as payment_id, (4000000000::numeric + i)::numeric(20, 0) as invoice_id,
              cidx, channel_id, strategy, (1000000000 + h % 50000000)::text as user_id, price, pay_amount, outcome, gross, fee, gross - fee as net,
              credited_at, credited_at - interval '8 minutes' as created_at, 3 + (h % 3)::int as ipn_count, h,
              case when r is null or r > threshold_total - ${PENDING_PAYMENTS} then null else (r - 1) / ${CONVERSION_BATCH} end as k,
              case when r is null then null when r > threshold_total - ${PENDING_PAYMENTS} then 'pending'
                   when ((r - 1) / ${CONVERSION_BATCH}) % ${REVIEW_EVERY} = ${Math.floor(REVIEW_EVERY / 2)} then 'failed' else 'completed' end as conv_state
       from ranked`,
  );
  await keyStaged(client, 'h_pay', 'payment_id');
}

async function stageConversions(load: Load): Promise<void> {
  const { client, step } = load;
  // -- conversions: one exchange and one ETH transfer each; USDT at a rate that moves over time
  await step(
    'conversions (staging)',
    `create temp table h_conv on commit drop as
       select k, 'conv_' || substr(md5('conv:' || k), 1, 16) as conversion_id, count(*)::int as payment_count, sum(net) as amount_wei,
              bool_or(conv_state = 'failed') as failed, max(credited_at) + interval '20 seconds' as created_at,
              max(credited_at) + interval '50 seconds' as completed_at,
              case when bool_or(conv_state = 'failed') then null
                   else div(sum(net) * (260000 + abs(hashint4(k::int)::bigint) % 80000) * 10000, 1000000000000000000) - 1000000 end as usdt
       from h_pay where k is not null group by k`,
  );
  await keyStaged(client, 'h_conv', 'k');
  // Largest remainder: each payment's floor share, plus one unit for the largest remainders until the sum is exact.
  await step(
    'USDT shares (staging)',
    `create temp table h_share on commit drop as
       select payment_id, k, cidx, net, floor_share + case when rank <= left_over then 1 else 0 end as share
       from (select p.payment_id, p.k, p.cidx, p.net, div(c.usdt * p.net, c.amount_wei) as floor_share,
                    row_number() over (partition by p.k order by mod(c.usdt * p.net, c.amount_wei) desc, p.payment_id) as rank,
                    c.usdt - sum(div(c.usdt * p.net, c.amount_wei)) over (partition by p.k) as left_over
             from h_pay p join h_conv c using (k) where not c.failed) s`,
  );
  await keyStaged(client, 'h_share', 'payment_id');
}

async function stagePayouts(load: Load): Promise<void> {
  const { client, step } = load;
  // -- threshold payouts: per channel, converted chunks (channel x conversion) grouped until they reach the threshold
  await step(
    'threshold payouts (staging)',
    `create temp table h_chunk on commit drop as
       select s.cidx, s.k, sum(s.share) as usdt, c.completed_at,
              floor(coalesce(sum(sum(s.share)) over (partition by s.cidx order by s.k rows between unbounded preceding and 1 preceding), 0)
                    / (ch.threshold_cents * 10000)) as g
       from h_share s join h_conv c using (k) join h_chan ch using (cidx)
       group by s.cidx, s.k, c.completed_at, ch.threshold_cents`,
  );
  await keyStaged(client, 'h_chunk', 'cidx, k');
  await step(
    'payouts (staging)',
    `create temp table h_payout on commit drop as
       select 'po_' || substr(md5('pt:' || cidx || ':' || g), 1, 16) as payout_id, 'threshold' as kind, cidx, g, null::numeric as payment_id,
              amount, created_at, created_at + interval '2 minutes' as completed_at
       from (select cidx, g, sum(usdt) as amount, max(completed_at) + interval '1 second' as created_at,
                    g = max(g) over (partition by cidx) and sum(usdt) < min(ch.threshold_cents) * 10000 as open
             from h_chunk join h_chan ch using (cidx) group by cidx, g) t
       where not open and amount > 0
       union all
       select 'po_' || substr(md5('pi:' || payment_id), 1, 16), 'instant', cidx, null, payment_id, net,
              credited_at + interval '5 seconds', credited_at + interval '45 seconds'
       from h_pay where strategy = 'instant' and net > 0`,
  );
  await keyStaged(client, 'h_payout', 'payout_id', 'cidx, g');
}

async function seedTransfers(load: Load): Promise<void> {
  const { client, counts, step } = load;
  // -- transfers from the (historical) host wallet: one per conversion, one per payout; all confirmed
  await step(
    'transfers (staging)',
    `create temp table h_tr on commit drop as
       select 'tr_' || substr(md5('tr:' || purpose || ':' || ref), 1, 16) as transfer_id, purpose, ref, asset, to_address, amount, at,
              (row_number() over (order by at, purpose, ref) - 1) as nonce,
              (case asset when 'eth' then 21000 else 65000 end)::numeric * (5 + abs(hashint4(hashtext(ref))::bigint) % 40) * 1000000000 as gas
       from (select 'conversion' as purpose, conversion_id as ref, 'eth' as asset, '0x' || substr(md5('payin:' || conversion_id) || md5('payin2:' || conversion_id), 1, 40) as to_address,
                    amount_wei as amount, created_at + interval '2 seconds' as at from h_conv
             union all
             select 'payout', o.payout_id, ch.payout_asset,
                    case when ch.direct then ch.wallet else '0x' || substr(md5('payin:' || o.payout_id) || md5('payin2:' || o.payout_id), 1, 40) end, o.amount, o.created_at + interval '2 seconds'
             from h_payout o join h_chan ch using (cidx)) t`,
  );
  await keyStaged(client, 'h_tr', 'transfer_id');

  counts.chain_transfers = await step(
    'chain_transfers',
    `insert into chain_transfers (transfer_id, purpose, ref, asset, from_address, to_address, amount, status, nonce, tx_hash, raw_tx, block_number,
                                    gas_cost_wei, attempts, created_at, updated_at, broadcast_at)
       select transfer_id, purpose, ref, asset, '${HISTORY_HOST}', to_address, amount, 'confirmed', nonce,
              '0x' || md5('tx:' || transfer_id) || md5('tx2:' || transfer_id),
              '0x02f8b1' || md5('raw1:' || transfer_id) || md5('raw2:' || transfer_id) || md5('raw3:' || transfer_id) || md5('raw4:' || transfer_id) || md5('raw5:' || transfer_id),
              19000000 + nonce * 2, gas, 1, at, at + interval '15 seconds', at + interval '1 second'
       from h_tr order by at, transfer_id`,
  );
  await step(
    'wallet_nonces',
    `insert into wallet_nonces (address, next_nonce, updated_at) select '${HISTORY_HOST}', count(*), max(at) from h_tr having count(*) > 0`,
  );
}

/** Conversions, each with its ETH transfer; those in review with their reason. */
async function seedConversions(load: Load): Promise<void> {
  const { counts, step } = load;
  counts.conversions = await step(
    'conversions',
    `insert into conversions (conversion_id, status, from_asset, to_asset, amount_wei, payment_count, exchange_id, payin_address, expected_usdt, transfer_id,
                                usdt_received, rate, reason, poll_deadline_at, payout_hash, created_at, updated_at, completed_at)
       select c.conversion_id, case when c.failed then 'needs_review' else 'completed' end, 'eth', 'usdt', c.amount_wei, c.payment_count,
              substr(md5('ex:' || c.conversion_id), 1, 14), t.to_address, c.usdt, t.transfer_id,
              c.usdt, (div(c.usdt * 1000000000000000000000000, c.amount_wei) / 1000000000000)::numeric(40, 12),
              case when c.failed then 'exchange failed; the ETH sent has not come back' end, c.created_at + interval '30 minutes',
              case when not c.failed then '0x' || md5('cp:' || c.conversion_id) || md5('cp2:' || c.conversion_id) end,
              c.created_at, c.completed_at, case when not c.failed then c.completed_at end
       from h_conv c join h_tr t on t.purpose = 'conversion' and t.ref = c.conversion_id order by c.k`,
  );
}

/** Completed payouts, each with its transfer; through an exchange unless the owner takes the held asset. */
async function seedPayouts(load: Load): Promise<void> {
  const { counts, step } = load;
  counts.payouts = await step(
    'payouts',
    `insert into payouts (payout_id, kind, channel_id, payment_id, status, asset, amount, payout_currency, payout_network, wallet_address,
                            exchange_id, payin_address, expected_amount_out, amount_out, payout_hash, transfer_id, attempts, created_at, updated_at, completed_at)
       select o.payout_id, o.kind, ch.channel_id, o.payment_id, 'completed', ch.payout_asset, o.amount, ch.payout_currency, ch.payout_network, ch.wallet,
              case when not ch.direct then substr(md5('ex:' || o.payout_id), 1, 14) end,
              case when not ch.direct then t.to_address end,
              case when not ch.direct then out.amount_out end,
              out.amount_out,
              case when ch.direct then '0x' || md5('tx:' || t.transfer_id) || md5('tx2:' || t.transfer_id) else md5('tron:' || o.payout_id) || md5('tron2:' || o.payout_id) end,
              t.transfer_id, 1, o.created_at, o.completed_at, o.completed_at
       from h_payout o join h_chan ch using (cidx) join h_tr t on t.purpose = 'payout' and t.ref = o.payout_id
       cross join lateral (select case
           when ch.direct then trim_scale(o.amount / case ch.payout_asset when 'eth' then 1000000000000000000 else 1000000 end)::text
           when ch.payout_asset = 'usdt' then trim_scale(round((o.amount - 1000000) / 1000000.0, 6))::text
           else trim_scale(round(o.amount * 3000 / 1000000000000000000.0 - 1, 6))::text end as amount_out) out
       order by o.created_at`,
  );
}

async function stagePaymentLinks(load: Load): Promise<void> {
  const { client, step } = load;
  // What each payment got from the later stages, narrow, so the wide insert below reads h_pay in order and joins once.
  await step(
    'payment links (staging)',
    `create temp table h_link on commit drop as
       select p.payment_id, c.conversion_id, c.created_at as conversion_created_at, s.share,
              case when s.share is not null then (div(c.usdt * 1000000000000000000000000, c.amount_wei) / 1000000000000)::numeric(40, 12) end as rate,
              coalesce(pi.payout_id, pt.payout_id) as payout_id,
              greatest(p.credited_at, c.completed_at, coalesce(pi.created_at, pt.created_at)) as updated_at
       from h_pay p
       left join h_conv c on c.k = p.k
       left join h_share s on s.payment_id = p.payment_id
       left join h_chunk hc on hc.cidx = p.cidx and hc.k = p.k
       left join h_payout pi on pi.kind = 'instant' and pi.payment_id = p.payment_id
       left join h_payout pt on pt.kind = 'threshold' and pt.cidx = hc.cidx and pt.g = hc.g`,
  );
  await keyStaged(client, 'h_link', 'payment_id');
}

/** The payments with their signed-IPN text and links, then which conversion took each. */
async function seedPayments(load: Load): Promise<void> {
  const { options, counts, step } = load;
  counts.payments = await step(
    'payments',
    `insert into payments (payment_id, invoice_id, order_id, user_id, channel_id, status, pay_currency, pay_amount, actually_paid, price_amount, price_currency,
                             outcome_amount, outcome_currency, asset, gross_amount, fee_amount, net_amount, fee_percent, payout_strategy, credited_at,
                             conversion_status, conversion_attempts, conversion_last_attempt_at, usdt_amount, conversion_rate, review_reason, ipn_count,
                             last_ipn, created_at, updated_at, conversion_id, payout_id)
       select p.payment_id, p.invoice_id, o.order_id, p.user_id, p.channel_id, 'finished', 'eth', p.pay_amount, p.pay_amount, p.price, 'usd',
              p.outcome, 'eth', 'eth', p.gross, p.fee, p.net, ${pgLiteral(options.fee.text)}, p.strategy, p.credited_at,
              p.conv_state, case when p.k is null then 0 else 1 end, l.conversion_created_at, l.share, l.rate, null, p.ipn_count,
              format('{"payment_id":%s,"invoice_id":%s,"payment_status":"finished","pay_address":"0x%s","price_amount":%s,"price_currency":"usd","pay_amount":%s,"actually_paid":%s,"actually_paid_at_fiat":%s,"pay_currency":"eth","order_id":"%s","order_description":"Premium tier, 30 days","purchase_id":"%s","created_at":"%s","updated_at":"%s","outcome_amount":%s,"outcome_currency":"eth","payin_hash":"0x%s","payout_hash":"0x%s","fee":{"currency":"eth","depositFee":0.00002,"withdrawalFee":0.00006,"serviceFee":0}}',
                     p.payment_id, p.invoice_id, substr(md5('pay:' || p.i) || md5('pay2:' || p.i), 1, 40), p.price, trim_scale(p.pay_amount), trim_scale(p.pay_amount), round(p.price * 0.9987, 2), o.order_id,
                     5800000000 + p.i, to_char(p.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                     to_char(p.credited_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), trim_scale(p.outcome),
                     md5('in:' || p.i) || md5('in2:' || p.i), md5('out:' || p.i) || md5('out2:' || p.i)),
              p.created_at, l.updated_at, l.conversion_id, l.payout_id
       from h_pay p join h_link l using (payment_id)
       cross join lateral (select 'PGP-' || p.user_id || '|' || p.channel_id as order_id) o
       order by p.payment_id`,
  );
  counts.conversion_payments = await step(
    'conversion_payments',
    `insert into conversion_payments (conversion_id, payment_id, channel_id, net_wei, usdt_share)
       select c.conversion_id, p.payment_id, p.channel_id, p.net, s.share
       from h_pay p join h_conv c using (k) left join h_share s on s.payment_id = p.payment_id order by c.k, p.payment_id`,
  );
}

async function seedPaymentJournals(load: Load): Promise<void> {
  const { counts, step } = load;
  // -- the ledger: accounts, then journals with their entries, then balances from the entries
  await step(
    'ledger_accounts',
    `insert into ledger_accounts (code, asset, allow_negative)
       select 'world:nowpayments#' || lpad(s::text, 2, '0'), 'eth', true from generate_series(0, 15) s
       union all select 'platform:fees#' || lpad(s::text, 2, '0'), 'eth', false from generate_series(0, 15) s
       union all select 'channel:' || channel_id, 'eth', false from h_chan
       union all select 'channel:' || channel_id, 'usdt', false from h_chan where strategy = 'threshold'
       union all select 'channel:' || channel_id || ':payout', payout_asset, false from h_chan
       union all values ('world:changenow', 'eth', true), ('world:changenow', 'usdt', true), ('world:payees', 'eth', true), ('world:payees', 'usdt', true),
                        ('world:ethereum', 'eth', true), ('platform:network_costs', 'eth', true)
       on conflict (code, asset) do nothing`,
  );
  // Journal ids are given, not drawn (the table is empty): payment i's journal is i, the others follow in time order;
  // entries then need no lookup of their journal. The identity sequence is moved past them afterwards.
  counts.payment_journals = await step(
    'payment_received journals',
    `insert into ledger_journals (id, kind, ref, created_at) overriding system value
       select i, 'payment_received', payment_id::text, credited_at from h_pay order by i`,
  );
  await step(
    'payment_received entries',
    `insert into ledger_entries (journal_id, account_id, amount, created_at)
       select p.i, a.id, e.amount, p.credited_at
       from h_pay p
       cross join lateral (values (1, 'world:nowpayments#' || lpad((p.payment_id % 16)::text, 2, '0'), -p.gross),
                                  (2, 'platform:fees#' || lpad((p.payment_id % 16)::text, 2, '0'), p.fee),
                                  (3, 'channel:' || p.channel_id, p.net)) e(n, code, amount)
       join ledger_accounts a on a.code = e.code and a.asset = 'eth'
       where e.amount <> 0
       order by p.i, e.n`,
  );
}

/** The entries of every other journal: conversions settled, payouts reserved and completed, network fees. */
async function stageOtherEntries(load: Load): Promise<void> {
  const { step } = load;
  await step(
    'other journal entries (staging)',
    `create temp table h_je on commit drop as
       -- conversion_settled: ChangeNow takes the ETH and gives the USDT; per channel, ETH out and USDT in
       select 'conversion_settled' as kind, c.conversion_id as ref, c.completed_at as at, 1 as n, 'world:changenow' as code, 'eth' as asset, c.amount_wei as amount
       from h_conv c where not c.failed
       union all
       select 'conversion_settled', c.conversion_id, c.completed_at, 2, 'channel:' || ch.channel_id, 'eth', -x.eth
       from (select k, cidx, sum(net) as eth from h_share group by k, cidx) x join h_conv c using (k) join h_chan ch using (cidx)
       union all
       select 'conversion_settled', c.conversion_id, c.completed_at, 3, 'world:changenow', 'usdt', -c.usdt from h_conv c where not c.failed and c.usdt > 0
       union all
       select 'conversion_settled', c.conversion_id, c.completed_at, 4, 'channel:' || ch.channel_id, 'usdt', hc.usdt
       from h_chunk hc join h_conv c using (k) join h_chan ch using (cidx) where hc.usdt > 0
       union all
       -- payouts: reserved, then completed to ChangeNow (exchange) or to the owner (direct)
       select 'payout_reserved', o.payout_id, o.created_at, 1, 'channel:' || ch.channel_id, ch.payout_asset, -o.amount from h_payout o join h_chan ch using (cidx)
       union all
       select 'payout_reserved', o.payout_id, o.created_at, 2, 'channel:' || ch.channel_id || ':payout', ch.payout_asset, o.amount from h_payout o join h_chan ch using (cidx)
       union all
       select 'payout_completed', o.payout_id, o.completed_at, 1, 'channel:' || ch.channel_id || ':payout', ch.payout_asset, -o.amount from h_payout o join h_chan ch using (cidx)
       union all
       select 'payout_completed', o.payout_id, o.completed_at, 2, case when ch.direct then 'world:payees' else 'world:changenow' end, ch.payout_asset, o.amount
       from h_payout o join h_chan ch using (cidx)
       union all
       -- network fees of the host wallet's transfers
       select 'network_fee', transfer_id, at + interval '15 seconds', 1, 'platform:network_costs', 'eth', -gas from h_tr
       union all
       select 'network_fee', transfer_id, at + interval '15 seconds', 2, 'world:ethereum', 'eth', gas from h_tr`,
  );
}

/** The other journals, numbered after the payments' in time order, and their entries. */
async function seedOtherJournals(load: Load): Promise<void> {
  const { client, counts, step } = load;
  const { payments: N } = load.options;
  await step(
    'other journals (staging)',
    `create temp table h_jn on commit drop as
       select kind, ref, min(at) as at, ${N} + row_number() over (order by min(at), kind, ref) as id from h_je group by kind, ref`,
  );
  await client.query('analyze h_je');
  await client.query('analyze h_jn');
  counts.other_journals = await step(
    'other journals',
    `insert into ledger_journals (id, kind, ref, created_at) overriding system value select id, kind, ref, at from h_jn order by id`,
  );
  await step(
    'other journal entries',
    `insert into ledger_entries (journal_id, account_id, amount, created_at)
       select j.id, a.id, e.amount, e.at
       from h_je e join h_jn j using (kind, ref) join ledger_accounts a on a.code = e.code and a.asset = e.asset
       where e.amount <> 0
       order by j.id, e.n`,
  );
  await client.query(
    `select setval(pg_get_serial_sequence('ledger_journals', 'id'), greatest((select max(id) from ledger_journals), 1))`,
  );
}

/** Balances and per-day sums from the entries; accounts that got none removed. */
async function settleLedger(load: Load): Promise<void> {
  const { client, options, counts, step } = load;
  await step(
    'balances from entries',
    `update ledger_accounts a set balance = s.total, updated_at = s.last
       from (select account_id, sum(amount) as total, max(created_at) as last from ledger_entries group by account_id) s where a.id = s.account_id`,
  );
  await step(
    'accounts without entries',
    `delete from ledger_accounts a where not exists (select 1 from ledger_entries e where e.account_id = a.id)`,
  );
  // Statements' per-day sums (migration 027) are kept by a trigger on the entries, which replica mode does not fire:
  // built from the entries here, as the migration builds them for a history it finds.
  if (options.interrupted?.()) throw new HistoryInterrupted('history load interrupted');
  const d0 = Date.now();
  const { rows: dayRows } = await client.query<{ n: string }>('select payrail_channel_days_from_entries()::text as n');
  counts.ledger_channel_days = Number(dayRows[0]?.n ?? 0);
  options.progress(
    `history: statement day sums: ${counts.ledger_channel_days} rows, ${((Date.now() - d0) / 1000).toFixed(1)} s`,
  );
}

async function buildSecondaryIndexes(
  client: pg.Client,
  options: HistoryOptions,
  secondary: SecondaryIndex[],
): Promise<void> {
  const i0 = Date.now();
  for (const index of secondary) await client.query(index.def);
  options.progress(`history: ${secondary.length} secondary indexes built, ${((Date.now() - i0) / 1000).toFixed(1)} s`);
}

async function checkForeignKeys(client: pg.Client, options: HistoryOptions): Promise<void> {
  // -- the foreign keys the load did not have checked, checked at once
  const t0 = Date.now();
  const orphans = await client.query<{ name: string; n: string }>(
    `select 'payments.conversion_id' as name, count(*)::text as n from payments p where p.conversion_id is not null and not exists (select 1 from conversions c where c.conversion_id = p.conversion_id)
       union all select 'payments.payout_id', count(*)::text from payments p where p.payout_id is not null and not exists (select 1 from payouts o where o.payout_id = p.payout_id)
       union all select 'payouts.payment_id', count(*)::text from payouts o where o.payment_id is not null and not exists (select 1 from payments p where p.payment_id = o.payment_id)
       union all select 'payouts.channel_id', count(*)::text from payouts o where not exists (select 1 from channels c where c.channel_id = o.channel_id)
       union all select 'payouts.transfer_id', count(*)::text from payouts o where o.transfer_id is not null and not exists (select 1 from chain_transfers t where t.transfer_id = o.transfer_id)
       union all select 'conversions.transfer_id', count(*)::text from conversions c where c.transfer_id is not null and not exists (select 1 from chain_transfers t where t.transfer_id = c.transfer_id)
       union all select 'conversion_payments.payment_id', count(*)::text from conversion_payments cp where not exists (select 1 from payments p where p.payment_id = cp.payment_id)
       union all select 'conversion_payments.conversion_id', count(*)::text from conversion_payments cp where not exists (select 1 from conversions c where c.conversion_id = cp.conversion_id)
       union all select 'ledger_entries.journal_id', count(*)::text from ledger_entries e where not exists (select 1 from ledger_journals j where j.id = e.journal_id)
       union all select 'ledger_entries.account_id', count(*)::text from ledger_entries e where not exists (select 1 from ledger_accounts a where a.id = e.account_id)
       union all select 'payments without their journal', count(*)::text from payments p where not exists (select 1 from ledger_journals j where j.kind = 'payment_received' and j.ref = p.payment_id::text)`,
  );
  const broken = orphans.rows.filter((r) => r.n !== '0');
  if (broken.length > 0)
    throw new Error(`history: foreign keys broken: ${broken.map((r) => `${r.name} ${r.n}`).join(', ')}`);
  options.progress(`history: foreign keys checked, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

async function vacuumAndSync(client: pg.Client, options: HistoryOptions): Promise<number> {
  // -- as a database that has run for months: vacuumed (hint bits, visibility map), analyzed, checkpointed
  const v0 = Date.now();
  await client.query(
    'vacuum (analyze) payments, ledger_entries, ledger_journals, ledger_accounts, ledger_channel_days, conversions, conversion_payments, payouts, chain_transfers, channels, wallet_nonces',
  );
  await client
    .query('checkpoint')
    .catch((error: Error) => options.progress(`history: checkpoint refused (${error.message})`));
  // The load leaves gigabytes of dirty pages in the OS cache: written back now, not during the measured runs.
  try {
    execFileSync('sync', { stdio: 'ignore', timeout: 300_000 });
  } catch {
    options.progress('history: sync failed (the OS may still be writing the load back during the first run)');
  }
  const vacuumSeconds = (Date.now() - v0) / 1000;
  options.progress(`history: vacuum (analyze) + checkpoint + sync: ${vacuumSeconds.toFixed(1)} s`);
  return vacuumSeconds;
}

/** The sizes the summary reports, read after the vacuum. */
async function countTotals(client: pg.Client, counts: Record<string, number>): Promise<number> {
  const totals = await client.query<{ entries: string; journals: string; accounts: string; bytes: string }>(
    `select (select count(*) from ledger_entries)::text as entries, (select count(*) from ledger_journals)::text as journals,
              (select count(*) from ledger_accounts)::text as accounts, pg_database_size(current_database())::text as bytes`,
  );
  const row = totals.rows[0];
  counts.ledger_entries = Number(row?.entries ?? 0);
  counts.ledger_journals = Number(row?.journals ?? 0);
  counts.ledger_accounts = Number(row?.accounts ?? 0);
  return Number(row?.bytes ?? 0);
}

function pgLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}
