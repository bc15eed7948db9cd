/**
 * A strict reader of the Prometheus text format (version 0.0.4), for tests: it refuses what a Prometheus server
 * would refuse (samples before their TYPE, a family split in two, a series twice, a malformed label or value, a
 * histogram whose buckets are not cumulative), and hands back every sample with its value as written.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The value exactly as written (amounts are compared as text). */
  readonly value: string;
}

export interface Family {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly samples: Sample[];
}

export interface Exposition {
  readonly families: ReadonlyMap<string, Family>;
  /** The value of one series, or undefined when absent. Labels must match exactly. */
  value(name: string, labels?: Record<string, string>): string | undefined;
  /** The value as a number (for counts and durations, never for amounts). */
  number(name: string, labels?: Record<string, string>): number | undefined;
  samples(name: string): Sample[];
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
// Prometheus reads a value with Go's strconv.ParseFloat, which matches NaN and Inf ignoring case: prom-client writes
// an empty event-loop histogram's mean as "Nan", and a Prometheus server takes it.
const VALUE_RE = /^(nan|[+-]inf|[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?)$/i;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export function parseExposition(text: string): Exposition {
  if (text !== '' && !text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const families = new Map<
    string,
    { name: string; type: MetricType | undefined; help: string | undefined; samples: Sample[] }
  >();
  const seenSeries = new Set<string>();
  const closed = new Set<string>();
  let current: string | undefined;

  const family = (name: string) => {
    let f = families.get(name);
    if (!f) {
      f = { name, type: undefined, help: undefined, samples: [] };
      families.set(name, f);
    }
    return f;
  };
  const enter = (name: string, line: number) => {
    if (current === name) return;
    if (closed.has(name)) throw new Error(`line ${line}: family ${name} appears in two groups`);
    if (current !== undefined) closed.add(current);
    current = name;
  };

  text.split('\n').forEach((raw, index) => {
    const line = index + 1;
    if (raw.trim() === '') return;
    if (raw.startsWith('#')) {
      const meta = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(raw);
      if (!meta) return; // a plain comment
      const [, keyword, name, rest = ''] = meta as unknown as [string, string, string, string?];
      if (!NAME_RE.test(name)) throw new Error(`line ${line}: bad metric name ${name}`);
      enter(name, line);
      const f = family(name);
      if (keyword === 'HELP') {
        if (f.help !== undefined) throw new Error(`line ${line}: second HELP for ${name}`);
        f.help = rest.replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
      } else {
        if (f.type !== undefined) throw new Error(`line ${line}: second TYPE for ${name}`);
        if (f.samples.length > 0) throw new Error(`line ${line}: TYPE for ${name} after its samples`);
        if (!TYPES.has(rest)) throw new Error(`line ${line}: unknown type ${rest}`);
        f.type = rest as MetricType;
      }
      return;
    }
    const sample = parseSample(raw, line);
    const owner = ownerOf(sample.name, families);
    const f = family(owner);
    enter(owner, line);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seenSeries.has(key))
      throw new Error(`line ${line}: series ${sample.name} ${JSON.stringify(sample.labels)} written twice`);
    seenSeries.add(key);
    if ((f.type === 'histogram' && sample.name === `${owner}_bucket`) !== 'le' in sample.labels) {
      throw new Error(`line ${line}: "le" label only on histogram buckets (${sample.name})`);
    }
    f.samples.push(sample);
  });

  const result = new Map<string, Family>();
  for (const f of families.values()) {
    if (f.type === undefined) throw new Error(`family ${f.name} has no TYPE`);
    if (f.help === undefined) throw new Error(`family ${f.name} has no HELP`);
    if (f.type === 'histogram') checkHistogram(f.name, f.samples);
    result.set(f.name, { name: f.name, type: f.type, help: f.help, samples: f.samples });
  }

  const find = (name: string, labels: Record<string, string> = {}) => {
    const owner = ownerOf(name, result);
    return result.get(owner)?.samples.find((s) => s.name === name && sameLabels(s.labels, labels));
  };
  return {
    families: result,
    value: (name, labels) => find(name, labels)?.value,
    number: (name, labels) => {
      const found = find(name, labels)?.value;
      return found === undefined ? undefined : promNumber(found);
    },
    samples: (name) => result.get(ownerOf(name, result))?.samples.filter((s) => s.name === name) ?? [],
  };
}

function parseSample(raw: string, line: number): Sample {
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(raw);
  if (!nameMatch) throw new Error(`line ${line}: no metric name in ${JSON.stringify(raw)}`);
  const name = nameMatch[0];
  let at = name.length;
  const labels: Record<string, string> = {};
  if (raw[at] === '{') {
    at++;
    while (raw[at] !== '}') {
      const labelMatch = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(raw.slice(at));
      if (!labelMatch || !LABEL_RE.test(labelMatch[0])) throw new Error(`line ${line}: bad label name at ${at}`);
      const label = labelMatch[0];
      at += label.length;
      if (raw.slice(at, at + 2) !== '="') throw new Error(`line ${line}: expected =" after ${label}`);
      at += 2;
      let value = '';
      for (;;) {
        const ch = raw[at];
        if (ch === undefined) throw new Error(`line ${line}: unterminated label value`);
        at++;
        if (ch === '"') break;
        if (ch === '\\') {
          const next = raw[at++];
          if (next === 'n') value += '\n';
          else if (next === '\\' || next === '"') value += next;
          else throw new Error(`line ${line}: bad escape \\${next}`);
        } else value += ch;
      }
      if (label in labels) throw new Error(`line ${line}: label ${label} twice`);
      labels[label] = value;
      if (raw[at] === ',') at++;
      else if (raw[at] !== '}') throw new Error(`line ${line}: expected , or } at ${at}`);
    }
    at++;
  }
  const rest = raw.slice(at);
  const parts = /^ (\S+)(?: (-?\d+))?$/.exec(rest);
  if (!parts || !VALUE_RE.test(parts[1] as string))
    throw new Error(`line ${line}: bad value in ${JSON.stringify(raw)}`);
  return { name, labels, value: parts[1] as string };
}

/** A histogram's _bucket, _sum and _count belong to it; anything else to the family of its own name. */
function ownerOf(name: string, families: ReadonlyMap<string, { type: MetricType | undefined }>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const type = families.get(base)?.type;
    if (type === 'histogram' || (type === 'summary' && suffix !== '_bucket')) return base;
  }
  return name;
}

function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}

/** Go's float syntax as Prometheus writes it: "+Inf" is not JavaScript's "Infinity". */
function promNumber(text: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  return Number(text);
}

function checkHistogram(name: string, samples: readonly Sample[]): void {
  const groups = new Map<string, { buckets: Array<[number, number]>; count?: number }>();
  const keyOf = (labels: Readonly<Record<string, string>>) =>
    JSON.stringify(
      Object.entries(labels)
        .filter(([k]) => k !== 'le')
        .sort(),
    );
  for (const s of samples) {
    const group = groups.get(keyOf(s.labels)) ?? { buckets: [] };
    groups.set(keyOf(s.labels), group);
    if (s.name === `${name}_bucket`) group.buckets.push([promNumber(s.labels.le as string), Number(s.value)]);
    if (s.name === `${name}_count`) group.count = Number(s.value);
  }
  for (const [labels, group] of groups) {
    const inf = group.buckets.find(([le]) => le === Infinity);
    if (!inf) throw new Error(`histogram ${name}${labels}: no +Inf bucket`);
    if (inf[1] !== group.count)
      throw new Error(`histogram ${name}${labels}: +Inf bucket ${inf[1]} is not the count ${group.count}`);
    const sorted = [...group.buckets].sort((x, y) => x[0] - y[0]);
    sorted.forEach(([, v], i) => {
      if (i > 0 && v < (sorted[i - 1] as [number, number])[1])
        throw new Error(`histogram ${name}${labels}: buckets not cumulative`);
    });
  }
}
