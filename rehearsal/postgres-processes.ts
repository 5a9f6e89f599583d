/**
 * Running PostgreSQL tools as the `postgres` system user. We are root in CI and on these machines;
 * PostgreSQL refuses to run as root, so every server, repmgr and Pgpool-II process runs through
 * `runuser -u postgres --`, in directories that user owns.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export { freePort } from '../test/support/ports.js';

export const PG_BIN = '/usr/lib/postgresql/15/bin';
/** pgpool, pg_md5 and pcp_* live here on Debian. */
export const PGPOOL_SBIN = '/usr/sbin';
const SYSTEM_PATH = '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin';

let postgresIds: { uid: number; gid: number } | undefined;

const exitCleanups = new Set<() => void>();
let exitHookInstalled = false;

/**
 * Registers a synchronous cleanup for when this process exits without closing the rehearsal (a
 * crashed or timed-out test worker): servers and Pgpool run detached as `postgres` and would
 * outlive it. Returns a function that unregisters it.
 */
export function onProcessExit(cleanup: () => void): () => void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const run of exitCleanups) {
        try {
          run();
        } catch {
          // Best effort: the next cleanup must still run.
        }
      }
    });
  }
  exitCleanups.add(cleanup);
  return () => exitCleanups.delete(cleanup);
}

/** Sends `signal` to the pid in a pid file (PostgreSQL's first line; Pgpool's ends in NUL). */
export function signalPidFile(pidFile: string, signal: NodeJS.Signals): void {
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]!.replace(/[^0-9]/g, ''));
  if (pid > 0) process.kill(pid, signal);
}

/** uid/gid of the `postgres` system user (installed with the PostgreSQL packages). */
export async function postgresUser(): Promise<{ uid: number; gid: number }> {
  if (postgresIds) return postgresIds;
  const [uid, gid] = await Promise.all([capture('id', ['-u', 'postgres']), capture('id', ['-g', 'postgres'])]);
  postgresIds = { uid: Number(uid.trim()), gid: Number(gid.trim()) };
  return postgresIds;
}

/** A fresh temporary directory owned by `postgres` (mode 0700: initdb insists). */
export async function makePostgresDir(prefix: string, parent = tmpdir()): Promise<string> {
  const dir = mkdtempSync(join(parent, prefix));
  await chownToPostgres(dir);
  return dir;
}

/** Creates (if needed) and hands a directory to `postgres`. */
export async function ensurePostgresDir(dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  await chownToPostgres(dir);
  return dir;
}

/** Writes a file owned by `postgres` with the given mode (password files need 0600). */
export async function writePostgresFile(path: string, content: string, mode = 0o600): Promise<void> {
  writeFileSync(path, content);
  chmodSync(path, mode);
  const { uid, gid } = await postgresUser();
  chownSync(path, uid, gid);
}

/** Hands a directory (or, with its mode, a file) to `postgres`. */
export async function chownToPostgres(path: string, mode = 0o700): Promise<void> {
  const { uid, gid } = await postgresUser();
  chownSync(path, uid, gid);
  chmodSync(path, mode);
}

/** runuser's arguments for `program` as `postgres`, with only `env` (and a system PATH) in its environment. */
function asPostgresArgs(program: string, args: readonly string[], env: Record<string, string> = {}): string[] {
  const envArgs = Object.entries({ PATH: SYSTEM_PATH, LC_ALL: 'C.UTF-8', ...env }).map(([key, value]) => `${key}=${value}`);
  return ['-u', 'postgres', '--', 'env', '-i', ...envArgs, program, ...args];
}

/**
 * Runs a program as `postgres` and resolves with its stdout; rejects with the command, exit code
 * and stderr. `env` is passed explicitly through `env(1)` so nothing of root's environment (such
 * as a PGPASSWORD of the test process) leaks in by accident.
 */
export function runAsPostgres(
  program: string,
  args: readonly string[],
  options: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {},
): Promise<string> {
  return capture('runuser', asPostgresArgs(program, args, options.env), {
    timeoutMs: options.timeoutMs ?? 120_000,
    cwd: options.cwd,
  });
}

/** {@link runAsPostgres}, blocking (for the initdb that builds a template: a one-off per binary). */
export function runAsPostgresSync(program: string, args: readonly string[]): void {
  const result = spawnSync('runuser', asPostgresArgs(program, args), { encoding: 'utf8', timeout: 120_000 });
  if (result.status !== 0) {
    throw new Error(`${program} ${args.join(' ')} failed (${result.status ?? result.signal}): ${result.stderr || result.stdout}`);
  }
}

/** Starts a long-running program as `postgres`, detached in its own session, output to a log file. */
export function spawnAsPostgres(
  program: string,
  args: readonly string[],
  logFile: string,
  env: Record<string, string> = {},
): ChildProcess {
  // `sh -c 'exec ... >log 2>&1'` so the log is written by the postgres user and survives us.
  const quoted = [program, ...args].map(shellQuote).join(' ');
  const child = spawn('runuser', asPostgresArgs('sh', ['-c', `exec ${quoted} >>${shellQuote(logFile)} 2>&1 </dev/null`], env), {
    detached: true,
    stdio: 'ignore',
  });
  child.unref();
  return child;
}

export function shellQuote(value: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

function capture(program: string, args: readonly string[], options: { timeoutMs?: number; cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      program,
      args as string[],
      { timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, cwd: options.cwd },
      (error, stdout, stderr) => {
        if (error) {
          // Neither passwords nor the environment passed through env(1) belong in an error message.
          const shown = args.filter((arg) => !/password/i.test(arg) && !/^[A-Z_]+=/.test(arg)).join(' ');
          reject(new Error(`${program} ${shown} failed (${error.code ?? error.signal ?? error.message}): ${stderr.trim() || stdout.trim()}`, { cause: error }));
        } else resolve(stdout);
      },
    );
  });
}

/** Polls `probe` until it resolves truthy, or rejects after `timeoutMs` with the last error. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs: number, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ''}`, {
        cause: lastError,
      });
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
