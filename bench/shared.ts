/**
 * Pieces shared by the benchmarks (bench/intake.ts, bench/pipeline.ts): signed IPN bodies in the fixtures' shape,
 * a free loopback port, small /proc readers, percentiles and text formatting. Nothing here is part of payrail.
 * What the benchmarks do around payrail (processes, database, command line) is in bench/harness.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse, stringify } from 'lossless-json';
import type { SignedIpn } from '../src/demo/ipns.ts';
import { canonicalIpnJson, signIpn } from '../src/integrations/nowpayments/index.ts';
import { Rng } from '../src/simulators/rng.ts';

const FIXTURES = new URL('../test/fixtures/nowpayments-ipn.json', import.meta.url);

/** Payment ids are base + sequence; the sequence stays below this so ids keep 20 digits at most. */
const MAX_SEQUENCE = 10_000_000n;

/** A signed body as the senders in src/demo/ipns.ts take it. */
export type { SignedIpn } from '../src/demo/ipns.ts';

/** How the bench's payments are spread over its channels. */
export const CHANNEL_SPREADS = ['uniform', 'power'] as const;
export type ChannelSpread = (typeof CHANNEL_SPREADS)[number];

/**
 * The power spread's draws come from this fixed seed, so two runs with the same options send the same channels in the
 * same order (how many bodies a run signs still depends on the measured rate).
 */
export const SPREAD_SEED = 20_261_206;

/** A signed body and the index (into the factory's channel list) of the channel it pays. */
export interface BenchIpn extends SignedIpn {
  channel: number;
}

/**
 * Picks the channel of each new payment: `uniform` takes them in turn (round-robin, as callers that count on "payment
 * i goes to channel i mod C" expect); `power` draws channel k of N (k = 1..N) with probability proportional to 1/k
 * (Zipf, exponent 1), as a few busy channels and a long tail of quiet ones would send.
 */
class ChannelPicker {
  /** Running sums of the weights 1/k; undefined for the uniform spread. */
  private readonly cumulative: Float64Array | undefined;
  private readonly rng: Rng;

  constructor(
    private readonly channels: number,
    spread: ChannelSpread,
  ) {
    this.rng = new Rng(SPREAD_SEED);
    if (spread === 'uniform') {
      this.cumulative = undefined;
      return;
    }
    this.cumulative = new Float64Array(channels);
    let total = 0;
    for (let k = 1; k <= channels; k++) {
      total += 1 / k;
      this.cumulative[k - 1] = total;
    }
  }

  pick(sequence: bigint): number {
    const cumulative = this.cumulative;
    if (cumulative === undefined) return Number(sequence % BigInt(this.channels));
    const target = this.rng.next() * (cumulative[cumulative.length - 1] as number);
    // The first channel whose running sum passes the target.
    let low = 0;
    let high = cumulative.length - 1;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if ((cumulative[middle] as number) > target) high = middle;
      else low = middle + 1;
    }
    return low;
  }
}

/**
 * Bodies in the fixtures' exact shape (the `finished` IPN), each with its own payment_id, spread over the given
 * channels as `spread` says. Amounts stay JSON text: the fixture is read with lossless-json and written back with it,
 * so "0.00487" is never a JavaScript number.
 */
export class IpnFactory {
  private readonly templates: Array<[string, string]>;
  private readonly picker: ChannelPicker;
  private sequence = 0n;
  readonly base: bigint;

  constructor(
    readonly userId: string,
    private readonly secret: string,
    channelIds: readonly string[],
    spread: ChannelSpread = 'uniform',
  ) {
    if (channelIds.length === 0) throw new Error('IpnFactory needs at least one channel');
    const fixtures = parse(fs.readFileSync(FIXTURES, 'utf8')) as { sequence: Array<Record<string, unknown>> };
    const finished = fixtures.sequence.find((body) => body.payment_status === 'finished');
    if (!finished) throw new Error('test/fixtures/nowpayments-ipn.json has no finished IPN');
    const PLACEHOLDER = '__BENCH_PAYMENT_ID__';
    this.templates = channelIds.map((channelId) => {
      const template = stringify({ ...finished, payment_id: PLACEHOLDER, order_id: `PGP-${userId}|${channelId}` });
      if (template === undefined) throw new Error('fixture cannot be serialized');
      const parts = template.split(`"${PLACEHOLDER}"`);
      if (parts.length !== 2) throw new Error('payment_id placeholder not found exactly once');
      return parts as [string, string];
    });
    this.picker = new ChannelPicker(channelIds.length, spread);
    // Unique across runs against the same database: milliseconds since 1970 times 10^7 (20 digits in 2026).
    this.base = BigInt(Date.now()) * MAX_SEQUENCE;
  }

  /** A new payment, signed the way NOWPayments signs: HMAC-SHA512 over the canonical (sorted-keys) JSON. */
  next(): BenchIpn {
    if (this.sequence >= MAX_SEQUENCE) throw new Error('bench ran out of payment ids for this run');
    const channel = this.picker.pick(this.sequence);
    const [head, tail] = this.templates[channel] as [string, string];
    const paymentId = (this.base + this.sequence++).toString();
    const raw = head + paymentId + tail;
    return { paymentId, raw, signature: signIpn(canonicalIpnJson(parse(raw)), this.secret), channel };
  }

  get issued(): number {
    return Number(this.sequence);
  }
}

/** Signs `count` new bodies now; returns them with the time it took. */
export function presign(factory: IpnFactory, count: number): { pool: BenchIpn[]; ms: number } {
  const started = process.hrtime.bigint();
  const pool: BenchIpn[] = [];
  for (let i = 0; i < count; i++) pool.push(factory.next());
  return { pool, ms: Number(process.hrtime.bigint() - started) / 1e6 };
}

/** The share of `counts`' total held by its largest entry and by its ten largest, 0..1 (NaN when all are 0). */
export function topShares(counts: ArrayLike<number>): { top1: number; top10: number; total: number } {
  const sorted = Array.from(counts).sort((a, b) => b - a);
  const total = sorted.reduce((sum, n) => sum + n, 0);
  const top = (n: number) => sorted.slice(0, n).reduce((sum, x) => sum + x, 0) / total;
  return { top1: top(1), top10: top(10), total };
}

/** Runs `work` on every item, at most `width` at a time; rejects with the first failure. */
export async function eachLimited<T>(
  items: readonly T[],
  width: number,
  work: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await work(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane));
}

/** A port free on 127.0.0.1 right now: the tests' helper. */
export { freePort } from '../test/support/ports.ts';

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The postmaster's pid of a cluster directory, from its postmaster.pid. */
export function readPostmasterPid(clusterDir: string): number | undefined {
  try {
    const pid = Number.parseInt(
      fs.readFileSync(path.join(clusterDir, 'postmaster.pid'), 'utf8').split('\n')[0] ?? '',
      10,
    );
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** One field of /proc/<pid>/status in KiB (VmRSS, VmHWM, ...), or undefined off Linux / once the process is gone. */
export function procStatusKib(pid: number | 'self', field: string): number | undefined {
  try {
    const line = fs
      .readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${field}:`));
    const match = line === undefined ? null : /([0-9]+)\s*kB/.exec(line);
    return match?.[1] === undefined ? undefined : Number.parseInt(match[1], 10);
  } catch {
    return undefined;
  }
}

/** The p-th percentile (nearest rank) of ascending values; NaN when there are none. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] as number;
}

export function fmt(n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

/** A plain text table: first column left-aligned, the others right-aligned. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** "AMD EPYC ..., 2 cores, 23.5 GiB RAM, Linux 6.x x64, Node v20.x" */
export function machineLine(): string {
  const cpu = os.cpus();
  return `${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} cores, ${fmt(os.totalmem() / 1024 ** 3, 1)} GiB RAM, ${os.type()} ${os.release()} ${os.arch()}, Node ${process.version}`;
}

// ---------------------------------------------------------------------------------------------------------------
// CPU accounting (Linux /proc; undefined elsewhere)

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
export const CLK_TCK = 100;

function statFields(pid: number | string): string[] {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** utime + stime of one process, in ticks. */
export function procTicks(pid: number): number | undefined {
  try {
    const fields = statFields(pid);
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

/**
 * Calls `visit` with the pid and /proc/<pid>/stat fields of every live process; false when /proc cannot be read.
 * Processes that exit while the list is read are skipped.
 */
function eachProcess(visit: (pid: number, fields: string[]) => void): boolean {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return false;
  }
  for (const entry of entries) {
    if (!/^[0-9]+$/.test(entry)) continue;
    let fields: string[];
    try {
      fields = statFields(entry);
    } catch {
      continue; // the process went away
    }
    visit(Number(entry), fields);
  }
  return true;
}

/**
 * CPU ticks of one PostgreSQL cluster: the postmaster with its reaped children, plus its live children (backends,
 * WAL writer, ...). Other clusters on the machine are excluded.
 */
export function postgresTicks(postmasterPid: number | undefined): number | undefined {
  if (postmasterPid === undefined) return undefined;
  let total = 0;
  const read = eachProcess((pid, fields) => {
    if (pid === postmasterPid) {
      // utime + stime, plus cutime + cstime: the CPU of backends that exited and were reaped
      total += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    } else if (Number(fields[1]) === postmasterPid) {
      total += Number(fields[11]) + Number(fields[12]);
    }
  });
  return read ? total : undefined;
}

/** utime + stime of the live direct children of `parentPid`, except `exclude`, in ticks. */
export function childrenTicks(parentPid: number, exclude: readonly number[]): number | undefined {
  let total = 0;
  const read = eachProcess((pid, fields) => {
    if (!exclude.includes(pid) && Number(fields[1]) === parentPid) total += Number(fields[11]) + Number(fields[12]);
  });
  return read ? total : undefined;
}

/** Busy and total ticks of the whole machine (all cores), from /proc/stat. */
export function machineTicks(): { busy: number; all: number } | undefined {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const nums = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (nums[3] ?? 0) + (nums[4] ?? 0);
    const all = nums.reduce((a, b) => a + b, 0);
    return { busy: all - idle, all };
  } catch {
    return undefined;
  }
}

/** Share of the machine busy between two machineTicks() readings, 0..1. */
export function busyShare(before: { busy: number; all: number }, after: { busy: number; all: number }): number {
  return (after.busy - before.busy) / Math.max(1, after.all - before.all);
}

/** Cores used on average (1.0 = one full core) between two tick counts `seconds` apart; undefined if either is. */
export function ticksToCores(
  before: number | undefined,
  after: number | undefined,
  seconds: number,
): number | undefined {
  return before === undefined || after === undefined ? undefined : (after - before) / CLK_TCK / seconds;
}

/** Cores this process used on average between two process.cpuUsage() readings `seconds` apart. */
export function cpuUsageCores(before: NodeJS.CpuUsage, after: NodeJS.CpuUsage, seconds: number): number {
  return (after.user - before.user + (after.system - before.system)) / 1e6 / seconds;
}
