/**
 * Where the worker's time goes, from graphile-worker's own completion lines ("Completed task N (task, 12.34ms)",
 * logged at info level): per task, how many runs, how long each held a worker slot, and how long each waited in the
 * queue after it was due (from run_at to locked_at). bench:pipeline's `--job-times`.
 */
import { fmt, percentile, table } from './shared.ts';

/** One completed run, as its log line tells it. */
interface JobRun {
  readonly task: string;
  readonly endedAt: number;
  readonly runMs: number;
  readonly waitMs: number;
}

interface CompletionLine {
  component?: unknown;
  time?: unknown;
  duration?: unknown;
  job?: { task_identifier?: unknown; run_at?: unknown; locked_at?: unknown };
}

export class JobTimes {
  private readonly runs: JobRun[] = [];

  /** Takes a payrail log line if it is a job's completion (and answers true), else leaves it to the caller. */
  readonly take = (line: string): boolean => {
    if (!line.includes('"graphile-worker"') || !line.includes('"duration"')) return false;
    let parsed: CompletionLine;
    try {
      parsed = JSON.parse(line) as CompletionLine;
    } catch {
      return false;
    }
    const { job, time, duration } = parsed;
    if (typeof time !== 'number' || typeof duration !== 'number' || typeof job?.task_identifier !== 'string')
      return false;
    const due = typeof job.run_at === 'string' ? Date.parse(job.run_at) : Number.NaN;
    const locked = typeof job.locked_at === 'string' ? Date.parse(job.locked_at) : Number.NaN;
    this.runs.push({
      task: job.task_identifier,
      endedAt: time,
      runMs: duration,
      waitMs: Number.isNaN(due) || Number.isNaN(locked) ? 0 : Math.max(0, locked - due),
    });
    return true;
  };

  /** The report's table: tasks by the slot time they took, and how busy `slots` worker slots were over the runs. */
  lines(slots: number): string[] {
    if (this.runs.length === 0) return ['worker jobs: no completion lines were logged'];
    const first = Math.min(...this.runs.map((r) => r.endedAt - r.runMs));
    const last = Math.max(...this.runs.map((r) => r.endedAt));
    const total = this.runs.reduce((sum, r) => sum + r.runMs, 0);
    const byTask = new Map<string, JobRun[]>();
    for (const run of this.runs) {
      const runs = byTask.get(run.task) ?? [];
      runs.push(run);
      byTask.set(run.task, runs);
    }
    const rows = [...byTask.entries()]
      .map(([task, runs]) => ({ task, runs, slotMs: runs.reduce((sum, r) => sum + r.runMs, 0) }))
      .sort((a, b) => b.slotMs - a.slotMs)
      .map(({ task, runs, slotMs }) => {
        const run = Float64Array.from(runs, (r) => r.runMs).sort();
        const wait = Float64Array.from(runs, (r) => r.waitMs).sort();
        return [
          task,
          String(runs.length),
          fmt(slotMs / 1000),
          `${fmt((slotMs / total) * 100, 0)} %`,
          `${fmt(percentile(run, 50), 0)} / ${fmt(percentile(run, 90), 0)}`,
          `${fmt(percentile(wait, 50), 0)} / ${fmt(percentile(wait, 90), 0)}`,
        ];
      });
    const busy = (total / (slots * (last - first))) * 100;
    return [
      `worker jobs (graphile-worker's completions, first start -> last end ${fmt((last - first) / 1000)} s;` +
        ` ${slots} slots busy ${fmt(busy, 0)} % of it; wait = due -> started):`,
      ...table(['task', 'runs', 'slot s', 'share', 'run p50 / p90 ms', 'wait p50 / p90 ms'], rows)
        .split('\n')
        .map((l) => `  ${l}`),
    ];
  }
}
