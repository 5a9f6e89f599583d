/**
 * One place that makes pods pass the Pod Security "restricted" profile and gives every container
 * requests and limits. Raw `k8s.Kube*` pod specs use the `restricted*` and `resourceRequirements`
 * functions; cdk8s-plus-27 workloads use the `plus*` functions plus {@link hardenPlusWorkload},
 * because plus-27 can express neither `seccompProfile` nor `capabilities.drop: [ALL]`.
 */
import { ApiObject, JsonPatch, Size } from 'cdk8s';
import * as plus from 'cdk8s-plus-27';
import { k8s } from 'cdk8s-plus-27';
import { parseQuantity, validateCpu, validateIntegerRange, validateSize } from './validation.js';

/** User and group ids of a pod. All must be non-zero: "restricted" forbids running as root. */
export interface PodSecurityOptions {
  /**
   * UID every container runs as.
   *
   * @default - the construct's image's own non-root user (1001 for Bitnami, 1000 for Keycloak)
   */
  readonly runAsUser?: number;
  /**
   * Primary GID of every container.
   *
   * @default - same as runAsUser
   */
  readonly runAsGroup?: number;
  /**
   * Group that owns mounted volumes, so a non-root user can write its data volume.
   *
   * @default - same as runAsGroup
   */
  readonly fsGroup?: number;
}

/** Fully resolved ids; see {@link resolvePodSecurity}. */
export interface ResolvedPodSecurity {
  readonly runAsUser: number;
  readonly runAsGroup: number;
  readonly fsGroup: number;
}

/** UID of the Bitnami images (PostgreSQL, repmgr, Pgpool-II). */
export const BITNAMI_USER_ID = 1001;
/** UID of the Keycloak image (`keycloak` user; files are group-writable by group 0 and owned by 1000). */
export const KEYCLOAK_USER_ID = 1000;

/**
 * Fills defaults and validates that no id is 0: the "restricted" profile rejects runAsUser 0, and
 * a group 0 or fsGroup 0 would give every container root-group access to shared files.
 */
export function resolvePodSecurity(
  field: string,
  options: PodSecurityOptions | undefined,
  defaultUserId: number,
): ResolvedPodSecurity {
  const runAsUser = validateIntegerRange(`${field}.runAsUser`, options?.runAsUser ?? defaultUserId, 1, 2 ** 31 - 1);
  const runAsGroup = validateIntegerRange(`${field}.runAsGroup`, options?.runAsGroup ?? runAsUser, 1, 2 ** 31 - 1);
  const fsGroup = validateIntegerRange(`${field}.fsGroup`, options?.fsGroup ?? runAsGroup, 1, 2 ** 31 - 1);
  return { runAsUser, runAsGroup, fsGroup };
}

/** Pod-level security context for raw pod specs: non-root ids and the RuntimeDefault seccomp profile. */
export function restrictedPodSecurityContext(ids: ResolvedPodSecurity): k8s.PodSecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: ids.runAsUser,
    runAsGroup: ids.runAsGroup,
    fsGroup: ids.fsGroup,
    // Only re-own a volume when its root does not match already: a recursive chown of a large
    // PostgreSQL data directory on every start would delay the pod by minutes.
    fsGroupChangePolicy: 'OnRootMismatch',
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

/** Options for a container's security context. */
export interface ContainerSecurityOptions {
  /**
   * Mount the root filesystem read-only. Leave it on unless the image must write outside its
   * mounted emptyDirs (Keycloak's auto-build at `start` writes into /opt/keycloak/lib).
   *
   * @default true
   */
  readonly readOnlyRootFilesystem?: boolean;
}

/**
 * Container-level security context for raw pod specs: no privilege escalation, every capability
 * dropped, non-root, RuntimeDefault seccomp (repeated at container level so that the container
 * stays compliant when copied into another pod spec).
 */
export function restrictedContainerSecurityContext(
  ids: ResolvedPodSecurity,
  options: ContainerSecurityOptions = {},
): k8s.SecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: ids.runAsUser,
    runAsGroup: ids.runAsGroup,
    allowPrivilegeEscalation: false,
    privileged: false,
    readOnlyRootFilesystem: options.readOnlyRootFilesystem ?? true,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

/** Requests and limits of one container, as Kubernetes quantities. */
export interface ContainerResources {
  /**
   * Guaranteed amounts the scheduler reserves.
   *
   * @default - the construct's defaults for this container
   */
  readonly requests?: { readonly cpu?: string; readonly memory?: string };
  /**
   * Upper bounds. Without a CPU limit by default: CFS throttling of a JVM or of PostgreSQL during
   * start-up makes probes time out, while a memory limit keeps a leak from hurting neighbours.
   *
   * @default - the construct's defaults for this container (memory only)
   */
  readonly limits?: { readonly cpu?: string; readonly memory?: string };
}

/** Defaults for a small helper container (init containers, the runner's gate). */
export const SMALL_CONTAINER_RESOURCES: ContainerResources = {
  requests: { cpu: '50m', memory: '64Mi' },
  limits: { memory: '256Mi' },
};

/**
 * Merges `resources` over `defaults` field by field, validates every quantity and that no request
 * exceeds its limit (the API server rejects that), and returns the raw Kubernetes form.
 */
export function resourceRequirements(
  field: string,
  resources: ContainerResources | undefined,
  defaults: ContainerResources,
): k8s.ResourceRequirements {
  const merged = mergeResources(field, resources, defaults);
  const toQuantities = (values: { cpu?: string; memory?: string }): Record<string, k8s.Quantity> => {
    const result: Record<string, k8s.Quantity> = {};
    if (values.cpu !== undefined) result.cpu = k8s.Quantity.fromString(values.cpu);
    if (values.memory !== undefined) result.memory = k8s.Quantity.fromString(values.memory);
    return result;
  };
  const requirements: { requests?: Record<string, k8s.Quantity>; limits?: Record<string, k8s.Quantity> } = {};
  if (Object.keys(merged.requests).length > 0) requirements.requests = toQuantities(merged.requests);
  if (Object.keys(merged.limits).length > 0) requirements.limits = toQuantities(merged.limits);
  return requirements;
}

interface MergedResources {
  readonly requests: { cpu?: string; memory?: string };
  readonly limits: { cpu?: string; memory?: string };
}

function mergeResources(
  field: string,
  resources: ContainerResources | undefined,
  defaults: ContainerResources,
): MergedResources {
  const requests = { ...defaults.requests, ...dropUndefined(resources?.requests) };
  const limits = { ...defaults.limits, ...dropUndefined(resources?.limits) };
  if (requests.cpu !== undefined) validateCpu(`${field}.requests.cpu`, requests.cpu);
  if (limits.cpu !== undefined) validateCpu(`${field}.limits.cpu`, limits.cpu);
  if (requests.memory !== undefined) validateSize(`${field}.requests.memory`, requests.memory);
  if (limits.memory !== undefined) validateSize(`${field}.limits.memory`, limits.memory);
  for (const resource of ['cpu', 'memory'] as const) {
    const request = requests[resource];
    const limit = limits[resource];
    if (request !== undefined && limit !== undefined) {
      if (parseQuantity(`${field}.requests.${resource}`, request) > parseQuantity(`${field}.limits.${resource}`, limit)) {
        throw new Error(
          `${field}.requests.${resource} (${request}) must not exceed ${field}.limits.${resource} (${limit}): ` +
            `raise the limit or lower the request`,
        );
      }
    }
  }
  return { requests, limits };
}

function dropUndefined<T extends object>(value: T | undefined): Partial<T> {
  if (!value) return {};
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** cdk8s-plus-27 pod security context props: non-root ids (seccomp is added by {@link hardenPlusWorkload}). */
export function plusPodSecurityContext(ids: ResolvedPodSecurity): plus.PodSecurityContextProps {
  return {
    ensureNonRoot: true,
    user: ids.runAsUser,
    group: ids.runAsGroup,
    fsGroup: ids.fsGroup,
    fsGroupChangePolicy: plus.FsGroupChangePolicy.ON_ROOT_MISMATCH,
  };
}

/**
 * cdk8s-plus-27 container security context props. plus-27's `Capability` enum has no `ALL`, so
 * {@link hardenPlusWorkload} adds `capabilities.drop: [ALL]` afterwards.
 */
export function plusContainerSecurityContext(
  ids: ResolvedPodSecurity,
  options: ContainerSecurityOptions = {},
): plus.ContainerSecurityContextProps {
  return {
    ensureNonRoot: true,
    user: ids.runAsUser,
    group: ids.runAsGroup,
    privileged: false,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: options.readOnlyRootFilesystem ?? true,
  };
}

/**
 * cdk8s-plus-27 container resources from quantities. plus-27 writes memory in whole MiB, so a
 * memory quantity must be a multiple of 1Mi here.
 */
export function plusContainerResources(
  field: string,
  resources: ContainerResources | undefined,
  defaults: ContainerResources,
): plus.ContainerResources {
  const merged = mergeResources(field, resources, defaults);
  const cpu = (path: string, value: string | undefined): plus.Cpu | undefined =>
    value === undefined ? undefined : plus.Cpu.millis(Math.round(parseQuantity(path, value) * 1000));
  const memory = (path: string, value: string | undefined): Size | undefined => {
    if (value === undefined) return undefined;
    const mebibytes = parseQuantity(path, value) / 2 ** 20;
    if (!Number.isInteger(mebibytes)) {
      throw new Error(`${path} must be a whole number of Mi for a cdk8s-plus container, got ${JSON.stringify(value)}`);
    }
    return Size.mebibytes(mebibytes);
  };
  return {
    cpu: { request: cpu(`${field}.requests.cpu`, merged.requests.cpu), limit: cpu(`${field}.limits.cpu`, merged.limits.cpu) },
    memory: {
      request: memory(`${field}.requests.memory`, merged.requests.memory),
      limit: memory(`${field}.limits.memory`, merged.limits.memory),
    },
  };
}

/** Where the pod spec lives inside each workload kind's manifest. */
const POD_SPEC_PATH: Record<string, string> = {
  Pod: '/spec',
  Deployment: '/spec/template/spec',
  StatefulSet: '/spec/template/spec',
  DaemonSet: '/spec/template/spec',
  ReplicaSet: '/spec/template/spec',
  Job: '/spec/template/spec',
  CronJob: '/spec/jobTemplate/spec/template/spec',
};

/**
 * Adds what cdk8s-plus-27 cannot express to a plus workload: the pod's RuntimeDefault seccomp
 * profile and `capabilities.drop: [ALL]` on every container and init container. Call it after all
 * containers are added (containers added later are not patched).
 */
export function hardenPlusWorkload(workload: plus.AbstractPod): void {
  const apiObject = ApiObject.of(workload);
  const podSpecPath = POD_SPEC_PATH[apiObject.kind];
  if (!podSpecPath) {
    throw new Error(`hardenPlusWorkload: unsupported kind ${apiObject.kind}; expected one of ${Object.keys(POD_SPEC_PATH).join(', ')}`);
  }
  apiObject.addJsonPatch(JsonPatch.add(`${podSpecPath}/securityContext/seccompProfile`, { type: 'RuntimeDefault' }));
  workload.containers.forEach((_, index) => {
    apiObject.addJsonPatch(JsonPatch.add(`${podSpecPath}/containers/${index}/securityContext/capabilities`, { drop: ['ALL'] }));
  });
  workload.initContainers.forEach((_, index) => {
    apiObject.addJsonPatch(
      JsonPatch.add(`${podSpecPath}/initContainers/${index}/securityContext/capabilities`, { drop: ['ALL'] }),
    );
  });
}

const RESTRICTED_VOLUME_TYPES = [
  'configMap',
  'csi',
  'downwardAPI',
  'emptyDir',
  'ephemeral',
  'persistentVolumeClaim',
  'projected',
  'secret',
];

/**
 * Lists every way a synthesized pod spec (plain JSON, as `Testing.synth` returns it) breaks the
 * Pod Security "restricted" profile or this project's rule that every container has requests and
 * a memory limit. Empty when compliant. Mirrors the checks of k8s.io/pod-security-admission.
 */
export function restrictedProfileViolations(podSpec: Record<string, any>): string[] {
  const violations: string[] = [];
  const pod = podSpec.securityContext ?? {};
  if (podSpec.hostNetwork || podSpec.hostPID || podSpec.hostIPC) violations.push('host namespaces are used');
  if (pod.runAsUser === 0) violations.push('pod runAsUser is 0');
  for (const volume of podSpec.volumes ?? []) {
    const type = Object.keys(volume).find((key) => key !== 'name');
    if (!type || !RESTRICTED_VOLUME_TYPES.includes(type)) {
      violations.push(`volume ${volume.name} has type ${type}, not allowed by "restricted"`);
    }
  }
  const containers = [
    ...(podSpec.initContainers ?? []).map((c: any) => ['initContainer', c]),
    ...(podSpec.containers ?? []).map((c: any) => ['container', c]),
  ] as Array<[string, Record<string, any>]>;
  if (containers.length === 0) violations.push('the pod has no containers');
  for (const [what, container] of containers) {
    const name = `${what} ${container.name}`;
    const sc = container.securityContext ?? {};
    if (sc.privileged === true) violations.push(`${name} is privileged`);
    if (sc.allowPrivilegeEscalation !== false) violations.push(`${name} does not set allowPrivilegeEscalation: false`);
    if (!(sc.runAsNonRoot === true || (sc.runAsNonRoot === undefined && pod.runAsNonRoot === true))) {
      violations.push(`${name} is not runAsNonRoot (neither it nor the pod sets runAsNonRoot: true)`);
    }
    if (sc.runAsUser === 0) violations.push(`${name} runAsUser is 0`);
    const seccomp = sc.seccompProfile?.type ?? pod.seccompProfile?.type;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') {
      violations.push(`${name} has no RuntimeDefault or Localhost seccompProfile (nor does the pod)`);
    }
    const drop: unknown[] = sc.capabilities?.drop ?? [];
    if (!drop.includes('ALL')) violations.push(`${name} does not drop ALL capabilities`);
    const add: unknown[] = sc.capabilities?.add ?? [];
    if (add.some((capability) => capability !== 'NET_BIND_SERVICE')) {
      violations.push(`${name} adds capabilities other than NET_BIND_SERVICE: ${add.join(', ')}`);
    }
    for (const port of container.ports ?? []) {
      if (port.hostPort) violations.push(`${name} uses hostPort ${port.hostPort}`);
    }
    const resources = container.resources ?? {};
    if (resources.requests?.cpu === undefined || resources.requests?.memory === undefined) {
      violations.push(`${name} has no cpu and memory requests`);
    }
    if (resources.limits?.memory === undefined) violations.push(`${name} has no memory limit`);
  }
  return violations;
}
