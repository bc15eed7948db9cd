/**
 * The operator dashboard in a real browser (Debian's chromium driven by playwright-core) against a seeded database:
 * no data without the token, the figures shown are the API's, the review buttons call the payout, conversion,
 * transfer and payment actions and a channel's Pay now its payout (confirm first, the API's refusal shown as it says
 * it), the webhooks card shows failing endpoints and retries a failed delivery, and the page runs under its
 * Content-Security-Policy without a violation. Screenshots are kept in test-artifacts/ (dashboard.png and others).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dispatchEvents, type DeliveryView, type DispatchSettings } from '../../src/events/index.ts';
import { createLogger } from '../../src/log.ts';
import type { Overview } from '../../src/overview/index.ts';
import { instantEthChannel, sendIpn, usdtThresholdChannel, WALLET } from '../support/api-seed.ts';
import { launchChromium } from '../support/chromium.ts';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
// The history overview.test.ts seeds, by the same steps: the page has to show what the API answers for it.
import {
  insertAlert,
  observe,
  seedInstantPayout,
  seedNetworkFee,
  seedThresholdBatch,
  seedTransfer,
  settleConversion,
} from '../support/overview-seed.ts';
import { ADMIN_TOKEN, startTestPayrail, type TestPayrail } from '../support/payrail.ts';
import { fixtures, ipnBody } from '../support/ipn.ts';
import { saveChannel, sendFinished } from '../support/payouts.ts';
import { ROOT } from '../support/process.ts';
import { startReceiver } from '../support/receiver.ts';

// This suite's own channels, named as every suite names its channels: alike lists, each for its own database.
const THRESHOLD = '-1007000000001';
const INSTANT = '-1007000000002';
/** A threshold channel whose batch waits behind a transfer in review (seeded by its test). */
const WAITING = '-1007000000003';
/** A threshold channel another operator pays through the API while a page shows it (seeded by its test). */
const ELSEWHERE = '-1007000000004';
/** No channel of this id is registered: its payment waits in review. */
const UNREGISTERED = '-1007000000009';
/** A channel whose wallet change a webhook endpoint is told about (seeded by its test). */
const HOOKED = '-1007000000005';
/** A channel with more statement lines than the dashboard shows in one page (seeded by its test). */
const PAGED = '-1007000000006';
const OTHER_WALLET = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266';
/** In an endpoint's URL: a platform may put its own key there, which the page never shows. */
const QUERY_KEY = 'platform-key-5f1c0e9a';
/**
 * No worker runs here: the tests drive the dispatcher. A delivery failing its first attempt is given up on the next
 * run once the retry window (1 ms) has passed.
 */
const DISPATCH: DispatchSettings = { retryMinDelayMs: 50, retryWindowMs: 1, timeoutMs: 2_000, pollIntervalMs: 100 };
const quiet = createLogger({ level: 'silent' });
const ARTIFACTS = path.join(ROOT, 'test-artifacts');

let db: TestDatabase;
let payrail: TestPayrail;
let browser: Browser;
let reviewId: string;
let completedId: string;
let alertId: string;
/** What the page logged as errors, and every CSP violation it reported. */
const problems: string[] = [];

async function overview(): Promise<Overview> {
  const res = await payrail.request('GET', '/api/overview');
  expect(res.status).toBe(200);
  return res.body as Overview;
}

async function newPage(): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1440, height: 1200 } });
  page.on('console', (message) => {
    const text = message.text();
    // A 401 or 409 answer is logged by the browser as a failed load: expected here, and asserted on its own.
    if (
      message.type() === 'error' &&
      !text.startsWith('Failed to load resource: the server responded with a status of 4')
    )
      problems.push(`console: ${text}`);
    if (message.type() === 'warning' && text.includes('Alpine')) problems.push(`console: ${text}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  // Scripts for the page are strings: this project compiles without the DOM's types.
  await page.addInitScript({
    content:
      "document.addEventListener('securitypolicyviolation', (e) => console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));",
  });
  return page;
}

async function signIn(page: Page, options: { held?: boolean } = {}): Promise<void> {
  if (options.held) await page.clock.install();
  await page.goto(`${payrail.url}/`);
  // Held: the page's timers stop before it has a token, so it keeps the overview it reads at sign-in (and after its
  // own actions) and never refreshes by itself; the page's clock only, the server's and the database's run as ever.
  if (options.held) await page.clock.pauseAt((await page.evaluate<number>('Date.now()')) + 1_000);
  await page.fill('#token', ADMIN_TOKEN);
  await page.click('[data-testid=signin] button[type=submit]');
  await page.waitForSelector('[data-testid=total-received-eth]');
}

/** Answers the page's next confirm; the returned function gives what it asked once it has been asked. */
function answerNextDialog(page: Page, accept: boolean): () => string {
  let asked = '';
  page.once('dialog', (dialog) => {
    asked = dialog.message();
    void (accept ? dialog.accept() : dialog.dismiss());
  });
  return () => asked;
}

/** Clicks a button that asks first and dismisses it, leaving time for a request that must not go; what it asked. */
async function clickDismissed(page: Page, button: string): Promise<string> {
  const asked = answerNextDialog(page, false);
  await page.click(button);
  await page.waitForTimeout(300);
  return asked();
}

/** Clicks a button that asks first and accepts it, until the page's notice of `outcome` shows; what it asked. */
async function clickAccepted(page: Page, button: string, outcome: 'ok' | 'error'): Promise<string> {
  const asked = answerNextDialog(page, true);
  await page.click(button);
  await page.waitForSelector(`[data-testid=notice].${outcome}`);
  return asked();
}

/** The API refuses (409) what the page was just asked to do, and the page's notice is the API's own words. */
async function expectRefusalShown(page: Page, path: string): Promise<Awaited<ReturnType<TestPayrail['request']>>> {
  const refused = await payrail.request('POST', path);
  expect(refused.status).toBe(409);
  expect(await page.textContent('[data-testid=notice]')).toBe(refused.body.error);
  return refused;
}

function dispatch(settings: Partial<DispatchSettings> = {}) {
  return dispatchEvents({ db: db.db, logger: quiet, settings: { ...DISPATCH, ...settings } });
}

async function deliveriesOf(endpointId: string): Promise<DeliveryView[]> {
  const res = await payrail.request('GET', `/api/webhook-endpoints/${endpointId}/deliveries`);
  expect(res.status).toBe(200);
  return res.body.deliveries as DeliveryView[];
}

/** A time as the page shows it: "2026-12-06 11:05:02 UTC". */
function utcText(iso: string | undefined): string {
  return iso === undefined ? '–' : `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
}

/** Text as shown, with the page's digit grouping taken out (it groups by string, "1,234.5"). */
async function shown(page: Page, selector: string): Promise<string> {
  return ((await page.textContent(selector)) ?? '').trim().replace(/,/g, '');
}

beforeAll(async () => {
  browser = await launchChromium();
  db = await createTestDatabase();
  payrail = await startTestPayrail(db, { roles: { web: true, worker: false } });
  await saveChannel(payrail, THRESHOLD, usdtThresholdChannel('50'));
  await saveChannel(payrail, INSTANT, instantEthChannel());
  const threshold = [
    await sendFinished(payrail, 9_700_000_001, THRESHOLD),
    await sendFinished(payrail, 9_700_000_002, THRESHOLD),
    await sendFinished(payrail, 9_700_000_003, THRESHOLD),
  ];
  const instant = [
    await sendFinished(payrail, 9_700_000_011, INSTANT),
    await sendFinished(payrail, 9_700_000_012, INSTANT),
  ];
  await settleConversion(db.db, threshold.slice(0, 2), 30_000_000n);
  completedId = await seedInstantPayout(db.db, instant[0] as string, 'completed', { via: 'direct' });
  reviewId = await seedInstantPayout(db.db, instant[1] as string, 'needs_review');
  alertId = await insertAlert(db.db, {
    rule: 'payout_review',
    subject: reviewId,
    severity: 'critical',
    message: `payout ${reviewId} is in review`,
  });
  await observe(db.db, 'host_wallet.eth', true, '2500000000000000000');
  await observe(db.db, 'host_wallet.usdt', true, '1234567890');
  await observe(db.db, 'changenow', false, null, 'HTTP 503 from /v2/exchange/estimated-amount');
}, 25 * 60_000); // a fresh machine may first install chromium with apt-get (see test/support/chromium.ts)

afterAll(async () => {
  await browser?.close();
  await payrail?.stop();
  await db?.close();
});

describe('the dashboard', () => {
  it('is served with a strict CSP from payrail itself, and /api/overview needs the token', async () => {
    const page = await fetch(`${payrail.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(page.headers.get('content-security-policy')).not.toContain('unsafe');
    for (const [asset, type] of [
      ['/assets/app.js', 'text/javascript'],
      ['/assets/alpine.min.js', 'text/javascript'],
      ['/assets/chart.umd.min.js', 'text/javascript'],
      ['/assets/style.css', 'text/css'],
    ]) {
      const res = await fetch(`${payrail.url}${asset}`);
      expect(res.status, asset).toBe(200);
      expect(res.headers.get('content-type'), asset).toContain(type as string);
    }
    for (const other of [
      '/assets/',
      '/assets/../package.json',
      '/web/app.js',
      '/assets/chart.umd.min.js.map',
      '/index.html',
    ]) {
      expect((await fetch(`${payrail.url}${other}`)).status, other).toBe(404);
    }
    expect((await payrail.request('GET', '/api/overview', { token: null })).status).toBe(401);
    expect((await payrail.request('GET', '/api/overview', { token: 'wrong-token-0123456789' })).status).toBe(401);
    expect((await payrail.request('GET', '/api/overview?hours=0')).status).toBe(400);
  });

  it('shows no data without a token, and refuses a wrong one', async () => {
    const page = await newPage();
    await page.goto(`${payrail.url}/`);
    await page.waitForSelector('[data-testid=signin]', { state: 'visible' });
    const api = await overview();
    expect(await page.locator('[data-testid=dashboard]').count()).toBe(0);
    const text = await page.textContent('body');
    expect(text).not.toContain(api.totals.received.eth as string);
    expect(text).not.toContain(reviewId);

    await page.fill('#token', 'wrong-token-0123456789');
    await page.click('[data-testid=signin] button[type=submit]');
    await page.waitForSelector('[data-testid=signin-error]', { state: 'visible' });
    expect(await page.textContent('[data-testid=signin-error]')).toContain('refused');
    expect(await page.locator('[data-testid=dashboard]').count()).toBe(0);
    expect(await page.evaluate("sessionStorage.getItem('payrail.adminToken')")).toBeNull();
    await page.close();
  });

  it('shows what GET /api/overview says: totals, payouts, alerts, channel bars, queues, host wallet', async () => {
    const page = await newPage();
    await signIn(page);
    const api = await overview();

    expect(await shown(page, '[data-testid=total-received-eth]')).toBe(api.totals.received.eth);
    expect(await shown(page, '[data-testid=total-fees-eth]')).toBe(api.totals.platformFees.eth);
    expect(await shown(page, '[data-testid=total-network-fees-eth]')).toBe(api.totals.feesVsNetworkCosts.fees);
    expect(await shown(page, '[data-testid=total-network-costs-eth]')).toBe('0');
    expect(await shown(page, '[data-testid=total-network-net-eth]')).toBe(api.totals.feesVsNetworkCosts.fees);
    expect(await shown(page, '[data-testid=total-converted-sent-eth]')).toBe(api.totals.converted.sent.eth);
    expect(await shown(page, '[data-testid=total-converted-received-usdt]')).toBe('30');
    expect(await shown(page, '[data-testid=total-paid-eth]')).toBe(api.totals.paidOut.eth);
    expect(await shown(page, '[data-testid=total-available-usdt]')).toBe(api.totals.inFlight.available.usdt);
    expect(await shown(page, '[data-testid=total-reserved-eth]')).toBe(api.totals.inFlight.reserved.eth);
    expect(api.totals.paidOut.eth).toBe('0.0047239');

    for (const id of [reviewId, completedId]) {
      const row = api.payouts.find((p) => p.payoutId === id);
      expect(await shown(page, `[data-testid=payout-${id}] [data-role=state]`)).toBe(row?.status);
    }
    expect(await page.textContent(`[data-testid=alert-${alertId}]`)).toContain(`payout ${reviewId} is in review`);
    expect(await shown(page, '[data-testid=payouts-needs_review] dd')).toBe(String(api.pipeline.payouts.needs_review));
    expect(await shown(page, '[data-testid=payments-awaitingConversion] dd')).toBe(
      String(api.pipeline.payments.awaitingConversion),
    );

    const channel = api.channels.items.find((c) => c.channelId === THRESHOLD);
    expect(channel).toMatchObject({ availableUsdt: '30', thresholdUsd: '50', fillBps: 6000 });
    expect(await shown(page, `[data-testid=channel-${THRESHOLD}] [data-role=bar-label]`)).toBe(
      '30 / 50 USDT · 60.00 %',
    );
    const width = await page.$eval(
      `[data-testid=channel-${THRESHOLD}] .fill`,
      (el) => (el as unknown as { style: { width: string } }).style.width,
    );
    expect(width).toBe('60%');
    // INSTANT's payout is in review: its row says so; THRESHOLD waits for nobody.
    expect(await page.textContent(`[data-testid=channel-${INSTANT}] [data-role=review-note]`)).toBe(
      `payout in review · ${reviewId}`,
    );
    expect(await page.isVisible(`[data-testid=channel-${THRESHOLD}] [data-role=review-note]`)).toBe(false);

    const queue = api.queues.find((q) => q.task === 'payout_instant');
    expect(await shown(page, '[data-testid=queue-payout_instant] td:nth-child(2)')).toBe(String(queue?.runnable));
    expect(await shown(page, '[data-testid=host-usdt] dd span')).toBe(`${api.hostWallet.usdt?.amount} USDT`);
    expect(await page.textContent('[data-testid=service-changenow]')).toContain('failing');

    // The chart draws the volume: Chart.js holds a chart on the canvas, its bars the API's basis points.
    const bars = await page.evaluate(
      "(() => { const chart = Chart.getChart(document.querySelector('[data-testid=volume-chart]')); return chart ? chart.data.datasets[0].data : null; })()",
    );
    expect(bars).toEqual(api.volume.buckets.map((b) => b.scaleBps.eth));

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), fullPage: true });
    await page.close();
  });

  it('switches its window between 24 h and 48 h: the overview read again for it, the button of the window shown on', async () => {
    const page = await newPage();
    await signIn(page);
    const on = '.segmented button.active';
    const windowLabel = '[data-testid=payouts-completedInWindow] dt';
    expect(await page.textContent(on)).toBe('24 h');
    expect(await page.textContent(windowLabel)).toBe('completed in 24 h');

    const asked = page.waitForRequest((r) => r.method() === 'GET' && r.url().endsWith('/api/overview?hours=48'));
    await page.click('.segmented button:has-text("48 h")');
    await asked;
    await expect.poll(() => page.textContent(windowLabel)).toBe('completed in 48 h');
    expect(await page.locator(on).allTextContents()).toEqual(['48 h']);
    // The chart is redrawn for the window once the page has rendered it.
    const hours48 = (await payrail.request('GET', '/api/overview?hours=48')).body as Overview;
    expect(hours48.volume.buckets.length).toBeGreaterThan((await overview()).volume.buckets.length);
    await expect
      .poll(() =>
        page.evaluate<number>(
          "Chart.getChart(document.querySelector('[data-testid=volume-chart]')).data.labels.length",
        ),
      )
      .toBe(hours48.volume.buckets.length);

    const back = page.waitForRequest((r) => r.method() === 'GET' && r.url().endsWith('/api/overview?hours=24'));
    await page.click('.segmented button:has-text("24 h")');
    await back;
    await expect.poll(() => page.textContent(windowLabel)).toBe('completed in 24 h');
    expect(await page.locator(on).allTextContents()).toEqual(['24 h']);
    await page.close();
  });

  it('acts on the review queue: confirm first, the API refusal shown as it says it, then the change', async () => {
    const page = await newPage();
    await signIn(page);
    const row = `[data-testid=review-${reviewId}]`;
    await page.waitForSelector(row);

    // Dismissed: nothing is sent.
    await clickDismissed(page, `${row} button[data-action=cancel]`);
    expect((await payrail.request('GET', `/api/payouts/${reviewId}`)).body.status).toBe('needs_review');

    // Approve is not safe from review: 409, and the page shows the API's own words.
    await clickAccepted(page, `${row} button[data-action=approve]`, 'error');
    await expectRefusalShown(page, `/api/payouts/${reviewId}/approve`);
    expect((await payrail.request('GET', `/api/payouts/${reviewId}`)).body.status).toBe('needs_review');

    await clickAccepted(page, `${row} button[data-action=cancel]`, 'ok');
    expect(await page.textContent('[data-testid=notice]')).toBe(`cancel: payout ${reviewId} is now cancelled.`);
    const after = await payrail.request('GET', `/api/payouts/${reviewId}`);
    expect(after.body).toMatchObject({ status: 'cancelled', reason: 'cancelled by admin' });
    // The page reloaded the overview: out of the review queue, shown as cancelled among the payouts.
    await page.waitForSelector(row, { state: 'detached' });
    expect(await shown(page, `[data-testid=payout-${reviewId}] [data-role=state]`)).toBe('cancelled');
    expect((await overview()).review.payouts).toEqual([]);
    await page.close();
  });

  it('retries a conversion in review from the review queue: confirm first, the API refusal shown as it says it, then the change', async () => {
    // In review with no transfer made: a retry ends it as failed, its ETH never having left. No payment is attached,
    // so the release moves none (releasePaymentsIn updates whatever payments are linked, here none).
    const id = 'conv_00000000000000c1';
    // Its transfer is still an intent: its own jobs follow it, so a retry is refused (409).
    const stuck = 'conv_00000000000000c2';
    const insert =
      "insert into conversions (conversion_id, status, from_asset, to_asset, amount_wei, payment_count, reason, updated_at) values ($1, 'needs_review', 'eth', 'usdt', $2, $3, $4, now() - $5::interval)";
    await db.pool.query(insert, [id, '9447800000000000', 2, 'seeded: stage died twice', '10 minutes']);
    await db.pool.query(insert, [stuck, '4723900000000000', 1, 'seeded: transfer unknown', '5 minutes']);
    await db.pool.query(
      "insert into chain_transfers (transfer_id, purpose, ref, asset, from_address, to_address, amount, status) values ('tx_seeded_c2', 'conversion', $1, 'eth', $2, $2, '4723900000000000', 'intent')",
      [stuck, WALLET],
    );
    try {
      const page = await newPage();
      await signIn(page);
      const row = `[data-testid=review-${id}]`;
      const stuckRow = `[data-testid=review-${stuck}]`;
      await page.waitForSelector(row);
      expect(
        (await overview()).review.conversions.map((c) => [
          c.conversionId,
          c.sent,
          c.sentAsset,
          c.paymentCount,
          c.reason,
        ]),
      ).toEqual([
        [id, '0.0094478', 'eth', 2, 'seeded: stage died twice'],
        [stuck, '0.0047239', 'eth', 1, 'seeded: transfer unknown'],
      ]);
      expect(await shown(page, `${row} td:nth-child(3)`)).toBe('0.0094478 ETH');
      expect(await page.textContent(`${row} td:nth-child(4)`)).toBe('seeded: stage died twice');
      expect(await page.textContent(`${row} td:nth-child(5)`)).toBe('10 min');
      // The badge counts the conversions with the payouts (none left in review after the previous test).
      expect(await shown(page, '[data-testid=review] h2 .count')).toBe('2');

      // Dismissed: nothing is sent.
      await clickDismissed(page, `${row} button[data-action=retry]`);
      expect((await payrail.request('GET', `/api/conversions/${id}`)).body.status).toBe('needs_review');

      await clickAccepted(page, `${stuckRow} button[data-action=retry]`, 'error');
      await expectRefusalShown(page, `/api/conversions/${stuck}/retry`);
      expect((await payrail.request('GET', `/api/conversions/${stuck}`)).body.status).toBe('needs_review');

      const asked = await clickAccepted(page, `${row} button[data-action=retry]`, 'ok');
      expect(asked).toContain(`Retry conversion ${id}?`);
      expect(await page.textContent('[data-testid=notice]')).toBe(
        `retry: conversion ${id} is now failed: its ETH never left, its payments go into the next batch.`,
      );
      // The page reloaded the overview: out of the review queue, the refused one still in it.
      await page.waitForSelector(row, { state: 'detached' });
      expect(await page.locator(stuckRow).count()).toBe(1);
      expect(await shown(page, '[data-testid=review] h2 .count')).toBe('1');
      const after = await payrail.request('GET', `/api/conversions/${id}`);
      expect(after.status).toBe(200);
      expect(after.body).toMatchObject({
        status: 'failed',
        reason: expect.stringMatching(/^retried by .+: no transfer was made/),
      });
      expect((await overview()).review.conversions.map((c) => c.conversionId)).toEqual([stuck]);
      await page.close();
    } finally {
      await db.pool.query("delete from chain_transfers where transfer_id = 'tx_seeded_c2'");
      await db.pool.query('delete from conversions where conversion_id = $1', [stuck]);
    }
  });

  it('acts on host-wallet transfers in review: retry, cancel and resolve as never sent, confirm first, refusals as the API says them', async () => {
    // WAITING's 25 USDT are in a batch whose token transfer is in review, its nonce taken; its reason carries markup.
    await saveChannel(payrail, WAITING, usdtThresholdChannel('20'));
    await settleConversion(
      db.db,
      [await sendFinished(payrail, 9_700_000_031, WAITING), await sendFinished(payrail, 9_700_000_032, WAITING)],
      25_000_000n,
    );
    const batch = await seedThresholdBatch(db.db, WAITING, 25_000_000n, 'exchange_created');
    const markup =
      'nonce 41 was taken by a transaction payrail did not sign <img data-canary src=x onerror="document.title=2"><b data-canary>bold</b>';
    const taken = await seedTransfer(db.db, {
      purpose: 'payout',
      ref: batch,
      asset: 'usdt',
      amount: 25_000_000n,
      status: 'needs_review',
      nonce: 41,
      changedAgo: '15 minutes',
      reason: markup,
    });
    // Mined, but the token moved another amount: it was sent, so it can be neither cancelled nor resolved as never sent.
    const mined = await seedTransfer(db.db, {
      purpose: 'payout',
      ref: 'po_00000000000000d2',
      asset: 'usdt',
      amount: 5_000_000n,
      status: 'needs_review',
      nonce: 42,
      blockNumber: 777,
      changedAgo: '10 minutes',
      reason: 'the token moved 4900000 units to the receiver, not the 5000000 asked',
    });
    const neverSent = await seedTransfer(db.db, {
      purpose: 'conversion',
      ref: 'conv_00000000000000d3',
      asset: 'eth',
      amount: 4_723_900_000_000_000n,
      status: 'needs_review',
      nonce: 43,
      changedAgo: '5 minutes',
      reason: 'nonce 43 was taken by a transaction payrail did not sign',
    });
    await seedNetworkFee(db.db, mined, 21_000n * 40_000_000_000n);

    const page = await newPage();
    await signIn(page);
    const row = (id: string) => `[data-testid=review-${id}]`;
    await page.waitForSelector(row(taken));
    const api = await overview();
    expect(api.review.transfers.map((t) => [t.transferId, t.purpose, t.ref, t.amount, t.asset, t.nonce])).toEqual([
      [taken, 'payout', batch, '25', 'usdt', '41'],
      [mined, 'payout', 'po_00000000000000d2', '5', 'usdt', '42'],
      [neverSent, 'conversion', 'conv_00000000000000d3', '0.0047239', 'eth', '43'],
    ]);
    expect(await page.textContent(`${row(taken)} [data-role=for]`)).toBe(`payout ${batch}`);
    expect(await shown(page, `${row(taken)} [data-role=amount]`)).toBe('25 USDT');
    expect(await shown(page, `${row(taken)} [data-role=nonce]`)).toBe('41');
    expect(await page.textContent(`${row(taken)} [data-role=waiting]`)).toBe('15 min');
    // The reason is text, never markup.
    expect(await page.textContent(`${row(taken)} [data-role=reason]`)).toBe(markup);
    expect(await page.$$('[data-canary]')).toEqual([]);
    expect(await shown(page, '[data-testid=review] h2 .count')).toBe(
      String(api.review.payouts.length + api.review.conversions.length + 3),
    );
    expect(await shown(page, '[data-testid=transfers-needs_review] dd')).toBe('3');
    // "Never sent" is offered only where no version was seen mined.
    expect(await page.isVisible(`${row(taken)} button[data-action=resolve]`)).toBe(true);
    expect(await page.isVisible(`${row(mined)} button[data-action=resolve]`)).toBe(false);
    expect(await page.isVisible(`${row(mined)} button[data-action=cancel]`)).toBe(true);
    // The channel's row says its batch waits for a person; the overview carries it.
    expect(api.channels.items.find((c) => c.channelId === WAITING)?.payoutInReview).toEqual({
      payoutId: batch,
      transferId: taken,
      count: 1,
    });
    expect(await page.textContent(`[data-testid=channel-${WAITING}] [data-role=review-note]`)).toBe(
      `payout in review · transfer ${taken} of ${batch} · new payments wait for a person`,
    );
    // Fees against the gas paid, exactly as the API states them.
    expect(api.totals.feesVsNetworkCosts.networkCosts).toBe('0.00084');
    for (const [testid, value] of [
      ['fees', api.totals.feesVsNetworkCosts.fees],
      ['costs', api.totals.feesVsNetworkCosts.networkCosts],
      ['net', api.totals.feesVsNetworkCosts.net],
    ] as const) {
      await expect
        .poll(() => shown(page, `[data-testid=total-network-${testid}-eth]`), { timeout: 15_000, interval: 250 })
        .toBe(value);
    }

    // Resolve as never sent: the confirmation says what the chain must show; dismissed, nothing is sent.
    const asked = await clickDismissed(page, `${row(neverSent)} button[data-action=resolve]`);
    expect(asked).toContain(`Resolve transfer ${neverSent} as never sent?`);
    expect(asked).toContain('The chain must show its nonce used by another transaction');
    expect((await payrail.request('GET', `/api/transfers/${neverSent}`)).body).toMatchObject({
      status: 'needs_review',
      requested: null,
    });

    // Accepted: 202, the worker carries it out; the row shows the request instead of its buttons.
    await clickAccepted(page, `${row(neverSent)} button[data-action=resolve]`, 'ok');
    expect(await page.textContent('[data-testid=notice]')).toBe(
      `resolve: resolve never sent of transfer ${neverSent} requested; the worker carries it out and the review queue shows what came of it.`,
    );
    expect((await payrail.request('GET', `/api/transfers/${neverSent}`)).body).toMatchObject({
      status: 'needs_review',
      requested: { action: 'resolve_never_sent', by: expect.any(String) },
    });
    await expect
      .poll(() => page.textContent(`${row(neverSent)} [data-role=requested]`), { timeout: 15_000, interval: 250 })
      .toMatch(/^resolve never sent requested by .+; the worker carries it out$/);
    // The row's parts are shown and hidden by separate bindings: the buttons may go a moment after the text comes.
    await expect
      .poll(() => page.isVisible(`${row(neverSent)} button[data-action=retry]`), { timeout: 5_000, interval: 100 })
      .toBe(false);

    // Cancel is not safe once a version is mined: 409, and the page shows the API's own words.
    await clickAccepted(page, `${row(mined)} button[data-action=cancel]`, 'error');
    await expectRefusalShown(page, `/api/transfers/${mined}/cancel`);
    expect((await payrail.request('GET', `/api/transfers/${mined}`)).body).toMatchObject({
      status: 'needs_review',
      requested: null,
    });

    // Retry: out of review at once (200), back to watching the chain; the channel waits for nobody any more.
    expect(await clickAccepted(page, `${row(taken)} button[data-action=retry]`, 'ok')).toContain(
      `Retry transfer ${taken}?`,
    );
    await expect
      .poll(() => page.textContent('[data-testid=notice]'), { timeout: 5_000, interval: 100 })
      .toBe(`retry: transfer ${taken} is now broadcast: payrail watches the chain for it again.`);
    expect((await payrail.request('GET', `/api/transfers/${taken}`)).body).toMatchObject({
      status: 'broadcast',
      reason: null,
    });
    await page.waitForSelector(row(taken), { state: 'detached' });
    expect(await page.isVisible(`[data-testid=channel-${WAITING}] [data-role=review-note]`)).toBe(false);
    expect((await overview()).review.transfers.map((t) => t.transferId)).toEqual([mined, neverSent]);
    expect(await page.$$('[data-canary]')).toEqual([]);
    await page.close();
  });

  it('refreshes without a reload', async () => {
    const page = await newPage();
    await signIn(page);
    const before = await shown(page, '[data-testid=total-received-eth]');
    await sendFinished(payrail, 9_700_000_021, INSTANT);
    const expected = (await overview()).totals.received.eth;
    expect(expected).not.toBe(before);
    // Polled from here: waitForFunction would evaluate a string in the page, which its CSP refuses.
    await expect
      .poll(() => shown(page, '[data-testid=total-received-eth]'), { timeout: 15_000, interval: 250 })
      .toBe(expected);
    await page.close();
  });

  it('shows text from the database as text: markup in an alert is never rendered', async () => {
    const markup = '<img data-canary src=x onerror="document.title=1"><b data-canary>bold</b>';
    const id = await insertAlert(db.db, {
      rule: 'exchange_mismatch',
      subject: '<script data-canary>',
      severity: 'warning',
      message: markup,
    });
    const page = await newPage();
    await signIn(page);
    await expect
      .poll(() => page.textContent(`[data-testid=alert-${id}]`), { timeout: 15_000, interval: 250 })
      .toContain(markup);
    expect(await page.$$('[data-canary]')).toEqual([]);
    await page.close();
  });

  it('lists payments in review with what NOWPayments reported and the actions their reason allows; an action from the page takes one out', async () => {
    // Less arrived than was asked (credit or ignore); no such channel (no action here); refunded after its credit
    // (reverse or ignore, both refused while its instant payout job has not run: no worker runs here).
    const partial = {
      ...structuredClone(fixtures.partially_paid),
      payment_id: 9_700_000_041,
      order_id: `PGP-1|${THRESHOLD}`,
    };
    expect(await sendIpn(payrail, partial)).toBe(202);
    expect(await sendIpn(payrail, ipnBody({ payment_id: 9_700_000_042, order_id: `PGP-1|${UNREGISTERED}` }))).toBe(202);
    const refunded = await sendFinished(payrail, 9_700_000_043, INSTANT);
    expect(
      await sendIpn(
        payrail,
        ipnBody({ payment_id: Number(refunded), order_id: `PGP-1|${INSTANT}`, payment_status: 'refunded' }),
      ),
    ).toBe(202);
    const [partialId, unknownId] = ['9700000041', '9700000042'];

    const page = await newPage();
    await signIn(page);
    const row = (id: string) => `[data-testid=review-payment-${id}]`;
    await page.waitForSelector(row(refunded));
    const api = await overview();
    expect(
      api.review.payments.map((p) => [p.paymentId, p.channelId, p.status, p.reason, p.actions, p.credited]),
    ).toEqual([
      [partialId, THRESHOLD, 'partially_paid', 'partially_paid', ['credit', 'ignore'], null],
      [unknownId, UNREGISTERED, 'finished', 'unknown_channel', [], null],
      [
        refunded,
        INSTANT,
        'refunded',
        'refunded_after_credit',
        ['ignore', 'reverse'],
        { asset: 'eth', gross: '0.00487', net: '0.0047239' },
      ],
    ]);
    expect(await shown(page, `${row(partialId)} [data-role=outcome]`)).toBe('0.00294 ETH');
    expect(await shown(page, `${row(partialId)} [data-role=paid]`)).toBe('0.003 of 0.00495 ETH');
    expect(await page.getAttribute(`${row(partialId)} [data-role=paid]`, 'title')).toBe('15 USD');
    expect(await page.textContent(`${row(partialId)} [data-role=reason]`)).toBe('partially_paid');
    expect(await page.textContent(`${row(partialId)} [data-role=channel]`)).toBe(THRESHOLD);
    expect(await shown(page, `${row(refunded)} [data-role=credited]`)).toBe('0.0047239 ETH net');
    // Each row offers what its reason allows, and nothing else.
    const offered = async (id: string) => {
      const out: string[] = [];
      for (const action of ['credit', 'ignore', 'reverse'])
        if (await page.isVisible(`${row(id)} button[data-action=${action}]`)) out.push(action);
      return out;
    };
    expect(await offered(partialId)).toEqual(['credit', 'ignore']);
    expect(await offered(unknownId)).toEqual([]);
    expect(await page.textContent(`${row(unknownId)} [data-role=no-action]`)).toBe(
      'register the channel: its payments are released then',
    );
    expect(await offered(refunded)).toEqual(['ignore', 'reverse']);
    const inQueue = api.review.payouts.length + api.review.conversions.length + api.review.transfers.length;
    expect(await shown(page, '[data-testid=review] h2 .count')).toBe(String(inQueue + 3));
    expect(await shown(page, '[data-testid=payments-inReview] dd')).toBe('3');

    // Credit, dismissed: nothing is sent. The confirmation names the amount a credit books.
    const asked = await clickDismissed(page, `${row(partialId)} button[data-action=credit]`);
    expect(asked).toContain(`Credit payment ${partialId} with its partial outcome, 0.00294 ETH?`);
    expect((await payrail.request('GET', `/api/payments/${partialId}`)).body).toMatchObject({
      reviewReason: 'partially_paid',
      creditedAt: null,
    });

    // Reverse is refused while the instant payout job has not run: 409, the page shows the API's own words.
    await clickAccepted(page, `${row(refunded)} button[data-action=reverse]`, 'error');
    await expectRefusalShown(page, `/api/payments/${refunded}/reverse`);
    expect((await payrail.request('GET', `/api/payments/${refunded}`)).body).toMatchObject({
      reviewReason: 'refunded_after_credit',
      reversedAt: null,
    });

    // Credit, accepted: booked once, out of review; the page reloads and the row is gone. It posts the reason the row
    // shows, so the API refuses it if the reason changed since the page read it.
    const posted = page.waitForRequest(
      (r) => r.method() === 'POST' && r.url().endsWith(`/api/payments/${partialId}/credit`),
    );
    await clickAccepted(page, `${row(partialId)} button[data-action=credit]`, 'ok');
    expect((await posted).postDataJSON()).toEqual({ expectedReason: 'partially_paid' });
    expect(await page.textContent('[data-testid=notice]')).toBe(
      `credit: payment ${partialId} left review (credit by admin).`,
    );
    expect((await payrail.request('GET', `/api/payments/${partialId}`)).body).toMatchObject({
      reviewReason: null,
      grossAmount: '0.00294',
      reviewAction: { action: 'credit', by: 'admin' },
    });
    await page.waitForSelector(row(partialId), { state: 'detached' });
    expect(await page.locator(row(refunded)).count()).toBe(1);
    expect((await overview()).review.payments.map((p) => p.paymentId)).toEqual([unknownId, refunded]);
    await page.close();
  });

  it('pays a channel now from its row: the confirmation names the amount, the new batch is shown, the button is off while it is open', async () => {
    const page = await newPage();
    await signIn(page);
    const row = (id: string) => `[data-testid=channel-${id}]`;
    const button = (id: string) => `${row(id)} button[data-action=payout]`;
    await page.waitForSelector(button(THRESHOLD));
    const before = (await overview()).channels.items;
    expect(before.find((c) => c.channelId === THRESHOLD)).toMatchObject({
      availableUsdt: '30',
      openBatch: null,
      canPayNow: true,
    });
    expect(await page.isEnabled(button(THRESHOLD))).toBe(true);
    // Off where the API would refuse, and the title says why: no USDT (INSTANT), a batch open (WAITING's, in review).
    expect(await page.isDisabled(button(INSTANT))).toBe(true);
    expect(await page.getAttribute(button(INSTANT), 'title')).toBe('no USDT available (ETH waits for its conversion)');
    const waiting = before.find((c) => c.channelId === WAITING);
    expect(await page.isDisabled(button(WAITING))).toBe(true);
    expect(await page.getAttribute(button(WAITING), 'title')).toBe(
      `batch ${waiting?.openBatch?.payoutId} is open (exchange_created)`,
    );
    expect(await page.textContent(`${row(WAITING)} [data-role=open-batch]`)).toBe(
      `batch ${waiting?.openBatch?.payoutId} · exchange_created`,
    );

    // Dismissed: nothing is sent.
    const asked = await clickDismissed(page, button(THRESHOLD));
    expect(asked).toContain(
      `Pay channel ${THRESHOLD} now? Its whole available USDT (30 USDT when this page last read it) goes out in one batch`,
    );
    expect((await payrail.request('GET', `/api/payouts?channelId=${THRESHOLD}&kind=threshold`)).body.payouts).toEqual(
      [],
    );

    await clickAccepted(page, button(THRESHOLD), 'ok');
    const batches = (await payrail.request('GET', `/api/payouts?channelId=${THRESHOLD}&kind=threshold`)).body.payouts;
    expect(batches).toMatchObject([{ status: 'pending', asset: 'usdt', amount: '30' }]);
    const batch = batches[0].payoutId as string;
    expect(await page.textContent('[data-testid=notice]')).toBe(
      `pay now: channel ${THRESHOLD}: batch ${batch} opened for 30 USDT (pending).`,
    );
    // The page reloaded the overview: the batch is open, listed among the payouts, and the button is off.
    await page.waitForSelector(`${button(THRESHOLD)}:disabled`);
    expect(await page.textContent(`${row(THRESHOLD)} [data-role=open-batch]`)).toBe(`batch ${batch} · pending`);
    expect(await page.getAttribute(button(THRESHOLD), 'title')).toBe(`batch ${batch} is open (pending)`);
    expect(await shown(page, `[data-testid=payout-${batch}] [data-role=state]`)).toBe('pending');
    expect((await overview()).channels.items.find((c) => c.channelId === THRESHOLD)).toMatchObject({
      availableUsdt: '0',
      reserved: { usdt: '30' },
      canPayNow: false,
    });
    await page.close();
  });

  it("shows the API's 409 when another operator paid the channel after the page read it", async () => {
    await saveChannel(payrail, ELSEWHERE, usdtThresholdChannel('100'));
    await settleConversion(db.db, [await sendFinished(payrail, 9_700_000_051, ELSEWHERE)], 14_500_000n);
    const page = await newPage();
    await signIn(page, { held: true });
    const button = `[data-testid=channel-${ELSEWHERE}] button[data-action=payout]`;
    await page.waitForSelector(button);
    expect(await page.isEnabled(button)).toBe(true);

    // Paid through the API meanwhile: the page still shows 14.5 USDT and no batch.
    const elsewhere = await payrail.request('POST', `/api/channels/${ELSEWHERE}/payout`);
    expect(elsewhere.status).toBe(201);
    expect(await page.isEnabled(button)).toBe(true);

    page.once('dialog', (dialog) => void dialog.accept());
    await page.click(button);
    // Clicked on the stale page: its clock may run again (Alpine shows the notice on the next animation frame, and a
    // refresh from here on reads the same state the answer came from).
    await page.clock.resume();
    await page.waitForSelector('[data-testid=notice].error');
    const refused = await expectRefusalShown(page, `/api/channels/${ELSEWHERE}/payout`);
    expect(refused.body.error).toBe(
      `cannot pay channel ${ELSEWHERE} now: batch ${elsewhere.body.payoutId} is open (pending): it pays the channel's balance when it runs`,
    );
    // One batch, the other operator's; the page read the overview again after the answer and shows it.
    expect(
      (await payrail.request('GET', `/api/payouts?channelId=${ELSEWHERE}&kind=threshold`)).body.payouts.map(
        (p: { payoutId: string }) => p.payoutId,
      ),
    ).toEqual([elsewhere.body.payoutId]);
    await page.waitForSelector(`${button}:disabled`);
    expect(await page.textContent(`[data-testid=channel-${ELSEWHERE}] [data-role=open-batch]`)).toBe(
      `batch ${elsewhere.body.payoutId} · pending`,
    );
    await page.close();
  });

  it("a top-up's credit confirmation names the difference the credit books, not the partial's outcome", async () => {
    const partial: Record<string, unknown> = {
      ...structuredClone(fixtures.partially_paid),
      payment_id: 9_700_000_061,
      order_id: `PGP-1|${THRESHOLD}`,
    };
    const id = String(partial.payment_id);
    expect(await sendIpn(payrail, partial)).toBe(202);
    expect((await payrail.request('POST', `/api/payments/${id}/credit`)).status).toBe(200);
    expect(
      await sendIpn(
        payrail,
        ipnBody({ payment_id: partial.payment_id, invoice_id: partial.invoice_id, order_id: partial.order_id }),
      ),
    ).toBe(202);
    const page = await newPage();
    await signIn(page);
    const row = `[data-testid=review-payment-${id}]`;
    await page.waitForSelector(row);
    expect(await page.textContent(`${row} [data-role=reason]`)).toBe(
      'top_up: credited 0.00294 eth; a later finished IPN says 0.00487 eth (0.00193 eth more)',
    );
    const asked = await clickDismissed(page, `${row} button[data-action=credit]`);
    expect(asked).toContain(
      `Credit payment ${id} with the rest of its top-up, 0.00193 ETH (the 0.00294 ETH credited stays as booked)?`,
    );
    expect((await payrail.request('GET', `/api/payments/${id}`)).body).toMatchObject({
      grossAmount: '0.00294',
      reviewReason: expect.stringMatching(/^top_up: /),
    });
    expect((await payrail.request('POST', `/api/payments/${id}/ignore`)).status).toBe(200);
    await page.close();
  });

  it("shows a channel's statement for the last 30 days when its id is clicked, and saves its CSV fetched with the token", async () => {
    const page = await newPage();
    await signIn(page);
    const asked: Array<{ url: URL; authorization: string | undefined }> = [];
    page.on('request', (request) => {
      if (request.url().includes('/statement?'))
        asked.push({ url: new URL(request.url()), authorization: request.headers().authorization });
    });
    await page.click(`[data-testid=channel-${THRESHOLD}] [data-role=open-statement]`);
    await page.waitForSelector('[data-testid=statement-usdt]');
    const json = asked[0] as { url: URL; authorization: string | undefined };
    expect(json.url.pathname).toBe(`/api/channels/${THRESHOLD}/statement`);
    expect(json.authorization).toBe(`Bearer ${ADMIN_TOKEN}`);
    const from = json.url.searchParams.get('from') as string;
    const to = json.url.searchParams.get('to') as string;
    expect(Date.parse(to) - Date.parse(from)).toBe(30 * 86_400_000);
    const range = new URLSearchParams({ from, to }).toString();

    // What the page shows is what the API answers for the same range.
    const api = (await payrail.request('GET', `/api/channels/${THRESHOLD}/statement?${range}`)).body as {
      assets: Array<{
        asset: string;
        opening: { total: string };
        closing: { total: string };
        [list: string]: unknown;
      }>;
    };
    expect(await page.textContent('[data-testid=statement] [data-role=title]')).toBe(`Channel ${THRESHOLD}`);
    for (const a of api.assets) {
      const box = `[data-testid=statement-${a.asset}]`;
      expect(await shown(page, `${box} [data-role=opening]`)).toBe(a.opening.total);
      expect(await shown(page, `${box} [data-role=closing]`)).toBe(a.closing.total);
      const items = ['payments', 'conversions', 'payouts', 'other'].flatMap(
        (list) => a[list] as Array<{ kind: string; id: string; amount: string }>,
      );
      expect(await page.locator(`${box} tbody tr`).count()).toBe(items.length);
      for (const x of items)
        expect(await shown(page, `[data-testid=statement-item-${a.asset}-${x.kind}-${x.id}] [data-role=amount]`)).toBe(
          x.amount,
        );
    }
    // THRESHOLD's history here: its payments and its conversion at least (earlier tests may have added more).
    expect(await page.locator('[data-testid=statement-eth] tbody tr').count()).toBeGreaterThanOrEqual(4);
    expect(await page.locator('[data-testid=statement-usdt] tbody tr').count()).toBeGreaterThanOrEqual(1);
    expect(await page.textContent('[data-testid=statement-usdt] [data-role=check]')).toMatch(
      /^checked against the ledger: /,
    );
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.locator('[data-testid=statement]').screenshot({ path: path.join(ARTIFACTS, 'dashboard-statement.png') });

    // The download: fetched with the token (no cookie would carry it), saved as the API's CSV for the same range.
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.click('[data-testid=statement] [data-role=download]'),
    ]);
    expect(download.suggestedFilename()).toBe(`statement-${THRESHOLD}-${from.slice(0, 10)}-${to.slice(0, 10)}.csv`);
    const saved = fs.readFileSync(await download.path(), 'utf8');
    const csv = await fetch(`${payrail.url}/api/channels/${THRESHOLD}/statement?${range}&format=csv`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(saved).toBe(await csv.text());
    const csvAsked = asked.find((r) => r.url.searchParams.get('format') === 'csv');
    expect(csvAsked?.authorization).toBe(`Bearer ${ADMIN_TOKEN}`);

    await page.click('[data-testid=statement] [data-role=close]');
    await page.waitForSelector('[data-testid=statement]', { state: 'hidden' });
    await page.close();
  });

  it("pages a long statement: Load more appends the next page's lines, each once, until the last; a failed page keeps the lines shown; opening it again starts from the first page", async () => {
    const page = await newPage();
    await signIn(page);
    // The dashboard's own page size, as its statement card states it: two pages of it and a few lines more.
    const size = Number(await page.getAttribute('[data-testid=statement]', 'data-page-size'));
    expect(size).toBeGreaterThanOrEqual(1);
    const count = 2 * size + 7;
    await saveChannel(payrail, PAGED, usdtThresholdChannel('1000000'));
    // Each payment is one ETH line (no conversion runs here: no worker); sent a few at a time.
    for (let start = 0; start < count; start += 20)
      await Promise.all(
        Array.from({ length: Math.min(20, count - start) }, (_, i) =>
          sendFinished(payrail, 9_700_100_000 + start + i, PAGED),
        ),
      );
    await page.waitForSelector(`[data-testid=channel-${PAGED}] [data-role=open-statement]`, { timeout: 15_000 });

    const asked: URL[] = [];
    page.on('request', (request) => {
      if (request.url().includes('/statement?')) asked.push(new URL(request.url()));
    });
    const rows = '[data-testid=statement-eth] tbody tr';
    const loadMore = '[data-testid=statement] [data-role=load-more]';
    const ids = () =>
      page.locator(rows).evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-testid') ?? ''), undefined);
    await page.click(`[data-testid=channel-${PAGED}] [data-role=open-statement]`);
    await page.waitForSelector(loadMore, { state: 'visible' });
    const first = asked[0] as URL;
    expect(first.searchParams.get('limit')).toBe(String(size));
    expect(first.searchParams.has('after')).toBe(false);
    const from = first.searchParams.get('from') as string;
    const to = first.searchParams.get('to') as string;

    // The API's pages of the same range, walked here: what the page must end up showing, in this order.
    type Paged = {
      assets: Array<{
        asset: string;
        opening: { total: string };
        closing: { total: string };
        payments: Array<{ id: string }>;
      }>;
      page: { lines: number; hasMore: boolean; next: string | null };
    };
    const pages: Paged[] = [];
    for (let after: string | null = null; pages.length === 0 || after !== null;) {
      const query = new URLSearchParams({ from, to, limit: String(size), ...(after !== null && { after }) });
      const res = await payrail.request('GET', `/api/channels/${PAGED}/statement?${query}`);
      expect(res.status).toBe(200);
      pages.push(res.body as Paged);
      after = (res.body as Paged).page.next;
    }
    expect(pages.map((p) => p.page.lines)).toEqual([size, size, 7]);
    const eth = (p: Paged) => p.assets.find((a) => a.asset === 'eth') as Paged['assets'][number];
    const expected = pages.flatMap((p) => eth(p).payments.map((x) => `statement-item-eth-payment-${x.id}`));
    expect(new Set(expected).size).toBe(count);

    const totals = async () => [
      await shown(page, '[data-testid=statement-eth] [data-role=opening]'),
      await shown(page, '[data-testid=statement-eth] [data-role=closing]'),
    ];
    const whole = [eth(pages[0] as Paged).opening.total, eth(pages[0] as Paged).closing.total];
    expect(await totals()).toEqual(whole);
    expect(await ids()).toEqual(expected.slice(0, size));
    expect(await page.textContent('[data-testid=statement] [data-role=lines]')).toBe(
      `showing the first ${size} lines of this range · Load more reads the next ${size}; the CSV has them all`,
    );
    expect(await page.textContent('[data-testid=statement-usdt] [data-role=none]')).toBe(
      'None among the lines read so far.',
    );

    // The next page refused (a cursor the server never handed out): the error is shown, the lines stay, and the
    // same Load more asks again.
    const tampered = (url: URL) => url.searchParams.has('after');
    await page.route(tampered, (route) => {
      const url = new URL(route.request().url());
      url.searchParams.set('after', 'not-a-cursor');
      return route.continue({ url: url.toString() });
    });
    await page.click(loadMore);
    await page.waitForSelector('[data-testid=statement] [data-role=more-error]', { state: 'visible' });
    const refused = await payrail.request(
      'GET',
      `/api/channels/${PAGED}/statement?${new URLSearchParams({ from, to, limit: String(size), after: 'not-a-cursor' })}`,
    );
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatch(/^after: /);
    expect(await page.textContent('[data-testid=statement] [data-role=more-error]')).toBe(
      `Load more failed: ${refused.body.error}`,
    );
    expect(await ids()).toEqual(expected.slice(0, size));
    expect(await page.isVisible(loadMore)).toBe(true);
    await page.unroute(tampered);

    await page.click(loadMore);
    await expect.poll(() => page.locator(rows).count(), { timeout: 15_000, interval: 100 }).toBe(2 * size);
    expect(await page.isVisible('[data-testid=statement] [data-role=more-error]')).toBe(false);
    expect(await page.isVisible(loadMore)).toBe(true);
    await page.click(loadMore);
    await page.waitForSelector(loadMore, { state: 'hidden' });

    // Every line once, in booking order; the totals are the first page's, for the whole range.
    expect(await ids()).toEqual(expected);
    expect(await totals()).toEqual(whole);
    expect(await page.textContent('[data-testid=statement] [data-role=lines]')).toBe(
      `showing all ${count} lines of this range`,
    );
    expect(await page.textContent('[data-testid=statement-usdt] [data-role=none]')).toBe(
      'Nothing moved in this range.',
    );
    // Each page after the first asked with the cursor of the one before it, for the same range and size.
    const more = asked.filter((url) => url.searchParams.has('after'));
    expect(more.map((url) => url.searchParams.get('after'))).toEqual([
      pages[0]?.page.next,
      pages[0]?.page.next,
      pages[1]?.page.next,
    ]);
    for (const url of more)
      expect([url.searchParams.get('from'), url.searchParams.get('to'), url.searchParams.get('limit')]).toEqual([
        from,
        to,
        String(size),
      ]);

    // Opened again: a new range up to now, read from its first page.
    const before = asked.length;
    await page.click(`[data-testid=channel-${PAGED}] [data-role=open-statement]`);
    await page.waitForSelector(loadMore, { state: 'visible' });
    const again = asked[before] as URL;
    expect(again.searchParams.has('after')).toBe(false);
    expect(again.searchParams.get('to')).not.toBe(to);
    expect(await page.locator(rows).count()).toBe(size);
    await page.close();
  });

  it('shows the webhook endpoints with the deliveries that failed or keep failing, and retries a failed one', async () => {
    const down = await startReceiver();
    const busy = await startReceiver();
    down.answer(500);
    busy.answer(503);
    try {
      const channel = {
        payoutStrategy: 'instant',
        payoutCurrency: 'eth',
        payoutNetwork: 'eth',
      };
      await saveChannel(payrail, HOOKED, { ...channel, walletAddress: WALLET });
      const register = async (url: string, eventTypes: string[]) => {
        const res = await payrail.request('POST', '/api/webhook-endpoints', { body: { url, eventTypes } });
        expect(res.status).toBe(201);
        return res.body as { id: string; secret: string };
      };
      const gone = await register(`${down.url}?gone=1`, ['payout.completed']);
      expect((await payrail.request('DELETE', `/api/webhook-endpoints/${gone.id}`)).status).toBe(200);
      // Its query stands for a key of the platform's own: the page shows origin and path only.
      const failing = await register(`${down.url}?key=${QUERY_KEY}`, ['payout.completed', 'channel.wallet_changed']);
      await saveChannel(payrail, HOOKED, { ...channel, walletAddress: OTHER_WALLET });
      // A first attempt (500), then given up once its 1 ms window has passed.
      await expect
        .poll(
          async () => {
            await dispatch();
            return (await deliveriesOf(failing.id)).map((d) => [d.eventType, d.status]);
          },
          { timeout: 15_000, interval: 100 },
        )
        .toEqual([['channel.wallet_changed', 'failed']]);
      const [given] = (await deliveriesOf(failing.id)) as [DeliveryView];
      expect(given).toMatchObject({
        subject: `channel:${HOOKED}`,
        attempts: 1,
        lastStatus: 500,
        lastError: 'HTTP 500',
      });

      // Within a long window the other endpoint's delivery is tried again and again: pending, failing all the same.
      const retrying = await register(busy.url, ['payment.received']);
      expect(
        await sendIpn(
          payrail,
          ipnBody({ payment_id: 9_700_000_071, order_id: `PGP-1|${HOOKED}`, payment_status: 'waiting' }),
        ),
      ).toBe(200);
      await expect
        .poll(
          async () => {
            await dispatch({ retryWindowMs: 600_000 });
            return (await deliveriesOf(retrying.id))[0]?.attempts ?? 0;
          },
          { timeout: 15_000, interval: 100 },
        )
        .toBeGreaterThanOrEqual(3);
      const [stuck] = (await deliveriesOf(retrying.id)) as [DeliveryView];
      expect(stuck).toMatchObject({ eventType: 'payment.received', status: 'pending', lastError: 'HTTP 503' });

      const page = await newPage();
      await signIn(page);
      const endpoint = (id: string, part = '') => `[data-testid=webhook-${id}${part}]`;
      const delivery = (id: string, eventId: string, part = '') =>
        `[data-testid=webhook-delivery-${id}-${eventId}${part}]`;
      await page.waitForSelector(endpoint(failing.id));
      expect(await page.textContent('[data-testid=webhooks-caption]')).toBe(
        '2 endpoints · 2 failing · 1 deleted, not shown',
      );
      expect(await page.locator(endpoint(gone.id)).count()).toBe(0);
      expect(await page.textContent(endpoint(failing.id, '-url'))).toBe(down.url);
      expect(await page.textContent(endpoint(failing.id, '-types'))).toBe('2 event types');
      expect(await page.getAttribute(endpoint(failing.id, '-types'), 'title')).toBe(
        'channel.wallet_changed, payout.completed',
      );
      const counts = async (id: string) =>
        Promise.all(
          ['pending', 'delivered', 'failed'].map(async (c) => (await page.textContent(endpoint(id, `-${c}`)))?.trim()),
        );
      expect(await counts(failing.id)).toEqual(['0', '0', '1']);
      expect(await page.isVisible(endpoint(failing.id, '-badge'))).toBe(true);
      const row = (part = '') => delivery(failing.id, given.eventId, part);
      expect(await page.textContent(row('-type'))).toBe('channel.wallet_changed');
      expect(await page.textContent(row('-subject'))).toBe(`channel:${HOOKED}`);
      expect(await page.textContent(row('-state'))).toBe('failed');
      expect(await page.textContent(row('-attempts'))).toBe('1');
      expect(await page.textContent(row('-last'))).toBe('HTTP 500');
      expect(await page.textContent(row('-at'))).toBe(utcText(given.recentAttempts[0]?.at));
      expect(await page.isVisible(row('-retry'))).toBe(true);
      // Pending, failing three attempts in a row or more: shown failing, nothing to retry yet.
      expect(await counts(retrying.id)).toEqual(['1', '0', '0']);
      expect(await page.isVisible(endpoint(retrying.id, '-badge'))).toBe(true);
      const stuckRow = (part = '') => delivery(retrying.id, stuck.eventId, part);
      expect(await page.textContent(stuckRow('-state'))).toBe('retrying');
      expect(await page.textContent(stuckRow('-attempts'))).toBe(String(stuck.attempts));
      expect(await page.textContent(stuckRow('-last'))).toBe('HTTP 503');
      expect(await page.isVisible(stuckRow('-retry'))).toBe(false);
      // No secret anywhere: not the endpoints' (the API never returns them), not the query of a URL.
      const html = await page.content();
      for (const secret of [failing.secret, retrying.secret, QUERY_KEY, 'whsec_']) expect(html).not.toContain(secret);
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      await page.locator('[data-testid=webhooks]').screenshot({ path: path.join(ARTIFACTS, 'dashboard-webhooks.png') });

      // A second page keeps what it read: its Retry comes after the first page's and is refused (409) as the API says.
      const stale = await newPage();
      await signIn(stale, { held: true });
      await stale.waitForSelector(row('-retry'));

      // The receiver is fixed: Retry, confirmed, sent with the token; the delivery is pending again, afresh.
      down.answer(200);
      const posted = page.waitForRequest(
        (r) =>
          r.method() === 'POST' &&
          r.url().endsWith(`/api/webhook-endpoints/${failing.id}/deliveries/${given.eventId}/retry`),
      );
      const asked = await clickAccepted(page, row('-retry'), 'ok');
      expect((await posted).headers().authorization).toBe(`Bearer ${ADMIN_TOKEN}`);
      expect(asked).toContain(`Send event ${given.eventId} (channel.wallet_changed) to ${down.url} again?`);
      expect(await page.textContent('[data-testid=notice]')).toBe(
        `retry: the delivery of event ${given.eventId} (channel.wallet_changed) to ${down.url} is pending again; the dispatcher sends it next.`,
      );
      expect((await deliveriesOf(failing.id))[0]).toMatchObject({ status: 'pending', attempts: 0 });
      await expect.poll(() => counts(failing.id), { timeout: 15_000, interval: 250 }).toEqual(['1', '0', '0']);

      stale.once('dialog', (dialog) => void dialog.accept());
      await stale.click(row('-retry'));
      await stale.clock.resume();
      await stale.waitForSelector('[data-testid=notice].error');
      expect(await stale.textContent('[data-testid=notice]')).toBe(
        `cannot retry the delivery of event ${given.eventId}: it has not failed`,
      );
      await stale.close();

      // Dispatched again: delivered on its first fresh attempt; the card shows it and no longer lists it.
      await dispatch({ retryWindowMs: 600_000 });
      expect((await deliveriesOf(failing.id))[0]).toMatchObject({ status: 'delivered', attempts: 1, lastStatus: 200 });
      expect(down.acknowledged.map((r) => r.event.id)).toEqual([given.eventId]);
      await expect.poll(() => counts(failing.id), { timeout: 15_000, interval: 250 }).toEqual(['0', '1', '0']);
      await page.waitForSelector(row(), { state: 'detached' });
      expect(await page.isVisible(endpoint(failing.id, '-badge'))).toBe(false);
      expect(await page.isVisible(endpoint(retrying.id, '-badge'))).toBe(true);
      expect(await page.textContent('[data-testid=webhooks-caption]')).toBe(
        '2 endpoints · 1 failing · 1 deleted, not shown',
      );
      await page.close();

      // These calls failing shows in the card only; the rest of the page is read and shown as ever.
      const broken = await newPage();
      await broken.route('**/api/webhook-endpoints', (route) =>
        route.fulfill({
          status: 429,
          contentType: 'application/json',
          body: JSON.stringify({ error: 'seeded: too many requests' }),
        }),
      );
      await signIn(broken);
      await broken.waitForSelector('[data-testid=webhooks-error]', { state: 'visible' });
      expect(await broken.textContent('[data-testid=webhooks-error]')).toMatch(
        /^Webhooks not updated since .+: seeded: too many requests$/,
      );
      expect(await broken.getAttribute('[data-testid=status]', 'class')).toContain('live');
      expect(await broken.locator(`[data-testid=channel-${HOOKED}]`).count()).toBe(1);
      expect(await broken.locator(endpoint(failing.id)).count()).toBe(0);
      // Answering again: the next refresh fills the card and takes the error away.
      await broken.unroute('**/api/webhook-endpoints');
      await broken.waitForSelector(endpoint(failing.id), { timeout: 15_000 });
      expect(await broken.isVisible('[data-testid=webhooks-error]')).toBe(false);
      await broken.close();
    } finally {
      await down.close();
      await busy.close();
    }
  });

  it('ran under its CSP without a violation or an error', () => {
    expect(problems).toEqual([]);
  });
});
