/**
 * One real PostgreSQL for the whole run (the same embedded launcher payrail uses), a migrated template database,
 * and after the run: the ledger check over every database the tests created.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { migrate, openPool, startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/index.ts';
import { migrateQueue } from '../../src/jobs/index.ts';
import { checkLedger } from '../../src/ledger/index.ts';
import { createLogger } from '../../src/log.ts';
import { freePort } from './ports.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
  }
}

export const TEMPLATE_DB = 'payrail_template';
let server: EmbeddedPostgres | undefined;
let dataDir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  const logger = createLogger({ level: 'error' });
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'payrail-test-pg-'));
  // The server may run as the postgres system user (when tests run as root): it must be able to enter this dir.
  fs.chmodSync(dataDir, 0o755);
  server = await startEmbeddedPostgres({ dataDir, port: await freePort(), logger, database: TEMPLATE_DB });
  const handle = openPool(server.connectionString, { max: 2, applicationName: 'payrail-test-setup', logger });
  await migrate(handle.pool);
  await migrateQueue(handle.pool, logger);
  await handle.close();
  const admin = new URL(server.connectionString);
  admin.pathname = '/postgres';
  project.provide('pgAdminUrl', admin.toString());
}

export async function teardown(): Promise<void> {
  if (!server) return;
  const adminUrl = new URL(server.connectionString);
  adminUrl.pathname = '/postgres';
  const client = new pg.Client({ connectionString: adminUrl.toString() });
  await client.connect();
  const dbs = (
    await client.query<{ datname: string }>(
      "select datname from pg_database where datname like 'test\\_%' order by datname",
    )
  ).rows;
  await client.end();
  const broken: string[] = [];
  const logger = createLogger({ level: 'silent' });
  for (const { datname } of dbs) {
    const url = new URL(server.connectionString);
    url.pathname = `/${datname}`;
    const handle = openPool(url.toString(), { max: 1, applicationName: 'payrail-test-teardown', logger });
    try {
      const report = await checkLedger(handle.db);
      if (!report.ok)
        broken.push(`${datname}: ${report.problems.map((p) => `${p.rule} ${p.subject} ${p.detail}`).join('; ')}`);
    } finally {
      await handle.close();
    }
  }
  await server.stop();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  if (broken.length > 0) throw new Error(`check-ledger after the suite found violations:\n${broken.join('\n')}`);
  process.stdout.write(`check-ledger after the suite: ${dbs.length} test databases, all balanced\n`);
}
