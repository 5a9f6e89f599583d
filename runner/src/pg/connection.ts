/**
 * How the runner reaches a database: settings read from the SOURCE_* / TARGET_* variables of the
 * contract, a `withClient` helper that owns a `pg` connection for the duration of a callback, and
 * the environment for spawning pg_dump / pg_restore / psql.
 *
 * Passwords travel only in memory and in a child's environment (`PGPASSWORD`); never in argv,
 * never in a log line or an error message.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import { Env, ExitCode, SslMode, type SslModeValue } from '../../../lib/contract.js';
import { classifyDatabaseError, RunnerError, usageError, type EndpointDescription } from '../errors.js';
import { registerSecret } from '../log.js';

export type EndpointPrefix = 'SOURCE' | 'TARGET';

export interface ConnectionSettings {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  /** Absent: libpq's usual fallbacks (a passfile, trust authentication). */
  readonly password?: string;
  readonly database: string;
  /**
   * libpq sslmode (`<PREFIX>_PGSSLMODE`). @default - unset: the tools use libpq's `prefer`, the
   * runner's own connections behave as `allow` (see {@link sslAttempts})
   */
  readonly sslMode?: SslModeValue;
  /** PEM file of the CA(s) that sign the server's certificate (`<PREFIX>_PGSSLROOTCERT`). */
  readonly sslRootCert?: string;
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
  SOURCE: {
    host: Env.sourceHost,
    port: Env.sourcePort,
    user: Env.sourceUser,
    password: Env.sourcePassword,
    database: Env.sourceDatabase,
    sslMode: Env.sourceSslMode,
    sslRootCert: Env.sourceSslRootCert,
  },
  TARGET: {
    host: Env.targetHost,
    port: Env.targetPort,
    user: Env.targetUser,
    password: Env.targetPassword,
    database: Env.targetDatabase,
    sslMode: Env.targetSslMode,
    sslRootCert: Env.targetSslRootCert,
  },
} as const;

const SSL_MODES: readonly string[] = Object.values(SslMode);

/** Reads `<PREFIX>_PGSSLMODE` and `_PGSSLROOTCERT`; bad values are usage errors naming the variable. */
function sslFromEnv(prefix: EndpointPrefix, env: NodeJS.ProcessEnv): { sslMode?: SslModeValue; sslRootCert?: string } {
  const names = VARIABLES[prefix];
  const rawMode = env[names.sslMode]?.trim();
  if (rawMode && !SSL_MODES.includes(rawMode)) {
    throw usageError(`${names.sslMode} must be one of ${SSL_MODES.join(', ')} (libpq sslmode), got "${rawMode}"`, `fix ${names.sslMode}, or unset it for libpq's default (prefer)`);
  }
  const sslMode = rawMode ? (rawMode as SslModeValue) : undefined;
  const sslRootCert = env[names.sslRootCert]?.trim() || undefined;
  if (sslRootCert && !existsSync(sslRootCert)) {
    throw usageError(`${names.sslRootCert} names ${sslRootCert}, which does not exist`, `mount the CA certificate there, or fix ${names.sslRootCert}`);
  }
  if ((sslMode === SslMode.verifyCa || sslMode === SslMode.verifyFull) && !sslRootCert) {
    throw usageError(
      `${names.sslMode}=${sslMode} needs the CA that signed the server's certificate, but ${names.sslRootCert} is not set`,
      `mount the CA certificate (PEM) and set ${names.sslRootCert} to its path, or use ${names.sslMode}=require (encrypted, certificate not checked)`,
    );
  }
  return { ...(sslMode ? { sslMode } : {}), ...(sslRootCert ? { sslRootCert } : {}) };
}

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
  return { host, port, user, password, database, ...sslFromEnv(prefix, env), envPrefix: prefix };
}

/** The parts of the settings that may appear in messages. */
export function describeEndpoint(settings: ConnectionSettings): EndpointDescription {
  return { host: settings.host, port: settings.port, user: settings.user, database: settings.database, envPrefix: settings.envPrefix };
}

/** node-postgres' `ssl` option of one connection attempt: false (plain) or the TLS options. */
export type SslAttempt = false | ConnectionOptions;

/**
 * The node-postgres connections that implement libpq's sslmode, in the order to try them:
 *
 * | sslmode       | attempts                                                            |
 * |---------------|---------------------------------------------------------------------|
 * | unset, allow  | plain; TLS (unverified) only if the server refused it (pg_hba)      |
 * | disable       | plain                                                               |
 * | prefer        | TLS (unverified); plain only if the server does not support SSL     |
 * | require       | TLS, certificate unverified — or its chain verified when a root     |
 * |               | certificate is configured (libpq does the same)                     |
 * | verify-ca     | TLS, chain verified against the root certificate, any host name     |
 * | verify-full   | TLS, chain and host name verified                                   |
 *
 * Unset is `allow` rather than libpq's `prefer` so that the runner's many short connections (the
 * gate's polls, the checksums) pay no TLS handshake on a server that accepts plain connections;
 * pg_dump, pg_restore and psql get no PGSSLMODE then and use libpq's `prefer`.
 */
export function sslAttempts(settings: Pick<ConnectionSettings, 'host' | 'sslMode' | 'sslRootCert' | 'envPrefix'>): SslAttempt[] {
  const ca = settings.sslRootCert ? readRootCert(settings) : undefined;
  const unverified: ConnectionOptions = { rejectUnauthorized: false };
  const chainOnly: ConnectionOptions = { ca, rejectUnauthorized: true, checkServerIdentity: () => undefined };
  switch (settings.sslMode) {
    case undefined:
    case SslMode.allow:
      return [false, unverified];
    case SslMode.disable:
      return [false];
    case SslMode.prefer:
      return [ca ? chainOnly : unverified, false];
    case SslMode.require:
      return [ca ? chainOnly : unverified];
    case SslMode.verifyCa:
      return [chainOnly];
    case SslMode.verifyFull:
      // The host name (or IP address) to check the certificate against: node-postgres names it for SNI only when it is not an IP.
      return [{ ca, rejectUnauthorized: true, host: settings.host }];
  }
}

function readRootCert(settings: Pick<ConnectionSettings, 'sslRootCert' | 'envPrefix'>): string {
  try {
    return readFileSync(settings.sslRootCert!, 'utf8');
  } catch (error) {
    const variable = settings.envPrefix ? `${settings.envPrefix}_PGSSLROOTCERT` : 'the root certificate';
    throw usageError(`cannot read ${variable} ${settings.sslRootCert}: ${(error as Error).message}`, `mount the CA certificate there, or fix ${variable}`);
  }
}

/** The server answered the SSLRequest with "no": only a plain connection could work. */
function serverRefusedSsl(error: unknown): boolean {
  return error instanceof Error && /does not support SSL/i.test(error.message);
}

/** pg_hba rejected the connection because it was not encrypted (`hostssl` lines only). */
function serverWantsEncryption(error: unknown): boolean {
  const fields = error as { code?: unknown; message?: unknown };
  return fields?.code === '28000' && typeof fields.message === 'string' && /no encryption/i.test(fields.message);
}

/** A TLS failure as an error that names the variable to fix (the sslmode or the root certificate). */
function classifySslError(error: unknown, settings: ConnectionSettings): RunnerError | undefined {
  const modeVariable = settings.envPrefix ? `${settings.envPrefix}_PGSSLMODE` : 'PGSSLMODE';
  const certVariable = settings.envPrefix ? `${settings.envPrefix}_PGSSLROOTCERT` : 'PGSSLROOTCERT';
  const where = `${settings.host}:${settings.port}`;
  if (serverRefusedSsl(error)) {
    return new RunnerError(`${modeVariable}=${settings.sslMode} requires TLS, but the server at ${where} does not support SSL connections`, {
      exitCode: ExitCode.usage,
      hint: `enable ssl on the server, or set ${modeVariable} to prefer, allow or disable`,
      cause: error,
    });
  }
  const code = (error as { code?: unknown })?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (typeof code === 'string' && (/CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ERR_TLS/.test(code) || /altnames|certificate/i.test(message))) {
    return new RunnerError(`the TLS certificate of the server at ${where} failed verification (${modeVariable}=${settings.sslMode}): ${message}`, {
      exitCode: ExitCode.usage,
      hint: `set ${certVariable} to the CA that signed the server's certificate${settings.sslMode === SslMode.verifyFull ? ` and connect by a host name the certificate names` : ''}, or use ${modeVariable}=require (encrypted, certificate not checked)`,
      cause: error,
    });
  }
  return undefined;
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
  const attempts = sslAttempts(settings);
  let client: pg.Client | undefined;
  for (const [index, ssl] of attempts.entries()) {
    const candidate = new pg.Client({
      host: settings.host,
      port: settings.port,
      user: settings.user,
      password: settings.password,
      database: settings.database,
      application_name: options.purpose ? `${APPLICATION_NAME}:${options.purpose}` : APPLICATION_NAME,
      connectionTimeoutMillis: CONNECT_TIMEOUT_SECONDS * 1000,
      // A dead peer must not hang the runner forever: the Job's deadline is the last resort.
      keepAlive: true,
      // Always explicit: otherwise node-postgres would read a stray PGSSLMODE from the environment.
      ssl,
    });
    // An idle client whose server goes away emits 'error'; without a listener Node would crash.
    candidate.on('error', () => undefined);
    try {
      await candidate.connect();
      client = candidate;
      break;
    } catch (error) {
      await candidate.end().catch(() => undefined);
      const next = attempts[index + 1];
      // Fall back only for the reason sslmode allows it: plain refused by pg_hba, or TLS not offered.
      const fallBack = next !== undefined && (ssl === false ? serverWantsEncryption(error) : serverRefusedSsl(error));
      if (fallBack) continue;
      throw classifySslError(error, settings) ?? classifyDatabaseError(error, describeEndpoint(settings), 'connect to');
    }
  }
  if (!client) throw new Error('connect: no connection attempt was made: this is a bug in the runner');
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
  /** The environment to start from. @default process.env */
  readonly baseEnv?: NodeJS.ProcessEnv;
}

/**
 * The environment for a pg tool connecting with `settings`: the parent's environment without any
 * libpq variable (a stray PGSERVICE or PGOPTIONS must not redirect the tool), plus
 * PGHOST/PGPORT/PGUSER/PGDATABASE, the password (PGPASSWORD), PGAPPNAME,
 * PGCONNECT_TIMEOUT, and PGSSLMODE / PGSSLROOTCERT when configured.
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
  // Unset: libpq's default (prefer). A root certificate is passed whatever the mode, as libpq reads it.
  if (settings.sslMode) env.PGSSLMODE = settings.sslMode;
  if (settings.sslRootCert) env.PGSSLROOTCERT = settings.sslRootCert;
  if (options.pgOptions) env.PGOPTIONS = options.pgOptions;
  if (settings.password !== undefined) env.PGPASSWORD = settings.password;
  return env;
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
