import { Testing } from 'cdk8s';
import * as plus from 'cdk8s-plus-27';
import { describe, expect, it } from 'vitest';
import {
  hardenPlusWorkload,
  plusContainerResources,
  plusContainerSecurityContext,
  plusPodSecurityContext,
  resolvePodSecurity,
  resourceRequirements,
  restrictedProfileViolations,
} from '../lib/pod-security.js';
import {
  assertNoNameCollisions,
  MAX_STATEFULSET_NAME_LENGTH,
  parseQuantity,
  validateDatabaseConnection,
  validateDnsLabel,
  validateDnsSubdomain,
  validateImage,
  validateIntegerRange,
  validatePort,
  validatePostgresIdentifier,
  validateServiceName,
  validateSize,
  validateStatefulSetName,
} from '../lib/validation.js';
import { cnpgClusterProblems, loadCnpgClusterSchema } from './support/cnpg-crd.js';
import { schemaProblems, validateObjects } from './support/kube-schema.js';

describe('names', () => {
  it('accepts DNS-1123 labels and subdomains', () => {
    expect(validateDnsLabel('name', 'keycloak-0')).toBe('keycloak-0');
    expect(validateDnsSubdomain('name', 'kc.example-1.org')).toBe('kc.example-1.org');
    expect(validateServiceName('svc', 'keycloak-postgresql')).toBe('keycloak-postgresql');
  });

  it.each(['Keycloak', 'kc_db', '-kc', 'kc-', '', 'kc.db', 'a'.repeat(64)])('fails when a DNS label is %j', (value) => {
    expect(() => validateDnsLabel('Thing \'name\'', value)).toThrow(/Thing 'name' must be a DNS-1123 label/);
  });

  it('fails when a Service name starts with a digit', () => {
    expect(() => validateServiceName('svc', '1kc-postgresql')).toThrow(/must start with a letter \(DNS-1035\), got "1kc-postgresql"/);
  });

  it('fails when a subdomain has an empty part or upper case', () => {
    expect(() => validateDnsSubdomain('secret', 'a..b')).toThrow(/DNS-1123 subdomain/);
    expect(() => validateDnsSubdomain('secret', 'A.b')).toThrow(/got "A.b"/);
  });

  it('allows StatefulSet names of exactly 52 characters and explains the limit beyond', () => {
    const ok = 'a'.repeat(MAX_STATEFULSET_NAME_LENGTH);
    expect(validateStatefulSetName('name', ok)).toBe(ok);
    const tooLong = 'a'.repeat(MAX_STATEFULSET_NAME_LENGTH + 1);
    expect(() => validateStatefulSetName('name', tooLong)).toThrow(
      /at most 52 characters, got "a{53}" \(53 characters\).*controller-revision-hash/,
    );
  });

  it('fails when a PostgreSQL identifier needs quoting', () => {
    expect(validatePostgresIdentifier('db', 'bitnami_keycloak')).toBe('bitnami_keycloak');
    expect(() => validatePostgresIdentifier('db', 'key-cloak')).toThrow(/unquoted PostgreSQL identifier.*"key-cloak"/);
    expect(() => validatePostgresIdentifier('db', '1db')).toThrow(/not starting/);
  });

  it('fails when two objects share kind and name, and names them', () => {
    expect(() =>
      assertNoNameCollisions('platform', [
        { kind: 'Service', name: 'a' },
        { kind: 'Secret', name: 'a' },
        { kind: 'Service', name: 'a' },
      ]),
    ).toThrow(/platform: .*Service\/a;/);
    expect(() => assertNoNameCollisions('platform', [{ kind: 'Service', name: 'a' }, { kind: 'Secret', name: 'a' }])).not.toThrow();
  });
});

describe('numbers', () => {
  it('validates integer ranges and ports', () => {
    expect(validateIntegerRange('n', 3, 1, 5)).toBe(3);
    expect(() => validateIntegerRange('n', 2.5, 1, 5)).toThrow(/n must be an integer from 1 to 5, got 2.5/);
    expect(validatePort('port', 5432)).toBe(5432);
    for (const port of [0, 65536, -1, 80.5]) {
      expect(() => validatePort('port', port)).toThrow(`port must be a TCP port number from 1 to 65535, got ${port}`);
    }
  });
});

describe('parseQuantity', () => {
  it.each([
    ['8Gi', 8 * 2 ** 30],
    ['512Mi', 512 * 2 ** 20],
    ['1.5G', 1.5e9],
    ['100k', 100_000],
    ['500m', 0.5],
    ['1e3', 1000],
    ['2E2', 200],
    ['.5Ki', 512],
    ['42', 42],
  ])('parses %s', (value, expected) => {
    expect(parseQuantity('size', value)).toBeCloseTo(expected, 9);
  });

  it.each(['10 GB', '10GB', 'abc', '', 'Gi', '1.2.3Gi', '8gi', '8Gi '])('fails when the quantity is %j', (value) => {
    expect(() => parseQuantity('storageSize', value)).toThrow(/storageSize must be a Kubernetes quantity such as "8Gi".*got/);
  });

  it('fails when a size is below the minimum or not whole bytes', () => {
    expect(() => validateSize('storageSize', '512Ki', 2 ** 20)).toThrow(/at least 1048576 bytes, got "512Ki"/);
    expect(() => validateSize('storageSize', '500m')).toThrow(/at least 1 bytes/);
    expect(() => validateSize('storageSize', '1.5')).toThrow(/whole number of bytes/);
  });
});

describe('validateImage', () => {
  it.each([
    ['quay.io/keycloak/keycloak:26.3.3', 'quay.io/keycloak/keycloak', '26.3.3'],
    ['docker.io/bitnamilegacy/postgresql:17.6.0-debian-12-r4', 'docker.io/bitnamilegacy/postgresql', '17.6.0-debian-12-r4'],
    ['localhost:5000/runner:1', 'localhost:5000/runner', '1'],
    ['postgres:15', 'postgres', '15'],
  ])('accepts %s', (image, repository, tag) => {
    expect(validateImage('image', image)).toEqual({ repository, tag });
  });

  it('accepts a digest, with or without a tag', () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    expect(validateImage('image', `ghcr.io/x/runner@${digest}`)).toEqual({ repository: 'ghcr.io/x/runner', digest });
    expect(validateImage('image', `ghcr.io/x/runner:latest@${digest}`).digest).toBe(digest);
  });

  it('fails when the image has neither tag nor digest', () => {
    expect(() => validateImage("Keycloak 'image'", 'quay.io/keycloak/keycloak')).toThrow(
      /Keycloak 'image' must be an image reference with a pinned tag or digest.*got "quay.io\/keycloak\/keycloak": it has neither a tag nor a digest/,
    );
    // A registry port is not a tag.
    expect(() => validateImage('image', 'localhost:5000/runner')).toThrow(/neither a tag nor a digest/);
  });

  it('fails when the tag is latest', () => {
    expect(() => validateImage('image', 'repo/name:latest')).toThrow(/"latest" is mutable/);
  });

  it.each(['Repo/Name:1', 'repo/name:', 'repo//name:1', 'repo/name@sha256:xyz', 'repo/name:1 2'])(
    'fails when the reference is malformed: %j',
    (image) => {
      expect(() => validateImage('image', image)).toThrow(/image must be an image reference/);
    },
  );
});

describe('validateDatabaseConnection', () => {
  const connection = {
    host: 'db',
    port: 5432,
    database: 'keycloak',
    credentials: { username: 'keycloak', secretName: 'db', passwordKey: 'password' },
  };
  it('accepts a valid connection', () => {
    expect(validateDatabaseConnection('database', connection)).toBe(connection);
  });
  it('fails naming the bad field', () => {
    expect(() => validateDatabaseConnection('database', { ...connection, port: 0 })).toThrow(/database.port must be a TCP port/);
    expect(() =>
      validateDatabaseConnection('database', { ...connection, credentials: { ...connection.credentials, passwordKey: 'pass word' } }),
    ).toThrow(/database.credentials.passwordKey must be a Secret key/);
    expect(() =>
      validateDatabaseConnection('database', { ...connection, adminCredentials: { username: 'postgres', secretName: 'Bad', passwordKey: 'p' } }),
    ).toThrow(/database.adminCredentials.secretName/);
  });
});

describe('pod security helpers', () => {
  it('fails when an id is 0 (root)', () => {
    expect(() => resolvePodSecurity('podSecurity', { runAsUser: 0 }, 1001)).toThrow(/podSecurity.runAsUser must be an integer from 1/);
    expect(() => resolvePodSecurity('podSecurity', { fsGroup: 0 }, 1001)).toThrow(/podSecurity.fsGroup/);
    expect(resolvePodSecurity('podSecurity', { runAsUser: 2000 }, 1001)).toEqual({ runAsUser: 2000, runAsGroup: 2000, fsGroup: 2000 });
  });

  it('fails when a request exceeds its limit or a quantity is malformed', () => {
    expect(() => resourceRequirements('resources', { requests: { memory: '2Gi' } }, { limits: { memory: '1Gi' } })).toThrow(
      /resources.requests.memory \(2Gi\) must not exceed resources.limits.memory \(1Gi\)/,
    );
    expect(() => resourceRequirements('resources', { requests: { cpu: 'lots' } }, {})).toThrow(/resources.requests.cpu must be a Kubernetes quantity/);
  });

  it('makes a cdk8s-plus Job pass the restricted profile', () => {
    const chart = Testing.chart();
    const ids = resolvePodSecurity('podSecurity', undefined, 1001);
    const job = new plus.Job(chart, 'job', {
      securityContext: plusPodSecurityContext(ids),
      containers: [
        {
          name: 'runner',
          image: 'ghcr.io/x/runner:1.0.0',
          securityContext: plusContainerSecurityContext(ids),
          resources: plusContainerResources('resources', undefined, { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } }),
        },
      ],
    });
    const before = Testing.synth(chart)[0];
    expect(restrictedProfileViolations(before.spec.template.spec)).toEqual(
      expect.arrayContaining([expect.stringMatching(/seccompProfile/), expect.stringMatching(/does not drop ALL/)]),
    );
    hardenPlusWorkload(job);
    const after = Testing.synth(chart)[0];
    expect(restrictedProfileViolations(after.spec.template.spec)).toEqual([]);
    expect(after.spec.template.spec.securityContext.seccompProfile).toEqual({ type: 'RuntimeDefault' });
    expect(after.spec.template.spec.containers[0].resources).toEqual({
      requests: { cpu: '100m', memory: '128Mi' },
      limits: { memory: '256Mi' },
    });
    validateObjects([after]);
  });

  it('reports each restricted-profile violation', () => {
    const violations = restrictedProfileViolations({
      hostNetwork: true,
      volumes: [{ name: 'host', hostPath: { path: '/' } }],
      containers: [{ name: 'c', securityContext: { privileged: true, runAsUser: 0, capabilities: { add: ['SYS_ADMIN'] } } }],
    });
    expect(violations).toEqual([
      'host namespaces are used',
      'volume host has type hostPath, not allowed by "restricted"',
      'container c is privileged',
      'container c does not set allowPrivilegeEscalation: false',
      'container c is not runAsNonRoot (neither it nor the pod sets runAsNonRoot: true)',
      'container c runAsUser is 0',
      'container c has no RuntimeDefault or Localhost seccompProfile (nor does the pod)',
      'container c does not drop ALL capabilities',
      'container c adds capabilities other than NET_BIND_SERVICE: SYS_ADMIN',
      'container c has no cpu and memory requests',
      'container c has no memory limit',
    ]);
  });
});

describe('schema validation support', () => {
  const service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'db' },
    spec: { ports: [{ port: 5432, targetPort: 'postgresql' }], selector: { app: 'db' } },
  };

  it('accepts a valid object', () => {
    expect(validateObjects([service])).toBe(1);
  });

  it('fails when a field has the wrong type, an unknown name, or the object a bad name', () => {
    const problems = schemaProblems([
      { ...service, spec: { ...service.spec, ports: [{ port: '5432' }], clusterIp: 'None' } },
      { ...service, metadata: { name: 'Bad_Name' } },
    ]);
    expect(problems).toEqual([
      'v1 Service/db: /spec/ports/0/port: must be integer {"type":"integer"}',
      "v1 Service/db: /spec/clusterIp: unknown field (ServiceSpec has no 'clusterIp')",
      'v1 Service/Bad_Name: /metadata/name: must be a DNS-1123 subdomain, got "Bad_Name"',
    ]);
  });

  it('fails when two objects share kind and name, and when a kind has no schema', () => {
    expect(() => validateObjects([service, service])).toThrow(/Service\/db: defined 2 times/);
    expect(schemaProblems([{ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } }])[0]).toMatch(
      /no schema for apiVersion example.com\/v1 kind Widget/,
    );
    expect(() => validateObjects([])).toThrow(/no objects to validate/);
  });

  it('validates CNPG Clusters against the real CRD, strictly', () => {
    expect(loadCnpgClusterSchema().properties.spec.properties.instances.type).toBe('integer');
    expect(
      cnpgClusterProblems({
        apiVersion: 'postgresql.cnpg.io/v1',
        kind: 'Cluster',
        metadata: { name: 'x' },
        spec: { instances: 'three', storage: { size: '1Gi', sise: 1 } },
      }).sort(),
    ).toEqual(['/spec/instances: must be integer', '/spec/storage/sise: unknown field (not in the Cluster CRD schema)']);
  });
});
