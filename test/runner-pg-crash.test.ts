/**
 * Crash tests: the runner CLI is killed with SIGKILL inside the dump and inside the restore (data
 * and post-data sections); its pg tools must not outlive it, and running it again converges on a
 * target with every row present.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeycloakData, readComparableContent, type ComparableDatabase, KEYCLOAK_HYGIENE_TABLES } from './support/keycloak-data.js';
import { startPostgres, type TestPostgres } from './support/postgres.js';
import { endpointEnv, runRunner, startRunner, type RunnerProcess } from './support/runner-cli.js';

let source: TestPostgres;
let target: TestPostgres;
let workDir: string;
let sourceContent: ComparableDatabase;
const SOURCE = { user: 'bn_keycloak', password: 'src-pass-1' };
const TARGET = { user: 'keycloak', password: 'dst-pass-2' };

/** Tables the restore's hygiene changes on purpose. */

beforeAll(async () => {
  [source, target] = await Promise.all([startPostgres({ major: 15 }), startPostgres({ major: 15 })]);
  await source.createUser(SOURCE.user, SOURCE.password);
  await source.createDatabase('keycloak', SOURCE.user);
  // Big enough that dump and restore take a noticeable moment on two cores.
  await createKeycloakData(source.settings('keycloak', SOURCE.user, SOURCE.password), { users: 2000, bulkBytes: 80_000_000 });
  await target.createUser(TARGET.user, TARGET.password);
  sourceContent = await readComparableContent(source.settings('keycloak'));
  workDir = mkdtempSync(join(tmpdir(), 'kc-runner-crash-'));
}, 180_000);

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

async function waitFor(condition: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Command lines of running processes that contain `needle`. */
function processesMatching(needle: string): string[] {
  return spawnSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter((line) => line.includes(needle) && !line.startsWith('ps '));
}

async function killAndCheckToolsStop(runner: RunnerProcess, tool: string, needle: string): Promise<void> {
  runner.child.kill('SIGKILL');
  const run = await runner.done;
  expect(run.signal).toBe('SIGKILL');
  // The watchdog notices the closed pipe and ends the tool's whole process group.
  await waitFor(() => processesMatching(needle).filter((line) => line.includes(tool)).length === 0, `${tool} to stop after the runner died`, 10_000);
}

function expectSameAsSource(restored: ComparableDatabase): void {
  const { tables: restoredTables, ...restoredRest } = restored;
  const { tables: sourceTables, ...sourceRest } = sourceContent;
  expect(restoredRest).toEqual(sourceRest);
  expect(Object.keys(restoredTables).sort()).toEqual(Object.keys(sourceTables).sort());
  for (const [name, rows] of Object.entries(sourceTables)) {
    if (KEYCLOAK_HYGIENE_TABLES.includes(name)) continue;
    expect(restoredTables[name]?.length, name).toBe(rows.length);
    expect(restoredTables[name], name).toEqual(rows);
  }
}

describe('SIGKILL during the dump', () => {
  it('leaves no pg_dump behind and no manifest; the next run produces a complete backup', async () => {
    const dir = join(workDir, 'killed-dump');
    const sourceEnv = endpointEnv('SOURCE', source.settings('keycloak', SOURCE.user, SOURCE.password));
    const runner = startRunner(['backup', '--dir', dir, '--jobs', '1'], sourceEnv);
    const partialFile = () => (existsSync(join(dir, '.dump.partial')) ? readdirSync(join(dir, '.dump.partial')).length : 0);
    try {
      await waitFor(() => partialFile() >= 3, 'pg_dump to write data files');
    } finally {
      await killAndCheckToolsStop(runner, 'pg_dump', dir);
    }
    expect(existsSync(join(dir, 'manifest.json'))).toBe(false);
    expect(existsSync(join(dir, 'dump'))).toBe(false);

    const again = await runRunner(['backup', '--dir', dir], sourceEnv);
    expect(again.code, again.stderr).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(['dump', 'manifest.json']);
  });
});

describe('SIGKILL during the restore', () => {
  let backupDir: string;
  beforeAll(async () => {
    backupDir = join(workDir, 'backup');
    const run = await runRunner(['backup', '--dir', backupDir], endpointEnv('SOURCE', source.settings('keycloak', SOURCE.user, SOURCE.password)));
    expect(run.code, run.stderr).toBe(0);
  }, 120_000);

  // pg_restore's verbose lines (logged at debug level) tell where it is; `absent` is an object the
  // killed run cannot have finished.
  const killPoints = [
    { section: 'data', line: /launching item \d+ TABLE DATA offline_client_session/, absent: 'offline_client_session_pkey' },
    { section: 'post-data', line: /launching item \d+ CONSTRAINT offline_client_session offline_client_session_pkey/, absent: 'offline_client_session_pkey' },
  ];

  it.each(killPoints)('converges with every row present after a kill in the $section section', async ({ section, line, absent }) => {
    const database = `crash_${section.replace('-', '_')}`;
    await target.createDatabase(database, TARGET.user);
    const env = { ...endpointEnv('TARGET', target.settings(database, TARGET.user, TARGET.password)), MIGRATION_LOG_LEVEL: 'debug' };
    const runner = startRunner(['restore', '--dir', backupDir, '--jobs', '2'], env);
    try {
      await waitFor(() => line.test(runner.stderr()), `pg_restore to reach the ${section} section`);
    } finally {
      await killAndCheckToolsStop(runner, 'pg_restore', backupDir);
    }
    // Really partial: the restore had not finished.
    const found = await target.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relname = $1`,
      [absent],
      database,
    );
    expect(found[0]!.n).toBe(0);

    const again = await runRunner(['restore', '--dir', backupDir], { ...env, MIGRATION_LOG_LEVEL: 'info' });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('cleaning it before restoring');
    expectSameAsSource(await readComparableContent(target.settings(database)));
  });
});
