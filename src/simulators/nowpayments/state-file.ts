/**
 * The simulator's books on disk: one JSON record per line, appended as things change, so a restarted simulator
 * reads back what it held; numbers keep their exact text (lossless).
 */
import fs from 'node:fs';
import { parse as parseLossless, stringify } from 'lossless-json';

/** The records in the order they were written (a later one for the same id replaces the earlier); none without a file. */
export function readJsonLines(path: string | undefined): Array<Record<string, unknown>> {
  if (!path || !fs.existsSync(path)) return [];
  return fs
    .readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => parseLossless(line) as Record<string, unknown>);
}

/** Nothing is written without a path: the books are then in memory only. */
export function appendJsonLine(path: string | undefined, record: Record<string, unknown>): void {
  if (path) fs.appendFileSync(path, `${stringify(record) ?? ''}\n`);
}
