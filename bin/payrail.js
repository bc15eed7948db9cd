#!/usr/bin/env node
// In a checkout, the TypeScript sources run through tsx's loader (a dev dependency). A production install, built with
// `npm run build` and pruned of dev dependencies, has no tsx: it runs the compiled dist/ with plain Node.
import fs from 'node:fs';

let tsx;
try {
  tsx = await import('tsx/esm/api');
} catch (error) {
  if (error?.code !== 'ERR_MODULE_NOT_FOUND') throw error;
}
if (tsx) {
  tsx.register();
  await import('../src/cli.ts');
} else if (fs.existsSync(new URL('../dist/cli.js', import.meta.url))) {
  await import('../dist/cli.js');
} else {
  process.stderr.write('payrail: neither tsx (npm install) nor a build (npm run build) is here\n');
  process.exit(70);
}
