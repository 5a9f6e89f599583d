/**
 * The acceptance path on real PostgreSQL 15 servers: `runner backup --dir D` from one server,
 * `runner restore --dir D` into a fresh database on another reproduces the database exactly —
 * checked by comparing the two servers with the test's own SQL, not by the runner's report.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeycloakData, objectsNotOwnedBy, readComparableContent, type ComparableDatabase } from './support/keycloak-data.js';
import { startPostgres, type TestPostgres } from './support/postgres.js';
import { endpointEnv, logLines, runRunner } from './support/runner-cli.js';
import { DIGESTS_TRUSTED_FOR_MS, restoreDatabase } from '../runner/src/pg/restore.js';
import { TARGET_READY_MESSAGE } from '../runner/src/commands/restore.js';
import { TableVerifierDuringRestore } from '../runner/src/pg/verify-during-restore.js';
import { isMarkedReady, readMarker, writeMarker } from '../runner/src/pg/marker.js';
import { applyKeycloakHygiene } from '../runner/src/pg/hygiene.js';
import { collectTargetStats, diffDatabaseStats, verifyTarget } from '../runner/src/pg/verify-target.js';
import { buildDeferredIndexes, findDeferrableIndexes, isDeferrableIndexSql, splitRenderedItems, unquoteIdentifier } from '../runner/src/pg/deferred-indexes.js';
import { parseTocLine, readToc } from '../runner/src/pg/toc.js';
import { findPgTools } from '../runner/src/pg/tools.js';
import { createLogger, silentLogger } from '../runner/src/log.js';
import { BYTEA_DIGEST_MIN_BYTES, largeObjectStats, ROW_CHECKSUM_ALGORITHM, ROW_CHECKSUM_ALGORITHM_V1, ROW_CHECKSUM_ALGORITHM_V2, ROW_CHECKSUM_ALGORITHM_V3 } from '../runner/src/pg/manifest.js';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import pg from 'pg';

let source: TestPostgres;
let target: TestPostgres;
let workDir: string;
let backupDir: string;
let sourceContent: ComparableDatabase;
let databaseCounter = 0;

const SOURCE_USER = 'bn_keycloak';
const SOURCE_PASSWORD = 'source-Secret-1';
const TARGET_USER = 'keycloak';
const TARGET_PASSWORD = 'target-Secret-2';

/** A fresh target database owned by the application user, as CloudNativePG's initdb creates it. */
async function freshTargetDatabase(): Promise<string> {
  databaseCounter += 1;
  const name = `kc_target_${databaseCounter}`;
  await target.createDatabase(name, TARGET_USER);
  return name;
}

function targetEnv(database: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ...endpointEnv('TARGET', target.settings(database, TARGET_USER, TARGET_PASSWORD)), ...extra };
}

beforeAll(async () => {
  [source, target] = await Promise.all([startPostgres({ major: 15 }), startPostgres({ major: 15 })]);
  await source.createUser(SOURCE_USER, SOURCE_PASSWORD);
  await source.createDatabase('bitnami_keycloak', SOURCE_USER);
  await createKeycloakData(source.settings('bitnami_keycloak', SOURCE_USER, SOURCE_PASSWORD));
  await target.createUser(TARGET_USER, TARGET_PASSWORD);
  sourceContent = await readComparableContent(source.settings('bitnami_keycloak'));
  workDir = mkdtempSync(join(tmpdir(), 'kc-runner-pg-'));
  backupDir = join(workDir, 'backup');
  const run = await runRunner(['backup', '--dir', backupDir], endpointEnv('SOURCE', source.settings('bitnami_keycloak', SOURCE_USER, SOURCE_PASSWORD)));
  expect(run.stderr).not.toContain('"level":"error"');
  expect(run.code).toBe(0);
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

/**
 * Compares `database` on the target with the source, by the test's own SQL: identical but for the
 * two tables the hygiene changes (jgroups_ping, databasechangeloglock), which the callers check.
 */
async function expectRestoredLikeTheSource(database: string): Promise<ComparableDatabase['tables']> {
  const restored = await readComparableContent(target.settings(database));
  const { tables: sourceTables, ...sourceRest } = sourceContent;
  const { tables: restoredTables, ...restoredRest } = restored;
  expect(restoredRest).toEqual(sourceRest);
  for (const [name, rows] of Object.entries(sourceTables)) {
    if (name === 'public.jgroups_ping' || name === 'public.databasechangeloglock') continue;
    expect(restoredTables[name], name).toEqual(rows);
  }
  expect(Object.keys(restoredTables).sort()).toEqual(Object.keys(sourceTables).sort());
  return restoredTables;
}

describe('runner backup', () => {
  it('writes a complete dump directory and a manifest describing the source', () => {
    expect(readdirSync(backupDir).sort()).toEqual(['dump', 'manifest.json']);
    const manifest = JSON.parse(readFileSync(join(backupDir, 'manifest.json'), 'utf8'));
    expect(manifest.source.serverMajor).toBe(15);
    expect(manifest.pgDump.major).toBe(15);
    expect(manifest.snapshot).toMatch(/^[0-9A-F]+-[0-9A-F]+-\d+$/);
    const tables = Object.fromEntries(manifest.stats.tables.map((table: { schema: string; name: string; rows: number }) => [`${table.schema}.${table.name}`, table.rows]));
    // Row counts from the source itself, not from the runner.
    for (const [name, rows] of Object.entries(sourceContent.tables)) expect(tables[name], name).toBe(rows.length);
    // Partitioned parent not counted (its rows are in the leaves).
    expect(tables['public.event_entity']).toBeUndefined();
    expect(manifest.stats.largeObjects.count).toBe(sourceContent.largeObjects.length);
    expect(manifest.stats.sequences.find((seq: { name: string }) => seq.name === 'advanced_seq')).toEqual({
      schema: 'public',
      name: 'advanced_seq',
      lastValue: '99990',
      isCalled: true,
    });
    expect(manifest.files.map((file: { path: string }) => file.path).sort()).toEqual(readdirSync(join(backupDir, 'dump')).sort());
    expect(JSON.stringify(manifest)).not.toContain(SOURCE_PASSWORD);
  });

  it('ends with a summary table and logs progress as JSON lines', async () => {
    const again = await runRunner(['backup', '--dir', join(workDir, 'second')], endpointEnv('SOURCE', source.settings('bitnami_keycloak', SOURCE_USER, SOURCE_PASSWORD)));
    expect(again.code).toBe(0);
    const lines = logLines(again.stderr);
    const progress = lines.filter((line) => line.event === 'progress');
    expect(progress.at(-1)).toMatchObject({ step: 'dump', percent: 100, done: true });
    const summary = lines.find((line) => line.event === 'summary') as { rows: Array<{ step: string }> } | undefined;
    expect(summary?.rows.map((row) => row.step)).toEqual(['dump', 'statistics', 'digests', 'verify backup']);
    expect(again.stderr).not.toContain(SOURCE_PASSWORD);
  });
});

describe('runner restore', () => {
  it('reproduces the source database exactly in a fresh target, every object owned by the new user', async () => {
    const database = await freshTargetDatabase();
    const run = await runRunner(['restore', '--dir', backupDir], targetEnv(database));
    expect(run.code, run.stderr).toBe(0);
    const restoredTables = await expectRestoredLikeTheSource(database);
    expect(restoredTables['public.jgroups_ping']).toEqual([]);
    const locks = await target.query('SELECT id, locked, lockgranted, lockedby FROM public.databasechangeloglock ORDER BY id', [], database);
    expect(locks).toEqual([
      { id: 1, locked: false, lockgranted: null, lockedby: null },
      { id: 1000, locked: false, lockgranted: null, lockedby: null },
      { id: 1001, locked: false, lockgranted: null, lockedby: null },
    ]);
    expect(await objectsNotOwnedBy(target.settings(database), TARGET_USER)).toEqual([]);

    // The restored objects work: the trigger fires, sequences continue where the source stopped.
    await target.query(`UPDATE public.realm SET enabled = false WHERE name = 'master'`, [], database);
    expect(await target.query(`SELECT updated_at::text AS at FROM public.realm WHERE name = 'master'`, [], database)).toEqual([{ at: '2030-01-01 00:00:00+00' }]);
    expect(await target.query(`SELECT nextval('public.advanced_seq')::int AS v, nextval('public.never_called_seq')::int AS n`, [], database)).toEqual([{ v: 99995, n: 42 }]);
    const summary = logLines(run.stderr).find((line) => line.event === 'summary') as { rows: Array<{ step: string; note?: string }> };
    expect(summary.rows.map((row) => row.step)).toEqual(['restore', 'verify target', 'hygiene', 'indexes', 'analyze']);
    // "target ready" (Keycloak may start) comes once the target is verified, before the plain
    // indexes and the ANALYZE, and the ANALYZE left nothing out: a table never analyzed has
    // reltuples -1 (PostgreSQL 14+).
    const lines = logLines(run.stderr);
    const messages = lines.map((line) => line.msg);
    expect(messages).toContain(TARGET_READY_MESSAGE);
    expect(messages.indexOf(TARGET_READY_MESSAGE)).toBeGreaterThan(messages.indexOf('target verified'));
    expect(lines.find((line) => line.msg === TARGET_READY_MESSAGE)?.indexesStillToBuild).toBe(PLAIN_INDEXES.length);
    expect(messages.indexOf('indexes built')).toBeGreaterThan(messages.indexOf(TARGET_READY_MESSAGE));
    expect(summary.rows.find((row) => row.step === 'indexes')?.note).toBe(`${PLAIN_INDEXES.length} plain index(es), after the target was ready`);
    expect(summary.rows.find((row) => row.step === 'analyze')?.note).toBe('after the target was verified and ready');
    const unanalyzed = await target.query<{ name: string }>(
      `SELECT n.nspname || '.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relkind = 'r' AND c.reltuples < 0`,
      [],
      database,
    );
    expect(unanalyzed).toEqual([]);
  });

  it('copy: backup then restore in one process reproduces the source; only its restore takes the digests from the backup it just took', async () => {
    const database = await freshTargetDatabase();
    const copyDir = join(workDir, 'copy');
    const run = await runRunner(['copy', '--dir', copyDir], {
      ...endpointEnv('SOURCE', source.settings('bitnami_keycloak', SOURCE_USER, SOURCE_PASSWORD)),
      ...targetEnv(database),
    });
    expect(run.code, run.stderr).toBe(0);
    await expectRestoredLikeTheSource(database);
    const lines = logLines(run.stderr);
    const summary = lines.find((line) => line.event === 'summary') as { rows: Array<{ step: string }> };
    expect(summary.rows.map((row) => row.step)).toEqual(['dump', 'statistics', 'digests', 'verify backup', 'restore', 'verify target', 'hygiene', 'indexes', 'analyze']);
    expect(lines.find((line) => line.msg === 'restoring')?.digests).toBe('taken by this process from these files');
    expect(lines.map((line) => line.msg)).toContain(TARGET_READY_MESSAGE);

    // The same backup restored by another process is digested again while pg_restore reads it.
    const again = await freshTargetDatabase();
    const restore = await runRunner(['restore', '--dir', copyDir], targetEnv(again));
    expect(restore.code, restore.stderr).toBe(0);
    expect(logLines(restore.stderr).find((line) => line.msg === 'restoring')?.digests).toBe('recomputed during the restore');
  });

  it('restores into a database whose user is a superuser, mapping ownership to TARGET_OWNER', async () => {
    const database = await freshTargetDatabase();
    const run = await runRunner(['restore', '--dir', backupDir, '--skip-hygiene'], {
      ...endpointEnv('TARGET', target.settings(database)),
      TARGET_OWNER: TARGET_USER,
    });
    expect(run.code, run.stderr).toBe(0);
    expect(await objectsNotOwnedBy(target.settings(database), TARGET_USER)).toEqual([]);
    expect(await readComparableContent(target.settings(database))).toEqual(sourceContent);
  });

  it("runs pg_restore's sessions without parallel workers per index build, with asynchronous commit (synchronous for the indexes after the ready marker) and 256 MB for index builds", async () => {
    // What pg_restore's own sessions see, asked by a wrapper with pg_restore's environment just
    // before it runs: --jobs already builds indexes of several tables at once, and a parallel
    // build on top costs a quarter more server CPU here (sorted runs through temporary files).
    const database = await freshTargetDatabase();
    const wrapperDir = mkdtempSync(join(tmpdir(), 'kc-pg-restore-wrapper-'));
    const seen = join(wrapperDir, 'settings.txt');
    const wrapper = join(wrapperDir, 'pg_restore');
    writeFileSync(
      wrapper,
      [
        '#!/bin/sh',
        'for arg in "$@"; do case "$arg" in --dbname=*) db="${arg#--dbname=}";; esac; done',
        `if [ -n "$db" ]; then /usr/lib/postgresql/15/bin/psql -X -A -t -d "$db" -c 'SHOW max_parallel_maintenance_workers' -c 'SHOW synchronous_commit' -c 'SHOW maintenance_work_mem' > '${seen}' || exit 1; fi`,
        'exec /usr/lib/postgresql/15/bin/pg_restore "$@"',
      ].join('\n'),
      { mode: 0o755 },
    );
    try {
      const tools = { binDir: undefined, pgDump: '/usr/lib/postgresql/15/bin/pg_dump', pgRestore: wrapper, psql: '/usr/lib/postgresql/15/bin/psql' };
      const result = await restoreDatabase({ dir: backupDir, target: target.settings(database, TARGET_USER, TARGET_PASSWORD), tools });
      expect(result.action).toBe('restored');
      expect(readFileSync(seen, 'utf8').trim().split('\n')).toEqual(['0', 'off', '256MB']);
      expect(await readComparableContent(target.settings(database))).toEqual(sourceContent);

      // The plain indexes built after the ready marker commit synchronously: nothing the runner
      // commits after them would flush their WAL.
      const deferred = await freshTargetDatabase();
      const settings = target.settings(deferred, TARGET_USER, TARGET_PASSWORD);
      await restoreDatabase({ dir: backupDir, target: settings, owner: TARGET_USER, tools, deferPlainIndexes: true });
      rmSync(seen);
      expect((await buildDeferredIndexes({ dir: backupDir, target: settings, owner: TARGET_USER, jobs: 2, tools })).built).toEqual(PLAIN_INDEXES);
      expect(readFileSync(seen, 'utf8').trim().split('\n')).toEqual(['0', 'on', '256MB']);
    } finally {
      rmSync(wrapperDir, { recursive: true, force: true });
    }
  });

  it('is a no-op when the target already holds the backup', async () => {
    const database = await freshTargetDatabase();
    expect((await runRunner(['restore', '--dir', backupDir], targetEnv(database))).code).toBe(0);
    const before = await target.query(`SELECT relname, relfilenode FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1`, [], database);
    const again = await runRunner(['restore', '--dir', backupDir], targetEnv(database));
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('already holds exactly this backup');
    const after = await target.query(`SELECT relname, relfilenode FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1`, [], database);
    // Same files: nothing was dropped or rewritten.
    expect(after).toEqual(before);
  });

  it('cleans a partial restore (schema and part of the data) and redoes it exactly', async () => {
    const database = await freshTargetDatabase();
    // What a run killed during the data section leaves: all definitions, some tables filled.
    const env = { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(target.port), PGUSER: TARGET_USER, PGPASSWORD: TARGET_PASSWORD, PGDATABASE: database };
    const partial = spawnSync(
      '/usr/lib/postgresql/15/bin/pg_restore',
      ['--no-owner', '--no-privileges', '--section=pre-data', '-d', database, join(backupDir, 'dump')],
      { env, encoding: 'utf8' },
    );
    expect(partial.status, partial.stderr).toBe(0);
    const data = spawnSync(
      '/usr/lib/postgresql/15/bin/pg_restore',
      ['--no-owner', '--no-privileges', '--data-only', '--table=user_entity', '--table=realm', '-d', database, join(backupDir, 'dump')],
      { env, encoding: 'utf8' },
    );
    expect(data.status, data.stderr).toBe(0);
    expect(await target.query(`SELECT count(*)::int AS n FROM public.user_entity`, [], database)).toEqual([{ n: 300 }]);

    const run = await runRunner(['restore', '--dir', backupDir, '--skip-hygiene'], targetEnv(database));
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('cleaning it before restoring');
    expect(await readComparableContent(target.settings(database))).toEqual(sourceContent);
    expect(await objectsNotOwnedBy(target.settings(database), TARGET_USER)).toEqual([]);
  });

  it('completes a restore killed between CREATE SCHEMA and its COMMENT (the schema is there, empty, its comment not yet)', async () => {
    const database = await freshTargetDatabase();
    // What pg_restore leaves when killed right after its first statement: no relation yet, so
    // nothing counts as a partial restore to clean, but the dump's schema exists without its comment.
    await target.query(`CREATE SCHEMA audit AUTHORIZATION ${TARGET_USER}`, [], database);
    const run = await runRunner(['restore', '--dir', backupDir, '--skip-hygiene'], targetEnv(database));
    expect(run.code, run.stderr).toBe(0);
    const content = await readComparableContent(target.settings(database));
    expect(content.comments).toContain('schema audit = admin events');
    expect(content).toEqual(sourceContent);
  });

  it('cleans a target whose only object is a stand-alone composite type of the owner, then restores exactly', async () => {
    const database = await freshTargetDatabase();
    // As a restore killed between its types and its first table leaves one (pg_restore creates
    // types before tables): the count of a partial restore's objects must include it.
    await target.query(`CREATE TYPE public.leftover_pair AS (a integer, b text)`, [], database);
    await target.query(`ALTER TYPE public.leftover_pair OWNER TO ${TARGET_USER}`, [], database);
    const run = await runRunner(['restore', '--dir', backupDir, '--skip-hygiene'], targetEnv(database));
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('cleaning it before restoring');
    expect(await readComparableContent(target.settings(database))).toEqual(sourceContent);
  });

  it('sets the backup\'s comment on a schema that exists with another comment', async () => {
    const database = await freshTargetDatabase();
    await target.query(`CREATE SCHEMA audit AUTHORIZATION ${TARGET_USER}`, [], database);
    await target.query(`COMMENT ON SCHEMA audit IS 'something else'`, [], database);
    const run = await runRunner(['restore', '--dir', backupDir, '--skip-hygiene'], targetEnv(database));
    expect(run.code, run.stderr).toBe(0);
    expect((await readComparableContent(target.settings(database))).comments).toContain('schema audit = admin events');
  });

  it('fails when objects of another owner are in the way, dropping nothing', async () => {
    const database = await freshTargetDatabase();
    await target.query(`CREATE TABLE public.credential (id text)`, [], database);
    const run = await runRunner(['restore', '--dir', backupDir], targetEnv(database));
    expect(run.code).toBe(65);
    expect(run.stderr).toContain('public.credential (postgres)');
    expect(await target.query(`SELECT count(*)::int AS n FROM pg_class WHERE relname = 'credential'`, [], database)).toEqual([{ n: 1 }]);
  });

  it('refuses to clean a target whose ready marker says ready when it differs from the backup', async () => {
    const database = await freshTargetDatabase();
    expect((await runRunner(['restore', '--dir', backupDir], targetEnv(database))).code).toBe(0);
    await writeMarker(target.settings(database, TARGET_USER, TARGET_PASSWORD), { status: 'ready', migrationId: 'm-1' });
    await target.query(`INSERT INTO public.realm (id, name, created_at) VALUES ('new-realm', 'created-after-migration', now())`, [], database);
    await expect(
      restoreDatabase({ dir: backupDir, target: target.settings(database, TARGET_USER, TARGET_PASSWORD) }),
    ).rejects.toMatchObject({ exitCode: 65, message: expect.stringContaining('is marked ready') });
    expect(await target.query(`SELECT name FROM public.realm WHERE id = 'new-realm'`, [], database)).toEqual([{ name: 'created-after-migration' }]);
  });
});

/**
 * The test data's plain indexes (test/support/keycloak-data.ts) built after the restore; its unique
 * ones stay in it, and so do the partitioned table's (idx_event_time `ON ONLY` and its partitions'
 * indexes, which INDEX ATTACH items tie to it).
 */
const PLAIN_INDEXES = ['public.idx_credential_user', 'public.idx_user_email'];

describe('plain indexes after the target is ready', () => {
  const indexesOf = async (database: string, on: TestPostgres = target) =>
    (
      await on.query<{ id: string; def: string }>(
        `SELECT n.nspname || '.' || c.relname AS id, pg_get_indexdef(c.oid) AS def FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind = 'i' AND n.nspname NOT IN ('pg_catalog', 'pg_toast', 'information_schema') ORDER BY 1`,
        [],
        database,
      )
    ).map((row) => `${row.id} ${row.def}`);

  it('leaves them out of the restore, keys and unique indexes in; the verification allows only them missing; the build makes the target equal the source', async () => {
    const database = await freshTargetDatabase();
    const settings = target.settings(database, TARGET_USER, TARGET_PASSWORD);
    const restore = await restoreDatabase({ dir: backupDir, target: settings, owner: TARGET_USER, jobs: 2, deferPlainIndexes: true });
    expect([...restore.indexesBuiltLater].sort()).toEqual(PLAIN_INDEXES);
    const sourceIndexes = await indexesOf('bitnami_keycloak', source);
    const kept = sourceIndexes.filter((index) => !PLAIN_INDEXES.includes(index.split(' ')[0]!));
    expect(kept.length).toBeGreaterThan(PLAIN_INDEXES.length);
    // Everything but the plain indexes is there: primary keys, unique constraints and unique indexes.
    expect(await indexesOf(database)).toEqual(kept);
    expect(kept.some((index) => index.includes('CREATE UNIQUE INDEX realm_user_counts_name'))).toBe(true);

    await expect(verifyTarget(settings, restore.manifest, { owner: TARGET_USER, indexesBuiltLater: restore.indexesBuiltLater })).resolves.toMatchObject({ tables: restore.manifest.stats.tables.length });
    // Without the hand-over the same target fails, naming the indexes.
    await expect(verifyTarget(settings, restore.manifest, { owner: TARGET_USER })).rejects.toThrow(/public\.idx_credential_user/);
    // Allowed missing means only missing: every other difference still counts.
    await target.query('DROP INDEX public.realm_user_counts_name', [], database);
    await expect(verifyTarget(settings, restore.manifest, { owner: TARGET_USER, indexesBuiltLater: restore.indexesBuiltLater })).rejects.toThrow(/realm_user_counts_name/);
    await target.query('CREATE UNIQUE INDEX realm_user_counts_name ON public.realm_user_counts (name)', [], database);

    const built = await buildDeferredIndexes({ dir: backupDir, target: settings, owner: TARGET_USER, jobs: 2 });
    expect([...built.built].sort()).toEqual(PLAIN_INDEXES);
    expect(await indexesOf(database)).toEqual(sourceIndexes);
    await expect(verifyTarget(settings, restore.manifest, { owner: TARGET_USER })).resolves.toMatchObject({ tables: restore.manifest.stats.tables.length });
    // Idempotent: nothing left, nothing built; one dropped (a run killed in the build) is built again.
    expect((await buildDeferredIndexes({ dir: backupDir, target: settings, owner: TARGET_USER, jobs: 2 })).built).toEqual([]);
    await target.query('DROP INDEX public.idx_user_email', [], database);
    expect((await buildDeferredIndexes({ dir: backupDir, target: settings, owner: TARGET_USER, jobs: 1 })).built).toEqual(['public.idx_user_email']);
    expect(await indexesOf(database)).toEqual(sourceIndexes);
  });

  it('a re-run of a restore that left them out finds the target restored (not partial), and a restore that ANALYZEs keeps them in', async () => {
    const database = await freshTargetDatabase();
    const settings = target.settings(database, TARGET_USER, TARGET_PASSWORD);
    await restoreDatabase({ dir: backupDir, target: settings, owner: TARGET_USER, jobs: 2, deferPlainIndexes: true });
    const again = await restoreDatabase({ dir: backupDir, target: settings, owner: TARGET_USER, jobs: 2, deferPlainIndexes: true });
    expect(again.action).toBe('already-restored');
    expect([...again.indexesBuiltLater].sort()).toEqual(PLAIN_INDEXES);

    const analyzed = await freshTargetDatabase();
    const withAnalyze = await restoreDatabase({ dir: backupDir, target: target.settings(analyzed, TARGET_USER, TARGET_PASSWORD), owner: TARGET_USER, jobs: 2, deferPlainIndexes: true, analyze: true });
    expect(withAnalyze.indexesBuiltLater.size).toBe(0);
    expect(await indexesOf(analyzed)).toEqual(await indexesOf('bitnami_keycloak', source));
  });

  it('builds every index in the restore with --indexes-in-restore or MIGRATION_INDEXES_AFTER_READY=false, and names a bad value', async () => {
    for (const [args, extra] of [
      [['--indexes-in-restore'], {}],
      [[], { MIGRATION_INDEXES_AFTER_READY: 'false' }],
    ] as Array<[string[], Record<string, string>]>) {
      const database = await freshTargetDatabase();
      const run = await runRunner(['restore', '--dir', backupDir, ...args], targetEnv(database, extra));
      expect(run.code, run.stderr).toBe(0);
      const lines = logLines(run.stderr);
      expect(lines.find((line) => line.msg === 'restoring')?.indexesAfterReady).toBeUndefined();
      expect(lines.find((line) => line.msg === TARGET_READY_MESSAGE)?.indexesStillToBuild).toBeUndefined();
      const summary = lines.find((line) => line.event === 'summary') as { rows: Array<{ step: string }> };
      expect(summary.rows.map((row) => row.step)).toEqual(['restore', 'verify target', 'hygiene', 'analyze']);
      await expectRestoredLikeTheSource(database);
    }
    const bad = await runRunner(['restore', '--dir', backupDir], targetEnv(await freshTargetDatabase(), { MIGRATION_INDEXES_AFTER_READY: 'maybe' }));
    expect(bad.code).toBe(64);
    expect(logLines(bad.stderr).find((line) => line.level === 'error')?.msg).toBe('MIGRATION_INDEXES_AFTER_READY must be true or false, got "maybe": fix MIGRATION_INDEXES_AFTER_READY');
  });

  it('defers only what nothing else refers to: not an index with a comment or one attached to a partitioned index', async () => {
    const dumpDir = join(backupDir, 'dump');
    const { entries: toc } = await readToc(await findPgTools(), dumpDir);
    const tools = await findPgTools();
    expect((await findDeferrableIndexes(tools, dumpDir, toc)).map((index) => index.id).sort()).toEqual(PLAIN_INDEXES);
    const fake = (desc: string, namespace: string, tag: string) => parseTocLine(`99999; 0 0 ${desc} ${namespace} ${tag} postgres`)!;
    const commented = [...toc, fake('COMMENT', 'public', 'INDEX idx_user_email')];
    expect((await findDeferrableIndexes(tools, dumpDir, commented)).map((index) => index.id)).toEqual(['public.idx_credential_user']);
    // A comment's tag quotes the name where SQL needs it (pg_dump's fmtId), the INDEX item's does not.
    const quoted = [...toc, fake('COMMENT', 'public', 'INDEX "idx_user_email"')];
    expect((await findDeferrableIndexes(tools, dumpDir, quoted)).map((index) => index.id)).toEqual(['public.idx_credential_user']);
    expect(unquoteIdentifier('"Idx ""a"""')).toBe('Idx "a"');
    expect(unquoteIdentifier('idx_a')).toBe('idx_a');

    const attached = [...toc, fake('INDEX ATTACH', 'public', 'idx_credential_user')];
    expect((await findDeferrableIndexes(tools, dumpDir, attached)).map((index) => index.id)).toEqual(['public.idx_user_email']);
    // The real ones: the partitions' indexes of event_entity are in the dump, attached, and stay.
    expect(toc.filter((entry) => entry.desc === 'INDEX ATTACH').length).toBeGreaterThan(0);
  });

  it("classifies an INDEX item's SQL: one plain CREATE INDEX with pg_dump's companions only", () => {
    expect(isDeferrableIndexSql('\nCREATE INDEX idx_a ON public.t USING btree (a);\n\n')).toBe(true);
    expect(isDeferrableIndexSql('CREATE INDEX idx_a ON public.t USING btree (a);\nALTER TABLE public.t CLUSTER ON idx_a;\nALTER INDEX public.idx_a ALTER COLUMN 1 SET STATISTICS 500;')).toBe(true);
    expect(isDeferrableIndexSql('CREATE INDEX "Idx A" ON public."T" USING btree (name COLLATE "C" text_pattern_ops DESC NULLS LAST, b) INCLUDE (c) WITH (fillfactor=\'70\');')).toBe(true);
    // An expression or a predicate may fail on a row written before the build: they stay in the restore.
    expect(isDeferrableIndexSql('CREATE INDEX idx_a ON public.t USING btree (lower((a)::text));')).toBe(false);
    expect(isDeferrableIndexSql("CREATE INDEX idx_a ON public.t USING btree (a) WHERE (b = 'x'::text);")).toBe(false);
    expect(isDeferrableIndexSql('CREATE INDEX "idx(a)" ON public.t USING btree (a);')).toBe(true);
    // What it cannot tell from an expression stays in the restore too.
    expect(isDeferrableIndexSql('CREATE INDEX idx_a ON public.t USING btree ("col(1)");')).toBe(false);
    expect(isDeferrableIndexSql("SET default_tablespace = fast;\nCREATE INDEX idx_a ON public.t USING btree (a);")).toBe(true);
    expect(isDeferrableIndexSql('CREATE UNIQUE INDEX idx_a ON public.t USING btree (a);')).toBe(false);
    expect(isDeferrableIndexSql('CREATE INDEX idx_p ON ONLY public.p USING btree (a);')).toBe(false);
    expect(isDeferrableIndexSql('CREATE INDEX idx_a ON public.t USING btree (a);\nALTER TABLE ONLY public.t REPLICA IDENTITY USING INDEX idx_a;')).toBe(false);
    expect(isDeferrableIndexSql("CREATE INDEX idx_a ON public.t USING btree (a) WHERE (b = 'x\ny'::text);")).toBe(false);
    expect(isDeferrableIndexSql('')).toBe(false);
    const script = ['--', '-- Name: idx_a; Type: INDEX; Schema: public; Owner: kc', '--', '', 'CREATE INDEX idx_a ON public.t USING btree (a);', '', '', '--', '-- Name: t_pkey; Type: CONSTRAINT; Schema: public; Owner: kc', '--', '', 'ALTER TABLE ONLY public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id);', '', '--', '-- PostgreSQL database dump complete', '--', ''].join('\n');
    const items = splitRenderedItems(script);
    expect([...items.keys()]).toEqual(['INDEX|public|idx_a', 'CONSTRAINT|public|t_pkey']);
    expect(isDeferrableIndexSql(items.get('INDEX|public|idx_a')!)).toBe(true);
  });
});

describe('runner verify', () => {
  it('passes for an intact backup and a restored target', async () => {
    const database = await freshTargetDatabase();
    expect((await runRunner(['restore', '--dir', backupDir], targetEnv(database))).code).toBe(0);
    const run = await runRunner(['verify', '--dir', backupDir], targetEnv(database, { TARGET_OWNER: TARGET_USER }));
    expect(run.code, run.stderr).toBe(0);
    const summary = logLines(run.stderr).find((line) => line.event === 'summary') as { rows: Array<{ step: string }> };
    expect(summary.rows.map((row) => row.step)).toEqual(['verify backup', 'verify target']);
  });

  it('fails with exit 65 naming the table when a target row was modified', async () => {
    const database = await freshTargetDatabase();
    expect((await runRunner(['restore', '--dir', backupDir], targetEnv(database))).code).toBe(0);
    await target.query(`UPDATE public.credential SET priority = 99 WHERE priority = 1`, [], database);
    const run = await runRunner(['verify', '--dir', backupDir], targetEnv(database));
    expect(run.code).toBe(65);
    const error = logLines(run.stderr).filter((line) => line.level === 'error').at(-1)!;
    expect(error.msg).toContain('public.credential');
    expect(error.msg).not.toContain('public.user_entity');
  });

  it('fails with exit 65 when a large object\'s contents differ', async () => {
    const database = await freshTargetDatabase();
    expect((await runRunner(['restore', '--dir', backupDir], targetEnv(database))).code).toBe(0);
    await target.query(`SELECT lo_put(oid, 0, '\\x58') FROM pg_largeobject_metadata ORDER BY oid LIMIT 1`, [], database);
    const run = await runRunner(['verify', '--dir', backupDir], targetEnv(database));
    expect(run.code).toBe(65);
    const error = logLines(run.stderr).filter((line) => line.level === 'error').at(-1)!;
    expect(error.msg).toContain('largeObjects large objects: expected checksum');
  });

  it('takes the large objects\' checksum during a restore equal to the backup\'s and to the one after it', async () => {
    const database = await freshTargetDatabase();
    const settings = target.settings(database, TARGET_USER, TARGET_PASSWORD);
    const restored = await restoreDatabase({ dir: backupDir, target: settings });
    const verifier = new TableVerifierDuringRestore({ target: settings, analyze: false, checksumAlgorithm: restored.manifest.checksumAlgorithm });
    verifier.largeObjectsLoaded();
    for (let waited = 0; !verifier.largeObjects && waited < 10_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    await verifier.finish();
    expect(verifier.error).toBeUndefined();
    expect(verifier.largeObjects).toEqual(restored.manifest.stats.largeObjects);
    expect((await collectTargetStats(settings)).largeObjects).toEqual(restored.manifest.stats.largeObjects);
    // Read in shares (by OID) on several sessions, the same checksum as on one.
    const sessions = await Promise.all([1, 2, 3].map(async () => {
      const session = new pg.Client(settings);
      await session.connect();
      await session.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      return session;
    }));
    try {
      expect(restored.manifest.stats.largeObjects.count).toBeGreaterThanOrEqual(2);
      expect(await largeObjectStats(sessions)).toEqual(restored.manifest.stats.largeObjects);
      expect(await largeObjectStats(sessions[0]!)).toEqual(restored.manifest.stats.largeObjects);
    } finally {
      await Promise.all(sessions.map((session) => session.end()));
    }
  });

  it('hands the checksum still running when pg_restore ends over to the verification, which awaits it instead of scanning again', async () => {
    const database = await freshTargetDatabase();
    const settings = target.settings(database, TARGET_USER, TARGET_PASSWORD);
    const restored = await restoreDatabase({ dir: backupDir, target: settings });
    const expected = restored.manifest.stats;
    const credential = expected.tables.find((table) => table.name === 'credential')!;
    expect(credential.rows).toBeGreaterThan(0);
    // A result the scan could never give: seen in the statistics only if the hand-over was used.
    const handedOver = { ...credential, checksum: 'handed-over' };
    const later = new Promise<typeof credential>((resolve) => setTimeout(() => resolve(handedOver), 300));
    const stats = await collectTargetStats(settings, {
      checksumsInProgress: {
        tables: new Map([['public.credential', later]]),
        largeObjects: Promise.resolve({ count: expected.largeObjects.count, checksum: 'handed-over-too' }),
      },
    });
    expect(stats.tables.find((table) => table.name === 'credential')!.checksum).toBe('handed-over');
    // The large objects are counted again on the target; only their contents' checksum is taken over.
    expect(stats.largeObjects).toEqual({ count: expected.largeObjects.count, checksum: 'handed-over-too' });
    // Materialized views are refreshed by the restore, not copied (verify-target.ts): tables only.
    // (Sizes on disk differ between the servers.)
    const dataTables = (tables: typeof expected.tables) =>
      tables.filter((table) => table.kind !== 'materialized view').map(({ schema, name, rows, checksum }) => ({ schema, name, rows, checksum }));
    expect(dataTables(stats.tables).filter((table) => table.name !== 'credential')).toEqual(dataTables(expected.tables).filter((table) => table.name !== 'credential'));
    // A checksum that failed on the other session (undefined) is taken here instead.
    const failed = await collectTargetStats(settings, {
      checksumsInProgress: { tables: new Map([['public.credential', Promise.resolve(undefined)]]), largeObjects: Promise.resolve(undefined) },
    });
    expect(dataTables(failed.tables)).toEqual(dataTables(expected.tables));
    expect(failed.largeObjects).toEqual(expected.largeObjects);
  });

  it('hands over the checksum it is taking when stopped, and closes its session once that is done', async () => {
    const database = await freshTargetDatabase();
    const settings = target.settings(database, TARGET_USER, TARGET_PASSWORD);
    // Large enough that its checksum is still running when the test sees it start.
    await target.query(
      `CREATE TABLE public.long_scan AS SELECT i AS id, md5(i::text) AS label FROM generate_series(1, 1500000) AS i; ALTER TABLE public.long_scan OWNER TO ${TARGET_USER}`,
      [],
      database,
    );
    const verifier = new TableVerifierDuringRestore({ target: settings, analyze: false, checksumAlgorithm: ROW_CHECKSUM_ALGORITHM });
    const verifierSessions = () =>
      target.query<{ query: string; state: string }>(`SELECT query, state FROM pg_stat_activity WHERE datname = $1 AND application_name = 'kc-pg-migration:verify-restored'`, [database]);
    verifier.tableLoaded('public', 'long_scan');
    let running = false;
    for (let waited = 0; !running && waited < 20_000; waited += 5) {
      running = (await verifierSessions()).some((session) => session.state === 'active' && session.query.includes('long_scan'));
      if (!running) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(running).toBe(true);
    const inProgress = verifier.handOver();
    expect([...inProgress.tables.keys()]).toEqual(['public.long_scan']);
    expect(inProgress.largeObjects).toBeUndefined();
    const handedOver = await inProgress.tables.get('public.long_scan');
    const scanned = (await collectTargetStats(settings)).tables.find((table) => table.name === 'long_scan');
    // (The verifier lists tables without their sizes: they would lock tables pg_restore is loading.)
    expect({ rows: handedOver!.rows, checksum: handedOver!.checksum }).toEqual({ rows: scanned!.rows, checksum: scanned!.checksum });
    expect(handedOver!.rows).toBe(1_500_000);
    await verifier.finish();
    expect(verifier.error).toBeUndefined();
    expect(await verifierSessions()).toEqual([]);
    // Stopped: a table loaded afterwards is left to the verification after the restore.
    verifier.tableLoaded('public', 'long_scan');
    expect(verifier.handOver().tables.size).toBe(0);
  });

  it('keeps no large objects\' checksum it could not read during the restore (no checksum is not a result)', async () => {
    const database = await freshTargetDatabase();
    const settings = target.settings(database, TARGET_USER, TARGET_PASSWORD);
    const restored = await restoreDatabase({ dir: backupDir, target: settings });
    expect(restored.manifest.stats.largeObjects.count).toBeGreaterThan(0);
    // A role the login may become but that may not read the large objects TARGET_USER owns.
    await target.query(`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lo_outsider') THEN CREATE ROLE lo_outsider; END IF; END $$`);
    await target.query(`GRANT lo_outsider TO ${TARGET_USER}`);
    const messages: string[] = [];
    const log = { ...silentLogger, debug: (message: string) => void messages.push(message) };
    const verifier = new TableVerifierDuringRestore({ target: settings, owner: 'lo_outsider', analyze: false, log, checksumAlgorithm: restored.manifest.checksumAlgorithm, largeObjectSessions: 2 });
    verifier.largeObjectsLoaded();
    for (let waited = 0; !messages.some((message) => message.startsWith('large objects not checksummed')) && waited < 10_000; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await verifier.finish();
    expect(messages).toContain('large objects not checksummed during the restore: left to the verification after it');
    expect(verifier.largeObjects).toBeUndefined();
    expect(verifier.error).toBeUndefined();
    // As the owner, the same verifier settings read them, on two sessions, to the backup's checksum.
    const reader = new TableVerifierDuringRestore({ target: settings, analyze: false, checksumAlgorithm: restored.manifest.checksumAlgorithm, largeObjectSessions: 2 });
    reader.largeObjectsLoaded();
    for (let waited = 0; !reader.largeObjects && waited < 10_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    await reader.finish();
    expect(reader.largeObjects).toEqual(restored.manifest.stats.largeObjects);
  });

  it('takes no large objects\' checksum only where the user may not read them (42501), warns where it then compares only their count, and throws any other error', async () => {
    const database = await freshTargetDatabase();
    const settings = target.settings(database, TARGET_USER, TARGET_PASSWORD);
    const restored = await restoreDatabase({ dir: backupDir, target: settings });
    const { count } = restored.manifest.stats.largeObjects;
    expect(count).toBeGreaterThan(0);
    await target.query(`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lo_outsider') THEN CREATE ROLE lo_outsider; END IF; END $$`);
    await target.query(`GRANT lo_outsider TO ${TARGET_USER}`);
    const client = new pg.Client(settings);
    await client.connect();
    let unreadable: Awaited<ReturnType<typeof largeObjectStats>>;
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL ROLE lo_outsider');
      unreadable = await largeObjectStats(client, restored.manifest.checksumAlgorithm);
      await client.query('ROLLBACK');
    } finally {
      await client.end();
    }
    expect(unreadable).toEqual({ count, checksum: null });

    const warnings: string[] = [];
    const log = { ...silentLogger, warn: (message: string) => void warnings.push(message) };
    expect(diffDatabaseStats(restored.manifest.stats, { ...restored.manifest.stats, largeObjects: unreadable }, { log })).toEqual([]);
    expect(diffDatabaseStats({ ...restored.manifest.stats, largeObjects: unreadable }, restored.manifest.stats, { log })).toEqual([]);
    expect(warnings).toEqual([
      `the contents of ${count} large object(s) were not compared, only their count: the target user may not read them (insufficient_privilege)`,
      `the contents of ${count} large object(s) were not compared, only their count: the backup has no checksum of them: the source user could not read them when it was taken (insufficient_privilege)`,
    ]);

    // A statement timeout (or a lock wait, a lost connection) says nothing about the data: thrown, never "not readable".
    const timingOut = {
      query: async (text: string) => {
        if (text.startsWith('SELECT count(*)')) return { rows: [{ count: '2' }] };
        if (/SAVEPOINT/.test(text)) return { rows: [] };
        throw Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' });
      },
    } as unknown as pg.Client;
    await expect(largeObjectStats(timingOut)).rejects.toMatchObject({ code: '57014' });
  });

  /** A copy of the backup under `name`, and its largest table data file (the one the tests damage). */
  function copyBackupAndPickLargestDataFile(name: string): { copy: string; victim: { path: string; bytes: number }; path: string } {
    const copy = join(workDir, name);
    spawnSync('cp', ['-a', backupDir, copy]);
    const manifest = JSON.parse(readFileSync(join(copy, 'manifest.json'), 'utf8')) as { files: Array<{ path: string; bytes: number }> };
    const victim = manifest.files.filter((file) => /^\d+\.dat$/.test(file.path)).sort((a, b) => b.bytes - a.bytes)[0]!;
    return { copy, victim, path: join(copy, 'dump', victim.path) };
  }

  it('fails with exit 65 naming the file when a dump file was tampered with (same size)', async () => {
    const { copy, victim, path } = copyBackupAndPickLargestDataFile('tampered');
    const content = readFileSync(path);
    content[Math.floor(content.length / 2)] ^= 0x01;
    writeFileSync(path, content);
    const run = await runRunner(['verify', '--dir', copy], {});
    expect(run.code).toBe(65);
    const lines = run.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(victim.path);
    expect(lines[0]).toContain('take a new backup');

    // The restore checks the digests while pg_restore runs and fails the same way.
    const database = await freshTargetDatabase();
    const restore = await runRunner(['restore', '--dir', copy], targetEnv(database));
    expect(restore.code).toBe(65);
    expect(logLines(restore.stderr).at(-1)!.msg).toContain(victim.path);
    expect(restore.stderr).not.toContain('target verified');
  });

  it("digests every file again unless the manifest is the one this process digested and its digests are under a minute old", async () => {
    const { copy, victim, path } = copyBackupAndPickLargestDataFile('tampered-after-digests');
    const content = readFileSync(path);
    content[Math.floor(content.length / 2)] ^= 0x01;
    writeFileSync(path, content);
    const manifestSha256 = createHash('sha256').update(readFileSync(join(copy, 'manifest.json'))).digest('hex');
    const cases = [
      { digested: { manifestSha256, digestedAt: Date.now() - DIGESTS_TRUSTED_FOR_MS - 1000 }, why: /^this process digested the files 6\d s ago$/ },
      { digested: { manifestSha256: 'f'.repeat(64), digestedAt: Date.now() }, why: /^the manifest is not the one of the backup this process digested$/ },
    ];
    for (const { digested, why } of cases) {
      const lines: string[] = [];
      const log = createLogger({ format: 'json', level: 'info', stream: new Writable({ write: (chunk, _encoding, done) => (lines.push(...String(chunk).trim().split('\n')), done()) }) });
      const database = await freshTargetDatabase();
      await expect(restoreDatabase({ dir: copy, target: target.settings(database, TARGET_USER, TARGET_PASSWORD), digestedByThisProcess: digested, log })).rejects.toMatchObject({
        exitCode: 65,
        message: expect.stringContaining(`${victim.path} has sha256`),
      });
      const restoring = lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.msg === 'restoring');
      expect(restoring).toMatchObject({ digests: 'recomputed during the restore', digestsWhy: expect.stringMatching(why) });
    }
  });

  it("restores from the TOC listing the backup recorded, after checking toc.dat's digest, and lists an older runner's backup itself", async () => {
    const manifest = JSON.parse(readFileSync(join(backupDir, 'manifest.json'), 'utf8')) as { tocListing?: string };
    // What pg_restore prints for the dump now is what the backup recorded (the test's own pg_restore).
    const listed = spawnSync(join(source.binDir, 'pg_restore'), ['--list', join(backupDir, 'dump')], { encoding: 'utf8' });
    expect(listed.status, listed.stderr).toBe(0);
    const entries = (listing: string) => listing.split('\n').filter((line) => /^\d+;/.test(line));
    expect(entries(manifest.tocListing!)).toEqual(entries(listed.stdout));
    expect(entries(listed.stdout).length).toBeGreaterThan(20);

    const listRuns = (stderr: string) => logLines(stderr).filter((line) => line.msg === 'running pg_restore' && (line.args as string[]).includes('--list'));
    const database = await freshTargetDatabase();
    const restore = await runRunner(['restore', '--dir', backupDir], targetEnv(database, { MIGRATION_LOG_LEVEL: 'debug' }));
    expect(restore.code, restore.stderr).toBe(0);
    expect(listRuns(restore.stderr)).toEqual([]);
    expect(logLines(restore.stderr).find((line) => line.msg === 'backup verified')!.toc).toBe('recorded');

    // A manifest without the listing (an older runner's): the restore lists the dump, as it did.
    const older = join(workDir, 'older-runner');
    spawnSync('cp', ['-a', backupDir, older]);
    const { tocListing: _dropped, ...withoutListing } = JSON.parse(readFileSync(join(older, 'manifest.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(older, 'manifest.json'), `${JSON.stringify(withoutListing, null, 2)}\n`);
    const olderDatabase = await freshTargetDatabase();
    const olderRestore = await runRunner(['restore', '--dir', older], targetEnv(olderDatabase, { MIGRATION_LOG_LEVEL: 'debug' }));
    expect(olderRestore.code, olderRestore.stderr).toBe(0);
    expect(listRuns(olderRestore.stderr)).toHaveLength(1);
    expect(logLines(olderRestore.stderr).find((line) => line.msg === 'backup verified')!.toc).toBe('pg_restore --list');
  });

  it('stops a restore whose toc.dat differs from the recorded one before pg_restore starts', async () => {
    const copy = join(workDir, 'tampered-toc');
    spawnSync('cp', ['-a', backupDir, copy]);
    const path = join(copy, 'dump', 'toc.dat');
    const content = readFileSync(path);
    content[content.length - 8] ^= 0x01;
    writeFileSync(path, content);
    const database = await freshTargetDatabase();
    const restore = await runRunner(['restore', '--dir', copy], targetEnv(database, { MIGRATION_LOG_LEVEL: 'debug' }));
    expect(restore.code).toBe(65);
    const last = logLines(restore.stderr).at(-1)!;
    expect(last.msg).toContain('toc.dat has sha256');
    expect(last.msg).toContain('take a new backup');
    // Neither the restore nor a listing of the altered TOC ran.
    expect(logLines(restore.stderr).filter((line) => line.msg === 'running pg_restore' && !(line.args as string[]).includes('--version'))).toEqual([]);
    const created = await target.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')`,
      [],
      database,
    );
    expect(created[0]!.n).toBe(0);
  });

  it('stops a restore from a backup missing part of a file before it writes anything to the target', async () => {
    const { copy, victim, path } = copyBackupAndPickLargestDataFile('truncated');
    writeFileSync(path, readFileSync(path).subarray(0, victim.bytes - 1));
    const database = await freshTargetDatabase();
    // The backup's checks run while the runner connects to the target: the connection is closed unused.
    const restore = await runRunner(['restore', '--dir', copy], targetEnv(database));
    expect(restore.code).toBe(65);
    expect(logLines(restore.stderr).at(-1)!.msg).toContain(victim.path);
    const created = await target.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')`,
      [],
      database,
    );
    expect(created[0]!.n).toBe(0);
  });
});

describe('ready marker and hygiene', () => {
  it('writes and reads the marker, which neither statistics nor the restore touch', async () => {
    const database = await freshTargetDatabase();
    const settings = target.settings(database, TARGET_USER, TARGET_PASSWORD);
    expect(await readMarker(settings)).toBeUndefined();
    await writeMarker(settings, { status: 'restoring', migrationId: 'm-42' });
    expect(await readMarker(settings)).toMatchObject({ status: 'restoring', migrationId: 'm-42' });
    expect(await isMarkedReady(settings)).toBe(false);
    const run = await runRunner(['restore', '--dir', backupDir], targetEnv(database));
    expect(run.code, run.stderr).toBe(0);
    // The marker survived the restore and does not disturb the verification or the no-op check.
    expect(await readMarker(settings)).toMatchObject({ status: 'restoring', migrationId: 'm-42' });
    await writeMarker(settings, { status: 'ready', migrationId: 'm-42' });
    expect(await isMarkedReady(settings, 'm-42')).toBe(true);
    expect(await isMarkedReady(settings, 'm-other')).toBe(false);
    const again = await runRunner(['restore', '--dir', backupDir], targetEnv(database));
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('already holds exactly this backup');
    // Readable by the owner, as Keycloak's gate reads it with Keycloak's credentials.
    expect(await objectsNotOwnedBy(target.settings(database), TARGET_USER)).toEqual([]);
  });

  it('tolerates a database that is not Keycloak\'s', async () => {
    const database = await freshTargetDatabase();
    await expect(applyKeycloakHygiene(target.settings(database, TARGET_USER, TARGET_PASSWORD))).resolves.toEqual({
      analyzed: true,
      jgroupsRowsDeleted: {},
      changelogLocksReleased: {},
    });
  });
});

describe('table checksum', () => {
  it('changes with any single changed value, swapped columns, NULL versus empty, or a duplicated row, and not with row order', async () => {
    const database = await freshTargetDatabase();
    const settings = target.settings(database, TARGET_USER, TARGET_PASSWORD);
    const checksumOf = async (rows: string) => {
      await target.query(`DROP TABLE IF EXISTS public.t; CREATE TABLE public.t (a text, b text, c double precision); ALTER TABLE public.t OWNER TO ${TARGET_USER}; ${rows}`, [], database);
      const stats = await collectTargetStats(settings);
      return stats.tables.find((table) => table.name === 't')!.checksum;
    };
    const base = await checksumOf(`INSERT INTO public.t VALUES ('x', 'y', 0.1), ('p', NULL, 2)`);
    const variants = [
      `INSERT INTO public.t VALUES ('x', 'y', 0.1), ('p', '', 2)`,
      `INSERT INTO public.t VALUES ('y', 'x', 0.1), ('p', NULL, 2)`,
      `INSERT INTO public.t VALUES ('x', 'y', 0.1000000000000001), ('p', NULL, 2)`,
      `INSERT INTO public.t VALUES ('x', 'y', 0.1), ('p', NULL, 2), ('p', NULL, 2)`,
      `INSERT INTO public.t VALUES ('x', 'Y', 0.1), ('p', NULL, 2)`,
    ];
    const checksums = [];
    for (const rows of variants) checksums.push(await checksumOf(rows));
    for (const checksum of checksums) expect(checksum).not.toBe(base);
    expect(new Set(checksums).size).toBe(variants.length);
    expect(await checksumOf(`INSERT INTO public.t VALUES ('p', NULL, 2), ('x', 'y', 0.1)`)).toBe(base);
  });

  it('sees any changed byte of a long bytea value, which the formula (v3 and the default v4) hashes by its sha256', async () => {
    const database = await freshTargetDatabase();
    const settings = target.settings(database, TARGET_USER, TARGET_PASSWORD);
    const checksumOf = async (rows: string, checksumAlgorithm?: string) => {
      await target.query(`DROP TABLE IF EXISTS public.b; CREATE TABLE public.b (id int, doc bytea); ALTER TABLE public.b OWNER TO ${TARGET_USER}; ${rows}`, [], database);
      const stats = await collectTargetStats(settings, checksumAlgorithm ? { checksumAlgorithm } : {});
      return stats.tables.find((table) => table.name === 'b')!.checksum;
    };
    // 5001 bytes (digested) and 2 bytes (hashed as text).
    const long = (hexBytes: number, last: string) => `decode(repeat('ab', ${hexBytes}) || '${last}', 'hex')`;
    const base = await checksumOf(`INSERT INTO public.b VALUES (1, ${long(5000, '00')}), (2, '\\x0102')`);
    const variants = [
      `INSERT INTO public.b VALUES (1, ${long(5000, '01')}), (2, '\\x0102')`,
      `INSERT INTO public.b VALUES (1, ${long(4999, '00')}), (2, '\\x0102')`,
      `INSERT INTO public.b VALUES (1, ${long(5000, '00')}), (2, '\\x0103')`,
      `INSERT INTO public.b VALUES (2, ${long(5000, '00')}), (1, '\\x0102')`,
      `INSERT INTO public.b VALUES (1, ${long(5000, '00')}), (2, NULL)`,
      // Either side of the threshold: 1023 bytes as text, 1024 bytes by digest.
      `INSERT INTO public.b VALUES (1, ${long(BYTEA_DIGEST_MIN_BYTES - 2, '00')}), (2, '\\x0102')`,
      `INSERT INTO public.b VALUES (1, ${long(BYTEA_DIGEST_MIN_BYTES - 1, '00')}), (2, '\\x0102')`,
    ];
    const checksums = [];
    for (const rows of variants) checksums.push(await checksumOf(rows));
    for (const checksum of checksums) expect(checksum).not.toBe(base);
    expect(new Set(checksums).size).toBe(variants.length);
    expect(await checksumOf(`INSERT INTO public.b VALUES (2, '\\x0102'), (1, ${long(5000, '00')})`)).toBe(base);
    // The digest branch is taken for the long value (v2 hashes its text), not for the short one
    // (v3, which hashes the integer id by its text as v2 does).
    const rows = `INSERT INTO public.b VALUES (1, ${long(5000, '00')}), (2, '\\x0102')`;
    expect(await checksumOf(rows, ROW_CHECKSUM_ALGORITHM_V2)).not.toBe(await checksumOf(rows, ROW_CHECKSUM_ALGORITHM_V3));
    const short = `INSERT INTO public.b VALUES (2, '\\x0102')`;
    expect(await checksumOf(short, ROW_CHECKSUM_ALGORITHM_V2)).toBe(await checksumOf(short, ROW_CHECKSUM_ALGORITHM_V3));
  });

  it('hashes integers, booleans, uuids and timestamps by value (v4): any changed value, NULL, or swapped columns change it, row order does not', async () => {
    const database = await freshTargetDatabase();
    const settings = target.settings(database, TARGET_USER, TARGET_PASSWORD);
    await target.query(`CREATE DOMAIN public.positive AS bigint CHECK (VALUE > 0)`, [], database);
    const checksumOf = async (rows: string, checksumAlgorithm?: string) => {
      await target.query(
        `DROP TABLE IF EXISTS public.v; CREATE TABLE public.v (s smallint, i int, j int, b bigint, d public.positive, f boolean, u uuid, ts timestamp, tz timestamptz);
         ALTER TABLE public.v OWNER TO ${TARGET_USER}; ${rows}`,
        [],
        database,
      );
      const stats = await collectTargetStats(settings, checksumAlgorithm ? { checksumAlgorithm } : {});
      return stats.tables.find((table) => table.name === 'v')!.checksum;
    };
    const row = (values: Partial<Record<'s' | 'i' | 'j' | 'b' | 'd' | 'f' | 'u' | 'ts' | 'tz', string>>) => {
      const all = { s: '1', i: '2', j: '3', b: '4000000000', d: '5', f: 'true', u: "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", ts: "'2024-01-02 03:04:05.678901'", tz: "'2024-01-02 03:04:05+02'", ...values };
      return `(${Object.values(all).join(', ')})`;
    };
    const other = "(9, 9, 9, 9, 9, false, 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'infinity', '-infinity')";
    const base = await checksumOf(`INSERT INTO public.v VALUES ${row({})}, ${other}`);
    const variants = [
      row({ s: '2' }),
      row({ i: '3', j: '2' }),
      row({ b: '4000000001' }),
      row({ d: '6' }),
      row({ f: 'false' }),
      row({ f: 'NULL' }),
      row({ u: "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'" }),
      row({ ts: "'2024-01-02 03:04:05.678902'" }),
      row({ tz: "'2024-01-02 03:04:05+03'" }),
      row({ i: 'NULL' }),
    ].map((changed) => `INSERT INTO public.v VALUES ${changed}, ${other}`);
    const checksums = [];
    for (const rows of variants) checksums.push(await checksumOf(rows));
    for (const checksum of checksums) expect(checksum).not.toBe(base);
    expect(new Set(checksums).size).toBe(variants.length);
    expect(await checksumOf(`INSERT INTO public.v VALUES ${other}, ${row({})}`)).toBe(base);
    // The same instant written in another zone is the same value.
    expect(await checksumOf(`INSERT INTO public.v VALUES ${row({ tz: "'2024-01-02 01:04:05+00'" })}, ${other}`)).toBe(base);
    // By value, not by text: v3 of the same rows differs.
    expect(await checksumOf(`INSERT INTO public.v VALUES ${row({})}, ${other}`, ROW_CHECKSUM_ALGORITHM_V3)).not.toBe(base);
    // A table of text and floats only is hashed as v3 hashed it.
    await target.query(`DROP TABLE IF EXISTS public.v; CREATE TABLE public.v (a text, c double precision); ALTER TABLE public.v OWNER TO ${TARGET_USER}; INSERT INTO public.v VALUES ('x', 0.1)`, [], database);
    const checksumNow = async (algorithm?: string) => (await collectTargetStats(settings, algorithm ? { checksumAlgorithm: algorithm } : {})).tables.find((table) => table.name === 'v')!.checksum;
    expect(await checksumNow()).toBe(await checksumNow(ROW_CHECKSUM_ALGORITHM_V3));
  });

  it('keeps the same properties with the v1 formula, which backups of older runners carry', async () => {
    const database = await freshTargetDatabase();
    const settings = target.settings(database, TARGET_USER, TARGET_PASSWORD);
    const checksumOf = async (rows: string) => {
      await target.query(`DROP TABLE IF EXISTS public.t; CREATE TABLE public.t (a text, b text, c double precision); ALTER TABLE public.t OWNER TO ${TARGET_USER}; ${rows}`, [], database);
      const stats = await collectTargetStats(settings, { checksumAlgorithm: ROW_CHECKSUM_ALGORITHM_V1 });
      return stats.tables.find((table) => table.name === 't')!.checksum;
    };
    const base = await checksumOf(`INSERT INTO public.t VALUES ('x', 'y', 0.1), ('p', NULL, 2)`);
    const v2 = (await collectTargetStats(settings)).tables.find((table) => table.name === 't')!.checksum;
    expect(v2).not.toBe(base);
    const variants = [
      `INSERT INTO public.t VALUES ('x', 'y', 0.1), ('p', '', 2)`,
      `INSERT INTO public.t VALUES ('y', 'x', 0.1), ('p', NULL, 2)`,
      `INSERT INTO public.t VALUES ('x', 'y', 0.1), ('p', NULL, 2), ('p', NULL, 2)`,
    ];
    for (const rows of variants) expect(await checksumOf(rows)).not.toBe(base);
    expect(await checksumOf(`INSERT INTO public.t VALUES ('p', NULL, 2), ('x', 'y', 0.1)`)).toBe(base);
  });
});

describe('materialized views', () => {
  // A source with a view refreshed after its table's last change (fresh), one not refreshed since
  // (stale), and one WITH NO DATA. pg_restore refreshes populated views from the restored tables.
  let viewsBackup: string;
  const sourceDatabase = 'matviews';
  const sourceSettings = () => source.settings(sourceDatabase, SOURCE_USER, SOURCE_PASSWORD);
  const contentsOf = (settings: TestPostgres, database: string, view: string) =>
    settings.query<{ name: string; n: number }>(`SELECT name, n FROM public.${view} ORDER BY name`, [], database);

  beforeAll(async () => {
    await source.createDatabase(sourceDatabase, SOURCE_USER);
    const client = new pg.Client(sourceSettings());
    await client.connect();
    try {
      await client.query(`
        CREATE TABLE public.item (id int PRIMARY KEY, name text NOT NULL);
        INSERT INTO public.item SELECT g, 'group-' || (g % 3) FROM generate_series(1, 30) g;
        CREATE MATERIALIZED VIEW public.stale_counts AS SELECT name, count(*)::int AS n FROM public.item GROUP BY name;
        CREATE MATERIALIZED VIEW public.fresh_counts AS SELECT name, count(*)::int AS n FROM public.item GROUP BY name;
        CREATE MATERIALIZED VIEW public.empty_counts AS SELECT name, count(*)::int AS n FROM public.item GROUP BY name WITH NO DATA;
        -- The table changes; only fresh_counts is refreshed afterwards.
        INSERT INTO public.item SELECT g, 'group-new' FROM generate_series(31, 40) g;
        REFRESH MATERIALIZED VIEW public.fresh_counts;
      `);
    } finally {
      await client.end();
    }
    viewsBackup = join(workDir, 'matviews-backup');
    const run = await runRunner(['backup', '--dir', viewsBackup], endpointEnv('SOURCE', sourceSettings()));
    expect(run.code, run.stderr).toBe(0);
  });

  it('restores and verifies a stale view (refreshed by the restore) and a fresh one, and keeps WITH NO DATA', async () => {
    const database = await freshTargetDatabase();
    const run = await runRunner(['restore', '--dir', viewsBackup], targetEnv(database));
    expect(run.code, run.stderr).toBe(0);
    // The stale view comes back as the source's would be when refreshed: derived from the same rows.
    const staleOnSource = await contentsOf(source, sourceDatabase, 'stale_counts');
    expect(staleOnSource.map((row) => row.name)).not.toContain('group-new');
    const refreshed = await contentsOf(target, database, 'stale_counts');
    expect(refreshed).toEqual(await contentsOf(source, sourceDatabase, 'fresh_counts'));
    expect(refreshed).not.toEqual(staleOnSource);
    expect(await contentsOf(target, database, 'fresh_counts')).toEqual(await contentsOf(source, sourceDatabase, 'fresh_counts'));
    expect(await target.query('SELECT matviewname, ispopulated FROM pg_matviews ORDER BY 1', [], database)).toEqual([
      { matviewname: 'empty_counts', ispopulated: false },
      { matviewname: 'fresh_counts', ispopulated: true },
      { matviewname: 'stale_counts', ispopulated: true },
    ]);
    // Re-running finds the target already holding the backup (the same comparison decides that).
    const again = await runRunner(['restore', '--dir', viewsBackup], targetEnv(database));
    expect(again.code, again.stderr).toBe(0);
    const summary = logLines(again.stderr).find((line) => line.event === 'summary') as { rows: Array<{ step: string; note?: string }> };
    expect(summary.rows[0]!.note).toBe('skipped: target already holds the backup');
  });

  it('fails with exit 65 naming a view whose populated state or existence differs', async () => {
    const database = await freshTargetDatabase();
    expect((await runRunner(['restore', '--dir', viewsBackup], targetEnv(database))).code).toBe(0);
    await target.query(`REFRESH MATERIALIZED VIEW public.fresh_counts WITH NO DATA; REFRESH MATERIALIZED VIEW public.empty_counts; DROP MATERIALIZED VIEW public.stale_counts`, [], database);
    const run = await runRunner(['verify', '--dir', viewsBackup], targetEnv(database));
    expect(run.code, run.stderr).toBe(65);
    const error = logLines(run.stderr).filter((line) => line.level === 'error').at(-1)!;
    expect(error.msg).toContain('table public.fresh_counts: expected populated, found WITH NO DATA');
    expect(error.msg).toContain('table public.empty_counts: expected WITH NO DATA, found populated');
    expect(error.msg).toContain('table public.stale_counts: expected');
    expect(error.msg).toMatch(/public\.stale_counts: expected \d+ rows, found missing/);
  });
});
