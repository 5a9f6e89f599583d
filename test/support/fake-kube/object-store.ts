/**
 * The fake's etcd and generic registry: objects by type, namespace and name, with one global
 * resourceVersion counter, uid and creationTimestamp assigned on create, `metadata.generation`
 * bumped on spec changes, no-op updates that keep the resourceVersion (as the real server does),
 * and deletion as k8s.io/apiserver's generic registry does it (pkg/registry/generic/registry/
 * store.go): an object with finalizers (its own, or the garbage collector's `orphan` /
 * `foregroundDeletion` that the propagationPolicy adds) is only marked — `deletionTimestamp`,
 * `deletionGracePeriodSeconds: 0` — and goes when an update empties its finalizers. Dependents are
 * the garbage collector's business (garbage-collector.ts), asynchronously, as in a cluster.
 */
import { randomUUID } from 'node:crypto';
import { alreadyExists, conflict, invalid, notFound } from './status.js';
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
  finalizers?: string[];
  /** Set by the server when a DELETE finds finalizers; the object goes once they are gone. */
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
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

/** The garbage collector's finalizers (metav1.FinalizerOrphanDependents / FinalizerDeleteDependents). */
export const ORPHAN_FINALIZER = 'orphan';
export const FOREGROUND_FINALIZER = 'foregroundDeletion';

/** The answer of a delete: the object, and whether it is gone (false: marked, finalizers pending). */
export interface DeleteResult {
  object: KubeObject;
  removed: boolean;
}

/**
 * The finalizers a DELETE leaves on an object (store.go deletionFinalizersForGarbageCollection,
 * shouldOrphanDependents, shouldDeleteDependents): an explicit propagationPolicy decides; without
 * one, a GC finalizer already on the object stays; else the type's default (orphan for batch/v1
 * Jobs, nothing for the others). The object's own finalizers are kept.
 */
function finalizersAfterDelete(existing: readonly string[], propagation: DeletePropagation | undefined, orphanByDefault: boolean): string[] {
  const fromObject = (wanted: string, other: string): boolean | undefined => {
    for (const finalizer of existing) {
      if (finalizer === wanted) return true;
      if (finalizer === other) return false;
    }
    return undefined;
  };
  const orphan = propagation !== undefined ? propagation === 'Orphan' : (fromObject(ORPHAN_FINALIZER, FOREGROUND_FINALIZER) ?? orphanByDefault);
  const foreground = propagation !== undefined ? propagation === 'Foreground' : (fromObject(FOREGROUND_FINALIZER, ORPHAN_FINALIZER) ?? false);
  const kept = existing.filter((finalizer) => finalizer !== ORPHAN_FINALIZER && finalizer !== FOREGROUND_FINALIZER);
  if (orphan) kept.push(ORPHAN_FINALIZER);
  if (foreground) kept.push(FOREGROUND_FINALIZER);
  return kept;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const left = new Set(a);
  const right = new Set(b);
  return left.size === right.size && [...left].every((item) => right.has(item));
}

/** Go's `%#v` of a `[]string`, as field errors print a value. */
function goStringSlice(values: readonly string[]): string {
  return `[]string{${values.map((value) => JSON.stringify(value)).join(', ')}}`;
}

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

  /** uids of objects that were stored and are gone: what the garbage collector treats as absent owners. */
  private readonly gone = new Set<string>();

  constructor(private readonly emit: (event: ChangeEvent, object: KubeObject, info: ChangeInfo) => void) {}

  /** Whether an object with this uid existed and was deleted. */
  isGone(uid: string): boolean {
    return this.gone.has(uid);
  }

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

  /**
   * The stored objects themselves, uncopied, for the garbage collector's scans (each scans every
   * object and must stay cheap). Callers must not modify them.
   */
  *storedEntries(): Iterable<{ readonly resourceType: ResourceType; readonly object: KubeObject }> {
    for (const bucket of this.objects.values()) yield* bucket.values();
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
    // rest.BeforeCreate: a new object is never being deleted.
    delete metadata.deletionTimestamp;
    delete metadata.deletionGracePeriodSeconds;
    if (metadata.finalizers?.length === 0) delete metadata.finalizers;
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
    if (metadata.finalizers?.length === 0) delete metadata.finalizers;
    const terminating = current.metadata.deletionTimestamp !== undefined;
    if (terminating) {
      // rest.BeforeUpdate: an update can never remove or change the deletion timestamp, nor the
      // grace period; ValidateObjectMetaUpdate (ValidateNoNewFinalizers): no new finalizers can be
      // added to an object being deleted, only removed.
      metadata.deletionTimestamp = current.metadata.deletionTimestamp;
      if (current.metadata.deletionGracePeriodSeconds !== undefined) metadata.deletionGracePeriodSeconds = current.metadata.deletionGracePeriodSeconds;
      const before = new Set(current.metadata.finalizers ?? []);
      const added = [...new Set(metadata.finalizers ?? [])].filter((finalizer) => !before.has(finalizer)).sort();
      if (added.length > 0) {
        throw invalid(resourceType, input.metadata.name, [
          {
            field: 'metadata.finalizers',
            message: `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers ${goStringSlice(added)}`,
            reason: 'FieldValueForbidden',
          },
        ]);
      }
    } else {
      // Only a DELETE marks an object; a client cannot.
      delete metadata.deletionTimestamp;
      delete metadata.deletionGracePeriodSeconds;
    }
    object.metadata = metadata;
    if (canonical(object) === canonical(current)) return structuredClone(current);
    if (terminating && (metadata.finalizers ?? []).length === 0 && !current.metadata.deletionGracePeriodSeconds) {
      // store.go shouldDeleteDuringUpdate / deleteWithoutFinalizers: the update that removes the
      // last finalizer of an object being deleted deletes it. Watchers get DELETED with the last
      // stored state (the update itself is never stored); the writer gets the updated object.
      this.removeStored(resourceType, bucket, key, current);
      object.metadata.resourceVersion = this.currentResourceVersion();
      return structuredClone(object);
    }
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
   * A DELETE, as store.go Delete and updateForGracefulDeletionAndFinalizers do it (graceful
   * deletion — Pods' grace period — is not modelled: every type is deleted as if with grace 0):
   *
   * - the preconditions (uid, resourceVersion) are checked first (409 Conflict);
   * - the propagationPolicy sets the garbage collector's finalizer (`Foreground` →
   *   `foregroundDeletion`, `Orphan` → `orphan`, `Background` neither; unset keeps what the
   *   object has, else the type's default: orphan for batch/v1 Jobs);
   * - an object left with finalizers is marked — `deletionTimestamp` (set once), grace period 0,
   *   `generation` bumped the first time (markAsDeleting) — and stays readable: `removed: false`,
   *   and the HTTP answer is the object itself, 200 (handlers/delete.go). A DELETE of an object
   *   already marked changes nothing unless its policy changes the GC finalizers;
   * - an object left without finalizers is removed now; its dependents are collected later by
   *   the garbage collector (background cascading deletion).
   */
  delete(
    resourceType: ResourceType,
    namespace: string | undefined,
    name: string,
    options: { propagation?: DeletePropagation; expectedUid?: string; expectedResourceVersion?: string } = {},
  ): DeleteResult {
    const bucket = this.bucket(resourceType);
    const key = `${resourceType.namespaced ? (namespace ?? '') : ''}/${name}`;
    const existing = bucket.get(key);
    if (!existing) throw notFound(resourceType, name);
    const current = existing.object;
    if (options.expectedUid && options.expectedUid !== current.metadata.uid) {
      throw conflict(resourceType, name);
    }
    if (options.expectedResourceVersion && options.expectedResourceVersion !== current.metadata.resourceVersion) {
      throw conflict(resourceType, name);
    }
    const finalizers = current.metadata.finalizers ?? [];
    const after = finalizersAfterDelete(finalizers, options.propagation, resourceType.orphanDependentsByDefault ?? false);
    if (after.length > 0) {
      const marked = structuredClone(current);
      marked.metadata.finalizers = sameSet(finalizers, after) ? [...finalizers] : after;
      if (marked.metadata.deletionTimestamp === undefined) {
        if ((marked.metadata.generation ?? 0) > 0) marked.metadata.generation = (marked.metadata.generation ?? 0) + 1;
        marked.metadata.deletionTimestamp = kubeTimestamp();
      }
      marked.metadata.deletionGracePeriodSeconds = 0;
      // A repeated DELETE that changes nothing is a no-op write: same resourceVersion, no event.
      if (canonical(marked) === canonical(current)) return { object: structuredClone(current), removed: false };
      marked.metadata.resourceVersion = this.nextResourceVersion();
      bucket.set(key, { resourceType, object: marked });
      this.emit('MODIFIED', structuredClone(marked), { resourceType });
      return { object: structuredClone(marked), removed: false };
    }
    return { object: this.removeStored(resourceType, bucket, key, current), removed: true };
  }

  /** Removes a stored object: the deletion gets a resourceVersion of its own, carried by the deleted object. */
  private removeStored(
    resourceType: ResourceType,
    bucket: Map<string, { resourceType: ResourceType; object: KubeObject }>,
    key: string,
    current: KubeObject,
  ): KubeObject {
    bucket.delete(key);
    if (current.metadata.uid) this.gone.add(current.metadata.uid);
    const deleted = structuredClone(current);
    deleted.metadata.resourceVersion = this.nextResourceVersion();
    this.emit('DELETED', structuredClone(deleted), { resourceType });
    return deleted;
  }
}
