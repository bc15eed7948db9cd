/**
 * A local run without secrets gets generated ones, kept in the data dir so they survive restarts (the local chain's
 * state and its LocalUSDT are keyed on the host wallet key). loadConfig only asks for them when no DATABASE_URL is set.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { DevSecretName } from './config.ts';

export function localDevSecrets(
  dataDir: string,
  missing: DevSecretName[],
  options: { announce?: boolean } = {},
): Partial<Record<DevSecretName, string>> {
  const file = path.resolve(dataDir, 'dev-secrets.json');
  let stored: Partial<Record<DevSecretName, string>> = {};
  if (fs.existsSync(file)) stored = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Record<DevSecretName, string>>;
  let changed = false;
  for (const name of missing) {
    if (!stored[name]) {
      stored[name] =
        name === 'HOST_WALLET_PRIVATE_KEY'
          ? `0x${randomBytes(32).toString('hex')}`
          : randomBytes(24).toString('base64url');
      changed = true;
    }
  }
  if (changed) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
    fs.writeFileSync(file, JSON.stringify(stored, null, 2) + '\n', { mode: 0o600 });
  }
  // The demo prints where to use the admin token itself; `payrail start` says what it generated, so the operator can use it.
  if (options.announce === false) return stored;
  process.stderr.write(
    `\nLOCAL RUN: no ${missing.join(' / ')} given, using generated development values (kept in ${file}):\n`,
  );
  // The wallet key is not printed: it lives in the file, and only ever holds local test ETH.
  for (const name of missing)
    process.stderr.write(
      `  ${name}=${name === 'HOST_WALLET_PRIVATE_KEY' ? '(generated, see the file)' : stored[name]}\n`,
    );
  process.stderr.write('Set them in the environment for any real deployment.\n\n');
  return stored;
}
