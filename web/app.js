/*
 * payrail's operator dashboard. Reads GET /api/overview with the admin token (kept in sessionStorage, so it leaves
 * with the tab), refreshes it every few seconds, calls the payout, conversion, transfer and payment actions of the
 * review queue, pays a channel now, and shows a channel's statement for the last 30 days, a page of lines at a time
 * with Load more (and its whole CSV, fetched with the token and saved from a Blob: there are no cookies for a plain
 * link to carry), and the platform's webhook endpoints with the deliveries that failed, each with a Retry (their own
 * calls: a failure of those stays in its card).
 *
 * Money stays text: every amount is shown as the decimal string the API gave, grouped by string operations, never
 * turned into a number. The chart draws the API's exact basis-point scale (`scaleBps`), not amounts.
 */
(() => {
  'use strict';

  const TOKEN_KEY = 'payrail.adminToken';
  const REFRESH_MS = 5000;
  /*
   * What the action buttons may act on (a button's data-kind): the id a button must carry, the API path, each
   * action's confirmation ({id}, and {amount}: the button's data-amount, the figure the page shows), what an action
   * posts (`bodies`; none by default), and how its success reads (`done`; else the subject's new status). A button
   * naming anything else sends nothing. `bindsReason`: the action also posts the review reason its row shows (the
   * button's data-reason) as `expectedReason`, so the API refuses it if the reason changed since the page read it.
   */
  const SUBJECTS = {
    payout: {
      idRe: /^p[ob]_[0-9a-f]{16}$/,
      path: 'payouts',
      actions: {
        retry: 'Retry payout {id}? It resumes from where it stopped.',
        approve: 'Approve payout {id}? It will be exchanged and sent.',
        cancel: "Cancel payout {id}? Its funds go back to the channel's balance.",
      },
      outcomes: {},
    },
    conversion: {
      idRe: /^conv_[0-9a-f]{16}$/,
      path: 'conversions',
      actions: {
        retry:
          'Retry conversion {id}? If its ETH never left, it ends and its payments go into the next batch; if it was sent, ChangeNow is asked about it again.',
      },
      // A retried conversion "is now failed" when it worked: say what that means for its payments.
      outcomes: {
        failed: 'its ETH never left, its payments go into the next batch',
        sent: 'ChangeNow is asked about it again',
      },
    },
    transfer: {
      idRe: /^tr_[0-9a-f]{16}$/,
      path: 'transfers',
      actions: {
        retry: 'Retry transfer {id}? It leaves review and payrail watches the chain for it again.',
        cancel:
          'Cancel transfer {id}? The worker signs a zero-value transaction to the host wallet at its nonce; the transfer fails only once the chain mines that cancel and none of its own versions.',
        resolve:
          'Resolve transfer {id} as never sent? The chain must show its nonce used by another transaction, and none of its own versions mined: the worker checks both and refuses otherwise. Only then does the transfer fail, and what it was paying is paid again.',
      },
      // The only resolution a button offers: "mined" needs the paying transaction's hash (POST it with the API).
      bodies: { resolve: { outcome: 'never_sent' } },
      outcomes: { broadcast: 'payrail watches the chain for it again' },
    },
    payment: {
      idRe: /^[1-9][0-9]{0,19}$/,
      path: 'payments',
      actions: {
        credit:
          "Credit payment {id} with {amount}? It is booked once, as a finished payment would be: the fee split, then its conversion or payout. Where payrail asks NOWPayments' API, it is booked only once the API confirms the payment (otherwise it comes back in review as payment_unconfirmed).",
        ignore:
          'Ignore payment {id}? Its review closes and nothing is booked or undone: uncredited it stays uncredited, credited it stays as it was booked.',
        reverse:
          "Reverse payment {id}'s credit ({amount} net to its channel)? NOWPayments refunded it: the credit is taken back while its money is still on the channel's available balance; if it has moved on, payrail refuses and says where it went (ignore then closes the review, the credit kept as booked).",
        recheck:
          "Ask NOWPayments again about payment {id}? It leaves review and waits for NOWPayments' check with a fresh deadline: credited only if NOWPayments' API now agrees with the IPN, back in review otherwise.",
      },
      // What a person decides on is the reason shown: a refund can turn a top-up into refunded_after_credit meanwhile.
      bindsReason: true,
      // A payment's status is NOWPayments' (partially_paid stays partially_paid): what changed is that it left review.
      done: (body, id, action) =>
        action === 'recheck'
          ? `recheck: payment ${id} left review; NOWPayments is asked again, and its answer credits it or puts it back in review.`
          : `${action}: payment ${id} left review (${body.reviewAction ? `${body.reviewAction.action} by ${body.reviewAction.by}` : action}).`,
      outcomes: {},
    },
    channel: {
      idRe: /^-?[1-9][0-9]{0,19}$/,
      path: 'channels',
      actions: {
        payout:
          "Pay channel {id} now? Its whole available USDT ({amount} when this page last read it) goes out in one batch, whatever its threshold. Below ChangeNow's minimum the batch is held and tried again, like any batch.",
      },
      // 201 with the batch: its id is what the operator follows in the payouts list.
      done: (body, id) =>
        `pay now: channel ${id}: batch ${body.payoutId} opened for ${groupDigits(body.amount)} ${upper(body.asset)} (${body.status}).`,
      outcomes: {},
    },
  };

  /** The label of each action's button; the ones that undo or end something are drawn as dangerous. */
  const BUTTON_LABELS = {
    retry: 'Retry',
    approve: 'Approve',
    cancel: 'Cancel',
    resolve: 'Resolve: never sent',
    credit: 'Credit',
    ignore: 'Ignore',
    reverse: 'Reverse',
    recheck: 'Recheck',
    payout: 'Pay now',
  };
  const DANGEROUS_ACTIONS = ['cancel', 'resolve', 'reverse'];

  /**
   * A row's action buttons, one for each action of its kind in the order SUBJECTS lists them (the markup draws them
   * through `actionButton`). `all` applies to every button, `each` to the action it names: whether it is shown,
   * the amount its confirmation names, the review reason it binds, whether it is off and why.
   */
  function actionButtons(kind, id, all = {}, each = {}) {
    return Object.keys(SUBJECTS[kind].actions).map((action) => ({
      kind,
      action,
      id,
      label: BUTTON_LABELS[action],
      cls: DANGEROUS_ACTIONS.includes(action) ? 'danger' : '',
      shown: true,
      amount: null,
      reason: null,
      disabled: false,
      title: null,
      ...all,
      ...each[action],
    }));
  }

  /**
   * The bindings of every action button (the markup's x-bind="actionButton"), given once: each row's x-for names its
   * button `b`, this binds each of b's fields to the attribute it fills, and act() reads them from the button. Each
   * button sits in a span led by a space: x-for puts nothing between the elements it repeats, and that space is the
   * gap the buttons have always had between them.
   */
  const ACTION_BUTTON = Object.fromEntries(
    Object.entries({
      ':class': 'cls',
      'x-show': 'shown',
      ':data-kind': 'kind',
      ':data-action': 'action',
      ':data-id': 'id',
      ':data-reason': 'reason',
      ':data-amount': 'amount',
      ':disabled': 'disabled',
      ':title': 'title',
      'x-text': 'label',
    }).map(([directive, field]) => [
      directive,
      // Not an arrow: Alpine calls it with the button's scope as `this`, where `b` is the row's button.
      function binding() {
        return this.b[field];
      },
    ]),
  );

  // --- formatting: strings in, strings out ----------------------------------------------------------------------

  /** "17892810.992358" → "17,892,810.992358", by string operations only. */
  function groupDigits(decimal) {
    if (typeof decimal !== 'string') return '–';
    const [whole, fraction] = decimal.split('.');
    const sign = whole.startsWith('-') ? '-' : '';
    const digits = sign ? whole.slice(1) : whole;
    const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    return sign + grouped + (fraction === undefined ? '' : `.${fraction}`);
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return '–';
    if (seconds < 60) return `${seconds} s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours} h ${minutes % 60} min`;
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  }

  const upper = (asset) => String(asset).toUpperCase();
  /** "awaitingConversion", "needs_review" → "awaiting conversion", "needs review". */
  const label = (key) =>
    key
      .replace(/_/g, ' ')
      .replace(/([a-z])([A-Z])/g, '$1 $2')
      .toLowerCase();
  const percentOf = (bps) => `${Math.floor(bps / 100)}.${String(bps % 100).padStart(2, '0')} %`;

  // --- the API's overview as the page shows it ------------------------------------------------------------------

  function amountLines(prefix, amounts, caption = '') {
    return Object.entries(amounts).map(([asset, text]) => ({
      key: `${caption}${asset}`,
      caption,
      asset: upper(asset),
      text: groupDigits(text),
      testid: `${prefix}-${asset}`,
    }));
  }

  function totalsView(t) {
    return [
      {
        key: 'received',
        label: 'Received',
        testid: 'total-received',
        lines: amountLines('total-received', t.received),
      },
      { key: 'fees', label: 'Platform fees', testid: 'total-fees', lines: amountLines('total-fees', t.platformFees) },
      {
        key: 'network',
        label: 'Fees vs network costs',
        testid: 'total-network',
        lines: [
          ...amountLines(
            'total-network-fees',
            { [t.feesVsNetworkCosts.asset]: t.feesVsNetworkCosts.fees },
            'fees earned',
          ),
          ...amountLines(
            'total-network-costs',
            { [t.feesVsNetworkCosts.asset]: t.feesVsNetworkCosts.networkCosts },
            'gas paid',
          ),
          ...amountLines('total-network-net', { [t.feesVsNetworkCosts.asset]: t.feesVsNetworkCosts.net }, 'net'),
        ],
      },
      {
        key: 'converted',
        label: `Converted (${t.converted.count})`,
        testid: 'total-converted',
        lines: [
          ...amountLines('total-converted-sent', t.converted.sent, 'sent'),
          ...amountLines('total-converted-received', t.converted.received, 'got'),
        ],
      },
      { key: 'paid', label: 'Paid out', testid: 'total-paid', lines: amountLines('total-paid', t.paidOut) },
      {
        key: 'flight',
        label: 'In flight',
        testid: 'total-inflight',
        lines: [
          ...amountLines('total-available', t.inFlight.available, 'available'),
          ...amountLines('total-converting', t.inFlight.converting, 'of which converting'),
          ...amountLines('total-reserved', t.inFlight.reserved, 'in payouts'),
        ],
      },
    ];
  }

  function countsView(prefix, counts, attention, hours) {
    return Object.entries(counts).map(([key, value]) => ({
      key,
      label: key.endsWith('InWindow') ? `${label(key.slice(0, -'InWindow'.length))} in ${hours} h` : label(key),
      value: String(value),
      cls: value > 0 && attention.includes(key) ? 'attention' : value === 0 ? 'zero' : '',
      testid: `${prefix}-${key}`,
    }));
  }

  function pipelineView(p, hours) {
    return [
      { key: 'payments', label: 'Payments', counts: countsView('payments', p.payments, ['inReview'], hours) },
      {
        key: 'conversions',
        label: 'Conversions',
        counts: countsView('conversions', p.conversions, ['failed', 'needs_review'], hours),
      },
      {
        key: 'payouts',
        label: 'Payouts',
        counts: countsView('payouts', p.payouts, ['failed', 'needs_review', 'awaiting_approval'], hours),
      },
      { key: 'transfers', label: 'Transfers', counts: countsView('transfers', p.transfers, ['needs_review'], hours) },
    ];
  }

  function payoutView(p, prefix) {
    return {
      ...p,
      testid: `${prefix}-${p.payoutId}`,
      stateClass: `state-${p.status}`,
      amountText: groupDigits(p.amount),
      assetText: upper(p.asset),
      destination: `${upper(p.payoutCurrency)} on ${p.payoutNetwork}`,
      reasonText: p.reason ?? '',
      age: age(p.ageSeconds),
      inState: age(p.inStateSeconds),
      waiting: age(p.waitingSeconds),
    };
  }

  /** A channel's payout waiting for a person, as its row says it (the overview's `payoutInReview`). */
  function reviewNote(c) {
    const w = c.payoutInReview;
    if (w === null) return '';
    const which = w.transferId === null ? w.payoutId : `transfer ${w.transferId} of ${w.payoutId}`;
    const more = w.count > 1 ? ` (+${w.count - 1} more)` : '';
    // A threshold channel gets no new batch while one is open: what it earns waits for the same person.
    return `payout in review · ${which}${more}${c.strategy === 'threshold' ? ' · new payments wait for a person' : ''}`;
  }

  function channelView(c) {
    const hasThreshold = c.fillBps !== null;
    return {
      ...c,
      testid: `channel-${c.channelId}`,
      hasThreshold,
      // The fill is drawn at most full; the label tells how far past the threshold a channel is.
      fillStyle: { width: hasThreshold ? `${Math.min(c.fillBps, 10000) / 100}%` : '0%' },
      fillClass: hasThreshold && c.fillBps >= 10000 ? 'full' : '',
      barLabel: hasThreshold
        ? `${groupDigits(c.availableUsdt)} / ${groupDigits(c.thresholdUsd)} USDT · ${percentOf(c.fillBps)}`
        : `${groupDigits(c.availableUsdt)} USDT available`,
      pendingEthText: groupDigits(c.pendingEth),
      destination: `${upper(c.payoutCurrency)} on ${c.payoutNetwork}`,
      reviewNote: reviewNote(c),
      rowClass: c.payoutInReview === null ? '' : 'waiting',
      buttons: actionButtons('channel', c.channelId, {
        amount: `${groupDigits(c.availableUsdt)} USDT`,
        disabled: !c.canPayNow,
        // Why the button is off, from the same two facts the API checks (it answers 409 if they changed since).
        title: c.canPayNow
          ? `pay ${groupDigits(c.availableUsdt)} USDT now`
          : c.openBatch !== null
            ? `batch ${c.openBatch.payoutId} is open (${c.openBatch.status})`
            : 'no USDT available (ETH waits for its conversion)',
      }),
      openBatchText: c.openBatch === null ? '' : `batch ${c.openBatch.payoutId} · ${c.openBatch.status}`,
    };
  }

  /**
   * What a payment's credit books, as its confirmation names it: the API's `creditable` (a partial's outcome, or a
   * top-up's difference to the credit, never the partial's outcome again).
   */
  function creditText(p) {
    if (p.creditable === null || p.creditable === undefined) return '';
    const amount = `${groupDigits(p.creditable.amount)} ${upper(p.creditable.asset)}`;
    if (!p.reason.startsWith('top_up') || p.credited === null) return `its partial outcome, ${amount}`;
    return `the rest of its top-up, ${amount} (the ${groupDigits(p.credited.gross)} ${upper(p.credited.asset)} credited stays as booked)`;
  }

  /** What a payment in review shows: NOWPayments' figures as stated, and the actions its reason allows. */
  function reviewPaymentView(p) {
    const r = p.reported;
    const noAction = p.reason.startsWith('unknown_channel')
      ? 'register the channel: its payments are released then'
      : 'no action';
    return {
      ...p,
      testid: `review-payment-${p.paymentId}`,
      outcomeText: groupDigits(r.outcomeAmount),
      outcomeAsset: upper(r.outcomeCurrency),
      paidText: `${groupDigits(r.actuallyPaid)} of ${groupDigits(r.payAmount)} ${upper(r.payCurrency)}`,
      priceText: `${groupDigits(r.priceAmount)} ${upper(r.priceCurrency)}`,
      creditedText: p.credited === null ? '–' : `${groupDigits(p.credited.net)} ${upper(p.credited.asset)} net`,
      buttons: actionButtons(
        'payment',
        p.paymentId,
        { reason: p.reason },
        {
          credit: { shown: p.actions.includes('credit'), amount: creditText(p) },
          ignore: { shown: p.actions.includes('ignore') },
          reverse: {
            shown: p.actions.includes('reverse'),
            amount: p.credited === null ? '' : `${groupDigits(p.credited.net)} ${upper(p.credited.asset)}`,
          },
          recheck: { shown: p.actions.includes('recheck') },
        },
      ),
      noActionText: p.actions.length === 0 ? noAction : '',
      waiting: age(p.waitingSeconds),
    };
  }

  function outsideView(o) {
    const wallet = ['eth', 'usdt'].map((asset) => {
      const b = o.hostWallet[asset];
      return {
        key: `host-${asset}`,
        label: `Host wallet ${upper(asset)}`,
        text:
          b === null
            ? 'not observed yet'
            : b.amount === null
              ? `unknown${b.detail ? ` (${b.detail})` : ''}`
              : `${groupDigits(b.amount)} ${upper(asset)}`,
        age: b === null ? '' : `${age(b.ageSeconds)} ago`,
        cls: b === null ? 'zero' : b.ok ? '' : 'attention',
        testid: `host-${asset}`,
      };
    });
    const services = o.services.map((s) => ({
      key: s.name,
      label: label(s.name),
      text: `${s.ok ? 'ok' : 'failing'}${s.detail ? ` · ${s.detail}` : ''}`,
      age: `${age(s.ageSeconds)} ago`,
      cls: s.ok ? '' : 'attention',
      testid: `service-${s.name}`,
    }));
    return [...wallet, ...services];
  }

  function present(o) {
    const review = o.review.payouts.map((p) => ({
      ...payoutView(p, 'review'),
      buttons: actionButtons('payout', p.payoutId),
    }));
    const reviewConversions = o.review.conversions.map((c) => ({
      ...c,
      testid: `review-${c.conversionId}`,
      sentText: groupDigits(c.sent),
      assetText: upper(c.sentAsset),
      reasonText: c.reason ?? '',
      waiting: age(c.waitingSeconds),
      buttons: actionButtons('conversion', c.conversionId),
    }));
    const reviewTransfers = o.review.transfers.map((t) => ({
      ...t,
      testid: `review-${t.transferId}`,
      forText: `${t.purpose} ${t.ref}`,
      amountText: groupDigits(t.amount),
      assetText: upper(t.asset),
      nonceText: t.nonce ?? '–',
      // The hash shortened in the cell, whole in its tooltip.
      txHashText: t.txHash === null ? '–' : `${t.txHash.slice(0, 10)}…${t.txHash.slice(-6)}`,
      txHashTitle: t.txHash ?? '',
      reasonText: t.reason ?? '',
      lastErrorText: t.lastError === null ? '' : `last error: ${t.lastError}`,
      requestedText:
        t.requested === null
          ? ''
          : `${label(t.requested.action)} requested by ${t.requested.by ?? 'unknown'}; the worker carries it out`,
      // While a request waits for the worker, every other action is refused: no buttons until it is carried out.
      buttons: actionButtons(
        'transfer',
        t.transferId,
        { shown: t.requested === null },
        // "Never sent" needs a nonce someone else used and none of its versions seen mined; else the worker refuses.
        { resolve: { shown: t.requested === null && t.nonce !== null && t.blockNumber === null } },
      ),
      waiting: age(t.waitingSeconds),
    }));
    const reviewPayments = o.review.payments.map(reviewPaymentView);
    const reviewCount = review.length + reviewConversions.length + reviewTransfers.length + reviewPayments.length;
    const paymentsInReview = o.pipeline.payments.inReview;
    const payouts = o.payouts.map((p) => payoutView(p, 'payout'));
    const conversions = o.conversions.map((c) => ({
      ...c,
      testid: `conversion-${c.conversionId}`,
      stateClass: `state-${c.status}`,
      sentText: `${groupDigits(c.sent)} ${upper(c.sentAsset)}`,
      receivedText: c.received === null ? '–' : `${groupDigits(c.received)} ${upper(c.receivedAsset)}`,
      age: age(c.ageSeconds),
      inState: age(c.inStateSeconds),
    }));
    return {
      generatedAt: new Date(o.generatedAt).toLocaleString(),
      alerts: {
        open: String(o.alerts.open),
        none: o.alerts.open === 0,
        items: o.alerts.items.map((a) => ({
          ...a,
          severityClass: `alert ${a.severity}`,
          age: `for ${age(a.ageSeconds)}`,
          testid: `alert-${a.id}`,
        })),
      },
      totals: totalsView(o.totals),
      pipeline: pipelineView(o.pipeline, o.windowHours),
      review: {
        count: reviewCount,
        none: reviewCount === 0,
        items: review,
        any: review.length > 0,
        conversions: reviewConversions,
        anyConversions: reviewConversions.length > 0,
        transfers: reviewTransfers,
        anyTransfers: reviewTransfers.length > 0,
        payments: reviewPayments,
        anyPayments: reviewPayments.length > 0,
        // The list stops at the longest waiting ones; the pipeline counts them all.
        paymentsMore:
          paymentsInReview > reviewPayments.length
            ? `showing the ${reviewPayments.length} longest waiting of ${paymentsInReview} payments in review`
            : '',
      },
      channels: {
        caption: `${o.channels.total} channels, ${o.channels.threshold} by threshold, ${o.channels.atThreshold} at threshold${o.channels.total > o.channels.items.length ? ` · showing ${o.channels.items.length}` : ''}`,
        items: o.channels.items.map(channelView),
      },
      payouts: { items: payouts, any: payouts.length > 0, none: payouts.length === 0 },
      conversions: { items: conversions, any: conversions.length > 0, none: conversions.length === 0 },
      queues: o.queues.map((q) => ({
        ...q,
        oldest: q.oldestRunnableAgeSeconds === null ? '–' : age(q.oldestRunnableAgeSeconds),
        cls: q.failed > 0 ? 'attention' : q.runnable + q.running === 0 ? 'zero' : '',
        testid: `queue-${q.task}`,
      })),
      outside: outsideView(o),
      volume: {
        caption: `per hour, last ${o.volume.hours} h · peak ${Object.entries(o.volume.peak)
          .map(([a, v]) => `${groupDigits(v)} ${upper(a)}`)
          .join(', ')}`,
      },
    };
  }

  // --- a channel's statement (GET /api/channels/:id/statement) ---------------------------------------------------

  const STATEMENT_DAYS = 30;
  /**
   * Lines asked for per page of a statement (the API's own default; it allows up to 1,000): the channel view shows the
   * first page and Load more appends the next. The statement card carries it as data-page-size.
   */
  const STATEMENT_PAGE = 200;
  const CHANNEL_ID_RE = /^-?[1-9][0-9]{0,19}$/;
  /** Counts the statements asked for: only the latest request's answer is shown (kept out of Alpine's proxies). */
  let statementsAsked = 0;
  /**
   * The statement shown, as read so far (null until its first page is in): whose and which range, the first page's
   * answer (its totals stand for the whole range and stay), each asset's lines of every page read, in booking order,
   * how many lines that is, and the cursor of the next page (null: the last one is in). Out of Alpine's proxies: a
   * range can have thousands of lines, and the page shows them through statementView().
   */
  let statementRead = null;
  const ITEM_KINDS = {
    payment: 'payment',
    payment_top_up: 'top-up',
    conversion: 'conversion',
    payout: 'payout',
    payment_reversal: 'reversal',
    exchange_cost: 'exchange cost',
    payout_returned: 'payout returned',
    other: 'other',
  };

  /**
   * The statement's URL: `format` csv for the whole range; else one page of `limit` lines, after the cursor `after`
   * (the range is given again all the same: the API refuses a cursor of another range instead of mixing two).
   */
  function statementPath(channelId, range, options = {}) {
    const query = new URLSearchParams({ from: range.from, to: range.to });
    if (options.format) query.set('format', options.format);
    if (options.limit) query.set('limit', String(options.limit));
    if (options.after) query.set('after', options.after);
    return `/api/channels/${encodeURIComponent(channelId)}/statement?${query}`;
  }

  /**
   * The channel view before any page of its statement is in: which channel, the range asked for, and the statement as
   * the page shows it. A channel named is loading its first page at once; '' is the view closed. Opening, closing and
   * the first render start from this one state, so no field is left over from the statement shown before.
   */
  function statementState(channelId, range) {
    return {
      statementFor: channelId,
      statementRange: range,
      statement: null,
      statementError: '',
      statementLoading: channelId !== '',
      // Load more: its own state, so a page that fails to load leaves the lines shown as they are.
      statementMoreLoading: false,
      statementMoreError: '',
    };
  }

  /** "2026-12-06T11:05:02.123456Z" → "2026-12-06 11:05:02" (UTC, as the API gives it). */
  const utc = (iso) => `${iso.slice(0, 10)} ${iso.slice(11, 19)}`;

  /** Journal ids are whole numbers as text, of any length: ordered as numbers without becoming one. */
  const idOrder = (a, b) => (a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0);
  /** The journal a line is placed at: its latest (a payout booked in several journals is one line). */
  const placedAt = (x) => x.journals.reduce((latest, j) => (idOrder(j, latest) > 0 ? j : latest), x.journals[0] ?? '');

  /** One page's lines of an asset in booking order (by time, then journal), as the API pages them. */
  function pageItems(a) {
    return [...a.payments, ...a.conversions, ...a.payouts, ...a.other].sort((x, y) =>
      x.time < y.time ? -1 : x.time > y.time ? 1 : idOrder(placedAt(x), placedAt(y)),
    );
  }

  function itemDetail(x) {
    switch (x.kind) {
      case 'payment':
      case 'payment_top_up':
        return `gross ${groupDigits(x.gross)}, fee ${groupDigits(x.fee)}${x.feePercent === null ? '' : ` (${x.feePercent} %)`} · ${x.status ?? '–'}`;
      case 'conversion':
        return `${groupDigits(x.ethOut)} ETH → ${groupDigits(x.usdtIn)} USDT${x.rate === null ? '' : ` at ${groupDigits(x.rate)}`}`;
      case 'payout':
        return `${x.payoutKind ?? 'payout'} of ${groupDigits(x.payoutAmount)} ${upper(x.asset)} to ${upper(x.payoutCurrency)} on ${x.payoutNetwork} · ${x.status ?? '–'}${x.exchangeId ? ` · exchange ${x.exchangeId}` : ''}`;
      default:
        return x.journalKind;
    }
  }

  /** An asset's totals (`a`, from the first page) and its lines read so far (`items`). */
  function statementAssetView(a, items, hasMore) {
    const sum = (key, one, count, amount) => ({
      key,
      label: `${count} ${count === 1 ? one : key}`,
      text: groupDigits(amount),
      count,
    });
    return {
      asset: a.asset,
      assetText: upper(a.asset),
      testid: `statement-${a.asset}`,
      openingText: groupDigits(a.opening.total),
      closingText: groupDigits(a.closing.total),
      reservedText:
        a.closing.reserved === '0' ? '' : `${groupDigits(a.closing.reserved)} of it set aside for payouts under way`,
      sums: [
        sum('payments', 'payment', a.sums.payments.count, a.sums.payments.net),
        sum('conversions', 'conversion', a.sums.conversions.count, a.sums.conversions.amount),
        sum('payouts', 'payout', a.sums.payouts.count, a.sums.payouts.amount),
        sum('other', 'other', a.sums.other.count, a.sums.other.amount),
      ].filter((s) => s.count > 0),
      // The API serves a statement only once this holds; the page says what was checked.
      checkText: `checked against the ledger: ${groupDigits(a.check.opening)} + ${groupDigits(a.check.movementsFromEntries)} = ${groupDigits(a.check.closing)}`,
      items: items.map((x) => ({
        key: `${x.kind}:${x.id}:${placedAt(x)}`,
        testid: `statement-item-${a.asset}-${x.kind}-${x.id}`,
        timeText: utc(x.time),
        kindText: ITEM_KINDS[x.kind] ?? x.kind,
        id: x.id,
        amountText: groupDigits(x.amount),
        amountClass: x.amount.startsWith('-') ? 'num out' : x.amount === '0' ? 'num zero' : 'num in',
        detail: itemDetail(x),
      })),
      any: items.length > 0,
      // An asset with no line among those read may still have some in the pages not read yet.
      noneText: items.length > 0 ? '' : hasMore ? 'None among the lines read so far.' : 'Nothing moved in this range.',
    };
  }

  function linesText(read) {
    const n = read.lines;
    const lines = `${n} line${n === 1 ? '' : 's'}`;
    if (read.next !== null)
      return `showing the first ${lines} of this range · Load more reads the next ${STATEMENT_PAGE}; the CSV has them all`;
    return n === 0 ? 'no lines in this range' : `showing all ${lines} of this range`;
  }

  function statementView(read) {
    const s = read.first;
    const hasMore = read.next !== null;
    return {
      title: `Channel ${s.channelId}`,
      rangeText: `last ${STATEMENT_DAYS} days · ${utc(s.from)} to ${utc(s.to)} UTC`,
      assets: s.assets.map((a) => statementAssetView(a, read.items.get(a.asset) ?? [], hasMore)),
      linesText: linesText(read),
      hasMore,
    };
  }

  /** A page's lines after those already read: each page starts exactly after the last line of the one before. */
  function addPage(read, body) {
    for (const a of body.assets) read.items.set(a.asset, [...(read.items.get(a.asset) ?? []), ...pageItems(a)]);
    read.lines += body.page.lines;
    read.next = body.page.hasMore ? body.page.next : null;
  }

  /** Saves text the page fetched as a file: a link to an object URL, clicked once. */
  function saveFile(blob, name) {
    const url = URL.createObjectURL(blob);
    const link = document.createElement('a');
    link.href = url;
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
    // Revoked once the browser has taken the file.
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }

  // --- the platform's webhook endpoints (GET /api/webhook-endpoints and each one's deliveries) ------------------

  const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  /** A pending delivery that has failed this many attempts in a row is shown as failing (so does its alert). */
  const FAILING_ATTEMPTS = 3;
  /** Failed deliveries, and deliveries failing again and again, listed per endpoint: the latest of each. */
  const DELIVERIES_SHOWN = 5;
  /**
   * The API filters deliveries by status, not by attempts: the failing ones among the pending are found in the newest
   * it lists (its maximum). Only a receiver down long enough to pile up more behind them hides them here, and within
   * the retry window those become failed, which the counts show.
   */
  const PENDING_READ = 500;

  /** The URL as origin and path: a query may carry the platform's own token, which the page has no need to show. */
  function endpointUrlText(url) {
    try {
      const parsed = new URL(url);
      return parsed.origin + parsed.pathname;
    } catch {
      return '–';
    }
  }

  function deliveryView(endpoint, d) {
    const last = d.recentAttempts[0];
    const failed = d.status === 'failed';
    return {
      key: `${d.status}:${d.eventId}`,
      testid: `webhook-delivery-${endpoint.id}-${d.eventId}`,
      endpointId: endpoint.id,
      eventId: d.eventId,
      urlText: endpointUrlText(endpoint.url),
      eventType: d.eventType,
      subject: d.subject,
      stateClass: failed ? 'state state-failed' : 'state state-held',
      statusText: failed ? 'failed' : 'retrying',
      attempts: String(d.attempts),
      lastText: d.lastError ?? (d.lastStatus === null ? '–' : `HTTP ${d.lastStatus}`),
      lastAtText: last === undefined ? '–' : `${utc(last.at)} UTC`,
      nextText: d.nextAttemptAt === null ? '' : `next attempt ${utc(d.nextAttemptAt)} UTC`,
      // Only a given-up delivery can be retried (409 otherwise): a pending one is still being tried.
      canRetry: failed,
    };
  }

  /** One live endpoint's row: its counts, and the deliveries a person may have to act on (`read`: failed, pending). */
  function endpointView(e, read) {
    const failed = read.failed.slice(0, DELIVERIES_SHOWN);
    const stuck = read.pending.filter((d) => d.attempts >= FAILING_ATTEMPTS).slice(0, DELIVERIES_SHOWN);
    const failing = e.deliveries.failed > 0 || stuck.length > 0;
    const why = [
      e.deliveries.failed > 0 ? `${e.deliveries.failed} failed` : '',
      stuck.length > 0 ? `${stuck.length} pending after ${FAILING_ATTEMPTS} or more failed attempts` : '',
    ].filter((s) => s !== '');
    const deliveries = [...failed, ...stuck].map((d) => deliveryView(e, d));
    return {
      id: e.id,
      testid: `webhook-${e.id}`,
      urlText: endpointUrlText(e.url),
      typesText: `${e.eventTypes.length} event type${e.eventTypes.length === 1 ? '' : 's'}`,
      typesTitle: e.eventTypes.join(', '),
      createdText: `by ${e.createdBy}, ${utc(e.createdAt)} UTC`,
      pending: String(e.deliveries.pending),
      delivered: String(e.deliveries.delivered),
      failed: String(e.deliveries.failed),
      failing,
      badgeTitle: why.join('; '),
      rowClass: failing ? 'endpoint failing' : 'endpoint',
      deliveries,
      anyDeliveries: deliveries.length > 0,
      more:
        e.deliveries.failed > failed.length
          ? `the latest ${failed.length} of ${e.deliveries.failed} failed deliveries (GET /api/webhook-endpoints/${e.id}/deliveries?status=failed lists them all)`
          : '',
    };
  }

  /** `read` holds, per live endpoint in the listed order, the deliveries read for it. */
  function webhooksView(endpoints, read) {
    const live = endpoints.filter((e) => e.deletedAt === null);
    const deleted = endpoints.length - live.length;
    const items = live.map((e, i) => endpointView(e, read[i]));
    const failing = items.filter((e) => e.failing).length;
    return {
      caption: [
        `${live.length} endpoint${live.length === 1 ? '' : 's'}`,
        failing > 0 ? `${failing} failing` : '',
        deleted > 0 ? `${deleted} deleted, not shown` : '',
      ]
        .filter((s) => s !== '')
        .join(' · '),
      items,
      any: items.length > 0,
      none: items.length === 0,
    };
  }

  // --- the chart (kept out of Alpine's reactive data: Chart.js must not be proxied) ------------------------------

  let chart = null;
  const SERIES_COLOURS = ['#2563eb', '#16a34a', '#9333ea'];

  function drawVolume(volume) {
    const canvas = document.getElementById('volume-chart');
    if (!canvas || !window.Chart) return;
    if (chart && chart.canvas !== canvas) {
      chart.destroy();
      chart = null;
    }
    const buckets = volume.buckets;
    const assets = Object.keys(volume.peak);
    const labels = buckets.map((b) => b.hour.slice(11, 16));
    const datasets = [
      ...assets.map((asset, i) => ({
        type: 'bar',
        label: `received ${upper(asset)}`,
        data: buckets.map((b) => b.scaleBps[asset] ?? 0),
        backgroundColor: SERIES_COLOURS[i % SERIES_COLOURS.length],
        yAxisID: 'share',
        asset,
      })),
      {
        type: 'line',
        label: 'payments',
        data: buckets.map((b) => b.payments),
        borderColor: '#f59e0b',
        pointRadius: 0,
        yAxisID: 'count',
      },
    ];
    if (chart) {
      chart.data.labels = labels;
      chart.data.datasets = datasets;
      chart.$buckets = buckets;
      chart.update('none');
      return;
    }
    chart = new window.Chart(canvas, {
      type: 'bar',
      data: { labels, datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: 'index', intersect: false },
        scales: {
          // Bars are each asset's share of its peak hour: the axis has no unit, the tooltip gives the exact amount.
          share: {
            type: 'linear',
            position: 'left',
            min: 0,
            max: 10000,
            ticks: { display: false },
            grid: { display: false },
          },
          count: {
            type: 'linear',
            position: 'right',
            beginAtZero: true,
            suggestedMax: 1,
            ticks: { precision: 0 },
            title: { display: true, text: 'payments' },
          },
          x: { ticks: { maxTicksLimit: 12 } },
        },
        plugins: {
          legend: { position: 'bottom' },
          tooltip: {
            callbacks: {
              title: (items) =>
                items[0] ? `${chart.$buckets[items[0].dataIndex].hour.replace('T', ' ').slice(0, 16)} UTC` : '',
              label: (item) => {
                const bucket = chart.$buckets[item.dataIndex];
                if (item.dataset.asset)
                  return `received ${groupDigits(bucket.received[item.dataset.asset])} ${upper(item.dataset.asset)}`;
                return `${bucket.payments} payments`;
              },
            },
          },
        },
      },
    });
    chart.$buckets = buckets;
  }

  // --- the component --------------------------------------------------------------------------------------------

  /*
   * The page's x- expressions are read by Alpine's CSP build, which interprets them without compiling: paths, calls,
   * operators, literals; no arrow functions, template literals or globals (window, document). What needs more than
   * that is computed here (see present()), which also keeps the markup free of logic about money.
   */
  function dashboard() {
    return {
      token: sessionStorage.getItem(TOKEN_KEY) ?? '',
      hours: 24,
      overview: null,
      view: null,
      error: '',
      notice: { text: '', kind: '' },
      loading: false,
      failedAt: null,
      timer: null,
      ...statementState('', null),
      statementPageSize: STATEMENT_PAGE,
      // The webhooks card: read beside the overview, and failing on its own (its error shows in the card only).
      webhooks: null,
      webhooksError: '',
      actionButton: ACTION_BUTTON,

      init() {
        if (this.token) this.load();
        this.timer = setInterval(() => {
          if (this.token && !document.hidden) this.load();
        }, REFRESH_MS);
      },
      destroy() {
        clearInterval(this.timer);
      },

      get signedIn() {
        return this.token !== '';
      },
      get ready() {
        return this.token !== '' && this.view !== null;
      },
      get statusText() {
        if (this.failedAt) return `not updated since ${this.failedAt}: ${this.error}`;
        return this.view ? `live · ${this.view.generatedAt}` : 'loading…';
      },
      get statusClass() {
        return this.failedAt ? 'status stale' : 'status live';
      },
      get statementOpen() {
        return this.statementFor !== '';
      },
      get statementStatus() {
        if (this.statementLoading) return 'loading…';
        return this.statementError;
      },

      signIn() {
        const value = this.$refs.token.value.trim();
        if (!value) return;
        this.token = value;
        sessionStorage.setItem(TOKEN_KEY, value);
        this.$refs.token.value = '';
        this.error = '';
        this.load();
      },
      /** A 401: the token no longer opens the API, so the page returns to its sign-in and says why. */
      refuseToken() {
        this.signOut();
        this.error = 'The server refused this token.';
      },
      signOut() {
        sessionStorage.removeItem(TOKEN_KEY);
        this.token = '';
        this.overview = null;
        this.view = null;
        this.failedAt = null;
        this.notice = { text: '', kind: '' };
        this.webhooks = null;
        this.webhooksError = '';
        this.closeStatement();
      },
      setHours(hours) {
        this.hours = hours === 48 ? 48 : 24;
        this.load();
      },

      async api(method, path, body) {
        const headers = { authorization: `Bearer ${this.token}`, accept: 'application/json' };
        if (body !== undefined) headers['content-type'] = 'application/json';
        const response = await fetch(path, {
          method,
          headers,
          cache: 'no-store',
          ...(body !== undefined && { body: JSON.stringify(body) }),
        });
        const answer = await response.json().catch(() => ({}));
        return { status: response.status, body: answer };
      },

      async load() {
        if (this.loading) return;
        this.loading = true;
        const webhooks = this.loadWebhooks();
        try {
          const { status, body } = await this.api('GET', `/api/overview?hours=${this.hours}`);
          if (status === 401) {
            this.refuseToken();
            return;
          }
          if (status !== 200) throw new Error(body.error ?? `HTTP ${status}`);
          this.overview = body;
          this.view = present(body);
          this.failedAt = null;
          this.error = '';
          // The canvas exists once x-if has rendered the dashboard.
          this.$nextTick(() => drawVolume(body.volume));
        } catch (error) {
          this.failedAt = new Date().toLocaleTimeString();
          this.error = error.message;
        } finally {
          await webhooks;
          this.loading = false;
        }
      },

      /** The endpoints, and for each live one the deliveries that may need a person; never throws. */
      async loadWebhooks() {
        const token = this.token;
        try {
          const listed = await this.api('GET', '/api/webhook-endpoints');
          if (listed.status !== 200) throw new Error(listed.body.error ?? `HTTP ${listed.status}`);
          const endpoints = listed.body.endpoints;
          const read = await Promise.all(
            endpoints
              .filter((e) => e.deletedAt === null)
              .map(async (e) => ({
                failed: e.deliveries.failed > 0 ? await this.deliveriesOf(e.id, 'failed', DELIVERIES_SHOWN) : [],
                pending: e.deliveries.pending > 0 ? await this.deliveriesOf(e.id, 'pending', PENDING_READ) : [],
              })),
          );
          // Signed out (or in again) meanwhile: this answer belongs to the token it was asked with.
          if (this.token !== token) return;
          this.webhooks = webhooksView(endpoints, read);
          this.webhooksError = '';
        } catch (error) {
          if (this.token !== token) return;
          // What was shown stays, marked as old: the rest of the page does not depend on these calls.
          this.webhooksError = `Webhooks not updated since ${new Date().toLocaleTimeString()}: ${error.message}`;
        }
      },
      async deliveriesOf(endpointId, status, limit) {
        if (!UUID_RE.test(endpointId)) throw new Error(`unexpected endpoint id ${endpointId}`);
        const answer = await this.api(
          'GET',
          `/api/webhook-endpoints/${endpointId}/deliveries?status=${status}&limit=${limit}`,
        );
        if (answer.status !== 200) throw new Error(answer.body.error ?? `HTTP ${answer.status}`);
        return answer.body.deliveries;
      },

      /** A failed delivery's Retry: back to pending with fresh attempts and window, sent by the dispatcher's next run. */
      async retryDelivery(event) {
        const { endpoint, eventId, eventType, url } = event.currentTarget.dataset;
        if (!UUID_RE.test(endpoint ?? '') || !UUID_RE.test(eventId ?? '')) return;
        const asked = `Send event ${eventId} (${eventType}) to ${url} again? Its delivery starts afresh (attempts and retry window) and payrail's dispatcher sends it on its next run.`;
        if (!window.confirm(asked)) return;
        const { status, body } = await this.api(
          'POST',
          `/api/webhook-endpoints/${endpoint}/deliveries/${eventId}/retry`,
        );
        if (status === 200) {
          this.notice = {
            text: `retry: the delivery of event ${eventId} (${eventType}) to ${url} is pending again; the dispatcher sends it next.`,
            kind: 'ok',
          };
        } else if (status === 401) {
          this.refuseToken();
          return;
        } else {
          // 409: it is not failed (any more); 404: the endpoint was deleted. The API says which.
          this.notice = { text: body.error ?? `retry failed (HTTP ${status})`, kind: 'error' };
        }
        await this.load();
      },

      /**
       * A channel's id clicked in the channels table: the first page of its statement for the last STATEMENT_DAYS
       * days. Clicked again, the range is asked afresh up to now, and its lines start again from the first page.
       */
      async openStatement(event) {
        const id = event.currentTarget.dataset.id;
        if (!CHANNEL_ID_RE.test(id ?? '')) return;
        const to = new Date();
        const range = {
          from: new Date(to.getTime() - STATEMENT_DAYS * 86_400_000).toISOString(),
          to: to.toISOString(),
        };
        const asked = ++statementsAsked;
        statementRead = null;
        Object.assign(this, statementState(id, range));
        try {
          const { status, body } = await this.api('GET', statementPath(id, range, { limit: STATEMENT_PAGE }));
          // Another channel was clicked meanwhile: its answer is the one to show.
          if (asked !== statementsAsked) return;
          if (status === 401) {
            this.refuseToken();
            return;
          }
          if (status !== 200) {
            this.statementError = body.error ?? `HTTP ${status}`;
            return;
          }
          statementRead = { channelId: id, range, first: body, items: new Map(), lines: 0, next: null };
          addPage(statementRead, body);
          this.statement = statementView(statementRead);
        } catch (error) {
          if (asked === statementsAsked) this.statementError = error.message;
        } finally {
          if (asked === statementsAsked) this.statementLoading = false;
        }
      },
      /** The statement's next page, its lines after those shown; the totals stay the first page's. */
      async loadMoreStatement() {
        const read = statementRead;
        if (read === null || read.next === null || this.statementMoreLoading) return;
        const asked = statementsAsked;
        this.statementMoreLoading = true;
        this.statementMoreError = '';
        try {
          const path = statementPath(read.channelId, read.range, { limit: STATEMENT_PAGE, after: read.next });
          const { status, body } = await this.api('GET', path);
          // Another statement was opened, or this one closed, meanwhile: these lines are not the one shown.
          if (asked !== statementsAsked) return;
          if (status === 401) {
            this.refuseToken();
            return;
          }
          if (status !== 200) {
            this.statementMoreError = `Load more failed: ${body.error ?? `HTTP ${status}`}`;
            return;
          }
          addPage(read, body);
          this.statement = statementView(read);
        } catch (error) {
          // The cursor is kept: Load more asks for the same page again.
          if (asked === statementsAsked) this.statementMoreError = `Load more failed: ${error.message}`;
        } finally {
          if (asked === statementsAsked) this.statementMoreLoading = false;
        }
      },
      closeStatement() {
        statementsAsked++;
        statementRead = null;
        Object.assign(this, statementState('', null));
      },
      /** The statement shown, as CSV: fetched with the token (no cookie would carry it), saved from a Blob. */
      async downloadStatement() {
        const id = this.statementFor;
        const range = this.statementRange;
        if (!CHANNEL_ID_RE.test(id) || range === null) return;
        try {
          const response = await fetch(statementPath(id, range, { format: 'csv' }), {
            headers: { authorization: `Bearer ${this.token}` },
            cache: 'no-store',
          });
          if (!response.ok) {
            const answer = await response.json().catch(() => ({}));
            this.statementError = answer.error ?? `CSV download failed (HTTP ${response.status})`;
            return;
          }
          const name = `statement-${id}-${range.from.slice(0, 10)}-${range.to.slice(0, 10)}.csv`;
          saveFile(await response.blob(), name);
        } catch (error) {
          this.statementError = error.message;
        }
      },

      async act(event) {
        const { kind, action, id, reason } = event.currentTarget.dataset;
        const subject = Object.hasOwn(SUBJECTS, kind ?? '') ? SUBJECTS[kind] : null;
        if (!subject || !Object.hasOwn(subject.actions, action ?? '') || !subject.idRe.test(id ?? '')) return;
        const asked = subject.actions[action]
          .replace('{id}', id)
          .replace('{amount}', event.currentTarget.dataset.amount || 'an amount this page does not show');
        if (!window.confirm(asked)) return;
        let posted = subject.bodies && Object.hasOwn(subject.bodies, action) ? subject.bodies[action] : undefined;
        if (subject.bindsReason && typeof reason === 'string' && reason !== '')
          posted = { ...posted, expectedReason: reason };
        const { status, body } = await this.api('POST', `/api/${subject.path}/${id}/${action}`, posted);
        if ((status === 200 || status === 201) && subject.done) {
          this.notice = { text: subject.done(body, id, action), kind: 'ok' };
        } else if (status === 200) {
          const outcome = Object.hasOwn(subject.outcomes, body.status) ? `: ${subject.outcomes[body.status]}` : '';
          this.notice = { text: `${action}: ${kind} ${id} is now ${body.status}${outcome}.`, kind: 'ok' };
        } else if (status === 202) {
          // Accepted, not done: the worker (which holds the key and reads the chain) carries it out, or refuses.
          const requested =
            body.requested && typeof body.requested.action === 'string' ? label(body.requested.action) : action;
          this.notice = {
            text: `${action}: ${requested} of ${kind} ${id} requested; the worker carries it out and the review queue shows what came of it.`,
            kind: 'ok',
          };
        } else if (status === 401) {
          this.refuseToken();
          return;
        } else {
          // 409: the action is not safe from the subject's state; the API says why.
          this.notice = { text: body.error ?? `${action} failed (HTTP ${status})`, kind: 'error' };
        }
        await this.load();
      },
    };
  }

  document.addEventListener('alpine:init', () => {
    window.Alpine.data('dashboard', dashboard);
  });
})();
