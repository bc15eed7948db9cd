/**
 * payrail as real CLI processes (`node bin/payrail.js web|worker`), as deployed: one web process and N workers.
 * Their log lines are kept (parsed when JSON) so the run can count alerts; a process that exits without being told
 * to is restarted, as a supervisor (systemd, Kubernetes) would, and counted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { sleep } from './net.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'payrail.js');

export type Role = 'web' | 'worker';

export interface LogLine {
  process: string;
  line: string;
  json?: Record<string, unknown>;
}

export class PayrailProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Set when the run stops or kills it on purpose: its exit is then expected. */
  intended = false;
  url: string | undefined;
  constructor(
    readonly name: string,
    readonly role: Role,
    env: Record<string, string>,
    onLine: (line: LogLine) => void,
  ) {
    this.child = spawn(process.execPath, [BIN, role], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const take = (line: string) => {
      const listening = /^payrail listening on (http:\/\/\S+)$/.exec(line);
      if (listening) this.url = listening[1];
      let json: Record<string, unknown> | undefined;
      if (line.startsWith('{')) {
        try {
          json = JSON.parse(line) as Record<string, unknown>;
        } catch {
          json = undefined;
        }
      }
      onLine({ process: name, line, ...(json && { json }) });
    };
    readline.createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', take);
    readline.createInterface({ input: this.child.stderr as NodeJS.ReadableStream }).on('line', take);
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  kill9(): Promise<unknown> {
    this.intended = true;
    this.child.kill('SIGKILL');
    return this.exited;
  }

  /** SIGTERM (graceful), SIGKILL after timeoutMs. */
  async stop(timeoutMs = 20_000): Promise<void> {
    this.intended = true;
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const done = await Promise.race([this.exited.then(() => true), sleep(timeoutMs).then(() => false)]);
    if (!done) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

/** Polls /health of the web process until it answers (503 is fine: no worker has a heartbeat yet); bounded. */
export async function waitForWeb(proc: PayrailProcess, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!proc.running) throw new Error(`${proc.name} exited before it was ready`);
    if (proc.url) {
      try {
        const res = await fetch(`${proc.url}/health`, { signal: AbortSignal.timeout(2_000) });
        await res.text();
        if (res.status === 200 || res.status === 503) return proc.url;
      } catch {
        // not yet
      }
    }
    await sleep(200);
  }
  throw new Error(`${proc.name} not healthy within ${timeoutMs} ms`);
}

/** The web process and the workers, with restarts of processes that die on their own. */
export class Fleet {
  readonly lines: LogLine[] = [];
  readonly unexpectedExits: string[] = [];
  private readonly workers: PayrailProcess[] = [];
  private web: PayrailProcess | undefined;
  private counter = 0;
  private stopping = false;
  private readonly all: PayrailProcess[] = [];

  constructor(
    private readonly env: Record<string, string>,
    private readonly workerCount: number,
    private readonly echo: (line: LogLine) => void,
  ) {}

  private spawn(role: Role): PayrailProcess {
    const name = `${role}-${++this.counter}`;
    const proc = new PayrailProcess(name, role, this.env, (line) => {
      this.lines.push(line);
      this.echo(line);
    });
    this.all.push(proc);
    void proc.exited.then(({ code, signal }) => {
      if (proc.intended || this.stopping) return;
      this.unexpectedExits.push(`${name} exited on its own (code ${code}, signal ${signal})`);
      // The supervisor's restart, after a short pause.
      setTimeout(() => {
        if (this.stopping) return;
        if (role === 'web') this.startWeb().catch(() => undefined);
        else this.replaceWorker(proc);
      }, 500);
    });
    return proc;
  }

  async startWeb(): Promise<string> {
    this.web = this.spawn('web');
    return waitForWeb(this.web, 90_000);
  }

  /** The web's base URL right now (it changes if the web process had to be restarted). */
  webUrl(): string | undefined {
    return this.web?.running ? this.web.url : undefined;
  }

  startWorkers(): void {
    for (let i = 0; i < this.workerCount; i++) this.workers.push(this.spawn('worker'));
  }

  private replaceWorker(old: PayrailProcess): PayrailProcess {
    const index = this.workers.indexOf(old);
    const fresh = this.spawn('worker');
    if (index >= 0) this.workers[index] = fresh;
    else this.workers.push(fresh);
    return fresh;
  }

  /** SIGKILL one running worker (by index) and start a new one in its place. */
  async killWorker(index: number): Promise<string> {
    const victim = this.workers[index % this.workers.length];
    if (!victim) return 'no worker';
    await victim.kill9();
    const fresh = this.replaceWorker(victim);
    return `${victim.name} SIGKILLed, ${fresh.name} started`;
  }

  /** Log lines with "event":"alert", by alert name. */
  alerts(name?: string): LogLine[] {
    return this.lines.filter((l) => l.json?.event === 'alert' && (name === undefined || l.json.alert === name));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.all.map((p) => p.stop()));
  }
}
