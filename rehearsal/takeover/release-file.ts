/**
 * A user's rendered Bitnami `keycloak` release (`helm get manifest <release>`, or `helm template`),
 * read and checked before anything is started: it must be Kubernetes YAML, hold exactly one
 * candidate database (a PostgreSQL StatefulSet that is not a read replica) and a Keycloak
 * StatefulSet. Anything else is a {@link ReleaseFileError} naming the file and what was found.
 */
import { existsSync, readFileSync } from 'node:fs';

import { parseManifestText, type KubeObject } from '../manifests.js';

export class ReleaseFileError extends Error {
  override readonly name = 'ReleaseFileError';
}

export interface BitnamiReleaseFile {
  readonly file: string;
  readonly objects: readonly KubeObject[];
  /** Helm release name: `--release`, else the Keycloak StatefulSet's `app.kubernetes.io/instance`. */
  readonly release: string;
  /** `--namespace`, else the objects' namespace, else `default` (Helm's). */
  readonly namespace: string;
  readonly database: {
    readonly statefulSet: string;
    readonly image: string;
    /** The PostgreSQL major of the image tag (`…/postgresql:17.6.0-…` → 17). */
    readonly tagMajor: number;
  };
  readonly keycloak: {
    readonly statefulSet: string;
    /** Keycloak's Service (the one selecting its pods with port 80), if the file has one. */
    readonly service?: string;
    /** The Secret holding Bitnami's admin password (`admin-password`, user `user`). */
    readonly adminSecret?: string;
  };
}

interface ContainerLike {
  name: string;
  image?: string;
  env?: { name: string; value?: string }[];
}

function containersOf(object: KubeObject): ContainerLike[] {
  return ((object.spec as { template?: { spec?: { containers?: ContainerLike[] } } } | undefined)?.template?.spec?.containers ?? []) as ContainerLike[];
}

function envValue(container: ContainerLike, name: string): string | undefined {
  return container.env?.find((variable) => variable.name === name)?.value;
}

/** A PostgreSQL server container of Bitnami's `postgresql` chart (its image, or its POSTGRES_* variables). */
function postgresContainer(object: KubeObject): ContainerLike | undefined {
  return containersOf(object).find(
    (container) => /(^|\/)postgresql(-repmgr)?:/.test(container.image ?? '') || (container.env ?? []).some((variable) => variable.name === 'POSTGRES_USER' || variable.name === 'POSTGRESQL_USERNAME'),
  );
}

/** A read replica streams from the primary; it is not where Keycloak writes. */
function isReadReplica(object: KubeObject, container: ContainerLike): boolean {
  const labels = object.metadata.labels ?? {};
  return envValue(container, 'POSTGRES_REPLICATION_MODE') === 'slave' || envValue(container, 'POSTGRESQL_REPLICATION_MODE') === 'slave' || labels['app.kubernetes.io/component'] === 'read';
}

export function imageTagMajor(image: string): number | undefined {
  const tag = /:(\d+)(?:\.|-|$)/.exec(image)?.[1];
  return tag === undefined ? undefined : Number(tag);
}

/** Reads and checks `file`; `release`/`namespace` override what the file says. */
export function readReleaseFile(file: string, options: { release?: string; namespace?: string } = {}): BitnamiReleaseFile {
  if (!existsSync(file)) throw new ReleaseFileError(`${file}: no such file (pass the output of \`helm get manifest <release> -n <namespace>\`)`);
  let objects: KubeObject[];
  try {
    objects = parseManifestText(readFileSync(file, 'utf8'), file);
  } catch (error) {
    throw new ReleaseFileError(`${file} is not Kubernetes YAML: ${(error as Error).message.replace(`${file}: `, '')}`, { cause: error });
  }
  if (objects.length === 0) throw new ReleaseFileError(`${file} holds no Kubernetes objects (pass the output of \`helm get manifest <release>\`)`);
  const found = summarize(objects);

  const statefulSets = objects.filter((object) => object.kind === 'StatefulSet');
  const databases = statefulSets
    .map((object) => ({ object, container: postgresContainer(object) }))
    .filter((candidate): candidate is { object: KubeObject; container: ContainerLike } => candidate.container !== undefined);
  const candidates = databases.filter(({ object, container }) => !isReadReplica(object, container));
  if (candidates.length === 0) {
    throw new ReleaseFileError(
      `${file} holds no PostgreSQL: no StatefulSet runs a postgresql image or sets POSTGRES_USER (found ${found}); the rehearsal needs the release's bundled database (postgresql.enabled: true)`,
    );
  }
  if (candidates.length > 1) {
    throw new ReleaseFileError(
      `${file} holds ${candidates.length} candidate databases: ${candidates.map(({ object, container }) => `StatefulSet ${object.metadata.name} (${container.image ?? 'no image'})`).join(', ')}; pass the manifests of one release`,
    );
  }
  const database = candidates[0]!;
  const tagMajor = imageTagMajor(database.container.image ?? '');
  if (tagMajor === undefined) {
    throw new ReleaseFileError(`${file}: the image of StatefulSet ${database.object.metadata.name} (${database.container.image ?? 'none'}) carries no PostgreSQL version tag`);
  }

  const keycloaks = statefulSets.filter((object) => containersOf(object).some((container) => /(^|\/)keycloak:/.test(container.image ?? '')));
  if (keycloaks.length !== 1) {
    throw new ReleaseFileError(
      `${file} holds ${keycloaks.length === 0 ? 'no' : keycloaks.length} Keycloak StatefulSet${keycloaks.length > 1 ? `s (${keycloaks.map((k) => k.metadata.name).join(', ')})` : ''} (found ${found}); pass the manifests of one Bitnami keycloak release`,
    );
  }
  const keycloak = keycloaks[0]!;
  const release = options.release ?? keycloak.metadata.labels?.['app.kubernetes.io/instance'];
  if (!release) throw new ReleaseFileError(`${file}: StatefulSet ${keycloak.metadata.name} has no app.kubernetes.io/instance label: pass --release <name>`);
  const namespace = options.namespace ?? objects.find((object) => object.metadata.namespace)?.metadata.namespace ?? 'default';

  const podLabels = (keycloak.spec as { template?: { metadata?: { labels?: Record<string, string> } } }).template?.metadata?.labels ?? {};
  const service = objects.find((object) => {
    if (object.kind !== 'Service') return false;
    const spec = object.spec as { clusterIP?: string; selector?: Record<string, string>; ports?: { port: number }[] };
    const selects = Object.entries(spec.selector ?? {}).length > 0 && Object.entries(spec.selector ?? {}).every(([key, value]) => podLabels[key] === value);
    return selects && spec.clusterIP !== 'None' && (spec.ports ?? []).some((port) => port.port === 80);
  });
  const adminSecret = objects.find(
    (object) => object.kind === 'Secret' && object.metadata.name === keycloak.metadata.name && 'admin-password' in ((object.data ?? object.stringData ?? {}) as object),
  );
  return {
    file,
    objects,
    release,
    namespace,
    database: { statefulSet: database.object.metadata.name, image: database.container.image ?? '', tagMajor },
    keycloak: { statefulSet: keycloak.metadata.name, service: service?.metadata.name, adminSecret: adminSecret?.metadata.name },
  };
}

/** "2 StatefulSets (a, b), 3 Services, …" for messages. */
function summarize(objects: readonly KubeObject[]): string {
  const byKind = new Map<string, string[]>();
  for (const object of objects) byKind.set(object.kind, [...(byKind.get(object.kind) ?? []), object.metadata.name]);
  return [...byKind]
    .map(([kind, names]) => (kind === 'StatefulSet' ? `${names.length} StatefulSet${names.length > 1 ? 's' : ''} (${names.join(', ')})` : `${names.length} ${kind}`))
    .join(', ');
}
