// SOURCE_PGSSLMODE / TARGET_PGSSLMODE: libpq's sslmode for the runner's own connections and for
// pg_dump/pg_restore/psql. A bad value is a usage error naming the variable; `require` against a
// server without SSL fails saying so; `disable` works; against a server with a self-signed
// certificate (made here with openssl) `require` works, `verify-full` works with the right CA and
// fails clearly with the wrong one, and an unset mode falls back to TLS when pg_hba demands it.
import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Chart, Testing } from 'cdk8s';
import { Env, ExitCode, MIGRATION_JOB_ENV, RunnerCommand } from '../lib/contract.js';
import { DatabaseMigration, type DatabaseMigrationProps } from '../lib/database-migration.js';
import { hookConfigFromEnv } from '../runner/src/config.js';
import { RunnerError } from '../runner/src/errors.js';
import { connect, settingsFromEnv, sslAttempts, toolEnv, type ConnectionSettings } from '../runner/src/pg/connection.js';
import { startPostgres, type TestPostgres } from './support/postgres.js';
import { endpointEnv, logLines, runRunner } from './support/runner-cli.js';

let plain: TestPostgres;
let tls: TestPostgres;
let certs: string;

function openssl(args: string[]): void {
  execFileSync('openssl', args, { cwd: certs, stdio: 'pipe' });
}

/** A CA and a server certificate for 127.0.0.1 signed by it, plus an unrelated CA. */
function makeCertificates(): void {
  certs = mkdtempSync(join(tmpdir(), 'kc-ssl-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=kc-test-ca']);
  openssl(['req', '-x509', ...ec, '-keyout', 'other-ca.key', '-out', 'other-ca.crt', '-days', '2', '-subj', '/CN=kc-other-ca']);
  openssl(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  writeFileSync(join(certs, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'san.ext']);
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
  // PostgreSQL refuses a key readable by others.
  execFileSync('chmod', ['0600', join(certs, 'server.key')]);
  execFileSync('chmod', ['0755', certs]);
  for (const file of ['server.key', 'server.crt']) chownSync(join(certs, file), uid, gid);
}

beforeAll(async () => {
  makeCertificates();
  [plain, tls] = await Promise.all([
    startPostgres(),
    startPostgres({
      settings: { ssl: 'on', ssl_cert_file: join(certs, 'server.crt'), ssl_key_file: join(certs, 'server.key'), log_connections: 'on' },
    }),
  ]);
});
afterAll(async () => {
  await Promise.all([plain?.stop(), tls?.stop()]);
  if (certs) rmSync(certs, { recursive: true, force: true });
});

function failure(fn: () => unknown): RunnerError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(RunnerError);
    return error as RunnerError;
  }
  throw new Error('expected a RunnerError');
}

async function connectFailure(settings: ConnectionSettings): Promise<RunnerError> {
  try {
    const client = await connect(settings);
    await client.end();
  } catch (error) {
    expect(error).toBeInstanceOf(RunnerError);
    return error as RunnerError;
  }
  throw new Error('expected the connection to fail');
}

/** Whether the runner's own session is encrypted, from the server's point of view. */
async function sessionUsesSsl(settings: ConnectionSettings): Promise<boolean> {
  const client = await connect(settings);
  try {
    return (await client.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0]!.ssl;
  } finally {
    await client.end();
  }
}

/** Reloads pg_hba.conf through the unix socket (TCP may be what the new rules refuse). */
async function reloadConfiguration(server: TestPostgres): Promise<void> {
  const client = new pg.Client({ host: server.socketDir, port: server.port, user: 'postgres', database: 'postgres' });
  await client.connect();
  try {
    await client.query('SELECT pg_reload_conf()');
  } finally {
    await client.end();
  }
  // The postmaster reloads asynchronously after the signal.
  await new Promise((resolve) => setTimeout(resolve, 300));
}

function serverLog(server: TestPostgres): string {
  return readFileSync(join(server.dataDir, '..', 'server.log'), 'utf8');
}

describe('sslmode configuration', () => {
  it('fails when a sslmode is not one of libpq\'s, naming the variable, the value and the choices', () => {
    const error = failure(() =>
      hookConfigFromEnv({
        [Env.stateConfigMap]: 'state',
        [Env.lockLease]: 'lock',
        [Env.backupPvc]: 'backup',
        [Env.podName]: 'pod',
        [Env.targetHost]: 'db',
        [Env.targetUser]: 'app',
        [Env.targetSslMode]: 'required',
      }),
    );
    expect(error.exitCode).toBe(ExitCode.usage);
    expect(error.oneLine()).toBe(
      'TARGET_PGSSLMODE must be one of disable, allow, prefer, require, verify-ca, verify-full (libpq sslmode), got "required": fix TARGET_PGSSLMODE, or unset it for libpq\'s default (prefer)',
    );
  });

  it('fails when verify-ca or verify-full has no root certificate, or the file is missing', () => {
    const base = { [Env.sourceHost]: 'db', [Env.sourceUser]: 'app' };
    expect(failure(() => settingsFromEnv('SOURCE', { ...base, [Env.sourceSslMode]: 'verify-full' })).message).toBe(
      'SOURCE_PGSSLMODE=verify-full needs the CA that signed the server\'s certificate, but SOURCE_PGSSLROOTCERT is not set',
    );
    expect(failure(() => settingsFromEnv('SOURCE', { ...base, [Env.sourceSslMode]: 'verify-ca', [Env.sourceSslRootCert]: '/nonexistent/ca.crt' })).message).toBe(
      'SOURCE_PGSSLROOTCERT names /nonexistent/ca.crt, which does not exist',
    );
  });

  it('passes the mode and root certificate to the pg tools, and nothing when unset (libpq prefer)', () => {
    const settings = settingsFromEnv('TARGET', { [Env.targetHost]: 'db', [Env.targetUser]: 'app', [Env.targetSslMode]: 'verify-ca', [Env.targetSslRootCert]: join(certs, 'ca.crt') });
    expect(toolEnv(settings, { baseEnv: { PGSSLMODE: 'disable' } })).toMatchObject({ PGSSLMODE: 'verify-ca', PGSSLROOTCERT: join(certs, 'ca.crt') });
    const unset = toolEnv(settingsFromEnv('TARGET', { [Env.targetHost]: 'db', [Env.targetUser]: 'app' }), { baseEnv: { PGSSLMODE: 'disable' } });
    expect(unset.PGSSLMODE).toBeUndefined();
    expect(sslAttempts({ host: 'db' })).toEqual([false, { rejectUnauthorized: false }]);
    expect(sslAttempts({ host: 'db', sslMode: 'disable' })).toEqual([false]);
  });
});

describe('against a server without SSL', () => {
  it('require fails saying the server does not support SSL, naming the variable', async () => {
    const error = await connectFailure({ ...plain.settings(), sslMode: 'require', envPrefix: 'TARGET' });
    expect(error.exitCode).toBe(ExitCode.usage);
    expect(error.oneLine()).toBe(
      `TARGET_PGSSLMODE=require requires TLS, but the server at 127.0.0.1:${plain.port} does not support SSL connections: enable ssl on the server, or set TARGET_PGSSLMODE to prefer, allow or disable`,
    );
  });

  it('disable, prefer and unset connect without TLS; the backup command with disable dumps through pg_dump', async () => {
    for (const sslMode of ['disable', 'prefer', undefined] as const) {
      expect(await sessionUsesSsl({ ...plain.settings(), ...(sslMode ? { sslMode } : {}) }), String(sslMode)).toBe(false);
    }
    const dir = mkdtempSync(join(tmpdir(), 'kc-ssl-backup-'));
    try {
      const result = await runRunner(['backup', '--dir', dir], { ...endpointEnv('SOURCE', plain.settings()), [Env.sourceSslMode]: 'disable' });
      expect(result.code, result.stderr).toBe(0);
      const refused = await runRunner(['backup', '--dir', dir], { ...endpointEnv('SOURCE', plain.settings()), [Env.sourceSslMode]: 'require' });
      expect(refused.code).toBe(ExitCode.usage);
      expect(logLines(refused.stderr).find((line) => line.level === 'error')?.msg).toMatch(/^SOURCE_PGSSLMODE=require requires TLS, but the server at 127\.0\.0\.1:\d+ does not support SSL connections/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('against a server with a self-signed certificate', () => {
  it('require encrypts the runner\'s sessions and pg_dump\'s', async () => {
    expect(await sessionUsesSsl({ ...tls.settings(), sslMode: 'require' })).toBe(true);
    expect(await sessionUsesSsl({ ...tls.settings(), sslMode: 'prefer' })).toBe(true);
    expect(await sessionUsesSsl({ ...tls.settings(), sslMode: 'disable' })).toBe(false);
    await tls.createDatabase('ssl_source');
    await tls.query('CREATE TABLE item (id integer PRIMARY KEY); INSERT INTO item SELECT generate_series(1, 10)', [], 'ssl_source');
    const dir = mkdtempSync(join(tmpdir(), 'kc-ssl-backup-'));
    const before = (serverLog(tls).match(/application_name=kc-pg-migration:dump SSL enabled/g) ?? []).length;
    try {
      const result = await runRunner(['backup', '--dir', dir], { ...endpointEnv('SOURCE', tls.settings('ssl_source')), [Env.sourceSslMode]: 'require' });
      expect(result.code, result.stderr).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // pg_dump's sessions (two with --jobs=2, plus the leader) connected with TLS.
    const after = (serverLog(tls).match(/application_name=kc-pg-migration:dump SSL enabled/g) ?? []).length;
    expect(after - before).toBeGreaterThanOrEqual(2);
  });

  it('verify-full passes with the CA that signed the certificate and fails clearly with another', async () => {
    expect(await sessionUsesSsl({ ...tls.settings(), sslMode: 'verify-full', sslRootCert: join(certs, 'ca.crt') })).toBe(true);
    expect(await sessionUsesSsl({ ...tls.settings(), sslMode: 'verify-ca', sslRootCert: join(certs, 'ca.crt') })).toBe(true);
    const error = await connectFailure({ ...tls.settings(), sslMode: 'verify-full', sslRootCert: join(certs, 'other-ca.crt'), envPrefix: 'SOURCE' });
    expect(error.exitCode).toBe(ExitCode.usage);
    expect(error.oneLine()).toMatch(
      /^the TLS certificate of the server at 127\.0\.0\.1:\d+ failed verification \(SOURCE_PGSSLMODE=verify-full\): .+: set SOURCE_PGSSLROOTCERT to the CA that signed the server's certificate/,
    );
    // require does not check the certificate (as libpq without a root certificate).
    expect(await sessionUsesSsl({ ...tls.settings(), sslMode: 'require' })).toBe(true);
  });

  it('unset falls back to TLS when pg_hba accepts only encrypted connections (libpq allow)', async () => {
    const hba = join(tls.dataDir, 'pg_hba.conf');
    const original = readFileSync(hba, 'utf8');
    writeFileSync(hba, original.replace(/^host(\s)/gm, 'hostssl$1'));
    await reloadConfiguration(tls);
    try {
      expect(await sessionUsesSsl(tls.settings())).toBe(true);
      const error = await connectFailure({ ...tls.settings(), sslMode: 'disable', envPrefix: 'TARGET' });
      expect(error.exitCode).toBe(ExitCode.noPermission);
      expect(error.message).toMatch(/no encryption/);
    } finally {
      writeFileSync(hba, original);
      await reloadConfiguration(tls);
    }
  });
});

describe('DatabaseMigration sslMode', () => {
  const props = (sslMode?: DatabaseMigrationProps['sslMode']): DatabaseMigrationProps => ({
    name: 'app-migration',
    flavor: 'argocd',
    runnerImage: 'ghcr.io/example/runner:1.2.3',
    namespace: 'apps',
    source: { host: 'legacy', port: 5432, database: 'app', credentials: { username: 'app', secretName: 'legacy', passwordKey: 'password' } },
    target: { host: 'new-rw', port: 5432, database: 'app', credentials: { username: 'app', secretName: 'new-app', passwordKey: 'password' } },
    workloads: [{ kind: 'StatefulSet', name: 'app' }],
    targetConstructs: [],
    workloadConstructs: [],
    ...(sslMode ? { sslMode } : {}),
  });
  const jobEnv = (sslMode?: DatabaseMigrationProps['sslMode']) => {
    const chart = new Chart(Testing.app(), 'test', { namespace: 'apps' });
    new DatabaseMigration(chart, 'migration', props(sslMode));
    return Testing.synth(chart)
      .filter((object) => object.kind === 'Job')
      .map((job) => ({
        command: job.spec.template.spec.containers[0].args[0] as keyof typeof MIGRATION_JOB_ENV,
        env: Object.fromEntries((job.spec.template.spec.containers[0].env as Array<{ name: string; value?: string }>).map((variable) => [variable.name, variable.value])),
      }));
  };

  it('sets SOURCE_PGSSLMODE / TARGET_PGSSLMODE in every Job only when configured', () => {
    const jobs = jobEnv({ source: 'disable', target: 'require' });
    // Argo CD: the backup Job restores too, there is no restore Job.
    expect(jobs.map((job) => job.command).sort()).toEqual([RunnerCommand.backupPhase, RunnerCommand.prepare, RunnerCommand.recordFailure].sort());
    for (const job of jobs) {
      expect(job.env).toMatchObject({ [Env.sourceSslMode]: 'disable', [Env.targetSslMode]: 'require' });
      expect(MIGRATION_JOB_ENV[job.command].whenConfigured).toEqual(expect.arrayContaining([Env.sourceSslMode, Env.targetSslMode]));
    }
    for (const job of jobEnv()) {
      expect(Object.keys(job.env)).not.toContain(Env.sourceSslMode);
      expect(Object.keys(job.env)).not.toContain(Env.targetSslMode);
    }
  });

  it('fails when an sslMode is not a libpq sslmode', () => {
    expect(() => jobEnv({ target: 'on' as 'require' })).toThrow(
      'DatabaseMigration sslMode.target must be one of disable, allow, prefer, require, verify-ca, verify-full (libpq sslmode), got "on"',
    );
  });
});
