/**
 * npm run bench:statement [-- --small 100 --channel 100000 --export 1000000 --runs 5]
 *
 * Statements and exports over a stored history (src/statements), through payrail's HTTP API as deployed:
 *   - the latency of GET /api/channels/:id/statement (JSON and CSV) for a channel with `--small` payments and for one
 *     with `--channel` payments (its whole history, and its last 30 days, what the dashboard asks for), each asked
 *     `--runs` times after one unmeasured run;
 *   - GET /api/exports/payments.csv of `--export` payments, and of its last two days first, with payrail's resident
 *     memory sampled while each streams: flat memory means the full export peaks where the small one did.
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
import { parseArgs } from 'node:util';
import { parsePercent } from '../src/money/index.ts';
import {
  assertLoopback,
  BenchPostgres,
  beginRun,
  childReady,
  Interruption,
  OutputTail,
  readPgSettings,
  reportHeader,
  runBench,
  stopChild,
  wholeNumberOption as int,
  type BenchSecrets,
} from './harness.ts';
import { HistoryInterrupted, seedHistory } from './history.ts';
import { fmt, percentile, procStatusKib, table } from './shared.ts';

const PAYRAIL_BIN = fileURLToPath(new URL('../bin/payrail.js', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const READY_TIMEOUT_MS = 60_000;
const MEMORY_SAMPLE_MS = 50;
/** Channel ids of the histories: the first (measured) one is this, the others count down from it. */
const FIRST_CHANNEL_ID = -1009000000000n;

const USAGE = `npm run bench:statement [-- options]

  --small N     payments of the small channel (default 100)
  --channel N   payments of the large channel (default 100000)
  --export N    payments exported, over N / --channel channels (default 1000000; a multiple of --channel)
  --runs N      measured requests per statement (default 5)
  --help        this text
`;

interface Options {
  small: number;
  channel: number;
  export: number;
  runs: number;
}

function readOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      small: { type: 'string' },
      channel: { type: 'string' },
      export: { type: 'string' },
      runs: { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) return undefined;
  const options = {
    small: int('small', values.small, 100, 1, 1_000_000),
    channel: int('channel', values.channel, 100_000, 1, 1_000_000),
    export: int('export', values.export, 1_000_000, 1, 10_000_000),
    runs: int('runs', values.runs, 5, 1, 100),
  };
  if (options.export % options.channel !== 0)
    throw new Error(`--export (${options.export}) must be a multiple of --channel (${options.channel})`);
  return options;
}

// ---------------------------------------------------------------------------------------------------------------
// The payrail child: `node bin/payrail.js web` on one database

interface WebChild {
  child: ChildProcess;
  url: string;
  output: OutputTail;
}

/** Variables payrail reads are not inherited: the child gets exactly the configuration below. */
function childEnvironment(databaseUrl: string, secrets: BenchSecrets): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  const own =
    /^(PAYRAIL_|NOWPAYMENTS_|CHANGENOW_|PLATFORM_|PAYOUT_|CONVERSION_|HOST_WALLET_|HEALTH_|WORKER_|ADMIN_|LOCAL_|TRANSFER_|EMBEDDED_PG_)/;
  const plain = ['PORT', 'HOST', 'DATABASE_URL', 'DATABASE_POOL_MAX', 'CHAIN_ID', 'ETH_RPC_URL', 'LOG_LEVEL'];
  for (const [name, value] of Object.entries(process.env))
    if (!own.test(name) && !plain.includes(name)) env[name] = value;
  return {
    ...env,
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
  };
}

async function startWeb(databaseUrl: string, secrets: BenchSecrets): Promise<WebChild> {
  const child = spawn(process.execPath, [PAYRAIL_BIN, 'web'], {
    cwd: ROOT,
    env: childEnvironment(databaseUrl, secrets),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = new OutputTail(30);
  readline.createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', output.keep);
  const stderr = readline.createInterface({ input: child.stderr as NodeJS.ReadableStream });
  stderr.on('line', output.keep);
  const url = await childReady(
    child,
    stderr,
    (line) => /^payrail listening on (http:\/\/\S+)$/.exec(line)?.[1],
    READY_TIMEOUT_MS,
    {
      timedOut: () => new Error(`payrail did not start within ${READY_TIMEOUT_MS} ms:\n${output.tail.join('\n')}`),
      exited: (code, signal) =>
        new Error(`payrail exited before it listened (code ${code}, signal ${signal}):\n${output.tail.join('\n')}`),
    },
  );
  assertLoopback('payrail', url);
  return { child, url, output };
}

// ---------------------------------------------------------------------------------------------------------------
// Measurements

interface Timed {
  label: string;
  ms: Float64Array;
  bytes: number;
  items: number;
}

/**
 * GETs `path` once unmeasured, then `runs` times; the body is read to its end each time (a statement is only served
 * once it adds up: anything but 200 stops the bench).
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
  let items = 0;
  const ms = new Float64Array(runs);
  for (let i = -1; i < runs; i++) {
    const started = performance.now();
    const res = await fetch(web.url + path, { headers: { authorization: `Bearer ${token}` } });
    const body = await res.text();
    const elapsed = performance.now() - started;
    if (res.status !== 200) throw new Error(`${label}: GET ${path} answered ${res.status}: ${body.slice(0, 500)}`);
    if (i >= 0) ms[i] = elapsed;
    bytes = Buffer.byteLength(body);
    items = count(body);
  }
  ms.sort();
  return { label, ms, bytes, items };
}

/** Items of a JSON statement, all assets. */
function statementItems(body: string): number {
  const s = JSON.parse(body) as { assets: Array<Record<string, unknown[]>> };
  return s.assets.reduce(
    (n, a) =>
      n + (a.payments?.length ?? 0) + (a.conversions?.length ?? 0) + (a.payouts?.length ?? 0) + (a.other?.length ?? 0),
    0,
  );
}

/** Lines of a CSV body less its header (the statement's also counts its opening and closing rows). */
function csvRows(body: string): number {
  let n = 0;
  for (let i = body.indexOf('\r\n'); i !== -1; i = body.indexOf('\r\n', i + 2)) n++;
  return n - 1;
}

interface Streamed {
  label: string;
  rows: number;
  bytes: number;
  seconds: number;
  rssBeforeKib: number;
  peakRssKib: number;
}

/** Streams an export to its end without keeping it, sampling the child's resident memory meanwhile. */
async function streamExport(web: WebChild, token: string, label: string, path: string): Promise<Streamed> {
  const pid = web.child.pid as number;
  const rssBeforeKib = procStatusKib(pid, 'VmRSS') ?? 0;
  let peakRssKib = rssBeforeKib;
  const timer = setInterval(() => {
    peakRssKib = Math.max(peakRssKib, procStatusKib(pid, 'VmRSS') ?? 0);
  }, MEMORY_SAMPLE_MS);
  const started = performance.now();
  try {
    const res = await fetch(web.url + path, { headers: { authorization: `Bearer ${token}` } });
    if (res.status !== 200 || !res.body) throw new Error(`${label}: GET ${path} answered ${res.status}`);
    let bytes = 0;
    let lines = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      bytes += chunk.byteLength;
      for (let i = chunk.indexOf(0x0a); i !== -1; i = chunk.indexOf(0x0a, i + 1)) lines++;
    }
    return {
      label,
      rows: lines - 1,
      bytes,
      seconds: (performance.now() - started) / 1000,
      rssBeforeKib,
      peakRssKib: Math.max(peakRssKib, procStatusKib(pid, 'VmRSS') ?? 0),
    };
  } finally {
    clearInterval(timer);
  }
}

const mib = (kib: number) => `${fmt(kib / 1024, 1)} MiB`;

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const start = beginRun(readOptions, USAGE);
  if ('exitCode' in start) return start.exitCode;
  const { options: opts, logger, secrets } = start;
  const interruption = new Interruption('stopping after the current step');
  const pg = new BenchPostgres(logger);
  const small = new BenchPostgres(logger);
  const children: WebChild[] = [];
  const progress = (line: string) => process.stderr.write(`${line}\n`);
  const fee = parsePercent('3');
  const history = (payments: number, channels: number) => ({
    payments,
    channels,
    benchChannels: 0,
    benchChannel: { thresholdCents: 10_000, payoutCurrency: 'usdt', payoutNetwork: 'trx', walletAddress: '' },
    firstChannelId: FIRST_CHANNEL_ID,
    fee,
    progress,
    interrupted: () => interruption.interrupted,
  });
  try {
    const largeUrl = await pg.startEmbedded('payrail-bench-statement-');
    const database = await pg.open(largeUrl, 2);
    const pgInfo = await readPgSettings(database);
    await database.pool.query('create database payrail_bench_small');
    const smallUrl = new URL(largeUrl);
    smallUrl.pathname = '/payrail_bench_small';
    await small.open(smallUrl.toString(), 2);

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

    const smallWeb = await startWeb(smallUrl.toString(), secrets);
    children.push(smallWeb);
    const largeWeb = await startWeb(largeUrl, secrets);
    children.push(largeWeb);
    const token = secrets.adminToken;
    const statement = `/api/channels/${channelId}/statement`;
    const lastMonth = `from=${new Date(Date.now() - 30 * 86_400_000).toISOString()}`;

    // Exports first, on a fresh process: its peak memory is then the export's, not what a statement left behind.
    progress('exports');
    const twoDays = `from=${new Date(Date.now() - 2 * 86_400_000).toISOString()}`;
    const exports = [
      await streamExport(largeWeb, token, 'payments.csv, last 2 days', `/api/exports/payments.csv?${twoDays}`),
      await streamExport(largeWeb, token, `payments.csv, all ${opts.export}`, '/api/exports/payments.csv'),
    ];
    const hwmAfterExports = procStatusKib(largeWeb.child.pid as number, 'VmHWM') ?? 0;

    progress('statements');
    const timed = [
      await timeRequests(smallWeb, token, `${opts.small} payments, JSON`, statement, opts.runs, statementItems),
      await timeRequests(smallWeb, token, `${opts.small} payments, CSV`, `${statement}?format=csv`, opts.runs, csvRows),
      await timeRequests(largeWeb, token, `${opts.channel} payments, JSON`, statement, opts.runs, statementItems),
      await timeRequests(
        largeWeb,
        token,
        `${opts.channel} payments, CSV`,
        `${statement}?format=csv`,
        opts.runs,
        csvRows,
      ),
      await timeRequests(
        largeWeb,
        token,
        `${opts.channel} payments, last 30 days, JSON`,
        `${statement}?${lastMonth}`,
        opts.runs,
        statementItems,
      ),
    ];

    const out = (line: string) => process.stdout.write(`${line}\n`);
    for (const line of reportHeader('statement', pgInfo, 'embedded, temp dir')) out(line);
    out(`payrail:  node bin/payrail.js web (one per database), LOG_LEVEL=warn, on 127.0.0.1`);
    out(
      `history:  bench/history.ts: ${opts.small} payments on one channel; ${opts.export} over ${channels} channels in ${fmt(loaded.seconds, 0)} s ` +
        `(${loaded.counts.ledger_entries ?? '?'} entries, ${loaded.counts.conversions ?? '?'} conversions, ${loaded.counts.payouts ?? '?'} payouts); ` +
        `measured channel ${channelId}: ${counted[0]?.n ?? '?'} payments`,
    );
    out('');
    out(
      table(
        ['statement (whole history unless said)', 'items / rows', 'body', 'min ms', 'median ms', 'max ms'],
        timed.map((t) => [
          t.label,
          String(t.items),
          `${fmt(t.bytes / 1024 ** 2, 2)} MiB`,
          fmt(t.ms[0] ?? Number.NaN, 0),
          fmt(percentile(t.ms, 50), 0),
          fmt(t.ms[t.ms.length - 1] ?? Number.NaN, 0),
        ]),
      ),
    );
    out('');
    out(
      table(
        ['export', 'rows', 'body', 'seconds', 'rows/s', 'payrail RSS before', 'peak RSS while streaming'],
        exports.map((e) => [
          e.label,
          String(e.rows),
          `${fmt(e.bytes / 1024 ** 2, 1)} MiB`,
          fmt(e.seconds, 1),
          fmt(e.rows / e.seconds, 0),
          mib(e.rssBeforeKib),
          mib(e.peakRssKib),
        ]),
      ),
    );
    out(`payrail VmHWM after both exports: ${mib(hwmAfterExports)} (RSS sampled every ${MEMORY_SAMPLE_MS} ms)`);
    const full = exports[1] as Streamed;
    if (full.rows !== opts.export) {
      out(`export rows ${full.rows} ≠ ${opts.export} payments loaded`);
      return 1;
    }
    return 0;
  } finally {
    interruption.release();
    for (const web of children) await stopChild(web.child, 'payrail', 10_000);
    await small.close();
    await pg.close();
  }
}

runBench(main, (error) => {
  if (error instanceof HistoryInterrupted) return 130;
  return undefined;
});
