#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx's loader: one artifact for dev and production, no build step.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
