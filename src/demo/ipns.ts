/**
 * Signed IPNs sent straight to payrail's webhook, as fast as it answers: bench/pipeline.ts measures intake with them
 * (pre-signed bodies). The demo's payments do not come this way (they go through checkout and the NOWPayments
 * simulator, purchases.ts). Both drivers queue the conversion check below while payments wait under the batch minimum.
 */
import http from 'node:http';
import https from 'node:https';
import type pg from 'pg';
import { addJobUnlessTaskLive } from '../jobs/index.ts';
import { CONVERSION_BATCH_QUEUE, CONVERSION_PRIORITY } from '../pipeline/conversion/run.ts';
import { runPaced } from './paced.ts';

export interface SignedIpn {
  readonly paymentId: string;
  readonly raw: string;
  readonly signature: string;
}

/** An IPN that did not get its 200: the run cannot account for that payment. */
export class IpnSendError extends Error {
  override name = 'IpnSendError';
}

export interface SendOutcome {
  firstSentAt: number;
  lastAnsweredAt: number;
  /** Latency of every request in ms, ascending. */
  latencies: Float64Array;
}

export interface SendOptions {
  /** Requests in flight, each on its own keep-alive connection. */
  concurrency: number;
  /** At most this many IPNs started per second (a steady stream); unset: as fast as answers come. */
  perSecond?: number;
  /** A reason to stop sending (interrupted, deadline): the send ends with IpnSendError. */
  stopped?: () => string | undefined;
}

/**
 * Sends every body once to `url` (payrail's /webhooks/nowpayments). Anything but a 200 stops the sending with
 * IpnSendError carrying the status and the body: every payment sent must be accounted for.
 */
export async function sendIpns(url: string, bodies: SignedIpn[], options: SendOptions): Promise<SendOutcome> {
  const target = new URL(url);
  const client = target.protocol === 'https:' ? https : http;
  const agent = new client.Agent({ keepAlive: true, maxSockets: options.concurrency });
  const latencies = new Float64Array(bodies.length);
  try {
    const { firstStartedAt: firstSentAt, failure } = await runPaced(bodies.length, options, async (index) => {
      const body = bodies[index] as SignedIpn;
      bodies[index] = undefined as unknown as SignedIpn; // let a sent body be collected
      const started = performance.now();
      let answer: Answer;
      try {
        answer = await post(client, target, agent, body);
      } catch (error) {
        return `IPN for payment ${body.paymentId} failed: ${(error as Error).message}`;
      }
      latencies[index] = performance.now() - started;
      if (answer.status !== 200)
        return `IPN for payment ${body.paymentId} answered ${answer.status}, not 200: ${answer.text.slice(0, 300)}`;
      return undefined;
    });
    if (failure !== undefined) throw new IpnSendError(failure);
    return { firstSentAt, lastAnsweredAt: Date.now(), latencies: latencies.sort() };
  } finally {
    agent.destroy();
  }
}

interface Answer {
  status: number;
  text: string;
}

/** No byte for this long on the connection: the IPN failed. */
const IPN_IDLE_TIMEOUT_MS = 30_000;

/**
 * One POST on a kept-alive connection. node:http rather than fetch: the sender shares the machine with what it
 * measures, and with fetch (its streams, an abort signal per request) the bench's process took 0.27 of a core
 * through a default bench:pipeline run, 0.15 with this (bench/README.md, "The sender's own CPU").
 */
function post(client: typeof http | typeof https, target: URL, agent: http.Agent, ipn: SignedIpn): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = client.request(
      target,
      {
        method: 'POST',
        agent,
        timeout: IPN_IDLE_TIMEOUT_MS,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(ipn.raw),
          'x-nowpayments-sig': ipn.signature,
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        );
        response.on('error', reject);
      },
    );
    request.on('timeout', () => request.destroy(new Error(`no answer within ${IPN_IDLE_TIMEOUT_MS} ms`)));
    request.on('error', reject);
    request.end(ipn.raw);
  });
}

/**
 * Queues a conversion check now unless one is queued or running: what intake's nudge does, for payments left below
 * CONVERSION_MIN_USD once the IPNs stop (payrail's own cron looks only every CONVERSION_INTERVAL, a minute at
 * least). The same key, key mode, queue and priority as the nudge, so it never adds a second concurrent check.
 * Returns whether it queued one.
 */
export async function queueConversionCheck(pool: pg.Pool): Promise<boolean> {
  return addJobUnlessTaskLive(pool, {
    task: 'conversion_batch',
    queue: CONVERSION_BATCH_QUEUE,
    key: 'conversion_batch:nudge',
    maxAttempts: 1,
    priority: CONVERSION_PRIORITY,
  });
}
