/**
 * `payrail demo` as a user runs it: the real CLI as its own process, on its own embedded PostgreSQL, anvil and
 * ChangeNow and NOWPayments simulators; every payment is bought through payrail's checkout and paid in the NOWPayments
 * simulator. Small counts keep each run to well under a minute. Each run gets a --time-limit well below its
 * vitest timeout, so a run that does not finish fails with the demo's own diagnosis (what is still open, from the
 * tables), not with vitest's timeout.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { alive, runPayrail, type PayrailProcess } from '../support/process.ts';

const running: PayrailProcess[] = [];
const dataDirs: string[] = [];

function demo(args: string[]): PayrailProcess {
  const proc = runPayrail(['demo', ...args], {});
  running.push(proc);
  return proc;
}

/** The data dir the demo announced (so a failed run's leftovers can be cleaned up). */
function announcedDataDir(output: string): string | undefined {
  return /^ {2}data {6}(\S+) /m.exec(output)?.[1];
}

afterAll(() => {
  for (const proc of running) {
    if (proc.child.exitCode === null) proc.child.kill('SIGKILL');
    const dir = announcedDataDir(proc.output());
    if (dir) dataDirs.push(dir);
  }
  for (const dir of dataDirs) {
    // A run killed mid-way leaves its detached PostgreSQL: stop it before removing its files.
    const pidFile = path.join(dir, 'pg', 'postmaster.pid');
    if (fs.existsSync(pidFile)) {
      const pid = Number.parseInt(fs.readFileSync(pidFile, 'utf8').split('\n')[0] ?? '', 10);
      if (Number.isInteger(pid) && alive(pid)) process.kill(pid, 'SIGQUIT');
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** Seconds from the first purchase; startup (PostgreSQL, anvil) and shutdown fit in the rest of the vitest timeout. */
const TIME_LIMIT_S = 90;

/**
 * The figures every successful run must show. A threshold channel's closing payment is bought only once its earlier
 * payments are converted, so every payment ends in a completed payout, none left waiting below a threshold.
 */
function expectEverythingPaid(output: string, payments: number): { ipns: number } {
  // Through checkout: one invoice per purchase (a replayed answer made none), each paid, each credit confirmed.
  expect(output).toMatch(
    new RegExp(
      `created +${payments} for ${payments} purchases, priced \\d+\\.\\d{2} USD; \\d+ answers asked for again with the same key: replayed, no second invoice`,
    ),
  );
  const [, ipns] =
    new RegExp(
      `paid +${payments} in the NOWPayments simulator, which forwarded each outcome to the host wallet and sent payrail (\\d+) signed IPNs`,
    ).exec(output) ?? [];
  // At least waiting, confirming and finished for every payment.
  expect(Number(ipns)).toBeGreaterThanOrEqual(3 * payments);
  expect(output).toMatch(
    new RegExp(
      `confirmed +${payments} payments confirmed with NOWPayments' API \\(GET /v1/payment/\\{id\\}\\) before their credit`,
    ),
  );
  expect(output).toMatch(
    new RegExp(
      `every payment on an invoice checkout created, credited once +yes +\\(${payments} of ${payments} payments match their invoice, on ${payments} of ${payments} invoices; ${payments} payment_received journals\\)`,
    ),
  );
  expect(output).toMatch(
    new RegExp(`every credit confirmed with NOWPayments' API first +yes +\\(${payments} of ${payments} payments\\)`),
  );
  expect(output).toMatch(
    new RegExp(`every IPN the simulator sent recorded by payrail +yes +\\(${ipns} recorded of ${ipns} sent\\)`),
  );
  expect(output).toMatch(new RegExp(`received +${payments} of ${payments} bought`));
  expect(output).toMatch(
    new RegExp(
      `paid out +${payments} of ${payments} payments are in a completed payout; none converted and waiting below a channel's threshold`,
    ),
  );
  expect(output).toMatch(
    new RegExp(
      `== summary: done \\d+\\.\\d s after the first purchase .*: every payment paid out \\(${payments}\\); every payout completed ==`,
    ),
  );
  expect(output).toMatch(
    new RegExp(
      `every payment received, and paid out or waiting below threshold +yes +\\(${payments} paid out \\+ 0 waiting of ${payments} payments\\)`,
    ),
  );
  expect(output).toMatch(/every payout completed +yes/);
  expect(output).toMatch(/threshold batches paid \+ USDT waiting == that USDT +yes/);
  expect(output).toMatch(
    /every channel balance below its threshold, == its waiting USDT +yes +\(0\.000000 USDT on 0 channels/,
  );
  // Every check line says yes; none says NO.
  const checks = output.slice(output.indexOf('\nchecks\n'), output.indexOf('\nledger check'));
  expect(checks.split('\n').filter((l) => l.startsWith('  ')).length).toBeGreaterThanOrEqual(12);
  expect(checks).not.toMatch(/ NO /);
  expect(output).toMatch(/ledger check \(payrail check-ledger\): OK: \d+ accounts, \d+ journals, \d+ entries/);
  expect(output).toMatch(/host wallet on chain == ledger \(check-ledger --chain\) +yes +\(ETH equal, USDT equal\)/);
  expect(output).toMatch(/payouts +(\d+) of \1 completed/);
  expect(output).toMatch(/on-chain transactions from the host wallet \(chain_transfers\): [1-9]\d*/);
  expect(output).toMatch(/ChangeNow exchanges: (\d+) .*the simulator counted \1/);
  // Cost per payment, per strategy, from the ledger: every payment in one strategy's line, each figure per asset.
  expect(output).toContain('cost per payment (from the ledger: fees booked, gas paid, what ChangeNow kept;');
  const strategyPayments = [...output.matchAll(/^ {2}(threshold|instant): (\d+) payments, \d+ ChangeNow exchanges/gm)];
  expect(strategyPayments.map((m) => m[1])).toEqual(['threshold', 'instant']);
  expect(strategyPayments.reduce((sum, m) => sum + Number(m[2]), 0)).toBe(payments);
  expect(output).toMatch(new RegExp(`^ {2}all: ${payments} payments, \\d+ ChangeNow exchanges`, 'm'));
  for (const figure of ['fees', 'gas', 'exchange costs', 'margin'])
    expect(output).toMatch(new RegExp(`^ {4}${figure} +-?\\d+(\\.\\d+)? ETH +per 1,000: -?\\d+(\\.\\d+)? ETH$`, 'm'));
  expect(output).toMatch(/cost lines' gas \(ledger\) == the host wallet's transfers' gas +yes/);
  // Amounts are exact decimals, never in a float's exponent form.
  expect(output).not.toMatch(/\d[eE][+-]?\d+ (ETH|USDT|USD|BTC|SOL)\b/);
  // Progress: lines while it ran (not a terminal: one line per update), ending with completion.
  const progress = output.split('\n').filter((l) => /^\[ *\d+\.\d s\] invoices \d+\//.test(l));
  expect(progress.length).toBeGreaterThanOrEqual(2);
  expect(progress.at(-1)).toMatch(
    new RegExp(
      `invoices ${payments}/${payments} \\(${payments} paid\\) \\| credited ${payments}/${payments} .*paid out ${payments}/${payments} .*, 0 waiting below threshold \\| done: every payment paid out, every payout completed`,
    ),
  );
  expect(output).toMatch(/dashboard +http:\/\/127\.0\.0\.1:\d+\/ +\(web role of this payrail; admin token: \S+\)/);
  return { ipns: Number(ipns) };
}

describe('payrail demo', () => {
  it('rejects bad options with exit code 64 and a message naming them', async () => {
    const cases = [
      [['--payments', 'lots'], '--payments must be a whole number'],
      [['--channels', '1'], '--channels must be between 2 and 100'],
      [['--paymnets', '5'], "Unknown option '--paymnets'"],
      [['--payments', '2', '--channels', '8'], '--payments must be at least 4'],
      [['--exit', 'now'], "Unexpected argument 'now'"],
      // A directory with something in it: the figures must be this run's alone.
      [['--data-dir', path.dirname(fileURLToPath(import.meta.url))], 'is not empty'],
    ] as const;
    // Side by side: each is a whole CLI start, and none starts anything.
    const runs = cases.map(([args]) => demo([...args]));
    for (const [i, [, message]] of cases.entries()) {
      const proc = runs[i] as PayrailProcess;
      expect(await proc.exited, proc.output()).toBe(64);
      expect(proc.output()).toContain(message);
    }
  });

  it(
    '--payments 30 --exit: every payment paid out, the ledger balanced, progress shown',
    { timeout: 150_000 },
    async () => {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'payrail-demo-test-'));
      dataDirs.push(dataDir);
      fs.chmodSync(dataDir, 0o755);
      const proc = demo([
        '--payments',
        '30',
        '--seed',
        '11',
        '--exit',
        '--time-limit',
        String(TIME_LIMIT_S),
        '--data-dir',
        dataDir,
      ]);
      const code = await proc.exited;
      const output = proc.output();
      expect(code, output).toBe(0);
      // This seed's plan resends some IPNs and delivers some out of order: more than three per payment arrived.
      expect(expectEverythingPaid(output, 30).ipns).toBeGreaterThan(3 * 30);
      expect(output).toContain('CONVERSION_MIN_USD=20');
      // Given with --data-dir: kept, with payrail's log in it; its PostgreSQL stopped.
      expect(fs.existsSync(path.join(dataDir, 'payrail.log'))).toBe(true);
      expect(fs.existsSync(path.join(dataDir, 'pg', 'postmaster.pid'))).toBe(false);
    },
  );

  it(
    'gives up after --time-limit with exit 1, saying from the tables what is still open',
    { timeout: 120_000 },
    async () => {
      const proc = demo(['--payments', '20', '--channels', '4', '--time-limit', '1', '--exit']);
      const code = await proc.exited;
      const output = proc.output();
      expect(code, output).toBe(1);
      expect(output).toContain(
        'the time limit of 1 s passed before every payout completed. Still open, from the tables:',
      );
      // Open work named by table and state, e.g. "3 payouts exchange_created" or "12 purchases have no invoice yet".
      expect(output).toMatch(
        /\n {2}\d+ (payouts \w+|conversions \w+|threshold payments wait|purchases have no|closing purchases|payments have no finished|finished payments wait|converted payments wait)/,
      );
      // A failed run keeps its data for a look (afterAll removes it).
      const dataDir = announcedDataDir(output) as string;
      expect(output).toContain(`data kept in ${dataDir}`);
      expect(fs.existsSync(path.join(dataDir, 'payrail.log'))).toBe(true);
    },
  );

  it(
    '--outage: checkout and intake go on while ChangeNow is down, everything completes after; then serves until Ctrl-C',
    { timeout: 150_000 },
    async () => {
      const proc = demo(['--payments', '24', '--channels', '4', '--outage', '--time-limit', String(TIME_LIMIT_S)]);
      // Without --exit it keeps payrail up after the summary: the printed URL and token work, then SIGINT ends it.
      const deadline = Date.now() + 140_000;
      while (!proc.output().includes('Ctrl-C to stop') && proc.child.exitCode === null && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 200));
      const output = proc.output();
      expect(proc.child.exitCode, output).toBe(null);
      expectEverythingPaid(output, 24);
      expect(output).toMatch(/ChangeNow DOWN \(--outage, back in \d+ s\)/);
      expect(output).toMatch(/ChangeNow back up after \d+ s down/);
      // IPNs kept being answered and recorded while ChangeNow was down (the outage starts halfway through the stream).
      expect(output).toMatch(
        /ChangeNow outage: down for \d+\.\d s; [1-9]\d* payments were received and recorded meanwhile/,
      );
      const firstDown = output.split('\n').find((l) => l.includes('ChangeNow DOWN'));
      expect(firstDown).toMatch(/invoices \d+\/24/);

      const [, url, token] =
        /dashboard +(http:\/\/\S+)\/ +\(web role of this payrail; admin token: (\S+)\)/.exec(output) ?? [];
      const payouts = await fetch(`${url}/api/payouts`, { headers: { authorization: `Bearer ${token}` } });
      expect(payouts.status).toBe(200);

      const dataDir = announcedDataDir(output) as string;
      expect(fs.existsSync(dataDir)).toBe(true);

      // payrail's own tables, read directly while it still runs: every payment came through an invoice its checkout
      // created (channel, user, order id and price as asked, by the admin token), one payment per invoice, credited
      // once after NOWPayments' API confirmed it, each of its IPNs recorded (three statuses at least).
      const [, pgPort] = /PostgreSQL (\d+),/.exec(output) ?? [];
      const { password } = JSON.parse(fs.readFileSync(path.join(dataDir, 'embedded-pg.json'), 'utf8')) as {
        password: string;
      };
      const client = new pg.Client({
        host: '127.0.0.1',
        port: Number(pgPort),
        user: 'postgres',
        password,
        database: 'payrail',
      });
      await client.connect();
      try {
        const { rows } = await client.query<Record<string, number>>(
          `select (select count(*)::int from payments) as payments,
                  (select count(*)::int from invoices) as invoices,
                  (select count(*)::int from payments p join invoices i on i.invoice_id = p.invoice_id::text
                    where i.created_by = 'admin' and p.channel_id = i.channel_id and p.user_id = i.user_id
                      and p.order_id = i.order_id and p.price_amount = i.price_usd) as on_their_invoice,
                  (select count(distinct invoice_id)::int from payments) as invoices_paid,
                  (select count(*)::int from payments where credited_at is not null and confirmed_at is not null) as confirmed_credits,
                  (select count(*)::int from ledger_journals j join payments p on p.payment_id::text = j.ref
                    where j.kind = 'payment_received') as credit_journals,
                  (select coalesce(sum(ipn_count), 0)::int from payments) as ipns`,
        );
        expect(rows[0]).toMatchObject({
          payments: 24,
          invoices: 24,
          on_their_invoice: 24,
          invoices_paid: 24,
          confirmed_credits: 24,
          credit_journals: 24,
        });
        expect(rows[0]?.ipns).toBeGreaterThanOrEqual(3 * 24);
      } finally {
        await client.end();
      }

      proc.child.kill('SIGINT');
      expect(await proc.exited).toBe(0);
      // A temp dir of its own: removed at exit.
      expect(fs.existsSync(dataDir)).toBe(false);
    },
  );
});
