/**
 * The production build: `npm run build` compiles src/ into dist/, which plain Node runs (no TypeScript loader): the
 * commands, the migrations it carries, and the web role with its dashboard.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db.ts';
import { freePort } from '../support/ports.ts';
import { offlineProcessEnv } from '../support/process-env.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DIST_CLI = path.join(ROOT, 'dist', 'cli.js');

interface Run {
  exited: Promise<number | null>;
  stdout: () => string;
  output: () => string;
  kill: () => void;
}

/** A process of plain Node, with only PATH and HOME from this one's environment. */
function run(args: string[], env: Record<string, string>): Run {
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => ((stdout += chunk.toString()), (output += chunk.toString())));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { exited, stdout: () => stdout, output: () => output, kill: () => child.kill('SIGTERM') };
}

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  const build = run([path.join(ROOT, 'scripts', 'build.mjs')], {});
  expect(await build.exited, build.output()).toBe(0);
}, 180_000);

afterAll(async () => {
  await db?.close();
});

/** Every JavaScript file under dir. */
function jsFiles(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) =>
      e.isDirectory() ? jsFiles(path.join(dir, e.name)) : e.name.endsWith('.js') ? [path.join(dir, e.name)] : [],
    );
}

describe('npm run build', () => {
  it('emits JavaScript whose relative imports name .js files, with every migration beside its reader', () => {
    const files = jsFiles(path.join(ROOT, 'dist'));
    expect(files.length).toBeGreaterThan(50);
    const tsImports = files.filter((f) =>
      /\bfrom\s+['"]\.{1,2}\/[^'"]*\.ts['"]|import\(\s*['"]\.{1,2}\/[^'"]*\.ts['"]/.test(fs.readFileSync(f, 'utf8')),
    );
    expect(tsImports).toEqual([]);
    const migrations = (dir: string) =>
      fs
        .readdirSync(dir)
        .filter((f) => f.endsWith('.sql'))
        .sort();
    expect(migrations(path.join(ROOT, 'dist', 'db', 'migrations'))).toEqual(
      migrations(path.join(ROOT, 'src', 'db', 'migrations')),
    );
  });

  it('runs with plain Node: status --json and check-ledger against a deployment database', async () => {
    const status = run([DIST_CLI, 'status', '--json'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' });
    expect(await status.exited, status.output()).toBe(0);
    expect(JSON.parse(status.stdout())).toMatchObject({ windowHours: 24 });
    const check = run([DIST_CLI, 'check-ledger'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' });
    expect(await check.exited, check.output()).toBe(0);
    expect(check.stdout()).toContain('ledger OK');
  });

  it('migrates with DATABASE_URL alone: the release step needs none of the secrets of the processes', async () => {
    const migrate = run([DIST_CLI, 'migrate'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' });
    expect(await migrate.exited, migrate.output()).toBe(0);
    expect(migrate.stdout()).toContain('migrations applied');
  });

  it('refuses to start with PAYRAIL_CRASH_AT set: the crash points are for tests run from source', async () => {
    const status = run([DIST_CLI, 'status'], { DATABASE_URL: db.url, PAYRAIL_CRASH_AT: 'after_broadcast' });
    expect(await status.exited).toBe(78);
    expect(status.output()).toContain(
      'PAYRAIL_CRASH_AT: crash tests only; a production build (dist/) does not read it',
    );
  });

  it('serves the web role: health, the dashboard and its vendored scripts', { timeout: 60_000 }, async () => {
    const port = await freePort();
    const web = run([DIST_CLI, 'web'], { ...offlineProcessEnv(db.url), PORT: String(port) });
    try {
      const url = `http://127.0.0.1:${port}`;
      const deadline = Date.now() + 45_000;
      let live = 0;
      while (live !== 200 && Date.now() < deadline) {
        live = await fetch(`${url}/health/live`).then(
          (r) => r.status,
          () => 0,
        );
        if (live !== 200) await new Promise((r) => setTimeout(r, 200));
      }
      expect(live, web.output()).toBe(200);
      for (const [route, type] of [
        ['/', 'text/html'],
        ['/assets/app.js', 'text/javascript'],
        ['/assets/alpine.min.js', 'text/javascript'],
      ] as const) {
        const res = await fetch(url + route);
        expect(res.status, route).toBe(200);
        expect(res.headers.get('content-type'), route).toContain(type);
      }
    } finally {
      web.kill();
      await web.exited;
    }
  });
});
