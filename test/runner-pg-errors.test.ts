/**
 * Every failure exits with its contract exit code and ONE line naming what failed and what to do;
 * no password appears in any output or in any process's arguments.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../lib/contract.js';
import { backupDatabase } from '../runner/src/pg/backup.js';
import { createKeycloakData } from './support/keycloak-data.js';
import { startPostgres, type TestPostgres } from './support/postgres.js';
import { endpointEnv, logLines, runRunner, startRunner } from './support/runner-cli.js';

let server15: TestPostgres;
let server17: TestPostgres;
let workDir: string;
const USER = 'bn_keycloak';
const PASSWORD = 'Very-Secret-Password-42';

beforeAll(async () => {
  [server15, server17] = await Promise.all([startPostgres({ major: 15 }), startPostgres({ major: 17 })]);
  await server15.createUser(USER, PASSWORD);
  await server15.createDatabase('keycloak', USER);
  await createKeycloakData(server15.settings('keycloak', USER, PASSWORD), { users: 50, bulkBytes: 24_000_000 });
  await server17.createUser(USER, PASSWORD);
  await server17.createDatabase('keycloak', USER);
  await createKeycloakData(server17.settings('keycloak', USER, PASSWORD), { users: 20 });
  workDir = mkdtempSync(join(tmpdir(), 'kc-runner-errors-'));
});

afterAll(async () => {
  await Promise.all([server15?.stop(), server17?.stop()]);
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

/** The single error line of a failed run. */
function onlyErrorLine(stderr: string): { msg: string; exitCode: number } {
  const lines = stderr.trim().split('\n');
  expect(lines, stderr).toHaveLength(1);
  const [line] = logLines(lines[0]!);
  expect(line!.level).toBe('error');
  return line as unknown as { msg: string; exitCode: number };
}

describe('connection failures', () => {
  it('fails with 77 and one line naming user, host and the Secret variable when the password is wrong', async () => {
    const settings = { ...server15.settings('keycloak', USER, 'wrong-password-123') };
    const run = await runRunner(['backup', '--dir', join(workDir, 'wrong-password')], endpointEnv('SOURCE', settings));
    expect(run.code).toBe(ExitCode.noPermission);
    const error = onlyErrorLine(run.stderr);
    expect(error.msg).toBe(
      `authentication failed for user ${USER} at 127.0.0.1:${server15.port}: check the Secret behind SOURCE_PGPASSWORD (the password stored in an old data volume wins over a changed Secret)`,
    );
    expect(run.stderr + run.stdout).not.toContain('wrong-password-123');
    expect(existsSync(join(workDir, 'wrong-password'))).toBe(false);
  });

  it('names TARGET_PGPASSWORD when the target rejects the password', async () => {
    const dir = join(workDir, 'for-target');
    await backupDatabase({ source: server15.settings('keycloak', USER, PASSWORD), dir });
    const run = await runRunner(['verify', '--dir', dir], endpointEnv('TARGET', server15.settings('keycloak', USER, 'not-it-either')));
    expect(run.code).toBe(ExitCode.noPermission);
    const error = logLines(run.stderr).at(-1)!;
    expect(error.msg).toContain(`authentication failed for user ${USER} at 127.0.0.1:${server15.port}: check the Secret behind TARGET_PGPASSWORD`);
    expect(run.stderr).not.toContain('not-it-either');
  });

  it('fails with 65 when the backup directory holds no manifest', async () => {
    const run = await runRunner(['verify', '--dir', join(workDir, 'none')], {});
    expect(run.code).toBe(ExitCode.dataError);
    expect(onlyErrorLine(run.stderr).msg).toContain('no backup manifest');
  });

  it('fails with 69 when the host is unreachable', async () => {
    const run = await runRunner(['backup', '--dir', join(workDir, 'unreachable')], {
      ...endpointEnv('SOURCE', { ...server15.settings('keycloak', USER, PASSWORD), port: 1 }),
    });
    expect(run.code).toBe(ExitCode.unavailable);
    expect(onlyErrorLine(run.stderr).msg).toBe('cannot reach PostgreSQL at 127.0.0.1:1 (ECONNREFUSED): check SOURCE_PGHOST/SOURCE_PGPORT and that the server is running');
  });

  it('fails with 69 when the host name does not resolve', async () => {
    const run = await runRunner(['backup', '--dir', join(workDir, 'unresolvable')], {
      ...endpointEnv('SOURCE', { ...server15.settings('keycloak', USER, PASSWORD), host: 'no-such-host.invalid' }),
    });
    expect(run.code).toBe(ExitCode.unavailable);
    expect(onlyErrorLine(run.stderr).msg).toContain('cannot reach PostgreSQL at no-such-host.invalid');
  });

  it('fails with 64 naming the variable when the database does not exist', async () => {
    const run = await runRunner(['backup', '--dir', join(workDir, 'no-db')], endpointEnv('SOURCE', server15.settings('nope', USER, PASSWORD)));
    expect(run.code).toBe(ExitCode.usage);
    expect(onlyErrorLine(run.stderr).msg).toBe(`database nope does not exist at 127.0.0.1:${server15.port}: check SOURCE_PGDATABASE or create the database`);
  });

  it('fails with 64 naming the variable when it is missing', async () => {
    const run = await runRunner(['restore', '--dir', join(workDir, 'x')], { TARGET_PGHOST: '127.0.0.1' });
    expect(run.code).toBe(ExitCode.usage);
    expect(onlyErrorLine(run.stderr).msg).toBe('TARGET_PGUSER is not set: set TARGET_PGUSER to the user the runner connects as');
  });
});

describe('refusals before anything changes', () => {
  it('refuses a PostgreSQL 17 source with pg_dump 15 (exit 65), naming both versions, creating nothing', async () => {
    const dir = join(workDir, 'too-new');
    const run = await runRunner(['backup', '--dir', dir], endpointEnv('SOURCE', server17.settings('keycloak', USER, PASSWORD)));
    expect(run.code).toBe(ExitCode.dataError);
    const error = onlyErrorLine(run.stderr);
    expect(error.msg).toMatch(/runs PostgreSQL 17\.\d+ but pg_dump is 15\.\d+: pg_dump cannot dump a newer server/);
    expect(error.msg).toContain('nothing was changed');
    expect(existsSync(dir)).toBe(false);
  });

  it('refuses (78) to restore with pg_restore 15 into a PostgreSQL 13 target, naming both versions, restoring nothing', async () => {
    // The image's pg_restore 17 against a 15 target is the same case one major up.
    const dir = join(workDir, 'for-an-older-target');
    expect((await runRunner(['backup', '--dir', dir], endpointEnv('SOURCE', server15.settings('keycloak', USER, PASSWORD)))).code).toBe(0);
    const server13 = await startPostgres({ major: 13 });
    try {
      await server13.createUser(USER, PASSWORD);
      await server13.createDatabase('keycloak', USER);
      const run = await runRunner(['restore', '--dir', dir], endpointEnv('TARGET', server13.settings('keycloak', USER, PASSWORD)));
      expect(run.code).toBe(ExitCode.config);
      const error = logLines(run.stderr).at(-1)!;
      expect(error.msg).toMatch(/runs PostgreSQL 13\.\d+ but pg_restore is 15\.\d+: pg_restore cannot restore into an older server/);
      expect(error.msg).toContain('nothing was changed');
      const tables = await server13.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_catalog.pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')", [], 'keycloak');
      expect(tables[0]!.n).toBe(0);
    } finally {
      await server13.stop();
    }
  });

  it('fails with 78 before dumping when the backup volume is too small, naming both sizes', async () => {
    const mountPoint = join(workDir, 'small-volume');
    mkdirSync(mountPoint);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mountPoint]);
    try {
      const run = await runRunner(['backup', '--dir', mountPoint], endpointEnv('SOURCE', server15.settings('keycloak', USER, PASSWORD)));
      expect(run.code).toBe(ExitCode.config);
      const error = logLines(run.stderr).at(-1)!;
      expect(error.msg).toMatch(/the backup volume at .*small-volume has 2\.\d MB free but the dump needs about \d+(\.\d)? MB: make the backup volume larger \(MIGRATION_BACKUP_PVC_SIZE, at least \d+(\.\d)? MB\)/);
      expect(error.msg).toContain('nothing was dumped');
      expect(readdirSync(mountPoint)).toEqual([]);
    } finally {
      spawnSync('umount', [mountPoint]);
    }
  });

  it('checks free space through an injectable probe and passes when it fits', async () => {
    const settings = server15.settings('keycloak', USER, PASSWORD);
    await expect(backupDatabase({ source: settings, dir: join(workDir, 'probe-small'), freeSpace: async () => 1000 })).rejects.toMatchObject({
      exitCode: ExitCode.config,
      message: expect.stringContaining('has 1.0 kB free'),
    });
    expect(existsSync(join(workDir, 'probe-small', '.dump.partial'))).toBe(false);
    const seen: string[] = [];
    const result = await backupDatabase({
      source: settings,
      dir: join(workDir, 'probe-large'),
      freeSpace: async (dir) => {
        seen.push(dir);
        return 1e12;
      },
    });
    expect(seen).toEqual([join(workDir, 'probe-large')]);
    expect(result.estimatedBytes).toBeGreaterThan(24_000_000);
  });
});

describe('secrets', () => {
  it('never puts the password into any process argument or log line while dumping', async () => {
    const runner = startRunner(['backup', '--dir', join(workDir, 'argv-check')], {
      ...endpointEnv('SOURCE', server15.settings('keycloak', USER, PASSWORD)),
      MIGRATION_LOG_LEVEL: 'debug',
    });
    let sawPgDump = false;
    let finished = false;
    void runner.done.then(() => (finished = true));
    while (!finished) {
      const processes = spawnSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).stdout;
      if (processes.includes('pg_dump --format=directory')) sawPgDump = true;
      expect(processes).not.toContain(PASSWORD);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const run = await runner.done;
    expect(run.code, run.stderr).toBe(0);
    expect(sawPgDump).toBe(true);
    expect(run.stderr).not.toContain(PASSWORD);
    expect(run.stderr).toContain('running pg_dump');
  });
});
