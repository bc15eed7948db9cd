import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { openPool, type DatabaseHandle } from '../../src/db/index.ts';
import { createLogger } from '../../src/log.ts';

export interface TestDatabase extends DatabaseHandle {
  readonly url: string;
  readonly name: string;
}

/**
 * A fresh, migrated database per test file, cloned from the template. Databases named `tamper_*` are excluded
 * from the end-of-suite ledger check (tests that break the ledger on purpose use them).
 */
export async function createTestDatabase(options: { prefix?: 'test' | 'tamper' } = {}): Promise<TestDatabase> {
  const name = `${options.prefix ?? 'test'}_${randomBytes(6).toString('hex')}`;
  const adminUrl = inject('pgAdminUrl');
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name} template payrail_template`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const handle = openPool(url.toString(), {
    max: 10,
    applicationName: 'payrail-test',
    logger: createLogger({ level: 'silent' }),
  });
  return { ...handle, url: url.toString(), name };
}

/** Row counts of every table a request could write to: "nothing written" is checked against these. */
export interface RowCounts {
  payments: number;
  channels: number;
  ledger_accounts: number;
  ledger_journals: number;
  ledger_entries: number;
  audit_log: number;
  jobs: number;
  ipn_count: number;
}

export async function rowCounts(db: DatabaseHandle): Promise<RowCounts> {
  const { rows } = await db.pool.query<RowCounts>(`select
      (select count(*)::int from payments) as payments,
      (select count(*)::int from channels) as channels,
      (select count(*)::int from ledger_accounts) as ledger_accounts,
      (select count(*)::int from ledger_journals) as ledger_journals,
      (select count(*)::int from ledger_entries) as ledger_entries,
      (select count(*)::int from audit_log) as audit_log,
      (select count(*)::int from graphile_worker._private_jobs) as jobs,
      (select coalesce(sum(ipn_count), 0)::int from payments) as ipn_count`);
  return rows[0] as RowCounts;
}

/**
 * Two columns of a select for `table` (aliased t): its row count, named after it, and a digest of its rows' versions
 * (xmin: any INSERT, UPDATE or DELETE changes it, even an update that writes the same values) in `orderBy`'s order.
 */
export const tableVersions = (table: string, orderBy: string, where = ''): string =>
  `(select count(*)::int from ${table} t ${where}) as "${table}", (select md5(coalesce(string_agg(t.xmin::text, ',' order by ${orderBy}), '')) from ${table} t ${where}) as "${table}_versions"`;

/** [table, order of its rows, filter]: what fingerprint reads. */
const FINGERPRINT_TABLES: ReadonlyArray<readonly [string, string, string?]> = [
  ['payments', 't.payment_id'],
  ['channels', 't.channel_id'],
  ['payouts', 't.payout_id'],
  ['ledger_accounts', 't.id'],
  ['ledger_journals', 't.id'],
  ['ledger_entries', 't.id'],
  ['audit_log', 't.id'],
  ['chain_transfers', 't.transfer_id'],
  ['chain_transfer_versions', 't.transfer_id, t.version'],
  ['chain_refunds', 't.tx_hash'],
  ['conversions', 't.conversion_id'],
  ['conversion_payments', 't.conversion_id, t.payment_id'],
  ['alerts', 't.id'],
  ['graphile_worker._private_jobs', 't.id', "where key is distinct from 'conversion_batch:nudge'"],
];

/**
 * Every table a request could write to, as counts and row versions (tableVersions). Two equal fingerprints mean
 * nothing was written. The conversion nudge's job row is left out: a threshold credit queues it on a timer up to a
 * second later, from an earlier (accepted) request.
 */
export async function fingerprint(db: DatabaseHandle): Promise<Record<string, string | number>> {
  const versions = FINGERPRINT_TABLES.map(([table, orderBy, where]) => tableVersions(table, orderBy, where));
  const { rows } = await db.pool.query(`select ${versions.join(',\n')},
      (select coalesce(sum(ipn_count), 0)::int from payments) as ipn_count`);
  const row = rows[0] as Record<string, string | number>;
  // Short names for the counts the suites compare.
  row.jobs = row['graphile_worker._private_jobs'] as number;
  return row;
}
