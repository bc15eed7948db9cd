/**
 * Command lines of `--name value` options, as `payrail demo`, the benchmarks and the chaos run read them: strictly (an
 * unknown option, a missing value or a stray argument is a usage error that names it), every value checked, never a
 * silent default; `--help` asks for the usage.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A bad command line: its message names the option; the command prints it with its usage and exits 64. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** The options a command knows. */
export interface OptionNames<V extends string, S extends string> {
  /** Options that take a value: `--payments 30`. */
  values: readonly V[];
  /** Options that stand alone: `--exit`. */
  switches?: readonly S[];
  /** False for a command that never took `-h` for `--help`. */
  shortHelp?: boolean;
}

export type OptionValues<V extends string, S extends string> = Partial<Record<V, string>> & Partial<Record<S, boolean>>;

/** The options as given, or undefined when `--help` asks for the usage. Throws UsageError. */
export function readOptionValues<const V extends string, const S extends string = never>(
  argv: string[],
  names: OptionNames<V, S>,
): OptionValues<V, S> | undefined {
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const name of names.values) options[name] = { type: 'string' };
  for (const name of names.switches ?? []) options[name] = { type: 'boolean' };
  options.help = names.shortHelp === false ? { type: 'boolean' } : { type: 'boolean', short: 'h' };
  let values: Record<string, unknown>;
  try {
    values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    // node:util's messages name the option ("Unknown option '--paymnets'", "Option '--seed <value>' argument missing").
    throw new UsageError((error as Error).message);
  }
  return values.help ? undefined : (values as OptionValues<V, S>);
}

/** `--name N`: a whole number between min and max, or `fallback` when the option is absent. Throws UsageError. */
export function wholeNumberOption(
  name: string,
  text: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (text === undefined) return fallback;
  if (!/^[0-9]+$/.test(text)) throw new UsageError(`--${name} must be a whole number (got "${text}")`);
  const n = Number.parseInt(text, 10);
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max} (got ${n})`);
  return n;
}

/**
 * The options `read` makes of the command line, or the exit code when there is nothing to run: 0 after `--help` (the
 * usage on stdout), 64 after a UsageError (`prefix`, its message and the usage on stderr). Other errors pass through.
 */
export function optionsOrExit<T>(
  read: () => T | undefined,
  usage: string,
  prefix = '',
): { options: T } | { exitCode: number } {
  let options: T | undefined;
  try {
    options = read();
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`${prefix}${error.message}\n\n${usage}`);
    return { exitCode: 64 };
  }
  if (options === undefined) {
    process.stdout.write(usage);
    return { exitCode: 0 };
  }
  return { options };
}
