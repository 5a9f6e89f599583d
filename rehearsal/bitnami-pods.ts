/**
 * What the rehearsal needs to back the pods of a real Bitnami `keycloak` release (its bundled
 * `postgresql` StatefulSet and its Keycloak StatefulSet) with processes, kept apart from
 * workloads.ts so that the project's own shapes and Bitnami's stay easy to tell apart:
 *
 * - Bitnami's images read a password from `<NAME>_FILE` when the variable itself is unset
 *   (`postgresql-env.sh`, `keycloak-env.sh`: "POSTGRES_PASSWORD_FILE", "KC_DB_PASSWORD_FILE"); the
 *   file lives in a Secret volume (plain or projected) of the pod. {@link resolvePasswordFiles}
 *   reads it from the Secret the volume names, as the kubelet would have mounted it.
 * - Bitnami's Keycloak names its database either with a JDBC URL (`KC_DB_URL`, chart 24+) or with
 *   `KEYCLOAK_DATABASE_HOST/PORT/NAME/USER` (older charts), from the `<fullname>-env-vars`
 *   ConfigMap; {@link bitnamiKeycloakDatabase} reads both.
 */
import type { FakeKubeApiServer, KubeObject as StoredObject } from '../test/support/fake-kube/index.js';

import { PodConfigError, type Container } from './pod-env.js';

interface SecretProjection {
  secret?: { name?: string; secretName?: string; items?: { key: string; path: string }[]; optional?: boolean };
}

interface PodVolume {
  name: string;
  secret?: { secretName: string; items?: { key: string; path: string }[]; optional?: boolean };
  projected?: { sources?: SecretProjection[] };
}

/** Variables that Bitnami's images take from a file when they are not set themselves. */
const FILE_VARIABLES = [
  'POSTGRES_PASSWORD',
  'POSTGRES_POSTGRES_PASSWORD',
  'POSTGRES_REPLICATION_PASSWORD',
  'POSTGRESQL_PASSWORD',
  'POSTGRESQL_POSTGRES_PASSWORD',
  'KC_DB_PASSWORD',
  'KEYCLOAK_DATABASE_PASSWORD',
];

/**
 * Bitnami's `architecture: replication` role of a postgresql container (`POSTGRES_REPLICATION_MODE`,
 * `POSTGRESQL_REPLICATION_MODE` in older charts): `master` for the primary, `slave` for a read
 * replica streaming from `POSTGRES_MASTER_HOST`; undefined for a standalone server.
 */
export function bitnamiReplicationMode(container: Container): 'master' | 'slave' | undefined {
  const value = (container.env ?? []).find((v) => v.name === 'POSTGRES_REPLICATION_MODE' || v.name === 'POSTGRESQL_REPLICATION_MODE')?.value;
  return value === 'master' || value === 'slave' ? value : undefined;
}

/**
 * `env` with each `<NAME>` of {@link FILE_VARIABLES} that is unset filled from the file `<NAME>_FILE`
 * names. A Secret that is not there yet is a {@link PodConfigError} (the kubelet would not start
 * the container: callers wait); a file no volume provides is a plain error (the pod is wrong).
 */
export function resolvePasswordFiles(server: FakeKubeApiServer, pod: StoredObject, container: Container, env: Record<string, string>): Record<string, string> {
  const resolved = { ...env };
  for (const name of FILE_VARIABLES) {
    const path = env[`${name}_FILE`];
    if (resolved[name] === undefined && path) resolved[name] = mountedSecretFile(server, pod, container, path);
  }
  return resolved;
}

/** The content of `path` inside the container when it lies in a Secret volume (plain or projected). */
export function mountedSecretFile(server: FakeKubeApiServer, pod: StoredObject, container: Container, path: string): string {
  const mount = (container.volumeMounts ?? [])
    .filter((m) => path.startsWith(m.mountPath.endsWith('/') ? m.mountPath : `${m.mountPath}/`))
    .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  const where = `container ${container.name} of pod ${pod.metadata.name}`;
  if (!mount) throw new Error(`${where}: ${path} is on no volume mount`);
  const relative = path.slice(mount.mountPath.replace(/\/$/, '').length + 1);
  const volume = ((pod.spec as { volumes?: PodVolume[] }).volumes ?? []).find((v) => v.name === mount.name);
  const sources: SecretProjection['secret'][] = volume?.secret
    ? [{ ...volume.secret, name: volume.secret.secretName }]
    : (volume?.projected?.sources ?? []).map((source) => source.secret).filter((secret) => secret !== undefined);
  if (sources.length === 0) throw new Error(`${where}: ${path} is on volume ${mount.name}, which is no Secret volume`);
  for (const source of sources) {
    const name = source!.name ?? source!.secretName!;
    const key = source!.items ? source!.items.find((item) => item.path === relative)?.key : relative;
    if (key === undefined) continue;
    const secret = server.get({ apiVersion: 'v1', kind: 'Secret', name, namespace: pod.metadata.namespace });
    if (!secret) throw new PodConfigError(`${where}: secret "${name}" not found (volume ${mount.name})`);
    const value = (secret.data as Record<string, string> | undefined)?.[key];
    if (value !== undefined) return Buffer.from(value, 'base64').toString('utf8');
    if (source!.items) throw new PodConfigError(`${where}: couldn't find key ${key} in Secret ${name} (volume ${mount.name})`);
  }
  throw new Error(`${where}: no Secret of volume ${mount.name} provides ${relative}`);
}

/** A Keycloak container of Bitnami's image (configured by `KEYCLOAK_*`/`KC_*` from its ConfigMap), not this project's (`KC_DB` in its own env). */
export function isBitnamiKeycloak(container: Container): boolean {
  const ownEnv = new Set((container.env ?? []).map((variable) => variable.name));
  return /(^|\/)keycloak:/.test(container.image ?? '') && !ownEnv.has('KC_DB');
}

export interface KeycloakDatabase {
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
  readonly password: string;
  readonly schema: string;
}

/** Where Bitnami's Keycloak connects, from its resolved environment (passwords from files already read). */
export function bitnamiKeycloakDatabase(env: Record<string, string>, pod: string): KeycloakDatabase {
  const need = (name: string): string => {
    const value = env[name];
    if (!value) throw new Error(`pod ${pod}: Bitnami's Keycloak needs ${name}, which its environment does not set`);
    return value;
  };
  if (env.KC_DB_URL) {
    const url = /^jdbc:postgresql:\/\/([^:/?]+)(?::(\d+))?\/([^?]+)(?:\?(.*))?$/.exec(env.KC_DB_URL);
    if (!url) throw new Error(`pod ${pod}: KC_DB_URL ${env.KC_DB_URL} is not a jdbc:postgresql://host[:port]/database URL`);
    const schema = env.KC_DB_SCHEMA || new URLSearchParams(url[4] ?? '').get('currentSchema') || 'public';
    return { host: url[1]!, port: Number(url[2] ?? 5432), database: url[3]!, user: need('KC_DB_USERNAME'), password: need('KC_DB_PASSWORD'), schema };
  }
  return {
    host: need('KEYCLOAK_DATABASE_HOST'),
    port: Number(env.KEYCLOAK_DATABASE_PORT ?? 5432),
    database: need('KEYCLOAK_DATABASE_NAME'),
    user: need('KEYCLOAK_DATABASE_USER'),
    password: need('KEYCLOAK_DATABASE_PASSWORD'),
    schema: env.KEYCLOAK_DATABASE_SCHEMA || 'public',
  };
}
