/**
 * A JSON-RPC proxy in front of a node (anvil) that misbehaves like the RPC providers payrail meets on mainnet: it
 * loses a broadcast's answer after the node took the transaction, answers "unknown" for hashes the node knows (a
 * lagging node behind a load balancer), refuses sends, or is down. Faults apply per JSON-RPC call, also inside a
 * batch. Without faults it forwards each call unchanged.
 */
import type http from 'node:http';
import { parseTransaction, recoverTransactionAddress, type Hex } from 'viem';
import { LocalServer, readBody, sendJson } from './http.ts';

export interface RpcFaults {
  /**
   * The next N eth_sendRawTransaction calls are forwarded to the upstream (so the node takes the transaction) but the
   * client gets no answer: the socket is destroyed after the upstream answered.
   */
  dropSendAnswers?: number;
  /**
   * Lagging node: eth_getTransactionReceipt and eth_getTransactionByHash answer `null` (as for an unknown hash), for
   * every hash (true) or only for the hashes listed (lower-case 0x hex).
   */
  lagging?: boolean | string[];
  /**
   * eth_sendRawTransaction answers a JSON-RPC error with this message without forwarding (e.g. "insufficient funds for
   * gas * price + value").
   */
  refuseSends?: string | null;
  /**
   * eth_sendRawTransaction of a transaction whose nonce is ahead of its sender's next one at the node (a gap) is
   * refused, not forwarded, as Hardhat does when automining and geth does with a full pool ("future transaction tries
   * to replace pending"); a proxy in front of several backends shows the same to a sender whose calls overtake.
   */
  refuseGaps?: boolean;
  /** Every call answers HTTP 503. */
  down?: boolean;
}

export interface RpcProxy {
  readonly url: string;
  setFaults(faults: RpcFaults): void;
  /** counts of calls per method seen so far */
  calls(method: string): number;
  /** sends refused for a nonce gap (refuseGaps) so far */
  gapsRefused(): number;
  stop(): Promise<void>;
}

interface RpcCall {
  jsonrpc?: string;
  id?: unknown;
  method?: unknown;
  params?: unknown;
}

/** A raw transaction is at most 128 KiB in geth's pool; a batch of a few of them fits. */
const MAX_BODY_BYTES = 1024 * 1024;
const MAX_BATCH_CALLS = 100;
const UPSTREAM_TIMEOUT_MS = 10_000;
const LOOKUPS = new Set(['eth_getTransactionReceipt', 'eth_getTransactionByHash']);

/** What the faults set so far have left to do, and the calls seen; shared by every request. */
interface ProxyState {
  faults: RpcFaults;
  sendAnswersToDrop: number;
  readonly counts: Map<string, number>;
  gapsRefused: number;
}

export async function startRpcProxy(options: { upstream: string; port?: number }): Promise<RpcProxy> {
  const state: ProxyState = { faults: {}, sendAnswersToDrop: 0, counts: new Map(), gapsRefused: 0 };
  const server = new LocalServer();
  await server.listen((req, res) => handleRequest(state, options.upstream, req, res), options.port ?? 0);

  return {
    url: server.url,
    setFaults(next) {
      state.faults = {
        ...next,
        lagging: Array.isArray(next.lagging) ? next.lagging.map((h) => h.toLowerCase()) : next.lagging,
      };
      state.sendAnswersToDrop = next.dropSendAnswers ?? 0;
    },
    calls: (method) => state.counts.get(method) ?? 0,
    gapsRefused: () => state.gapsRefused,
    stop: () => server.close(),
  };
}

function handleRequest(state: ProxyState, upstream: string, req: http.IncomingMessage, res: http.ServerResponse): void {
  readBody(req, MAX_BODY_BYTES)
    .then((body) => answerBody(state, upstream, body, req, res))
    .catch((error: unknown) =>
      reply(res, 502, { error: `upstream: ${error instanceof Error ? error.message : String(error)}` }),
    );
}

async function answerBody(
  state: ProxyState,
  upstream: string,
  body: string | undefined,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  if (body === undefined) return reply(res, 413, { error: 'body too large' });
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return reply(res, 200, { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'parse error' } });
  }
  const batch = Array.isArray(parsed);
  const calls = (batch ? parsed : [parsed]) as RpcCall[];
  if (calls.length > MAX_BATCH_CALLS)
    return reply(res, 413, { error: `more than ${MAX_BATCH_CALLS} calls in a batch` });
  countCalls(state.counts, calls);
  if (state.faults.down) return reply(res, 503, { error: 'down' });
  const drop = takeSendAnswersToDrop(state, calls);
  const answers = await Promise.all(calls.map((call) => answer(state, upstream, call)));
  if (drop) return void req.socket.destroy();
  reply(res, 200, batch ? answers : answers[0]);
}

function countCalls(counts: Map<string, number>, calls: readonly RpcCall[]): void {
  for (const call of calls) {
    const method = typeof call?.method === 'string' ? call.method : '?';
    counts.set(method, (counts.get(method) ?? 0) + 1);
  }
}

/** Whether this request's answer is to be lost; counts its forwarded sends against the answers left to drop. */
function takeSendAnswersToDrop(state: ProxyState, calls: readonly RpcCall[]): boolean {
  // Forwarded sends whose answer is to be lost: decided before forwarding, so the count is exact under load.
  const forwardedSends = calls.filter(
    (call) => call?.method === 'eth_sendRawTransaction' && fake(state.faults, call) === undefined,
  ).length;
  const drop = forwardedSends > 0 && state.sendAnswersToDrop > 0;
  if (drop) state.sendAnswersToDrop = Math.max(0, state.sendAnswersToDrop - forwardedSends);
  return drop;
}

async function answer(state: ProxyState, upstream: string, call: RpcCall): Promise<object> {
  if (typeof call !== 'object' || call === null)
    return { jsonrpc: '2.0', id: null, error: { code: -32600, message: 'invalid request' } };
  return fake(state.faults, call) ?? (await gapRefusal(state, upstream, call)) ?? (await forward(upstream, call));
}

/** With refuseGaps: the refusal of a send whose nonce is past its sender's next one at the node, else undefined. */
async function gapRefusal(state: ProxyState, upstream: string, call: RpcCall): Promise<object | undefined> {
  if (!state.faults.refuseGaps || call.method !== 'eth_sendRawTransaction' || !Array.isArray(call.params))
    return undefined;
  const raw: unknown = call.params[0];
  if (typeof raw !== 'string') return undefined;
  const serializedTransaction = raw as Hex;
  const nonce = parseTransaction(serializedTransaction).nonce ?? 0;
  const sender = await recoverTransactionAddress({ serializedTransaction } as Parameters<
    typeof recoverTransactionAddress
  >[0]);
  const counted = (await forward(upstream, {
    jsonrpc: '2.0',
    id: 1,
    method: 'eth_getTransactionCount',
    params: [sender, 'pending'],
  })) as { result?: string };
  const next = Number(BigInt(counted.result ?? '0x0'));
  if (nonce <= next) return undefined;
  state.gapsRefused += 1;
  return {
    jsonrpc: '2.0',
    id: call.id ?? null,
    error: {
      code: -32000,
      message: `Nonce too high. Expected nonce to be ${next} but got ${nonce}. Note that transactions can't be queued when automining.`,
    },
  };
}

/** The answer the proxy gives itself, or undefined to forward the call. */
function fake(faults: RpcFaults, call: RpcCall): object | undefined {
  if (call.method === 'eth_sendRawTransaction' && faults.refuseSends) {
    return { jsonrpc: '2.0', id: call.id ?? null, error: { code: -32000, message: faults.refuseSends } };
  }
  if (typeof call.method === 'string' && LOOKUPS.has(call.method) && isLagging(faults, call))
    return { jsonrpc: '2.0', id: call.id ?? null, result: null };
  return undefined;
}

function isLagging(faults: RpcFaults, call: RpcCall): boolean {
  if (faults.lagging === true) return true;
  if (!Array.isArray(faults.lagging) || !Array.isArray(call.params)) return false;
  const hash: unknown = call.params[0];
  return typeof hash === 'string' && faults.lagging.includes(hash.toLowerCase());
}

async function forward(upstream: string, call: RpcCall): Promise<object> {
  const res = await fetch(upstream, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(call),
    signal: AbortSignal.timeout(UPSTREAM_TIMEOUT_MS),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return (await res.json()) as object;
}

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  // A client that sent too much gets its answer and a closed connection, so the unread rest cannot poison keep-alive.
  sendJson(res, status, text, {
    'content-length': Buffer.byteLength(text),
    ...(status === 413 ? { connection: 'close' } : {}),
  });
}
