/**
 * The ChangeNow simulator through the real ChangeNow client over HTTP, with a real chain (anvil): deposits are real
 * transactions from a funded host wallet to the payin address, and the simulator reads the chain to see them.
 * Amounts are compared as exact decimal strings computed with BigInt arithmetic, never with floats.
 */
import { randomUUID } from 'node:crypto';
import nodeHttp from 'node:http';
import type { AddressInfo } from 'node:net';
import { createPublicClient, http, type Address, type Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ChangeNowError,
  createChangeNowClient,
  type ChangeNowClient,
  type ChangeNowClientOptions,
  type CreateExchangeRequest,
  type ExchangeStatusName,
} from '../../src/integrations/changenow/index.ts';
import { createChainWallet, type ChainWallet } from '../../src/integrations/wallet/index.ts';
import { startChangeNowSimulator, type ChangeNowSimulator } from '../../src/simulators/changenow/index.ts';
import { startLocalChain, type LocalChain } from '../../src/simulators/chain.ts';
import { changeNowFailure } from '../support/changenow-failure.ts';
import { ethToUsdtEstimate } from '../support/changenow-requests.ts';
import { freePort } from '../support/ports.ts';

const API_KEY = 'sim-key-7c2e91d04b';
const ETH_DECIMALS = 18;
const USDT_DECIMALS = 6;
const RATE = 3000n; // eth/eth->usdt/eth in the simulator's default pairs
const WITHDRAWAL_FEE_USDT = 1n;

let chain: LocalChain;
let sim: ChangeNowSimulator;
let stepSim: ChangeNowSimulator | undefined;
let proxiedSim: ChangeNowSimulator | undefined;
let proxy: RpcProxy | undefined;
let wallet: ChainWallet;
let cn: ChangeNowClient;

const payout = privateKeyToAccount(generatePrivateKey()).address;

function clientFor(target: ChangeNowSimulator, overrides: Partial<ChangeNowClientOptions> = {}): ChangeNowClient {
  return createChangeNowClient({
    baseUrl: target.url,
    apiKey: API_KEY,
    connectTimeoutMs: 2_000,
    responseTimeoutMs: 5_000,
    ...overrides,
  });
}

async function rpc(method: string, params: unknown[]): Promise<unknown> {
  const res = await fetch(chain.rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  return ((await res.json()) as { result: unknown }).result;
}

/** "0.0123456789" → 12345678900000000n for 18 decimals. Exact: the digits are moved, never rounded. */
function toUnits(text: string, decimals: number): bigint {
  const match = /^(\d+)(?:\.(\d+))?$/.exec(text);
  if (!match) throw new Error(`not a plain decimal: ${text}`);
  const fraction = match[2] ?? '';
  if (fraction.length > decimals) throw new Error(`${text} has more than ${decimals} decimals`);
  return BigInt(match[1] ?? '0') * 10n ** BigInt(decimals) + BigInt(fraction.padEnd(decimals, '0') || '0');
}

/** 36037036n with 6 decimals → "36.037036"; canonical (no trailing fraction zeros), like the client's amounts. */
function fromUnits(units: bigint, decimals: number): string {
  const scale = 10n ** BigInt(decimals);
  const whole = units / scale;
  const fraction = (units % scale).toString().padStart(decimals, '0').replace(/0+$/, '');
  return fraction === '' ? whole.toString() : `${whole}.${fraction}`;
}

/** What the simulator pays out for `wei` deposited: wei·rate − fee, rounded down to usdt's 6 decimals. */
function expectedUsdtFor(wei: bigint): string {
  const out18 = wei * RATE - WITHDRAWAL_FEE_USDT * 10n ** BigInt(ETH_DECIMALS); // usdt in units of 1e-18
  const out6 = out18 / 10n ** BigInt(ETH_DECIMALS - USDT_DECIMALS); // BigInt division truncates: rounding down
  return fromUnits(out6, USDT_DECIMALS);
}

/** Sends exactly `wei` from the host wallet to `to` and waits for it to be mined. */
async function deposit(to: string, wei: bigint): Promise<void> {
  const nonce = await wallet.pendingNonce();
  const signed = await wallet.sign(
    { to: to as Address, asset: { kind: 'native' }, amount: wei, nonce },
    await wallet.fees(),
  );
  expect(await wallet.broadcast(signed.rawTx)).toEqual({ ok: true });
  expect(await wallet.waitMined(signed.hash, 15_000)).toMatchObject({ state: 'mined', success: true });
}

async function balanceOf(address: string): Promise<bigint> {
  return createPublicClient({ transport: http(chain.rpcUrl) }).getBalance({ address: address as Address });
}

const failure = (promise: Promise<unknown>) => changeNowFailure(promise, API_KEY);

function exchangeRequest(fromAmount: string, conversionId = `conv_${randomUUID()}`): CreateExchangeRequest {
  return {
    fromCurrency: 'eth',
    toCurrency: 'usdt',
    fromNetwork: 'eth',
    toNetwork: 'eth',
    fromAmount,
    address: payout,
    userId: conversionId,
    payload: { conversionId },
  };
}

interface RpcProxy {
  readonly url: string;
  /** The next eth_getBalance is answered only on release(); resolves once that request has arrived. */
  holdNextBalance(): Promise<void>;
  release(): void;
  stop(): Promise<void>;
}

/** A JSON-RPC proxy in front of anvil that can hold back one eth_getBalance answer: a slow chain read, on demand. */
async function startRpcProxy(target: string): Promise<RpcProxy> {
  let hold: (() => void) | null = null;
  let held: (() => void) | null = null;
  const server = nodeHttp.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      // The answer is read from the chain now; only its delivery waits.
      const answer = fetch(target, { method: 'POST', headers: { 'content-type': 'application/json' }, body }).then(
        (r) => r.text(),
      );
      const deliver = () =>
        void answer.then((text) => res.writeHead(200, { 'content-type': 'application/json' }).end(text));
      if (hold && body.includes('"eth_getBalance"')) {
        const arrived = hold;
        hold = null;
        held = deliver;
        arrived();
      } else {
        deliver();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    holdNextBalance: () => new Promise<void>((resolve) => (hold = resolve)),
    release() {
      held?.();
      held = null;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  chain = await startLocalChain({ port: await freePort() });
  sim = await startChangeNowSimulator({ port: 0, apiKey: API_KEY, rpcUrl: chain.rpcUrl, stepMs: 0 });
  const key: Hex = generatePrivateKey();
  wallet = createChainWallet({ rpcUrl: chain.rpcUrl, privateKey: key, chainId: chain.chainId, timeoutMs: 5_000 });
  await rpc('anvil_setBalance', [wallet.address, '0x56BC75E2D63100000']); // 100 ETH
  cn = clientFor(sim);
});

afterEach(async () => {
  // A failing fault test must not leave the next test facing the fault.
  await sim?.setFault('none');
  sim?.failNextExchange(null);
});

afterAll(async () => {
  await proxiedSim?.stop();
  await proxy?.stop();
  await stepSim?.stop();
  await sim?.stop();
  await chain?.stop();
});

describe('ChangeNow simulator: estimates', () => {
  it('eth→usdt for 0.1455 is exactly 435.5 (rate 3000, withdrawal fee 1)', async () => {
    const estimate = await cn.estimate(ethToUsdtEstimate);
    expect(estimate).toEqual({
      fromAmount: '0.1455',
      toAmount: '435.5',
      depositFee: '0',
      withdrawalFee: '1',
      rateId: null,
      validUntil: null,
    });
  });

  it('below the 0.001 minimum → permanent deposit_too_small', async () => {
    const error = await failure(cn.estimate({ ...ethToUsdtEstimate, fromAmount: '0.000999' }));
    expect(error).toMatchObject({
      kind: 'permanent',
      code: 'deposit_too_small',
      httpStatus: 400,
      endpoint: 'estimate',
    });
  });

  it('an unknown pair → permanent pair_is_inactive', async () => {
    const error = await failure(
      cn.estimate({ fromCurrency: 'eth', toCurrency: 'doge', fromNetwork: 'eth', toNetwork: 'doge', fromAmount: '1' }),
    );
    expect(error).toMatchObject({ kind: 'permanent', code: 'pair_is_inactive', httpStatus: 400, endpoint: 'estimate' });
  });

  it('a wrong API key → permanent unauthorized', async () => {
    const wrong = createChangeNowClient({
      baseUrl: sim.url,
      apiKey: 'not-the-key',
      connectTimeoutMs: 2_000,
      responseTimeoutMs: 5_000,
    });
    const error = await failure(wrong.estimate(ethToUsdtEstimate));
    expect(error).toMatchObject({ kind: 'permanent', code: 'unauthorized', httpStatus: 401, endpoint: 'estimate' });
  });
});

describe('ChangeNow simulator: an exchange paid on chain', () => {
  it('waits for the deposit, then finishes with the amount sent and the payout rounded down to 6 decimals', async () => {
    const fromAmount = '0.0123456789';
    const wei = toUnits(fromAmount, ETH_DECIMALS);
    const request = exchangeRequest(fromAmount);
    const created = await cn.createExchange(request);
    expect(created).toMatchObject({
      fromAmount,
      toAmount: expectedUsdtFor(wei),
      payoutAddress: payout,
      payinExtraId: null,
    });

    const waiting = await cn.getExchange(created.id);
    expect(waiting).toMatchObject({
      id: created.id,
      status: 'waiting',
      amountFrom: null,
      amountTo: null,
      expectedAmountFrom: fromAmount,
      payinAddress: created.payinAddress,
      userId: request.userId,
      payload: { conversionId: request.userId },
    });

    await deposit(created.payinAddress, wei);

    const finished = await cn.getExchange(created.id);
    expect(finished.status).toBe('finished');
    expect(finished.amountFrom).toBe(fromAmount);
    expect(finished.amountTo).toBe('36.037036'); // 0.0123456789 × 3000 − 1 = 36.0370367, rounded down
    expect(finished.amountTo).toBe(expectedUsdtFor(toUnits(finished.amountFrom as string, ETH_DECIMALS)));
    expect(finished.payoutHash).toMatch(/^0x[0-9a-f]{64}$/);
    expect(await balanceOf(created.payinAddress)).toBe(wei);

    // Finished is final: asking again changes nothing.
    expect(await cn.getExchange(created.id)).toEqual(finished);
  });

  it('a poll whose chain read is overtaken by another poll does not redo a finished exchange', async () => {
    proxy = await startRpcProxy(chain.rpcUrl);
    proxiedSim = await startChangeNowSimulator({ port: 0, apiKey: API_KEY, rpcUrl: proxy.url, stepMs: 0 });
    const proxied = clientFor(proxiedSim);
    const fromAmount = '0.002';
    const request = exchangeRequest(fromAmount);
    const created = await proxied.createExchange(request);
    await deposit(created.payinAddress, toUnits(fromAmount, ETH_DECIMALS));

    const arrived = proxy.holdNextBalance();
    const slow = proxied.getExchange(created.id); // sees the deposit, but its answer is held back
    await arrived;
    const fast = await proxied.getExchange(created.id); // sees the deposit and finishes the exchange
    expect(fast).toMatchObject({
      status: 'finished',
      amountFrom: fromAmount,
      amountTo: expectedUsdtFor(toUnits(fromAmount, ETH_DECIMALS)),
    });
    proxy.release();
    // The late sighting of the same deposit changes nothing: same status, same payout hash, same updatedAt.
    expect(await slow).toEqual(fast);
    expect(await proxied.getExchange(created.id)).toEqual(fast);
    expect(await proxied.listExchanges({ userId: request.userId })).toEqual([fast]);
  });

  it('with stepMs > 0 the status moves confirming → exchanging → sending → finished over successive polls', async () => {
    stepSim = await startChangeNowSimulator({ port: 0, apiKey: API_KEY, rpcUrl: chain.rpcUrl, stepMs: 200 });
    const stepped = clientFor(stepSim);
    const fromAmount = '0.005';
    const created = await stepped.createExchange(exchangeRequest(fromAmount));
    expect((await stepped.getExchange(created.id)).status).toBe('waiting');
    await deposit(created.payinAddress, toUnits(fromAmount, ETH_DECIMALS));

    const seen: ExchangeStatusName[] = [];
    let last = await stepped.getExchange(created.id);
    for (let poll = 0; poll < 400; poll++) {
      if (seen[seen.length - 1] !== last.status) seen.push(last.status);
      if (last.status === 'finished') break;
      expect(last.amountTo).toBeNull();
      await sleep(25);
      last = await stepped.getExchange(created.id);
    }
    const order: ExchangeStatusName[] = ['confirming', 'exchanging', 'sending', 'finished'];
    const positions = seen.map((status) => order.indexOf(status));
    expect(positions.every((position) => position >= 0)).toBe(true);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    expect(seen[seen.length - 1]).toBe('finished');
    expect(last.amountFrom).toBe(fromAmount);
    expect(last.amountTo).toBe(expectedUsdtFor(toUnits(fromAmount, ETH_DECIMALS)));
  });
});

describe('ChangeNow simulator: faults', () => {
  it('down → transient network (connection refused); back up on the same port it answers again', async () => {
    expect((await cn.estimate(ethToUsdtEstimate)).toAmount).toBe('435.5');
    const url = sim.url;
    await sim.setFault('down');
    // Node's agent keeps sockets alive between calls: a call may still pick one the simulator has just closed and
    // fail with ECONNRESET (transient network as well). Each such failure uses one up; then the port refuses.
    const errors: ChangeNowError[] = [];
    for (let attempt = 0; attempt < 20 && !errors.some((error) => error.message.includes('ECONNREFUSED')); attempt++) {
      errors.push(await failure(cn.estimate(ethToUsdtEstimate)));
    }
    for (const error of errors)
      expect(error).toMatchObject({ kind: 'transient', code: 'network', httpStatus: null, endpoint: 'estimate' });
    expect(errors[errors.length - 1]?.message).toContain('ECONNREFUSED');
    expect(await failure(cn.getExchange('aaaaaaaaaaaaaa'))).toMatchObject({
      kind: 'transient',
      code: 'network',
      endpoint: 'by-id',
    });

    await sim.setFault('none');
    expect(sim.url).toBe(url);
    expect((await cn.estimate(ethToUsdtEstimate)).toAmount).toBe('435.5');
  });

  it('down through the /sim/fault route answers before going down', async () => {
    const res = await fetch(`${sim.url}/sim/fault`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"fault":"down"}',
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ fault: 'down' });
    let error: ChangeNowError | undefined;
    for (let attempt = 0; attempt < 50 && error === undefined; attempt++) {
      // The route closes the server once its answer is out: wait for that rather than assume it already happened.
      error = await cn.estimate(ethToUsdtEstimate).then(
        () => undefined,
        (caught: unknown) => caught as ChangeNowError,
      );
      if (error === undefined) await sleep(20);
    }
    expect(error).toMatchObject({ kind: 'transient', code: 'network' });
    await sim.setFault('none');
    expect((await cn.estimate(ethToUsdtEstimate)).toAmount).toBe('435.5');
  });

  it('5xx → transient', async () => {
    await sim.setFault('5xx');
    expect(await failure(cn.estimate(ethToUsdtEstimate))).toMatchObject({
      kind: 'transient',
      code: 'http_503',
      httpStatus: 503,
      endpoint: 'estimate',
    });
    expect(await failure(cn.listExchanges({ userId: 'conv_any' }))).toMatchObject({
      kind: 'transient',
      code: 'http_503',
      endpoint: 'list',
    });
  });

  it('401 → permanent unauthorized even with the right key', async () => {
    await sim.setFault('401');
    expect(await failure(cn.createExchange(exchangeRequest('0.01')))).toMatchObject({
      kind: 'permanent',
      code: 'unauthorized',
      httpStatus: 401,
      endpoint: 'create',
    });
  });

  it('slow beyond the response deadline → transient timeout; then answers again', async () => {
    await sim.setFault('slow', { slowMs: 3_000 });
    const impatient = clientFor(sim, { responseTimeoutMs: 300 });
    expect(await failure(impatient.estimate(ethToUsdtEstimate))).toMatchObject({
      kind: 'transient',
      code: 'timeout',
      httpStatus: null,
      endpoint: 'estimate',
    });
    await sim.setFault('none');
    expect((await impatient.estimate(ethToUsdtEstimate)).toAmount).toBe('435.5');
  });

  it.each(['failed', 'refunded'] as const)(
    'failNextExchange(%s): after the deposit that exchange ends so, with no amountTo',
    async (end) => {
      sim.failNextExchange(end);
      const fromAmount = '0.0031';
      const wei = toUnits(fromAmount, ETH_DECIMALS);
      const doomed = await cn.createExchange(exchangeRequest(fromAmount));
      expect((await cn.getExchange(doomed.id)).status).toBe('waiting');
      await deposit(doomed.payinAddress, wei);
      const ended = await cn.getExchange(doomed.id);
      expect(ended).toMatchObject({ status: end, amountFrom: fromAmount, amountTo: null, payoutHash: null });

      // Only that one: the next exchange finishes normally.
      const next = await cn.createExchange(exchangeRequest(fromAmount));
      await deposit(next.payinAddress, wei);
      expect(await cn.getExchange(next.id)).toMatchObject({ status: 'finished', amountTo: expectedUsdtFor(wei) });
    },
  );
});

describe('ChangeNow simulator: exchange edge cases', () => {
  const simFault = (body: unknown) =>
    fetch(`${sim.url}/sim/fault`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  it('below_estimate: finishes with amountTo that percent below its estimate, rounded down, and keeps the estimate', async () => {
    const fromAmount = '0.0047239';
    const wei = toUnits(fromAmount, ETH_DECIMALS);
    sim.failNextExchange('below_estimate');
    const five = await cn.createExchange(exchangeRequest(fromAmount));
    expect(five.toAmount).toBe('13.1717');
    await deposit(five.payinAddress, wei);
    // 13.1717 × 0.95 = 12.513115, the default 5 %.
    expect(await cn.getExchange(five.id)).toMatchObject({
      status: 'finished',
      amountFrom: fromAmount,
      expectedAmountTo: '13.1717',
      amountTo: '12.513115',
    });

    const res = await simFault({ nextExchange: 'below_estimate', belowEstimatePercent: '3.01' });
    expect(res.status).toBe(200);
    const chosen = await cn.createExchange(exchangeRequest(fromAmount));
    await deposit(chosen.payinAddress, wei);
    // 13.1717 × 0.9699 = 12.77523183, rounded down to 6 decimals.
    expect(await cn.getExchange(chosen.id)).toMatchObject({
      status: 'finished',
      expectedAmountTo: '13.1717',
      amountTo: '12.775231',
    });

    expect((await simFault({ nextExchange: 'below_estimate', belowEstimatePercent: 'most' })).status).toBe(400);
    expect((await simFault({ nextExchange: 'below_estimate', belowEstimatePercent: 3 })).status).toBe(400);
  });

  it('verifying: the deposit sits in the AML check (verifying, no amountTo) until it clears, then the exchange finishes in full', async () => {
    const fromAmount = '0.0052';
    const wei = toUnits(fromAmount, ETH_DECIMALS);
    expect((await simFault({ nextExchange: 'verifying', verifyingMs: 600_000 })).status).toBe(200);
    const held = await cn.createExchange(exchangeRequest(fromAmount));
    expect((await cn.getExchange(held.id)).status).toBe('waiting');
    await deposit(held.payinAddress, wei);
    for (let look = 0; look < 3; look++) {
      expect(await cn.getExchange(held.id)).toMatchObject({
        status: 'verifying',
        amountFrom: fromAmount,
        amountTo: null,
        payoutHash: null,
        refundHash: null,
      });
    }
    sim.releaseVerification(held.id);
    expect(await cn.getExchange(held.id)).toMatchObject({
      status: 'finished',
      amountFrom: fromAmount,
      amountTo: expectedUsdtFor(wei),
    });
    expect((await simFault({ nextExchange: 'verifying', verifyingMs: -1 })).status).toBe(400);
  });

  it('expired_funded: ends expired although the deposit arrived, with nothing paid out or refunded', async () => {
    const fromAmount = '0.0061';
    const wei = toUnits(fromAmount, ETH_DECIMALS);
    sim.failNextExchange('expired_funded');
    const lapsed = await cn.createExchange(exchangeRequest(fromAmount));
    await deposit(lapsed.payinAddress, wei);
    expect(await cn.getExchange(lapsed.id)).toMatchObject({
      status: 'expired',
      amountFrom: fromAmount,
      amountTo: null,
      payoutHash: null,
      refundHash: null,
    });
    expect(await balanceOf(lapsed.payinAddress)).toBe(wei);
  });

  it('no_amount_to: finishes and pays out as usual, but reports no amountTo', async () => {
    const fromAmount = '0.0047239';
    const wei = toUnits(fromAmount, ETH_DECIMALS);
    expect((await simFault({ nextExchange: 'no_amount_to' })).status).toBe(200);
    const silent = await cn.createExchange(exchangeRequest(fromAmount));
    await deposit(silent.payinAddress, wei);
    const finished = await cn.getExchange(silent.id);
    expect(finished).toMatchObject({
      status: 'finished',
      amountFrom: fromAmount,
      expectedAmountTo: '13.1717',
      amountTo: null,
    });
    expect(finished.payoutHash).toMatch(/^0x[0-9a-f]{64}$/);
  });
});

describe('ChangeNow simulator: listExchanges', () => {
  it('returns exactly the exchanges created with that userId', async () => {
    const mine = `conv_${randomUUID()}`;
    const other = `conv_${randomUUID()}`;
    const first = await cn.createExchange(exchangeRequest('0.01', mine));
    const elsewhere = await cn.createExchange(exchangeRequest('0.02', other));
    const second = await cn.createExchange(exchangeRequest('0.03', mine));

    const listed = await cn.listExchanges({ userId: mine });
    expect(listed.map((exchange) => exchange.id).sort()).toEqual([first.id, second.id].sort());
    for (const exchange of listed)
      expect(exchange).toMatchObject({ userId: mine, status: 'waiting', payload: { conversionId: mine } });
    expect(listed.find((exchange) => exchange.id === first.id)?.expectedAmountFrom).toBe('0.01');
    expect(listed.find((exchange) => exchange.id === second.id)?.expectedAmountFrom).toBe('0.03');

    expect((await cn.listExchanges({ userId: other })).map((exchange) => exchange.id)).toEqual([elsewhere.id]);
    expect(await cn.listExchanges({ userId: `conv_${randomUUID()}` })).toEqual([]);
  });

  it('shows a listed exchange’s progress like by-id does', async () => {
    const mine = `conv_${randomUUID()}`;
    const fromAmount = '0.0042';
    const created = await cn.createExchange(exchangeRequest(fromAmount, mine));
    await deposit(created.payinAddress, toUnits(fromAmount, ETH_DECIMALS));
    const [listed] = await cn.listExchanges({ userId: mine });
    expect(listed).toMatchObject({
      id: created.id,
      status: 'finished',
      amountFrom: fromAmount,
      amountTo: expectedUsdtFor(toUnits(fromAmount, ETH_DECIMALS)),
    });
    expect(await cn.getExchange(created.id)).toEqual(listed);
  });
});

describe('ChangeNow simulator: the create body', () => {
  it('reads the top-level fromAmount exactly, whatever else the body holds', async () => {
    const conversionId = `conv_${randomUUID()}`;
    // A payload field named fromAmount before the real one, and the real one in exponent form: 1.5e-2 = 0.015.
    const body = `{"payload":{"fromAmount":"7","n":0.30000000000000004},"fromCurrency":"eth","toCurrency":"usdt","fromNetwork":"eth","toNetwork":"eth","address":"${payout}","userId":"${conversionId}","fromAmount":1.5e-2}`;
    const res = await fetch(`${sim.url}/v2/exchange`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-changenow-api-key': API_KEY },
      body,
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('"fromAmount":0.015,');
    const [listed] = await cn.listExchanges({ userId: conversionId });
    expect(listed).toMatchObject({
      expectedAmountFrom: '0.015',
      expectedAmountTo: '44',
      payload: { fromAmount: '7', n: '0.30000000000000004' },
    });
  });
});
