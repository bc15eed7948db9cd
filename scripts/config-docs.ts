/**
 * docs/configuration.md and .env.example, generated from the configuration schema in src/config.ts: every variable
 * with its default (as it would be written in the environment) and its meaning (the schema's `.describe()` text).
 *
 *   npm run docs:config               write both files
 *   npm run docs:config -- --check    write nothing; exit 1 naming each file that differs from what would be written
 *
 * test/unit/config-docs.test.ts fails when either file is stale, so `npm test` (what CI runs) catches a variable added,
 * removed, re-described or given another default without its documentation.
 *
 * Defaults come from the schema itself (`.default(…)`, written back the way an operator would write it and parsed
 * again to check that it means the same), except the few that code outside the schema decides: the variables a
 * deployment must set (loadConfig with DATABASE_URL set names them), the chain-dependent transfer policy
 * (transferPolicy), the NOWPayments API's public address, and two rules that only loadConfig states.
 */
import fs from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The files this script writes, relative to the repository's root. */
export const CONFIG_DOC_FILES = ['docs/configuration.md', '.env.example'] as const;
type DocFile = (typeof CONFIG_DOC_FILES)[number];

/** The schema's own description, by which its object is told apart from the fields' (see readSchema). */
const SCHEMA_DESCRIPTION_START = 'The environment variables payrail reads';

interface Variable {
  readonly name: string;
  /** Markdown: `3000`, unset, required*, or a sentence for a default decided outside the schema. */
  readonly defaultText: string;
  /** The default as a line of .env.example would carry it, when it is one plain value. */
  readonly defaultValue: string | undefined;
  readonly meaning: string;
}

/** The parts of a zod schema's definition this script reads. */
interface Def {
  readonly type: string;
  readonly innerType?: z.ZodType;
  readonly in?: z.ZodType;
  readonly defaultValue?: unknown;
}

const defOf = (schema: z.ZodType): Def => schema._zod.def;
const code = (text: string): string => `\`${text}\``;

const DURATION_UNITS: ReadonlyArray<readonly [string, number]> = [
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
  ['ms', 1],
];
/** Milliseconds in the largest unit that divides them: 3_600_000 → "1h", 15_000 → "15s". */
function formatDuration(ms: number): string {
  const [unit, size] = DURATION_UNITS.find(([, size]) => ms % size === 0) ?? ['ms', 1];
  return `${ms / size}${unit}`;
}

/**
 * The schema object, with its fields. src/config.ts keeps its schema to itself; its `.describe()` calls register each
 * described schema in zod's global registry as the module is evaluated, so the registry's `add` is watched while the
 * module loads, and the object described as the environment's is the one read. The module must not have been loaded
 * before in this process (a loaded one registers nothing): nothing here imports it statically.
 */
let loaded: Promise<{ shape: Record<string, z.ZodType>; config: typeof import('../src/config.ts') }> | undefined;
function readSchema(): Promise<{ shape: Record<string, z.ZodType>; config: typeof import('../src/config.ts') }> {
  loaded ??= (async () => {
    const registry = z.globalRegistry;
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called below as add.call(this, …), with the registry as `this`
    const add = registry.add;
    const described: z.ZodType[] = [];
    registry.add = function watched(this: typeof registry, schema, ...meta) {
      described.push(schema as unknown as z.ZodType);
      return add.call(this, schema, ...meta);
    };
    let config: typeof import('../src/config.ts');
    try {
      config = await import('../src/config.ts');
    } finally {
      registry.add = add;
    }
    const object = described.find(
      (schema): schema is z.ZodObject =>
        schema instanceof z.ZodObject && (schema.description ?? '').startsWith(SCHEMA_DESCRIPTION_START),
    );
    if (object === undefined)
      throw new Error(
        `src/config.ts registered no schema described as "${SCHEMA_DESCRIPTION_START}…" (was it loaded before this script read it?)`,
      );
    return { shape: object.shape, config };
  })();
  return loaded;
}

/** A default the schema holds: the value, and the schema that would parse its written form. */
function schemaDefault(schema: z.ZodType): { value: unknown; parser: z.ZodType } | undefined {
  const def = defOf(schema);
  if (def.type === 'default' && def.innerType) return { value: def.defaultValue, parser: def.innerType };
  if (def.type === 'pipe' && def.in) return schemaDefault(def.in);
  return undefined;
}

function isOptional(schema: z.ZodType): boolean {
  const def = defOf(schema);
  if (def.type === 'optional') return true;
  if (def.type === 'pipe' && def.in) return isOptional(def.in);
  return false;
}

/** The default as written in the environment ("1h", not 3600000), checked by parsing it back to the same value. */
function writtenDefault(name: string, value: unknown, parser: z.ZodType): string {
  const candidates = typeof value === 'number' ? [String(value), formatDuration(value)] : [String(value)];
  for (const text of candidates) {
    const parsed = parser.safeParse(text);
    if (parsed.success && isDeepStrictEqual(parsed.data, value)) return text;
  }
  throw new Error(`${name}: cannot write its default ${String(value)} as an environment value`);
}

async function readVariables(): Promise<Variable[]> {
  const { shape, config } = await readSchema();
  const { loadConfig, ConfigError, NOWPAYMENTS_DEFAULT_API_URL } = config;

  // What a deployment (DATABASE_URL set) must be given: a local run generates the secrets and starts the services.
  const required = new Set<string>();
  try {
    loadConfig({ DATABASE_URL: 'postgres://payrail@localhost/payrail' });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    for (const problem of error.problems) {
      const match = /^([A-Z][A-Z0-9_]*): required when DATABASE_URL is set/.exec(problem);
      if (match?.[1]) required.add(match[1]);
    }
  }
  if (required.size === 0) throw new Error('loadConfig named no variable required when DATABASE_URL is set');

  // Defaults decided outside the schema.
  const { transferPolicy } = await import('../src/app.ts');
  const local = loadConfig({}, { requireOutside: false });
  const [mainnet, elsewhere] = [transferPolicy(local, 1), transferPolicy(local, 31337)];
  const outside: Record<string, string> = {
    NOWPAYMENTS_API_KEY: 'unset (local run: generated)',
    NOWPAYMENTS_API_URL: code(NOWPAYMENTS_DEFAULT_API_URL),
    TRANSFER_BUMP_AFTER: `${code(formatDuration(mainnet.bumpAfterMs))} on chain 1, ${code(formatDuration(elsewhere.bumpAfterMs))} elsewhere`,
    CHAIN_CONFIRMATIONS: `${code(String(mainnet.confirmations))} on chain 1, ${code(String(elsewhere.confirmations))} elsewhere`,
    ALERT_WEBHOOK_SECRET: 'required with the URL',
  };
  for (const name of [...required, ...Object.keys(outside)])
    if (!(name in shape)) throw new Error(`${name} is not in the schema`);

  return Object.entries(shape).map(([name, schema]): Variable => {
    const meaning = schema.description;
    if (meaning === undefined || meaning.trim() === '')
      throw new Error(`${name} has no description: add .describe(…) to it in src/config.ts`);
    const found = schemaDefault(schema);
    const value = found && writtenDefault(name, found.value, found.parser);
    let defaultText: string;
    if (required.has(name)) defaultText = 'required*';
    else if (outside[name] !== undefined) defaultText = outside[name];
    else if (value !== undefined) defaultText = code(value);
    else if (isOptional(schema)) defaultText = 'unset';
    else throw new Error(`${name}: neither a default nor optional`);
    return { name, defaultText, defaultValue: value, meaning };
  });
}

const cell = (text: string): string => text.replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|');

function renderMarkdown(variables: readonly Variable[]): string {
  return [
    '# Configuration',
    '',
    "<!-- Generated from src/config.ts by `npm run docs:config`: edit the schema's descriptions, not this file. -->",
    '',
    'payrail is configured by environment variables only. This page is generated from the schema that reads them',
    '(`src/config.ts`), so it lists every variable payrail knows; [`.env.example`](../.env.example), generated with it,',
    'holds them all with their defaults, commented out.',
    '',
    'Read and validated in one place (`src/config.ts`). Values are trimmed; an empty value counts as missing. Any',
    'invalid value stops the start with one message naming every bad variable (exit code 78), and an unknown variable',
    "with one of payrail's prefixes (`PAYRAIL_`, `NOWPAYMENTS_`, `PLATFORM_`, `PAYOUT_`, `WORKER_`, `HEALTH_`,",
    '`EMBEDDED_PG_`, `ADMIN_`, `CHANGENOW_`, `CONVERSION_`, `HOST_WALLET_`, `LOCAL_`, `TRANSFER_`, `WEBHOOK_`,',
    '`TRUSTED_`, `WALLET_`, `ALERT_`, `RECONCILE_`, `METRICS_`, `PARTIAL_`) is refused, so a misspelt name never falls back',
    'to a default (`TRUSTED_PROXIES` stops the start instead of leaving the proxy untrusted, `WALLET_CHANGE_HOLDS`',
    'instead of leaving payouts unheld).',
    '',
    '| variable | default | meaning |',
    '| --- | --- | --- |',
    ...variables.map((v) => `| ${code(v.name)} | ${cell(v.defaultText)} | ${cell(v.meaning)} |`),
    '',
    '\\* Required whenever `DATABASE_URL` is set. On a local run without them, `npm start` generates the secrets (and',
    'starts anvil and the simulator for the two URLs), prints them, and says so. Durations are written `500ms`, `90s`,',
    '`1m`, `2h`.',
    '',
  ].join('\n');
}

function renderEnvExample(variables: readonly Variable[]): string {
  const lines = [
    "# payrail's environment variables, every one, commented out with its default (an empty value counts as unset).",
    '# Generated from src/config.ts by `npm run docs:config`; what each one means: docs/configuration.md.',
    '#',
    '# With no DATABASE_URL, `npm start` is a local run: an embedded PostgreSQL, a local chain and simulators, and',
    '# generated secrets. A deployment sets DATABASE_URL and every variable marked "required" below. Keep the secrets',
    '# in a secret manager, never in this file or the repository.',
    '',
  ];
  for (const v of variables) {
    if (v.defaultText === 'required*') lines.push(`# ${v.name}: required when DATABASE_URL is set`);
    else if (v.defaultValue === undefined && v.defaultText !== 'unset')
      lines.push(`# ${v.name}: default ${v.defaultText.replace(/`/g, '')}`);
    lines.push(`# ${v.name}=${v.defaultValue ?? ''}`);
  }
  lines.push('');
  return lines.join('\n');
}

/** What each generated file should hold now. */
export async function renderConfigDocs(): Promise<Record<DocFile, string>> {
  const variables = await readVariables();
  return { 'docs/configuration.md': renderMarkdown(variables), '.env.example': renderEnvExample(variables) };
}

export function readDocFile(file: DocFile): string | undefined {
  const path = `${ROOT}${file}`;
  return fs.existsSync(path) ? fs.readFileSync(path, 'utf8') : undefined;
}

async function main(argv: readonly string[]): Promise<number> {
  const check = argv.includes('--check');
  const files = await renderConfigDocs();
  let stale = 0;
  for (const file of CONFIG_DOC_FILES) {
    if (readDocFile(file) === files[file]) continue;
    if (check) {
      stale += 1;
      console.error(`${file} is stale: run npm run docs:config`);
    } else {
      fs.mkdirSync(new URL(`../${file.split('/').slice(0, -1).join('/')}/`, import.meta.url), { recursive: true });
      fs.writeFileSync(`${ROOT}${file}`, files[file]);
      console.log(`wrote ${file}`);
    }
  }
  return stale === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
