/**
 * Argument parsing and dispatch for the runner's commands.
 *
 * A command is a {@link defineCommand} object — name, one-line summary, flags, `run` — registered
 * by adding it to the list in `commands/index.ts`. Flags may fall back to an environment variable
 * of the contract and then to a default, so a hook Job configures the runner through env while a
 * person at a terminal passes flags: flag > env > default.
 */
import { parseArgs } from 'node:util';
import type { Writable } from 'node:stream';
import { Env } from '../../lib/contract.js';
import { usageError } from './errors.js';
import type { Logger } from './log.js';

export type FlagType = 'string' | 'boolean' | 'integer';

export interface FlagSpec {
  readonly type: FlagType;
  readonly description: string;
  /** One-letter alias. */
  readonly short?: string;
  /** Environment variable read when the flag is absent. */
  readonly env?: string;
  /** Value when neither flag nor env is given. */
  readonly default?: string | number | boolean;
  /** Fail with a usage error when no value results. */
  readonly required?: boolean;
  /** Placeholder in help, e.g. `DIR`. */
  readonly valueName?: string;
  /** Inclusive bounds for integers. */
  readonly min?: number;
  readonly max?: number;
}

export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

type FlagValue<S extends FlagSpec> = S['type'] extends 'boolean'
  ? boolean
  : S['type'] extends 'integer'
    ? S extends { required: true } | { default: number }
      ? number
      : number | undefined
    : S extends { required: true } | { default: string }
      ? string
      : string | undefined;

export type FlagValues<F extends FlagSpecs> = { -readonly [K in keyof F]: FlagValue<F[K]> };

export interface CommandContext<F extends FlagSpecs = FlagSpecs> {
  readonly flags: FlagValues<F>;
  /** Positional arguments after the command name. */
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly log: Logger;
  /** Where a command writes its result (tables, plans); logs go to the logger. */
  readonly stdout: Writable;
  /** Aborted on SIGTERM/SIGINT. */
  readonly signal: AbortSignal;
}

export interface Command<F extends FlagSpecs = FlagSpecs> {
  readonly name: string;
  readonly summary: string;
  /** More text for `--help`. */
  readonly description?: string;
  readonly flags: F;
  /** Accept positional arguments. @default false */
  readonly allowPositionals?: boolean;
  /** Returns the exit code (default 0); failures throw RunnerErrors. */
  run(context: CommandContext<F>): Promise<number | void>;
}

/** A command with its flag types erased, as the registry holds it. */
export type AnyCommand = Command<FlagSpecs>;

/** Declares a command; the flag types of `run`'s context are inferred from `flags`. */
export function defineCommand<const F extends FlagSpecs>(command: Command<F>): AnyCommand {
  return command as unknown as AnyCommand;
}

function flagLabel(name: string, spec: FlagSpec): string {
  const value = spec.type === 'boolean' ? '' : ` ${spec.valueName ?? (spec.type === 'integer' ? 'N' : 'VALUE')}`;
  return `${spec.short ? `-${spec.short}, ` : ''}--${name}${value}`;
}

export function formatCommandHelp(command: AnyCommand, programName = 'runner'): string {
  const lines = [`Usage: ${programName} ${command.name} [flags]`, '', command.summary];
  if (command.description) lines.push('', command.description.trim());
  const entries = Object.entries(command.flags).map(([name, spec]) => {
    const notes: string[] = [];
    if (spec.env) notes.push(`env ${spec.env}`);
    if (spec.default !== undefined) notes.push(`default ${String(spec.default)}`);
    if (spec.required) notes.push('required');
    return [flagLabel(name, spec), `${spec.description}${notes.length ? ` (${notes.join(', ')})` : ''}`] as const;
  });
  entries.push(['-h, --help', 'Show this help']);
  const width = Math.max(...entries.map(([label]) => label.length));
  lines.push('', 'Flags:', ...entries.map(([label, text]) => `  ${label.padEnd(width)}  ${text}`));
  return `${lines.join('\n')}\n`;
}

export function formatGlobalHelp(commands: readonly AnyCommand[], programName = 'runner'): string {
  const width = Math.max(...commands.map((command) => command.name.length));
  return [
    `Usage: ${programName} <command> [flags]`,
    '',
    'Moves Keycloak\'s database from a single PostgreSQL to postgresql-ha: resumable, verified, explained.',
    '',
    'Commands:',
    ...commands.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`),
    '',
    `Run '${programName} <command> --help' for the flags of a command.`,
    'Exit codes: 0 ok, 1 unexpected, 64 usage, 65 data, 69 unavailable, 75 temporary, 77 permission, 78 environment.',
    '',
  ].join('\n');
}

function resolveFlag(name: string, spec: FlagSpec, raw: string | boolean | undefined, env: NodeJS.ProcessEnv): unknown {
  let source = `--${name}`;
  let value: string | boolean | undefined = raw;
  if (value === undefined && spec.env && env[spec.env] !== undefined && env[spec.env] !== '') {
    value = env[spec.env];
    source = spec.env;
  }
  if (value === undefined) {
    if (spec.default !== undefined) return spec.default;
    if (spec.required) {
      throw usageError(`--${name} is required`, spec.env ? `pass --${name} or set ${spec.env}` : `pass --${name}`);
    }
    return spec.type === 'boolean' ? false : undefined;
  }
  if (spec.type === 'boolean') {
    if (typeof value === 'boolean') return value;
    if (/^(true|1|yes)$/i.test(value)) return true;
    if (/^(false|0|no)$/i.test(value)) return false;
    throw usageError(`${source} must be true or false, got "${value}"`, `fix ${source}`);
  }
  if (spec.type === 'integer') {
    const text = String(value).trim();
    const number = Number(text);
    if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(number)) {
      throw usageError(`${source} must be a whole number, got "${text}"`, `fix ${source}`);
    }
    if ((spec.min !== undefined && number < spec.min) || (spec.max !== undefined && number > spec.max)) {
      throw usageError(`${source} must be between ${spec.min ?? '-∞'} and ${spec.max ?? '∞'}, got ${number}`, `fix ${source}`);
    }
    return number;
  }
  return String(value);
}

export type ParsedCommandLine =
  | { readonly kind: 'help'; readonly text: string }
  | { readonly kind: 'run'; readonly command: AnyCommand; readonly flags: Record<string, unknown>; readonly args: string[] };

/** Parses `<command> [flags]`; unknown commands and flags are usage errors naming them. */
export function parseCommandLine(
  argv: readonly string[],
  commands: readonly AnyCommand[],
  env: NodeJS.ProcessEnv = process.env,
  programName = 'runner',
): ParsedCommandLine {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? commands.find((command) => command.name === rest[0]) : undefined;
    return { kind: 'help', text: topic ? formatCommandHelp(topic, programName) : formatGlobalHelp(commands, programName) };
  }
  const command = commands.find((candidate) => candidate.name === name);
  if (!command) {
    throw usageError(`unknown command "${name}"`, `use one of: ${commands.map((candidate) => candidate.name).join(', ')}`);
  }
  if (rest.includes('--help') || rest.includes('-h')) return { kind: 'help', text: formatCommandHelp(command, programName) };

  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const [flag, spec] of Object.entries(command.flags)) {
    options[flag] = { type: spec.type === 'boolean' ? 'boolean' : 'string', ...(spec.short ? { short: spec.short } : {}) };
  }
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: [...rest], options, allowPositionals: command.allowPositionals ?? false, strict: true }) as typeof parsed;
  } catch (error) {
    throw usageError(`${command.name}: ${(error as Error).message}`, `see '${command.name} --help'`);
  }
  const flags: Record<string, unknown> = {};
  for (const [flag, spec] of Object.entries(command.flags)) {
    flags[flag] = resolveFlag(flag, spec, parsed.values[flag], env);
  }
  return { kind: 'run', command, flags, args: parsed.positionals };
}

export interface RunCliOptions {
  readonly commands: readonly AnyCommand[];
  readonly env?: NodeJS.ProcessEnv;
  readonly log: Logger;
  readonly stdout?: Writable;
  readonly signal?: AbortSignal;
  /** How the user invoked the runner, for the help text (see {@link programNameOf}). */
  readonly programName?: string;
}

/**
 * The name the help text shows, from the path the runner was started as: the package's bins
 * (`keycloak-migration`, `keycloak-postgres-ha-migration`), kubectl's plugin convention
 * (`kubectl-keycloak_migration` is run as `kubectl keycloak-migration`), else `runner`
 * (`node runner.mjs`, the image's entrypoint).
 */
export function programNameOf(scriptPath: string | undefined): string {
  const base = (scriptPath ?? '').split('/').pop() ?? '';
  if (base.startsWith('kubectl-')) return `kubectl ${base.slice('kubectl-'.length).replaceAll('_', '-')}`;
  if (base === 'keycloak-migration' || base === 'keycloak-postgres-ha-migration') return base;
  return 'runner';
}

/** Parses and runs; returns the exit code. Errors propagate to the caller's single handler. */
export async function runCli(argv: readonly string[], options: RunCliOptions): Promise<number> {
  const env = options.env ?? process.env;
  const stdout = options.stdout ?? process.stdout;
  const parsed = parseCommandLine(argv, options.commands, env, options.programName);
  if (parsed.kind === 'help') {
    stdout.write(parsed.text);
    return 0;
  }
  const code = await parsed.command.run({
    flags: parsed.flags as FlagValues<FlagSpecs>,
    args: parsed.args,
    env,
    log: options.log,
    stdout,
    signal: options.signal ?? new AbortController().signal,
  });
  return code ?? 0;
}

/** Flags shared by the data commands (backup, restore, verify and the hook phases). */
export const CommonFlags = {
  dir: {
    type: 'string',
    description: 'Backup directory (holds dump/ and manifest.json)',
    env: Env.backupDir,
    valueName: 'DIR',
    required: true,
  },
  jobs: {
    type: 'integer',
    description: 'Parallel jobs for pg_dump / pg_restore and the checksums',
    env: Env.parallelJobs,
    default: 2,
    min: 1,
    max: 64,
  },
  compression: {
    type: 'integer',
    description: 'pg_dump --compress level, 0-9 (0: fastest onto a local volume)',
    env: Env.dumpCompression,
    default: 0,
    min: 0,
    max: 9,
  },
} as const satisfies FlagSpecs;
