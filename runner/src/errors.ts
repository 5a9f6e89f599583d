/**
 * Every failure the runner knows how to explain becomes a {@link RunnerError}: an exit code from the
 * contract (the Jobs' podFailurePolicy tells retriable from non-retriable ones by it), a message
 * saying what failed, and a hint saying what to do. The top-level handler in main.ts prints exactly
 * that, on one line, and exits with the code.
 *
 * The classifiers below turn errors from `pg`, from the network and from the pg_* tools into
 * RunnerErrors. They never copy a password into a message: messages are built from host, port,
 * user and database names only.
 */
import { ExitCode, type ExitCodeValue } from '../../lib/contract.js';

export interface RunnerErrorOptions {
  /** Exit code from {@link ExitCode}. */
  readonly exitCode: ExitCodeValue;
  /** What the operator should do about it. */
  readonly hint?: string;
  /** The underlying error. */
  readonly cause?: unknown;
}

export class RunnerError extends Error {
  public readonly exitCode: ExitCodeValue;
  public readonly hint: string | undefined;

  constructor(message: string, options: RunnerErrorOptions) {
    super(message, { cause: options.cause });
    this.name = 'RunnerError';
    this.exitCode = options.exitCode;
    this.hint = options.hint;
  }

  /** The one line the top-level handler prints: what failed, then what to do. */
  oneLine(): string {
    return this.hint ? `${this.message}: ${this.hint}` : this.message;
  }
}

export function isRunnerError(error: unknown): error is RunnerError {
  return error instanceof RunnerError;
}

/** Where a failing connection pointed to; used to name it in messages. */
export interface EndpointDescription {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly database: string;
  /**
   * Environment-variable prefix the settings came from (`SOURCE` or `TARGET`), so that hints can
   * name the variable to fix.
   */
  readonly envPrefix?: string;
}

/** What the operator should check for a given variable, given the prefix. */
function variable(endpoint: EndpointDescription, suffix: string): string {
  return endpoint.envPrefix ? `${endpoint.envPrefix}_${suffix}` : suffix;
}

function describe(endpoint: EndpointDescription): string {
  return `${endpoint.user}@${endpoint.host}:${endpoint.port}/${endpoint.database}`;
}

/** Node system error codes that mean the peer cannot be reached right now. */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
]);

interface ErrorFields {
  code?: unknown;
  message?: unknown;
  errno?: unknown;
  syscall?: unknown;
}

function fieldsOf(error: unknown): ErrorFields {
  return typeof error === 'object' && error !== null ? (error as ErrorFields) : {};
}

function messageOf(error: unknown): string {
  const message = fieldsOf(error).message;
  return typeof message === 'string' ? message : String(error);
}

/**
 * Turns an error raised while connecting to or querying a database into a RunnerError.
 * A RunnerError passes through unchanged; anything not recognised becomes `unexpected` (retried),
 * still naming the endpoint.
 *
 * | cause                                   | exit code     |
 * |-----------------------------------------|---------------|
 * | 28P01 wrong password, 28000 no such role / pg_hba reject | noPermission (77) |
 * | 42501 insufficient privilege            | noPermission (77) |
 * | 3D000 database does not exist           | usage (64)    |
 * | ECONNREFUSED, ENOTFOUND, EHOSTUNREACH, 57P01-03, 08xxx | unavailable (69) |
 * | 25006 read-only transaction (a standby) | unavailable (69) |
 * | connection timeout, 57014 statement timeout, 55P03, 40P01 | tempFail (75) |
 * | 53100 disk full, ENOSPC                 | config (78)   |
 */
export function classifyDatabaseError(error: unknown, endpoint: EndpointDescription, action = 'connect to'): RunnerError {
  if (isRunnerError(error)) return error;
  const { code } = fieldsOf(error);
  const message = messageOf(error);
  const where = describe(endpoint);
  const pgCode = typeof code === 'string' ? code : '';

  // Pgpool-II answers a wrong password with SQLSTATE XX000 and "authentication failed" (or "SCRAM
  // authentication failed") rather than PostgreSQL's 28P01: waiting cannot fix either.
  if (pgCode === '28P01' || /password authentication failed/i.test(message) || (pgCode === 'XX000' && /authentication failed/i.test(message))) {
    return new RunnerError(`authentication failed for user ${endpoint.user} at ${endpoint.host}:${endpoint.port}`, {
      exitCode: ExitCode.noPermission,
      hint: `check the Secret behind ${variable(endpoint, 'PGPASSWORD')} (the password stored in an old data volume wins over a changed Secret)`,
      cause: error,
    });
  }
  if (pgCode === '28000') {
    return new RunnerError(`the server at ${endpoint.host}:${endpoint.port} rejected user ${endpoint.user}: ${message}`, {
      exitCode: ExitCode.noPermission,
      hint: `check ${variable(endpoint, 'PGUSER')} and the server's pg_hba.conf`,
      cause: error,
    });
  }
  if (pgCode === '3D000') {
    return new RunnerError(`database ${endpoint.database} does not exist at ${endpoint.host}:${endpoint.port}`, {
      exitCode: ExitCode.usage,
      hint: `check ${variable(endpoint, 'PGDATABASE')} or create the database`,
      cause: error,
    });
  }
  if (pgCode === '42501') {
    return new RunnerError(`permission denied while trying to ${action} ${where}: ${message}`, {
      exitCode: ExitCode.noPermission,
      hint: `grant the privilege to ${endpoint.user} or use a user that owns the objects`,
      cause: error,
    });
  }
  if (pgCode === '53100' || pgCode === 'ENOSPC') {
    return new RunnerError(`out of disk space while trying to ${action} ${where}: ${message}`, {
      exitCode: ExitCode.config,
      hint: 'give the database server more storage',
      cause: error,
    });
  }
  if (pgCode === '25006') {
    return new RunnerError(`${where} is read-only (a standby, or a primary not yet promoted)`, {
      exitCode: ExitCode.unavailable,
      hint: `point ${variable(endpoint, 'PGHOST')} at the primary's service, or wait until it accepts writes`,
      cause: error,
    });
  }
  if (pgCode === '57014' || pgCode === '55P03' || pgCode === '40P01') {
    return new RunnerError(`timed out or blocked while trying to ${action} ${where}: ${message}`, {
      exitCode: ExitCode.tempFail,
      hint: 'retry; if it persists, look for sessions holding locks on the database',
      cause: error,
    });
  }
  if (/timeout/i.test(message) && !pgCode.startsWith('4')) {
    return new RunnerError(`timed out trying to ${action} ${where}`, {
      exitCode: ExitCode.tempFail,
      hint: `check that ${endpoint.host}:${endpoint.port} is reachable from this pod (NetworkPolicy, service name)`,
      cause: error,
    });
  }
  if (
    UNREACHABLE_CODES.has(pgCode) ||
    pgCode.startsWith('08') ||
    pgCode === '57P01' ||
    pgCode === '57P02' ||
    pgCode === '57P03' ||
    /Connection terminated unexpectedly/i.test(message)
  ) {
    return new RunnerError(`cannot reach PostgreSQL at ${endpoint.host}:${endpoint.port} (${pgCode || message})`, {
      exitCode: ExitCode.unavailable,
      hint: `check ${variable(endpoint, 'PGHOST')}/${variable(endpoint, 'PGPORT')} and that the server is running`,
      cause: error,
    });
  }
  return new RunnerError(`failed to ${action} ${where}: ${message}`, {
    exitCode: ExitCode.unexpected,
    cause: error,
  });
}

/**
 * Turns the failure of a pg_* tool (its exit code and the tail of its stderr) into a RunnerError.
 * The tools report the same causes as the server, but only as text.
 */
export function classifyToolFailure(
  tool: string,
  exit: { code: number | null; signal: NodeJS.Signals | null },
  stderrTail: string,
  endpoint: EndpointDescription,
): RunnerError {
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
  const lastLine =
    stderrTail
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => /error|fatal|could not|failed|aborting/i.test(line))
      .pop() ?? stderrTail.trim().split('\n').pop() ?? '';
  const detail = lastLine ? `: ${lastLine}` : '';
  const where = describe(endpoint);

  // libpq's "password authentication failed", or Pgpool-II's "(SCRAM) authentication failed".
  if (/(password |SCRAM )?authentication failed/i.test(stderrTail)) {
    return classifyDatabaseError({ code: '28P01', message: lastLine }, endpoint);
  }
  if (/database ".*" does not exist/i.test(stderrTail)) {
    return classifyDatabaseError({ code: '3D000', message: lastLine }, endpoint);
  }
  if (/role ".*" does not exist|no pg_hba\.conf entry/i.test(stderrTail) && !/SET ROLE|set role/.test(lastLine)) {
    return classifyDatabaseError({ code: '28000', message: lastLine }, endpoint);
  }
  if (/server version mismatch|aborting because of server version/i.test(stderrTail)) {
    return new RunnerError(`${tool} is older than the server at ${endpoint.host}:${endpoint.port}${detail}`, {
      exitCode: ExitCode.dataError,
      hint: `use a ${tool} whose major version is at least the server's (set PG_BINDIR or use the runner image)`,
    });
  }
  if (/No space left on device|could not (write|extend|create).*space/i.test(stderrTail)) {
    return new RunnerError(`${tool} ran out of disk space${detail}`, {
      exitCode: ExitCode.config,
      hint: 'make the backup volume (MIGRATION_BACKUP_PVC_SIZE) or the database storage larger',
    });
  }
  if (/Connection refused|could not translate host name|could not connect to server|connection to server .* failed: (?!FATAL)|server closed the connection unexpectedly/i.test(stderrTail)) {
    return new RunnerError(`${tool} cannot reach PostgreSQL at ${endpoint.host}:${endpoint.port}${detail}`, {
      exitCode: ExitCode.unavailable,
      hint: `check ${variable(endpoint, 'PGHOST')}/${variable(endpoint, 'PGPORT')} and that the server is running`,
    });
  }
  if (/permission denied|must be owner|must be superuser/i.test(stderrTail)) {
    return new RunnerError(`${tool} was denied a permission on ${where}${detail}`, {
      exitCode: ExitCode.noPermission,
      hint: `grant it to ${endpoint.user}, or create the object (e.g. the extension) in the target database beforehand as a superuser`,
    });
  }
  if (/canceling statement due to statement timeout|lock timeout|deadlock detected/i.test(stderrTail)) {
    return new RunnerError(`${tool} timed out on ${where}${detail}`, {
      exitCode: ExitCode.tempFail,
      hint: 'retry; if it persists, look for sessions holding locks on the database',
    });
  }
  return new RunnerError(`${tool} ${how} on ${where}${detail}`, { exitCode: ExitCode.unexpected });
}

/** A required environment variable or flag is missing or malformed. */
export function usageError(message: string, hint?: string): RunnerError {
  return new RunnerError(message, { exitCode: ExitCode.usage, hint });
}

/** A verification found a difference: never retried, since the data would be the same next time. */
export function dataError(message: string, hint?: string): RunnerError {
  return new RunnerError(message, { exitCode: ExitCode.dataError, hint });
}

/** The environment cannot hold the work (volume too small, a tool missing). */
export function configError(message: string, hint?: string): RunnerError {
  return new RunnerError(message, { exitCode: ExitCode.config, hint });
}

/**
 * Errors of the backup directory's filesystem: no space, not writable, read-only. They are the
 * environment's (exit 78); anything else is passed to {@link classifyDatabaseError} by the caller.
 */
export function classifyFilesystemError(error: unknown, path: string): RunnerError | undefined {
  if (isRunnerError(error)) return error;
  const { code, syscall } = fieldsOf(error);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new RunnerError(`no space left on the backup volume at ${path}`, {
      exitCode: ExitCode.config,
      hint: 'make the backup volume larger (MIGRATION_BACKUP_PVC_SIZE)',
      cause: error,
    });
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new RunnerError(`cannot write to ${path} (${String(code)}${typeof syscall === 'string' ? ` in ${syscall}` : ''})`, {
      exitCode: ExitCode.config,
      hint: 'mount the backup volume writable for the runner (fsGroup / runAsUser) or choose another --dir',
      cause: error,
    });
  }
  return undefined;
}
