/**
 * Numbered SQL migrations (src/db/migrations/NNN_name.sql), each applied once in its own transaction. The whole run
 * holds an advisory lock, so web and worker processes starting together apply them once; running it again is a
 * no-op.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';

const MIGRATIONS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');
const FILE_RE = /^(\d{3})_[a-z0-9_]+\.sql$/;
// An arbitrary constant naming "payrail schema migration" among advisory locks.
const LOCK_KEY = 7_310_042_001;

export interface Migration {
  id: number;
  name: string;
  sql: string;
}

export function listMigrations(dir = MIGRATIONS_DIR): Migration[] {
  const migrations = fs
    .readdirSync(dir)
    .filter((file) => file.endsWith('.sql'))
    .map((file) => {
      const match = FILE_RE.exec(file);
      if (!match) throw new Error(`migration file name must look like 001_name.sql: ${file}`);
      return {
        id: Number.parseInt(match[1] ?? '', 10),
        name: file,
        sql: fs.readFileSync(path.join(dir, file), 'utf8'),
      };
    })
    .sort((a, b) => a.id - b.id);
  migrations.forEach((m, index) => {
    if (m.id !== index + 1) throw new Error(`migrations must be numbered 001, 002, ... without gaps: ${m.name}`);
  });
  return migrations;
}

/** Applies pending migrations; returns the names applied by this call. */
export async function migrate(pool: pg.Pool): Promise<string[]> {
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query('select pg_advisory_lock($1)', [LOCK_KEY]);
    await client.query(`create table if not exists payrail_migrations (
      id integer primary key, name text not null, applied_at timestamptz not null default now())`);
    const done = new Set(
      (await client.query<{ id: number }>('select id from payrail_migrations')).rows.map((r) => r.id),
    );
    for (const migration of listMigrations()) {
      if (done.has(migration.id)) continue;
      await client.query('begin');
      try {
        await client.query(migration.sql);
        await client.query('insert into payrail_migrations (id, name) values ($1, $2)', [migration.id, migration.name]);
        await client.query('commit');
      } catch (error) {
        await client.query('rollback');
        throw new Error(`migration ${migration.name} failed: ${(error as Error).message}`, { cause: error });
      }
      applied.push(migration.name);
    }
  } finally {
    await client.query('select pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => undefined);
    client.release();
  }
  return applied;
}

/**
 * Migrations this version has that the database has not applied: read-only commands refuse to run against an older
 * schema instead of migrating it themselves (that is the release step's job, `payrail migrate`).
 */
export async function pendingMigrations(pool: pg.Pool): Promise<string[]> {
  const table = await pool.query<{ exists: boolean }>("select to_regclass('payrail_migrations') is not null as exists");
  const done = table.rows[0]?.exists
    ? new Set((await pool.query<{ id: number }>('select id from payrail_migrations')).rows.map((r) => r.id))
    : new Set<number>();
  return listMigrations()
    .filter((m) => !done.has(m.id))
    .map((m) => m.name);
}
