// The pure parts of adopting a legacy database (runner/src/phases/adopt-legacy.ts): which
// StatefulSet is a primary, where the pod spec says a password is (env secretKeyRef, or a
// `*_FILE` through a mounted Secret volume, plain or projected, with or without items), and the
// MIGRATION_SERVICE_ADDRESSES mapping. The adoption against an API server: test/bitnami-takeover.test.ts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { V1PodSpec, V1StatefulSet } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';

import { parseManifestText } from '../rehearsal/manifests.js';
import { isPrimaryCandidate, passwordReference } from '../runner/src/phases/adopt-legacy.js';
import { formatServiceAddresses, parseServiceAddresses, serviceAddress } from '../runner/src/kube/service-address.js';
import { RunnerError } from '../runner/src/errors.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'bitnami-keycloak');

function statefulSets(file: string): V1StatefulSet[] {
  return parseManifestText(readFileSync(join(FIXTURES, file), 'utf8'), file).filter((object) => object.kind === 'StatefulSet') as unknown as V1StatefulSet[];
}

function databaseStatefulSet(file: string, name: string): V1StatefulSet {
  const found = statefulSets(file).find((statefulSet) => statefulSet.metadata?.name === name);
  if (!found) throw new Error(`${file} has no StatefulSet ${name}`);
  return found;
}

describe('which StatefulSet is a primary', () => {
  it('takes the primary of architecture replication and never its -read replica', () => {
    const file = 'keycloak-25.4.0-release-keycloak-pg-replication.yaml';
    expect(isPrimaryCandidate(databaseStatefulSet(file, 'keycloak-postgresql-primary'))).toBe(true);
    expect(isPrimaryCandidate(databaseStatefulSet(file, 'keycloak-postgresql-read'))).toBe(false);
  });

  it("reads the 10.x chart's role label and the component label of every later chart", () => {
    expect(isPrimaryCandidate(databaseStatefulSet('keycloak-6.2.5-release-keycloak.yaml', 'keycloak-postgresql'))).toBe(true);
    expect(isPrimaryCandidate({ metadata: { name: 'db-slave' }, spec: { selector: { matchLabels: { role: 'slave' } }, template: {} } } as V1StatefulSet)).toBe(false);
  });
});

describe('where the pod spec says the password is', () => {
  it('follows POSTGRES_POSTGRES_PASSWORD_FILE to the mounted existingSecret, by file name', () => {
    const pod = databaseStatefulSet('keycloak-25.4.0-release-idp-existing-secret.yaml', 'idp-postgresql').spec?.template.spec;
    expect(passwordReference(pod, 'postgres')).toEqual({
      name: 'my-pg-secret',
      key: 'postgres-password',
      via: 'env POSTGRES_POSTGRES_PASSWORD_FILE=/opt/bitnami/postgresql/secrets/postgres-password',
    });
    // The application user the pod creates (POSTGRES_USER) has its own key.
    expect(passwordReference(pod, 'bn_keycloak')).toMatchObject({ name: 'my-pg-secret', key: 'password' });
    // A user the pod knows nothing about: no reference (the adoption then refuses, naming the field).
    expect(passwordReference(pod, 'someone-else')).toBeUndefined();
  });

  it("reads the 10.x chart's secretKeyRef keys (postgresql-postgres-password / postgresql-password)", () => {
    const pod = databaseStatefulSet('keycloak-6.2.5-release-keycloak.yaml', 'keycloak-postgresql').spec?.template.spec;
    expect(passwordReference(pod, 'postgres')).toEqual({ name: 'keycloak-postgresql', key: 'postgresql-postgres-password', via: 'env POSTGRES_POSTGRES_PASSWORD (secretKeyRef)' });
    expect(passwordReference(pod, 'bn_keycloak')).toMatchObject({ key: 'postgresql-password' });
  });

  it('maps a file through a projected volume with items, and a subPath mount', () => {
    const pod: V1PodSpec = {
      containers: [
        {
          name: 'postgresql',
          env: [{ name: 'POSTGRESQL_POSTGRES_PASSWORD_FILE', value: '/secrets/db/admin' }],
          volumeMounts: [
            { name: 'other', mountPath: '/secrets' },
            { name: 'passwords', mountPath: '/secrets/db' },
          ],
        },
      ],
      volumes: [
        { name: 'other', secret: { secretName: 'unrelated' } },
        { name: 'passwords', projected: { sources: [{ secret: { name: 'tls' , items: [{ key: 'tls.crt', path: 'crt' }] } }, { secret: { name: 'pg-admin', items: [{ key: 'the-admin-key', path: 'admin' }] } }] } },
      ],
    };
    expect(passwordReference(pod, 'postgres')).toMatchObject({ name: 'pg-admin', key: 'the-admin-key' });
    const subPath: V1PodSpec = {
      containers: [{ name: 'pg', env: [{ name: 'POSTGRES_PASSWORD_FILE', value: '/run/pw' }], volumeMounts: [{ name: 'v', mountPath: '/run/pw', subPath: 'pw-key' }] }],
      volumes: [{ name: 'v', secret: { secretName: 's' } }],
    };
    expect(passwordReference(subPath, 'postgres')).toMatchObject({ name: 's', key: 'pw-key' });
  });

  it('finds nothing for a literal password or a file on a volume that is not a Secret', () => {
    const literal: V1PodSpec = { containers: [{ name: 'pg', env: [{ name: 'POSTGRES_POSTGRES_PASSWORD', value: 'in-the-manifest' }] }] };
    expect(passwordReference(literal, 'postgres')).toBeUndefined();
    const emptyDir: V1PodSpec = {
      containers: [{ name: 'pg', env: [{ name: 'POSTGRES_POSTGRES_PASSWORD_FILE', value: '/tmp/pw' }], volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }] }],
      volumes: [{ name: 'tmp', emptyDir: {} }],
    };
    expect(passwordReference(emptyDir, 'postgres')).toBeUndefined();
  });
});

describe('MIGRATION_SERVICE_ADDRESSES', () => {
  it('maps a Service (and a Service port) to where kubectl port-forward listens; otherwise the name itself', () => {
    const map = parseServiceAddresses(' db=127.0.0.1:15432, db:6432=localhost:16432,v6=[::1]:5433 ');
    expect(serviceAddress(map, 'db', 5432)).toEqual({ host: '127.0.0.1', port: 15432 });
    expect(serviceAddress(map, 'db', 6432)).toEqual({ host: 'localhost', port: 16432 });
    expect(serviceAddress(map, 'v6', 5432)).toEqual({ host: '::1', port: 5433 });
    expect(serviceAddress(map, 'keycloak-postgresql-primary', 5432)).toEqual({ host: 'keycloak-postgresql-primary', port: 5432 });
    expect(parseServiceAddresses(formatServiceAddresses(map))).toEqual(map);
    expect(parseServiceAddresses(undefined).size).toBe(0);
  });

  it('refuses a malformed entry naming the variable and the entry', () => {
    expect(() => parseServiceAddresses('db=127.0.0.1')).toThrow(RunnerError);
    expect(() => parseServiceAddresses('db=127.0.0.1')).toThrow(/MIGRATION_SERVICE_ADDRESSES must be comma-separated <service>\[:<port>\]=<host>:<port> entries, got "db=127.0.0.1"/);
    expect(() => parseServiceAddresses('db=127.0.0.1:70000')).toThrow(/port out of range in "db=127.0.0.1:70000"/);
  });
});
