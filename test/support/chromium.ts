/**
 * Debian's chromium for the browser tests (playwright-core downloads no browser of its own). Installed here when
 * missing, so a fresh machine runs the dashboard test without a manual step; a machine where that cannot work
 * (not root, no apt-get, no network) fails with a message saying what to install.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM_PATH = '/usr/bin/chromium';
const APT_TIMEOUT_MS = 10 * 60_000;

function apt(args: string[]): void {
  // Wait for another apt run's lock instead of failing at once; no recommended packages (daemons a test never needs).
  execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=120', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: APT_TIMEOUT_MS,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
}

/** Makes sure /usr/bin/chromium exists; returns its path. */
export function ensureChromium(): string {
  if (fs.existsSync(CHROMIUM_PATH)) return CHROMIUM_PATH;
  const failures: string[] = [];
  // The package lists may be missing or stale on a fresh machine: refresh them only when the first try fails.
  for (const update of [false, true]) {
    try {
      if (update) apt(['update']);
      apt(['install', '-y', '--no-install-recommends', 'chromium']);
      if (fs.existsSync(CHROMIUM_PATH)) return CHROMIUM_PATH;
      failures.push(
        `apt-get install chromium ran${update ? ' (after apt-get update)' : ''} but ${CHROMIUM_PATH} is still missing`,
      );
    } catch (error) {
      const e = error as Error & { stderr?: Buffer };
      failures.push(
        `${update ? 'apt-get update + install' : 'apt-get install'}: ${(e.stderr?.toString() || e.message).trim().split('\n').slice(-3).join(' | ')}`,
      );
    }
  }
  throw new Error(
    `The dashboard test needs Debian's chromium at ${CHROMIUM_PATH} and could not install it:\n  ${failures.join('\n  ')}\n` +
      'Install it by hand (as root: apt-get update && apt-get install -y chromium) and run the test again.',
  );
}

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: ensureChromium(), args: ['--headless', '--no-sandbox', '--disable-gpu'] });
}
