/**
 * The actions each review reason of a payment allows are the "Payments in review" table of docs/architecture.md, read
 * from that file itself: the dashboard and `payrail status` offer exactly these, so the table and the code change
 * together. (The API's refusals, where an allowed action is not safe from the payment's state, are tested through
 * HTTP in intake-review.test.ts.)
 */
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PAYMENT_ACTIONS, paymentActionsFor } from '../../src/pipeline/index.ts';

/** Each row of the table: the reason as the docs write it (`code: <evidence>`), and the actions with a mark. */
function docsTable(): Array<{ reason: string; actions: string[] }> {
  const lines = fs.readFileSync(new URL('../../docs/architecture.md', import.meta.url), 'utf8').split('\n');
  const header = lines.findIndex((line) => line.startsWith(`| reason | when | ${PAYMENT_ACTIONS.join(' | ')} |`));
  if (header < 0) throw new Error('docs/architecture.md has no "Payments in review" table');
  const rows = [];
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break;
    const cells = line
      .split('|')
      .slice(1, -1)
      .map((cell) => cell.trim());
    const reason = /`([^`]+)`/.exec(cells[0] ?? '')?.[1];
    if (reason === undefined) throw new Error(`docs/architecture.md: a table row without a reason: ${line}`);
    // A mark or a condition ("once its money moved on"): allowed, the API then checks the payment's state.
    const marks = cells.slice(-PAYMENT_ACTIONS.length);
    rows.push({ reason, actions: PAYMENT_ACTIONS.filter((_, i) => (marks[i] ?? '') !== '') });
  }
  return rows;
}

describe('paymentActionsFor', () => {
  const table = docsTable();

  it('knows every reason docs/architecture.md lists', () => {
    expect(table.map((row) => row.reason.split(':')[0])).toEqual([
      'unknown_channel',
      'conflicting_order_id',
      'partially_paid',
      'foreign_outcome_currency',
      'outcome_amount_changed',
      'top_up',
      'refunded_after_credit',
      'payment_unconfirmed',
    ]);
  });

  it.each(table)('$reason → what docs/architecture.md marks', ({ reason, actions }) => {
    expect(paymentActionsFor(reason)).toEqual(actions);
  });

  it('allows nothing for a payment out of review, or a reason it does not know', () => {
    expect(paymentActionsFor(null)).toEqual([]);
    expect(paymentActionsFor('something_new: evidence')).toEqual([]);
  });
});
