/**
 * How the runner reaches a database: settings read from the SOURCE_* / TARGET_* variables of the
 * contract, a `withClient` helper that owns a `pg` connection for the duration of a callback, and
 * the environment for spawning pg_dump / pg_restore / psql.
 *
 * Passwords travel only in memory, in a child's environment (`PGPASSWORD`) or in a 0600 passfile;
 * never in argv, never in a log line or an error message.
 */
import { randomBytes } from 'node:crypto';
import { chmod, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Env } from '../../../lib/contract.js';
import { classifyDatabaseError, usageError, type EndpointDescription } from '../errors.js';
import { registerSecret } from '../log.js';

export type EndpointPrefix = 'SOURCE' | 'TARGET';

export interface ConnectionSettings {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  /** Absent: libpq's usual fallbacks (a passfile, trust authentication). */
  readonly password?: string;
  readonly database: string;
  /** Which variables these came from, so errors can name the one to fix. */
  readonly envPrefix?: EndpointPrefix;
}

/** application_name of the runner's sessions: visible in pg_stat_activity. */
export const APPLICATION_NAME = 'kc-pg-migration';

/** Seconds to wait for a TCP connection before giving up (then retried by the Job). */
export const CONNECT_TIMEOUT_SECONDS = 15;

/**
 * Session settings that make the text form of values identical on every server and every run, so
 * that checksums taken on the source and on the target are comparable: times in UTC, ISO dates,
 * the default interval style, hex bytea and the shortest exact float output.
 */
export const COMPARABLE_SESSION_SETTINGS: Readonly<Record<string, string>> = {
  TimeZone: 'UTC',
  DateStyle: 'ISO, MDY',
  IntervalStyle: 'postgres',
  bytea_output: 'hex',
  extra_float_digits: '3',
  client_encoding: 'UTF8',
  standard_conforming_strings: 'on',
};

const VARIABLES = {
  SOURCE: { host: Env.sourceHost, port: Env.sourcePort, user: Env.sourceUser, password: Env.sourcePassword, database: Env.sourceDatabase },
  TARGET: { host: Env.targetHost, port: Env.targetPort, user: Env.targetUser, password: Env.targetPassword, database: Env.targetDatabase },
} as const;

/** True when at least the host variable of that endpoint is set (e.g. `verify` checks the target only then). */
export function hasEndpointInEnv(prefix: EndpointPrefix, env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env[VARIABLES[prefix].host]);
}

/**
 * Reads `<PREFIX>_PGHOST`, `_PGPORT` (default 5432), `_PGUSER`, `_PGPASSWORD` (optional) and
 * `_PGDATABASE` (default: the user name, as libpq does). Missing or malformed values fail with a
 * usage error naming the variable.
 */
export function settingsFromEnv(prefix: EndpointPrefix, env: NodeJS.ProcessEnv = process.env): ConnectionSettings {
  const names = VARIABLES[prefix];
  const host = env[names.host]?.trim();
  if (!host) {
    throw usageError(`${names.host} is not set`, `set ${names.host} to the ${prefix === 'SOURCE' ? 'old' : 'new'} database's host name`);
  }
  const user = env[names.user]?.trim();
  if (!user) throw usageError(`${names.user} is not set`, `set ${names.user} to the user the runner connects as`);
  const rawPort = env[names.port]?.trim() || '5432';
  const port = Number(rawPort);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw usageError(`${names.port} must be a TCP port (1-65535), got "${rawPort}"`, `fix ${names.port}`);
  }
  const password = env[names.password] || undefined;
  registerSecret(password);
  const database = env[names.database]?.trim() || user;
  return { host, port, user, password, database, envPrefix: prefix };
}

/** The parts of the settings that may appear in messages. */
export function describeEndpoint(settings: ConnectionSettings): EndpointDescription {
  return { host: settings.host, port: settings.port, user: settings.user, database: settings.database, envPrefix: settings.envPrefix };
}

export interface ClientOptions {
  /** Suffix for application_name, e.g. `backup-stats`. */
  readonly purpose?: string;
  /** Extra session settings applied after {@link COMPARABLE_SESSION_SETTINGS}. */
  readonly sessionSettings?: Readonly<Record<string, string>>;
  /** Verb for error messages: "failed to <action> <endpoint>". @default 'query' */
  readonly action?: string;
}

/** Opens a connection with the comparable session settings; errors are classified. */
export async function connect(settings: ConnectionSettings, options: ClientOptions = {}): Promise<pg.Client> {
  const client = new pg.Client({
    host: settings.host,
    port: settings.port,
    user: settings.user,
    password: settings.password,
    database: settings.database,
    application_name: options.purpose ? `${APPLICATION_NAME}:${options.purpose}` : APPLICATION_NAME,
    connectionTimeoutMillis: CONNECT_TIMEOUT_SECONDS * 1000,
    // A dead peer must not hang the runner forever: the Job's deadline is the last resort.
    keepAlive: true,
  });
  // An idle client whose server goes away emits 'error'; without a listener Node would crash.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => undefined);
    throw classifyDatabaseError(error, describeEndpoint(settings), 'connect to');
  }
  try {
    const all = { ...COMPARABLE_SESSION_SETTINGS, ...options.sessionSettings };
    const assignments = Object.entries(all)
      .map(([name, value]) => `SET ${name} = ${pg.escapeLiteral(value)}`)
      .join('; ');
    await client.query(assignments);
  } catch (error) {
    await client.end().catch(() => undefined);
    throw classifyDatabaseError(error, describeEndpoint(settings), 'configure a session on');
  }
  return client;
}

/**
 * Runs `fn` with a connected client and always closes it. Errors thrown by `fn` that come from the
 * server are classified (naming the endpoint); RunnerErrors pass through.
 */
export async function withClient<T>(
  settings: ConnectionSettings,
  fn: (client: pg.Client) => Promise<T>,
  options: ClientOptions = {},
): Promise<T> {
  const client = await connect(settings, options);
  try {
    return await fn(client);
  } catch (error) {
    throw classifyDatabaseError(error, describeEndpoint(settings), options.action ?? 'query');
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Environment variables of the parent that would change what a pg tool connects to. */
const LIBPQ_VARIABLE = /^PG[A-Z]+$/;

export interface ToolEnvOptions {
  /** Extra server options for the tool's sessions (PGOPTIONS), e.g. `-c synchronous_commit=off`. */
  readonly pgOptions?: string;
  /** application_name suffix. */
  readonly purpose?: string;
  /** Use this passfile instead of PGPASSWORD (see {@link writePassfile}). */
  readonly passfile?: string;
  /** The environment to start from. @default process.env */
  readonly baseEnv?: NodeJS.ProcessEnv;
}

/**
 * The environment for a pg tool connecting with `settings`: the parent's environment without any
 * libpq variable (a stray PGSERVICE or PGOPTIONS must not redirect the tool), plus
 * PGHOST/PGPORT/PGUSER/PGDATABASE, the password (PGPASSWORD or PGPASSFILE), PGAPPNAME, and
 * PGCONNECT_TIMEOUT.
 */
export function toolEnv(settings: ConnectionSettings, options: ToolEnvOptions = {}): NodeJS.ProcessEnv {
  const base = options.baseEnv ?? process.env;
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(base)) {
    if (!LIBPQ_VARIABLE.test(name)) env[name] = value;
  }
  env.PGHOST = settings.host;
  env.PGPORT = String(settings.port);
  env.PGUSER = settings.user;
  env.PGDATABASE = settings.database;
  env.PGAPPNAME = options.purpose ? `${APPLICATION_NAME}:${options.purpose}` : APPLICATION_NAME;
  env.PGCONNECT_TIMEOUT = String(CONNECT_TIMEOUT_SECONDS);
  // The tools' sessions get the same comparable settings as ours, plus the caller's options.
  env.PGTZ = 'UTC';
  env.PGCLIENTENCODING = 'UTF8';
  if (options.pgOptions) env.PGOPTIONS = options.pgOptions;
  if (options.passfile) env.PGPASSFILE = options.passfile;
  else if (settings.password !== undefined) env.PGPASSWORD = settings.password;
  return env;
}

function escapePassfileField(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
}

/**
 * Writes a libpq passfile (mode 0600, in a fresh private directory) for `settings` and returns its
 * path and a function that deletes it. For environments where PGPASSWORD is not wanted.
 */
export async function writePassfile(settings: ConnectionSettings, directory = tmpdir()): Promise<{ path: string; remove(): Promise<void> }> {
  const path = join(directory, `.pgpass-${process.pid}-${randomBytes(6).toString('hex')}`);
  const line = [settings.host, String(settings.port), settings.database, settings.user, settings.password ?? '']
    .map(escapePassfileField)
    .join(':');
  await writeFile(path, `${line}\n`, { mode: 0o600, flag: 'wx' });
  await chmod(path, 0o600);
  return { path, remove: () => rm(path, { force: true }) };
}

/** `"schema"."name"`, quoted for SQL. */
export function qualifiedName(schema: string, name: string): string {
  return `${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(name)}`;
}

/** The server's major version (e.g. 15) from `server_version_num`. */
export async function serverMajorVersion(client: pg.Client): Promise<{ major: number; version: string }> {
  const result = await client.query<{ num: string; version: string }>(
    "SELECT current_setting('server_version_num') AS num, current_setting('server_version') AS version",
  );
  const row = result.rows[0]!;
  return { major: Math.floor(Number(row.num) / 10000), version: row.version.split(' ')[0]! };
}
