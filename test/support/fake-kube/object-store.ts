/**
 * The fake's etcd: objects by type, namespace and name, with one global resourceVersion counter,
 * uid and creationTimestamp assigned on create, `metadata.generation` bumped on spec changes,
 * no-op updates that keep the resourceVersion (as the real server does), and garbage collection
 * of dependents through ownerReferences on delete.
 */
import { randomUUID } from 'node:crypto';
import { alreadyExists, conflict, notFound } from './status.js';
import { apiVersionOf, type ResourceType } from './resource-types.js';

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  generateName?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  [key: string]: unknown;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

export type ChangeEvent = 'ADDED' | 'MODIFIED' | 'DELETED';

/** What changed: the type (with `plural`) and, for a subresource write, which one. */
export interface ChangeInfo {
  resourceType: ResourceType;
  subresource?: string;
}

export type DeletePropagation = 'Orphan' | 'Background' | 'Foreground';

/** Timestamps as the API server writes them: RFC 3339, seconds precision, UTC. */
export function kubeTimestamp(date = new Date()): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function specOf(object: KubeObject): unknown {
  const { metadata: _metadata, status: _status, ...rest } = object;
  return rest;
}

/** JSON with object keys sorted, so that equality ignores the order a client serialized keys in. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, inner: unknown) =>
    typeof inner === 'object' && inner !== null && !Array.isArray(inner)
      ? Object.fromEntries(Object.entries(inner as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : inner,
  );
}

function typeKey(resourceType: ResourceType): string {
  return `${resourceType.group}/${resourceType.plural}`;
}

export class ObjectStore {
  private resourceVersion = 1000;
  /** typeKey → "namespace/name" → object. */
  private readonly objects = new Map<string, Map<string, { resourceType: ResourceType; object: KubeObject }>>();

  constructor(private readonly emit: (event: ChangeEvent, object: KubeObject, info: ChangeInfo) => void) {}

  currentResourceVersion(): string {
    return String(this.resourceVersion);
  }

  private nextResourceVersion(): string {
    this.resourceVersion += 1;
    return String(this.resourceVersion);
  }

  private bucket(resourceType: ResourceType): Map<string, { resourceType: ResourceType; object: KubeObject }> {
    const key = typeKey(resourceType);
    let bucket = this.objects.get(key);
    if (!bucket) {
      bucket = new Map();
      this.objects.set(key, bucket);
    }
    return bucket;
  }

  get(resourceType: ResourceType, namespace: string | undefined, name: string): KubeObject | undefined {
    const entry = this.bucket(resourceType).get(`${namespace ?? ''}/${name}`);
    return entry ? structuredClone(entry.object) : undefined;
  }

  getOrThrow(resourceType: ResourceType, namespace: string | undefined, name: string): KubeObject {
    const object = this.get(resourceType, namespace, name);
    if (!object) throw notFound(resourceType, name);
    return object;
  }

  /** Objects of a type, in one namespace or (undefined) all, ordered by namespace and name. */
  list(resourceType: ResourceType, namespace?: string): KubeObject[] {
    return [...this.bucket(resourceType).values()]
      .map((entry) => entry.object)
      .filter((object) => namespace === undefined || object.metadata.namespace === namespace)
      .sort((a, b) =>
        `${a.metadata.namespace ?? ''}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace ?? ''}/${b.metadata.name}`),
      )
      .map((object) => structuredClone(object));
  }

  /** Every stored object with its type (for inspection and garbage collection). */
  all(): { resourceType: ResourceType; object: KubeObject }[] {
    return [...this.objects.values()].flatMap((bucket) =>
      [...bucket.values()].map((entry) => ({ resourceType: entry.resourceType, object: structuredClone(entry.object) })),
    );
  }

  create(resourceType: ResourceType, input: KubeObject): KubeObject {
    const object = structuredClone(input);
    const namespace = resourceType.namespaced ? object.metadata.namespace : undefined;
    const bucket = this.bucket(resourceType);
    const key = `${namespace ?? ''}/${object.metadata.name}`;
    if (bucket.has(key)) throw alreadyExists(resourceType, object.metadata.name);
    object.apiVersion = apiVersionOf(resourceType);
    object.kind = resourceType.kind;
    const metadata: ObjectMeta = { ...object.metadata };
    if (namespace === undefined) delete metadata.namespace;
    metadata.uid = randomUUID();
    metadata.resourceVersion = this.nextResourceVersion();
    metadata.creationTimestamp = kubeTimestamp();
    if (resourceType.hasGeneration) metadata.generation = 1;
    else delete metadata.generation;
    object.metadata = metadata;
    bucket.set(key, { resourceType, object });
    this.emit('ADDED', structuredClone(object), { resourceType });
    return structuredClone(object);
  }

  /**
   * Replaces an object. `expectedResourceVersion` (from the request body) is the optimistic
   * concurrency precondition: a stale one is a 409 Conflict. A write that changes nothing keeps
   * the resourceVersion and emits no event, like the real server.
   */
  update(
    resourceType: ResourceType,
    input: KubeObject,
    options: { expectedResourceVersion?: string; subresource?: string } = {},
  ): KubeObject {
    const namespace = resourceType.namespaced ? input.metadata.namespace : undefined;
    const bucket = this.bucket(resourceType);
    const key = `${namespace ?? ''}/${input.metadata.name}`;
    const existing = bucket.get(key);
    if (!existing) throw notFound(resourceType, input.metadata.name);
    const current = existing.object;
    if (options.expectedResourceVersion && options.expectedResourceVersion !== current.metadata.resourceVersion) {
      throw conflict(resourceType, input.metadata.name);
    }
    const object = structuredClone(input);
    object.apiVersion = apiVersionOf(resourceType);
    object.kind = resourceType.kind;
    const metadata: ObjectMeta = { ...object.metadata };
    // Identity fields are owned by the server: clients cannot change them.
    metadata.uid = current.metadata.uid;
    metadata.creationTimestamp = current.metadata.creationTimestamp;
    metadata.resourceVersion = current.metadata.resourceVersion;
    if (namespace === undefined) delete metadata.namespace;
    if (resourceType.hasGeneration) metadata.generation = current.metadata.generation ?? 1;
    else delete metadata.generation;
    object.metadata = metadata;
    if (canonical(object) === canonical(current)) return structuredClone(current);
    if (resourceType.hasGeneration && canonical(specOf(object)) !== canonical(specOf(current))) {
      metadata.generation = (current.metadata.generation ?? 1) + 1;
    }
    metadata.resourceVersion = this.nextResourceVersion();
    bucket.set(key, { resourceType, object });
    const info: ChangeInfo = { resourceType };
    if (options.subresource) info.subresource = options.subresource;
    this.emit('MODIFIED', structuredClone(object), info);
    return structuredClone(object);
  }

  /**
   * Deletes an object and, unless `propagation` is Orphan, its dependents (objects whose
   * ownerReferences name its uid), as the garbage collector would. Orphaned dependents lose the
   * owner reference.
   */
  delete(
    resourceType: ResourceType,
    namespace: string | undefined,
    name: string,
    options: { propagation?: DeletePropagation; expectedUid?: string; expectedResourceVersion?: string } = {},
  ): KubeObject {
    const bucket = this.bucket(resourceType);
    const key = `${resourceType.namespaced ? (namespace ?? '') : ''}/${name}`;
    const existing = bucket.get(key);
    if (!existing) throw notFound(resourceType, name);
    if (options.expectedUid && options.expectedUid !== existing.object.metadata.uid) {
      throw conflict(resourceType, name);
    }
    if (options.expectedResourceVersion && options.expectedResourceVersion !== existing.object.metadata.resourceVersion) {
      throw conflict(resourceType, name);
    }
    bucket.delete(key);
    const deleted = existing.object;
    // The real server bumps the resourceVersion on delete; the deleted object carries the new one.
    deleted.metadata.resourceVersion = this.nextResourceVersion();
    this.emit('DELETED', structuredClone(deleted), { resourceType });
    this.collectDependents(deleted, options.propagation ?? 'Background');
    return structuredClone(deleted);
  }

  private collectDependents(owner: KubeObject, propagation: DeletePropagation): void {
    const uid = owner.metadata.uid;
    for (const { resourceType, object } of this.all()) {
      const references = object.metadata.ownerReferences ?? [];
      if (!references.some((reference) => reference.uid === uid)) continue;
      const current = this.get(resourceType, object.metadata.namespace, object.metadata.name);
      if (!current) continue;
      const remaining = references.filter((reference) => reference.uid !== uid);
      if (propagation === 'Orphan' || remaining.length > 0) {
        current.metadata.ownerReferences = remaining;
        if (remaining.length === 0) delete current.metadata.ownerReferences;
        this.update(resourceType, current);
      } else {
        this.delete(resourceType, current.metadata.namespace, current.metadata.name, { propagation });
      }
    }
  }
}
