/**
 * The resource types the fake API server knows, as the real API server's discovery documents
 * describe them: group, version, plural (the URL segment), kind, scope and subresources.
 *
 * Anything not listed is still accepted through the generic fallback (see `resolveResourceType`)
 * so that a rehearsal can apply whole charts, including custom resources such as CloudNativePG's
 * `Cluster`: the fallback treats the unknown plural as a namespaced custom resource.
 */

export interface ResourceType {
  /** API group; '' for the core group served under /api/v1. */
  readonly group: string;
  readonly version: string;
  /** The plural resource name used in URLs and RBAC rules, e.g. `statefulsets`. */
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
  /** `scale` for workloads, `status` for objects whose status is written by a controller. */
  readonly subresources: readonly ('scale' | 'status')[];
  /**
   * Whether `metadata.generation` is maintained (objects with a spec that a controller observes:
   * workloads, Jobs, custom resources). ConfigMaps and Secrets have none on a real server.
   */
  readonly hasGeneration: boolean;
  /**
   * Whether DELETE answers with the deleted object (pods, services, custom resources) rather than
   * a `Status` of success (most built-in types), as the real registries do.
   */
  readonly deleteReturnsObject: boolean;
  /**
   * Whether a DELETE without a propagationPolicy orphans the dependents (the registry strategy's
   * DefaultGarbageCollectionPolicy): true for batch/v1 Jobs only, kept for backwards compatibility
   * (pkg/registry/batch/job/strategy.go), which is why `kubectl delete job` leaves no Pods only
   * because kubectl sends Background.
   */
  readonly orphanDependentsByDefault?: boolean;
}

function type(
  group: string,
  version: string,
  plural: string,
  kind: string,
  options: Partial<Pick<ResourceType, 'namespaced' | 'subresources' | 'hasGeneration' | 'deleteReturnsObject' | 'orphanDependentsByDefault'>> = {},
): ResourceType {
  return {
    group,
    version,
    plural,
    kind,
    namespaced: options.namespaced ?? true,
    subresources: options.subresources ?? [],
    hasGeneration: options.hasGeneration ?? false,
    deleteReturnsObject: options.deleteReturnsObject ?? false,
    orphanDependentsByDefault: options.orphanDependentsByDefault ?? false,
  };
}

const workload = { subresources: ['scale', 'status'] as const, hasGeneration: true };

/** Built-in types served by the fake, with the same scope and subresources as Kubernetes 1.31. */
export const BUILT_IN_RESOURCE_TYPES: readonly ResourceType[] = [
  type('', 'v1', 'configmaps', 'ConfigMap'),
  type('', 'v1', 'secrets', 'Secret'),
  type('', 'v1', 'pods', 'Pod', { subresources: ['status'], deleteReturnsObject: true }),
  type('', 'v1', 'events', 'Event'),
  type('', 'v1', 'persistentvolumeclaims', 'PersistentVolumeClaim', { subresources: ['status'] }),
  type('', 'v1', 'persistentvolumes', 'PersistentVolume', { namespaced: false, subresources: ['status'] }),
  type('', 'v1', 'services', 'Service', { subresources: ['status'], deleteReturnsObject: true }),
  type('', 'v1', 'serviceaccounts', 'ServiceAccount'),
  type('', 'v1', 'endpoints', 'Endpoints'),
  type('', 'v1', 'namespaces', 'Namespace', { namespaced: false, subresources: ['status'], deleteReturnsObject: true }),
  type('apps', 'v1', 'statefulsets', 'StatefulSet', workload),
  type('apps', 'v1', 'deployments', 'Deployment', workload),
  type('apps', 'v1', 'replicasets', 'ReplicaSet', workload),
  type('batch', 'v1', 'jobs', 'Job', { subresources: ['status'], hasGeneration: true, orphanDependentsByDefault: true }),
  type('coordination.k8s.io', 'v1', 'leases', 'Lease'),
  type('events.k8s.io', 'v1', 'events', 'Event'),
  type('rbac.authorization.k8s.io', 'v1', 'roles', 'Role'),
  type('rbac.authorization.k8s.io', 'v1', 'rolebindings', 'RoleBinding'),
  type('rbac.authorization.k8s.io', 'v1', 'clusterroles', 'ClusterRole', { namespaced: false }),
  type('rbac.authorization.k8s.io', 'v1', 'clusterrolebindings', 'ClusterRoleBinding', { namespaced: false }),
  type('policy', 'v1', 'poddisruptionbudgets', 'PodDisruptionBudget', { subresources: ['status'], hasGeneration: true }),
  type('networking.k8s.io', 'v1', 'networkpolicies', 'NetworkPolicy', { hasGeneration: true }),
  type('networking.k8s.io', 'v1', 'ingresses', 'Ingress', { subresources: ['status'], hasGeneration: true }),
  type('autoscaling', 'v2', 'horizontalpodautoscalers', 'HorizontalPodAutoscaler', { subresources: ['status'], hasGeneration: true }),
  type('postgresql.cnpg.io', 'v1', 'clusters', 'Cluster', { subresources: ['scale', 'status'], hasGeneration: true, deleteReturnsObject: true }),
  type('monitoring.coreos.com', 'v1', 'servicemonitors', 'ServiceMonitor', { hasGeneration: true, deleteReturnsObject: true }),
  type('monitoring.coreos.com', 'v1', 'podmonitors', 'PodMonitor', { hasGeneration: true, deleteReturnsObject: true }),
];

/** Registry of types, extended at run time by the generic fallback and `registerResourceType`. */
export class ResourceTypeRegistry {
  private readonly types: ResourceType[] = [...BUILT_IN_RESOURCE_TYPES];
  /** Groups the cluster does not serve: their CRDs are not installed (see {@link withdrawGroup}). */
  private readonly withdrawn = new Set<string>();

  /**
   * The cluster without the CRDs of `group`: discovery no longer lists it and every request under
   * it is answered 404, as a real API server answers for a group nobody registered.
   */
  withdrawGroup(group: string): void {
    this.withdrawn.add(group);
  }

  /** Whether objects of `apiVersion` can be stored (core and built-in groups always). */
  serves(apiVersion: string): boolean {
    return !this.withdrawn.has(splitApiVersion(apiVersion).group);
  }

  register(resourceType: ResourceType): void {
    const existing = this.byPlural(resourceType.group, resourceType.version, resourceType.plural);
    if (existing) return;
    this.types.push(resourceType);
  }

  all(): readonly ResourceType[] {
    return this.types.filter((t) => !this.withdrawn.has(t.group));
  }

  byPlural(group: string, version: string, plural: string): ResourceType | undefined {
    return this.types.find((t) => t.group === group && t.version === version && t.plural === plural);
  }

  /** Looks up by `apiVersion` (`v1`, `apps/v1`) and kind, as a manifest names its type. */
  byKind(apiVersion: string, kind: string): ResourceType | undefined {
    const { group, version } = splitApiVersion(apiVersion);
    return this.types.find((t) => t.group === group && t.version === version && t.kind === kind);
  }

  /**
   * The type behind a URL. Unknown plurals become namespaced custom resources (kind taken from
   * the request body when there is one) so that a chart's custom resources can be stored; a
   * cluster-scoped unknown type must be registered first, as its CRD would have to be.
   */
  resolve(group: string, version: string, plural: string, kindFromBody?: string): ResourceType | undefined {
    if (this.withdrawn.has(group)) return undefined;
    const known = this.byPlural(group, version, plural);
    if (known) return known;
    const fallback = type(group, version, plural, kindFromBody ?? kindFromPlural(plural), {
      subresources: ['status'],
      hasGeneration: true,
      deleteReturnsObject: true,
    });
    // Only remember it once an object names its kind, so discovery answers with the real kind.
    if (kindFromBody) this.types.push(fallback);
    return fallback;
  }

  /** The type for an object, inventing the plural the way CRDs conventionally name it. */
  forObject(apiVersion: string, kind: string): ResourceType {
    const { group, version } = splitApiVersion(apiVersion);
    if (this.withdrawn.has(group)) throw new Error(`no matches for kind "${kind}" in version "${apiVersion}": the group ${group} is withdrawn (its CRD is not installed)`);
    const known = this.byKind(apiVersion, kind);
    if (known) return known;
    return this.resolve(group, version, pluralFromKind(kind), kind) as ResourceType;
  }
}

export function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const slash = apiVersion.indexOf('/');
  return slash < 0
    ? { group: '', version: apiVersion }
    : { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1) };
}

export function apiVersionOf(resourceType: Pick<ResourceType, 'group' | 'version'>): string {
  return resourceType.group ? `${resourceType.group}/${resourceType.version}` : resourceType.version;
}

/** `statefulsets.apps` — how the real server names a grouped resource in messages. */
export function qualifiedResource(resourceType: Pick<ResourceType, 'group' | 'plural'>): string {
  return resourceType.group ? `${resourceType.plural}.${resourceType.group}` : resourceType.plural;
}

function pluralFromKind(kind: string): string {
  const lower = kind.toLowerCase();
  if (/(s|x|z|ch|sh)$/.test(lower)) return `${lower}es`;
  if (/[^aeiou]y$/.test(lower)) return `${lower.slice(0, -1)}ies`;
  return `${lower}s`;
}

function kindFromPlural(plural: string): string {
  const singular = plural.endsWith('ies') ? `${plural.slice(0, -3)}y` : plural.replace(/s$/, '');
  return singular.charAt(0).toUpperCase() + singular.slice(1);
}
