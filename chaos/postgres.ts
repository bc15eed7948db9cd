/**
 * The run's PostgreSQL. Without --database-url: a new embedded cluster in a temp dir (src/db/embedded.ts), on a
 * fixed port so it can be restarted under the running payrail processes (the restart_postgres fault). With
 * --database-url: a fresh database created on that server for this run (never restarted; left in place so it
 * can be inspected).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/db/index.ts';
import type { Logger } from '../src/log.ts';
import { freePort } from './net.ts';

export interface ChaosPostgres {
  readonly url: string;
  readonly restartable: boolean;
  readonly description: string;
  /** Stops the server, waits `downMs`, starts it again on the same port (embedded only). */
  restart(downMs: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startChaosPostgres(options: {
  databaseUrl?: string;
  logger: Logger;
  keep?: boolean;
}): Promise<ChaosPostgres> {
  if (options.databaseUrl) return freshDatabase(options.databaseUrl);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'payrail-chaos-pg-'));
  // As root, PostgreSQL runs as the postgres system user, which must be able to enter this dir.
  fs.chmodSync(dataDir, 0o755);
  const port = await freePort();
  const start = () => startEmbeddedPostgres({ dataDir, port, logger: options.logger, database: 'payrail_chaos' });
  let server: EmbeddedPostgres = await start();
  return {
    url: server.connectionString,
    restartable: true,
    description: `embedded PostgreSQL in ${dataDir}, port ${port}`,
    async restart(downMs) {
      await server.stop();
      await new Promise((r) => setTimeout(r, downMs));
      server = await start();
    },
    async stop() {
      await server.stop().catch(() => undefined);
      if (!options.keep) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function freshDatabase(serverUrl: string): Promise<ChaosPostgres> {
  const name = `chaos_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${pg.escapeIdentifier(name)}`);
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    restartable: false,
    description: `database ${name} created on the server of --database-url (kept after the run)`,
    restart: () => Promise.reject(new Error('restart_postgres needs the embedded PostgreSQL the run starts itself')),
    stop: () => Promise.resolve(),
  };
}
