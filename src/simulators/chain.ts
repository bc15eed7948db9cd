/**
 * A local EVM chain for local runs and tests: anvil, from the @foundry-rs/anvil npm package (a real node, not a
 * mock). Bound to 127.0.0.1, mining each transaction as it arrives.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Chain, PublicClient } from 'viem';

export interface LocalChain {
  readonly rpcUrl: string;
  readonly chainId: number;
  stop(): Promise<void>;
}

export interface LocalChainOptions {
  port: number;
  chainId?: number;
  /** Seconds between blocks; unset mines one block per transaction as it arrives. */
  blockTimeSeconds?: number;
  /** File to load the chain from and dump it to, so a local run keeps its balances across restarts. */
  statePath?: string;
  /** Where the running anvil's pid is kept, so a later process that adopts it can also stop it. */
  pidFile?: string;
}

/** The local chain as a viem wallet client wants it to sign for, with the id the node at `rpcUrl` reports. */
export async function viemLocalChain(client: Pick<PublicClient, 'getChainId'>, rpcUrl: string): Promise<Chain> {
  return {
    id: await client.getChainId(),
    name: 'local',
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  };
}

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };
const READY_TIMEOUT_MS = 30_000;

export function anvilBinary(): string {
  const arch = ARCH[process.arch];
  if (!arch) throw new Error(`no anvil binary for ${process.platform}-${process.arch}`);
  const pkg = `@foundry-rs/anvil-${process.platform}-${arch}`;
  const require = createRequire(import.meta.url);
  try {
    return path.join(
      path.dirname(require.resolve(`${pkg}/package.json`)),
      'bin',
      process.platform === 'win32' ? 'anvil.exe' : 'anvil',
    );
  } catch (error) {
    throw new Error(`anvil binary package ${pkg} is not installed; run npm install`, { cause: error });
  }
}

export async function startLocalChain(options: LocalChainOptions): Promise<LocalChain> {
  const chainId = options.chainId ?? 31337;
  const rpcUrl = `http://127.0.0.1:${options.port}`;
  // A payrail killed with SIGKILL leaves its anvil running: adopt it (with its state) rather than fail on the port.
  const running = await chainIdAt(rpcUrl);
  if (running === chainId) {
    const pid = options.pidFile ? adoptablePid(options.pidFile) : undefined;
    return { rpcUrl, chainId, stop: async () => (pid === undefined ? undefined : stopPid(pid)) };
  }
  if (running !== undefined)
    throw new Error(`port ${options.port} serves chain ${running}, not the local chain ${chainId}`);
  // Past its in-memory history, anvil writes every block's state under ~/.foundry/anvil/tmp and leaves it there when
  // it stops: tens of GB after a day of tests and benches. Nothing here reads a state that old.
  const args = [
    '--host',
    '127.0.0.1',
    '--port',
    String(options.port),
    '--chain-id',
    String(chainId),
    '--silent',
    '--max-persisted-states',
    '0',
  ];
  if (options.blockTimeSeconds !== undefined) args.push('--block-time', String(options.blockTimeSeconds));
  if (options.statePath) args.push('--state', options.statePath, '--state-interval', '2');
  const child = spawn(anvilBinary(), args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  try {
    await waitForRpc(rpcUrl, child, () => stderr);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  if (options.pidFile && child.pid !== undefined) fs.writeFileSync(options.pidFile, String(child.pid));
  return {
    rpcUrl,
    chainId,
    async stop() {
      await stopChild(child);
      if (options.pidFile) fs.rmSync(options.pidFile, { force: true });
    },
  };
}

/** One JSON-RPC call with a timeout. */
export async function rpc(rpcUrl: string, method: string, params: unknown[], timeoutMs = 10_000): Promise<unknown> {
  const res = await fetch(rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const body = (await res.json()) as { result?: unknown; error?: { message: string } };
  if (body.error) throw new Error(`${method}: ${body.error.message}`);
  return body.result;
}

async function chainIdAt(rpcUrl: string): Promise<number | undefined> {
  try {
    return Number.parseInt(String(await rpc(rpcUrl, 'eth_chainId', [], 1_000)), 16);
  } catch {
    return undefined;
  }
}

async function waitForRpc(rpcUrl: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`anvil exited with ${child.exitCode}: ${stderr()}`);
    if ((await chainIdAt(rpcUrl)) !== undefined) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`anvil did not answer on ${rpcUrl} within ${READY_TIMEOUT_MS}ms: ${stderr()}`);
}

/** The pid of an anvil a killed payrail left behind, when the pid file names a live anvil process. */
function adoptablePid(pidFile: string): number | undefined {
  try {
    const pid = Number.parseInt(fs.readFileSync(pidFile, 'utf8'), 10);
    process.kill(pid, 0);
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('anvil') ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function stopPid(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  process.kill(pid, 'SIGKILL');
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
