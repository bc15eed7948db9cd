import { sql } from 'kysely';
import type { Db } from '../db/index.ts';

export interface LedgerProblem {
  readonly rule: string;
  readonly subject: string;
  readonly detail: string;
}

export interface LedgerReport {
  readonly ok: boolean;
  readonly accounts: number;
  readonly journals: number;
  readonly entries: number;
  readonly problems: LedgerProblem[];
}

/** The checks in the order they run, for progress reports (each is one query over the whole ledger). */
export const LEDGER_CHECKS = [
  'journals balance',
  'journals have two entries',
  'balances match entries',
  'no negative balance',
  'payments match journals',
  'counts',
] as const;

export interface CheckLedgerOptions {
  /** Called before each check starts: `index` of LEDGER_CHECKS.length (the check takes seconds on millions of entries). */
  onCheck?: (name: (typeof LEDGER_CHECKS)[number], index: number) => void;
}

/**
 * Recomputes every balance from the entries and checks the invariants the posting code asserts before writing:
 * the pair of the in-code check. Read-only; run it any time.
 */
export async function checkLedger(db: Db, options: CheckLedgerOptions = {}): Promise<LedgerReport> {
  const problems: LedgerProblem[] = [];
  for (const [index, check] of PROBLEM_CHECKS.entries()) {
    options.onCheck?.(LEDGER_CHECKS[index] as (typeof LEDGER_CHECKS)[number], index);
    for (const problem of await check(db)) problems.push(problem);
  }
  options.onCheck?.('counts', PROBLEM_CHECKS.length);
  const counts = await countLedger(db);
  return { ok: problems.length === 0, ...counts, problems };
}

type ProblemCheck = (db: Db) => Promise<LedgerProblem[]>;

async function unbalancedJournals(db: Db): Promise<LedgerProblem[]> {
  const unbalanced = await sql<{ journal_id: string; kind: string; ref: string; asset: string; total: string }>`
    select j.id as journal_id, j.kind, j.ref, a.asset, sum(e.amount)::text as total
    from ledger_entries e join ledger_journals j on j.id = e.journal_id join ledger_accounts a on a.id = e.account_id
    group by j.id, j.kind, j.ref, a.asset having sum(e.amount) <> 0`.execute(db);
  return unbalanced.rows.map((r) => ({
    rule: 'journal_balances',
    subject: `journal ${r.journal_id} (${r.kind}:${r.ref})`,
    detail: `${r.asset} entries sum to ${r.total}, not 0`,
  }));
}

async function thinJournals(db: Db): Promise<LedgerProblem[]> {
  const thin = await sql<{ id: string; kind: string; ref: string; n: string }>`
    select j.id, j.kind, j.ref, count(e.id)::text as n from ledger_journals j left join ledger_entries e on e.journal_id = j.id
    group by j.id having count(e.id) < 2`.execute(db);
  return thin.rows.map((r) => ({
    rule: 'journal_entries',
    subject: `journal ${r.id} (${r.kind}:${r.ref})`,
    detail: `has ${r.n} entries, needs at least 2`,
  }));
}

async function driftedBalances(db: Db): Promise<LedgerProblem[]> {
  const drifted = await sql<{ code: string; asset: string; balance: string; computed: string }>`
    select a.code, a.asset, a.balance::text as balance, coalesce(sum(e.amount), 0)::text as computed
    from ledger_accounts a left join ledger_entries e on e.account_id = a.id
    group by a.id having a.balance <> coalesce(sum(e.amount), 0)`.execute(db);
  return drifted.rows.map((r) => ({
    rule: 'balance_matches_entries',
    subject: `account ${r.code}/${r.asset}`,
    detail: `balance ${r.balance} but entries sum to ${r.computed}`,
  }));
}

async function negativeBalances(db: Db): Promise<LedgerProblem[]> {
  const negative = await sql<{ code: string; asset: string; balance: string }>`
    select code, asset, balance::text as balance from ledger_accounts where not allow_negative and balance < 0`.execute(
    db,
  );
  return negative.rows.map((r) => ({
    rule: 'no_negative_balance',
    subject: `account ${r.code}/${r.asset}`,
    detail: `balance ${r.balance} is below zero`,
  }));
}

// Each credited payment's journals (its credit and its top-ups, ref '<payment id>:<new gross>') must carry exactly
// its gross in and its fee and net out.
async function paymentsOffTheirJournals(db: Db): Promise<LedgerProblem[]> {
  const payments = await sql<{ payment_id: string; gross_amount: string; inflow: string | null }>`
    with credits as (
      select split_part(j.ref, ':', 1) as ref, sum(e.amount) filter (where e.amount > 0) as inflow
      from ledger_journals j join ledger_entries e on e.journal_id = j.id
      where j.kind in ('payment_received', 'payment_topped_up') group by 1)
    select p.payment_id::text as payment_id, p.gross_amount::text as gross_amount, c.inflow::text as inflow
    from payments p left join credits c on c.ref = p.payment_id::text
    where (p.credited_at is not null and p.gross_amount is distinct from c.inflow) or (p.credited_at is null and c.ref is not null)`.execute(
    db,
  );
  return payments.rows.map((r) => ({
    rule: 'payment_matches_journal',
    subject: `payment ${r.payment_id}`,
    detail: `gross ${r.gross_amount} but its journal credits ${r.inflow ?? 'nothing'}`,
  }));
}

/** In LEDGER_CHECKS order, each before the counts. */
const PROBLEM_CHECKS: readonly ProblemCheck[] = [
  unbalancedJournals,
  thinJournals,
  driftedBalances,
  negativeBalances,
  paymentsOffTheirJournals,
];

async function countLedger(db: Db): Promise<{ accounts: number; journals: number; entries: number }> {
  const counts = await sql<{ accounts: string; journals: string; entries: string }>`
    select (select count(*) from ledger_accounts)::text as accounts, (select count(*) from ledger_journals)::text as journals,
           (select count(*) from ledger_entries)::text as entries`.execute(db);
  const c = counts.rows[0] ?? { accounts: '0', journals: '0', entries: '0' };
  return { accounts: Number(c.accounts), journals: Number(c.journals), entries: Number(c.entries) };
}
