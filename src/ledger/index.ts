export { accounts, accountKey, type AccountRef } from './accounts.ts';
export {
  postJournal,
  postJournals,
  assertBalanced,
  UnbalancedJournalError,
  type JournalInput,
  type EntryInput,
  type PostResult,
} from './post-journal.ts';
export { checkLedger, LEDGER_CHECKS, type CheckLedgerOptions, type LedgerReport, type LedgerProblem } from './check.ts';
export { channelBalances, type Balance } from './balances.ts';
export { inLedgerGroup } from './group.ts';
