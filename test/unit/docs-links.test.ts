/**
 * Every relative link in the README and docs/ points at a file that exists and, with a #fragment, at a heading of it
 * (GitHub's anchor rules: lower case, punctuation dropped, spaces to hyphens).
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const PAGES = [
  'README.md',
  'SECURITY.md',
  'bench/README.md',
  'chaos/README.md',
  ...fs.readdirSync(path.join(ROOT, 'docs')).map((f) => `docs/${f}`),
].filter((f) => f.endsWith('.md'));

function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  let inCode = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) inCode = !inCode;
    const heading = !inCode && /^#{1,6}\s+(.*)$/.exec(line);
    if (!heading) continue;
    const base = (heading[1] as string)
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

function links(markdown: string): string[] {
  const withoutCode = markdown.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...withoutCode.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1] as string);
}

describe('documentation links', () => {
  it.each(PAGES)('%s: every relative link resolves, anchors included', (page) => {
    const text = fs.readFileSync(path.join(ROOT, page), 'utf8');
    const broken: string[] = [];
    for (const link of links(text)) {
      if (/^[a-z]+:/i.test(link)) continue;
      const [target, fragment] = link.split('#') as [string, string | undefined];
      const file = target === '' ? path.join(ROOT, page) : path.resolve(path.dirname(path.join(ROOT, page)), target);
      if (!fs.existsSync(file)) {
        broken.push(`${link}: no such file`);
        continue;
      }
      if (fragment !== undefined && file.endsWith('.md') && !anchors(fs.readFileSync(file, 'utf8')).has(fragment))
        broken.push(`${link}: no such heading`);
    }
    expect(broken).toEqual([]);
  });
});
