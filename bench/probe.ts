/**
 * The intake benchmark's in-process probe (`npm run bench:intake -- --probe N`): N calls of payrail's recordIpn, one
 * at a time on one dedicated connection, in the bench process, before the server starts. No HTTP, no client, no
 * concurrency, no worker: what is left is the database's cost of one payment (its round trips, the statements, the
 * commit's WAL flush). It reports the time per call, per statement (Kysely's query log), and the buffer pages the
 * payment touched per table and index (pg_statio_*), which is what grows if a lookup or an index does not stay
 * flat as the history grows; and, apart, the CPU the webhook spends on a body before intake (readIpn and its parts).
 * Nothing here is part of payrail.
 */
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { Database, DatabaseHandle } from '../src/db/index.ts';
import { parse } from 'lossless-json';
import { canonicalIpnJson, readIpn, signIpn, type Ipn } from '../src/integrations/nowpayments/index.ts';
import type { Logger } from '../src/log.ts';
import type { Percent } from '../src/money/index.ts';
import { createIntakeBatcher, recordIpn } from '../src/pipeline/index.ts';
import { INTAKE_GROUPS_IN_FLIGHT } from '../src/pipeline/payment/intake-batch.ts';
import { fmt, IpnFactory, percentile, sleep, ticksToCores, type BenchIpn, type ChannelSpread } from './shared.ts';

export interface ProbeOptions {
  connectionString: string;
  /** The driver's pool: reads the statistics (the probe's own connection only runs recordIpn). */
  database: DatabaseHandle;
  count: number;
  ipnSecret: string;
  channelIds: readonly string[];
  /** As the measured runs spread their payments. */
  spread: ChannelSpread;
  fee: Percent;
  logger: Logger;
  /** The cluster's CPU ticks so far (postgresTicks), when the bench started it: its CPU per payment is reported. */
  postgresTicks?: () => number | undefined;
}

/** The same IPNs as the web process takes them under load: GROUP_TAKERS at once, grouped by a batcher. */
const GROUP_TAKERS = 50;

export interface ProbeResult {
  count: number;
  warmup: number;
  /** ms per recordIpn call, ascending. */
  calls: Float64Array;
  /** Statement -> total ms and count over the measured calls. */
  statements: Map<string, { ms: number; n: number }>;
  /** Buffer pages touched per relation over the measured calls (hit + read), and the reads alone. */
  blocks: Array<{ relation: string; hit: number; read: number }>;
  wallSeconds: number;
  /**
   * The webhook's own work on one body before intake, µs per body (the same bodies, one pass each, timed after a
   * pass unmeasured): the lossless JSON parse alone, the parse and the canonical re-serialization, the HMAC-SHA512
   * of the canonical text, and all of readIpn (parse, canonical text, signature check, zod validation, amounts).
   */
  edge: { parse: number; canonical: number; hmac: number; readIpn: number };
  /** The cluster's CPU seconds per payment, one at a time; undefined without postgresTicks. */
  cpuPerPayment: number | undefined;
  /**
   * Another `count` payments through the web process's batcher (intake-batch.ts), GROUP_TAKERS at once, on a pool
   * as wide as the groups it keeps in flight: payments/s, IPNs per database call, the cluster's CPU per payment.
   */
  grouped: {
    perSecond: number;
    perCall: number;
    cpuPerPayment: number | undefined;
    /** Buffer pages per relation over the grouped payments, most first (as `blocks`). */
    blocks: Array<{ relation: string; hit: number; read: number }>;
  };
}

/** Statement names by how their SQL starts. */
const STATEMENTS: Array<[RegExp, string]> = [
  [/^begin/i, 'begin'],
  [/^commit/i, 'commit'],
  [/^select .* from "channels"/is, 'select channel'],
  [/^insert into "payments"/i, 'insert payment'],
  [/^select payrail_post_journal/i, 'post journal'],
  // The common case's whole transaction, commit included (intake-one-call.ts).
  [/^select .* from payrail_intake_ipn\(/is, 'one call'],
];

const STATIO_SQL = `select relname as relation, coalesce(heap_blks_hit, 0)::text as hit, coalesce(heap_blks_read, 0)::text as read
                    from pg_statio_user_tables
                    union all
                    select indexrelname, coalesce(idx_blks_hit, 0)::text, coalesce(idx_blks_read, 0)::text from pg_statio_user_indexes`;

async function readStatio(database: DatabaseHandle): Promise<Map<string, { hit: number; read: number }>> {
  const { rows } = await database.pool.query<{ relation: string; hit: string; read: string }>(STATIO_SQL);
  return new Map(rows.map((r) => [r.relation, { hit: Number(r.hit), read: Number(r.read) }]));
}

export async function probeIntake(options: ProbeOptions): Promise<ProbeResult> {
  const warmup = Math.min(200, Math.max(10, Math.floor(options.count / 10)));
  const factory = new IpnFactory(`9${Date.now()}`.slice(0, 15), options.ipnSecret, options.channelIds, options.spread);
  // Parsed and verified before the database is timed: the probe times the database work on its own, and the edge's
  // work on the same bodies apart.
  const bodies = Array.from({ length: warmup + 2 * options.count }, () => factory.next());
  const ipns = readBodies(bodies, options.ipnSecret);
  const edge = timeEdge(bodies, options.ipnSecret);

  const log: StatementLog = { statements: new Map(), measuring: false };
  const db = probeConnection(options, log);
  try {
    const settings = { feePercent: options.fee };
    for (const ipn of ipns.slice(0, warmup)) await recordIpn(db, ipn, settings);
    const before = await flushedStatio(db, options.database);
    log.measuring = true;
    const { calls, wallSeconds, cpuPerPayment } = await timeCalls(db, options, ipns.slice(warmup));
    log.measuring = false;
    const after = await flushedStatio(db, options.database);
    const blocks = blocksBetween(before, after);
    const grouped = await probeGrouped(options, ipns.slice(warmup + options.count));
    return {
      count: options.count,
      warmup,
      calls: calls.sort(),
      statements: log.statements,
      blocks,
      wallSeconds,
      edge,
      cpuPerPayment,
      grouped,
    };
  } finally {
    await db.destroy().catch(() => undefined);
  }
}

function readBodies(bodies: readonly BenchIpn[], ipnSecret: string): Ipn[] {
  const ipns: Ipn[] = [];
  for (const body of bodies) {
    const reading = readIpn(body.raw, body.signature, ipnSecret);
    if (!reading.ok) throw new Error(`probe: a bench body was refused: ${reading.error}`);
    ipns.push(reading.ipn);
  }
  return ipns;
}

/** The webhook's work before intake, µs per body, each part timed on a second pass over the bodies. */
function timeEdge(bodies: readonly BenchIpn[], ipnSecret: string): ProbeResult['edge'] {
  const signedTexts = bodies.map((body) => ({ ...body, canonical: canonicalIpnJson(parse(body.raw)) }));
  const perBody = (work: (body: (typeof signedTexts)[number]) => unknown): number => {
    for (const body of signedTexts) work(body);
    const t0 = process.hrtime.bigint();
    for (const body of signedTexts) work(body);
    return Number(process.hrtime.bigint() - t0) / 1e3 / signedTexts.length;
  };
  return {
    parse: perBody((body) => parse(body.raw)),
    canonical: perBody((body) => canonicalIpnJson(parse(body.raw))),
    hmac: perBody((body) => signIpn(body.canonical, ipnSecret)),
    readIpn: perBody((body) => readIpn(body.raw, body.signature, ipnSecret)),
  };
}

/** Time per statement name, added to only while `measuring`. */
interface StatementLog {
  readonly statements: Map<string, { ms: number; n: number }>;
  measuring: boolean;
}

/** The probe's one connection, its statements timed into `log`. */
function probeConnection(options: ProbeOptions, log: StatementLog): Kysely<Database> {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: 1,
    application_name: 'payrail-bench-probe',
    statement_timeout: 30_000,
  });
  return new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    log(event) {
      if (!log.measuring) return;
      const text = event.query.sql.trimStart();
      const name = STATEMENTS.find(([re]) => re.test(text))?.[1] ?? `other: ${text.slice(0, 40)}`;
      const entry = log.statements.get(name) ?? { ms: 0, n: 0 };
      entry.ms += event.queryDurationMillis;
      entry.n++;
      log.statements.set(name, entry);
    },
  });
}

/** The first `options.count` of `ipns` recorded one at a time: ms per call, the wall time, the cluster's CPU. */
async function timeCalls(
  db: Kysely<Database>,
  options: ProbeOptions,
  ipns: readonly Ipn[],
): Promise<{ calls: Float64Array; wallSeconds: number; cpuPerPayment: number | undefined }> {
  const settings = { feePercent: options.fee };
  const calls = new Float64Array(options.count);
  const ticksBefore = options.postgresTicks?.();
  const started = process.hrtime.bigint();
  for (let i = 0; i < options.count; i++) {
    const t0 = process.hrtime.bigint();
    await recordIpn(db, ipns[i] as Ipn, settings);
    calls[i] = Number(process.hrtime.bigint() - t0) / 1e6;
  }
  const wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { calls, wallSeconds, cpuPerPayment: cpuPer(ticksBefore, options.postgresTicks?.(), options.count) };
}

/** The buffer pages per relation once the probe's connection has handed its counters over. */
async function flushedStatio(
  db: Kysely<Database>,
  database: DatabaseHandle,
): Promise<Map<string, { hit: number; read: number }>> {
  // This backend's counters reach the shared statistics when it goes idle after asking for it.
  await sql`select pg_stat_force_next_flush()`.execute(db);
  await sleep(200);
  return readStatio(database);
}

/** The pages each relation touched between the two readings, most first; untouched ones left out. */
function blocksBetween(
  before: Map<string, { hit: number; read: number }>,
  after: Map<string, { hit: number; read: number }>,
): ProbeResult['blocks'] {
  return [...after.entries()]
    .map(([relation, a]) => {
      const b = before.get(relation) ?? { hit: 0, read: 0 };
      return { relation, hit: a.hit - b.hit, read: a.read - b.read };
    })
    .filter((x) => x.hit + x.read > 0)
    .sort((x, y) => y.hit + y.read - (x.hit + x.read));
}

async function probeGrouped(options: ProbeOptions, ipns: readonly Ipn[]): Promise<ProbeResult['grouped']> {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: INTAKE_GROUPS_IN_FLIGHT,
    application_name: 'payrail-bench-probe',
    statement_timeout: 30_000,
  });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  let calls = 0;
  const batcher = createIntakeBatcher(db, { logger: options.logger, onGroup: () => calls++ });
  const settings = { feePercent: options.fee };
  const statioBefore = await readStatio(options.database);
  let measured: Omit<ProbeResult['grouped'], 'blocks'>;
  try {
    let next = 0;
    const ticksBefore = options.postgresTicks?.();
    const started = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: GROUP_TAKERS }, async () => {
        while (next < ipns.length) await recordIpn(db, ipns[next++] as Ipn, settings, undefined, batcher);
      }),
    );
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    measured = {
      perSecond: ipns.length / seconds,
      perCall: ipns.length / Math.max(1, calls),
      cpuPerPayment: cpuPer(ticksBefore, options.postgresTicks?.(), ipns.length),
    };
  } finally {
    await db.destroy().catch(() => undefined);
  }
  // The group connections' backends hand their counters over as they exit.
  await sleep(300);
  return { ...measured, blocks: blocksBetween(statioBefore, await readStatio(options.database)) };
}

function cpuPer(before: number | undefined, after: number | undefined, payments: number): number | undefined {
  const cores = ticksToCores(before, after, 1);
  return cores === undefined ? undefined : cores / payments;
}

function cpuMs(seconds: number | undefined): string {
  return seconds === undefined ? '- (not our cluster)' : `${fmt(seconds * 1000, 3)} ms`;
}

/** The report's lines for a probe. */
export function probeLines(probe: ProbeResult): string[] {
  const n = probe.count;
  const mean = probe.calls.reduce((a, b) => a + b, 0) / n;
  const statements = [...probe.statements.entries()].map(([name, s]) => `${name} ${fmt(s.ms / n, 3)}`).join(', ');
  const total = probe.blocks.reduce((sum, b) => sum + b.hit + b.read, 0);
  const reads = probe.blocks.reduce((sum, b) => sum + b.read, 0);
  const top = probe.blocks
    .slice(0, 8)
    .map((b) => `${b.relation} ${fmt((b.hit + b.read) / n, 2)}`)
    .join(', ');
  const groupedTotal = probe.grouped.blocks.reduce((sum, b) => sum + b.hit + b.read, 0);
  const groupedTop = probe.grouped.blocks
    .slice(0, 8)
    .map((b) => `${b.relation} ${fmt((b.hit + b.read) / n, 2)}`)
    .join(', ');
  return [
    `probe:    ${n} recordIpn calls in the bench process, one at a time on one connection, before the server starts (after ${probe.warmup} unmeasured)`,
    `          per payment: mean ${fmt(mean, 3)} ms, p50 ${fmt(percentile(probe.calls, 50), 3)} ms, p99 ${fmt(percentile(probe.calls, 99), 3)} ms (${fmt(n / probe.wallSeconds, 0)} payments/s on one connection)`,
    `          per statement, mean ms per payment: ${statements}`,
    `          buffer pages touched per payment: ${fmt(total / n, 1)} (${fmt(reads / n, 2)} read from outside shared_buffers); by relation: ${top}`,
    `          PostgreSQL's CPU per payment: ${cpuMs(probe.cpuPerPayment)} one at a time; grouped (${GROUP_TAKERS} at once through the web process's batcher, ${INTAKE_GROUPS_IN_FLIGHT} calls in flight): ${cpuMs(probe.grouped.cpuPerPayment)}, ${fmt(probe.grouped.perSecond, 0)} payments/s, ${fmt(probe.grouped.perCall, 1)} IPNs per call`,
    `          buffer pages touched per payment, grouped: ${fmt(groupedTotal / n, 1)}; by relation: ${groupedTop}`,
    `          the webhook's work before intake, µs per body: readIpn ${fmt(probe.edge.readIpn, 1)} (of it lossless parse ${fmt(probe.edge.parse, 1)}, parse + canonical text ${fmt(probe.edge.canonical, 1)}, HMAC-SHA512 ${fmt(probe.edge.hmac, 1)}; the rest zod and amounts)`,
  ];
}
