/**
 * Prometheus text (version 0.0.4) written by hand, for the series prom-client cannot carry: prom-client holds values
 * as JavaScript numbers, and an amount must never be one. Values here are exact decimal strings made from bigint
 * smallest units.
 */
import { formatUnits } from '../money/index.ts';

export interface ExactSample {
  readonly labels: Readonly<Record<string, string>>;
  /** A plain decimal, e.g. "12345.678901". */
  readonly value: string;
}

const METRIC_NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const DECIMAL_RE = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?$/;

/** Smallest units as the asset's decimal: 12345678901n with 6 decimals is "12345.678901". */
export function exactAmount(units: bigint, decimals: number): string {
  return formatUnits(units, decimals);
}

export function gaugeFamily(name: string, help: string, samples: readonly ExactSample[]): string {
  if (!METRIC_NAME_RE.test(name)) throw new Error(`metric name ${JSON.stringify(name)} is not a Prometheus name`);
  const lines = [`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} gauge`];
  for (const sample of samples) {
    if (!DECIMAL_RE.test(sample.value))
      throw new Error(`${name}: ${JSON.stringify(sample.value)} is not a plain decimal`);
    lines.push(`${name}${labelText(sample.labels)} ${sample.value}`);
  }
  return `${lines.join('\n')}\n`;
}

function labelText(labels: Readonly<Record<string, string>>): string {
  const pairs = Object.entries(labels).map(([key, value]) => {
    if (!LABEL_NAME_RE.test(key) || key.startsWith('__'))
      throw new Error(`label name ${JSON.stringify(key)} is not a Prometheus label name`);
    return `${key}="${escapeLabelValue(value)}"`;
  });
  return pairs.length === 0 ? '' : `{${pairs.join(',')}}`;
}

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(help: string): string {
  return help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}
