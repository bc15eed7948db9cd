/**
 * npm run bench:statement [-- --small 100 --channel 100000 --export 1000000 --runs 20 --pace 8]
 *
 * Statements and exports over a stored history (src/statements), through payrail's HTTP API as deployed:
 *   - GET /api/channels/:id/statement for a channel with `--small` payments and for one with `--channel` payments:
 *     the first page with the totals (whole history, and its last 30 days), and the second page, each asked `--runs`
 *     times after one unmeasured run (p50 / p95 / max); then the whole history as CSV, streamed, once;
 *   - GET /api/exports/payments.csv of `--export` payments (and of its last two days first), read at a steady
 *     `--pace` MiB/s, with payrail's resident memory and V8 heap sampled every MEMORY_SAMPLE_MS by payrail itself:
 *     flat memory means the peak over the last 90 % of the rows is that of the first 10 %.
 *
 * The histories are written by bench/history.ts (set-based SQL inside PostgreSQL, not one payment at a time): one
 * database with `--small` payments on one channel, another with `--export` payments over `--export / --channel`
 * channels (so each has `--channel` payments; the first, measured, is a threshold channel with its conversions and
 * payouts). Each database is served by its own payrail, `node bin/payrail.js web` as a child process. Everything
 * runs on an embedded PostgreSQL in a temp dir, on 127.0.0.1, and is removed at the end. Nothing here is part of
 * payrail.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { readOptionValues, UsageError, wholeNumberOption as int } from '../src/cli-options.ts';
import { parsePercent } from '../src/money/index.ts';
import {
  BenchPostgres,
  beginRun,
  Interruption,
  OutputTail,
  payrailChildEnvironment,
  payrailListening,
  readPgSettings,
  reportHeader,
  runBench,
  stopChild,
  type BenchSecrets,
  type PgSettings,
} from './harness.ts';
import { HistoryInterrupted, seedHistory, type HistoryOptions, type HistorySummary } from './history.ts';
import { fmt, percentile, procStatusKib, sleep, table } from './shared.ts';

const PAYRAIL_BIN = fileURLToPath(new URL('../bin/payrail.js', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const READY_TIMEOUT_MS = 60_000;
const MEMORY_SAMPLE_MS = 100;
/**
 * Loaded into the payrail child with --import (a data: URL, nothing written to disk): prints its own resident memory
 * and V8 heap every MEMORY_SAMPLE_MS on stderr, where the bench reads them. The heap is only visible from inside.
 */
const MEMORY_PROBE = `data:text/javascript,setInterval(()=>{const m=process.memoryUsage();process.stderr.write('bench-memory '+Date.now()+' '+m.rss+' '+m.heapUsed+'\\n')},${MEMORY_SAMPLE_MS}).unref()`;
/** A first page and its totals answered within this (p95) is "within budget", at any size. */
const BUDGET_MS = 250;
/** Channel ids of the histories: the first (measured) one is this, the others count down from it. */
const FIRST_CHANNEL_ID = -1009000000000n;

const USAGE = `npm run bench:statement [-- options]

  --small N     payments of the small channel (default 100)
  --channel N   payments of the large channel (default 100000)
  --export N    payments exported, over N / --channel channels (default 1000000; a multiple of --channel)
  --runs N      measured requests per statement (default 20)
  --pace N      MiB/s at which the full export is read (default 8)
  --help        this text
`;

interface Options {
  small: number;
  channel: number;
  export: number;
  runs: number;
  pace: number;
}

function readOptions(argv: string[]): Options | undefined {
  // Only --help asks for the usage here: -h was never one of this bench's options.
  const values = readOptionValues(argv, { values: ['small', 'channel', 'export', 'runs', 'pace'], shortHelp: false });
  if (!values) return undefined;
  const options = {
    small: int('small', values.small, 100, 1, 1_000_000),
    channel: int('channel', values.channel, 100_000, 1, 1_000_000),
    export: int('export', values.export, 1_000_000, 1, 10_000_000),
    runs: int('runs', values.runs, 20, 2, 200),
    pace: int('pace', values.pace, 8, 1, 1000),
  };
  if (options.export % options.channel !== 0)
    throw new UsageError(`--export (${options.export}) must be a multiple of --channel (${options.channel})`);
  return options;
}

// ---------------------------------------------------------------------------------------------------------------
// The payrail child: `node bin/payrail.js web` on one database

interface WebChild {
  child: ChildProcess;
  url: string;
  output: OutputTail;
  /** The child's own memory samples: [ms since epoch, RSS bytes, heap used bytes]. */
  memory: Array<[number, number, number]>;
}

/** The web role's configuration: nothing else payrail reads is inherited. */
function childEnvironment(databaseUrl: string, secrets: BenchSecrets): NodeJS.ProcessEnv {
  return payrailChildEnvironment({
    DATABASE_URL: databaseUrl,
    PORT: '0',
    HOST: '127.0.0.1',
    ADMIN_TOKEN: secrets.adminToken,
    NOWPAYMENTS_IPN_SECRET: secrets.ipnSecret,
    // The web role reads the database only: nothing listens here, and nothing is asked.
    CHANGENOW_API_URL: 'http://127.0.0.1:9',
    CHANGENOW_API_KEY: secrets.changenowApiKey,
    ETH_RPC_URL: 'http://127.0.0.1:9',
    HOST_WALLET_PRIVATE_KEY: secrets.hostPrivateKey,
    LOG_LEVEL: 'warn',
  });
}

async function startWeb(databaseUrl: string, secrets: BenchSecrets): Promise<WebChild> {
  const child = spawn(process.execPath, [`--import=${MEMORY_PROBE}`, PAYRAIL_BIN, 'web'], {
    cwd: ROOT,
    env: childEnvironment(databaseUrl, secrets),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = new OutputTail(30);
  readline.createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', output.keep);
  const stderr = readline.createInterface({ input: child.stderr as NodeJS.ReadableStream });
  const memory: Array<[number, number, number]> = [];
  stderr.on('line', (line) => {
    const sample = /^bench-memory (\d+) (\d+) (\d+)$/.exec(line);
    if (sample) memory.push([Number(sample[1]), Number(sample[2]), Number(sample[3])]);
    else output.keep(line);
  });
  const url = await payrailListening(child, stderr, output, READY_TIMEOUT_MS);
  return { child, url, output, memory };
}

// ---------------------------------------------------------------------------------------------------------------
// Measurements

interface Timed {
  label: string;
  ms: Float64Array;
  bytes: number;
  lines: number;
}

/**
 * GETs `path` once unmeasured, then `runs` times; the body is read to its end each time (a statement is only served
 * once it adds up: anything but 200 stops the bench). `lines` counts what the answer listed.
 */
async function timeRequests(
  web: WebChild,
  token: string,
  label: string,
  path: string,
  runs: number,
  count: (body: string) => number,
): Promise<Timed> {
  let bytes = 0;
  let lines = 0;
  const ms = new Float64Array(runs);
  for (let i = -1; i < runs; i++) {
    const started = performance.now();
    const res = await fetch(web.url + path, { headers: { authorization: `Bearer ${token}` } });
    const body = await res.text();
    const elapsed = performance.now() - started;
    if (res.status !== 200) throw new Error(`${label}: GET ${path} answered ${res.status}: ${body.slice(0, 500)}`);
    if (i >= 0) ms[i] = elapsed;
    bytes = Buffer.byteLength(body);
    lines = count(body);
  }
  ms.sort();
  return { label, ms, bytes, lines };
}

interface StatementPageBody {
  assets: Array<Record<string, unknown[]>>;
  page: { lines: number; hasMore: boolean; next: string | null };
}

/** The lines of a JSON statement page, as it says. */
const pageLines = (body: string) => (JSON.parse(body) as StatementPageBody).page.lines;

interface Streamed {
  label: string;
  rows: number;
  bytes: number;
  seconds: number;
  /** The child's samples while it streamed, each with the share of the body read by then. */
  samples: Array<{ read: number; rss: number; heap: number }>;
}

/**
 * Streams a CSV to its end without keeping it, reading at most `paceMiBs` MiB/s (0: as fast as it comes), and pairs
 * payrail's memory samples with how far the body was read at their time.
 */
async function streamCsv(web: WebChild, token: string, label: string, path: string, paceMiBs = 0): Promise<Streamed> {
  const firstSample = web.memory.length;
  const progressAt: Array<[number, number]> = [];
  const started = performance.now();
  const startedAt = Date.now();
  const res = await fetch(web.url + path, { headers: { authorization: `Bearer ${token}` } });
  if (res.status !== 200 || !res.body) throw new Error(`${label}: GET ${path} answered ${res.status}`);
  let bytes = 0;
  let lines = 0;
  // Not pulled while it sleeps: the server meets backpressure, as behind a slow client.
  for await (const value of res.body as unknown as AsyncIterable<Uint8Array>) {
    bytes += value.byteLength;
    for (let i = value.indexOf(0x0a); i !== -1; i = value.indexOf(0x0a, i + 1)) lines++;
    progressAt.push([Date.now(), bytes]);
    if (paceMiBs > 0) {
      const due = (bytes / (paceMiBs * 1024 * 1024)) * 1000 - (performance.now() - started);
      if (due > 0) await sleep(due);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  // Samples from the request on, each with the body read when it was taken.
  const samples: Streamed['samples'] = [];
  let p = 0;
  for (const [at, rss, heap] of web.memory.slice(firstSample)) {
    if (at < startedAt) continue;
    while (p + 1 < progressAt.length && (progressAt[p + 1] as [number, number])[0] <= at) p++;
    samples.push({ read: (progressAt[p]?.[1] ?? 0) / Math.max(bytes, 1), rss, heap });
  }
  return { label, rows: lines - 1, bytes, seconds, samples };
}

/** The peaks of RSS and heap over the samples taken while `lo` < share read ≤ `hi`. */
function peaks(samples: Streamed['samples'], lo: number, hi: number): { rss: number; heap: number; n: number } {
  const within = samples.filter((x) => x.read > lo && x.read <= hi);
  return {
    rss: Math.max(0, ...within.map((x) => x.rss)),
    heap: Math.max(0, ...within.map((x) => x.heap)),
    n: within.length,
  };
}

const mib = (bytes: number) => `${fmt(bytes / 1024 ** 2, 1)} MiB`;

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const start = beginRun(readOptions, USAGE);
  if ('exitCode' in start) return start.exitCode;
  const { options: opts, logger, secrets } = start;
  const interruption = new Interruption('stopping after the current step');
  const databases: Databases = { large: new BenchPostgres(logger), small: new BenchPostgres(logger) };
  const children: WebChild[] = [];
  try {
    const histories = await loadHistories(opts, databases, interruption);
    const smallWeb = await startWeb(histories.smallUrl, secrets);
    children.push(smallWeb);
    const largeWeb = await startWeb(histories.largeUrl, secrets);
    children.push(largeWeb);
    const webs: Webs = { small: smallWeb, large: largeWeb, token: secrets.adminToken };
    const statement = `/api/channels/${histories.channelId}/statement`;
    const lastMonth = `from=${new Date(Date.now() - 30 * 86_400_000).toISOString()}`;

    const exported = await measureExports(webs, opts);
    const timed = await measureStatements(webs, opts, statement, lastMonth);
    const csv = [
      await streamCsv(smallWeb, webs.token, `${opts.small} payments, whole history`, `${statement}?format=csv`),
      await streamCsv(largeWeb, webs.token, `${opts.channel} payments, whole history`, `${statement}?format=csv`),
    ];

    const out = (line: string) => process.stdout.write(`${line}\n`);
    for (const line of reportHeader('statement', histories.pgInfo, 'embedded, temp dir')) out(line);
    for (const line of historyLines(opts, histories)) out(line);
    for (const line of statementLines(opts, timed)) out(line);
    for (const line of csvLines(csv)) out(line);
    for (const line of exportLines(opts, exported)) out(line);
    const full = exported.exports[1] as Streamed;
    if (full.rows !== opts.export) {
      out(`export rows ${full.rows} ≠ ${opts.export} payments loaded`);
      return 1;
    }
    return 0;
  } finally {
    interruption.release();
    for (const web of children) await stopChild(web.child, 'payrail', 10_000);
    await databases.small.close();
    await databases.large.close();
  }
}

/** The embedded PostgreSQL of the large history, and the handle on its second database, of the small one. */
interface Databases {
  large: BenchPostgres;
  small: BenchPostgres;
}

interface Histories {
  largeUrl: string;
  smallUrl: string;
  pgInfo: PgSettings | undefined;
  loaded: HistorySummary;
  /** The large history's channels, `--channel` payments each. */
  channels: number;
  /** The measured channel, and the payments it holds as counted in the database. */
  channelId: string;
  counted: string | undefined;
}

/** Both histories, the small one first, each in its own database of the one embedded PostgreSQL. */
async function loadHistories(opts: Options, databases: Databases, interruption: Interruption): Promise<Histories> {
  const history = historyOptions(interruption);
  const largeUrl = await databases.large.startEmbedded('payrail-bench-statement-');
  const database = await databases.large.open(largeUrl, 2);
  const pgInfo = await readPgSettings(database);
  await database.pool.query('create database payrail_bench_small');
  const smallUrl = new URL(largeUrl);
  smallUrl.pathname = '/payrail_bench_small';
  await databases.small.open(smallUrl.toString(), 2);

  progress(`loading ${opts.small} payments on one channel`);
  await seedHistory(smallUrl.toString(), history(opts.small, 1));
  const channels = opts.export / opts.channel;
  progress(`loading ${opts.export} payments over ${channels} channels (${opts.channel} each)`);
  const loaded = await seedHistory(largeUrl, history(opts.export, channels));
  const channelId = FIRST_CHANNEL_ID.toString();
  const { rows: counted } = await database.pool.query<{ n: string }>(
    'select count(*)::text as n from payments where channel_id = $1',
    [channelId],
  );
  return { largeUrl, smallUrl: smallUrl.toString(), pgInfo, loaded, channels, channelId, counted: counted[0]?.n };
}

const progress = (line: string) => process.stderr.write(`${line}\n`);

/** The history options of `payments` payments over `channels` channels, none of them a bench channel. */
function historyOptions(interruption: Interruption): (payments: number, channels: number) => HistoryOptions {
  const fee = parsePercent('3');
  return (payments, channels) => ({
    payments,
    channels,
    benchChannels: 0,
    benchChannel: { thresholdCents: 10_000, payoutCurrency: 'usdt', payoutNetwork: 'trx', walletAddress: '' },
    firstChannelId: FIRST_CHANNEL_ID,
    fee,
    progress,
    interrupted: () => interruption.interrupted,
  });
}

/** The payrail serving each history, and the token both are asked with. */
interface Webs {
  small: WebChild;
  large: WebChild;
  token: string;
}

interface Exported {
  exports: Streamed[];
  hwmAfterExports: number;
}

/** The export of the last two days, then the whole large history at `--pace`, and the child's peak memory after. */
async function measureExports({ large, token }: Webs, opts: Options): Promise<Exported> {
  // Exports first, on a fresh process: its memory is then the export's, not what a statement left behind.
  progress('exports');
  const twoDays = `from=${new Date(Date.now() - 2 * 86_400_000).toISOString()}`;
  const exports = [
    await streamCsv(large, token, 'payments.csv, last 2 days', `/api/exports/payments.csv?${twoDays}`),
    await streamCsv(large, token, `payments.csv, all ${opts.export}`, '/api/exports/payments.csv', opts.pace),
  ];
  const hwmAfterExports = (procStatusKib(large.child.pid as number, 'VmHWM') ?? 0) * 1024;
  return { exports, hwmAfterExports };
}

/** The first page (whole history and last 30 days) and, if there is one, the second page of each channel. */
async function measureStatements(webs: Webs, opts: Options, statement: string, lastMonth: string): Promise<Timed[]> {
  const { token } = webs;
  progress('statements');
  const timed: Timed[] = [];
  for (const [web, size] of [
    [webs.small, opts.small],
    [webs.large, opts.channel],
  ] as const) {
    timed.push(
      await timeRequests(web, token, `${size} payments: first page + totals`, statement, opts.runs, pageLines),
      await timeRequests(
        web,
        token,
        `${size} payments: last 30 days, first page + totals`,
        `${statement}?${lastMonth}`,
        opts.runs,
        pageLines,
      ),
    );
    const next = await secondPage(web, token, statement);
    if (next)
      timed.push(await timeRequests(web, token, `${size} payments: second page + totals`, next, opts.runs, pageLines));
  }
  return timed;
}

/** The second page's path, or null when the first page was the whole statement. */
async function secondPage(web: WebChild, token: string, path: string): Promise<string | null> {
  const res = await fetch(web.url + path, { headers: { authorization: `Bearer ${token}` } });
  const next = ((await res.json()) as StatementPageBody).page.next;
  return next === null ? null : `${path}${path.includes('?') ? '&' : '?'}after=${next}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Report

function historyLines(opts: Options, { loaded, channels, channelId, counted }: Histories): string[] {
  return [
    `payrail:  node bin/payrail.js web (one per database), LOG_LEVEL=warn, on 127.0.0.1`,
    `history:  bench/history.ts: ${opts.small} payments on one channel; ${opts.export} over ${channels} channels in ${fmt(loaded.seconds, 0)} s ` +
      `(${loaded.counts.ledger_entries ?? '?'} entries, ${loaded.counts.conversions ?? '?'} conversions, ${loaded.counts.payouts ?? '?'} payouts, ` +
      `${loaded.counts.ledger_channel_days ?? '?'} day sums); measured channel ${channelId}: ${counted ?? '?'} payments`,
    '',
  ];
}

/** The statements' table, and whether both first pages were within budget. */
function statementLines(opts: Options, timed: Timed[]): string[] {
  const firstPages = timed.filter((t) => t.label.endsWith(': first page + totals'));
  const [smallFirst, largeFirst] = firstPages as [Timed, Timed];
  return [
    table(
      ['statement (JSON, default page)', 'lines', 'body', 'p50 ms', 'p95 ms', 'max ms'],
      timed.map((t) => [
        t.label,
        String(t.lines),
        `${fmt(t.bytes / 1024, 1)} KiB`,
        fmt(percentile(t.ms, 50), 0),
        fmt(percentile(t.ms, 95), 0),
        fmt(t.ms[t.ms.length - 1] ?? Number.NaN, 0),
      ]),
    ),
    `first page + totals, p95: ${fmt(percentile(smallFirst.ms, 95), 0)} ms at ${opts.small} payments, ` +
      `${fmt(percentile(largeFirst.ms, 95), 0)} ms at ${opts.channel} (budget ${BUDGET_MS} ms: ` +
      `${firstPages.every((t) => percentile(t.ms, 95) <= BUDGET_MS) ? 'both within' : 'NOT both within'}), ${opts.runs} runs each`,
    '',
  ];
}

function csvLines(csv: Streamed[]): string[] {
  return [
    table(
      ['statement CSV (streamed, once)', 'rows', 'body', 'seconds'],
      csv.map((c) => [c.label, String(c.rows), `${fmt(c.bytes / 1024 ** 2, 1)} MiB`, fmt(c.seconds, 1)]),
    ),
    '',
  ];
}

/** The exports' table, then the full export's memory: early against late, and per tenth of the body. */
function exportLines(opts: Options, { exports, hwmAfterExports }: Exported): string[] {
  const full = exports[1] as Streamed;
  const early = peaks(full.samples, -1, 0.1);
  const late = peaks(full.samples, 0.1, 1);
  const deciles: string[] = [];
  for (let d = 0; d < 10; d++) {
    const x = peaks(full.samples, d / 10, (d + 1) / 10);
    deciles.push(`${d * 10}-${d * 10 + 10}%: ${fmt(x.rss / 1024 ** 2, 0)}/${fmt(x.heap / 1024 ** 2, 0)}`);
  }
  return [
    table(['export', 'rows', 'body', 'seconds', 'rows/s', 'peak RSS', 'peak heap'], exports.map(exportRow)),
    `full export read at ${opts.pace} MiB/s; payrail's own samples every ${MEMORY_SAMPLE_MS} ms: ` +
      `first 10 % of the body peak RSS ${mib(early.rss)}, heap ${mib(early.heap)} (${early.n} samples); ` +
      `last 90 % peak RSS ${mib(late.rss)}, heap ${mib(late.heap)} (${late.n} samples): ` +
      `RSS +${mib(late.rss - early.rss)}, heap +${mib(late.heap - early.heap)}`,
    `payrail VmHWM after both exports: ${mib(hwmAfterExports)}`,
    `peak RSS/heap MiB per tenth of the body: ${deciles.join(', ')}`,
  ];
}

function exportRow(e: Streamed): string[] {
  const all = peaks(e.samples, -1, 1);
  return [
    e.label,
    String(e.rows),
    `${fmt(e.bytes / 1024 ** 2, 1)} MiB`,
    fmt(e.seconds, 1),
    fmt(e.rows / e.seconds, 0),
    mib(all.rss),
    mib(all.heap),
  ];
}

runBench(main, (error) => {
  if (error instanceof HistoryInterrupted) return 130;
  return undefined;
});
