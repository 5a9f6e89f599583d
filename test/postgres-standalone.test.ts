import { Testing } from 'cdk8s';
import { describe, expect, it } from 'vitest';
import { restrictedProfileViolations } from '../lib/pod-security.js';
import { DEFAULT_BITNAMI_POSTGRESQL_IMAGE, PostgresStandalone, type PostgresStandaloneProps } from '../lib/postgres-standalone.js';
import { validateObjects } from './support/kube-schema.js';

function synth(props: PostgresStandaloneProps = {}) {
  const chart = Testing.chart();
  const db = new PostgresStandalone(chart, 'legacy', props);
  const objects = Testing.synth(chart);
  const find = (kind: string, name: string) => {
    const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
    if (!found) throw new Error(`no ${kind}/${name} in ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
    return found;
  };
  return { db, objects, find };
}

describe('PostgresStandalone', () => {
  it('has the Bitnami postgresql chart names for release "keycloak"', () => {
    const { db, objects } = synth();
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      'Service/keycloak-postgresql',
      'Service/keycloak-postgresql-hl',
      'StatefulSet/keycloak-postgresql',
    ]);
    expect(db.statefulSetName).toBe('keycloak-postgresql');
    expect(db.pvcNames).toEqual(['data-keycloak-postgresql-0']);
    expect(db.connection).toEqual({
      host: 'keycloak-postgresql',
      port: 5432,
      database: 'bitnami_keycloak',
      credentials: { username: 'bn_keycloak', secretName: 'keycloak-postgresql', passwordKey: 'password' },
      adminCredentials: { username: 'postgres', secretName: 'keycloak-postgresql', passwordKey: 'postgres-password' },
    });
    expect(db.objectNames).toEqual([
      { kind: 'StatefulSet', name: 'keycloak-postgresql' },
      { kind: 'Service', name: 'keycloak-postgresql' },
      { kind: 'Service', name: 'keycloak-postgresql-hl' },
      { kind: 'Secret', name: 'keycloak-postgresql' },
      { kind: 'PersistentVolumeClaim', name: 'data-keycloak-postgresql-0' },
    ]);
  });

  it('references its Secret instead of synthesizing passwords', () => {
    const { db, objects } = synth();
    expect(objects.some((o) => o.kind === 'Secret')).toBe(false);
    expect(db.requiredSecrets).toEqual([{ name: 'keycloak-postgresql', keys: ['password', 'postgres-password'] }]);
  });

  it('synthesizes the Secret only on explicit opt-in', () => {
    const { db, find } = synth({ insecureSecretValues: { password: 'app-pw', postgresPassword: 'su-pw' } });
    expect(find('Secret', 'keycloak-postgresql').stringData).toEqual({ password: 'app-pw', 'postgres-password': 'su-pw' });
    expect(db.requiredSecrets).toEqual([]);
  });

  it('lays out the StatefulSet like Bitnami: volume, PGDATA, headless service, selector', () => {
    const { find } = synth({ storageSize: '20Gi', storageClass: 'fast' });
    const sts = find('StatefulSet', 'keycloak-postgresql');
    expect(sts.spec.replicas).toBe(1);
    expect(sts.spec.serviceName).toBe('keycloak-postgresql-hl');
    expect(sts.spec.selector.matchLabels).toEqual({
      'app.kubernetes.io/name': 'postgresql',
      'app.kubernetes.io/instance': 'keycloak',
      'app.kubernetes.io/component': 'primary',
    });
    expect(sts.spec.volumeClaimTemplates).toEqual([
      {
        metadata: { name: 'data' },
        spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '20Gi' } }, storageClassName: 'fast' },
      },
    ]);
    const container = sts.spec.template.spec.containers[0];
    expect(container.image).toBe(DEFAULT_BITNAMI_POSTGRESQL_IMAGE);
    expect(container.volumeMounts).toContainEqual({ name: 'data', mountPath: '/bitnami/postgresql' });
    const env = Object.fromEntries(container.env.map((e: any) => [e.name, e.value ?? e.valueFrom]));
    expect(env).toMatchObject({
      PGDATA: '/bitnami/postgresql/data',
      POSTGRESQL_VOLUME_DIR: '/bitnami/postgresql',
      POSTGRESQL_PORT_NUMBER: '5432',
      POSTGRES_USER: 'bn_keycloak',
      POSTGRES_DATABASE: 'bitnami_keycloak',
      POSTGRES_PASSWORD: { secretKeyRef: { name: 'keycloak-postgresql', key: 'password' } },
      POSTGRES_POSTGRES_PASSWORD: { secretKeyRef: { name: 'keycloak-postgresql', key: 'postgres-password' } },
    });
    expect(container.livenessProbe.exec.command[2]).toBe(
      'exec pg_isready -U "bn_keycloak" -d "dbname=bitnami_keycloak" -h 127.0.0.1 -p 5432',
    );
    const headless = find('Service', 'keycloak-postgresql-hl');
    expect(headless.spec.clusterIP).toBe('None');
    expect(headless.spec.publishNotReadyAddresses).toBe(true);
    expect(find('Service', 'keycloak-postgresql').spec.ports).toEqual([
      { name: 'tcp-postgresql', port: 5432, targetPort: 'tcp-postgresql', protocol: 'TCP' },
    ]);
  });

  it('passes the restricted profile and the Kubernetes schema', () => {
    const { objects, find } = synth({ insecureSecretValues: { password: 'a', postgresPassword: 'b' } });
    const pod = find('StatefulSet', 'keycloak-postgresql').spec.template.spec;
    expect(restrictedProfileViolations(pod)).toEqual([]);
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.securityContext).toMatchObject({ runAsUser: 1001, runAsGroup: 1001, fsGroup: 1001, runAsNonRoot: true });
    expect(pod.containers[0].securityContext.readOnlyRootFilesystem).toBe(true);
    expect(validateObjects(objects)).toBe(4);
  });

  it('follows Bitnami fullname rules and custom names', () => {
    expect(synth({ release: 'postgresql' }).db.statefulSetName).toBe('postgresql');
    expect(synth({ release: 'sso' }).db.connection.host).toBe('sso-postgresql');
    const custom = synth({ name: 'legacy-db', database: 'kc', username: 'kc_user', secretName: 'legacy-creds' });
    expect(custom.db.connection.credentials).toEqual({ username: 'kc_user', secretName: 'legacy-creds', passwordKey: 'password' });
    expect(custom.db.pvcNames).toEqual(['data-legacy-db-0']);
  });

  it('describes an existing installation without synthesizing anything', () => {
    const legacy = PostgresStandalone.describeExisting({ release: 'iam', adminPasswordKey: null });
    expect(legacy).toEqual({
      connection: {
        host: 'iam-postgresql',
        port: 5432,
        database: 'bitnami_keycloak',
        credentials: { username: 'bn_keycloak', secretName: 'iam-postgresql', passwordKey: 'password' },
      },
      statefulSetName: 'iam-postgresql',
      pvcNames: ['data-iam-postgresql-0'],
      objectNames: [
        { kind: 'StatefulSet', name: 'iam-postgresql' },
        { kind: 'Service', name: 'iam-postgresql' },
        { kind: 'Service', name: 'iam-postgresql-hl' },
        { kind: 'Secret', name: 'iam-postgresql' },
        { kind: 'PersistentVolumeClaim', name: 'data-iam-postgresql-0' },
      ],
      // Bitnami keeps these through every name override: the migration's evidence of a legacy database.
      labels: { 'app.kubernetes.io/name': 'postgresql', 'app.kubernetes.io/instance': 'iam' },
    });
    expect(PostgresStandalone.describeExisting({ name: 'pg', replicas: 2 }).pvcNames).toEqual(['data-pg-0', 'data-pg-1']);
  });

  it('fails when the size is malformed', () => {
    expect(() => synth({ storageSize: '10 GB' })).toThrow(/PostgresStandalone 'storageSize' must be a Kubernetes quantity.*"10 GB"/);
    expect(() => synth({ storageSize: 'abc' })).toThrow(/'storageSize'.*got "abc"/);
  });

  it('fails when the release makes the StatefulSet name too long for its pods', () => {
    const release = 'r'.repeat(42); // + "-postgresql" = 53 characters
    expect(() => synth({ release })).toThrow(/StatefulSet name 'r{42}-postgresql' \(from 'release'\).*at most 52 characters/);
  });

  it('fails when names are not DNS-1123 or the database needs quoting', () => {
    expect(() => synth({ name: 'Legacy_DB' })).toThrow(/PostgresStandalone 'name' must be a DNS-1123 label/);
    expect(() => synth({ database: 'bitnami-keycloak' })).toThrow(/PostgresStandalone 'database' must be an unquoted PostgreSQL identifier/);
  });

  it('fails when the image has no tag, or the port or replicas are wrong', () => {
    expect(() => synth({ image: 'docker.io/bitnamilegacy/postgresql' })).toThrow(/'image'.*neither a tag nor a digest/);
    expect(() => synth({ port: 70000 })).toThrow(/PostgresStandalone 'port' must be a TCP port number from 1 to 65535, got 70000/);
    expect(() => synth({ replicas: 2 })).toThrow(/'replicas' must be 1, got 2.*use PostgresHa/);
  });

  it('fails when insecure Secret values are empty', () => {
    expect(() => synth({ insecureSecretValues: { password: '', postgresPassword: 'x' } })).toThrow(
      /'insecureSecretValues.password' must be a non-empty string/,
    );
  });
});
