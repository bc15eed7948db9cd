/**
 * Steps and checks the payout integration tests share, whether they read payouts from the tables (payoutTest) or
 * through the admin API (payoutApiTest): an instant payout brought to a state someone must act on, an action that
 * must succeed, a payrail started afresh, and what a payout moved. Each is made from the fixtures it needs (`…On`), so
 * that a file adds it to its `test` with `.extend`; payoutStepsTest and payoutApiStepsTest have them.
 */
import { expect } from 'vitest';
import type { ChangeNowSimulator, SimExchange } from '../../src/simulators/changenow/index.ts';
import type { StartOptions, TestApp } from './fixtures.ts';
import { eventually, type Outside } from './outside.ts';
import { logSink, type LogSink } from './payrail.ts';
import { payoutApiTest, payoutTest, type ApiPayout, type PayoutRow } from './payout-state.ts';
import { freshWallet, TRON_WALLET, tronThreshold } from './payouts.ts';

/** One fixture payment's net: 0.00487 ETH less the 3 % platform fee, in wei. */
export const NET_WEI = 4_723_900_000_000_000n;

/** What a channel's ledger holds of one asset: on the channel itself, and set aside in its payout. */
interface Held {
  available?: bigint;
  reserved?: bigint;
}

/** The ledger balances (payoutTest's `balances`) of a channel paid out in ETH, holding `available` and `reserved`. */
export function ethBalances({ available = 0n, reserved = 0n }: Held): Record<string, string> {
  return { 'channel/eth': available.toString(), 'channel:payout/eth': reserved.toString() };
}

/** The ledger balances of a threshold channel whose ETH is all converted, holding USDT `available` and `reserved`. */
export function usdtBalances({ available = 0n, reserved = 0n }: Held): Record<string, string> {
  return { 'channel/eth': '0', 'channel/usdt': available.toString(), 'channel:payout/usdt': reserved.toString() };
}

/** A channel paid once while its payout still holds that ETH. */
export const ETH_RESERVED = ethBalances({ reserved: NET_WEI });
/** …and once that ETH has left for good: none of it available, none reserved. */
export const ETH_SETTLED = ethBalances({});
/** A threshold channel whose batches have all left: no ETH, no USDT, nothing reserved. */
export const USDT_SETTLED = usdtBalances({});

/** What the steps need of a payout test: a channel paid once, and its payout once it reached a status. */
interface PayoutSteps<P> {
  paidInstant: (payoutCurrency: string, payoutNetwork: string, walletAddress: string) => Promise<string>;
  payoutIn: (channelId: string, status: string, timeoutMs?: number) => Promise<P>;
}

/** An instant payout (USDT on Tron) in review: its exchange failed after the ETH was sent to it. */
export function failedExchangeInReviewOn<P>({ outside, paidInstant, payoutIn }: PayoutSteps<P> & { outside: Outside }) {
  return async (): Promise<{ id: string; review: P }> => {
    outside.sim.failNextExchange('failed');
    const id = await paidInstant('usdt', 'trx', TRON_WALLET);
    return { id, review: await payoutIn(id, 'needs_review') };
  };
}

/**
 * An instant payout in review before anything was sent: ChangeNow has `usdc` on `payoutNetwork` inactive (until a
 * test sets the pair).
 */
export function inactivePairInReviewOn<P extends { reason?: string | null }>({
  paidInstant,
  payoutIn,
}: PayoutSteps<P>) {
  return async (payoutNetwork: string): Promise<{ id: string; review: P }> => {
    const id = await paidInstant('usdc', payoutNetwork, freshWallet());
    const review = await payoutIn(id, 'needs_review');
    expect(review.reason).toContain('pair_is_inactive');
    return { id, review };
  };
}

/** An instant payout (USDT on BSC) held below ChangeNow's minimum, a pair set up for it above one payment. */
export function heldBelowMinimumOn<P>({ outside, paidInstant, payoutIn }: PayoutSteps<P> & { outside: Outside }) {
  return async (): Promise<{ id: string; held: P }> => {
    outside.sim.setPair('eth/eth->usdt/bsc', { rate: '3000', withdrawalFee: '1', minAmount: '1' });
    const id = await paidInstant('usdt', 'bsc', freshWallet());
    return { id, held: await payoutIn(id, 'held') };
  };
}

/** A direct ETH payout awaiting approval: the test's payrail must have started with PAYOUT_APPROVAL_ABOVE_USD below it. */
export function awaitingApprovalOn<P>({ paidInstant, payoutIn }: PayoutSteps<P>) {
  return async (): Promise<{ id: string; waiting: P }> => {
    const id = await paidInstant('eth', 'eth', freshWallet());
    return { id, waiting: await payoutIn(id, 'awaiting_approval') };
  };
}

/** How ChangeNow's simulator is to end the next exchange (failed, refunded, refunded short, …). */
type ExchangeEnding = Parameters<ChangeNowSimulator['failNextExchange']>[0];

/**
 * `exchangeEnded`: an instant payout (USDT on Tron) whose exchange ChangeNow ends as `ending` after the ETH was sent to
 * it, once the payout is `status`; with its channel, its payment and that exchange.
 */
export function exchangeEndedOn({
  outside,
  instant,
  pay,
  payoutIn,
  exchangesFor,
}: {
  outside: Outside;
  instant: (payoutCurrency: string, payoutNetwork: string, walletAddress: string) => Promise<string>;
  pay: (channelId: string) => Promise<string>;
  payoutIn: (channelId: string, status: string) => Promise<PayoutRow>;
  exchangesFor: (payoutId: string) => SimExchange[];
}) {
  return async (ending: ExchangeEnding, status: string) => {
    const id = await instant('usdt', 'trx', TRON_WALLET);
    outside.sim.failNextExchange(ending);
    const paymentId = await pay(id);
    const payout = await payoutIn(id, status);
    const [exchange] = exchangesFor(payout.payout_id);
    return { id, paymentId, payout, exchange };
  };
}

/** `convertedThresholdChannel`: `count` payments of a new threshold channel (1000 USD, out of reach), converted. */
export function convertedThresholdChannelOn({
  channel,
  pay,
  balances,
  conversionsDone,
}: {
  channel: (body: Record<string, unknown>) => Promise<string>;
  pay: (channelId: string) => Promise<string>;
  balances: (channelId: string) => Promise<Record<string, string>>;
  conversionsDone: (paymentIds: string[]) => Promise<boolean>;
}) {
  return async (count: number): Promise<{ id: string; paymentIds: string[]; available: bigint }> => {
    const id = await channel(tronThreshold('1000'));
    const paymentIds: string[] = [];
    for (let i = 0; i < count; i++) paymentIds.push(await pay(id));
    await eventually('the payments converted', () => conversionsDone(paymentIds));
    const available = BigInt((await balances(id))['channel/usdt'] as string);
    return { id, paymentIds, available };
  };
}

/** `lowerThreshold`: the channel's threshold set to 20 USD (USDT on Tron) through the API, so what it holds is batched. */
export function lowerThresholdOn({ app }: { app: TestApp }) {
  return async (channelId: string): Promise<void> => {
    const res = await app.payrail.request('PUT', `/api/channels/${channelId}`, { body: tronThreshold('20') });
    expect(res.status).toBe(200);
  };
}

/** An admin action on a payout, answered with its status and body. */
type Act = (
  payoutId: string,
  action: string,
  token: string | undefined,
  body?: unknown,
) => Promise<{ status: number; body: any }>;

/**
 * `accepted`: the action (with `body`, if any) as `token`'s holder, expecting it done (200) and the payout it answers
 * with to match `shown`; returns that payout.
 */
export function acceptedOn({ act }: { act: Act }) {
  return async (
    payoutId: string,
    action: string,
    token: string | undefined,
    shown: Record<string, unknown>,
    body?: unknown,
  ): Promise<Record<string, any>> => {
    const res = await act(payoutId, action, token, body);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject(shown);
    return res.body;
  };
}

/** `startLogged`: starts the test's payrail afresh, its log lines apart from those before; returns them. */
export function startLoggedOn({ start }: { start: (env?: Record<string, string>, options?: StartOptions) => unknown }) {
  return async (env: Record<string, string> = {}): Promise<LogSink> => {
    const logs = logSink();
    await start(env, { logs });
    return logs;
  };
}

/** `untilPollsFail`: waits until the channel's payout is sent and `logs` show a poll of its exchange failing. */
export function untilPollsFailOn({
  payoutsOf,
  logs,
}: {
  payoutsOf: (channelId: string) => Promise<Array<{ payout_id: string; status: string }>>;
  logs: LogSink;
}) {
  return (what: string, channelId: string): Promise<void> =>
    eventually(what, async () => {
      const [payout] = await payoutsOf(channelId);
      return (
        payout?.status === 'sent' &&
        logs.lines.some((l) => l.event === 'payout_poll_failed' && l.payoutId === payout.payout_id)
      );
    });
}

/** What a payout moved: the exchanges ChangeNow holds for it and its transfers on chain. */
interface Moved {
  exchangesFor: (payoutId: string) => unknown[];
  transfersFor: (payoutId: string) => Promise<unknown[]>;
}

/** `expectNothingSent`: nothing of the payout reached ChangeNow or the chain. */
export function expectNothingSentOn({ exchangesFor, transfersFor }: Moved) {
  return async (payoutId: string): Promise<void> => {
    expect(exchangesFor(payoutId)).toHaveLength(0);
    expect(await transfersFor(payoutId)).toEqual([]);
  };
}

/** `expectExchangedOnce`: the payout has one exchange and one confirmed transfer (matching `transfer` too). */
export function expectExchangedOnceOn({ exchangesFor, transfersFor }: Moved) {
  return async (payoutId: string, transfer: Record<string, unknown> = {}): Promise<void> => {
    expect(exchangesFor(payoutId)).toHaveLength(1);
    expect(await transfersFor(payoutId)).toMatchObject([{ status: 'confirmed', ...transfer }]);
  };
}

/** What a fault test reads of how it ended: the channel's ledger balances and the ledger's own check. */
interface Ending {
  balances: (channelId: string) => Promise<Record<string, string>>;
  expectLedgerClean: () => Promise<void>;
}

/**
 * `expectEndedQuietly`: the channel's ledger balances are `held`, nothing in `logs` alerted and the ledger is clean: the
 * end of a payout that got past its fault on its own, with nobody to call.
 */
export function expectEndedQuietlyOn({ balances, expectLedgerClean }: Ending) {
  return async (channelId: string, held: Record<string, string>, logs: LogSink): Promise<void> => {
    expect(await balances(channelId)).toEqual(held);
    expect(logs.alerts()).toEqual([]);
    await expectLedgerClean();
  };
}

/** The steps that bring an instant payout to a state someone must act on, for a test whose payouts read as `P`. */
interface InstantSteps<P extends { reason?: string | null }> {
  failedExchangeInReview: ReturnType<typeof failedExchangeInReviewOn<P>>;
  inactivePairInReview: ReturnType<typeof inactivePairInReviewOn<P>>;
  awaitingApproval: ReturnType<typeof awaitingApprovalOn<P>>;
  heldBelowMinimum: ReturnType<typeof heldBelowMinimumOn<P>>;
}

type Use<T> = (value: T) => Promise<void>;

/** InstantSteps as object-form fixtures, each made from the fixtures it names. */
function instantStepFixtures<P extends { reason?: string | null }>() {
  type Context = PayoutSteps<P> & { outside: Outside };
  type Step<K extends keyof InstantSteps<P>> = (context: Context, use: Use<InstantSteps<P>[K]>) => Promise<void>;
  const failedExchangeInReview: Step<'failedExchangeInReview'> = async ({ outside, paidInstant, payoutIn }, use) =>
    use(failedExchangeInReviewOn({ outside, paidInstant, payoutIn }));
  const inactivePairInReview: Step<'inactivePairInReview'> = async ({ paidInstant, payoutIn }, use) =>
    use(inactivePairInReviewOn({ paidInstant, payoutIn }));
  const awaitingApproval: Step<'awaitingApproval'> = async ({ paidInstant, payoutIn }, use) =>
    use(awaitingApprovalOn({ paidInstant, payoutIn }));
  const heldBelowMinimum: Step<'heldBelowMinimum'> = async ({ outside, paidInstant, payoutIn }, use) =>
    use(heldBelowMinimumOn({ outside, paidInstant, payoutIn }));
  return { failedExchangeInReview, inactivePairInReview, awaitingApproval, heldBelowMinimum };
}

/** The steps above as fixtures of a test that reads payouts from the tables. */
interface TableSteps extends InstantSteps<PayoutRow> {
  startLogged: ReturnType<typeof startLoggedOn>;
  untilPollsFail: ReturnType<typeof untilPollsFailOn>;
  expectNothingSent: ReturnType<typeof expectNothingSentOn>;
  expectExchangedOnce: ReturnType<typeof expectExchangedOnceOn>;
  expectEndedQuietly: ReturnType<typeof expectEndedQuietlyOn>;
  exchangeEnded: ReturnType<typeof exchangeEndedOn>;
  convertedThresholdChannel: ReturnType<typeof convertedThresholdChannelOn>;
  lowerThreshold: ReturnType<typeof lowerThresholdOn>;
}

/**
 * The `test` of a file that follows payouts through the tables: payoutTest's, with the steps above as fixtures. They
 * are added in one `extend`, as a file adds fixtures of its own on top and a longer chain is more than TypeScript
 * follows.
 */
export function payoutStepsTest(options: Parameters<typeof payoutTest>[0] = {}) {
  return payoutTest(options).extend<TableSteps>({
    ...instantStepFixtures<PayoutRow>(),
    startLogged: async ({ start }, use) => use(startLoggedOn({ start })),
    untilPollsFail: async ({ payoutsOf, logs }, use) => use(untilPollsFailOn({ payoutsOf, logs })),
    expectNothingSent: async ({ exchangesFor, transfersFor }, use) =>
      use(expectNothingSentOn({ exchangesFor, transfersFor })),
    expectExchangedOnce: async ({ exchangesFor, transfersFor }, use) =>
      use(expectExchangedOnceOn({ exchangesFor, transfersFor })),
    expectEndedQuietly: async ({ balances, expectLedgerClean }, use) =>
      use(expectEndedQuietlyOn({ balances, expectLedgerClean })),
    exchangeEnded: async ({ outside, instant, pay, payoutIn, exchangesFor }, use) =>
      use(exchangeEndedOn({ outside, instant, pay, payoutIn, exchangesFor })),
    convertedThresholdChannel: async ({ channel, pay, balances, conversionsDone }, use) =>
      use(convertedThresholdChannelOn({ channel, pay, balances, conversionsDone })),
    lowerThreshold: async ({ app }, use) => use(lowerThresholdOn({ app })),
  });
}

/** The steps above as fixtures of a test that drives payouts through the admin API. */
interface ApiSteps extends InstantSteps<ApiPayout> {
  accepted: ReturnType<typeof acceptedOn>;
}

/** The `test` of a file that drives payouts through the admin API: payoutApiTest's, with the steps it shares. */
export function payoutApiStepsTest(options: Parameters<typeof payoutApiTest>[0] = {}) {
  return payoutApiTest(options).extend<ApiSteps>({
    ...instantStepFixtures<ApiPayout>(),
    accepted: async ({ act }, use) => use(acceptedOn({ act })),
  });
}
