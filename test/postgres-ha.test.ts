import { Testing } from 'cdk8s';
import { describe, expect, it } from 'vitest';
import { restrictedProfileViolations } from '../lib/pod-security.js';
import { DEFAULT_PGPOOL_IMAGE, DEFAULT_REPMGR_IMAGE, PostgresHa, type PostgresHaProps } from '../lib/postgres-ha.js';
import { cnpgClusterProblems } from './support/cnpg-crd.js';
import { validateObjects } from './support/kube-schema.js';

function synth(props: PostgresHaProps = {}) {
  const chart = Testing.chart();
  const db = new PostgresHa(chart, 'db', props);
  const objects = Testing.synth(chart);
  const find = (kind: string, name: string) => {
    const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
    if (!found) throw new Error(`no ${kind}/${name} in ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
    return found;
  };
  return { db, objects, find };
}

const envOf = (container: any): Record<string, any> =>
  Object.fromEntries(container.env.map((e: any) => [e.name, e.value ?? e.valueFrom]));

const F = 'keycloak-postgresql-ha';

describe('PostgresHa (repmgr)', () => {
  it('has the Bitnami postgresql-ha names', () => {
    const { db, objects } = synth();
    expect(db.flavor).toBe('repmgr');
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      `Deployment/${F}-pgpool`,
      `PodDisruptionBudget/${F}-pgpool`,
      `PodDisruptionBudget/${F}-postgresql`,
      `Service/${F}-pgpool`,
      `Service/${F}-postgresql`,
      `Service/${F}-postgresql-headless`,
      `StatefulSet/${F}-postgresql`,
    ]);
    expect(db.statefulSetName).toBe(`${F}-postgresql`);
  });

  it('connects through Pgpool with the app user, and the postgres superuser as admin', () => {
    const { db } = synth();
    expect(db.connection).toEqual({
      host: `${F}-pgpool`,
      port: 5432,
      database: 'keycloak',
      credentials: { username: 'keycloak', secretName: `${F}-postgresql`, passwordKey: 'password' },
      adminCredentials: { username: 'postgres', secretName: `${F}-postgresql`, passwordKey: 'postgres-password' },
    });
    expect(db.requiredSecrets).toEqual([
      { name: `${F}-postgresql`, keys: ['password', 'repmgr-password', 'postgres-password'] },
      { name: `${F}-pgpool`, keys: ['admin-password'] },
    ]);
    expect(db.readinessTargets).toEqual([
      { apiVersion: 'apps/v1', kind: 'StatefulSet', name: `${F}-postgresql`, replicas: 3 },
      { apiVersion: 'apps/v1', kind: 'Deployment', name: `${F}-pgpool`, replicas: 1 },
    ]);
    expect(db.objectNames).toContainEqual({ kind: 'PersistentVolumeClaim', name: `data-${F}-postgresql-2` });
  });

  it('runs the StatefulSet with a headless governing service, Parallel pods and a data template', () => {
    const { find } = synth({ storageSize: '16Gi' });
    const sts = find('StatefulSet', `${F}-postgresql`);
    expect(sts.spec.replicas).toBe(3);
    expect(sts.spec.serviceName).toBe(`${F}-postgresql-headless`);
    expect(sts.spec.podManagementPolicy).toBe('Parallel');
    expect(sts.spec.volumeClaimTemplates[0].metadata.name).toBe('data');
    expect(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage).toBe('16Gi');
    const headless = find('Service', `${F}-postgresql-headless`);
    expect(headless.spec.clusterIP).toBe('None');
    expect(headless.spec.publishNotReadyAddresses).toBe(true);
    expect(find('Service', `${F}-pgpool`).spec.ports).toEqual([
      { name: 'postgresql', port: 5432, targetPort: 'postgresql', protocol: 'TCP' },
    ]);
    expect(find('Service', `${F}-pgpool`).spec.selector['app.kubernetes.io/component']).toBe('pgpool');
  });

  it('sets the repmgr environment like the chart', () => {
    const { find } = synth();
    const container = find('StatefulSet', `${F}-postgresql`).spec.template.spec.containers[0];
    expect(container.image).toBe(DEFAULT_REPMGR_IMAGE);
    const env = envOf(container);
    const headless = `${F}-postgresql-headless.$(REPMGR_NAMESPACE).svc.cluster.local`;
    expect(env).toMatchObject({
      REPMGR_PARTNER_NODES: [0, 1, 2].map((i) => `${F}-postgresql-${i}.${headless}`).join(','),
      REPMGR_PRIMARY_HOST: `${F}-postgresql-0.${headless}`,
      REPMGR_NODE_NAME: '$(MY_POD_NAME)',
      REPMGR_NODE_NETWORK_NAME: `$(MY_POD_NAME).${headless}`,
      REPMGR_NODE_TYPE: 'data',
      REPMGR_USERNAME: 'repmgr',
      REPMGR_DATABASE: 'repmgr',
      REPMGR_PASSWORD: { secretKeyRef: { name: `${F}-postgresql`, key: 'repmgr-password' } },
      MY_POD_NAME: { fieldRef: { fieldPath: 'metadata.name' } },
      REPMGR_NAMESPACE: { fieldRef: { fieldPath: 'metadata.namespace' } },
      POSTGRES_USER: 'keycloak',
      POSTGRES_PASSWORD: { secretKeyRef: { name: `${F}-postgresql`, key: 'password' } },
      POSTGRES_POSTGRES_PASSWORD: { secretKeyRef: { name: `${F}-postgresql`, key: 'postgres-password' } },
      POSTGRES_DB: 'keycloak',
      POSTGRESQL_PORT_NUMBER: '5432',
      PGDATA: '/bitnami/postgresql/data',
    });
    // $(VAR) references expand only from variables defined earlier in the list.
    const names = container.env.map((e: any) => e.name);
    expect(names.indexOf('MY_POD_NAME')).toBeLessThan(names.indexOf('REPMGR_NODE_NAME'));
    expect(names.indexOf('REPMGR_NAMESPACE')).toBeLessThan(names.indexOf('REPMGR_PARTNER_NODES'));
  });

  it('configures Pgpool without load balancing and with the app user as custom user', () => {
    const { find } = synth({ instances: 2 });
    const container = find('Deployment', `${F}-pgpool`).spec.template.spec.containers[0];
    expect(container.image).toBe(DEFAULT_PGPOOL_IMAGE);
    expect(envOf(container)).toMatchObject({
      PGPOOL_BACKEND_NODES: `0:${F}-postgresql-0.${F}-postgresql-headless:5432,1:${F}-postgresql-1.${F}-postgresql-headless:5432`,
      PGPOOL_ENABLE_LOAD_BALANCING: 'no',
      PGPOOL_POSTGRES_USERNAME: 'postgres',
      PGPOOL_POSTGRES_PASSWORD: { secretKeyRef: { name: `${F}-postgresql`, key: 'postgres-password' } },
      PGPOOL_POSTGRES_CUSTOM_USERS: 'keycloak',
      PGPOOL_POSTGRES_CUSTOM_PASSWORDS: { secretKeyRef: { name: `${F}-postgresql`, key: 'password' } },
      PGPOOL_SR_CHECK_USER: 'repmgr',
      PGPOOL_ADMIN_PASSWORD: { secretKeyRef: { name: `${F}-pgpool`, key: 'admin-password' } },
    });
  });

  it('has PDBs with maxUnavailable 1 and passes the restricted profile and the schema', () => {
    const { objects, find } = synth({
      insecureSecretValues: { password: 'a', repmgrPassword: 'b', postgresPassword: 'c', pgpoolAdminPassword: 'd' },
    });
    for (const name of [`${F}-postgresql`, `${F}-pgpool`]) {
      expect(find('PodDisruptionBudget', name).spec.maxUnavailable).toBe(1);
    }
    for (const [kind, name] of [['StatefulSet', `${F}-postgresql`], ['Deployment', `${F}-pgpool`]] as const) {
      const pod = find(kind, name).spec.template.spec;
      expect(restrictedProfileViolations(pod)).toEqual([]);
      expect(pod.automountServiceAccountToken).toBe(false);
    }
    expect(find('Secret', `${F}-postgresql`).stringData).toEqual({ password: 'a', 'repmgr-password': 'b', 'postgres-password': 'c' });
    expect(validateObjects(objects)).toBe(9);
  });

  it('fails when instances < 2', () => {
    expect(() => synth({ instances: 1 })).toThrow(
      /PostgresHa 'instances' must be an integer of at least 2 \(a primary and a standby to fail over to\), got 1/,
    );
    expect(() => synth({ instances: 2.5 })).toThrow(/'instances'.*got 2.5/);
  });

  it('fails when the release makes the StatefulSet name too long for its pods', () => {
    expect(() => synth({ release: 'a'.repeat(28) })).toThrow(/'-postgresql' \(StatefulSet name\).*at most 52 characters/);
  });

  it('fails when the release is not a DNS label or a Service name', () => {
    expect(() => synth({ release: 'Key Cloak' })).toThrow(/PostgresHa 'release' is used as a label value/);
    expect(() => synth({ name: '9db' })).toThrow(/PostgresHa 'name'.*must start with a letter/);
  });

  it('fails when the app user is postgres or not an identifier', () => {
    expect(() => synth({ username: 'postgres' })).toThrow(/'username' must not be 'postgres'/);
    expect(() => synth({ username: 'key-cloak' })).toThrow(/'username' must be an unquoted PostgreSQL identifier/);
  });

  it('fails when images lack a tag or a size is malformed', () => {
    expect(() => synth({ pgpoolImage: 'bitnamilegacy/pgpool' })).toThrow(/'pgpoolImage'.*neither a tag nor a digest/);
    expect(() => synth({ storageSize: '8 Gi' })).toThrow(/'storageSize' must be a Kubernetes quantity/);
  });

  it('fails when a prop of the other flavor is given', () => {
    expect(() => synth({ appSecretName: 'x' })).toThrow(/'appSecretName' does not apply to flavor 'repmgr'/);
    expect(() => synth({ flavor: 'cloudnative-pg', pgpoolReplicas: 2, clusterDomain: 'x' })).toThrow(
      /'pgpoolReplicas', 'clusterDomain' do not apply to flavor 'cloudnative-pg'/,
    );
  });
});

describe('PostgresHa (cloudnative-pg)', () => {
  it('synthesizes a Cluster the real CRD accepts', () => {
    const { db, objects } = synth({
      flavor: 'cloudnative-pg',
      name: 'keycloak-db',
      instances: 3,
      storageSize: '20Gi',
      storageClass: 'fast',
      image: 'ghcr.io/cloudnative-pg/postgresql:17.5',
      resources: { requests: { cpu: '1', memory: '2Gi' }, limits: { memory: '4Gi' } },
    });
    expect(objects).toHaveLength(1);
    const cluster = objects[0];
    expect(cluster.apiVersion).toBe('postgresql.cnpg.io/v1');
    expect(cluster.kind).toBe('Cluster');
    expect(cluster.metadata.name).toBe('keycloak-db');
    // Its PVCs go with it: neither a helm rollback/uninstall nor an Argo CD prune may delete it.
    expect(cluster.metadata.annotations).toEqual({ 'helm.sh/resource-policy': 'keep', 'argocd.argoproj.io/sync-options': 'Prune=false' });
    expect(cluster.spec).toEqual({
      instances: 3,
      imageName: 'ghcr.io/cloudnative-pg/postgresql:17.5',
      enableSuperuserAccess: false,
      storage: { size: '20Gi', storageClass: 'fast' },
      bootstrap: { initdb: { database: 'keycloak', owner: 'keycloak' } },
      resources: { requests: { cpu: '1', memory: '2Gi' }, limits: { memory: '4Gi' } },
    });
    expect(cnpgClusterProblems(cluster)).toEqual([]);
    expect(validateObjects(objects)).toBe(1);
    expect(db.connection).toEqual({
      host: 'keycloak-db-rw',
      port: 5432,
      database: 'keycloak',
      credentials: { username: 'keycloak', secretName: 'keycloak-db-app', passwordKey: 'password' },
    });
    expect(db.requiredSecrets).toEqual([]);
    expect(db.readinessTargets).toEqual([
      { apiVersion: 'postgresql.cnpg.io/v1', kind: 'Cluster', name: 'keycloak-db', condition: 'Ready' },
    ]);
    expect(db.statefulSetName).toBeUndefined();
  });

  it('uses a given app Secret and exposes the superuser when enabled', () => {
    const { db, objects } = synth({ flavor: 'cloudnative-pg', appSecretName: 'kc-db-owner', enableSuperuserAccess: true });
    expect(objects[0].spec.bootstrap.initdb.secret).toEqual({ name: 'kc-db-owner' });
    expect(objects[0].spec.enableSuperuserAccess).toBe(true);
    expect(db.connection.credentials.secretName).toBe('kc-db-owner');
    expect(db.connection.adminCredentials).toEqual({ username: 'postgres', secretName: `${F}-superuser`, passwordKey: 'password' });
    expect(validateObjects(objects)).toBe(1);
  });

  it('catches a Cluster field the CRD does not know', () => {
    const { objects } = synth({ flavor: 'cloudnative-pg' });
    const broken = { ...objects[0], spec: { ...objects[0].spec, storage: { size: '1Gi', storageClassName: 'fast' } } };
    expect(() => validateObjects([broken])).toThrow(/\/spec\/storage\/storageClassName: unknown field/);
  });

  it('fails when the flavor is unknown, listing the allowed ones', () => {
    expect(() => synth({ flavor: 'patroni' as 'repmgr' })).toThrow(
      /PostgresHa 'flavor' must be one of 'repmgr', 'cloudnative-pg', got "patroni"/,
    );
  });

  it('fails when instances < 2 or the image lacks a tag', () => {
    expect(() => synth({ flavor: 'cloudnative-pg', instances: 1 })).toThrow(/at least 2/);
    expect(() => synth({ flavor: 'cloudnative-pg', image: 'ghcr.io/cloudnative-pg/postgresql' })).toThrow(/'image'.*neither a tag/);
  });
});
