/**
 * The overview as aligned text for a terminal (`payrail status`). Amounts are the overview's decimal strings,
 * aligned on their decimal point by padding, never reformatted through a number.
 */
import type { AssetAmounts, ChannelRow, ChannelsView, Overview, ReviewQueue, Totals } from './types.ts';

type Align = 'left' | 'right' | 'decimal';

/** Columns padded to their widest cell; `decimal` columns line up on the point. */
export function table(rows: readonly string[][], align: readonly Align[], indent = '  '): string[] {
  const cells = rows.map((row) => [...row]);
  align.forEach((mode, col) => {
    if (mode !== 'decimal') return;
    const parts = cells.map((row) => splitDecimal(row[col] ?? ''));
    const whole = Math.max(0, ...parts.map((p) => p.whole.length));
    const fraction = Math.max(0, ...parts.map((p) => p.fraction.length));
    cells.forEach((row, i) => {
      const p = parts[i] as { whole: string; fraction: string };
      row[col] = p.whole.padStart(whole) + p.fraction.padEnd(fraction);
    });
  });
  const widths = align.map((_, col) => Math.max(0, ...cells.map((row) => (row[col] ?? '').length)));
  return cells.map(
    (row) =>
      indent +
      row
        .map((cell, col) => (align[col] === 'left' ? cell.padEnd(widths[col] ?? 0) : cell.padStart(widths[col] ?? 0)))
        .join('  ')
        .trimEnd(),
  );
}

/** "12.5 ETH" → whole "12", fraction ".5 ETH": the point is where columns meet. */
function splitDecimal(text: string): { whole: string; fraction: string } {
  const match = /^(-?[0-9]+)(.*)$/.exec(text);
  if (!match) return { whole: text, fraction: '' };
  const rest = match[2] ?? '';
  return { whole: match[1] ?? '', fraction: rest.startsWith('.') ? rest : rest === '' ? '' : rest };
}

export function age(seconds: number | null): string {
  if (seconds === null) return '-';
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h${String(minutes % 60).padStart(2, '0')}m`;
  return `${Math.floor(hours / 24)}d${String(hours % 24).padStart(2, '0')}h`;
}

const amounts = (a: AssetAmounts) => Object.entries(a).map(([asset, text]) => `${text} ${asset.toUpperCase()}`);
const clip = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);
const spaced = (key: string) => key.replace(/_/g, ' ');

function counts(record: Record<string, number>): string {
  return Object.entries(record)
    .map(([key, n]) => `${spaced(key)} ${n}`)
    .join(' · ');
}

/** A channel's payout waiting for a person, as its row says it. */
function inReview(waiting: ChannelRow['payoutInReview']): string {
  if (waiting === null) return '';
  const more = waiting.count > 1 ? ` (+${waiting.count - 1} more)` : '';
  return waiting.transferId === null
    ? `payout ${waiting.payoutId} in review${more}`
    : `payout ${waiting.payoutId}: transfer ${waiting.transferId} in review${more}`;
}

export function formatStatus(o: Overview): string {
  const out = [
    `payrail status · ${o.generatedAt.replace('T', ' ').slice(0, 19)} UTC · window ${o.windowHours} h`,
    ...totalsSection(o.totals),
    ...pipelineSection(o),
    ...queuesSection(o.queues),
    ...alertsSection(o.alerts),
    ...walletAndServicesSection(o),
    ...reviewSection(o),
    ...channelsSection(o.channels),
  ];
  return `${out.join('\n')}\n`;
}

/** A section: a blank line, its title, its lines. */
const section = (title: string, lines: string[]): string[] => ['', title, ...lines];

function totalsSection(t: Totals): string[] {
  const rows: string[][] = [];
  const add = (label: string, values: string[]) => values.forEach((v, i) => rows.push([i === 0 ? label : '', v]));
  add('received', amounts(t.received));
  add('platform fees', amounts(t.platformFees));
  const gas = t.feesVsNetworkCosts;
  add('network costs paid', [`${gas.networkCosts} ${gas.asset.toUpperCase()}`]);
  add('fees less network costs', [`${gas.net} ${gas.asset.toUpperCase()}`]);
  add(`converted (${t.converted.count})`, [
    ...amounts(t.converted.sent).map((v) => `${v} sent`),
    ...amounts(t.converted.received).map((v) => `${v} received`),
  ]);
  add('paid out', amounts(t.paidOut));
  add('in flight', amounts(t.inFlight.total));
  add('  of it in payouts', amounts(t.inFlight.reserved));
  add('  of it converting', amounts(t.inFlight.converting));
  return section('TOTALS', table(rows, ['left', 'decimal']));
}

function pipelineSection(o: Overview): string[] {
  const payments = o.pipeline.payments;
  const { completedInWindow, ...payoutStates } = o.pipeline.payouts;
  const rows = [
    [
      'payments',
      counts({
        awaiting_conversion: payments.awaitingConversion,
        in_conversion: payments.inConversion,
        awaiting_payout: payments.awaitingPayout,
        in_review: payments.inReview,
        [`received_in_${o.windowHours}_h`]: payments.receivedInWindow,
      }),
    ],
    ['conversions', counts(o.pipeline.conversions)],
    ['payouts', counts({ ...payoutStates, [`completed_in_${o.windowHours}_h`]: completedInWindow })],
    ['transfers', counts(o.pipeline.transfers)],
  ];
  return section('PIPELINE', table(rows, ['left', 'left']));
}

function queuesSection(queues: Overview['queues']): string[] {
  const rows = queues.map((q) => [
    q.task,
    String(q.runnable),
    String(q.running),
    String(q.failed),
    age(q.oldestRunnableAgeSeconds),
  ]);
  return section(
    'QUEUES',
    table([['task', 'runnable', 'running', 'failed', 'oldest'], ...rows], ['left', 'right', 'right', 'right', 'right']),
  );
}

function alertsSection(alerts: Overview['alerts']): string[] {
  const rows = alerts.items.map((a) => [
    a.severity === 'critical' ? 'CRITICAL' : 'warning',
    a.rule,
    clip(a.subject, 40),
    clip(a.message, 80),
    age(a.ageSeconds),
  ]);
  return section(`ALERTS (${alerts.open} open)`, [
    ...(alerts.items.length === 0 ? ['  none'] : []),
    ...table(rows, ['left', 'left', 'left', 'left', 'right']),
    ...(alerts.open > alerts.items.length ? [`  … and ${alerts.open - alerts.items.length} more`] : []),
  ]);
}

function walletAndServicesSection(o: Overview): string[] {
  const wallet = (['eth', 'usdt'] as const).map((asset) => {
    const b = o.hostWallet[asset];
    if (b === null) return [`host wallet ${asset.toUpperCase()}`, 'not observed', ''];
    return [
      `host wallet ${asset.toUpperCase()}`,
      b.amount === null ? `unknown${b.detail ? ` (${clip(b.detail, 60)})` : ''}` : `${b.amount} ${asset.toUpperCase()}`,
      `${age(b.ageSeconds)} ago`,
    ];
  });
  const services = o.services.map((s) => [
    s.name,
    `${s.ok ? 'ok' : 'FAILING'}${s.detail ? ` (${clip(s.detail, 60)})` : ''}`,
    `${age(s.ageSeconds)} ago`,
  ]);
  return section('HOST WALLET AND SERVICES', table([...wallet, ...services], ['left', 'left', 'right']));
}

/** Everything waiting for a person: payouts, conversions, transfers, then payments, each kind its own table. */
function reviewSection(o: Overview): string[] {
  const review = o.review;
  const listed = (n: number, noun: string) => (n > 0 ? `, ${n} ${noun}` : '');
  // Payments are counted whole (the pipeline's count): the list stops at 100, and unknown channels can pile up more.
  const paymentsInReview = o.pipeline.payments.inReview;
  const title = `REVIEW QUEUE (${review.payouts.length} payouts${listed(review.conversions.length, 'conversions')}${listed(review.transfers.length, 'transfers')}${listed(paymentsInReview, 'payments')})`;
  const nothing =
    review.payouts.length === 0 &&
    review.conversions.length === 0 &&
    review.transfers.length === 0 &&
    review.payments.length === 0;
  return section(title, [
    ...(nothing ? ['  nothing waits for a person'] : []),
    ...payoutsTable(review.payouts),
    ...conversionsTable(review.conversions),
    ...transfersTable(review.transfers),
    ...paymentsTable(review.payments),
    ...(paymentsInReview > review.payments.length
      ? [`  … and ${paymentsInReview - review.payments.length} more payments`]
      : []),
  ]);
}

function payoutsTable(payouts: ReviewQueue['payouts']): string[] {
  return table(
    payouts.map((p) => [
      p.payoutId,
      p.status,
      `${p.amount} ${p.asset.toUpperCase()}`,
      p.channelId,
      age(p.waitingSeconds),
      clip(p.reason ?? '', 70),
    ]),
    ['left', 'left', 'decimal', 'left', 'right', 'left'],
  );
}

// One table per kind, like payoutsTable: the columns and their alignment differ, a shared one would hide which is which.
function conversionsTable(conversions: ReviewQueue['conversions']): string[] {
  return table(
    conversions.map((c) => [
      c.conversionId,
      'needs_review',
      `${c.sent} ${c.sentAsset.toUpperCase()}`,
      `${c.paymentCount} payments`,
      age(c.waitingSeconds),
      clip(c.reason ?? '', 70),
    ]),
    ['left', 'left', 'decimal', 'right', 'right', 'left'],
  );
}

function transfersTable(transfers: ReviewQueue['transfers']): string[] {
  return table(
    transfers.map((t) => [
      t.transferId,
      'needs_review',
      `${t.amount} ${t.asset.toUpperCase()}`,
      `${t.purpose} ${t.ref}`,
      `nonce ${t.nonce ?? '-'}`,
      age(t.waitingSeconds),
      // A request the worker has not carried out yet is what happens next: it comes before the reason.
      clip(
        `${t.requested ? `${spaced(t.requested.action)} requested by ${t.requested.by ?? 'unknown'}; ` : ''}${t.reason ?? ''}`,
        90,
      ),
    ]),
    ['left', 'left', 'decimal', 'left', 'left', 'right', 'left'],
  );
}

function paymentsTable(payments: ReviewQueue['payments']): string[] {
  return table(
    payments.map((p) => [
      `payment ${p.paymentId}`,
      p.status,
      // What a credit would book where the reason allows one (a top-up's difference, not the partial's outcome), else
      // NOWPayments' outcome; paid is what the payer sent, in their currency.
      p.creditable
        ? `${p.creditable.amount} ${p.creditable.asset.toUpperCase()}`
        : `${p.reported.outcomeAmount} ${p.reported.outcomeCurrency.toUpperCase()}`,
      `paid ${p.reported.actuallyPaid} of ${p.reported.payAmount} ${p.reported.payCurrency.toUpperCase()}`,
      p.channelId,
      age(p.waitingSeconds),
      p.actions.length === 0 ? 'no action' : p.actions.join('/'),
      clip(p.reason, 70),
    ]),
    ['left', 'left', 'decimal', 'left', 'left', 'right', 'left', 'left'],
  );
}

function channelsSection(channels: ChannelsView): string[] {
  const shown = channels.total > channels.items.length ? `, ${channels.items.length} shown` : '';
  const rows = channels.items.map((c) => [
    c.channelId,
    c.strategy,
    `${c.availableUsdt} USDT`,
    c.thresholdUsd === null ? '' : `of ${c.thresholdUsd}`,
    c.fillBps === null ? '' : `${Math.floor(c.fillBps / 100)}%`,
    `${c.pendingEth} ETH pending`,
    inReview(c.payoutInReview),
  ]);
  return section(
    `CHANNELS (${channels.total}, ${channels.atThreshold} at threshold${shown})`,
    table(rows, ['left', 'left', 'decimal', 'left', 'right', 'decimal', 'left']),
  );
}
