/**
 * Requests sent at a fixed rate, open loop: request i leaves at start + i / rate whatever the answers before it, and
 * its latency is measured from that scheduled moment, so time spent queued behind a slow answer (in the client or
 * the server) counts. autocannon's `overallRate` is not that: each connection sends its share of a second back to
 * back as soon as the second starts, then waits for the next one, so "500 req/s over 50 connections" is a burst of
 * 500 at full speed every second, and its latencies are those of the burst.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';

export interface PacedRequest {
  body: string;
  headers: Record<string, string>;
}

export interface PacedOptions {
  url: string;
  rate: number;
  durationS: number;
  /** Connections the client may open; a request finding all of them busy waits, its clock running. */
  connections: number;
  timeoutMs: number;
  next(): PacedRequest;
  onAnswer(status: number, body: string): void;
}

export interface PacedResult {
  /** Latency of every answered request, ms, from its scheduled moment `at` (ms from the run's first). */
  latencies: Array<{ status: number; ms: number; at: number }>;
  errors: number;
  timeouts: number;
  errorSamples: string[];
  /** From the first scheduled moment to the last answer. */
  seconds: number;
}

/** Whether a run in progress should stop scheduling (an interruption); what was sent is still awaited. */
let stopping = false;
export function stopPaced(): void {
  stopping = true;
}

export async function runPaced(options: PacedOptions): Promise<PacedResult> {
  stopping = false;
  const url = new URL(options.url);
  const pool = new Pool(url.origin, {
    connections: options.connections,
    pipelining: 1,
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
  });
  const result: PacedResult = { latencies: [], errors: 0, timeouts: 0, errorSamples: [], seconds: 0 };
  const total = Math.round(options.rate * options.durationS);
  const intervalMs = 1000 / options.rate;
  const inFlight: Array<Promise<void>> = [];
  const start = performance.now();
  try {
    for (let i = 0; i < total && !stopping;) {
      const now = performance.now();
      // Every request whose moment has come leaves now; a late timer sends the ones it owes at once.
      for (; i < total && start + i * intervalMs <= now; i++) {
        inFlight.push(send(pool, url.pathname, { start, scheduled: start + i * intervalMs }, options, result));
      }
      await sleep(Math.max(0, start + i * intervalMs - performance.now()));
    }
    await Promise.all(inFlight);
  } finally {
    result.seconds = (performance.now() - start) / 1000;
    await pool.close();
  }
  return result;
}

async function send(
  pool: Pool,
  path: string,
  { start, scheduled }: { start: number; scheduled: number },
  options: PacedOptions,
  result: PacedResult,
): Promise<void> {
  const request = options.next();
  try {
    const response = await pool.request({ path, method: 'POST', headers: request.headers, body: request.body });
    const text = await response.body.text();
    result.latencies.push({ status: response.statusCode, ms: performance.now() - scheduled, at: scheduled - start });
    options.onAnswer(response.statusCode, text);
  } catch (error) {
    const code = (error as { code?: string }).code ?? '';
    if (code.includes('TIMEOUT')) result.timeouts++;
    result.errors++;
    if (result.errorSamples.length < 5) result.errorSamples.push((error as Error).message);
  }
}
