/**
 * The CLI frame without servers: flag > env > default, validation messages naming the flag or the
 * variable, help, the registry; the logger's formats and redaction; the error classifiers; the
 * TOC parser.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ExitCode } from '../lib/contract.js';
import { CommonFlags, defineCommand, formatCommandHelp, parseCommandLine, runCli } from '../runner/src/cli.js';
import { commands } from '../runner/src/commands/index.js';
import { classifyDatabaseError, classifyToolFailure, RunnerError } from '../runner/src/errors.js';
import { createLogger, formatSummaryTable, progressEvent, redact, registerSecret, resolveLogFormat } from '../runner/src/log.js';
import { settingsFromEnv, toolEnv } from '../runner/src/pg/connection.js';
import { parseToc, largeObjectOids, formatUseList } from '../runner/src/pg/toc.js';
import { parseToolVersion, assertDumpToolSupports } from '../runner/src/pg/tools.js';
import { logLines, runRunner } from './support/runner-cli.js';

class MemoryStream extends Writable {
  text = '';
  isTTY = false;
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

const endpoint = { host: 'db.example', port: 5432, user: 'bn_keycloak', database: 'keycloak', envPrefix: 'SOURCE' };

describe('command line', () => {
  const probe = defineCommand({
    name: 'probe',
    summary: 'test command',
    flags: { dir: CommonFlags.dir, jobs: CommonFlags.jobs, fast: { type: 'boolean', description: 'go fast', env: 'PROBE_FAST' } },
    async run() {
      return 0;
    },
  });

  it('takes a flag over the environment over the default', () => {
    const env = { MIGRATION_BACKUP_DIR: '/env-dir', MIGRATION_PARALLEL_JOBS: '4' };
    expect(parseCommandLine(['probe', '--dir', '/flag-dir'], [probe], env)).toMatchObject({ kind: 'run', flags: { dir: '/flag-dir', jobs: 4, fast: false } });
    expect(parseCommandLine(['probe', '--jobs', '3'], [probe], env)).toMatchObject({ flags: { dir: '/env-dir', jobs: 3 } });
    expect(parseCommandLine(['probe', '--dir', 'd'], [probe], {})).toMatchObject({ flags: { jobs: 2 } });
    expect(parseCommandLine(['probe', '--dir', 'd'], [probe], { PROBE_FAST: 'true' })).toMatchObject({ flags: { fast: true } });
  });

  it('fails when a required flag is missing, naming the flag and the variable', () => {
    expect(() => parseCommandLine(['probe'], [probe], {})).toThrow(expect.objectContaining({ exitCode: ExitCode.usage, message: '--dir is required', hint: 'pass --dir or set MIGRATION_BACKUP_DIR' }));
  });

  it('fails when an integer is malformed or out of range, naming where it came from', () => {
    expect(() => parseCommandLine(['probe', '--dir', 'd', '--jobs', 'two'], [probe], {})).toThrow('--jobs must be a whole number, got "two"');
    expect(() => parseCommandLine(['probe', '--dir', 'd'], [probe], { MIGRATION_PARALLEL_JOBS: '0' })).toThrow('MIGRATION_PARALLEL_JOBS must be between 1 and 64, got 0');
  });

  it('fails on unknown commands and flags with exit 64', () => {
    expect(() => parseCommandLine(['nope'], [probe], {})).toThrow(expect.objectContaining({ exitCode: 64, message: 'unknown command "nope"' }));
    expect(() => parseCommandLine(['probe', '--dri', 'x'], [probe], {})).toThrow(expect.objectContaining({ exitCode: 64 }));
  });

  it('prints help for the program and for each registered command', async () => {
    const out = new MemoryStream();
    const log = createLogger({ stream: new MemoryStream(), format: 'json' });
    expect(await runCli(['--help'], { commands, log, stdout: out })).toBe(0);
    for (const name of ['backup', 'restore', 'verify']) expect(out.text).toContain(`  ${name} `);
    for (const command of commands.filter((candidate) => ['backup', 'restore', 'verify'].includes(candidate.name))) {
      const help = formatCommandHelp(command);
      expect(help).toContain(`Usage: runner ${command.name} [flags]`);
      expect(help).toContain('--dir DIR');
      expect(help).toContain('env MIGRATION_BACKUP_DIR');
    }
    const commandHelp = new MemoryStream();
    expect(await runCli(['restore', '--help'], { commands, log, stdout: commandHelp })).toBe(0);
    expect(commandHelp.text).toContain('--owner ROLE');
    expect(commandHelp.text).toContain('env TARGET_OWNER');
  });
});

describe('connection settings', () => {
  it('reads the prefixed libpq variables with defaults for port and database', () => {
    expect(settingsFromEnv('TARGET', { TARGET_PGHOST: 'h', TARGET_PGUSER: 'u', TARGET_PGPASSWORD: 'pw-1234' })).toEqual({
      host: 'h',
      port: 5432,
      user: 'u',
      password: 'pw-1234',
      database: 'u',
      envPrefix: 'TARGET',
    });
  });

  it('fails naming the variable and the value for a bad port', () => {
    expect(() => settingsFromEnv('SOURCE', { SOURCE_PGHOST: 'h', SOURCE_PGUSER: 'u', SOURCE_PGPORT: '54x' })).toThrow('SOURCE_PGPORT must be a TCP port (1-65535), got "54x"');
  });

  it('gives pg tools the connection through the environment only, dropping stray libpq variables', () => {
    const env = toolEnv({ host: 'h', port: 6432, user: 'u', password: 'secret-pw', database: 'd' }, { baseEnv: { PATH: '/bin', PGSERVICE: 'evil', PGSSLMODE: 'x' } });
    expect(env).toMatchObject({ PATH: '/bin', PGHOST: 'h', PGPORT: '6432', PGUSER: 'u', PGDATABASE: 'd', PGPASSWORD: 'secret-pw' });
    expect(env.PGSERVICE).toBeUndefined();
  });
});

describe('logger', () => {
  it('writes JSON lines when not on a terminal and text on a terminal, MIGRATION_LOG_FORMAT overriding', () => {
    expect(resolveLogFormat({}, false)).toBe('json');
    expect(resolveLogFormat({}, true)).toBe('text');
    expect(resolveLogFormat({ MIGRATION_LOG_FORMAT: 'json' }, true)).toBe('json');
    const stream = new MemoryStream();
    createLogger({ stream, env: {} }).info('hello', { table: 'public.realm' });
    expect(JSON.parse(stream.text)).toMatchObject({ level: 'info', msg: 'hello', table: 'public.realm' });
  });

  it('fails when MIGRATION_LOG_LEVEL or MIGRATION_LOG_FORMAT is not a known value, naming the variable, the value and the allowed ones', () => {
    const stream = new MemoryStream();
    expect(() => createLogger({ stream, env: { MIGRATION_LOG_LEVEL: 'verbose' } })).toThrow(
      expect.objectContaining({ exitCode: ExitCode.usage, message: 'MIGRATION_LOG_LEVEL must be one of debug, info, warn, error, got "verbose"' }),
    );
    // A key every object has is not a level.
    expect(() => createLogger({ stream, env: { MIGRATION_LOG_LEVEL: 'toString' } })).toThrow(/MIGRATION_LOG_LEVEL must be one of .*got "toString"/);
    expect(() => createLogger({ stream, env: { MIGRATION_LOG_FORMAT: 'yaml' } })).toThrow(
      expect.objectContaining({ exitCode: ExitCode.usage, message: 'MIGRATION_LOG_FORMAT must be one of json, text, got "yaml"' }),
    );
    createLogger({ stream, env: { MIGRATION_LOG_LEVEL: 'warn', MIGRATION_LOG_FORMAT: 'json' } }).info('not written');
    expect(stream.text).toBe('');
  });

  it('exits 64 on a bad MIGRATION_LOG_LEVEL before running anything, saying so on one line', async () => {
    const run = await runRunner(['--help'], { MIGRATION_LOG_LEVEL: 'loud' });
    expect(run.code).toBe(ExitCode.usage);
    expect(logLines(run.stderr)).toEqual([
      expect.objectContaining({ level: 'error', exitCode: ExitCode.usage, msg: 'MIGRATION_LOG_LEVEL must be one of debug, info, warn, error, got "loud": fix MIGRATION_LOG_LEVEL, or unset it for info' }),
    ]);
    expect(run.stdout).toBe('');
  });

  it('never writes a password: secret field names, registered secrets, inline patterns', () => {
    registerSecret('Tr0ub4dor&3');
    const stream = new MemoryStream();
    const log = createLogger({ stream, format: 'json', env: {} });
    log.info('connecting with Tr0ub4dor&3', { password: 'hunter22', nested: { PGPASSWORD: 'abc123' }, url: 'postgres://u:pa55w0rd@h/db' });
    log.warn('psql: password=hunter22 host=x');
    expect(stream.text).not.toMatch(/Tr0ub4dor|hunter22|abc123|pa55w0rd/);
    expect(redact('postgres://u:pa55w0rd@h/db')).toBe('postgres://u:***@h/db');
  });

  it('reports progress with percent, rate and ETA, capped below 100 until done', () => {
    expect(progressEvent('dump', { bytes: 50_000_000 }, { totalBytes: 100_000_000 }, 10_000)).toEqual({
      step: 'dump',
      bytes: 50_000_000,
      totalBytes: 100_000_000,
      percent: 50,
      bytesPerSecond: 5_000_000,
      etaSeconds: 10,
    });
    expect(progressEvent('dump', { bytes: 150 }, { totalBytes: 100 }, 1000).percent).toBe(99);
    expect(progressEvent('dump', { bytes: 150 }, { totalBytes: 100 }, 1000, true)).toMatchObject({ percent: 100, done: true });
  });

  it('prints the summary as an aligned table with a total', () => {
    const table = formatSummaryTable([
      { step: 'dump', durationMs: 3200, rows: 1457, bytes: 546_218 },
      { step: 'verify backup', durationMs: 150 },
    ]);
    expect(table.split('\n')).toEqual([
      'STEP           DURATION  ROWS   BYTES  NOTE',
      'dump               3.2s  1457  546 kB',
      'verify backup     150ms     -       -',
      'total              3.4s',
    ]);
  });
});

describe('error classification', () => {
  const cases: Array<[string, number, Record<string, unknown>, string]> = [
    ['wrong password', 77, { code: '28P01', message: 'password authentication failed for user "bn_keycloak"' }, 'authentication failed for user bn_keycloak at db.example:5432'],
    ['wrong password through Pgpool-II', 77, { code: 'XX000', message: 'authentication failed for user "keycloak"' }, 'authentication failed for user bn_keycloak'],
    ['unknown user through Pgpool-II', 77, { code: 'XX000', message: 'SCRAM authentication failed' }, 'authentication failed for user bn_keycloak'],
    ['unknown role', 77, { code: '28000', message: 'role "x" does not exist' }, 'rejected user bn_keycloak'],
    ['missing database', 64, { code: '3D000', message: 'database "keycloak" does not exist' }, 'database keycloak does not exist'],
    ['refused', 69, { code: 'ECONNREFUSED', message: 'connect ECONNREFUSED' }, 'cannot reach PostgreSQL at db.example:5432'],
    ['unresolvable', 69, { code: 'ENOTFOUND', message: 'getaddrinfo ENOTFOUND db.example' }, 'cannot reach PostgreSQL'],
    ['starting up', 69, { code: '57P03', message: 'the database system is starting up' }, 'cannot reach PostgreSQL'],
    ['standby', 69, { code: '25006', message: 'cannot execute CREATE TABLE in a read-only transaction' }, 'is read-only'],
    ['connect timeout', 75, { message: 'Connection terminated due to connection timeout' }, 'timed out trying to connect to'],
    ['statement timeout', 75, { code: '57014', message: 'canceling statement due to statement timeout' }, 'timed out or blocked'],
    ['privilege', 77, { code: '42501', message: 'permission denied for table realm' }, 'permission denied'],
    ['disk full', 78, { code: '53100', message: 'could not extend file' }, 'out of disk space'],
    ['anything else', 1, { code: 'XX000', message: 'boom' }, 'failed to connect to bn_keycloak@db.example:5432/keycloak: boom'],
  ];
  it.each(cases)('%s → exit %i', (_name, exitCode, error, message) => {
    const classified = classifyDatabaseError(error, endpoint);
    expect(classified).toBeInstanceOf(RunnerError);
    expect(classified.exitCode).toBe(exitCode);
    expect(classified.message).toContain(message);
  });

  it('names the Secret variable to fix for a wrong password', () => {
    expect(classifyDatabaseError({ code: '28P01' }, endpoint).hint).toContain('SOURCE_PGPASSWORD');
  });

  it('classifies pg tool failures by their stderr', () => {
    const tool = (stderr: string) => classifyToolFailure('pg_dump', { code: 1, signal: null }, stderr, endpoint);
    expect(tool('pg_dump: error: aborting because of server version mismatch').exitCode).toBe(65);
    expect(tool('pg_dump: error: could not write to file "x": No space left on device').exitCode).toBe(78);
    expect(tool('connection to server at "h" (1.2.3.4), port 5432 failed: Connection refused').exitCode).toBe(69);
    expect(tool('FATAL:  password authentication failed for user "u"').exitCode).toBe(77);
    expect(tool('connection to server at "h" (1.2.3.4), port 5432 failed: ERROR:  authentication failed for user "u"').exitCode).toBe(77);
    expect(tool('pg_restore: error: could not execute query: ERROR:  permission denied to create extension "pg_stat_statements"').exitCode).toBe(77);
    expect(tool('pg_dump: error: something new').message).toBe('pg_dump exited with code 1 on bn_keycloak@db.example:5432/keycloak: pg_dump: error: something new');
  });

  it('refuses a server newer than pg_dump naming both versions', () => {
    expect(() => assertDumpToolSupports({ major: 17, version: '17.6' }, parseToolVersion('pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)'), endpoint)).toThrow(
      'the source server at db.example:5432 runs PostgreSQL 17.6 but pg_dump is 15.18: pg_dump cannot dump a newer server',
    );
    expect(() => assertDumpToolSupports({ major: 15, version: '15.4' }, { major: 17, version: '17.6' }, endpoint)).not.toThrow();
  });
});

describe('dump table of contents', () => {
  const listing = [
    ';',
    '; Archive created at 2026-11-25 00:56:57 UTC',
    '8; 2615 16648 SCHEMA - audit kc',
    '2; 3079 16386 EXTENSION - citext ',
    '3619; 0 0 COMMENT - EXTENSION citext ',
    '3621; 0 0 COMMENT public FUNCTION touch_realm() kc',
    '234; 1259 16658 MATERIALIZED VIEW public realm_user_counts kc',
    '3608; 2613 16668 BLOB - 16668 kc',
    '3700; 2613 0 BLOB METADATA - 16700..16710 kc',
    '3602; 0 16631 TABLE DATA public binary blob kc',
    '3611; 0 0 BLOBS - BLOBS ',
    '3445; 2606 16593 FK CONSTRAINT public credential credential_user_id_fkey kc',
    '3607; 0 16658 MATERIALIZED VIEW DATA public realm_user_counts kc',
  ].join('\n');

  it('parses multi-word descriptions, namespaces, tags with spaces and empty owners', () => {
    const entries = parseToc(listing);
    expect(entries.map((entry) => [entry.dumpId, entry.desc, entry.namespace, entry.tag, entry.owner])).toEqual([
      [8, 'SCHEMA', '-', 'audit', 'kc'],
      [2, 'EXTENSION', '-', 'citext', ''],
      [3619, 'COMMENT', '-', 'EXTENSION citext', ''],
      [3621, 'COMMENT', 'public', 'FUNCTION touch_realm()', 'kc'],
      [234, 'MATERIALIZED VIEW', 'public', 'realm_user_counts', 'kc'],
      [3608, 'BLOB', '-', '16668', 'kc'],
      [3700, 'BLOB METADATA', '-', '16700..16710', 'kc'],
      [3602, 'TABLE DATA', 'public', 'binary blob', 'kc'],
      [3611, 'BLOBS', '-', 'BLOBS', ''],
      [3445, 'FK CONSTRAINT', 'public', 'credential credential_user_id_fkey', 'kc'],
      [3607, 'MATERIALIZED VIEW DATA', 'public', 'realm_user_counts', 'kc'],
    ]);
    expect(largeObjectOids(entries)).toEqual({ oids: [16668], ranges: [[16700, 16710]] });
    const useList = formatUseList(entries, (entry) => entry.desc === 'EXTENSION');
    expect(useList).toContain(';2; 3079 16386 EXTENSION - citext \n');
    expect(useList.startsWith('8; 2615 16648 SCHEMA - audit kc\n')).toBe(true);
  });
});
