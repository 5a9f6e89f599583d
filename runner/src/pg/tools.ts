/**
 * The PostgreSQL client tools (pg_dump, pg_restore, psql): where they are, which major version they
 * are, and how to run them so that their failures become RunnerErrors and they never outlive the
 * runner.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { access, constants, readdir } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { Env, ExitCode } from '../../../lib/contract.js';
import { classifyToolFailure, configError, RunnerError, type EndpointDescription } from '../errors.js';
import { redact, silentLogger, type Logger } from '../log.js';

/** Environment variable naming the directory holding pg_dump, pg_restore and psql. */
export const PG_BINDIR_VARIABLE = Env.pgBinDir;

/** Debian's layout: one directory per installed major. */
const DEBIAN_POSTGRESQL_ROOT = '/usr/lib/postgresql';

export interface PgTools {
  /** Directory the tools were found in (undefined: found on PATH one by one). */
  readonly binDir: string | undefined;
  readonly pgDump: string;
  readonly pgRestore: string;
  readonly psql: string;
}

export interface ToolVersion {
  readonly major: number;
  /** e.g. `15.18`. */
  readonly version: string;
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function toolsIn(binDir: string): Promise<PgTools | undefined> {
  const tools = { binDir, pgDump: join(binDir, 'pg_dump'), pgRestore: join(binDir, 'pg_restore'), psql: join(binDir, 'psql') };
  for (const path of [tools.pgDump, tools.pgRestore, tools.psql]) {
    if (!(await isExecutable(path))) return undefined;
  }
  return tools;
}

async function onPath(name: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  for (const dir of (env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const candidate = join(dir, name);
    if (await isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Finds the tools: `PG_BINDIR` when set (and then only there), else the newest Debian
 * `/usr/lib/postgresql/NN/bin`, else `PATH`. Missing tools are a config error (exit 78).
 */
export async function findPgTools(env: NodeJS.ProcessEnv = process.env): Promise<PgTools> {
  const configured = env[PG_BINDIR_VARIABLE]?.trim();
  if (configured) {
    const tools = await toolsIn(configured);
    if (!tools) {
      throw configError(
        `${PG_BINDIR_VARIABLE}=${configured} does not contain executable pg_dump, pg_restore and psql`,
        `point ${PG_BINDIR_VARIABLE} at a PostgreSQL client bin directory or unset it`,
      );
    }
    return tools;
  }
  try {
    const majors = (await readdir(DEBIAN_POSTGRESQL_ROOT))
      .filter((entry) => /^\d+$/.test(entry))
      .map(Number)
      .sort((a, b) => b - a);
    for (const major of majors) {
      const tools = await toolsIn(join(DEBIAN_POSTGRESQL_ROOT, String(major), 'bin'));
      if (tools) return tools;
    }
  } catch {
    // Not Debian's layout: fall through to PATH.
  }
  const [pgDump, pgRestore, psql] = await Promise.all([onPath('pg_dump', env), onPath('pg_restore', env), onPath('psql', env)]);
  if (!pgDump || !pgRestore || !psql) {
    throw configError(
      'PostgreSQL client tools not found (pg_dump, pg_restore, psql)',
      `install the PostgreSQL client package or set ${PG_BINDIR_VARIABLE}`,
    );
  }
  return { binDir: undefined, pgDump, pgRestore, psql };
}

/** Parses `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` and the like. */
export function parseToolVersion(output: string): ToolVersion {
  const match = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(output);
  if (!match) throw new Error(`cannot parse a PostgreSQL version from "${output.trim()}"`);
  const major = Number(match[1]);
  return { major, version: match[2] !== undefined ? `${match[1]}.${match[2]}` : match[1]! };
}

const versionCache = new Map<string, Promise<ToolVersion>>();

/** `<tool> --version`, parsed (cached per path). */
export function toolVersion(toolPath: string): Promise<ToolVersion> {
  let cached = versionCache.get(toolPath);
  if (!cached) {
    cached = new Promise<ToolVersion>((resolve, reject) => {
      const child = spawn(toolPath, ['--version'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.on('error', (error) =>
        reject(configError(`cannot run ${toolPath}: ${error.message}`, `install the PostgreSQL client tools or set ${PG_BINDIR_VARIABLE}`)),
      );
      child.on('close', (code) => {
        if (code !== 0) reject(configError(`${toolPath} --version exited with code ${code}`, `check the installation or set ${PG_BINDIR_VARIABLE}`));
        else {
          try {
            resolve(parseToolVersion(output));
          } catch (error) {
            reject(error);
          }
        }
      });
    });
    versionCache.set(toolPath, cached);
    cached.catch(() => versionCache.delete(toolPath));
  }
  return cached;
}

/**
 * Refuses a source server newer than pg_dump: pg_dump would abort ("server version mismatch")
 * anyway, but only after the run has changed things (quiesced workloads, created a volume). Call
 * this before anything changes. The message names both versions.
 */
export function assertDumpToolSupports(server: ToolVersion, dumpTool: ToolVersion, endpoint: EndpointDescription): void {
  if (server.major > dumpTool.major) {
    throw new RunnerError(
      `the source server at ${endpoint.host}:${endpoint.port} runs PostgreSQL ${server.version} but pg_dump is ${dumpTool.version}: pg_dump cannot dump a newer server`,
      {
        exitCode: ExitCode.dataError,
        hint: `use a runner image whose PostgreSQL client is ${server.major} or newer (or set ${PG_BINDIR_VARIABLE} to one); nothing was changed`,
      },
    );
  }
}

/**
 * The tools' restore side works forward across majors (pg_restore N restores into servers ≥ N), but
 * refuses an archive written by a newer pg_dump; this checks that before restoring.
 */
export function assertRestoreToolReads(archiveDumpVersion: ToolVersion, restoreTool: ToolVersion): void {
  if (archiveDumpVersion.major > restoreTool.major) {
    throw new RunnerError(
      `the backup was written by pg_dump ${archiveDumpVersion.version} but pg_restore is ${restoreTool.version}: pg_restore cannot read a newer archive`,
      { exitCode: ExitCode.dataError, hint: `restore with pg_restore ${archiveDumpVersion.major} or newer (set ${PG_BINDIR_VARIABLE})` },
    );
  }
}

/**
 * Refuses a target server older than pg_restore: pg_restore 17 opens every session with settings
 * older servers do not know (`SET transaction_timeout = 0`), so the restore would fail part-way
 * (seen with the runner image's pg_restore 17.12 against PostgreSQL 15). Call it before the target
 * changes; the message names both versions.
 */
export function assertRestoreToolTargets(server: ToolVersion, restoreTool: ToolVersion, endpoint: EndpointDescription): void {
  if (restoreTool.major > server.major) {
    throw new RunnerError(
      `the target server at ${endpoint.host}:${endpoint.port} runs PostgreSQL ${server.version} but pg_restore is ${restoreTool.version}: pg_restore cannot restore into an older server`,
      {
        exitCode: ExitCode.config,
        hint: `run the new database on PostgreSQL ${restoreTool.major} or newer (the default images are 17), or set ${PG_BINDIR_VARIABLE} to client tools of major ${server.major} that still read the backup; nothing was changed`,
      },
    );
  }
}

const activeChildren = new Set<ChildProcess>();

/**
 * Ends every running pg tool (their process groups) with `signal`. main.ts calls this on SIGTERM
 * and SIGINT so that a stopped runner leaves no pg_dump writing behind it.
 */
export function terminateActiveTools(signal: NodeJS.Signals = 'SIGTERM'): void {
  for (const child of activeChildren) {
    if (child.pid !== undefined) {
      try {
        process.kill(-child.pid, signal);
      } catch {
        // Already gone.
      }
    }
  }
}

/**
 * Runs the tool under a small POSIX sh wrapper in its own process group. The wrapper watches its
 * stdin, a pipe from the runner: when the runner dies (even by SIGKILL) the pipe closes and the
 * wrapper terminates the whole group, so no orphaned pg_dump keeps writing into the backup and no
 * orphaned pg_restore races a re-run. The tool's own stdin is /dev/null.
 */
const WATCHDOG_SCRIPT = [
  'exec 3<&0',
  '"$@" </dev/null &',
  'child=$!',
  '{ while read -r _; do :; done; kill -TERM 0; } <&3 &',
  'watcher=$!',
  'wait "$child"',
  'status=$?',
  'kill "$watcher" 2>/dev/null',
  'exit "$status"',
].join('\n');

export interface RunToolOptions {
  /** Path of the tool. */
  readonly tool: string;
  readonly args: readonly string[];
  /** From {@link toolEnv}: carries the connection and the password. */
  readonly env: NodeJS.ProcessEnv;
  /** Who the tool talks to, for error messages. */
  readonly endpoint: EndpointDescription;
  readonly log?: Logger;
  /** Called with each stderr line (e.g. to parse pg_restore's verbose progress). */
  readonly onStderrLine?: (line: string) => void;
  /** Collect stdout and return it (otherwise it is discarded). */
  readonly captureStdout?: boolean;
  /** Level for the tool's ordinary stderr lines. @default 'debug' */
  readonly stderrLevel?: 'debug' | 'info';
  readonly signal?: AbortSignal;
}

export interface ToolResult {
  readonly stdout: string;
  /** The last lines of stderr (bounded). */
  readonly stderrTail: string;
}

const STDERR_TAIL_LIMIT = 16_384;

/** Runs a pg tool; a non-zero exit becomes a classified RunnerError. */
export function runTool(options: RunToolOptions): Promise<ToolResult> {
  const log = options.log ?? silentLogger;
  const toolName = options.tool.split('/').pop() ?? options.tool;
  return new Promise<ToolResult>((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT, toolName, options.tool, ...options.args], {
        env: options.env,
        stdio: ['pipe', options.captureStdout ? 'pipe' : 'ignore', 'pipe'],
        detached: true,
      });
    } catch (error) {
      reject(configError(`cannot start ${toolName}: ${(error as Error).message}`, `install the PostgreSQL client tools or set ${PG_BINDIR_VARIABLE}`));
      return;
    }
    activeChildren.add(child);
    log.debug(`running ${toolName}`, { args: options.args.map((arg) => redact(arg)) });
    const stdoutChunks: Buffer[] = [];
    let stderrTail = '';
    let partialLine = '';
    const handleLine = (line: string) => {
      if (!line) return;
      stderrTail = (stderrTail + line + '\n').slice(-STDERR_TAIL_LIMIT);
      options.onStderrLine?.(line);
      if (/error|fatal|could not/i.test(line)) log.warn(`${toolName}: ${line}`);
      else if (/warning/i.test(line)) log.warn(`${toolName}: ${line}`);
      else if (options.stderrLevel === 'info') log.info(`${toolName}: ${line}`);
      else log.debug(`${toolName}: ${line}`);
    };
    child.stdout?.on('data', (chunk: Buffer) => stdoutChunks.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => {
      const lines = (partialLine + chunk.toString('utf8')).split('\n');
      partialLine = lines.pop() ?? '';
      lines.forEach(handleLine);
    });
    // Writing nothing: the open pipe is what keeps the watchdog waiting.
    child.stdin!.on('error', () => undefined);
    const onAbort = () => {
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {
          // Already gone.
        }
      }
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (error) => {
      activeChildren.delete(child);
      reject(configError(`cannot start ${toolName}: ${error.message}`, `install the PostgreSQL client tools or set ${PG_BINDIR_VARIABLE}`));
    });
    child.on('close', (code, signal) => {
      activeChildren.delete(child);
      options.signal?.removeEventListener('abort', onAbort);
      child.stdin?.end();
      handleLine(partialLine);
      if (code === 0) {
        resolve({ stdout: Buffer.concat(stdoutChunks).toString('utf8'), stderrTail });
      } else if (code === 127 && /not found|No such file/i.test(stderrTail)) {
        reject(configError(`${options.tool} not found`, `install the PostgreSQL client tools or set ${PG_BINDIR_VARIABLE}`));
      } else {
        reject(classifyToolFailure(toolName, { code, signal }, stderrTail, options.endpoint));
      }
    });
  });
}
