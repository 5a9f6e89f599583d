import { describe, expect, it } from 'vitest';
import { Env, RunnerCommand } from '../lib/contract.js';
import { KeycloakPlatform } from '../lib/keycloak-platform.js';
import { Testing } from 'cdk8s';
import { validateObjects } from './support/kube-schema.js';
import { type Manifest, PLATFORM_VARIANTS, buildPlatform, synthPlatform, variantName } from './support/synth.js';

const maybeFind = (manifests: Manifest[], kind: string, name: string): Manifest | undefined =>
  manifests.find((manifest) => manifest.kind === kind && manifest.metadata.name === name);
const find = (manifests: Manifest[], kind: string, name: string): Manifest => {
  const found = maybeFind(manifests, kind, name);
  if (!found) throw new Error(`no ${kind}/${name} among ${manifests.map((m) => `${m.kind}/${m.metadata.name}`).join(', ')}`);
  return found;
};
const envOf = (job: Manifest): Record<string, any> =>
  Object.fromEntries(job.spec.template.spec.containers[0].env.map((v: any) => [v.name, v.value ?? v.valueFrom]));
const jobFor = (manifests: Manifest[], command: string) =>
  manifests.find((m) => m.kind === 'Job' && m.spec.template.spec.containers[0].args[0] === command)!;

describe.each(PLATFORM_VARIANTS.map((variant) => [variantName(variant), variant] as const))('schema: %s', (_, variant) => {
  it('validates every synthesized object against the Kubernetes OpenAPI schema (and the CNPG CRD)', () => {
    const manifests = synthPlatform(variant);
    expect(validateObjects(manifests)).toBe(manifests.length);
    for (const manifest of manifests) {
      const clusterScoped = manifest.kind === 'ClusterRole' || manifest.kind === 'ClusterRoleBinding';
      expect(manifest.metadata.namespace, `${manifest.kind}/${manifest.metadata.name}`).toBe(clusterScoped ? undefined : 'keycloak');
    }
  });
});

describe('v1 shape', () => {
  const manifests = synthPlatform({ shape: 'v1', flavor: 'argocd', database: 'repmgr' });

  it('runs Keycloak, ungated, on the Bitnami-compatible keycloak-postgresql', () => {
    const postgres = find(manifests, 'StatefulSet', 'keycloak-postgresql');
    expect(postgres.spec.volumeClaimTemplates[0].metadata.name).toBe('data');
    const keycloak = find(manifests, 'StatefulSet', 'keycloak');
    expect(keycloak.spec.template.spec.initContainers).toBeUndefined();
    const env = Object.fromEntries(keycloak.spec.template.spec.containers[0].env.map((v: any) => [v.name, v.value ?? v.valueFrom]));
    expect(env.KC_DB_URL_HOST).toBe('keycloak-postgresql');
    expect(env.KC_DB_URL_DATABASE).toBe('bitnami_keycloak');
    expect(manifests.some((m) => m.kind === 'Job')).toBe(false);
  });

  it('waves the database before Keycloak, and lets a later v2 prune the database only after its last wave', () => {
    const database = find(manifests, 'StatefulSet', 'keycloak-postgresql');
    expect(database.metadata.annotations['argocd.argoproj.io/sync-wave']).toBe('-40');
    expect(find(manifests, 'StatefulSet', 'keycloak').metadata.annotations['argocd.argoproj.io/sync-wave']).toBe('-10');
    // At -40 a v2 revision dropping it would prune it at the start of wave -40, before its backup at -30.
    expect(database.metadata.annotations['argocd.argoproj.io/sync-options']).toBe('PruneLast=true');
    expect(find(manifests, 'StatefulSet', 'keycloak').metadata.annotations['argocd.argoproj.io/sync-options']).toBeUndefined();
  });

  it('lists the Secrets it references but does not contain', () => {
    const platform = buildPlatform({ shape: 'v1', flavor: 'helm', database: 'repmgr' });
    expect(platform.requiredSecrets.map((secret) => secret.name)).toEqual(['keycloak-admin', 'keycloak-postgresql']);
    expect(Testing.synth(platform).some((m) => m.kind === 'Secret')).toBe(false);
  });
});

describe('v2 shape', () => {
  const manifests = synthPlatform({ shape: 'v2', flavor: 'helm', database: 'repmgr' });

  it('keeps the Keycloak names of v1, so the upgrade changes the same objects in place', () => {
    const v1 = synthPlatform({ shape: 'v1', flavor: 'helm', database: 'repmgr' });
    const keycloakObjects = (list: Manifest[]) =>
      list.filter((m) => m.metadata.labels?.['app.kubernetes.io/name'] === 'keycloak').map((m) => `${m.kind}/${m.metadata.name}`);
    expect(keycloakObjects(manifests)).toEqual(keycloakObjects(v1));
  });

  it('no longer contains the legacy database: it is only described by name', () => {
    expect(maybeFind(manifests, 'StatefulSet', 'keycloak-postgresql')).toBeUndefined();
    expect(manifests.filter((m) => m.metadata.name.startsWith('keycloak-postgresql-')).every((m) => m.metadata.name.startsWith('keycloak-postgresql-ha'))).toBe(true);
  });

  it('gates Keycloak on the runner and points it at postgresql-ha', () => {
    const keycloak = find(manifests, 'StatefulSet', 'keycloak');
    const [gate] = keycloak.spec.template.spec.initContainers;
    expect(gate.image).toBe('ghcr.io/keycloak-pg-migration/keycloak-pg-migration-runner:0.1.0');
    expect(gate.args).toEqual([RunnerCommand.gate]);
    const env = Object.fromEntries(keycloak.spec.template.spec.containers[0].env.map((v: any) => [v.name, v.value ?? v.valueFrom]));
    expect(env.KC_DB_URL_HOST).toBe('keycloak-postgresql-ha-pgpool');
  });

  it('migrates from the described legacy database into postgresql-ha, quiescing Keycloak', () => {
    const env = envOf(jobFor(manifests, RunnerCommand.prepare));
    expect(env[Env.sourceHost]).toBe('keycloak-postgresql');
    expect(env[Env.sourceDatabase]).toBe('bitnami_keycloak');
    expect(env[Env.sourcePassword]).toEqual({ secretKeyRef: { name: 'keycloak-postgresql', key: 'postgres-password', optional: true } });
    expect(env[Env.targetHost]).toBe('keycloak-postgresql-ha-pgpool');
    expect(env[Env.targetOwner]).toBe('keycloak');
    expect(env[Env.workloads]).toBe('statefulset/keycloak');
    expect(env[Env.legacyStatefulSet]).toBe('keycloak-postgresql');
    expect(env[Env.legacyPvcs]).toBe('data-keycloak-postgresql-0');
    const ensured = JSON.parse(env[Env.ensureSecrets]).map((secret: { name: string }) => secret.name);
    expect(ensured).toContain('keycloak-admin');
    expect(ensured).toContain('keycloak-postgresql-ha-postgresql');
    expect(ensured).not.toContain('keycloak-postgresql');
  });

  it('uses the CloudNativePG connection with the cloudnative-pg flavor', () => {
    const cnpg = synthPlatform({ shape: 'v2', flavor: 'argocd', database: 'cloudnative-pg' });
    expect(cnpg.some((m) => m.kind === 'Cluster' && m.apiVersion === 'postgresql.cnpg.io/v1')).toBe(true);
    expect(envOf(jobFor(cnpg, RunnerCommand.backupPhase))[Env.targetHost]).toBe('keycloak-postgresql-ha-rw');
  });

  it('passes the configured migration settings through', () => {
    const env = envOf(
      jobFor(
        synthPlatform(
          { shape: 'v2', flavor: 'helm', database: 'repmgr' },
          { migration: { deleteLegacy: 'after-restore', backupSize: '30Gi', backupStorageClass: 'standard', parallelJobs: 4 } },
        ),
        RunnerCommand.backupPhase,
      ),
    );
    expect(env).toMatchObject({
      [Env.deleteLegacy]: 'after-restore',
      [Env.backupPvcSize]: '30Gi',
      [Env.backupStorageClass]: 'standard',
      [Env.parallelJobs]: '4',
    });
  });
});

describe('v2 sslmodes', () => {
  const variant = { shape: 'v2', flavor: 'argocd', database: 'cloudnative-pg' } as const;
  const jobs = (manifests: Manifest[]) => manifests.filter((m) => m.kind === 'Job');
  const gateEnv = (manifests: Manifest[]) =>
    Object.fromEntries(find(manifests, 'StatefulSet', 'keycloak').spec.template.spec.initContainers[0].env.map((v: any) => [v.name, v.value]));

  it('sets no sslmode anywhere by default', () => {
    const manifests = synthPlatform(variant);
    expect(jobs(manifests).length).toBeGreaterThan(0);
    for (const job of jobs(manifests)) {
      expect(envOf(job)).not.toHaveProperty(Env.sourceSslMode);
      expect(envOf(job)).not.toHaveProperty(Env.targetSslMode);
    }
    expect(gateEnv(manifests)).not.toHaveProperty(Env.targetSslMode);
  });

  it("passes database.sslMode and its CA to every Job's target, Keycloak's gate and Keycloak's JDBC URL; legacyDatabase.sslMode to every Job's source", () => {
    const manifests = synthPlatform(variant, {
      database: { sslMode: 'verify-full', caSecret: 'keycloak-postgresql-ha-ca' },
      legacyDatabase: { sslMode: 'require' },
    });
    expect(jobs(manifests).length).toBeGreaterThan(0);
    for (const job of jobs(manifests)) {
      const env = envOf(job);
      expect(env, job.metadata.name).toMatchObject({
        [Env.sourceSslMode]: 'require',
        [Env.targetSslMode]: 'verify-full',
        [Env.targetSslRootCert]: '/etc/migration-tls/target/ca.crt',
      });
      expect(env).not.toHaveProperty(Env.sourceSslRootCert);
      const pod = job.spec.template.spec;
      expect(pod.volumes).toContainEqual({ name: 'target-ca', secret: { secretName: 'keycloak-postgresql-ha-ca', items: [{ key: 'ca.crt', path: 'ca.crt' }], defaultMode: 0o444 } });
      expect(pod.containers[0].volumeMounts).toContainEqual({ name: 'target-ca', mountPath: '/etc/migration-tls/target', readOnly: true });
    }
    expect(gateEnv(manifests)).toMatchObject({ [Env.targetSslMode]: 'verify-full', [Env.targetSslRootCert]: '/etc/keycloak-database-tls/ca.crt' });
    const keycloakPod = find(manifests, 'StatefulSet', 'keycloak').spec.template.spec;
    const keycloakEnv = Object.fromEntries(keycloakPod.containers[0].env.map((v: any) => [v.name, v.value]));
    expect(keycloakEnv.KC_DB_URL_PROPERTIES).toBe('?sslmode=verify-full&sslrootcert=/etc/keycloak-database-tls/ca.crt');
    for (const container of [keycloakPod.containers[0], keycloakPod.initContainers[0]]) {
      expect(container.volumeMounts).toContainEqual({ name: 'database-ca', mountPath: '/etc/keycloak-database-tls', readOnly: true });
    }
    expect(keycloakPod.volumes).toContainEqual({ name: 'database-ca', secret: { secretName: 'keycloak-postgresql-ha-ca', items: [{ key: 'ca.crt', path: 'ca.crt' }], defaultMode: 0o444 } });
  });

  it('without a CA: sslmode only, nothing mounted', () => {
    const manifests = synthPlatform(variant, { database: { sslMode: 'require' } });
    for (const job of jobs(manifests)) {
      expect(envOf(job)).toMatchObject({ [Env.targetSslMode]: 'require' });
      expect(envOf(job)).not.toHaveProperty(Env.targetSslRootCert);
      expect(job.spec.template.spec.volumes.map((v: any) => v.name)).not.toContain('target-ca');
    }
    const keycloakPod = find(manifests, 'StatefulSet', 'keycloak').spec.template.spec;
    expect(keycloakPod.containers[0].env).toContainEqual({ name: 'KC_DB_URL_PROPERTIES', value: '?sslmode=require' });
    expect(keycloakPod.volumes.map((v: any) => v.name)).not.toContain('database-ca');
  });

  it('sets only the side that is configured', () => {
    const manifests = synthPlatform(variant, { legacyDatabase: { sslMode: 'disable' } });
    for (const job of jobs(manifests)) {
      expect(envOf(job)[Env.sourceSslMode]).toBe('disable');
      expect(envOf(job)).not.toHaveProperty(Env.targetSslMode);
    }
    expect(gateEnv(manifests)).not.toHaveProperty(Env.targetSslMode);
  });
});

describe('KeycloakPlatform bad input', () => {
  it('fails when the release name makes a StatefulSet name too long for its pods', () => {
    expect(() => buildPlatform({ shape: 'v2', flavor: 'helm', database: 'repmgr' }, { releaseName: 'a'.repeat(30) })).toThrow(
      /at most 52 characters/,
    );
  });

  it('fails when the flavor is unknown', () => {
    expect(() => new KeycloakPlatform(Testing.app(), 'x', { flavor: 'flux' as never })).toThrow(
      /KeycloakPlatform flavor' must be one of 'helm', 'argocd', got "flux"/,
    );
  });

  it('fails when the legacy database has the new database names and deletion before the upgrade is off', () => {
    expect(() =>
      buildPlatform({ shape: 'v2', flavor: 'helm', database: 'repmgr' }, { legacyDatabase: { name: 'keycloak-postgresql-ha-postgresql' } }),
    ).toThrow(/legacy database's names \(StatefulSet\/keycloak-postgresql-ha-postgresql.*deleteLegacy is 'never'/);
  });

  it('fails when an sslmode is unknown, naming the field', () => {
    expect(() => buildPlatform({ shape: 'v2', flavor: 'helm', database: 'repmgr' }, { database: { sslMode: 'tls' as never } })).toThrow(
      /platform config 'database.sslMode' must be one of .*got "tls"/,
    );
  });

  it('fails when HA is asked for a single instance', () => {
    expect(() => buildPlatform({ shape: 'v2', flavor: 'argocd', database: 'repmgr' }, { database: { instances: 1 } })).toThrow(
      /instances' must be an integer of at least 2/,
    );
  });
});

describe('keycloak.name (a Bitnami release under fullnameOverride)', () => {
  it("names Keycloak's StatefulSet, Service, admin Secret and the migration's workload after it", () => {
    const manifests = synthPlatform({ shape: 'v2', flavor: 'helm', database: 'repmgr' }, { keycloak: { name: 'sso' } });
    expect(find(manifests, 'StatefulSet', 'sso').spec.serviceName).toBe('sso-discovery');
    expect(find(manifests, 'Service', 'sso').spec.ports.map((port: { port: number }) => port.port)).toContain(80);
    expect(maybeFind(manifests, 'StatefulSet', 'keycloak')).toBeUndefined();
    const env = envOf(jobFor(manifests, RunnerCommand.prepare));
    expect(env[Env.workloads]).toBe('statefulset/sso');
    expect(env[Env.keepSecrets]).toBe('keycloak-postgresql,sso');
    expect(JSON.parse(env[Env.workloadDiscovery])).toEqual({
      'statefulset/sso': { selector: 'app.kubernetes.io/instance=keycloak,app.kubernetes.io/component=keycloak', secretCopies: [{ key: 'admin-password', to: 'sso' }] },
    });
  });
});
