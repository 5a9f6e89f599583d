// The synthesized v2 postgresql-ha objects alone: applied to the fake API they come up as a real
// repmgr primary + standby behind a real Pgpool-II, with the passwords from the Secrets, report
// Ready as the servers do, and a write through the Pgpool Service lands on the primary and
// replicates to the standby.
import { afterAll, describe, expect, it } from 'vitest';
import pg from 'pg';

import { Rehearsal } from './harness.js';
import { waitFor } from './postgres-processes.js';

describe('v2 postgresql-ha from the synthesized manifests', () => {
  let rehearsal: Rehearsal | undefined;
  afterAll(async () => rehearsal?.close());

  it('comes up as a repmgr primary + standby behind Pgpool and replicates a write', async () => {
    rehearsal = await Rehearsal.start({ config: { database: { flavor: 'repmgr' } } });
    const v2 = rehearsal.synthesize('v2');
    const ha = v2.argocd.resources.map((r) => r.object).filter((o) => o.metadata.name.startsWith('keycloak-postgresql-ha'));
    expect(ha.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toContain('StatefulSet/keycloak-postgresql-ha-postgresql');
    expect(rehearsal.createMissingSecrets(ha).sort()).toEqual(['keycloak-postgresql-ha-pgpool', 'keycloak-postgresql-ha-postgresql']);

    // Not Ready before the servers are.
    const statefulSet = ha.find((o) => o.kind === 'StatefulSet')!;
    const pgpool = ha.find((o) => o.kind === 'Deployment')!;
    for (const object of ha) await rehearsal.cluster.apply(object);
    expect(rehearsal.cluster.get(statefulSet)?.status).not.toEqual(expect.objectContaining({ readyReplicas: 2 }));
    await rehearsal.waitReady(statefulSet);
    await rehearsal.waitReady(pgpool);
    expect(rehearsal.workloads.errors).toEqual([]);

    const port = await rehearsal.proxies.localPort('keycloak-postgresql-ha-pgpool', 5432);
    const password = rehearsal.secretValue('keycloak-postgresql-ha-postgresql', 'password')!;
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'keycloak', password, database: 'keycloak' });
    await client.connect();
    expect((await client.query('SELECT pg_is_in_recovery() AS r')).rows[0].r).toBe(false);
    await client.query('CREATE TABLE probe (id int PRIMARY KEY)');
    await client.query('INSERT INTO probe VALUES (42)');
    await client.end();

    const cluster = (await rehearsal.workloads.repmgrCluster('keycloak-postgresql-ha-postgresql'))!;
    expect(cluster.nodes.map((n) => n.index)).toEqual([0, 1]);
    const onStandby = await waitFor('the row on the standby', () =>
      cluster.withNode(1, 'keycloak', async (c) => (await c.query<{ id: number }>('SELECT id FROM probe')).rows[0]?.id), 10_000);
    expect(onStandby).toBe(42);
    expect(await cluster.withNode(1, 'keycloak', async (c) => (await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r)).toBe(true);

    // A wrong password through Pgpool is refused, as with SCRAM in the real images.
    const wrong = new pg.Client({ host: '127.0.0.1', port, user: 'keycloak', password: `${password}x`, database: 'keycloak' });
    await expect(wrong.connect()).rejects.toThrow(/authentication failed/);
  });
});
