import { Testing } from 'cdk8s';
import { describe, expect, it } from 'vitest';
import { Env, RunnerCommand } from '../lib/contract.js';
import type { DatabaseConnection } from '../lib/database-connection.js';
import { DEFAULT_KEYCLOAK_IMAGE, Keycloak, type KeycloakProps } from '../lib/keycloak.js';
import { restrictedProfileViolations } from '../lib/pod-security.js';
import { PostgresHa } from '../lib/postgres-ha.js';
import { validateObjects } from './support/kube-schema.js';

const database: DatabaseConnection = {
  host: 'keycloak-postgresql-ha-pgpool',
  port: 5432,
  database: 'keycloak',
  credentials: { username: 'keycloak', secretName: 'keycloak-postgresql-ha-postgresql', passwordKey: 'password' },
};

function synth(props: Partial<KeycloakProps> = {}) {
  const chart = Testing.chart();
  const keycloak = new Keycloak(chart, 'keycloak', { database, ...props });
  const objects = Testing.synth(chart);
  const find = (kind: string, name: string) => {
    const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
    if (!found) throw new Error(`no ${kind}/${name} in ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
    return found;
  };
  const statefulSet = find('StatefulSet', keycloak.statefulSetName);
  const pod = statefulSet.spec.template.spec;
  const container = pod.containers.find((c: any) => c.name === 'keycloak');
  const env = Object.fromEntries(container.env.map((e: any) => [e.name, e.value ?? e.valueFrom]));
  return { keycloak, objects, find, statefulSet, pod, container, env };
}

describe('Keycloak', () => {
  it('creates a StatefulSet, a Service, a headless discovery Service and a PDB', () => {
    const { keycloak, objects, statefulSet } = synth();
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      'PodDisruptionBudget/keycloak',
      'Service/keycloak',
      'Service/keycloak-discovery',
      'StatefulSet/keycloak',
    ]);
    expect(keycloak.statefulSetName).toBe('keycloak');
    expect(keycloak.serviceName).toBe('keycloak');
    expect(keycloak.discoveryServiceName).toBe('keycloak-discovery');
    expect(keycloak.workload).toEqual({
      kind: 'StatefulSet',
      name: 'keycloak',
      replicas: 2,
      // What a migration compares with a live StatefulSet of another chart before taking it over.
      immutableSpec: { selector: statefulSet.spec.selector.matchLabels, serviceName: 'keycloak-discovery', volumeClaimTemplates: [] },
    });
    expect(statefulSet.spec.replicas).toBe(2);
    expect(statefulSet.spec.serviceName).toBe('keycloak-discovery');
    expect(keycloak.requiredSecrets).toEqual([]);
  });

  it('exposes http on 80 (as Bitnami\'s Service) and 8080, management 9000, and JGroups 7800 on the headless service', () => {
    const { find } = synth();
    expect(find('Service', 'keycloak').spec.ports).toEqual([
      { name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' },
      { name: 'http-direct', port: 8080, targetPort: 'http', protocol: 'TCP' },
      { name: 'management', port: 9000, targetPort: 'management', protocol: 'TCP' },
    ]);
    const discovery = find('Service', 'keycloak-discovery');
    expect(discovery.spec.clusterIP).toBe('None');
    expect(discovery.spec.publishNotReadyAddresses).toBe(true);
    expect(discovery.spec.ports).toEqual([{ name: 'jgroups', port: 7800, targetPort: 'jgroups', protocol: 'TCP' }]);
  });

  it('connects to the database from the DatabaseConnection, password by secretKeyRef', () => {
    const { env, container } = synth();
    expect(container.image).toBe(DEFAULT_KEYCLOAK_IMAGE);
    expect(container.args).toEqual(['start']);
    expect(env).toMatchObject({
      KC_DB: 'postgres',
      KC_DB_URL_HOST: 'keycloak-postgresql-ha-pgpool',
      KC_DB_URL_PORT: '5432',
      KC_DB_URL_DATABASE: 'keycloak',
      KC_DB_SCHEMA: 'public',
      KC_DB_USERNAME: 'keycloak',
      KC_DB_PASSWORD: { secretKeyRef: { name: 'keycloak-postgresql-ha-postgresql', key: 'password' } },
      KC_HEALTH_ENABLED: 'true',
      KC_CACHE: 'ispn',
      KC_CACHE_STACK: 'jdbc-ping',
      KC_PROXY_HEADERS: 'xforwarded',
      KC_HOSTNAME_STRICT: 'false',
    });
    expect(env.KC_HOSTNAME).toBeUndefined();
  });

  it('probes /health/started, /health/live and /health/ready over HTTP on the management port', () => {
    const { container } = synth();
    for (const [probe, path] of [
      ['startupProbe', '/health/started'],
      ['livenessProbe', '/health/live'],
      ['readinessProbe', '/health/ready'],
    ] as const) {
      expect(container[probe].httpGet).toEqual({ path, port: 'management', scheme: 'HTTP' });
    }
    expect(container.ports).toContainEqual({ name: 'management', containerPort: 9000, protocol: 'TCP' });
  });

  it('is hardened: restricted profile, no API token, writable emptyDirs, PDB maxUnavailable 1', () => {
    const { pod, container, find } = synth();
    expect(restrictedProfileViolations(pod)).toEqual([]);
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.securityContext).toMatchObject({ runAsUser: 1000, fsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' } });
    // The stock image re-augments at `start` and writes into /opt/keycloak/lib.
    expect(container.securityContext.readOnlyRootFilesystem).toBe(false);
    expect(container.volumeMounts).toEqual([
      { name: 'tmp', mountPath: '/tmp' },
      { name: 'data', mountPath: '/opt/keycloak/data' },
    ]);
    expect(container.resources).toEqual({ requests: { cpu: '500m', memory: '1Gi' }, limits: { memory: '2Gi' } });
    const pdb = find('PodDisruptionBudget', 'keycloak');
    expect(pdb.spec).toEqual({ maxUnavailable: 1, selector: { matchLabels: find('StatefulSet', 'keycloak').spec.selector.matchLabels } });
  });

  it('runs read-only with an optimized image', () => {
    const { container } = synth({ optimized: true });
    expect(container.args).toEqual(['start', '--optimized']);
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
  });

  it('bootstraps the admin from a referenced Secret and lists it as required', () => {
    const { env, keycloak } = synth({ bootstrapAdmin: { secretName: 'keycloak-admin' }, hostname: 'https://sso.example.com' });
    expect(env.KC_BOOTSTRAP_ADMIN_USERNAME).toBe('admin');
    expect(env.KC_BOOTSTRAP_ADMIN_PASSWORD).toEqual({ secretKeyRef: { name: 'keycloak-admin', key: 'password' } });
    expect(keycloak.requiredSecrets).toEqual([{ name: 'keycloak-admin', keys: ['password'] }]);
    expect(env.KC_HOSTNAME).toBe('https://sso.example.com');
    expect(env.KC_HOSTNAME_STRICT).toBeUndefined();
  });

  it('gates the start on the ready marker with the same database credentials', () => {
    const { pod, keycloak } = synth({ databaseGate: { image: 'ghcr.io/example/kc-migration-runner:0.1.0', timeoutSeconds: 900 } });
    expect(keycloak.gated).toBe(true);
    expect(pod.initContainers).toHaveLength(1);
    const gate = pod.initContainers[0];
    expect(gate.image).toBe('ghcr.io/example/kc-migration-runner:0.1.0');
    expect(gate.command).toBeUndefined();
    expect(gate.args).toEqual([RunnerCommand.gate]);
    expect(gate.env).toEqual([
      { name: Env.targetHost, value: 'keycloak-postgresql-ha-pgpool' },
      { name: Env.targetPort, value: '5432' },
      { name: Env.targetUser, value: 'keycloak' },
      { name: Env.targetDatabase, value: 'keycloak' },
      { name: Env.targetPassword, valueFrom: { secretKeyRef: { name: 'keycloak-postgresql-ha-postgresql', key: 'password' } } },
      { name: Env.gateTimeoutSeconds, value: '900' },
    ]);
    expect(restrictedProfileViolations(pod)).toEqual([]);
    expect(synth().pod.initContainers).toBeUndefined();
  });

  it('passes the target sslmode to the gate only when configured', () => {
    const gateEnv = (sslMode?: 'verify-full' | 'disable') =>
      synth({ databaseGate: { image: 'r/x:1', ...(sslMode !== undefined ? { sslMode } : {}) } }).pod.initContainers[0].env;
    expect(gateEnv('verify-full')).toContainEqual({ name: Env.targetSslMode, value: 'verify-full' });
    expect(gateEnv('disable')).toContainEqual({ name: Env.targetSslMode, value: 'disable' });
    expect(gateEnv().map((variable: { name: string }) => variable.name)).not.toContain(Env.targetSslMode);
    // Keycloak itself is not given the runner's variable.
    expect(synth({ databaseGate: { image: 'r/x:1', sslMode: 'require' } }).env[Env.targetSslMode]).toBeUndefined();
  });

  it("uses the connection's TLS for its JDBC URL and its gate; the gate's own sslMode wins", () => {
    const tls = { sslMode: 'verify-full' as const, caSecret: { secretName: 'pg-ca', key: 'root.pem' } };
    const { pod, env, container } = synth({ database: { ...database, tls }, databaseGate: { image: 'r/x:1' } });
    expect(env.KC_DB_URL_PROPERTIES).toBe('?sslmode=verify-full&sslrootcert=/etc/keycloak-database-tls/ca.crt');
    expect(pod.volumes).toContainEqual({ name: 'database-ca', secret: { secretName: 'pg-ca', items: [{ key: 'root.pem', path: 'ca.crt' }], defaultMode: 0o444 } });
    expect(container.volumeMounts).toContainEqual({ name: 'database-ca', mountPath: '/etc/keycloak-database-tls', readOnly: true });
    const gate = pod.initContainers[0];
    expect(gate.env).toContainEqual({ name: Env.targetSslMode, value: 'verify-full' });
    expect(gate.env).toContainEqual({ name: Env.targetSslRootCert, value: '/etc/keycloak-database-tls/ca.crt' });
    expect(gate.volumeMounts).toContainEqual({ name: 'database-ca', mountPath: '/etc/keycloak-database-tls', readOnly: true });
    const overridden = synth({ database: { ...database, tls }, databaseGate: { image: 'r/x:1', sslMode: 'require' } }).pod.initContainers[0].env;
    expect(overridden).toContainEqual({ name: Env.targetSslMode, value: 'require' });
    // No TLS configured: nothing added.
    const plain = synth({ databaseGate: { image: 'r/x:1' } });
    expect(plain.env.KC_DB_URL_PROPERTIES).toBeUndefined();
    expect(plain.pod.volumes.map((v: { name: string }) => v.name)).not.toContain('database-ca');
  });

  it("fails when the connection's TLS verifies without a CA, naming the field", () => {
    expect(() => synth({ database: { ...database, tls: { sslMode: 'verify-ca' } } })).toThrow(
      /^Keycloak 'database.tls'.sslMode verify-ca verifies the server's certificate, but Keycloak 'database.tls'.caSecret is not set: name the Secret/,
    );
    expect(() => synth({ database: { ...database, tls: { sslMode: 'required' as never } } })).toThrow(/'database.tls'.sslMode must be one of disable, allow/);
  });

  it('passes schema validation together with a PostgresHa it connects to', () => {
    const chart = Testing.chart();
    const ha = new PostgresHa(chart, 'db');
    const keycloak = new Keycloak(chart, 'keycloak', {
      database: ha.connection,
      databaseGate: { image: 'ghcr.io/example/runner:1.0.0', command: ['node', '/app/runner.mjs'] },
      bootstrapAdmin: { username: 'root-admin', secretName: 'kc-admin', passwordKey: 'pw' },
      extraEnv: { KC_LOG_LEVEL: 'INFO' },
    });
    const objects = Testing.synth(chart);
    expect(validateObjects(objects)).toBe(objects.length);
    const sts = objects.find((o) => o.kind === 'StatefulSet' && o.metadata.name === keycloak.statefulSetName);
    expect(sts.spec.template.spec.initContainers[0].command).toEqual(['node', '/app/runner.mjs']);
    expect(sts.spec.template.spec.containers[0].env).toContainEqual({ name: 'KC_LOG_LEVEL', value: 'INFO' });
  });

  it('fails without a database', () => {
    const chart = Testing.chart();
    expect(() => new Keycloak(chart, 'k', {} as KeycloakProps)).toThrow(/Keycloak 'database' is required/);
  });

  it('fails when the database connection is invalid', () => {
    expect(() => synth({ database: { ...database, port: 0 } })).toThrow(/Keycloak 'database'.port must be a TCP port number/);
    expect(() => synth({ database: { ...database, host: 'DB_HOST' } })).toThrow(/'database'.host must be a DNS-1123 subdomain/);
  });

  it('fails when the image has no tag or uses latest', () => {
    expect(() => synth({ image: 'quay.io/keycloak/keycloak' })).toThrow(/Keycloak 'image'.*neither a tag nor a digest/);
    expect(() => synth({ image: 'quay.io/keycloak/keycloak:latest' })).toThrow(/"latest" is mutable/);
    expect(() => synth({ databaseGate: { image: 'runner' } })).toThrow(/Keycloak 'databaseGate'.image/);
  });

  it('fails when the name is not a DNS label or too long for StatefulSet pods', () => {
    expect(() => synth({ name: 'Keycloak' })).toThrow(/Keycloak 'name' must be a DNS-1123 label/);
    expect(() => synth({ name: 'k'.repeat(53) })).toThrow(/at most 52 characters.*controller-revision-hash/);
  });

  it('fails on bad replicas, proxy headers, hostname and gate timeout', () => {
    expect(() => synth({ replicas: 0 })).toThrow(/Keycloak 'replicas' must be an integer from 1 to 100, got 0/);
    expect(() => synth({ proxyHeaders: 'x-forwarded' as 'xforwarded' })).toThrow(/'proxyHeaders' must be 'xforwarded' or 'forwarded'/);
    expect(() => synth({ hostname: 'sso example.com' })).toThrow(/Keycloak 'hostname' must be a DNS-1123 subdomain/);
    expect(() => synth({ databaseGate: { image: 'r/x:1', timeoutSeconds: 0 } })).toThrow(/'databaseGate'.timeoutSeconds must be an integer from 1/);
  });

  it('fails on an unknown gate sslmode, naming the prop, the value and the allowed modes', () => {
    expect(() => synth({ databaseGate: { image: 'r/x:1', sslMode: 'verify_full' as never } })).toThrow(
      /Keycloak 'databaseGate'.sslMode must be one of disable, allow, prefer, require, verify-ca, verify-full \(libpq sslmode\), got "verify_full"/,
    );
  });

  it('fails when extraEnv overrides a variable the construct owns', () => {
    expect(() => synth({ extraEnv: { KC_DB_URL_HOST: 'elsewhere' } })).toThrow(/'extraEnv' must not set KC_DB_URL_HOST/);
    expect(() => synth({ extraEnv: { 'KC-BAD': 'x' } })).toThrow(/not a valid environment variable name/);
  });

  it('fails when resources are malformed or inconsistent', () => {
    expect(() => synth({ resources: { limits: { memory: '2 Gi' } } })).toThrow(/Keycloak 'resources'.limits.memory must be a Kubernetes quantity/);
    expect(() => synth({ resources: { requests: { memory: '4Gi' } } })).toThrow(/requests.memory \(4Gi\) must not exceed .*limits.memory \(2Gi\)/);
  });
});
