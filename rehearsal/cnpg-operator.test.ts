// The CloudNativePG operator stand-in on its own (cnpg-operator.ts): the synthesized Cluster comes
// up as a real primary + streaming standby with the operator's Secrets, Services and status, Argo
// CD's health follows the status, a switchover moves `-rw`, and without the operator the tools
// fail before touching anything.
import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';

import { cloudNativePgClusterHealth } from './cluster.js';
import { CnpgPhase } from './cnpg-operator.js';
import { Rehearsal } from './harness.js';
import { waitFor } from './postgres-processes.js';
import type { KubeObject } from './manifests.js';

const CLUSTER = 'keycloak-postgresql-ha';
const CNPG = { database: { flavor: 'cloudnative-pg' as const, instances: 2 } };

function clusterOf(objects: readonly KubeObject[]): KubeObject {
  const cluster = objects.find((o) => o.apiVersion === 'postgresql.cnpg.io/v1' && o.kind === 'Cluster');
  if (!cluster) throw new Error('the synthesized v2 holds no CloudNativePG Cluster');
  return cluster;
}

async function withClient<T>(settings: pg.ClientConfig, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(settings);
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

describe('CloudNativePG operator stand-in', () => {
  let rehearsal: Rehearsal | undefined;
  afterEach(async () => {
    await rehearsal?.close();
    rehearsal = undefined;
  });

  it('brings the synthesized Cluster up as a primary and a streaming standby with the operator’s Secrets, Services and status; a switchover moves -rw', async () => {
    rehearsal = await Rehearsal.start({ config: CNPG });
    const cluster = clusterOf(rehearsal.synthesize('v2').argocd.resources.map((r) => r.object));
    const health = () => cloudNativePgClusterHealth(rehearsal!.cluster.get(cluster)!);
    await rehearsal.cluster.apply(cluster);
    expect(['Progressing', 'Healthy']).toContain(health().status);
    await rehearsal.waitReady(cluster, 120_000);
    expect(rehearsal.cnpg!.errors).toEqual([]);

    const status = rehearsal.cluster.get(cluster)!.status as Record<string, unknown>;
    expect(status).toMatchObject({
      phase: CnpgPhase.healthy,
      instances: 2,
      readyInstances: 2,
      currentPrimary: `${CLUSTER}-1`,
      targetPrimary: `${CLUSTER}-1`,
      instanceNames: [`${CLUSTER}-1`, `${CLUSTER}-2`],
    });
    expect(status.conditions).toEqual([expect.objectContaining({ type: 'Ready', status: 'True' })]);
    expect(health()).toEqual({ status: 'Healthy', message: '' });

    // Secrets: CNPG's keys, the -rw host, the initdb owner and database; no superuser Secret.
    const secret = (key: string) => rehearsal!.secretValue(`${CLUSTER}-app`, key);
    const password = secret('password')!;
    expect({ username: secret('username'), dbname: secret('dbname'), host: secret('host'), port: secret('port') }).toEqual({
      username: 'keycloak',
      dbname: 'keycloak',
      host: `${CLUSTER}-rw`,
      port: '5432',
    });
    expect(secret('pgpass')).toBe(`${CLUSTER}-rw:5432:keycloak:keycloak:${password}\n`);
    expect(secret('uri')).toBe(`postgresql://keycloak:${encodeURIComponent(password)}@${CLUSTER}-rw.keycloak:5432/keycloak`);
    expect(secret('jdbc-uri')).toBe(`jdbc:postgresql://${CLUSTER}-rw.keycloak:5432/keycloak?password=${encodeURIComponent(password)}&user=keycloak`);
    expect(rehearsal.server.get({ apiVersion: 'v1', kind: 'Secret', name: `${CLUSTER}-app`, namespace: 'keycloak' })?.type).toBe('kubernetes.io/basic-auth');
    expect(rehearsal.secretValue(`${CLUSTER}-superuser`, 'password')).toBeUndefined();

    // PVCs bound, one per instance.
    for (const serial of [1, 2]) {
      const pvc = rehearsal.server.get({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: `${CLUSTER}-${serial}`, namespace: 'keycloak' });
      expect((pvc?.status as { phase?: string } | undefined)?.phase).toBe('Bound');
    }

    // Services: -rw the primary (writable), -ro the standby (read-only), -r any instance.
    const through = async (service: string) => {
      const port = await rehearsal!.proxies.localPort(service, 5432);
      return { host: '127.0.0.1', port, user: 'keycloak', password, database: 'keycloak' };
    };
    const inRecovery = async (service: string) =>
      withClient(await through(service), async (c) => (await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]!.r);
    expect(await inRecovery(`${CLUSTER}-rw`)).toBe(false);
    expect(await inRecovery(`${CLUSTER}-ro`)).toBe(true);
    // No imageName: the modelled default image's major (17), the standby cloned without pg_basebackup.
    const major = async (service: string) =>
      withClient(await through(service), async (c) => (await c.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`)).rows[0]!.v.slice(0, 2));
    expect([await major(`${CLUSTER}-rw`), await major(`${CLUSTER}-ro`)]).toEqual(['17', '17']);
    await withClient(await through(`${CLUSTER}-rw`), async (c) => {
      await c.query('CREATE TABLE probe (id int PRIMARY KEY)');
      await c.query('INSERT INTO probe VALUES (1)');
    });
    const replicated = await waitFor('the row on the standby through -ro', async () =>
      withClient(await through(`${CLUSTER}-ro`), async (c) => (await c.query<{ n: number }>('SELECT count(*)::int AS n FROM probe')).rows[0]!.n === 1), 15_000);
    expect(replicated).toBe(true);
    // The standby refuses writes.
    await expect(withClient(await through(`${CLUSTER}-ro`), (c) => c.query('INSERT INTO probe VALUES (2)'))).rejects.toThrow(/read-only transaction/);
    // A wrong password is refused (SCRAM).
    await expect(withClient({ ...(await through(`${CLUSTER}-rw`)), password: `${password}x` }, async () => undefined)).rejects.toThrow(/authentication failed/);

    // Switchover (kubectl cnpg promote): Argo CD sees Degraded while it runs, then Healthy.
    const seen = new Set<string>();
    const unsubscribe = rehearsal.server.onChange((_event, object) => {
      if (object.kind === 'Cluster') seen.add(cloudNativePgClusterHealth(object).status);
    });
    await rehearsal.cnpg!.promote(CLUSTER, `${CLUSTER}-2`);
    unsubscribe();
    expect(seen).toContain('Degraded');
    expect(health().status).toBe('Healthy');
    expect((rehearsal.cluster.get(cluster)!.status as { currentPrimary?: string }).currentPrimary).toBe(`${CLUSTER}-2`);
    expect(await inRecovery(`${CLUSTER}-rw`)).toBe(false);
    expect(rehearsal.proxies.currentBackend(`${CLUSTER}-rw`)).toBe(rehearsal.cnpg!.instances(CLUSTER)[1]!.node.port);
    await withClient(await through(`${CLUSTER}-rw`), (c) => c.query('INSERT INTO probe VALUES (3)'));
    // The old primary follows the new one.
    const followed = await waitFor('the old primary to replay the write made after the switchover', async () =>
      withClient(await through(`${CLUSTER}-ro`), async (c) => (await c.query<{ n: number }>('SELECT count(*)::int AS n FROM probe')).rows[0]!.n === 2), 15_000);
    expect(followed).toBe(true);
    expect(rehearsal.cnpg!.errors).toEqual([]);
  });

  it('creates the superuser Secret only with enableSuperuserAccess, and its password works', async () => {
    rehearsal = await Rehearsal.start({ config: CNPG });
    const cluster = clusterOf(rehearsal.synthesize('v2').argocd.resources.map((r) => r.object));
    await rehearsal.cluster.apply({ ...cluster, spec: { ...(cluster.spec as object), instances: 1, enableSuperuserAccess: true } } as KubeObject);
    await rehearsal.waitReady(cluster, 120_000);
    expect(rehearsal.secretValue(`${CLUSTER}-superuser`, 'username')).toBe('postgres');
    expect(rehearsal.secretValue(`${CLUSTER}-superuser`, 'dbname')).toBe('*');
    const port = await rehearsal.proxies.localPort(`${CLUSTER}-rw`, 5432);
    const superuser = { host: '127.0.0.1', port, user: 'postgres', password: rehearsal.secretValue(`${CLUSTER}-superuser`, 'password')!, database: 'keycloak' };
    expect(await withClient(superuser, async (c) => (await c.query<{ s: boolean }>('SELECT rolsuper AS s FROM pg_roles WHERE rolname = current_user')).rows[0]!.s)).toBe(true);
  });

  it.each(['helm', 'argocd'] as const)('fails with %s, before anything is applied, when the operator (its CRD) is not installed', async (tool) => {
    rehearsal = await Rehearsal.start({ config: CNPG, cloudNativePgOperator: false });
    const v2 = rehearsal.synthesize('v2');
    const result = tool === 'helm' ? await rehearsal.helm.upgradeInstall(v2.helm) : await rehearsal.argo.sync(v2.argocd);
    expect(result.ok).toBe(false);
    expect(result.error?.message).toMatch(
      tool === 'helm'
        ? /no matches for kind "Cluster" in version "postgresql\.cnpg\.io\/v1"\nensure CRDs are installed first/
        : /could not find postgresql\.cnpg\.io\/Cluster .*Make sure the "Cluster" CRD is installed/,
    );
    expect(result.events).toEqual([]);
    expect(rehearsal.server.list('batch/v1', 'Job', 'keycloak')).toEqual([]);
    expect(rehearsal.server.list('postgresql.cnpg.io/v1', 'Cluster', 'keycloak')).toEqual([]);
  });
});
