// The production build: src/ compiled by tsc (tsconfig.build.json) into dist/, with the SQL migrations copied beside
// the module that reads them. Plain Node runs the result; no TypeScript loader is needed in production.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
// A file left from an earlier build of a module since removed would still be importable: start empty.
fs.rmSync(dist, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
fs.cpSync(path.join(root, 'src', 'db', 'migrations'), path.join(dist, 'db', 'migrations'), { recursive: true });
process.stdout.write(`built ${path.relative(process.cwd(), dist) || '.'}/\n`);
