/**
 * Runs the runner CLI as a separate process, as a Job or an operator would: from source through
 * tsx (`npm run runner` does the same), or from the bundle. Returns exit code and output, or a
 * handle for crash tests that kill it midway.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ConnectionSettings } from '../../runner/src/pg/connection.js';

export const REPOSITORY_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const RUNNER_MAIN = join(REPOSITORY_ROOT, 'runner', 'src', 'main.ts');

export interface RunnerRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunnerProcess {
  readonly child: ChildProcess;
  /** stderr so far. */
  stderr(): string;
  readonly done: Promise<RunnerRun>;
}

/** The SOURCE_* or TARGET_* variables for `settings`. */
export function endpointEnv(prefix: 'SOURCE' | 'TARGET', settings: ConnectionSettings): Record<string, string> {
  return {
    [`${prefix}_PGHOST`]: settings.host,
    [`${prefix}_PGPORT`]: String(settings.port),
    [`${prefix}_PGUSER`]: settings.user,
    [`${prefix}_PGDATABASE`]: settings.database,
    ...(settings.password !== undefined ? { [`${prefix}_PGPASSWORD`]: settings.password } : {}),
  };
}

/** Starts `runner <args>` from source (tsx) with `env` added to a clean environment. */
export function startRunner(args: readonly string[], env: Record<string, string>, options: { bundle?: string; cwd?: string } = {}): RunnerProcess {
  const baseEnv: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!/^(SOURCE|TARGET|MIGRATION)_|^PG/.test(name)) baseEnv[name] = value;
  }
  const command = options.bundle ? [options.bundle, ...args] : ['--import', 'tsx', RUNNER_MAIN, ...args];
  const child = spawn(process.execPath, command, {
    cwd: options.cwd ?? REPOSITORY_ROOT,
    env: { ...baseEnv, MIGRATION_LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<RunnerRun>((resolveRun) => {
    child.on('close', (code, signal) => resolveRun({ code, signal, stdout, stderr }));
  });
  return { child, stderr: () => stderr, done };
}

export function runRunner(args: readonly string[], env: Record<string, string>, options: { bundle?: string; cwd?: string } = {}): Promise<RunnerRun> {
  return startRunner(args, env, options).done;
}

/** The JSON log lines of a run. */
export function logLines(output: string): Array<Record<string, unknown>> {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}
