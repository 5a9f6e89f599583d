/**
 * {@link ClusterOps} over the fake API server: how Helm and Argo CD create, apply, delete and
 * wait, expressed against its object store (admin access, not in the request log, so the log
 * holds exactly the runner's calls).
 *
 * `apply` is the common effect of Helm's 3-way merge and `kubectl apply`: every field the
 * manifest carries is set (a `replicas` changed by the runner is set back), labels and annotations
 * are merged, `status` and controller-owned metadata stay. The result is compared with the stored
 * object after the API server's defaulting, so an apply with nothing to change writes nothing.
 * Updates to immutable fields are rejected with the real API server's message.
 *
 * `waitReady` is the tools' readiness: Helm waits on Job hooks until Complete (Failed rejects);
 * Argo CD's health checks: StatefulSet/Deployment ready replicas = desired for the observed
 * generation, PVC Bound, Pod Ready, Job Complete; everything else is healthy once it exists.
 */
import { randomBytes } from 'node:crypto';

import { type KubernetesObject, KubernetesObjectApi, PatchStrategy } from '@kubernetes/client-node';

import { applyDefaults, carryAllocatedValues, validateUpdate } from '../test/support/fake-kube/admission.js';
import type { FakeKubeApiServer, KubeObject as StoredObject } from '../test/support/fake-kube/index.js';

import type { ClusterOps } from './lifecycle.js';
import type { KubeObject } from './manifests.js';

const CLUSTER_SCOPED = new Set(['Namespace', 'PersistentVolume', 'ClusterRole', 'ClusterRoleBinding', 'StorageClass', 'CustomResourceDefinition', 'PriorityClass']);

/** How long a deletion may take before the rehearsal reports it stuck (a finalizer nobody removes). */
const DELETE_TIMEOUT_MS = 60_000;

export class FakeCluster implements ClusterOps {

  constructor(
    readonly server: FakeKubeApiServer,
    readonly namespace: string,
    private readonly pollMs = 50,
  ) {}

  /** The object as stored, with the namespace the tools would give it. */
  placed(object: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>): StoredObject {
    const copy = structuredClone(object) as StoredObject;
    if (CLUSTER_SCOPED.has(object.kind)) delete copy.metadata.namespace;
    else copy.metadata.namespace = object.metadata.namespace ?? this.namespace;
    return copy;
  }

  private reference(object: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>) {
    const placed = this.placed(object);
    return { apiVersion: object.apiVersion, kind: object.kind, name: object.metadata.name, namespace: placed.metadata.namespace };
  }

  unserved(objects: readonly KubeObject[]): KubeObject[] {
    return objects.filter((object) => !this.server.serves(object.apiVersion));
  }

  get(object: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>): StoredObject | undefined {
    return this.server.get(this.reference(object));
  }

  async create(object: KubeObject): Promise<void> {
    if (this.get(object)) {
      throw new Error(`${object.kind} "${object.metadata.name}" already exists`);
    }
    this.server.seed(this.placed(object));
  }

  async apply(object: KubeObject): Promise<'created' | 'configured' | 'unchanged'> {
    const live = this.get(object);
    if (!live) {
      this.server.seed(this.placed(object));
      return 'created';
    }
    const desired = this.placed(object);
    const merged: StoredObject = structuredClone(live);
    for (const [key, value] of Object.entries(desired)) {
      if (key === 'metadata' || key === 'status' || key === 'apiVersion' || key === 'kind') continue;
      merged[key] = structuredClone(value);
    }
    for (const field of ['labels', 'annotations'] as const) {
      const wanted = desired.metadata[field];
      if (wanted) merged.metadata[field] = { ...(live.metadata[field] ?? {}), ...wanted };
    }
    const resourceType = this.server.types.forObject(object.apiVersion, object.kind);
    carryAllocatedValues(resourceType, live, merged);
    applyDefaults(resourceType, merged);
    if (canonical(stripVolatile(merged)) === canonical(stripVolatile(live))) return 'unchanged';
    validateUpdate(resourceType, live, merged);
    // The store bumps metadata.generation when the spec changes, as the API server does.
    this.server.upsert(merged);
    return 'configured';
  }

  /**
   * A real server-side apply through the API server (PATCH `application/apply-patch+yaml`), so
   * field ownership, managedFields and conflicts are the fake API server's, as they are the real
   * one's. The request is logged under `fieldManager`'s own user.
   */
  async serverSideApply(object: KubeObject, fieldManager: string, force: boolean): Promise<'created' | 'configured' | 'unchanged'> {
    let client = this.appliers.get(fieldManager);
    if (!client) {
      const token = `${fieldManager}-${randomBytes(8).toString('hex')}`;
      this.server.addToken(token, { name: fieldManager, groups: ['system:masters', 'system:authenticated'], admin: true });
      client = KubernetesObjectApi.makeApiClient(this.server.kubeConfig(token, this.namespace));
      this.appliers.set(fieldManager, client);
    }
    const before = this.get(object)?.metadata.resourceVersion;
    const placed = this.placed(object);
    await client.patch(placed as unknown as KubernetesObject, undefined, undefined, fieldManager, force, PatchStrategy.ServerSideApply);
    const after = this.get(object)?.metadata.resourceVersion;
    return before === undefined ? 'created' : before === after ? 'unchanged' : 'configured';
  }

  private readonly appliers = new Map<string, KubernetesObjectApi>();

  async delete(object: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>, propagation: 'Foreground' | 'Background' = 'Background'): Promise<boolean> {
    // The DELETE only marks an object with finalizers, and a foreground one (Argo CD's prune)
    // waits for the garbage collector to delete its dependents first: wait until it is gone, as
    // the tools do (Helm's WaitForDelete of hooks, Argo CD before creating a hook again or
    // moving past a pruning wave).
    const reference = this.reference(object);
    if (!this.server.remove(reference, propagation)) return false;
    await this.server.waitUntilGone(reference, DELETE_TIMEOUT_MS, Math.min(this.pollMs, 10));
    return true;
  }

  async waitReady(object: KubeObject, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const live = this.get(object);
      const verdict = live ? readiness(live) : { ready: false, reason: 'not found' };
      if (verdict.failed) throw new Error(verdict.reason);
      if (verdict.ready) return;
      if (Date.now() > deadline) {
        throw new Error(`${object.kind} ${object.metadata.name} not ready after ${timeoutMs} ms: ${verdict.reason ?? 'no reason reported'}`);
      }
      await new Promise((resolve) => setTimeout(resolve, this.pollMs));
    }
  }
}

interface Readiness {
  ready: boolean;
  failed?: boolean;
  reason?: string;
}

/** The tools' readiness rules per kind. */
export function readiness(object: StoredObject): Readiness {
  const status = (object.status ?? {}) as Record<string, unknown>;
  const spec = (object.spec ?? {}) as Record<string, unknown>;
  const generation = object.metadata.generation as number | undefined;
  switch (object.kind) {
    case 'Job': {
      const conditions = (status.conditions ?? []) as { type: string; status: string; reason?: string; message?: string }[];
      const failed = conditions.find((c) => c.type === 'Failed' && c.status === 'True');
      if (failed) return { ready: false, failed: true, reason: `job failed: ${failed.reason ?? ''}${failed.message ? `: ${failed.message}` : ''}` };
      if (conditions.some((c) => c.type === 'Complete' && c.status === 'True')) return { ready: true };
      return { ready: false, reason: 'job not complete' };
    }
    case 'StatefulSet':
    case 'Deployment': {
      const desired = (spec.replicas as number | undefined) ?? 1;
      const ready = (status.readyReplicas as number | undefined) ?? 0;
      const observed = status.observedGeneration as number | undefined;
      if (generation !== undefined && (observed === undefined || observed < generation)) {
        return { ready: false, reason: `observed generation ${observed} < ${generation}` };
      }
      return ready >= desired ? { ready: true } : { ready: false, reason: `${ready}/${desired} replicas ready` };
    }
    case 'PersistentVolumeClaim':
      return status.phase === 'Bound' ? { ready: true } : { ready: false, reason: `PVC phase ${String(status.phase)}` };
    case 'Pod': {
      const conditions = (status.conditions ?? []) as { type: string; status: string }[];
      return conditions.some((c) => c.type === 'Ready' && c.status === 'True') ? { ready: true } : { ready: false, reason: 'pod not ready' };
    }
    case 'Cluster':
      if (object.apiVersion === 'postgresql.cnpg.io/v1') {
        const health = cloudNativePgClusterHealth(object);
        return health.status === 'Healthy' ? { ready: true } : { ready: false, reason: `Cluster ${health.status}: ${health.message ?? ''}` };
      }
      return { ready: true };
    default:
      return { ready: true };
  }
}

/**
 * The phases of a CloudNativePG Cluster as Argo CD's health check maps them
 * (argo-cd resource_customizations/postgresql.cnpg.io/Cluster/health.lua).
 */
const CNPG_PHASE_HEALTH: Readonly<Record<string, 'Healthy' | 'Progressing' | 'Degraded' | 'Suspended'>> = {
  'Cluster in healthy state': 'Healthy',
  'Setting up primary': 'Progressing',
  'Creating a new replica': 'Progressing',
  'Upgrading cluster': 'Progressing',
  'Waiting for the instances to become active': 'Progressing',
  'Promoting to primary cluster': 'Progressing',
  'Switchover in progress': 'Degraded',
  'Failing over': 'Degraded',
  'Upgrading Postgres major version': 'Degraded',
  'Cluster upgrade delayed': 'Degraded',
  'Waiting for user action': 'Degraded',
  'Primary instance is being restarted in-place': 'Degraded',
  'Primary instance is being restarted without a switchover': 'Degraded',
  'Cluster cannot execute instance online upgrade due to missing architecture binary': 'Degraded',
  'Online upgrade in progress': 'Degraded',
  'Applying configuration': 'Degraded',
  'Unable to create required cluster objects': 'Suspended',
  'Cluster cannot proceed to reconciliation due to an unknown plugin being required': 'Suspended',
  'Cluster has incomplete or invalid image catalog': 'Suspended',
  'Cluster is unrecoverable and needs manual intervention': 'Suspended',
};

/** Argo CD's health of a `postgresql.cnpg.io/v1` Cluster, rule for rule as health.lua decides it. */
export function cloudNativePgClusterHealth(object: StoredObject): { status: 'Healthy' | 'Progressing' | 'Degraded' | 'Suspended' | 'Unknown'; message?: string } {
  if (object.metadata.annotations?.['cnpg.io/reconciliation'] === 'disabled') return { status: 'Suspended', message: 'Cluster reconciliation is suspended' };
  const status = object.status as { phase?: string; phaseReason?: string; conditions?: { type: string; status: string; message?: string }[] } | undefined;
  if (status?.conditions !== undefined) {
    const hibernation = status.conditions.find((condition) => condition.type === 'cnpg.io/hibernation');
    if (hibernation) return { status: hibernation.status === 'True' ? 'Suspended' : 'Degraded', message: hibernation.message };
    return { status: CNPG_PHASE_HEALTH[status.phase ?? ''] ?? 'Unknown', message: status.phaseReason };
  }
  return { status: 'Progressing', message: status?.phaseReason };
}

function stripVolatile(object: StoredObject): unknown {
  const { status: _status, ...rest } = object;
  const { resourceVersion: _rv, generation: _g, managedFields: _m, ...metadata } = rest.metadata as Record<string, unknown>;
  return { ...rest, metadata };
}

function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, inner: unknown) =>
    typeof inner === 'object' && inner !== null && !Array.isArray(inner)
      ? Object.fromEntries(Object.entries(inner as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : inner,
  );
}
