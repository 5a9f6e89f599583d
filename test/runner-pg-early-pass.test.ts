/**
 * The checksum pass before the downtime (runner/src/pg/early-pass.ts) on a real PostgreSQL 15:
 * a backup reuses its checksums only for tables it proves unchanged, and its statistics always
 * equal those of a backup that scanned everything — whatever was written between the two, by
 * whom and how (a subtransaction still open during the early pass, a frozen row, a TRUNCATE, a
 * renamed enum label, a large object written in place).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { backupDatabase } from '../runner/src/pg/backup.js';
import { connect, type ConnectionSettings } from '../runner/src/pg/connection.js';
import { EARLY_PASS_FILE, parseEarlyPass, reuseEarlyPass, takeEarlyPass, type EarlyPass } from '../runner/src/pg/early-pass.js';
import type { BackupManifest, DatabaseStats } from '../runner/src/pg/manifest.js';
import { createKeycloakData } from './support/keycloak-data.js';
import { startPostgres, type PostgresMajor, type TestPostgres } from './support/postgres.js';
import { endpointEnv, runRunner } from './support/runner-cli.js';

const APP_USER = 'bn_keycloak';
const APP_PASSWORD = 'app-Secret-1';

let server: TestPostgres;
let workDir: string;
let databaseCounter = 0;
let database: string;

/** A fresh Keycloak-shaped database per test: each test writes to it. */
beforeEach(async () => {
  databaseCounter += 1;
  database = `kc_early_${databaseCounter}`;
  await server.createDatabase(database, APP_USER);
  await createKeycloakData(server.settings(database, APP_USER, APP_PASSWORD));
});

beforeAll(async () => {
  // No autovacuum: its ANALYZE spends a transaction id, and the tests decide when one is spent.
  server = await startPostgres({ settings: { autovacuum: 'off' } });
  await server.createUser(APP_USER, APP_PASSWORD);
  workDir = mkdtempSync(join(tmpdir(), 'kc-early-pass-'));
}, 60_000);

afterAll(async () => {
  await server?.stop();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

const superuser = (): ConnectionSettings => server.settings(database);
const appUser = (): ConnectionSettings => server.settings(database, APP_USER, APP_PASSWORD);

async function earlyPass(settings: ConnectionSettings): Promise<EarlyPass> {
  const client = await connect(settings, { purpose: 'test-early-pass' });
  try {
    return await takeEarlyPass(client, settings);
  } finally {
    await client.end();
  }
}

async function backup(settings: ConnectionSettings, pass?: EarlyPass): Promise<BackupManifest> {
  const dir = mkdtempSync(join(workDir, 'backup-'));
  return (await backupDatabase({ source: settings, dir, ...(pass ? { earlyPass: pass } : {}) })).manifest;
}

/** What the restore compares: everything but the informative sizes. */
function comparable(stats: DatabaseStats): unknown {
  return { ...stats, tables: stats.tables.map(({ sizeBytes: _size, ...table }) => table) };
}

async function sql(settings: ConnectionSettings, text: string): Promise<void> {
  const client = new pg.Client(settings);
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

describe('backup with an early pass', () => {
  it('reuses every table and the large objects when nothing was written since, with the statistics of a full scan', async () => {
    const pass = await earlyPass(superuser());
    const withPass = await backup(superuser(), pass);
    const fullScan = await backup(superuser());
    const baseTables = pass.tables.filter((table) => table.kind === 'table').length;
    // No transaction ended in between: proven without reading a row.
    expect(withPass.earlyPass).toMatchObject({ takenAt: pass.takenAt, tablesReused: baseTables, largeObjectsReused: true, rescanned: [], noTransactionSince: true });
    expect(withPass.earlyPass?.unusable).toBeUndefined();
    expect(baseTables).toBeGreaterThan(10);
    expect(comparable(withPass.stats)).toEqual(comparable(fullScan.stats));
  });

  it('reads the rows again once any transaction ended since, even one whose only write was rolled back, and reuses every table it finds unchanged', async () => {
    const settings = superuser();
    const pass = await earlyPass(settings);
    await sql(settings, "BEGIN; INSERT INTO public.jgroups_ping VALUES ('gone', 'n', 'c', '10.0.0.8', false); ROLLBACK");
    const withPass = await backup(settings, pass);
    expect(withPass.earlyPass).toMatchObject({ tablesReused: pass.tables.filter((table) => table.kind === 'table').length, largeObjectsReused: true, rescanned: [] });
    expect(withPass.earlyPass!.noTransactionSince).toBeUndefined();
    expect(comparable(withPass.stats)).toEqual(comparable((await backup(settings)).stats));
  });

  it('reads the rows again after a crash restart, which empties unlogged tables (and loses unflushed asynchronous commits) with no transaction to show it', async () => {
    const settings = superuser();
    await sql(settings, 'CREATE UNLOGGED TABLE public.login_cache (id int PRIMARY KEY, note text); INSERT INTO public.login_cache SELECT g, md5(g::text) FROM generate_series(1, 50) g');
    const pass = await earlyPass(settings);
    const before = await server.query<{ snapshot: string }>('SELECT txid_current_snapshot()::text AS snapshot');
    await server.crashRestart();
    // No transaction in between: the ids alone would call every table unchanged.
    expect(await server.query<{ snapshot: string }>('SELECT txid_current_snapshot()::text AS snapshot')).toEqual(before);
    const withPass = await backup(settings, pass);
    expect(withPass.earlyPass!.noTransactionSince).toBeUndefined();
    expect(withPass.earlyPass!.rescanned).toEqual(['public.login_cache: 50 → 0 rows']);
    expect(withPass.stats.tables.find((table) => table.name === 'login_cache')!.rows).toBe(0);
    expect(comparable(withPass.stats)).toEqual(comparable((await backup(settings)).stats));
  });

  it('scans again exactly the tables written since, however they were written, and ends with the statistics of a full scan', async () => {
    const settings = superuser();
    // A transaction open while the early pass runs, writing in a subtransaction: its row's xmin is
    // a subtransaction id the early snapshot lists nowhere, committed only after the pass.
    const open = new pg.Client(settings);
    await open.connect();
    await open.query('BEGIN');
    await open.query('SAVEPOINT s1');
    await open.query("INSERT INTO public.binary_blob (payload, note) VALUES ('\\x01', 'written in a subtransaction')");
    await open.query('RELEASE SAVEPOINT s1');
    const pass = await earlyPass(settings);
    await open.query('COMMIT');
    await open.end();

    await sql(settings, "UPDATE public.realm SET ssl_required = 'all' WHERE id = (SELECT min(id) FROM public.realm)");
    await sql(settings, 'DELETE FROM public.credential WHERE id = (SELECT min(id) FROM public.credential)');
    // The same number of rows again, and a new relfilenode.
    await sql(settings, 'CREATE TEMP TABLE keep AS SELECT * FROM audit.admin_event; TRUNCATE audit.admin_event; INSERT INTO audit.admin_event SELECT * FROM keep');
    // A row written since and frozen at once: freezing keeps xmin, so it still reads as newer.
    await sql(settings, "INSERT INTO public.jgroups_ping VALUES ('late', 'n', 'c', '10.0.0.9', false)");
    await sql(settings, 'VACUUM (FREEZE) public.jgroups_ping');
    // A large object written in place: only pg_largeobject's rows change.
    await sql(settings, "SELECT lo_put((SELECT min(oid) FROM pg_largeobject_metadata), 0, '\\xff')");

    const withPass = await backup(settings, pass);
    const fullScan = await backup(settings);
    expect(comparable(withPass.stats)).toEqual(comparable(fullScan.stats));
    const credentials = pass.tables.find((table) => table.name === 'credential')!.rows;
    expect([...withPass.earlyPass!.rescanned].sort()).toEqual([
      'audit.admin_event: truncated or rewritten',
      'large objects: written since',
      'public.binary_blob: 1 row(s) written since',
      `public.credential: ${credentials} → ${credentials - 1} rows`,
      'public.jgroups_ping: 1 row(s) written since',
      'public.realm: 1 row(s) written since',
    ]);
    expect(withPass.earlyPass!.largeObjectsReused).toBe(false);
    // Everything else is reused.
    expect(withPass.earlyPass!.tablesReused).toBe(pass.tables.filter((table) => table.kind === 'table').length - 5);
  });

  it('uses nothing once a column was added with a default, an enum label renamed or row-level security enabled: rows read differently without a write', async () => {
    const settings = superuser();
    for (const change of [
      "ALTER TABLE public.realm ADD COLUMN region text NOT NULL DEFAULT 'eu'",
      "ALTER TYPE public.realm_state RENAME VALUE 'disabled' TO 'off'",
      'ALTER TABLE public.credential ENABLE ROW LEVEL SECURITY',
    ]) {
      const pass = await earlyPass(settings);
      await sql(settings, change);
      const withPass = await backup(settings, pass);
      expect(withPass.earlyPass).toMatchObject({ tablesReused: 0, unusable: 'tables, columns or types were altered since' });
      expect(comparable(withPass.stats)).toEqual(comparable((await backup(settings)).stats));
    }
  });

  it('checksums the large objects again after pages were deleted with none written (the page count, not xmin, shows it)', async () => {
    const settings = superuser();
    const pass = await earlyPass(settings);
    await sql(settings, 'DELETE FROM pg_largeobject WHERE (loid, pageno) = (SELECT loid, max(pageno) FROM pg_largeobject GROUP BY loid ORDER BY count(*) DESC LIMIT 1)');
    const withPass = await backup(settings, pass);
    expect(withPass.earlyPass).toMatchObject({ largeObjectsReused: false, rescanned: ['large objects: written since'] });
    expect(comparable(withPass.stats)).toEqual(comparable((await backup(settings)).stats));
  });

  it("as the application's user (no read on pg_largeobject), reuses the tables and checksums the large objects again once anything was written", async () => {
    const pass = await earlyPass(appUser());
    // With no transaction since, nothing needs reading: the large objects are reused too.
    expect((await backup(appUser(), pass)).earlyPass).toMatchObject({ noTransactionSince: true, largeObjectsReused: true });
    await sql(appUser(), "UPDATE public.realm SET ssl_required = 'all' WHERE id = (SELECT min(id) FROM public.realm)");
    const withPass = await backup(appUser(), pass);
    expect(withPass.earlyPass!.largeObjectsReused).toBe(false);
    expect(withPass.earlyPass!.rescanned).toContain('large objects: pg_largeobject is not readable by this user');
    expect(withPass.earlyPass!.tablesReused).toBeGreaterThan(10);
    expect(comparable(withPass.stats)).toEqual(comparable((await backup(appUser())).stats));
  });

  it('does not use a pass of another database or another user, and says so', async () => {
    const pass = await earlyPass(superuser());
    const foreign: EarlyPass = { ...pass, source: { ...pass.source, database: 'other' } };
    const withPass = await backup(superuser(), foreign);
    expect(withPass.earlyPass).toMatchObject({ tablesReused: 0, largeObjectsReused: false });
    expect(withPass.earlyPass!.unusable).toContain(`it was taken on ${pass.source.host}:${pass.source.port}/other, not on`);
    // Row-level security makes a table's rows depend on the reader: another user's pass is not used either.
    const otherUser = await backup(superuser(), { ...pass, source: { ...pass.source, user: APP_USER } });
    expect(otherUser.earlyPass).toMatchObject({ tablesReused: 0, unusable: `it was taken as ${APP_USER}, this backup reads as postgres` });
  });
});

describe('checksum-source and backup from the command line', () => {
  it('writes early-pass.json before the downtime; the backup into the same directory reuses it and says so', async () => {
    const dir = join(workDir, `cli-${database}`);
    const env = endpointEnv('SOURCE', appUser());
    const checksummed = await runRunner(['checksum-source', '--dir', dir], env);
    expect(checksummed.stderr).not.toContain('"level":"error"');
    expect(checksummed.code).toBe(0);
    const pass = parseEarlyPass(readFileSync(join(dir, EARLY_PASS_FILE), 'utf8'), EARLY_PASS_FILE);
    expect(pass.source.database).toBe(database);

    const backedUp = await runRunner(['backup', '--dir', dir], env);
    expect(backedUp.code).toBe(0);
    expect(backedUp.stderr + backedUp.stdout).toMatch(/\d+ checksummed before the downtime/);
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as BackupManifest;
    expect(manifest.earlyPass!.tablesReused).toBeGreaterThan(10);
  });

  it('stops on a malformed early-pass.json, naming the file and the fix, before dumping anything', async () => {
    const dir = join(workDir, `bad-${database}`);
    const checksummed = await runRunner(['checksum-source', '--dir', dir], endpointEnv('SOURCE', appUser()));
    expect(checksummed.code).toBe(0);
    writeFileSync(join(dir, EARLY_PASS_FILE), '{"formatVersion": 99}');
    const backedUp = await runRunner(['backup', '--dir', dir], endpointEnv('SOURCE', appUser()));
    expect(backedUp.code).toBe(65);
    expect(backedUp.stderr).toContain(`${join(dir, EARLY_PASS_FILE)} is not an early pass of format 1`);
    expect(backedUp.stderr).toContain(`delete ${join(dir, EARLY_PASS_FILE)}`);
    expect(() => readFileSync(join(dir, 'manifest.json'))).toThrow();
  });
});

describe.each([11, 13, 17] as PostgresMajor[])('on a PostgreSQL %i source', (major) => {
  it('proves the unchanged tables and finds the one written since', async () => {
    const legacy = await startPostgres({ major, settings: { autovacuum: 'off' } });
    try {
      await legacy.createUser(APP_USER, APP_PASSWORD);
      await legacy.createDatabase('bitnami_keycloak', APP_USER);
      // citext and pgcrypto became trusted extensions in 13: on 11 an administrator creates them.
      await createKeycloakData(legacy.settings('bitnami_keycloak', APP_USER, APP_PASSWORD), { extensionCreator: legacy.settings('bitnami_keycloak') });
      const settings = legacy.settings('bitnami_keycloak', APP_USER, APP_PASSWORD);
      const pass = await earlyPass(settings);
      const client = await connect(settings, { purpose: 'test-early-pass' });
      const reuseNow = async () => {
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        const reuse = await reuseEarlyPass(client, pass, settings);
        await client.query('COMMIT');
        return reuse;
      };
      try {
        // Nothing ended since: every table and the large objects, without reading a row.
        const quiet = await reuseNow();
        expect(quiet).toMatchObject({ noTransactionSince: true, rescanned: [] });
        expect(quiet.tables.size).toBe(pass.tables.filter((table) => table.kind === 'table').length);
        await sql(settings, "UPDATE public.realm SET ssl_required = 'none' WHERE id = (SELECT min(id) FROM public.realm)");
        const reuse = await reuseNow();
        expect(reuse.noTransactionSince).toBeUndefined();
        expect(reuse.unusable).toBeUndefined();
        expect(reuse.rescanned.filter((entry) => !entry.startsWith('large objects'))).toEqual(['public.realm: 1 row(s) written since']);
        expect(reuse.tables.size).toBe(pass.tables.filter((table) => table.kind === 'table').length - 1);
      } finally {
        await client.end();
      }
    } finally {
      await legacy.stop();
    }
  });
});
