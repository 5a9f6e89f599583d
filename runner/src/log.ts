/**
 * The runner's structured logger.
 *
 * Jobs' logs are read by machines (log collectors) and by people (`kubectl logs -f`), so the
 * format follows the reader: JSON lines when the log stream is not a terminal, readable lines when
 * it is; `MIGRATION_LOG_FORMAT=json|text` overrides. Logs go to stderr so that a command's own
 * output (a status table, a plan) can be piped from stdout.
 *
 * Nothing that looks like a password is ever written: field names matching /password|secret|token/
 * are replaced, strings registered with {@link registerSecret} are masked wherever they occur, and
 * `password=...` / `user:password@` patterns in free text are masked too.
 */
import { Env } from '../../lib/contract.js';
import { usageError } from './errors.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFormat = 'json' | 'text';
export type LogFields = Record<string, unknown>;

/** One progress report of a long step (dump, restore, checksums). */
export interface ProgressEvent {
  /** The step reporting, e.g. `dump` or `restore`. */
  readonly step: string;
  /** Bytes done so far. */
  readonly bytes: number;
  /** Expected total bytes, when known (an estimate for the dump). */
  readonly totalBytes?: number;
  /** 0–100, capped at 99 until the step reports completion. */
  readonly percent?: number;
  /** Average rate since the start, bytes per second. */
  readonly bytesPerSecond: number;
  /** Estimated seconds left, when a total is known and the rate is not zero. */
  readonly etaSeconds?: number;
  /** Items done (e.g. finished TOC entries) and the total, when counted. */
  readonly items?: number;
  readonly totalItems?: number;
  /** True on the last report of the step. */
  readonly done?: boolean;
}

/** One row of the summary table printed at the end of a run. */
export interface SummaryRow {
  readonly step: string;
  readonly durationMs: number;
  readonly rows?: number;
  readonly bytes?: number;
  /** A short remark: "skipped: already restored", "3 tables". */
  readonly note?: string;
}

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A progress report: `event: "progress"` in JSON, a one-line bar in text. */
  progress(event: ProgressEvent): void;
  /** The end-of-run table: `event: "summary"` in JSON, an aligned table in text. */
  summary(rows: readonly SummaryRow[], title?: string): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
  readonly format: LogFormat;
}

export interface LoggerOptions {
  /** Where lines go. @default process.stderr */
  readonly stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** @default - from MIGRATION_LOG_FORMAT, else text on a TTY and json otherwise */
  readonly format?: LogFormat;
  /** Lowest level written. @default - `debug` when MIGRATION_LOG_LEVEL=debug, else `info` */
  readonly level?: LogLevel;
  /** @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** Fields added to every line. */
  readonly fields?: LogFields;
}

const LEVEL_ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Environment variable selecting the lowest log level (debug|info|warn|error). */
export const LOG_LEVEL_VARIABLE = Env.logLevel;

const registeredSecrets = new Set<string>();

/**
 * Masks `value` in everything any logger writes from now on. Connection settings register their
 * passwords here, so a password that slips into a tool's stderr or an error message is still hidden.
 */
export function registerSecret(value: string | undefined): void {
  // Very short values would mask ordinary words; real passwords are longer.
  if (value && value.length >= 4) registeredSecrets.add(value);
}

const SECRET_KEY = /pass(word)?|secret|token|credential/i;
const INLINE_PATTERNS: RegExp[] = [
  /(password\s*[=:]\s*)("[^"]*"|'[^']*'|\S+)/gi,
  /(PGPASSWORD\s*=\s*)(\S+)/g,
  /(\/\/[^:/\s@]+:)([^@\s]+)(@)/g,
];

/** Masks secrets in a piece of free text. */
export function redact(text: string): string {
  let result = text;
  for (const secret of registeredSecrets) result = result.split(secret).join('***');
  for (const pattern of INLINE_PATTERNS) {
    result = result.replace(pattern, (_match, prefix: string, _value: string, suffix?: string) =>
      `${prefix}***${typeof suffix === 'string' ? suffix : ''}`,
    );
  }
  return result;
}

function redactValue(key: string, value: unknown): unknown {
  if (SECRET_KEY.test(key) && value !== undefined && value !== null && value !== '') return '***';
  if (typeof value === 'string') return redact(value);
  if (value instanceof Error) return redact(value.message);
  if (Array.isArray(value)) return value.map((item) => redactValue('', item));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value as LogFields).map(([k, v]) => [k, redactValue(k, v)]));
  }
  return value;
}

export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return '?';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const minutes = Math.floor(seconds / 60);
  const rest = Math.round(seconds - minutes * 60);
  if (minutes < 60) return `${minutes}m${String(rest).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

/** The summary as an aligned text table (also used by `status`). */
export function formatSummaryTable(rows: readonly SummaryRow[]): string {
  const header = ['STEP', 'DURATION', 'ROWS', 'BYTES', 'NOTE'];
  const body = rows.map((row) => [
    row.step,
    formatDuration(row.durationMs),
    row.rows === undefined ? '-' : String(row.rows),
    row.bytes === undefined ? '-' : formatBytes(row.bytes),
    row.note ?? '',
  ]);
  const total = rows.reduce((sum, row) => sum + row.durationMs, 0);
  body.push(['total', formatDuration(total), '', '', '']);
  const widths = header.map((title, column) => Math.max(title.length, ...body.map((line) => line[column]!.length)));
  const render = (cells: string[]) =>
    cells
      .map((cell, column) => (column === 1 || column === 2 || column === 3 ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!)))
      .join('  ')
      .trimEnd();
  return [render(header), ...body.map(render)].join('\n');
}

function formatProgressText(event: ProgressEvent): string {
  const parts = [`${event.step}`];
  if (event.percent !== undefined) parts.push(`${event.percent.toFixed(0).padStart(3)}%`);
  parts.push(event.totalBytes !== undefined ? `${formatBytes(event.bytes)} / ~${formatBytes(event.totalBytes)}` : formatBytes(event.bytes));
  if (event.totalItems !== undefined) parts.push(`${event.items ?? 0}/${event.totalItems} items`);
  parts.push(`${formatBytes(event.bytesPerSecond)}/s`);
  if (event.etaSeconds !== undefined && !event.done) parts.push(`ETA ${formatDuration(event.etaSeconds * 1000)}`);
  if (event.done) parts.push('done');
  return parts.join('  ');
}

function formatFieldsText(fields: LogFields): string {
  return Object.entries(fields)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key}=${typeof value === 'string' && !/\s/.test(value) ? value : JSON.stringify(value)}`)
    .join(' ');
}

const LOG_FORMATS: readonly LogFormat[] = ['json', 'text'];

/** MIGRATION_LOG_FORMAT, else text on a TTY and json otherwise; any other value is a usage error naming it. */
export function resolveLogFormat(env: NodeJS.ProcessEnv, isTTY: boolean | undefined): LogFormat {
  const requested = env[Env.logFormat]?.trim();
  if (!requested) return isTTY ? 'text' : 'json';
  if ((LOG_FORMATS as readonly string[]).includes(requested)) return requested as LogFormat;
  throw usageError(`${Env.logFormat} must be one of ${LOG_FORMATS.join(', ')}, got "${requested}"`, `fix ${Env.logFormat}, or unset it (text on a terminal, json otherwise)`);
}

/** MIGRATION_LOG_LEVEL, else info; any other value is a usage error naming it. */
export function resolveLogLevel(env: NodeJS.ProcessEnv): LogLevel {
  const requested = env[LOG_LEVEL_VARIABLE]?.trim();
  if (!requested) return 'info';
  // Own keys only: `toString` is "in" every object.
  if (Object.hasOwn(LEVEL_ORDER, requested)) return requested as LogLevel;
  throw usageError(`${LOG_LEVEL_VARIABLE} must be one of ${Object.keys(LEVEL_ORDER).join(', ')}, got "${requested}"`, `fix ${LOG_LEVEL_VARIABLE}, or unset it for info`);
}

/** Throws a usage error naming the variable when MIGRATION_LOG_LEVEL or MIGRATION_LOG_FORMAT is invalid. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const stream = options.stream ?? process.stderr;
  const env = options.env ?? process.env;
  const format = options.format ?? resolveLogFormat(env, stream.isTTY);
  const level: LogLevel = options.level ?? resolveLogLevel(env);
  const baseFields = options.fields ?? {};

  const write = (lineLevel: LogLevel, message: string, fields: LogFields, event?: string) => {
    if (LEVEL_ORDER[lineLevel] < LEVEL_ORDER[level]) return;
    const safeFields = redactValue('', { ...baseFields, ...fields }) as LogFields;
    const safeMessage = redact(message);
    if (format === 'json') {
      const record = { time: new Date().toISOString(), level: lineLevel, ...(event ? { event } : {}), msg: safeMessage, ...safeFields };
      stream.write(`${JSON.stringify(record)}\n`);
    } else {
      const time = new Date().toISOString().slice(11, 19);
      const rest = formatFieldsText(safeFields);
      stream.write(`${time} ${lineLevel.toUpperCase().padEnd(5)} ${safeMessage}${rest ? `  ${rest}` : ''}\n`);
    }
  };

  return {
    format,
    debug: (message, fields = {}) => write('debug', message, fields),
    info: (message, fields = {}) => write('info', message, fields),
    warn: (message, fields = {}) => write('warn', message, fields),
    error: (message, fields = {}) => write('error', message, fields),
    progress: (event) => {
      if (format === 'json') write('info', `${event.step} progress`, { ...event }, 'progress');
      else write('info', formatProgressText(event), {});
    },
    summary: (rows, title = 'summary') => {
      if (format === 'json') {
        write('info', title, { rows: rows.map((row) => ({ ...row })) }, 'summary');
      } else {
        const table = formatSummaryTable(rows);
        stream.write(`${title}:\n${table}\n`);
      }
    },
    child: (fields) => createLogger({ ...options, stream, format, level, env, fields: { ...baseFields, ...fields } }),
  };
}

/** A logger that writes nothing: the default for library functions called without one. */
export const silentLogger: Logger = {
  format: 'json',
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  progress: () => undefined,
  summary: () => undefined,
  child: () => silentLogger,
};

export interface ProgressPollOptions {
  readonly step: string;
  /** Expected total bytes (an estimate is fine: percent is capped at 99 until done). */
  readonly totalBytes?: number;
  readonly totalItems?: number;
  /** Returns the bytes (and items) done so far; called every `intervalMs`. */
  readonly measure: () => Promise<{ bytes: number; items?: number }> | { bytes: number; items?: number };
  readonly onProgress: (event: ProgressEvent) => void;
  /** @default 2000 */
  readonly intervalMs?: number;
}

/** Builds a progress event from what is done, the totals and the elapsed time. */
export function progressEvent(
  step: string,
  done: { bytes: number; items?: number },
  totals: { totalBytes?: number; totalItems?: number },
  elapsedMs: number,
  finished = false,
): ProgressEvent {
  const seconds = Math.max(elapsedMs / 1000, 0.001);
  const bytesPerSecond = Math.round(done.bytes / seconds);
  let percent: number | undefined;
  if (finished) percent = 100;
  else if (totals.totalBytes && totals.totalBytes > 0) percent = Math.min(99, (done.bytes / totals.totalBytes) * 100);
  else if (totals.totalItems && totals.totalItems > 0 && done.items !== undefined) percent = Math.min(99, (done.items / totals.totalItems) * 100);
  let etaSeconds: number | undefined;
  if (!finished && totals.totalBytes && bytesPerSecond > 0) {
    etaSeconds = Math.max(0, Math.round((totals.totalBytes - done.bytes) / bytesPerSecond));
  }
  return {
    step,
    bytes: done.bytes,
    bytesPerSecond,
    ...(totals.totalBytes !== undefined ? { totalBytes: totals.totalBytes } : {}),
    ...(percent !== undefined ? { percent: Math.round(percent * 10) / 10 } : {}),
    ...(etaSeconds !== undefined ? { etaSeconds } : {}),
    ...(done.items !== undefined ? { items: done.items } : {}),
    ...(totals.totalItems !== undefined ? { totalItems: totals.totalItems } : {}),
    ...(finished ? { done: true } : {}),
  };
}

/**
 * Polls `measure` while a long step runs and reports progress. `stop()` takes one last
 * measurement and reports it as done (or not, when the step failed).
 */
export function pollProgress(options: ProgressPollOptions): { stop(finished: boolean): Promise<void> } {
  const started = Date.now();
  const totals = { totalBytes: options.totalBytes, totalItems: options.totalItems };
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      const done = await options.measure();
      options.onProgress(progressEvent(options.step, done, totals, Date.now() - started));
    } catch {
      // A measurement can race with files being renamed; the next tick will do.
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void tick(), options.intervalMs ?? 2000);
  timer.unref();
  return {
    async stop(finished: boolean) {
      clearInterval(timer);
      if (!finished) return;
      try {
        const done = await options.measure();
        options.onProgress(progressEvent(options.step, done, totals, Date.now() - started, true));
      } catch {
        // Nothing to report.
      }
    },
  };
}
