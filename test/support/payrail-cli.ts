/**
 * The payrail command as an operator runs it against a test world (`node bin/payrail.js …`): its settings from the
 * environment, its answer in its output and exit code.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { TestDatabase } from './db.ts';
import type { Outside } from './outside.ts';

const execute = promisify(execFile);

/** What a command exits with when it refuses or fails. */
export interface CliFailure {
  code: number;
  stdout: string;
  stderr: string;
}

/** The environment of a command run on the world's database, chain and host wallet, with no log lines. */
export function cliEnv(db: TestDatabase, outside: Outside): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DATABASE_URL: db.url,
    ETH_RPC_URL: outside.chain.rpcUrl,
    CHAIN_ID: String(outside.chain.chainId),
    HOST_WALLET_ADDRESS: outside.hostAddress,
    USDT_CONTRACT: outside.usdt,
    LOG_LEVEL: 'silent',
  };
}

/** Runs `payrail <args>`; rejects when it exits other than 0. */
export function payrailCli(args: string[], env: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string }> {
  return execute('node', ['bin/payrail.js', ...args], { env });
}

/** Runs `payrail <args>` expecting it to fail: its exit code and output, or null when it exited 0. */
export function payrailCliFailure(args: string[], env: NodeJS.ProcessEnv): Promise<CliFailure | null> {
  return payrailCli(args, env).then(
    () => null,
    (error: CliFailure) => error,
  );
}
