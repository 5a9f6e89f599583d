// The harness on its own, before any migration: v1 (Keycloak on the legacy single PostgreSQL)
// installs under Helm and under Argo CD, backed by a real PostgreSQL 15 holding Keycloak-shaped
// data and a Keycloak stand-in that writes to it; a second sync / upgrade changes nothing; scaling
// Keycloak to 0 stops it and the legacy data survives scale-to-0 and back.
import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';

import { createKeycloakData } from '../test/support/keycloak-data.js';

import { Rehearsal } from './harness.js';
import { EVERY_TOOL } from './scenario.js';

async function seedLegacy(connection: { host: string; port: number; database: string; user: string; password: string }) {
  await createKeycloakData(connection, { users: 20 });
  const client = new pg.Client(connection);
  await client.connect();
  // A running v1 Keycloak holds no Liquibase lock.
  await client.query('UPDATE databasechangeloglock SET locked = false, lockgranted = NULL, lockedby = NULL');
  await client.end();
}

describe.each(EVERY_TOOL)('v1 under $label', ({ tool, helm }) => {
  let rehearsal: Rehearsal | undefined;
  afterEach(async () => {
    await rehearsal?.close();
    rehearsal = undefined;
  });

  it('installs with the legacy database and a running Keycloak, and a repeat changes nothing', async () => {
    rehearsal = await Rehearsal.start({ seedLegacy, argo: { waveTimeoutMs: 60_000 }, helm: { major: helm } });
    const v1 = rehearsal.synthesize('v1');
    const objects = tool === 'helm' ? [...v1.helm.resources, ...v1.helm.hooks.map((h) => h.object)] : v1.argocd.resources.map((r) => r.object);
    expect(rehearsal.createMissingSecrets(objects).sort()).toEqual(['keycloak-admin', 'keycloak-postgresql']);

    const first = tool === 'helm' ? await rehearsal.helm.upgradeInstall(v1.helm) : await rehearsal.argo.sync(v1.argocd);
    expect(first.error?.message).toBeUndefined();
    expect(first.ok).toBe(true);
    const keycloak = v1.argocd.resources.find((r) => r.object.kind === 'StatefulSet' && r.object.metadata.name === 'keycloak')!.object;
    await rehearsal.cluster.waitReady(keycloak, 60_000);
    expect(rehearsal.workloads.errors).toEqual([]);
    expect(rehearsal.workloads.keycloakWrites.map((w) => [w.pod, w.host, w.createdSchema]).sort()).toEqual([
      ['keycloak-0', 'keycloak-postgresql', false],
      ['keycloak-1', 'keycloak-postgresql', false],
    ]);

    // The stand-in registered itself in the legacy database, through the legacy Service.
    const port = rehearsal.workloads.legacyPort('keycloak-postgresql-0')!;
    const password = rehearsal.secretValue('keycloak-postgresql', 'password')!;
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'bn_keycloak', password, database: 'bitnami_keycloak' });
    await client.connect();
    expect((await client.query('SELECT name FROM jgroups_ping WHERE name = $1', ['keycloak-0'])).rowCount).toBe(1);
    const users = (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM user_entity')).rows[0]!.n;
    expect(users).toBe(20);
    await client.end();

    const second = tool === 'helm' ? await rehearsal.helm.upgradeInstall(v1.helm) : await rehearsal.argo.sync(v1.argocd);
    expect(second.ok).toBe(true);
    expect(second.writes).toBe(0);

    // Scale the legacy database to 0 and back: the volume keeps the data.
    const legacy = v1.argocd.resources.find((r) => r.object.kind === 'StatefulSet' && r.object.metadata.name === 'keycloak-postgresql')!.object;
    const live = rehearsal.cluster.get(legacy)!;
    rehearsal.server.upsert({ ...live, spec: { ...(live.spec as object), replicas: 0 } });
    await rehearsal.workloads.settled();
    expect(rehearsal.workloads.legacyPort('keycloak-postgresql-0')).toBeUndefined();
    const back = rehearsal.cluster.get(legacy)!;
    rehearsal.server.upsert({ ...back, spec: { ...(back.spec as object), replicas: 1 } });
    await rehearsal.cluster.waitReady(legacy, 30_000);
    const again = new pg.Client({ host: '127.0.0.1', port: rehearsal.workloads.legacyPort('keycloak-postgresql-0')!, user: 'bn_keycloak', password, database: 'bitnami_keycloak' });
    await again.connect();
    expect((await again.query<{ n: number }>('SELECT count(*)::int AS n FROM user_entity')).rows[0]!.n).toBe(20);
    await again.end();
  });
});
